#!/usr/bin/env bash
# The demo (README): local SQS (moto), the Connect simulator and the worker, with sample jobs from
# examples/jobs.jsonl. Prints each result and the metrics address, then keeps everything running
# until Ctrl-C (DEMO_EXIT=1 stops once all results are in, exiting non-zero if any is missing;
# scripts/test.sh runs it that way). The binaries come from scripts/build.sh, as the tests' do.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/python-env.sh
REDIS_SERVER="$(scripts/redis.sh)"
export REDIS_SERVER
echo "building (the first build compiles the AWS SDK: a few minutes)..."
scripts/build.sh -q
exec .venv/bin/python scripts/demo.py "$@"
