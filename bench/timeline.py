#!/usr/bin/env python3
"""Per-replica timeline of one benchmark run of ours, from bench/out/results.json (the `replica_timeline`
rows run.py's Sampler records): for each replica and each bin, the allowed start rate, the sharers
estimate and jobs in flight at the bin's end, and the StartChatContact calls and 429s in the bin.
It shows how a fleet's shares come apart, which end-of-run readings cannot.

Usage: bench/timeline.py SCENARIO [--seed N] [--bin SECONDS]
"""

import argparse
import json
import pathlib
import sys

RESULTS = pathlib.Path(__file__).resolve().parent / "out" / "results.json"
THROTTLED = ("TooManyRequestsException", "ThrottlingException")


def runs(stored, scenario, seed):
    ours = stored.get("scenarios", {}).get(scenario, {}).get("ours", {})
    for m in ours.get("runs", []):
        if m.get("seed") == seed and m.get("replica_timeline"):
            yield f"{scenario}/ours/seed {seed}", m


def table(rows, width):
    """{(bin, replica): (allowed, sharers, in flight, calls in bin, 429s in bin)}."""
    last_calls, out = {}, {}
    for t, r, allowed, sharers, in_flight, calls in rows:
        b = int(t // width)
        total = sum(calls.values())
        throttled = sum(v for k, v in calls.items() if k in THROTTLED)
        prev_total, prev_thr = last_calls.get(r, (0, 0))
        got = out.get((b, r), (None, None, None, 0, 0))
        out[(b, r)] = (allowed, sharers, in_flight, got[3] + total - prev_total, got[4] + throttled - prev_thr)
        last_calls[r] = (total, throttled)
    return out


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", type=float, default=5.0)
    args = ap.parse_args(argv)
    stored = json.loads(RESULTS.read_text())
    found = False
    for key, m in runs(stored, args.scenario, args.seed):
        found = True
        rows = m["replica_timeline"]
        replicas = sorted({r for _, r, *_ in rows})
        t = table(rows, args.bin)
        print(f"{key}: per replica allowed/s, sharers, in flight, calls, 429s per {args.bin:g} s bin")
        print("   t  " + "".join(f"| r{r}: allow shr  infl call 429 " for r in replicas))
        for b in sorted({b for b, _ in t}):
            cells = []
            for r in replicas:
                a, s, f, c, x = t.get((b, r), (None, None, None, 0, 0))
                cells.append(f"| {fmt(a, '6.2f')} {fmt(s, '4.1f')} {fmt(f, '4.0f')} {c:4d} {x:3d} ")
            print(f"{b * args.bin:5.0f} " + "".join(cells))
    if not found:
        sys.exit(f"no run of ours with a timeline for {args.scenario}, seed {args.seed}")


if __name__ == "__main__":
    main(sys.argv[1:])
