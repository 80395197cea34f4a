#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: a Python venv (moto, linters)
# promtool/prometheus from Debian's `prometheus` package, and for the browser test of the status
# page Debian's `chromium` with playwright-core (tests/browser, from its package-lock.json). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$want" > "$stamp"
fi

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# Only what is missing: a machine's own Node.js (e.g. not Debian's) must not meet Debian's npm.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
lock_stamp=tests/browser/node_modules/.lock.sha
want=$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$lock_stamp" 2>/dev/null)" != "$want" ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
  echo "$want" > "$lock_stamp"
fi
promtool --version | head -1
