"""Benchmark orchestrator (started by bench/run.sh, which builds the release binaries first).

Usage: bench/run.sh [SCENARIO ...] [--impl ours|baseline|both] [--seeds N]
Scenarios: see scenarios.ORDER (default: all, in that order); each runs with seeds 1..N (the
scenario's own `seeds`, or --seeds).

Per scenario and implementation (ours = target/release/resume-chat-worker, baseline =
bench/baseline_worker.py): a fresh moto and connect-sim, the backlog enqueued first, connect-sim's
counters reset, the workers started (that instant is t=0), results drained until every job has
one (or a timeout), workers stopped with SIGTERM, then `/_sim/stats` read: 429 counts and the
per-second timeline come from the simulator, never from the workers. Raw numbers are merged into
bench/out/results.json (so a partial run keeps the other scenarios' last numbers), logs go to
bench/out/logs/, charts to bench/charts/<scenario>.svg (to bench/out/charts/ when results.json
lacks one of the scenario's workers), and report.py rewrites its own section of BENCHMARKS.md.
bench/out/ is not committed: when results.json lacks scenarios BENCHMARKS.md reports (a fresh
clone), the section goes to bench/out/BENCHMARKS.partial.md instead.
"""

import argparse
import json
import os
import pathlib
import random
import re
import sys
import threading
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import analysis  # noqa: E402
import charts  # noqa: E402
import harness  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402
import sqs_proxy  # noqa: E402
from scenarios import ORDER, OVERHEAD, SCENARIOS  # noqa: E402

OUT = harness.ROOT / "bench" / "out"
CHARTS = harness.ROOT / "bench" / "charts"
RESULTS = OUT / "results.json"
LABELS = {"ours": "resume-chat-worker", "baseline": "boto3 adaptive baseline"}


def job_body(n, action="startPersistentChat", instance=None):
    job = {"jobId": f"bench-{n}", "sourceContactId": f"src-{n}"}
    if action == "associatePersistentContact":
        job.update(action=action, initialContactId=f"init-{n}")
    else:
        job["participant"] = {"displayName": "B"}
    if instance:
        job["instanceId"] = instance
    return json.dumps(job, separators=(",", ":"))


def job_kinds(scn, seed):
    """(action, instanceId) of each job: the scenario's `mix`, interleaved in a seeded order."""
    n = scn["jobs"]
    mix = scn.get("mix") or [("startPersistentChat", None, 1)]
    total = sum(w for _, _, w in mix)
    kinds = []
    for action, inst, w in mix:
        kinds += [(action, inst)] * round(n * w / total)
    kinds = (kinds + [kinds[-1]] * n)[:n]
    random.Random(seed).shuffle(kinds)
    return kinds


def worker_cmd(impl):
    if impl == "ours":
        return [str(harness.RELEASE / "resume-chat-worker")]
    return [str(harness.VENV / "bin" / "python"), str(harness.ROOT / "bench" / "baseline_worker.py")]


def worker_env(scn, moto_url, sim, q):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "JOBS_QUEUE_URL": q.jobs, "RESULTS_QUEUE_URL": q.results, "DEAD_LETTER_QUEUE_URL": q.dlq,
        "CONNECT_INSTANCE_ID": "inst-1", "CONNECT_CONTACT_FLOW_ID": "flow-1",
        "AWS_ENDPOINT_URL_SQS": moto_url, "AWS_ENDPOINT_URL_CONNECT": sim.url,
        "AWS_REGION": harness.REGION, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
        "START_CHAT_RATE": scn["rate"], "START_CHAT_BURST": scn["burst"], "MAX_IN_FLIGHT": scn.get("max_in_flight", "64"),
        "METRICS_ADDR": f"127.0.0.1:{harness.free_port()}", "LOG_FORMAT": "json", "SHUTDOWN_GRACE_SECONDS": "10",
        "BASELINE_THREADS": str(scn.get("baseline_threads", 8)),
    }
    env.update(scn.get("env", {}))
    # Experiments: `BENCH_WORKER_ENV="NAME=value ..."` adds settings to every worker of ours.
    env.update(kv.split("=", 1) for kv in os.environ.get("BENCH_WORKER_ENV", "").split() if "=" in kv)
    return env


def sqs_requests(scraped):
    """SQS requests of all replicas by operation, from their last scrapes (a killed replica's
    requests before the kill are not in them)."""
    total = {}
    for lines in scraped:
        for line in lines:
            if line.startswith("resume_chat_sqs_requests_total"):
                op = line.split('operation="', 1)[-1].split('"', 1)[0]
                total[op] = total.get(op, 0) + int(float(line.rpartition(" ")[2]))
    return total


