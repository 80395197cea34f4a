#!/usr/bin/env bash
# Measures the release binary in demo mode: resident memory after a minute of polling, and
# /metrics serving time from cache (plain and gzip). Numbers go into docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
port=${PORT:-19810}
target/release/aws-workflow-exporter demo --demo.poll-interval 1 --web.listen-address "127.0.0.1:$port" --log.level warn &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
sleep "${SECONDS_TO_RUN:-60}"
echo "series served: $(curl -s "http://127.0.0.1:$port/metrics" | grep -vc '^#')"
echo "exposition bytes: plain $(curl -s "http://127.0.0.1:$port/metrics" | wc -c), gzip $(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics" | wc -c)"
echo "rss: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status), peak: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
start=$(date +%s%N)
for _ in $(seq 1000); do curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; done
end=$(date +%s%N)
echo "1000 sequential scrapes with curl: $(( (end - start) / 1000000 )) ms (curl process start included)"
echo "rss after scrapes: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
