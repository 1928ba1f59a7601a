#!/usr/bin/env bash
# Benchmark entry point: prepares the Python venv (boto3, moto[server]), builds the release
# binaries (the worker, connect-sim, and the `overhead` example; the first release build of the
# AWS SDK takes several minutes), then runs bench/run.py, which runs the scenarios against moto +
# connect-sim for resume-chat-worker and the boto3 baseline and rewrites its section of
# BENCHMARKS.md and bench/charts/*.svg.
# Usage: bench/run.sh [SCENARIO ...] [--impl ours|baseline|both] [--seeds N]
# Scenarios (bench/scenarios.py ORDER): steady noisy neighbour capacity lifetimes capacity-events
# lifetimes-events two-instances new-account both-ops latency trickle faults outage fleet3 fleet6 staggered kill fleet3-redis
# fleet6-redis fleet6-long overhead. No scenario: all of them, each with its own seeds (3 for most,
# 8 for neighbour, 6 for staggered, 1 for the Redis fleets and fleet6-long; bench/scenarios.py);
# BENCHMARKS.md states how long the last full run took.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/python-env.sh
REDIS_SERVER="$(scripts/redis.sh)"
export REDIS_SERVER
cargo build --release --locked --quiet -p resume-chat-worker -p connect-sim
cargo build --release --locked --quiet -p resume-chat-worker --example overhead
exec "$root/.venv/bin/python" "$root/bench/run.py" "$@"
