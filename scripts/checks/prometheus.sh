#!/usr/bin/env bash
# Every dashboard query and rule expression against a real Prometheus (Debian's package)
# scraping the demo, with the repo's rules loaded; the failure-ratio warning must fire.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --locked --quiet
python3 scripts/checks/prom_queries.py \
  --exporter-cmd "target/debug/aws-workflow-exporter demo --demo.poll-interval 2 --web.listen-address 127.0.0.1:{port} --log.level warn"
