"""Benchmark orchestrator (started by bench/run.sh, which builds the release binaries first).

Usage: bench/run.sh [SCENARIO ...] [--impl ours|baseline|both]
Scenarios: steady noisy capacity faults fleet3 fleet6 overhead (default: all, in that order).

Per scenario and implementation (ours = target/release/resume-chat-worker, baseline =
bench/baseline_worker.py): a fresh moto and connect-sim, the backlog enqueued first, connect-sim's
counters reset, the workers started (that instant is t=0), results drained until every job has
one (or a timeout), workers stopped with SIGTERM, then `/_sim/stats` read: 429 counts and the
per-second timeline come from the simulator, never from the workers. Raw numbers are merged into
bench/out/results.json (so a partial run keeps the other scenarios' last numbers), logs go to
bench/out/logs/, charts to bench/charts/<scenario>.svg, and report.py rewrites its own section of
BENCHMARKS.md.
"""

import argparse
import json
import os
import pathlib
import sys
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import analysis  # noqa: E402
import charts  # noqa: E402
import harness  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402
from scenarios import ORDER, OVERHEAD, SCENARIOS  # noqa: E402

OUT = harness.ROOT / "bench" / "out"
CHARTS = harness.ROOT / "bench" / "charts"
RESULTS = OUT / "results.json"
LABELS = {"ours": "resume-chat-worker", "baseline": "boto3 adaptive baseline"}


def job_body(n):
    return json.dumps({"jobId": f"bench-{n}", "sourceContactId": f"src-{n}", "participant": {"displayName": "B"}},
                      separators=(",", ":"))


def worker_cmd(impl):
    if impl == "ours":
        return [str(harness.RELEASE / "resume-chat-worker")]
    return [str(harness.VENV / "bin" / "python"), str(harness.ROOT / "bench" / "baseline_worker.py")]


def worker_env(scn, moto, sim, q):
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "JOBS_QUEUE_URL": q.jobs, "RESULTS_QUEUE_URL": q.results, "DEAD_LETTER_QUEUE_URL": q.dlq,
        "CONNECT_INSTANCE_ID": "inst-1", "CONNECT_CONTACT_FLOW_ID": "flow-1",
        "AWS_ENDPOINT_URL_SQS": moto.url, "AWS_ENDPOINT_URL_CONNECT": sim.url,
        "AWS_REGION": harness.REGION, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
        "START_CHAT_RATE": scn["rate"], "START_CHAT_BURST": scn["burst"], "MAX_IN_FLIGHT": scn.get("max_in_flight", "64"),
        "METRICS_ADDR": f"127.0.0.1:{harness.free_port()}", "LOG_FORMAT": "json", "SHUTDOWN_GRACE_SECONDS": "10",
        "BASELINE_THREADS": "8",
    }


def scrape(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return []
    keep = ("resume_chat_connect_calls_total", "resume_chat_jobs_requeued_total", "resume_chat_jobs_completed_total",
            "resume_chat_allowed_rate")
    return [line for line in text.splitlines() if line.startswith(keep)]


def run_one(name, scn, impl):
    """One scenario with one implementation; returns the analysed metrics."""
    log_dir = OUT / "logs" / f"{name}-{impl}"
    log_dir.mkdir(parents=True, exist_ok=True)
    n = scn["jobs"]
    moto = sim = redis = None
    procs = []
    try:
        load_before, busy_before = machine.load(), machine.compilers()
        moto = harness.Moto(log_dir)
        sim = harness.Sim(scn["sim"], log_dir)
        if scn.get("redis"):
            redis = harness.Redis(log_dir)
        q = harness.Queues(moto)
        t_enq = time.time()
        q.enqueue([job_body(i) for i in range(n)])
        enqueue_s = time.time() - t_enq
        sim.reset()
        t0 = time.time()
        envs = []
        for r in range(scn["replicas"]):
            env = worker_env(scn, moto, sim, q)
            if redis:
                env["REDIS_URL"] = redis.url
            envs.append(env)
            procs.append(harness.Proc(worker_cmd(impl), env, log_dir / f"worker-{r}.log"))
        last = [time.time()]

        def progress(done):
            if time.time() - last[0] >= 10:
                last[0] = time.time()
                print(f"  [{name}/{impl}] {done}/{n} results after {time.time() - t0:.0f} s", flush=True)

        timeout = 3 * n / scn["allowed"] + 60
        complete = q.drain_until([f"bench-{i}" for i in range(n)], timeout, progress)
        finished_at = time.time()
        cpu = [p.cpu_seconds() for p in procs]
        rss = [p.status_mib("VmHWM:") for p in procs]
        scraped = [scrape(e["METRICS_ADDR"]) for e in envs] if impl == "ours" else []
        busy_after = machine.compilers()
        for p in procs:
            p.terminate()
        exits = [p.wait(40) for p in procs]
        stats = sim.stats()
        for _ in range(2):  # late or duplicate results
            q.drain_once(wait=1)
        m = analysis.analyse(scn, n, t0, stats, q.seen, q.depth(q.jobs), q.depth(q.dlq),
                             sum(c for c in cpu if c is not None), max((r for r in rss if r is not None), default=None),
                             finished_at)
        m.update(impl=impl, complete=complete, exit_codes=exits, enqueue_s=enqueue_s,
                 duplicate_results=q.duplicate_results, load_before=load_before, load_after=machine.load(),
                 compilers_seen=sorted(set(busy_before) | set(busy_after)), metrics=scraped,
                 when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)))
        return m
    finally:
        for p in procs:
            p.close()
        if sim:
            sim.close()
        if redis:
            redis.close()
        if moto:
            moto.close()


