#!/usr/bin/env bash
# Finds a Prometheus server binary for the end-to-end metrics test (tests/prometheus_e2e.rs) and
# prints its path on stdout (nothing else goes to stdout), installing Debian's `prometheus`
# package when there is none.
#
# Order: $PROMETHEUS_BIN if executable, /usr/bin/prometheus, `prometheus` on PATH, else
# installing the package (scripts/debian-tool.sh).
#
# Installing the package may start a system Prometheus on :9090 where systemd runs (inside a
# container Debian's policy-rc.d keeps it stopped). The test does not use that one: it starts its
# own server on a free loopback port with a throwaway config and data directory. On a host you
# may stop the system one with `systemctl disable --now prometheus`.
#
# Usage: PROMETHEUS_BIN="$(scripts/prometheus.sh)"; export PROMETHEUS_BIN
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/debian-tool.sh" PROMETHEUS_BIN prometheus prometheus
