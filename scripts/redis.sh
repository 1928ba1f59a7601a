#!/usr/bin/env bash
# Finds a redis-server binary for the fleet limiter tests (tests/fleet_limiter.rs,
# tests/fleet_e2e.rs) and the demo, and prints its path on stdout (nothing else goes to stdout),
# installing Debian's `redis-server` package when there is none.
#
# Order: $REDIS_SERVER if executable, /usr/bin/redis-server, `redis-server` on PATH, else
# installing the package (scripts/debian-tool.sh).
#
# Installing the package may start a system Redis on :6379 where systemd runs. The tests never
# use it: each starts its own `redis-server --port <free port> --bind 127.0.0.1 --save ''
# --appendonly no`. On a host you may stop the system one with `systemctl disable --now redis-server`.
#
# Usage: REDIS_SERVER="$(scripts/redis.sh)"; export REDIS_SERVER
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/debian-tool.sh" REDIS_SERVER redis-server redis-server
