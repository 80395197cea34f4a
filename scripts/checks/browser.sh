#!/usr/bin/env bash
# The status page in a real browser: the demo (the built-in simulator) with one IAM action denied
# and basic auth on, opened in Debian's chromium through playwright-core (tests/browser). Fails if
# the page does not show the denied source as failing with the action's name.
# UPDATE_DOCS=1 stores the screenshot as docs/status.png (shown in the README).
set -euo pipefail
cd "$(dirname "$0")/../.."

denied_source=appflow_flows
denied_action=appflow:ListFlows
user=status
password=status-demo

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cargo build --locked --quiet --bin aws-workflow-exporter
# bcrypt of $password, cost 4 (tests only).
# shellcheck disable=SC2016 # a bcrypt hash, not an expression
printf 'basic_auth_users:\n  %s: %s\n' "$user" '$2b$04$KBCwKxOzLha2MUDgW0PjXeuGb5E56UKHzO1OltSLoczmKBI8NGOJ6' > "$tmp/web.yml"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AWS_WORKFLOW_EXPORTER_DEMO_DENY=$denied_action target/debug/aws-workflow-exporter demo \
  --demo.poll-interval 1 --web.listen-address "127.0.0.1:$port" --web.config.file "$tmp/web.yml" \
  >"$tmp/daemon.log" 2>&1 &
pid=$!

base="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/daemon.log"; echo "the demo exited" >&2; exit 1; }
  sleep 0.1
done

screenshot="$tmp/status.png"
[ "${UPDATE_DOCS:-}" = 1 ] && screenshot="$PWD/docs/status.png"
if ! node tests/browser/status.mjs "$base" "$user" "$password" "$denied_source" "$denied_action" "$screenshot"; then
  tail -n 30 "$tmp/daemon.log"
  exit 1
fi
