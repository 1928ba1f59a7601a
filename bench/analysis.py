"""Turns one run's raw material (connect-sim's `/_sim/stats`, the deduplicated results, the queues'
leftovers, the workers' /proc readings) into the numbers of the report.

Definitions (BENCHMARKS.md repeats them):
- calls: every StartChatContact request of the workers, as connect-sim counted it (each request
  lands in exactly one counter); the other caller (`background`) is counted apart.
- 429 ratio: `throttled` (TooManyRequestsException, the rate quota) / calls; LimitExceeded ratio:
  `limit_exceeded` (no active-chat capacity) / calls.
- goodput: accepted (200) worker calls per second over the busy period, from the sim's per-second
  timeline: the whole seconds strictly between the first and the last second that saw an accepted
  worker call (both ends are partial seconds: start-up, and the backlog running out), divided by
  the rate the quota leaves to the workers (quota, or quota - other caller's rate; for capacity,
  max_active_chats / chat_seconds chats per second).
- capacity (a scenario with `chat_seconds`): goodput is the share of the chat capacity in use, the
  mean number of active chats over the same busy period ÷ max_active_chats. Active chats per second
  are rebuilt from the per-second accepted counts (every chat lives exactly chat_seconds; a chat
  accepted during second s counts half in s and in s + chat_seconds, fully in between: starts are
  spread over their second). The starts per second ÷ (max_active_chats ÷ chat_seconds) are kept as
  `start_rate_fraction`.
- job latency: a result's `completedAt` minus the moment the workers were started (the backlog
  was enqueued before): for a backlog this is when each job got done, p50 ~ half the run.
- 429 ratio after start-up (fleets, for information): refused ÷ (accepted + refused) worker calls
  in connect-sim's timeline from 10 s after the first worker call on.
- lost: jobs with no result that are not left in the jobs queue or the DLQ either.
- duplicate chats: connect-sim's `duplicate_source_chats` (every job has its own source contact).
"""

import datetime
import heapq
import math
import re

OPS = ("StartChatContact", "CreatePersistentContactAssociation")
ACCEPTED = ("ok", "replay")


def parse_rfc3339(s):
    """RFC 3339 with up to nanoseconds (Python's parser takes at most microseconds)."""
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s or "")
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.datetime.fromisoformat(m.group(1) + frac + tz).timestamp()


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def busy_window(accepted):
    """(first, last) seconds with accepted worker calls, or None."""
    busy = [i for i, a in enumerate(accepted) if a > 0]
    if not busy:
        return None
    return busy[0], busy[-1]


STARTUP_S = 10


def throttled_after_startup(accepted, refused):
    """Refused ÷ (accepted + refused) worker calls from STARTUP_S seconds after the first worker call
    on (None if nothing was called then): a fleet's steady state without its start-up storm, in which
    every replica needs at least one 429 of its own to learn that it shares the quota."""
    active = [i for i, (a, r) in enumerate(zip(accepted, refused)) if a + r > 0]
    if not active:
        return None
    start = active[0] + STARTUP_S
    acc, ref = sum(accepted[start:]), sum(refused[start:])
    return ref / (acc + ref) if acc + ref else None


def active_chats(accepted, chat_seconds):
    """Mean active chats in each second, from the accepted starts per second (see the module doc)."""
    n = int(chat_seconds)
    out = []
    for k in range(len(accepted)):
        at = lambda i: accepted[i] if 0 <= i < len(accepted) else 0
        out.append(0.5 * at(k) + sum(at(k - j) for j in range(1, n)) + 0.5 * at(k - n))
    return out


def chat_capacity_used(accepted, window, chat_seconds, max_active):
    """Mean active chats ÷ max_active over the busy window's whole seconds."""
    first, last = window
    active = active_chats(accepted, chat_seconds)
    seconds = active[first + 1:last] if last - first >= 2 else active[first:last + 1]
    return sum(seconds) / len(seconds) / max_active if seconds else None


