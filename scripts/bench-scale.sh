#!/usr/bin/env bash
# The scale benchmark: the release exporter, with its default configuration and API budget,
# against a simulated account of 10,000 map runs (100 open) and AWS's throttling buckets.
# Prints readiness, time until all open map runs are on /metrics, calls per operation in a
# steady minute with the wasted ones, refresh age, memory and /metrics serving speed.
# Options: --cap SECONDS (give up waiting for the start, default 300), --steady SECONDS (the
# window calls are counted in, default 60), --observe SECONDS (the window refresh ages are
# measured over, default 300), --load SECONDS (/metrics load, default 10), --quota-share F
# (default 0.5), --raised-quotas (Step Functions quotas raised far beyond need and no AWS
# throttling: measures memory with every map run tracked instead of the call budget),
# --otlp-max-points N (also push over OTLP every second to a receiver in the bench, at most N
# data points per request), --busy N (instead, N state machines each with one running
# execution holding one open map run and one finished execution: a busy account), --accounts N
# (instead, an organisation: N small accounts, one target each through AssumeRole, measured
# against one such account alone: ready time, steady CPU share of a core, RSS per account,
# series, publish cost and /metrics latency; --steady is the CPU window).
# An unknown option is an error. Numbers go into docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked --bench scale -- "$@"