def contact_events_read(scraped):
    """Contact-event messages our replicas read, by kind (chat_ended, duplicate, other, malformed),
    from their last scrapes."""
    total = {}
    for lines in scraped:
        for line in lines:
            if line.startswith("resume_chat_contact_events_total"):
                kind = line.split('kind="', 1)[-1].split('"', 1)[0]
                total[kind] = total.get(kind, 0) + int(float(line.rpartition(" ")[2]))
    return total


def scrape(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return []
    keep = ("resume_chat_connect_calls_total", "resume_chat_jobs_requeued_total", "resume_chat_jobs_completed_total",
            "resume_chat_allowed_rate", "resume_chat_rate_sharers", "resume_chat_jobs_in_flight",
            "resume_chat_sqs_requests_total", "resume_chat_contact_events_total")
    return [line for line in text.splitlines() if line.startswith(keep)]


class Sampler:
    """Scrapes every replica of ours once a second during a run: the per-replica timeline (allowed
    start rate, sharers estimate, jobs in flight, StartChatContact calls by code) that end-of-run
    readings cannot show, e.g. how a fleet's shares come apart. Written to the run's record as
    `replica_timeline`, rows of (seconds since t0, replica, allowed, sharers, in flight, {code: calls})."""

    def __init__(self, addrs, t0, every=1.0):
        self.rows, self.addrs, self.t0 = [], addrs, t0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self.thread.start()

    def _run(self, every):
        while not self.done.wait(every):
            for r, addr in enumerate(self.addrs):
                row = self._sample(scrape(addr))
                if row:
                    self.rows.append([round(time.time() - self.t0, 2), r, *row])

    @staticmethod
    def _sample(lines):
        allowed = sharers = in_flight = None
        calls = {}
        for line in lines:
            name, _, value = line.rpartition(" ")
            try:
                v = float(value)
            except ValueError:
                continue
            if name.startswith("resume_chat_allowed_rate") and "StartChatContact" in name:
                allowed = v
            elif name.startswith("resume_chat_rate_sharers"):
                sharers = v
            elif name.startswith("resume_chat_jobs_in_flight"):
                in_flight = v
            elif name.startswith("resume_chat_connect_calls_total") and "StartChatContact" in name:
                code = name.split('code="', 1)[-1].split('"', 1)[0]
                calls[code] = int(v)
        return None if allowed is None else [allowed, sharers, in_flight, calls]

    def stop(self):
        self.done.set()
        self.thread.join(5)
        return self.rows


def sim_flags(scn, seed, contact_events_url=None):
    """The scenario's connect-sim flags with this run's seed, and the connect window off where the
    binary has one (chats then live their configured lifetimes); with contact events, the queue
    they go to and their delivery delay."""
    flags = list(scn["sim"])
    if "--seed" in flags:
        i = flags.index("--seed")
        del flags[i:i + 2]
    flags += ["--seed", str(seed)]
    phase = random.Random(f"background-phase-{seed}")
    if scn.get("background_phase") and "--background-schedule" in flags:
        i = flags.index("--background-schedule") + 1
        flags[i] = shift_schedule(flags[i], phase)
    elif scn.get("background_phase") and "--background-rate" in flags:
        # A steady other caller: the same rate from a phase drawn within its first period on
        # (a schedule that never ends; the analysis reads the scenario's own flags, so no leaving).
        i = flags.index("--background-rate")
        rate = flags[i + 1]
        del flags[i:i + 2]
        flags += ["--background-schedule",
                  shift_schedule(f"0:{STEADY_UNTIL_S}:{rate}", phase)]
    if harness.sim_has_flag("--connect-window-seconds"):
        flags += ["--connect-window-seconds", "0"]
    if scn.get("contact_events"):
        lo, hi = scn["contact_events"]
        flags += ["--contact-events-queue-url", contact_events_url, "--contact-events-delay-ms", f"{lo}:{hi}"]
    return flags


# Long past any run's end: a steady other caller's schedule.
STEADY_UNTIL_S = 100_000


def shift_schedule(schedule, rng):
    """Each FROM:TO:RATE segment arriving later by a phase drawn within its first period (`1 /
    RATE`), its leaving time kept. The other caller's calls are evenly spaced from its arrival and
    ours from our start, so with a fixed arrival every seed met our pacer in about the same phase
    and the seeds did not average over it (the rate scenarios draw it per seed too)."""
    out = []
    for seg in schedule.split(","):
        start, stop, rate = (float(v) for v in seg.split(":"))
        phase = rng.random() / rate if rate > 0 else 0.0
        out.append(f"{start + phase:.4f}:{stop:g}:{rate:g}")
    return ",".join(out)


# connect-sim signs its contact events (SigV4) with the standard env credentials, as the workers do.
SIM_AWS_ENV = {"AWS_REGION": harness.REGION, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_EC2_METADATA_DISABLED": "true"}


class Fleet:
    """The replicas of one run: started at their offsets, one maybe SIGKILLed and restarted, on a
    timer thread so the drain loop keeps its pace."""

    def __init__(self, scn, impl, envs, log_dir, t0, on_kill):
        self.procs, self.all = [None] * len(envs), []
        self.events = []
        self.lock = threading.Lock()
        starts = scn.get("starts") or [0] * len(envs)
        kill = scn.get("kill")
        plan = [(starts[r], "start", r) for r in range(len(envs))]
        if kill:
            r, at, after = kill
            plan += [(at, "kill", r), (at + after, "restart", r)]
        plan.sort(key=lambda p: p[0])

        def launch(r, tag):
            p = harness.Proc(worker_cmd(impl), envs[r], log_dir / f"worker-{r}{tag}.log")
            with self.lock:
                self.procs[r] = p
                self.all.append(p)

        def run():
            for at, what, r in plan:
                time.sleep(max(0.0, t0 + at - time.time()))
                if self.stopping:
                    return
                if what == "start":
                    launch(r, "")
                elif what == "kill":
                    on_kill()
                    self.procs[r].kill()
                else:
                    launch(r, "-restarted")
                self.events.append((what, r, time.time() - t0))

        self.stopping = False
        immediate = [p for p in plan if p[0] == 0 and p[1] == "start"]
        for _, _, r in immediate:
            launch(r, "")
            self.events.append(("start", r, time.time() - t0))
        rest = [p for p in plan if p not in immediate]
        plan[:] = rest
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def live(self):
        with self.lock:
            return [p for p in self.procs if p is not None and p.proc.poll() is None]

    def stop(self):
        self.stopping = True
        procs = self.live()
        for p in procs:
            p.terminate()
        return [p.wait(40) for p in procs]

    def close(self):
        self.stopping = True
        for p in self.all:
            p.close()


def trickle(q, bodies, rate, seed, sent_at, t0):
    """Sends the jobs one by one at Poisson arrivals (rate per second), recording when each one was
    in the queue (the send returned)."""
    rng = random.Random(seed)
    due = t0
    for job_id, body in bodies:
        due += rng.expovariate(rate)
        time.sleep(max(0.0, due - time.time()))
        q.sqs.send_message(QueueUrl=q.jobs, MessageBody=body)
        sent_at[job_id] = time.time()


def run_one(name, scn, impl, seed=1):
    """One scenario with one implementation and one seed; returns the analysed metrics."""
    log_dir = OUT / "logs" / f"{name}-{impl}-seed{seed}"
    log_dir.mkdir(parents=True, exist_ok=True)
    n = scn["jobs"]
    moto = sim = redis = proxy = fleet = sampler = None
    try:
        load_before, busy_before = machine.load(), machine.compilers()
        moto = harness.Moto(log_dir)
        events = bool(scn.get("contact_events"))
        q = harness.Queues(moto, contact_events=events)
        sim = harness.Sim(sim_flags(scn, seed, q.contact_events), log_dir, SIM_AWS_ENV if events else None)
        if scn.get("redis"):
            redis = harness.Redis(log_dir)
        worker_sqs = moto.url
        if scn.get("outage"):
            proxy = sqs_proxy.Proxy(moto.port, "results", 0)
            worker_sqs = proxy.url
        kinds = job_kinds(scn, seed)
        bodies = [(f"bench-{i}", job_body(i, *kinds[i])) for i in range(n)]
        # A trickle sends its jobs one by one during the run, after `preload` of them queued up front.
        preload = scn.get("preload", 0) if scn.get("trickle") else n
        t_enq = time.time()
        if preload:
            q.enqueue([b for _, b in bodies[:preload]])
        enqueue_s = time.time() - t_enq
        sim.reset()
        t0 = time.time()
        sent_at = {}
        if scn.get("trickle"):
            threading.Thread(target=trickle, args=(q, bodies[preload:], scn["trickle"], seed, sent_at, t0),
                             daemon=True).start()
        if proxy and scn.get("outage"):
            proxy.schedule(t0, *scn["outage"])
        envs = []
        for r in range(scn["replicas"]):
            env = worker_env(scn, worker_sqs, sim, q)
            if redis:
                env["REDIS_URL"] = redis.url
            if q.contact_events and impl == "ours":
                env["CONTACT_EVENTS_QUEUE_URL"] = q.contact_events
            envs.append(env)
        kill = {}

        def on_kill():
            kill.update(at=time.time(), pending=sorted(set(job_id for job_id, _ in bodies) - set(q.seen.copy())))

        fleet = Fleet(scn, impl, envs, log_dir, t0, on_kill)
        sampler = Sampler([e["METRICS_ADDR"] for e in envs], t0) if impl == "ours" else None
        last = [time.time()]

        def progress(done):
            if time.time() - last[0] >= 10:
                last[0] = time.time()
                print(f"  [{name}/{impl}/seed {seed}] {done}/{n} results after {time.time() - t0:.0f} s", flush=True)

        wanted = [job_id for (job_id, _), k in zip(bodies, kinds) if not scn.get("wait_for")
                  or tuple(k) == tuple(scn["wait_for"])]
        timeout = scn.get("timeout", 3 * n / scn["allowed"] + 90)
        complete = q.drain_until(wanted, timeout, progress)
        if scn.get("linger"):
            end = time.time() + scn["linger"]
            while time.time() < end:
                q.drain_once(wait=1)
        finished_at = time.time()
        procs = fleet.live()
        cpu = [p.cpu_seconds() for p in procs]
        rss = [p.status_mib("VmHWM:") for p in procs]
        scraped = [scrape(e["METRICS_ADDR"]) for e in envs] if impl == "ours" else []
        timeline = sampler.stop() if sampler else []
        busy_after = machine.compilers()
        exits = fleet.stop()
        stats = sim.stats()
        if os.environ.get("BENCH_KEEP_STATS"):
            # Diagnosis: connect-sim's whole stats (every call of ours with its instant) per run.
            kept = OUT / "stats" / f"{name}-{impl}-seed{seed}.json"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(json.dumps(stats))
        # Late or duplicate results, and whatever moto had not delivered yet: with the workers
        # stopped, drain the results queue until it is empty (moto slows as a queue grows, so a
        # long run's results can outpace the drain while the workers run; a result still in the
        # queue is not a lost job).
        q.drain_rest(limit_s=300)
        ctx = {"t0": t0, "sent_at": sent_at, "kinds": {job_id: k for (job_id, _), k in zip(bodies, kinds)},
               "starts": [at for what, _, at in fleet.events if what == "start"],
               "kill": kill or None, "outage": scn.get("outage"), "seed": seed, "wanted": wanted,
               "events": fleet.events, "finished_at": finished_at}
        m = analysis.analyse(scn, n, t0, stats, q.seen, q.depth(q.jobs), q.depth(q.dlq),
                             sum(c for c in cpu if c is not None), max((r for r in rss if r is not None), default=None),
                             finished_at, ctx)
        if q.contact_events:
            # What connect-sim had sent when the workers stopped (chats still ending send more), what
            # the workers read by kind, and what is left unread in the queue.
            m["contact_events"] = dict(stats.get("contact_events", {}), left_in_queue=q.depth(q.contact_events),
                                       worker_read=contact_events_read(scraped) or None)
        m.update(impl=impl, seed=seed, complete=complete, exit_codes=exits, enqueue_s=enqueue_s,
                 duplicate_results=q.duplicate_results, load_before=load_before, load_after=machine.load(),
                 compilers_seen=sorted(set(busy_before) | set(busy_after)), metrics=scraped,
                 outage_refused=proxy.refused if proxy else None, events=fleet.events, replica_timeline=timeline,
                 sqs_requests=sqs_requests(scraped) or None,
                 sqs_requests_per_job=round(sum(sqs_requests(scraped).values()) / n, 2) if scraped else None,
                 when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)))
        return m
    finally:
        if sampler:
            sampler.stop()
        if fleet:
            fleet.close()
        if proxy:
            proxy.close()
        if sim:
            sim.close()
        if redis:
            redis.close()
        if moto:
            moto.close()


