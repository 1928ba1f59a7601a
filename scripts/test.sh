#!/usr/bin/env bash
# The test command (README, and CI through .ci/run). Installs what it needs, then runs:
# formatting and lints, every Rust test (unit, paused-time scenarios, end-to-end against moto's SQS,
# connect-sim and a real Prometheus), the simulator's wire tests with boto3, the benchmark's
# analysis, the README's demo
# end to end (DEMO_EXIT=1), the deploy/ linters,
# and a dependency audit against the offline RustSec snapshot in ../shared/advisory-db.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n== %s\n' "$*"; }

step "python tools (.venv: moto, boto3, pytest)"
scripts/python-env.sh

step "prometheus (for the end-to-end metrics test)"
PROMETHEUS_BIN="$(scripts/prometheus.sh)"
export PROMETHEUS_BIN

step "redis (for the fleet limiter tests)"
REDIS_SERVER="$(scripts/redis.sh)"
export REDIS_SERVER

if ! command -v cargo-nextest >/dev/null 2>&1; then
    step "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (binaries used by the tests and the demo: scripts/build.sh)"
scripts/build.sh

step "rust tests"
cargo nextest run --workspace --locked --no-fail-fast

step "connect-sim wire format with boto3"
CONNECT_SIM_BIN="$root/target/debug/connect-sim" .venv/bin/python -m pytest -q -p no:cacheprovider sim/tests/python

step "the benchmark's analysis and flags (bench/test_analysis.py)"
.venv/bin/python -m pytest -q -p no:cacheprovider bench/test_analysis.py

step "the demo, end to end (DEMO_EXIT=1: stops once every result is in, fails if one is missing)"
DEMO_EXIT=1 scripts/demo.sh

step "deploy/ linters"
scripts/lint-deploy.sh

step "dependency audit (offline RustSec snapshot)"
scripts/audit.sh

printf '\nall checks passed\n'
