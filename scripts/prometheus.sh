#!/usr/bin/env bash
# Finds a Prometheus server binary for the end-to-end metrics test (tests/prometheus_e2e.rs) and
# prints its path on stdout (nothing else goes to stdout), installing Debian's `prometheus`
# package when there is none.
#
# Order: $PROMETHEUS_BIN if executable, /usr/bin/prometheus, `prometheus` on PATH, else
# `apt-get install -y --no-install-recommends prometheus` (with sudo only when not root; the
# package lists are refreshed once if the first install fails on a fresh machine).
#
# Installing the package may start a system Prometheus on :9090 where systemd runs (inside a
# container Debian's policy-rc.d keeps it stopped). The test does not use that one: it starts its
# own server on a free loopback port with a throwaway config and data directory. On a host you
# may stop the system one with `systemctl disable --now prometheus`.
#
# Usage: PROMETHEUS_BIN="$(scripts/prometheus.sh)"; export PROMETHEUS_BIN
set -euo pipefail

find_prometheus() {
    if [ -n "${PROMETHEUS_BIN:-}" ] && [ -x "$PROMETHEUS_BIN" ]; then
        echo "$PROMETHEUS_BIN"
    elif [ -x /usr/bin/prometheus ]; then
        echo /usr/bin/prometheus
    else
        command -v prometheus 2>/dev/null || true
    fi
}

bin="$(find_prometheus)"
if [ -z "$bin" ]; then
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        sudo=(sudo)
    fi
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    echo "prometheus.sh: installing Debian's prometheus package" >&2
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >"$log" 2>&1; then
        { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus; } >"$log" 2>&1 \
            || { cat "$log" >&2; echo "prometheus.sh: cannot install the prometheus package" >&2; exit 1; }
    fi
    bin="$(find_prometheus)"
    if [ -z "$bin" ]; then
        echo "prometheus.sh: prometheus not found after installing the package" >&2
        exit 1
    fi
fi
echo "$bin"
