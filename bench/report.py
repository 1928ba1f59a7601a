"""Writes the benchmark's section of BENCHMARKS.md from bench/out/results.json.

Only the text between the two marker comments (BEGIN/END below) is replaced, so other sections
(e.g. `## connect-sim throughput`) and the hand-written findings after the block stay intact. When
the markers are missing, the section is appended at the end of the file.
"""

from scenarios import EVERYWHERE, ORDER, OVERHEAD, SCENARIOS, contact_events_note, meets

BEGIN = "<!-- bench/run.sh: generated, begin -->"
END = "<!-- bench/run.sh: generated, end -->"
HEADING = "## Scenario benchmarks: resume-chat-worker vs a boto3 adaptive-retry baseline"
IMPLS = [("ours", "ours"), ("baseline", "boto3 adaptive")]


def frac(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def pct(v):
    return "–" if v is None else f"{v * 100:.2f} %"


def secs(v):
    return "–" if v is None else f"{v:.1f} s"


def num(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def runs_of(entry):
    """The per-seed runs of one scenario and implementation (older results.json: one run)."""
    return entry["runs"] if isinstance(entry, dict) and "runs" in entry else [entry]


EXTRA = ["recovery_s", "instance_finish_ratio", "kill_recovery_s", "outage_lag_s", "job_overhead_p50_ms",
         "job_overhead_p99_ms", "job_received_p50_ms", "startup_429_per_replica", "throttled_ratio_after_startup",
         "sqs_requests_per_job"]


def one_line(m):
    extra = ", ".join(f"{k} {num(m[k], 3)}" for k in EXTRA if m.get(k) is not None)
    return (f"goodput {frac(m['goodput'])}, 429 {pct(m['throttled_ratio'])}, LE {pct(m['limit_exceeded_ratio'])}, "
            f"bg refused {pct(m['background_refused_ratio'])}, p50/p99 {secs(m['p50_s'])}/{secs(m['p99_s'])}, "
            f"lost {m['lost']}, dup chats {m['duplicate_chats']}, results {m['results']}/{m['jobs']}, "
            f"outcomes {m['outcomes']}, cpu {num(m['worker_cpu_ms_per_job'], 2)} ms/job"
            + (f"; {extra}" if extra else "") + events_part(m))


def events_part(m):
    """Contact events of a run that had them: sent / failed by connect-sim, left unread in the queue."""
    e = m.get("contact_events")
    if not e:
        return ""
    read = e.get("worker_read")
    return (f"; contact events sent {e.get('sent')}, failed {e.get('failed')}, read by the workers "
            f"{read if read else 0}, left in the queue {e.get('left_in_queue')}")


def _mark(ok):
    return "" if ok is None else (" ✓" if ok else " ✗")


def _is_pct(key):
    """Ratios of calls are shown in percent; B's finish ratio is a plain factor."""
    return "_ratio" in key and not key.startswith("instance_finish")


def _fmt_metric(key, v):
    if _is_pct(key):
        return pct(v)
    if key in ("lost", "duplicate_chats"):
        return str(v)
    if key == "goodput":
        return frac(v)
    return num(v, 2)


def _fmt_target(key, op, t):
    shown = f"{t * 100:g} %" if _is_pct(key) else f"{t:g}"
    return f"{op.replace('>=', '≥').replace('<=', '≤').replace('==', '=')} {shown}"


def goodput_cell(m):
    if m.get("capacity_used") is not None:
        return (f"{frac(m['goodput'])} (chats in use; starts {num(m['goodput_rate'], 2)}/s of "
                f"{m['allowed_rate']:g}/s = {frac(m.get('start_rate_fraction'))})")
    return f"{frac(m['goodput'])} ({num(m['goodput_rate'], 2)}/s of {m['allowed_rate']:g}/s)"


def _median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    k = len(vals) // 2
    return vals[k] if len(vals) % 2 else (vals[k - 1] + vals[k]) / 2


def _spread(runs, key, fmt):
    """Median, and the range over the seeds when there are several."""
    vals = [r.get(key) for r in runs if r.get(key) is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(_median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"


def results_table(scn_results):
    rows = ["| scenario | worker | seeds | goodput | 429 ratio | LimitExceeded ratio | other caller refused | p50 / p99 "
            "job latency | lost | duplicate chats | results: succeeded / failed | run time | worker CPU per job† |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ORDER:
        if name not in scn_results:
            continue
        for impl, label in IMPLS:
            entry = scn_results[name].get(impl)
            if not entry:
                continue
            runs = runs_of(entry)
            results = sum(m["results"] for m in runs)
            succeeded = sum(m["succeeded"] for m in runs)
            codes = {}
            for m in runs:
                for k, v in m["outcomes"].items():
                    if k != "succeeded":
                        codes[k.split(":", 1)[1]] = codes.get(k.split(":", 1)[1], 0) + v
            failed_codes = ", ".join(f"{k} {v}" for k, v in codes.items())
            missing = sum(m["missing_results"] for m in runs)
            missing_s = f", **{missing} without result**" if missing else ""
            seeds = ", ".join(str(m.get("seed", 1)) for m in runs)
            rows.append(
                f"| {name} | {label} | {seeds} | {_spread(runs, 'goodput', frac)} "
                f"| {_spread(runs, 'throttled_ratio', pct)} "
                f"| {_spread(runs, 'limit_exceeded_ratio', pct)} "
                f"| {_spread(runs, 'background_refused_ratio', pct)} "
                f"| {_spread(runs, 'p50_s', secs)} / {_spread(runs, 'p99_s', secs)} "
                f"| {sum(m['lost'] for m in runs)} | {sum(m['duplicate_chats'] for m in runs)} "
                f"| {succeeded} / {results - succeeded}{' (' + failed_codes + ')' if failed_codes else ''}{missing_s} "
                f"| {_spread(runs, 'duration_s', secs)} | {_spread(runs, 'worker_cpu_ms_per_job', lambda v: num(v, 2))} ms |")
    return rows


def target_cell(runs, key, op, t):
    """The worst seed's value, ✓ only when every seed meets the target, and each seed's value."""
    vals = [m.get(key) for m in runs]
    if all(v is None for v in vals) and key not in ("lost", "duplicate_chats"):
        return "– ✗ (not measured)" if runs else "–"
    known = [v for v in vals if v is not None]
    worst = (min(known) if op == ">=" else max(known)) if known else None
    ok = None if worst is None else all(v is not None and meets(v, op, t) for v in vals)
    censored = {id(m) for m in runs if m.get(key + "_censored")}

    def show(m, v):
        return (("≥ " if id(m) in censored else "") + _fmt_metric(key, v)) if v is not None else "–"

    worst_m = next((m for m in runs if m.get(key) == worst), None)
    cell = (show(worst_m, worst) if worst_m else _fmt_metric(key, worst)) + _mark(ok)
    if len(vals) > 1:
        cell += " (" + ", ".join(show(m, v) for m, v in zip(runs, vals)) + ")"
    return cell


def targets_table(stored):
    rows = ["| scenario | target (worst seed; every seed must meet it) | resume-chat-worker | boto3 adaptive baseline |",
            "|---|---|---|---|"]
    scn_results = stored.get("scenarios", {})
    for name in ORDER:
        if name == "overhead" or name not in scn_results:
            continue
        for key, op, t, label in SCENARIOS[name]["targets"] + EVERYWHERE:
            cells = []
            for impl, _ in IMPLS:
                entry = scn_results[name].get(impl)
                cells.append("–" if entry is None else target_cell(runs_of(entry), key, op, t))
            rows.append(f"| {name} | {label} {_fmt_target(key, op, t)} | {cells[0]} | {cells[1]} |")
    o = stored.get("overhead")
    if o:
        cpu = o["example"]["cpu_ms_per_job"]
        rows.append(f"| overhead | worker CPU per job ≤ 1 ms (in-memory queue, Rust example) | {num(cpu, 3)} ms"
                    f"{_mark(meets(cpu, '<=', 1.0))} | – |")
        p = o.get("example_paced")
        if p:
            v = p["cpu_ms_per_job"]
            rows.append(f"| overhead | the same, paced by a {p['rate']}/s quota (not the issue's definition) | {num(v, 3)} ms"
                        f"{_mark(meets(v, '<=', 1.0))} | – |")
        moto = o.get("moto", {})
        cells = []
        for impl, _ in IMPLS:
            v = moto.get(impl, {}).get("worker_cpu_ms_per_job")
            cells.append(f"{num(v, 2)} ms{_mark(meets(v, '<=', 1.0))}" if v is not None else "–")
        rows.append(f"| overhead | worker process CPU per job ≤ 1 ms (against moto, incl. its SQS calls) | {cells[0]} "
                    f"| {cells[1]} |")
        cells = []
        for impl, _ in IMPLS:
            v = o.get("idle", {}).get(impl, {}).get("idle_rss_mib")
            cells.append(f"{num(v)} MiB{_mark(meets(v, '<=', 30.0))}" if v is not None else "–")
        rows.append(f"| overhead | idle RSS ≤ 30 MiB | {cells[0]} | {cells[1]} |")
        cells = []
        for impl, _ in IMPLS:
            v = o.get("idle", {}).get(impl, {}).get("idle_cpu_pct")
            cells.append(f"{num(v, 2)} %{_mark(meets(v, '<=', 1.0))}" if v is not None else "–")
        rows.append(f"| overhead | idle CPU ≤ 1 % of a core | {cells[0]} | {cells[1]} |")
    return rows


def overhead_section(o):
    e = o["example"]
    idle = o.get("idle", {})
    moto = o.get("moto", {})
    lines = [
        f"Rust example `bench/overhead.rs` (`pipeline::Worker` + `MemoryQueue` + the real `AwsConnect` client against a "
        f"`connect-sim` child process with no quota, MAX_IN_FLIGHT 64, JSON logs on): {e['jobs']} jobs, "
        f"{e['succeeded']} succeeded, in {e['seconds']:.1f} s ({e['jobs'] / e['seconds']:.0f} jobs/s); "
        f"sim chats {e['sim_ok']}, duplicates {e['sim_duplicate_source_chats']}.",
        "",
        "| | resume-chat-worker | boto3 adaptive baseline |",
        "|---|---|---|",
        f"| CPU per 1,000 jobs, in-memory queue (process utime+stime) | {e['cpu_seconds_per_1000_jobs']:.3f} s | – |",
        f"| peak RSS (VmHWM) during that run | {e['peak_rss_mib']:.1f} MiB | – |",
    ]
    p = o.get("example_paced")
    if p:
        lines.append(f"| the same paced by a {p['rate']}/s quota ({p['jobs']} jobs in {p['seconds']:.0f} s): CPU per "
                     f"1,000 jobs | {p['cpu_seconds_per_1000_jobs']:.3f} s | – |")
    row_cpu, row_rss, row_rate, row_idle, row_idle_cpu = [], [], [], [], []
    for impl, _ in IMPLS:
        m = moto.get(impl)
        row_cpu.append(f"{m['worker_cpu_ms_per_job']:.2f} s" if m and m["worker_cpu_ms_per_job"] is not None else "–")
        row_rss.append(f"{m['worker_peak_rss_mib']:.1f} MiB" if m and m["worker_peak_rss_mib"] else "–")
        row_rate.append(f"{m['jobs_per_s']:.0f} jobs/s ({m['results']}/{m['jobs']} results)" if m and m["jobs_per_s"]
                        else "–")
        v = idle.get(impl, {}).get("idle_rss_mib")
        row_idle.append(f"{v:.1f} MiB" if v is not None else "–")
        v = idle.get(impl, {}).get("idle_cpu_pct")
        row_idle_cpu.append(f"{v:.2f} %" if v is not None else "–")
    n = OVERHEAD["moto_jobs"]
    lines += [
        f"| worker process CPU per 1,000 jobs against moto ({n} jobs, incl. its own SQS calls) | {row_cpu[0]} | "
        f"{row_cpu[1]} |",
        f"| peak RSS against moto | {row_rss[0]} | {row_rss[1]} |",
        f"| throughput against moto (moto's SQS is the bound) | {row_rate[0]} | {row_rate[1]} |",
        f"| idle RSS (VmRSS after {OVERHEAD['idle_seconds'] + 5} s idle, polling an empty queue on moto) | {row_idle[0]} | "
        f"{row_idle[1]} |",
        f"| idle CPU (% of one core over {OVERHEAD['idle_seconds']} s after a 5 s start-up, the same processes) | "
        f"{row_idle_cpu[0]} | {row_idle_cpu[1]} |",
    ]
    return lines


def contention(stored):
    notes = []
    for name, by_impl in stored.get("scenarios", {}).items():
        for impl, m in ((i, r) for i, e in by_impl.items() for r in runs_of(e)):
            if m.get("compilers_seen") or max(m.get("load_before", 0), m.get("load_after", 0)) > 2.5:
                notes.append(f"{name}/{impl} (load {m.get('load_before')}→{m.get('load_after')}"
                             f"{'; ' + ' '.join(m['compilers_seen']) if m.get('compilers_seen') else ''})")
    o = stored.get("overhead")
    if o and (o.get("compilers_seen") or max(o.get("load_before", 0), o.get("load_after", 0)) > 2.5):
        notes.append(f"overhead (load {o.get('load_before')}→{o.get('load_after')}"
                     f"{'; ' + ' '.join(o['compilers_seen']) if o.get('compilers_seen') else ''})")
    return notes


def commits_note(stored):
    """Which commit the runs were built from: one, or (a partial run keeps the other scenarios'
    stored results) the commit of most of them and, listed, the scenarios built from others."""
    last = stored.get("meta", {}).get("commit")
    by_commit = {}
    for name, by_impl in stored.get("scenarios", {}).items():
        for impl, entry in by_impl.items():
            for m in runs_of(entry):
                by_commit.setdefault(m.get("commit") or last, set()).add(f"{name}/{impl}")
    if len(by_commit) <= 1:
        return f"Commit: `{next(iter(by_commit), last)}`"
    most = max(by_commit, key=lambda c: len(by_commit[c]))
    listed = "; ".join(f"`{c}` for {', '.join(sorted(v))}" for c, v in sorted(by_commit.items()) if c != most)
    return f"Commits: {listed}; `{most}` for the rest"


def section(stored):
    meta = stored.get("meta", {})
    scn_results = stored.get("scenarios", {})
    when = sorted({m["when"][:16].replace("T", " ") for r in scn_results.values() for e in r.values()
                   for m in runs_of(e)})
    out = [
        BEGIN,
        f"Command: `{meta.get('command', 'bench/run.sh')}` (took {meta.get('seconds', '?')} s). Date: {meta.get('date')}"
        f"{f'; scenario runs from {when[0]} to {when[-1]} UTC' if when else ''}. {commits_note(stored)}.",
        "",
        f"Machine: {meta.get('nproc')} CPUs ({meta.get('cpu')}), {meta.get('ram_gib')} GiB RAM, Linux "
        f"{meta.get('kernel')}; {meta.get('rustc')}; {meta.get('python')}. Everything (moto, connect-sim, the "
        f"workers) shares these CPUs.",
        "",
    ]
    busy = contention(stored)
    out += [("CPU contention (1-minute load average before→after; other people's compiler processes seen): "
             + ", ".join(busy) + ". Rates and ratios come from connect-sim's clock and hardly depend on it; "
             "CPU seconds and latencies of those runs are less trustworthy.") if busy else "CPU contention: none seen (no compiler running, load ≤ 2.5).", ""]
    out += ["Each scenario ran once per worker and seed (seeds 1..N: connect-sim's `--seed`, the job order, the "
            "arrivals; the seeds column says which ran), each time on a fresh moto and connect-sim, backlog enqueued "
            "first (trickle: sent one by one). run.py adds `--seed N` and, where connect-sim has it, "
            "`--connect-window-seconds 0`. Scenarios:", ""]
    for name in ORDER:
        if name in SCENARIOS:
            s = SCENARIOS[name]
            env = "".join(f" {k}={v}" for k, v in s.get("env", {}).items())
            out.append(f"- **{name}**: {s['title']}; `connect-sim {' '.join(s['sim'])}`; workers: START_CHAT_RATE="
                       f"{s['rate']} START_CHAT_BURST={s['burst']}{env} MAX_IN_FLIGHT=64 (ours), "
                       f"{s.get('baseline_threads', 8)} threads (baseline), "
                       f"{s['replicas']} process{'es' if s['replicas'] > 1 else ''}"
                       + (f"; {contact_events_note(s)}" if contact_events_note(s) else "") + ".")
    out += ["", "### Results", ""] + results_table(scn_results)
    out += ["", "† CPU of the worker process(es) (utime+stime from /proc) over the run, divided by the jobs, "
            "including the worker's own SQS calls against moto; see Overhead for the in-memory number.", ""]
    out += ["### Targets", ""] + targets_table(stored)
    if stored.get("overhead"):
        out += ["", "### Overhead (no quota)", ""] + overhead_section(stored["overhead"])
    out += ["", "### Charts", "",
            "Per second, from connect-sim's timeline (seed 1): accepted StartChatContact calls of the workers (blue "
            "line), their 429s (red bars; LimitExceededException included), associations (purple line, brown "
            "bars), the rate left to the workers (dashed green), the other caller (grey line, orange bars), "
            "replica starts / kills (dotted) and the results-queue outage (shaded). Ours on top, the baseline "
            "below.", ""]
    for name in ORDER:
        if name in scn_results:
            out.append(f"![{name}](bench/charts/{name}.svg)")
            out.append("")
    out += ["### Definitions", "",
            "- **calls**: the workers' requests as connect-sim counted them (`/_sim/stats`, its `calls` record); "
            "the other caller (noisy, neighbour) is counted apart (`background`).",
            "- **429 ratio**: rate 429s (TooManyRequestsException / ThrottlingException) ÷ calls, both operations "
            "together. **LimitExceeded ratio**: `limit_exceeded` (no active-chat capacity) ÷ StartChatContact "
            "calls. **Other caller refused**: `background.refused` ÷ `background.attempted` (for the neighbour: "
            "while it is there, the only time it calls).",
            "- **goodput** (rate-bound scenarios): per operation, the accepted worker calls ÷ what the account's "
            "bucket allowed between the first and the last of them, its burst included: burst + rate × T, less "
            "what the other caller got meanwhile (connect-sim's timeline). A lone worker that spends the burst at "
            "once and then calls at the rate scores 1.0. With both operations, the lower of the two. "
            "(`goodput_steady` in results.json keeps the older per-second definition, burst not counted.)",
            "- **capacity goodput** (fixed lifetimes): the share of the chat capacity in use, mean active chats "
            "over the busy seconds ÷ 20, rebuilt from the accepted starts per second (each chat lives exactly "
            "5 s). The cell also shows starts per second ÷ 4/s.",
            "- **clairvoyant goodput** (varied lifetimes): how long an ideal starter needs to start the same "
            "chats — in the same order, each with its recorded lifetime (connect-sim's `chats`), each started as "
            "soon as a slot is free and the bucket has a token — ÷ the time from our first to our last start.",
            "- **B's finish ÷ its jobs at the rate quota** (two instances): from the workers' first call to the "
            "last chat created on B, ÷ (B's jobs − burst) ÷ rate, the time B's jobs alone need at the quota. A's "
            "jobs cannot start (A stays full); the run stops 5 s after B's last result, A's jobs are left in the "
            "queue (not lost) or failed.",
            "- **recovery after the neighbour leaves**: from its leaving (20 s) to the start of the first whole "
            "second (0.1 s steps) with ≥ 90 % of the quota in accepted worker calls.",
            "- **startup 429s per replica**: 429s in the 10 s after each replica's start, ÷ replicas; **429 ratio "
            "from 10 s after the last start**: refused ÷ (accepted + refused) calls from then on.",
            "- **kill**: every job without a result when replica 0 got SIGKILL (at 8 s; a fresh process 2 s later) "
            "— its in-flight jobs and the ones still queued — done (result `completedAt`) within this many seconds "
            "of the kill; the backlog is sized so that without a kill the survivors finish about 12 s after it.",
            "- **outage**: an HTTP proxy in front of moto answers the workers' SendMessage to the results queue "
            "with `QueueDoesNotExist` (what SQS says for a deleted queue) from 8 s to 18 s, forwarding everything "
            "else (bench/sqs_proxy.py; deleting the queue in moto would lose results not yet drained). Per job: "
            "when its result reached the queue (moto's `SentTimestamp`) − max(when its chat was created, "
            "the outage's end); the worst job.",
            "- **trickle latency above Connect's**: when the result reached the results queue (moto's "
            "`SentTimestamp` of the result message, ms) − when the harness's SendMessage of the job returned − "
            "connect-sim's 20 ms latency. "
            "results.json also has it by the result's `completedAt` (`job_completed_at_p50_ms`) and by the "
            "harness's receipt (`job_received_p50_ms`, which adds moto's delivery to the harness).",
            "- **job latency** (the results table): a job's result `completedAt` − the moment the workers were "
            "started; for a backlog this is when each job got done, not a per-job service time.",
            "- **lost**: jobs without a result that are neither left in the jobs queue nor in the DLQ. "
            "**duplicate chats**: connect-sim's `duplicate_source_chats` (each job has its own source contact). "
            "Results are deduplicated by jobId (moto, like SQS, may deliver a message twice).",
            "- **baseline**: `bench/baseline_worker.py`, boto3 with `Config(retries={'mode': 'adaptive', "
            "'max_attempts': 10})`, ClientToken = jobId, 8 threads sharing one client (32 for the 1 s latency), "
            "receive → `start_chat_contact` / `create_persistent_contact_association` → send result → delete; an "
            "error left after botocore's retries becomes a `failed` result; a result it cannot send leaves the "
            "job to reappear after the queue's 60 s visibility timeout.",
            END]
    return "\n".join(out) + "\n"


def write(stored, path):
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = section(stored)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + HEADING + "\n\n" + block
    path.write_text(text)
