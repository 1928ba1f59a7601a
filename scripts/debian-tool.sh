#!/usr/bin/env bash
# Finds a program from a Debian package and prints its path on stdout (nothing else goes to
# stdout), installing the package when the program is missing.
#
# Usage: scripts/debian-tool.sh ENV_VAR PROGRAM PACKAGE
# Order: $ENV_VAR if executable, /usr/bin/PROGRAM, PROGRAM on PATH, else
# `apt-get install -y --no-install-recommends PACKAGE` (with sudo only when not root; the package
# lists are refreshed once if the first install fails on a fresh machine).
set -euo pipefail
var="$1" program="$2" package="$3"

find_program() {
    local given="${!var:-}"
    if [ -n "$given" ] && [ -x "$given" ]; then
        echo "$given"
    elif [ -x "/usr/bin/$program" ]; then
        echo "/usr/bin/$program"
    else
        command -v "$program" 2>/dev/null || true
    fi
}

bin="$(find_program)"
if [ -z "$bin" ]; then
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        sudo=(sudo)
    fi
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    install=(env DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package")
    echo "debian-tool.sh: installing Debian's $package package" >&2
    if ! "${install[@]}" >"$log" 2>&1; then
        { env DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq && "${install[@]}"; } >"$log" 2>&1 \
            || { cat "$log" >&2; echo "debian-tool.sh: cannot install the $package package" >&2; exit 1; }
    fi
    bin="$(find_program)"
    if [ -z "$bin" ]; then
        echo "debian-tool.sh: $program not found after installing the $package package" >&2
        exit 1
    fi
fi
echo "$bin"
