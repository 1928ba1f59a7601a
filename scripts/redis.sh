#!/usr/bin/env bash
# Finds a redis-server binary for the fleet limiter tests (tests/fleet_limiter.rs,
# tests/fleet_e2e.rs) and the demo, and prints its path on stdout (nothing else goes to stdout),
# installing Debian's `redis-server` package when there is none.
#
# Order: $REDIS_SERVER if executable, /usr/bin/redis-server, `redis-server` on PATH, else
# `apt-get install -y --no-install-recommends redis-server` (with sudo only when not root; the
# package lists are refreshed once if the first install fails on a fresh machine).
#
# Installing the package may start a system Redis on :6379 where systemd runs. The tests never
# use it: each starts its own `redis-server --port <free port> --bind 127.0.0.1 --save ''
# --appendonly no`. On a host you may stop the system one with `systemctl disable --now redis-server`.
#
# Usage: REDIS_SERVER="$(scripts/redis.sh)"; export REDIS_SERVER
set -euo pipefail

find_redis() {
    if [ -n "${REDIS_SERVER:-}" ] && [ -x "$REDIS_SERVER" ]; then
        echo "$REDIS_SERVER"
    elif [ -x /usr/bin/redis-server ]; then
        echo /usr/bin/redis-server
    else
        command -v redis-server 2>/dev/null || true
    fi
}

bin="$(find_redis)"
if [ -z "$bin" ]; then
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        sudo=(sudo)
    fi
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    echo "redis.sh: installing Debian's redis-server package" >&2
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server >"$log" 2>&1; then
        { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server; } >"$log" 2>&1 \
            || { cat "$log" >&2; echo "redis.sh: cannot install the redis-server package" >&2; exit 1; }
    fi
    bin="$(find_redis)"
    if [ -z "$bin" ]; then
        echo "redis.sh: redis-server not found after installing the package" >&2
        exit 1
    fi
fi
echo "$bin"