def idle_rss(seconds, warm_up=5):
    """VmRSS of each worker after `warm_up` + `seconds` idle against an empty queue, and its CPU over the last
    `seconds` (start-up excluded) as a percentage of one core."""
    log_dir = OUT / "logs" / "overhead-idle"
    log_dir.mkdir(parents=True, exist_ok=True)
    moto = harness.Moto(log_dir)
    sim = harness.Sim(OVERHEAD["sim"], log_dir)
    procs = {}
    try:
        q = harness.Queues(moto)
        scn = {"rate": OVERHEAD["rate"], "burst": OVERHEAD["burst"]}
        for impl in ("ours", "baseline"):
            procs[impl] = harness.Proc(worker_cmd(impl), worker_env(scn, moto.url, sim, q), log_dir / f"{impl}.log")
        time.sleep(warm_up)
        before = {impl: p.cpu_seconds() for impl, p in procs.items()}
        time.sleep(seconds)

        def pct(impl, p):
            now, then = p.cpu_seconds(), before[impl]
            return None if now is None or then is None else round((now - then) / seconds * 100, 3)
        return {impl: {"idle_rss_mib": p.status_mib("VmRSS:"), "idle_cpu_s": p.cpu_seconds(),
                       "idle_cpu_pct": pct(impl, p)}
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
        m.pop("calls", None)
        res["moto"][impl] = m
    res["load_after"] = machine.load()
    res["compilers_seen"] = sorted(set(res["compilers_seen"]) | set(machine.compilers()))
    return res


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=" ".join(ORDER))
    ap.add_argument("--impl", choices=["ours", "baseline", "both"], default="both")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds per scenario (default: each scenario's own, 1-8); seeds are 1..N")
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
    # The binaries were built from the work tree as it is now (run.sh): record that commit, not
    # the one checked out when the runs end.
    built_from = machine.commit()
    for name in names:
        print(f"== {name}", flush=True)
        if name == "overhead":
            stored["overhead"] = run_overhead(impls)
        else:
            scn = SCENARIOS[name]
            seeds = range(1, 1 + (args.seeds or scn.get("seeds", 1)))
            for impl in [i for i in impls if i in scn.get("impls", impls)]:
                runs = []
                for seed in seeds:
                    m = run_one(name, scn, impl, seed)
                    m["commit"] = built_from
                    runs.append(m)
                    print(f"  [{name}/{impl}/seed {seed}] {report.one_line(m)}", flush=True)
                stored["scenarios"].setdefault(name, {})[impl] = {"runs": runs}
                RESULTS.write_text(json.dumps(stored, indent=1))
            runs = [(LABELS[i], report.runs_of(stored["scenarios"][name][i])[0]) for i in ("ours", "baseline")
                    if i in stored["scenarios"][name]]
            # A chart without a worker the scenario has (an `--impl ours` run on a fresh clone,
            # whose results.json holds no baseline) would replace the committed two-panel one.
            whole = all(i in stored["scenarios"][name] for i in scn.get("impls", ("ours", "baseline")))
            charts_dir = CHARTS if whole else OUT / "charts"
            charts_dir.mkdir(parents=True, exist_ok=True)
            (charts_dir / f"{name}.svg").write_text(charts.render(name, SCENARIOS[name], runs))
        RESULTS.write_text(json.dumps(stored, indent=1))
    stored["meta"] = machine.describe(["bench/run.sh", *argv], time.time() - started)
    stored["meta"]["commit"] = built_from
    RESULTS.write_text(json.dumps(stored, indent=1))
    target = harness.ROOT / "BENCHMARKS.md"
    missing = scenarios_only_in(target, stored)
    if missing:
        # bench/out/ is not committed: on a fresh clone results.json holds only this run, and
        # rewriting BENCHMARKS.md from it would drop every other scenario's numbers.
        target = OUT / "BENCHMARKS.partial.md"
        print(f"results.json lacks {', '.join(sorted(missing))} that BENCHMARKS.md reports (an earlier "
              f"run's results.json is not here): wrote {target.relative_to(harness.ROOT)} instead; "
              f"merge its rows by hand or run those scenarios too", flush=True)
    report.write(stored, target)
    print(f"wrote {target.name} and the charts in {time.time() - started:.0f} s", flush=True)
    return 0


def scenarios_only_in(benchmarks_md, stored):
    """Scenarios whose rows BENCHMARKS.md's results table has but `stored` does not."""
    if not benchmarks_md.exists():
        return set()
    shown = set(re.findall(r"^\| ([a-z0-9-]+) \| (?:ours|boto3 adaptive) \|", benchmarks_md.read_text(), re.M))
    return shown - set(stored.get("scenarios", {}))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
