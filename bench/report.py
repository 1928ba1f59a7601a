"""Writes the benchmark's section of BENCHMARKS.md from bench/out/results.json.

Only the text between the two marker comments (BEGIN/END below) is replaced, so other sections
(e.g. `## connect-sim throughput`) and the hand-written findings after the block stay intact. When
the markers are missing, the section is appended at the end of the file.
"""

from scenarios import EVERYWHERE, ORDER, OVERHEAD, SCENARIOS, meets

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


def one_line(m):
    return (f"goodput {frac(m['goodput'])}, 429 {pct(m['throttled_ratio'])}, LE {pct(m['limit_exceeded_ratio'])}, "
            f"bg refused {pct(m['background_refused_ratio'])}, p50/p99 {secs(m['p50_s'])}/{secs(m['p99_s'])}, "
            f"lost {m['lost']}, dup chats {m['duplicate_chats']}, results {m['results']}/{m['jobs']}, "
            f"outcomes {m['outcomes']}, cpu {num(m['worker_cpu_ms_per_job'], 2)} ms/job")


def _mark(ok):
    return "" if ok is None else (" ✓" if ok else " ✗")


def _fmt_metric(key, v):
    if key.endswith("_ratio"):
        return pct(v)
    if key in ("lost", "duplicate_chats"):
        return str(v)
    if key == "goodput":
        return frac(v)
    return num(v, 2)


def _fmt_target(key, op, t):
    shown = f"{t * 100:g} %" if key.endswith("_ratio") else f"{t:g}"
    return f"{op.replace('>=', '≥').replace('<=', '≤').replace('==', '=')} {shown}"


def goodput_cell(m):
    if m.get("capacity_used") is not None:
        return (f"{frac(m['goodput'])} (chats in use; starts {num(m['goodput_rate'], 2)}/s of "
                f"{m['allowed_rate']:g}/s = {frac(m.get('start_rate_fraction'))})")
    return f"{frac(m['goodput'])} ({num(m['goodput_rate'], 2)}/s of {m['allowed_rate']:g}/s)"


def results_table(scn_results):
    rows = ["| scenario | worker | goodput | 429 ratio | LimitExceeded ratio | other caller refused | p50 / p99 job "
            "latency | lost | duplicate chats | results: succeeded / failed | run time | worker CPU per job† |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ORDER:
        if name not in scn_results:
            continue
        for impl, label in IMPLS:
            m = scn_results[name].get(impl)
            if not m:
                continue
            failed = m["results"] - m["succeeded"]
            failed_codes = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in m["outcomes"].items() if k != "succeeded")
            missing = f", **{m['missing_results']} without result**" if m["missing_results"] else ""
            rows.append(
                f"| {name} | {label} | {goodput_cell(m)} "
                f"| {pct(m['throttled_ratio'])} ({m['throttled']}/{m['calls']}) "
                f"| {pct(m['limit_exceeded_ratio'])} ({m['limit_exceeded']}) "
                f"| {pct(m['background_refused_ratio'])} "
                f"| {secs(m['p50_s'])} / {secs(m['p99_s'])} | {m['lost']} | {m['duplicate_chats']} "
                f"| {m['succeeded']} / {failed}{' (' + failed_codes + ')' if failed_codes else ''}{missing} "
                f"| {secs(m['duration_s'])} | {num(m['worker_cpu_ms_per_job'], 2)} ms |")
    return rows


def targets_table(stored):
    rows = ["| scenario | target | resume-chat-worker | boto3 adaptive baseline |", "|---|---|---|---|"]
    scn_results = stored.get("scenarios", {})
    for name in ORDER:
        if name == "overhead" or name not in scn_results:
            continue
        for key, op, t, label in SCENARIOS[name]["targets"] + EVERYWHERE:
            cells = []
            for impl, _ in IMPLS:
                m = scn_results[name].get(impl)
                v = m.get(key) if m else None
                cells.append("–" if m is None else _fmt_metric(key, v) + _mark(meets(v, op, t)))
            rows.append(f"| {name} | {label} {_fmt_target(key, op, t)} | {cells[0]} | {cells[1]} |")
        if SCENARIOS[name]["replicas"] > 1:
            cells = []
            for impl, _ in IMPLS:
                m = scn_results[name].get(impl)
                cells.append("–" if m is None else pct(m.get("throttled_ratio_after_startup")))
            rows.append(f"| {name} | (information) 429 ratio from 10 s after the first call on | {cells[0]} "
                        f"| {cells[1]} |")
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
    row_cpu, row_rss, row_rate, row_idle = [], [], [], []
    for impl, _ in IMPLS:
        m = moto.get(impl)
        row_cpu.append(f"{m['worker_cpu_ms_per_job']:.2f} s" if m and m["worker_cpu_ms_per_job"] is not None else "–")
        row_rss.append(f"{m['worker_peak_rss_mib']:.1f} MiB" if m and m["worker_peak_rss_mib"] else "–")
        row_rate.append(f"{m['jobs_per_s']:.0f} jobs/s ({m['results']}/{m['jobs']} results)" if m and m["jobs_per_s"]
                        else "–")
        v = idle.get(impl, {}).get("idle_rss_mib")
        row_idle.append(f"{v:.1f} MiB" if v is not None else "–")
    n = OVERHEAD["moto_jobs"]
    lines += [
        f"| worker process CPU per 1,000 jobs against moto ({n} jobs, incl. its own SQS calls) | {row_cpu[0]} | "
        f"{row_cpu[1]} |",
        f"| peak RSS against moto | {row_rss[0]} | {row_rss[1]} |",
        f"| throughput against moto (moto's SQS is the bound) | {row_rate[0]} | {row_rate[1]} |",
        f"| idle RSS (VmRSS after {OVERHEAD['idle_seconds']} s idle, polling an empty queue on moto) | {row_idle[0]} | "
        f"{row_idle[1]} |",
    ]
    return lines