def idle_rss(seconds):
    """VmRSS of each worker after `seconds` idle against an empty queue."""
    log_dir = OUT / "logs" / "overhead-idle"
    log_dir.mkdir(parents=True, exist_ok=True)
    moto = harness.Moto(log_dir)
    sim = harness.Sim(OVERHEAD["sim"], log_dir)
    procs = {}
    try:
        q = harness.Queues(moto)
        scn = {"rate": OVERHEAD["rate"], "burst": OVERHEAD["burst"]}
        for impl in ("ours", "baseline"):
            procs[impl] = harness.Proc(worker_cmd(impl), worker_env(scn, moto, sim, q), log_dir / f"{impl}.log")
        time.sleep(seconds)
        return {impl: {"idle_rss_mib": p.status_mib("VmRSS:"), "idle_cpu_s": p.cpu_seconds()}
                for impl, p in procs.items()}
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(20)
            p.close()
        sim.close()
        moto.close()


def run_example(jobs, rate=None):
    import subprocess
    argv = [str(harness.RELEASE / "examples" / "overhead"), str(jobs), str(harness.RELEASE / "connect-sim")]
    out = subprocess.run(argv + ([rate] if rate else []),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_overhead(impls):
    res = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_before": machine.load(),
           "compilers_seen": machine.compilers()}
    print("  overhead: in-memory queue + connect-sim (Rust example)", flush=True)
    res["example"] = run_example(OVERHEAD["example_jobs"])
    print(f"  overhead: the same, paced by a {OVERHEAD['paced_rate']}/s quota", flush=True)
    res["example_paced"] = run_example(OVERHEAD["paced_jobs"], OVERHEAD["paced_rate"])
    print(f"  overhead: idle RSS after {OVERHEAD['idle_seconds']} s", flush=True)
    res["idle"] = idle_rss(OVERHEAD["idle_seconds"])
    scn = {"sim": OVERHEAD["sim"], "jobs": OVERHEAD["moto_jobs"], "replicas": 1, "rate": OVERHEAD["rate"],
           "burst": OVERHEAD["burst"], "allowed": OVERHEAD["moto_timeout_rate"]}
    res["moto"] = {}
    for impl in impls:
        print(f"  overhead: {OVERHEAD['moto_jobs']} jobs against moto, no quota ({impl})", flush=True)
        m = run_one("overhead", scn, impl)
        m.pop("timeline", None)
        res["moto"][impl] = m
    res["load_after"] = machine.load()
    res["compilers_seen"] = sorted(set(res["compilers_seen"]) | set(machine.compilers()))
    return res


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=" ".join(ORDER))
    ap.add_argument("--impl", choices=["ours", "baseline", "both"], default="both")
    args = ap.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in ORDER]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {ORDER}")
    names = args.scenarios or ORDER
    impls = ["ours", "baseline"] if args.impl == "both" else [args.impl]
    OUT.mkdir(parents=True, exist_ok=True)
    CHARTS.mkdir(parents=True, exist_ok=True)
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    stored.setdefault("scenarios", {})
    started = time.time()
    for name in names:
        print(f"== {name}", flush=True)
        if name == "overhead":
            stored["overhead"] = run_overhead(impls)
        else:
            for impl in [i for i in impls if i in SCENARIOS[name].get("impls", impls)]:
                m = run_one(name, SCENARIOS[name], impl)
                stored["scenarios"].setdefault(name, {})[impl] = m
                print(f"  [{name}/{impl}] {report.one_line(m)}", flush=True)
            runs = [(LABELS[i], stored["scenarios"][name][i]) for i in ("ours", "baseline")
                    if i in stored["scenarios"][name]]
            (CHARTS / f"{name}.svg").write_text(charts.render(name, SCENARIOS[name], runs))
        RESULTS.write_text(json.dumps(stored, indent=1))
    stored["meta"] = machine.describe(["bench/run.sh", *argv], time.time() - started)
    RESULTS.write_text(json.dumps(stored, indent=1))
    report.write(stored, harness.ROOT / "BENCHMARKS.md")
    print(f"wrote BENCHMARKS.md and bench/charts/ in {time.time() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
