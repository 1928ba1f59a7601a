#!/usr/bin/env bash
# Benchmark entry point: prepares the Python venv (boto3, moto[server]), builds the release
# binaries (the worker, connect-sim, and the `overhead` example; the first release build of the
# AWS SDK takes several minutes), then runs bench/run.py, which runs the scenarios against moto +
# connect-sim for resume-chat-worker and the boto3 baseline and rewrites its section of
# BENCHMARKS.md and bench/charts/*.svg.
# Usage: bench/run.sh [steady noisy capacity faults fleet3 fleet6 overhead] [--impl ours|baseline|both]
# (no scenario: all of them, about 15 minutes on 2 CPUs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/python-env.sh
REDIS_SERVER="$(scripts/redis.sh)"
export REDIS_SERVER
cargo build --release --quiet -p resume-chat-worker -p connect-sim
cargo build --release --quiet -p resume-chat-worker --example overhead
exec "$root/.venv/bin/python" "$root/bench/run.py" "$@"