def contention(stored):
    notes = []
    for name, by_impl in stored.get("scenarios", {}).items():
        for impl, m in by_impl.items():
            if m.get("compilers_seen") or max(m.get("load_before", 0), m.get("load_after", 0)) > 2.5:
                notes.append(f"{name}/{impl} (load {m.get('load_before')}→{m.get('load_after')}"
                             f"{'; ' + ' '.join(m['compilers_seen']) if m.get('compilers_seen') else ''})")
    o = stored.get("overhead")
    if o and (o.get("compilers_seen") or max(o.get("load_before", 0), o.get("load_after", 0)) > 2.5):
        notes.append(f"overhead (load {o.get('load_before')}→{o.get('load_after')}"
                     f"{'; ' + ' '.join(o['compilers_seen']) if o.get('compilers_seen') else ''})")
    return notes


def section(stored):
    meta = stored.get("meta", {})
    scn_results = stored.get("scenarios", {})
    when = sorted({m["when"][:16].replace("T", " ") for r in scn_results.values() for m in r.values()})
    out = [
        BEGIN,
        f"Command: `{meta.get('command', 'bench/run.sh')}` (took {meta.get('seconds', '?')} s). Date: {meta.get('date')}"
        f"{f'; scenario runs from {when[0]} to {when[-1]} UTC' if when else ''}. Commit: `{meta.get('commit')}`.",
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
    out += ["Each scenario ran once per worker, each time on a fresh moto and connect-sim, backlog enqueued first. "
            "Scenarios:", ""]
    for name in ORDER:
        if name in SCENARIOS:
            s = SCENARIOS[name]
            out.append(f"- **{name}**: {s['title']}; `connect-sim {' '.join(s['sim'])}`; workers: START_CHAT_RATE="
                       f"{s['rate']} START_CHAT_BURST={s['burst']} MAX_IN_FLIGHT=64 (ours), 8 threads (baseline), "
                       f"{s['replicas']} process{'es' if s['replicas'] > 1 else ''}.")
    out += ["", "### Results", ""] + results_table(scn_results)
    out += ["", "† CPU of the worker process(es) (utime+stime from /proc) over the run, divided by the jobs, "
            "including the worker's own SQS calls against moto; see Overhead for the in-memory number.", ""]
    out += ["### Targets", ""] + targets_table(stored)
    if stored.get("overhead"):
        out += ["", "### Overhead (no quota)", ""] + overhead_section(stored["overhead"])
    out += ["", "### Charts", "",
            "Per second, from connect-sim's timeline: accepted StartChatContact calls of the workers (blue line), "
            "their 429s (red bars; for capacity these are LimitExceededException), the rate left to the workers "
            "(dashed green), and the other caller (grey line, orange bars) in the noisy scenario. Ours on top, "
            "the baseline below.", ""]
    for name in ORDER:
        if name in scn_results:
            out.append(f"![{name}](bench/charts/{name}.svg)")
            out.append("")
    out += ["### Definitions", "",
            "- **calls**: StartChatContact requests of the workers as connect-sim counted them (`/_sim/stats`); "
            "the other caller of the noisy scenario is counted apart (`background`).",
            "- **429 ratio**: `throttled` (TooManyRequestsException, the rate quota) ÷ calls. **LimitExceeded "
            "ratio**: `limit_exceeded` (no active-chat capacity) ÷ calls. **Other caller refused**: "
            "`background.refused` ÷ `background.attempted`.",
            "- **goodput**: accepted (200) worker calls per second over the busy period, ÷ the rate the quota "
            "leaves to the workers (10/s; 10 − 3 = 7/s for noisy). The "
            "busy period is the whole seconds of connect-sim's timeline strictly between the first and the last "
            "second with an accepted worker call: the first second is partial (start-up) and the last one is "
            "partial (the backlog ran out). The quota's burst is not counted as allowed, so a worker that spends "
            "the burst can exceed 1.0 slightly. For faults the 500s consume quota but are not counted as goodput.",
            "- **capacity goodput**: the share of the chat capacity in use, the issue's \"fraction of the chat "
            "capacity\": mean active chats over the same busy period ÷ 20. Active chats per second are rebuilt "
            "from connect-sim's accepted starts per second (each chat lives exactly 5 s; a chat started in second "
            "s counts half in s and in s + 5, fully in between). A worker that keeps all 20 chats busy while jobs "
            "wait scores 1.0 whether it starts them in waves or evenly. The cell also shows starts per second ÷ "
            "4/s (20 chats ÷ 5 s), the definition used before 2026-11-22 06:30 UTC; with a 40 s backlog it "
            "cannot reach 0.95 (the empty instance takes 20 chats at once, then nothing for 5 s).",
            "- **job latency**: a job's result `completedAt` − the moment the workers were started; the whole "
            "backlog was enqueued before, so this is when each job got done (p50 ≈ half the run for a backlog "
            "served in order), not a per-job service time.",
            "- **lost**: jobs without a result that are neither left in the jobs queue nor in the DLQ. "
            "**duplicate chats**: connect-sim's `duplicate_source_chats` (each job has its own source contact). "
            "Results are deduplicated by jobId (moto, like SQS, may deliver a message twice).",
            "- **baseline**: `bench/baseline_worker.py`, boto3 with `Config(retries={'mode': 'adaptive', "
            "'max_attempts': 10})`, 8 threads sharing one client, receive → `start_chat_contact` → send result "
            "→ delete; an error left after botocore's retries becomes a `failed` result.",
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
