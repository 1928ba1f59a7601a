#!/usr/bin/env bash
# The one build definition of everything the demo and the tests start: every binary of the
# workspace (resume-chat-worker and connect-sim), debug profile, with the committed Cargo.lock.
# scripts/demo.sh and scripts/test.sh both call this, so the demo can never again start a binary
# that only a test run happened to build (issue 12: `target/debug/connect-sim` missing on a
# fresh clone).
#
# Usage: scripts/build.sh [extra cargo flags, e.g. -q]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo build --workspace --locked --bins "$@"
