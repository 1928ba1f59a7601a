#!/usr/bin/env python3
"""Writes per-seed and mean ranges and a per-seed note into tests/data/capacity-scenarios/*.json
from the output of
  cargo nextest run -p resume-chat-worker --lib capacity_scenarios --no-capture > out.txt
Usage: scripts/capacity-expect.py out.txt   (run after a deliberate change of the machine;
review the diff: the ranges are regression guards, the issue's targets are in "target")."""
import json, math, re, sys
from pathlib import Path

DIR = Path(__file__).resolve().parent.parent / "tests/data/capacity-scenarios"
# Which measures each scenario's instances are held to.
MEASURES = {
    "fixed_5s": {"a": ["utilization", "limit_exceeded"]},
    "fleet_3_fixed_5s": {"a": ["utilization", "limit_exceeded"]},
    "two_instances_one_full": {"a": ["calls"], "b": ["drain_ratio", "limit_exceeded"]},
    "lognormal_1h": {"a": ["goodput", "limit_exceeded", "goodput_after_warmup", "limit_exceeded_after_warmup"]},
    "batches_fixed_5s": {"a": ["excess_wait_s", "limit_exceeded"]},
    "arrivals_lognormal_60s": {"a": ["excess_wait_s", "limit_exceeded"]},
}
# The contact-events variants are held to what their base scenario is.
for _base in list(MEASURES):
    MEASURES[_base + "_events"] = MEASURES[_base]
DEFAULT = ["goodput", "limit_exceeded"]
SLACK = {  # (per seed, on the mean)
    "goodput": (0.015, 0.01), "utilization": (0.015, 0.01), "goodput_after_warmup": (0.015, 0.01),
    "limit_exceeded": (0.015, 0.01), "limit_exceeded_after_warmup": (0.015, 0.01),
    "drain_ratio": (0.03, 0.02), "excess_wait_s": (1.0, 0.5), "calls": (3, 2),
}

def parse(text):
    out, scen, inst = {}, None, None
    for line in text.splitlines():
        m = re.match(r"scenario (\w+):", line)
        if m:
            scen = m.group(1); out.setdefault(scen, {}); continue
        m = re.match(r"\s+instance (\w+) \|", line)
        if m:
            inst = m.group(1); out[scen][inst] = []; continue
        m = re.match(r"\s+\| (\d+) \| (.*)\|\s*$", line)
        if m and scen and inst:
            c = [x.strip() for x in m.group(2).split("|")]
            num = lambda s: float(re.match(r"[-\d.]+|inf", s).group(0)) if s not in ("-", "") else None
            after = [x.strip() for x in c[6].split(",")]
            out[scen][inst].append({
                "seed": int(m.group(1)), "goodput": num(c[0]), "utilization": num(c[1]),
                "limit_exceeded": num(c[2]) / 100, "calls": num(c[3]),
                "drain_ratio": num(c[5]),
                "goodput_after_warmup": num(after[0]),
                "limit_exceeded_after_warmup": (num(after[1]) / 100) if num(after[1]) is not None else None,
                "excess_wait_s": num(c[7]),
            })
    return out

def rnd(x, lo):
    return (math.floor if lo else math.ceil)(x * 1000) / 1000

def main():
    data = parse(Path(sys.argv[1]).read_text())
    for scen, insts in data.items():
        path = DIR / f"{scen}.json"
        d = json.loads(path.read_text())
        notes = []
        for spec in d["instances"]:
            rows = insts.get(spec["name"], [])
            if not rows:
                continue
            expect = {}
            for m in MEASURES.get(scen, {}).get(spec["name"], DEFAULT):
                vals = [r[m] for r in rows if r[m] is not None]
                if not vals:
                    continue
                s_seed, s_mean = SLACK[m]
                mean = sum(vals) / len(vals)
                lo, hi = rnd(min(vals) - s_seed, True), rnd(max(vals) + s_seed, False)
                mlo, mhi = rnd(mean - s_mean, True), rnd(mean + s_mean, False)
                if m in ("limit_exceeded", "limit_exceeded_after_warmup", "excess_wait_s", "calls"):
                    lo, mlo = max(0.0, lo), max(0.0, mlo)
                if m in ("goodput", "utilization", "goodput_after_warmup", "limit_exceeded"):
                    hi, mhi = min(1.0, hi), min(1.0, mhi)
                if m == "drain_ratio":
                    lo, mlo = 1.0, 1.0
                expect[m] = {"seed": [lo, hi], "mean": [mlo, mhi]}
            spec["expect"] = expect
            fmt = lambda m, v: "-" if v is None else (f"{100*v:.1f} %" if "limit" in m else f"{v:.3f}")
            shown = [m for m in MEASURES.get(scen, {}).get(spec["name"], DEFAULT)]
            cols = "; ".join(
                f"{m} " + " ".join(fmt(m, r[m]) for r in rows) for m in shown)
            notes.append(f"instance {spec['name']}, seeds {rows[0]['seed']}-{rows[-1]['seed']}: {cols}")
        d["note"] = " | ".join(notes)
        out = {"description": d["description"]}
        for k in ("target", "note"):
            if k in d:
                out[k] = d[k]
        for k in d:
            out.setdefault(k, d[k])
        path.write_text(json.dumps(out, indent=2) + "\n")

main()