def quota_of(scn):
    """{operation: (rate, burst)} of the account."""
    return scn.get("quota") or {"StartChatContact": (float(scn["rate"]), int(scn["burst"]))}


def background_op(scn):
    flags = scn["sim"]
    if "--background-operation" in flags and flags[flags.index("--background-operation") + 1] == "associate":
        return "CreatePersistentContactAssociation"
    return "StartChatContact"


def burst_goodput(call_times_ms, rate, burst, other_accepted=0):
    """Accepted calls ÷ what the bucket allowed between the first and the last of them: it starts
    full (burst) and refills at `rate`, less what another caller took meanwhile. An ideal lone
    worker with N jobs scores 1.0: N = burst + rate × T."""
    if len(call_times_ms) < 2:
        return None
    span = (call_times_ms[-1] - call_times_ms[0]) / 1000
    allowed = burst + rate * span - other_accepted
    return len(call_times_ms) / allowed if allowed > 0 else None


def clairvoyant_last_start(lifetimes_s, slots, rate, burst):
    """When an ideal starter that knows every lifetime starts its last chat: the chats in the same
    order with the same lifetimes, each started as soon as a slot is free and the rate bucket
    (full at 0) has a token. Starting each chat as early as possible is optimal: an earlier start
    frees its slot earlier."""
    free = [0.0] * slots
    heapq.heapify(free)
    tokens, t_tok, t = float(burst), 0.0, 0.0
    for life in lifetimes_s:
        slot = heapq.heappop(free)
        t = max(t, slot)
        tokens = min(burst, tokens + (t - t_tok) * rate)
        t_tok = t
        if tokens < 1.0:
            t += (1.0 - tokens) / rate
            tokens, t_tok = 1.0, t
        tokens -= 1.0
        heapq.heappush(free, t + life)
    return t


def sliding_recovery(times_ms, leave_s, target_per_s, end_s):
    """Seconds after `leave_s` until a whole second [w, w + 1) holds at least `target_per_s`
    accepted calls (w in 0.1 s steps); None if it never does before `end_s`."""
    k = 0
    while leave_s + k / 10 + 1 <= end_s + 1e-9:
        # Integer milliseconds and tenths: no float drift in the window's edges.
        lo = round((leave_s + k / 10) * 1000)
        if sum(1 for t in times_ms if lo <= t < lo + 1000) >= target_per_s:
            return k / 10
        k += 1
    return None


