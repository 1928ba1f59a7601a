#!/usr/bin/env bash
# Audits Cargo.lock against the offline RustSec snapshot (../shared/advisory-db by default, or
# ADVISORY_DB), without network. Installs cargo-audit once (~4 min on 2 cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
db="${ADVISORY_DB:-$root/../shared/advisory-db}"
if [ ! -d "$db/crates" ]; then
    echo "audit: advisory snapshot not found at $db (set ADVISORY_DB); skipping" >&2
    exit 0
fi
command -v cargo-audit >/dev/null 2>&1 || cargo install cargo-audit --locked --quiet
# Unmaintained/unsound/yanked warnings fail too (-D warnings).
cargo audit --db "$db" --no-fetch --stale -D warnings
