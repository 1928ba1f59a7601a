#!/usr/bin/env bash
# Creates the repository's Python virtualenv at .venv (if missing) and installs the
# test-side Python tools into it: boto3 (an independent AWS client for connect-sim's
# wire-format tests), pytest, and moto[server] (local SQS for the worker's tests).
# Idempotent and quiet: safe to run before every test run.
# Usage: scripts/python-env.sh   then   .venv/bin/python -m pytest ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# Skip pip entirely when everything is already importable: keeps repeated runs fast and offline-safe.
if ! "$venv/bin/python" -c 'import boto3, pytest, moto, flask' >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check boto3 pytest 'moto[server]'
fi
