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
import re


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


def analyse(scn, n_jobs, t0, stats, results, leftover_jobs, leftover_dlq, cpu_seconds, peak_rss_mib, finished_at):
    ops = stats["operations"]["StartChatContact"]
    calls = sum(ops.values())
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
    return {
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
        "throttled_ratio": ops.get("throttled", 0) / calls if calls else 0.0,
        "throttled_ratio_after_startup": after_startup,
        "limit_exceeded_ratio": ops.get("limit_exceeded", 0) / calls if calls else 0.0,
        "background_attempted": bg.get("attempted", 0),
        "background_refused": bg.get("refused", 0),
        "background_refused_ratio": bg.get("refused", 0) / bg["attempted"] if bg.get("attempted") else None,
        "goodput_rate": goodput_rate,
        "goodput_window_s": window_s,
        "allowed_rate": allowed,
        "start_rate_fraction": goodput_rate / allowed if goodput_rate is not None else None,
        "capacity_used": capacity_used,
        "goodput": capacity_used if capacity_used is not None else (
            goodput_rate / allowed if goodput_rate is not None else None),
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
        },
    }