def scenario_metrics(scn, stats, results, ctx):
    """The numbers of the issue-11 scenario families, from connect-sim's `calls` and `chats`
    records (never the workers' metrics) and the harness's own clocks."""
    out = {}
    calls = stats.get("calls", [])
    chats = stats.get("chats", [])
    epoch = stats.get("epoch_unix_ms", 0) / 1000
    timeline = stats.get("timeline", [])
    bg_acc = [s["background"]["accepted"] for s in timeline]
    quota = quota_of(scn)
    bg_op = background_op(scn)
    by_op = {}
    for op, (rate, burst) in quota.items():
        times = [c["t_ms"] for c in calls if c["op"] == op and c["outcome"] in ACCEPTED]
        other = 0
        if times and op == bg_op:
            other = sum(bg_acc[int(times[0] // 1000):int(times[-1] // 1000) + 1])
        by_op[op] = burst_goodput(times, rate, burst, other)
    out["goodput_by_op"] = by_op
    known = [v for v in by_op.values() if v is not None]
    out["burst_goodput"] = min(known) if known else None
    worker_calls = [c for c in calls]
    # Per op 429 ratios (both-ops, new-account).
    for op in OPS:
        mine = [c for c in worker_calls if c["op"] == op]
        if mine:
            out.setdefault("throttled_ratio_by_op", {})[op] = sum(c["outcome"] == "throttled" for c in mine) / len(mine)
    # Fleets: 429s in the 10 s after each replica's start, and the ratio from 10 s after the last start.
    starts = ctx.get("starts") or [0.0]
    sim_offset = ctx["t0"] - epoch if epoch else 0.0  # seconds from the sim's epoch to t0
    windows = [(s + sim_offset, s + sim_offset + STARTUP_S) for s in starts]
    thr = [c["t_ms"] / 1000 for c in worker_calls if c["outcome"] == "throttled"]
    out["startup_429s"] = sum(1 for t in thr if any(a <= t < b for a, b in windows))
    out["startup_429_per_replica"] = out["startup_429s"] / max(len(starts), 1)
    after = max(starts) + sim_offset + STARTUP_S
    late = [c for c in worker_calls if c["t_ms"] / 1000 >= after and c["outcome"] in ACCEPTED + ("throttled",)]
    out["throttled_ratio_after_last_start"] = (sum(c["outcome"] == "throttled" for c in late) / len(late)
                                               if late else None)
    # Varied lifetimes: against a clairvoyant starter on the recorded lifetimes.
    if scn.get("clairvoyant") and len(chats) >= 2:
        rate, burst = quota["StartChatContact"]
        ideal = clairvoyant_last_start([c["lifetime_ms"] / 1000 for c in chats], scn["max_active_chats"], rate, burst)
        ours = (chats[-1]["t_ms"] - chats[0]["t_ms"]) / 1000
        out.update(clairvoyant_s=ideal, starts_span_s=ours,
                   clairvoyant_goodput=ideal / ours if ours > 0 else None,
                   mean_lifetime_s=sum(c["lifetime_ms"] for c in chats) / len(chats) / 1000)
    # Two instances: the unlimited one's finish against its jobs at the rate quota alone.
    if scn.get("wait_for"):
        _, inst = scn["wait_for"]
        rate, burst = quota["StartChatContact"]
        mine = [c["t_ms"] for c in chats if c["instance"] == inst]
        first_call = calls[0]["t_ms"] if calls else None
        n_inst = sum(1 for k in ctx["kinds"].values() if tuple(k) == tuple(scn["wait_for"]))
        need = max(n_inst - burst, 1) / rate
        if mine and first_call is not None and len(mine) >= n_inst:
            out.update(instance_finish_s=(mine[-1] - first_call) / 1000, instance_need_s=need,
                       instance_finish_ratio=(mine[-1] - first_call) / 1000 / need)
        elif first_call is not None:
            # B not done when the run timed out: at least this long (censored).
            span = (calls[-1]["t_ms"] - first_call) / 1000
            out.update(instance_finish_s=span, instance_need_s=need, instance_finish_ratio=span / need,
                       instance_finish_ratio_censored=True, instance_done=len(mine), instance_jobs=n_inst)
        out["instances"] = stats.get("instances", {})
    # A neighbour that comes and goes: recovery after it leaves.
    flags = scn["sim"]
    if "--background-schedule" in flags:
        leave = max(float(seg.split(":")[1]) for seg in flags[flags.index("--background-schedule") + 1].split(","))
        rate, _ = quota["StartChatContact"]
        times = [c["t_ms"] for c in calls if c["op"] == "StartChatContact" and c["outcome"] in ACCEPTED]
        end_s = times[-1] / 1000 - 1 if times else 0
        out["recovery_s"] = sliding_recovery(times, leave, 0.9 * rate, end_s) if times else None
        if out["recovery_s"] is None and end_s > leave:
            # Never back at the quota before the backlog ran out: at least this long (censored).
            out["recovery_s"] = round(end_s - leave, 1)
            out["recovery_s_censored"] = True
        out["neighbour_leaves_s"] = leave
        out["backlog_left_at_leave"] = sum(1 for t in times if t / 1000 >= leave)
    # Kill -9: every job without a result at the kill, done how long after it.
    kill = ctx.get("kill")
    if kill:
        lags, missing = [], 0
        for job_id in kill["pending"]:
            r = results.get(job_id)
            if not r:
                missing += 1
                continue
            done = parse_rfc3339(r.get("completedAt")) or r.get("_received_at")
            lags.append(done - kill["at"])
        out.update(kill_at_s=kill["at"] - ctx["t0"], kill_pending=len(kill["pending"]),
                   kill_recovery_s=max(lags) if lags and not missing else ctx["finished_at"] - kill["at"],
                   kill_recovery_s_censored=bool(missing), kill_missing=missing,
                   kill_redelivered=sum(1 for j in kill["pending"] if results.get(j, {}).get("receiveCount", 1) > 1))
    # Results-queue outage: each result's delay after the outage's end, or after its chat.
    if ctx.get("outage"):
        end_wall = ctx["t0"] + ctx["outage"][1]
        created = {}
        for c in chats:
            created.setdefault(c.get("source"), epoch + c["t_ms"] / 1000)
        lags = []
        for job_id, r in results.items():
            src = "src-" + job_id.rsplit("-", 1)[-1]
            if src in created:
                lags.append((r.get("_published_at") or r["_received_at"]) - max(created[src], end_wall))
        out["outage_lag_s"] = max(lags) if lags and len(lags) == len(ctx["wanted"]) else None
        out["outage_lag_p50_s"] = percentile(lags, 0.5)
    # Trickle: per-job latency above Connect's own (the sim's --latency-ms).
    if ctx.get("sent_at"):
        lat = scn.get("latency_ms", 0) / 1000
        by_publish, by_stamp, by_receipt = [], [], []
        for job_id, sent in ctx["sent_at"].items():
            r = results.get(job_id)
            if not r:
                continue
            if r.get("_published_at"):
                by_publish.append((r["_published_at"] - sent - lat) * 1000)
            done = parse_rfc3339(r.get("completedAt"))
            if done is not None:
                by_stamp.append((done - sent - lat) * 1000)
            by_receipt.append((r["_received_at"] - sent - lat) * 1000)
        complete = len(by_publish) == len(ctx["sent_at"])
        out.update(job_overhead_p50_ms=percentile(by_publish, 0.5) if complete else None,
                   job_overhead_p99_ms=percentile(by_publish, 0.99) if complete else None,
                   job_completed_at_p50_ms=percentile(by_stamp, 0.5),
                   job_completed_at_p99_ms=percentile(by_stamp, 0.99),
                   job_received_p50_ms=percentile(by_receipt, 0.5), job_received_p99_ms=percentile(by_receipt, 0.99))
    return out


def analyse(scn, n_jobs, t0, stats, results, leftover_jobs, leftover_dlq, cpu_seconds, peak_rss_mib, finished_at,
            ctx=None):
    ctx = ctx or {"t0": t0}
    ops = stats["operations"]["StartChatContact"]
    assoc = stats["operations"].get("CreatePersistentContactAssociation", {})
    calls = sum(ops.values())
    assoc_calls = sum(assoc.values())
    timeline = stats.get("timeline", [])
    accepted = [s["StartChatContact"]["accepted"] for s in timeline]
    refused = [s["StartChatContact"]["refused"] for s in timeline]
    window = busy_window(accepted)
    goodput_rate = None
    window_s = 0
    if window:
        first, last = window
        if last - first >= 2:
            window_s = last - first - 1
            goodput_rate = sum(accepted[first + 1:last]) / window_s
        else:
            window_s = last - first + 1
            goodput_rate = sum(accepted[first:last + 1]) / window_s
    allowed = scn["allowed"]
    after_startup = throttled_after_startup(accepted, refused)
    capacity_used = None
    if window and scn.get("chat_seconds"):
        capacity_used = chat_capacity_used(accepted, window, scn["chat_seconds"], scn["max_active_chats"])
    job_ids = {f"bench-{n}" for n in range(n_jobs)}
    mine = {k: v for k, v in results.items() if k in job_ids}
    latencies = []
    for r in mine.values():
        done = parse_rfc3339(r.get("completedAt")) or r.get("_received_at")
        if done is not None:
            latencies.append(done - t0)
    statuses = {}
    for r in mine.values():
        key = r.get("status", "?") if r.get("status") == "succeeded" else f"failed:{(r.get('error') or {}).get('code', '?')}"
        statuses[key] = statuses.get(key, 0) + 1
    missing = n_jobs - len(mine)
    lost = max(0, missing - leftover_jobs - leftover_dlq)
    bg = stats.get("background", {})
    extra = scenario_metrics(scn, stats, results, ctx)
    if capacity_used is not None:
        goodput = capacity_used
    elif extra.get("clairvoyant_goodput") is not None or scn.get("clairvoyant"):
        goodput = extra.get("clairvoyant_goodput")
    else:
        goodput = extra["burst_goodput"]
    all_calls = calls + assoc_calls
    throttled = ops.get("throttled", 0) + assoc.get("throttled", 0)
    m = {
        "jobs": n_jobs,
        "results": len(mine),
        "succeeded": statuses.get("succeeded", 0),
        "outcomes": statuses,
        "missing_results": missing,
        "left_in_jobs_queue": leftover_jobs,
        "left_in_dlq": leftover_dlq,
        "lost": lost,
        "duplicate_chats": stats.get("duplicate_source_chats", 0),
        "chats_created": stats.get("chats_created", 0),
        "calls": calls,
        "ok": ops.get("ok", 0),
        "throttled": ops.get("throttled", 0),
        "limit_exceeded": ops.get("limit_exceeded", 0),
        "server_error": ops.get("server_error", 0),
        "idempotent_replays": ops.get("idempotent_replays", 0),
        "associate_calls": assoc_calls,
        "associate_throttled": assoc.get("throttled", 0),
        # Both operations' rate 429s ÷ both operations' calls.
        "throttled_ratio": throttled / all_calls if all_calls else 0.0,
        "throttled_ratio_after_startup": extra["throttled_ratio_after_last_start"],
        "throttled_ratio_after_first_call_10s": after_startup,
        "limit_exceeded_ratio": ops.get("limit_exceeded", 0) / calls if calls else 0.0,
        "background_attempted": bg.get("attempted", 0),
        "background_refused": bg.get("refused", 0),
        "background_refused_ratio": bg.get("refused", 0) / bg["attempted"] if bg.get("attempted") else None,
        "goodput_rate": goodput_rate,
        "goodput_window_s": window_s,
        "allowed_rate": allowed,
        "start_rate_fraction": goodput_rate / allowed if goodput_rate is not None else None,
        "capacity_used": capacity_used,
        "goodput": goodput,
        # The per-second definition used before (busy seconds only, burst not counted): information.
        "goodput_steady": goodput_rate / allowed if goodput_rate is not None else None,
        "p50_s": percentile(latencies, 0.50),
        "p99_s": percentile(latencies, 0.99),
        # When the last job got done (its result's completedAt), from the workers' start.
        "duration_s": max(latencies) if latencies else finished_at - t0,
        "jobs_per_s": len(mine) / max(latencies) if latencies and max(latencies) > 0 else None,
        "worker_cpu_s": cpu_seconds,
        # Per job done (a run that timed out did fewer than n_jobs).
        "worker_cpu_ms_per_job": cpu_seconds * 1000 / len(mine) if cpu_seconds is not None and mine else None,
        "worker_peak_rss_mib": peak_rss_mib,
        "timeline": {
            "accepted": accepted,
            "refused": refused,
            "background_accepted": [s["background"]["accepted"] for s in timeline],
            "background_refused": [s["background"]["refused"] for s in timeline],
            "associate_accepted": [s["CreatePersistentContactAssociation"]["accepted"] for s in timeline],
            "associate_refused": [s["CreatePersistentContactAssociation"]["refused"] for s in timeline],
        },
    }
    extra.pop("throttled_ratio_after_last_start", None)
    m.update(extra)
    return m
