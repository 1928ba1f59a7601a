"""The benchmark's scenarios, as data: connect-sim's flags, the backlog, the workers' rate settings,
the rate the quota leaves to the workers (the goodput denominator) and the issue's targets.

Optional keys (run.py and analysis.py read them):
- `mix`: list of (action, instanceId, share): the jobs are that mix, interleaved in a seeded order;
- `quota`: {operation: (rate, burst)} of the account for the goodput bound (default: StartChatContact
  at `rate`/`burst`); `env`: extra worker variables (e.g. ASSOCIATE_RATE);
- `starts`: start offset in seconds of each replica; `kill`: (replica, at_s, restart_after_s), a
  SIGKILL and a fresh process; `outage`: (from_s, to_s) the results queue answers QueueDoesNotExist;
- `trickle`: (jobs_per_s) jobs are sent one by one at Poisson arrivals instead of a backlog;
- `wait_for`: (action, instanceId) only those jobs must finish, `linger` seconds more, then stop;
- `seeds`: how many seeds (1, 2, 3, ...: connect-sim's --seed, the job order, the arrivals);
- `baseline_threads`: the baseline's threads (default 8);
- `clairvoyant`: goodput is measured against an ideal starter on connect-sim's recorded lifetimes.

Every scenario but `capacity` lifts the active-chat limit (connect-sim's default is 100 chats of
60 s, which a 10/s run would hit after 10 s): only `capacity` is about chat capacity.
`overhead` is special-cased in run.py (no quota, worker CPU and memory).
"""

NO_CHAT_LIMIT = ["--max-active-chats", "1000000"]

# (metric key, comparison, target value, label)
EVERYWHERE = [("lost", "==", 0, "lost jobs"), ("duplicate_chats", "==", 0, "duplicate chats")]
LONE = [("goodput", ">=", 0.98, "goodput (burst included)"), ("throttled_ratio", "<=", 0.005, "429 ratio")]
# The "fleets, decided": without Redis a replica learns that it shares only from a 429 of its
# own, so the floor is one 429 per replica in the start-up (the 10 s after each replica starts).
FLEET_TARGETS = [("goodput", ">=", 0.97, "goodput (burst included)"),
                 ("startup_429_per_replica", "<=", 1.5, "429s per replica in the start-up"),
                 ("throttled_ratio_after_startup", "<=", 0.01, "429 ratio from 10 s after the last start")]
REDIS_TARGETS = [("goodput", ">=", 0.98, "goodput (burst included)"), ("throttled_ratio", "<=", 0.005, "429 ratio")]
# The connect window (an unconnected chat ends after N seconds) is switched off where connect-sim
# has it (run.py adds `--connect-window-seconds 0`), so chats live their configured lifetimes.

SCENARIOS = {
    "steady": {
        "title": "quota 10/s burst 10, 300 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", *NO_CHAT_LIMIT],
        "jobs": 300, "replicas": 1, "rate": "10", "burst": "10", "allowed": 10.0,
        "chart_lines": [(10, "quota 10/s")],
        "targets": [("goodput", ">=", 0.98, "goodput (burst included)"), ("throttled_ratio", "<=", 0.005, "429 ratio")],
        "seeds": 3,
    },
    "noisy": {
        "title": "quota 10/s, another caller at 3/s, 300 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", "--background-rate", "3", *NO_CHAT_LIMIT],
        "jobs": 300, "replicas": 1, "rate": "10", "burst": "10", "allowed": 7.0,
        # Its calls at a phase drawn per seed within their first period (run.py's shift_schedule).
        "background_phase": True,
        "chart_lines": [(10, "quota 10/s"), (7, "left by the other caller: 7/s")],
        "seeds": 3,
        "targets": [("goodput", ">=", 0.95, "goodput (of what the other caller left)"),
                    ("throttled_ratio", "<=", 0.02, "429 ratio"),
                    ("background_refused_ratio", "<=", 0.02, "other caller refused")],
    },
    "capacity": {
        "seeds": 3,
        "title": "20 active chats of 5 s (4 chats/s), quota 20/s burst 20, 160 jobs",
        "sim": ["--max-active-chats", "20", "--chat-seconds", "5", "--start-chat-rate", "20",
                "--start-chat-burst", "20"],
        "jobs": 160, "replicas": 1, "rate": "20", "burst": "20", "allowed": 20 / 5,
        "chat_seconds": 5, "max_active_chats": 20,
        "chart_lines": [(4, "chat capacity 4/s")],
        "targets": [("goodput", ">=", 0.95, "goodput (of the chat capacity)"),
                    ("limit_exceeded_ratio", "<=", 0.05, "LimitExceeded ratio")],
    },
    "faults": {
        "title": "quota 10/s burst 10, 10 % 500s, 50 ms latency, 300 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", "--fail-rate", "0.1", "--latency-ms", "50",
                "--seed", "7", *NO_CHAT_LIMIT],
        "jobs": 300, "replicas": 1, "rate": "10", "burst": "10", "allowed": 10.0,
        "chart_lines": [(10, "quota 10/s")],
        "targets": [],
    },
    "fleet3": {
        "title": "3 replicas sharing quota 10/s burst 10 (each START_CHAT_RATE=10), 400 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", *NO_CHAT_LIMIT],
        "jobs": 400, "replicas": 3, "rate": "10", "burst": "10", "allowed": 10.0,
        "chart_lines": [(10, "quota 10/s")],
        "targets": FLEET_TARGETS, "seeds": 3,
    },
    "fleet6": {
        "title": "6 replicas sharing quota 10/s burst 10 (each START_CHAT_RATE=10), 400 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", *NO_CHAT_LIMIT],
        "jobs": 400, "replicas": 6, "rate": "10", "burst": "10", "allowed": 10.0,
        "chart_lines": [(10, "quota 10/s")],
        "targets": FLEET_TARGETS, "seeds": 3,
    },
}

SCENARIOS.update({
    "lifetimes": {
        "title": "20 active chats whose lifetimes vary (lognormal, mean 5 s, clamped to 1–15 s), quota 20/s burst 20, "
                 "160 jobs",
        "sim": ["--max-active-chats", "20", "--chat-lifetime", "lognormal:5:1:15", "--start-chat-rate", "20",
                "--start-chat-burst", "20"],
        "jobs": 160, "replicas": 1, "rate": "20", "burst": "20", "allowed": 4.0, "max_active_chats": 20,
        "clairvoyant": True, "seeds": 3,
        "chart_lines": [(4, "mean chat capacity ≈ 4/s")],
        "targets": [("goodput", ">=", 0.93, "goodput (of a clairvoyant starter on the same lifetimes)"),
                    ("limit_exceeded_ratio", "<=", 0.10, "LimitExceeded ratio")],
    },
    "two-instances": {
        "title": "two instances: A full (5 chats other callers hold all run), B unlimited; quota 10/s burst 10, "
                 "200 jobs, half for each",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", "--instance-max-chats", "A=5,B=1000000",
                "--instance-prefill", "A=5"],
        "jobs": 200, "replicas": 1, "rate": "10", "burst": "10", "allowed": 10.0,
        "mix": [("startPersistentChat", "A", 1), ("startPersistentChat", "B", 1)],
        # Before issue 11 both workers took about two minutes for B (A's refusals held B back).
        "wait_for": ("startPersistentChat", "B"), "linger": 5, "seeds": 3, "timeout": 240,
        "chart_lines": [(10, "quota 10/s")],
        "targets": [("instance_finish_ratio", "<=", 1.2, "B's finish ÷ its jobs at the rate quota alone")],
    },
    "neighbour": {
        "title": "quota 10/s burst 10, a neighbour takes 4/s from 8 s to 20 s, then leaves; 300 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", "--background-schedule", "8:20:4",
                *NO_CHAT_LIMIT],
        # 8 seeds: which caller a short bucket refuses follows the phase of the neighbour's calls
        # against ours, drawn per seed, so its refusals vary more from seed to seed than 3 can show.
        "jobs": 300, "replicas": 1, "rate": "10", "burst": "10", "allowed": 10.0, "seeds": 8,
        # Its arrival at a phase drawn per seed within its first period (run.py's shift_schedule).
        "background_phase": True,
        "chart_lines": [(10, "quota 10/s"), (6, "left while the neighbour is there: 6/s")],
        "targets": [("background_refused_ratio", "<=", 0.02, "neighbour's calls refused while there"),
                    ("recovery_s", "<=", 5.0, "after it leaves: seconds until our rate is back at the quota"),
                    ("goodput", ">=", 0.95, "whole-run goodput (of what the neighbour left)")],
    },
    "staggered": {
        "title": "3 replicas started 0 s, 8 s and 16 s apart, sharing quota 10/s burst 10, 400 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", *NO_CHAT_LIMIT],
        "jobs": 400, "replicas": 3, "starts": [0, 8, 16], "rate": "10", "burst": "10", "allowed": 10.0,
        # 6 seeds: a joiner's entry depends on where the others' SQS reads fall, per seed.
        "seeds": 6, "chart_lines": [(10, "quota 10/s")],
        "targets": FLEET_TARGETS,
    },
    "kill": {
        "title": "3 replicas, quota 10/s burst 10, 200 jobs; replica 0 SIGKILLed at 8 s, restarted 2 s later",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", *NO_CHAT_LIMIT],
        "jobs": 200, "replicas": 3, "kill": (0, 8.0, 2.0), "rate": "10", "burst": "10", "allowed": 10.0,
        "seeds": 3, "chart_lines": [(10, "quota 10/s")],
        "targets": [("kill_recovery_s", "<=", 20.0, "every job unfinished at the kill done within (s)")],
    },
    "outage": {
        "title": "quota 10/s burst 10, 300 jobs; the results queue answers QueueDoesNotExist from 8 s to 18 s",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", *NO_CHAT_LIMIT],
        "jobs": 300, "replicas": 1, "outage": (8.0, 18.0), "rate": "10", "burst": "10", "allowed": 10.0,
        "seeds": 3, "chart_lines": [(10, "quota 10/s")],
        "targets": [("outage_lag_s", "<=", 5.0, "every result out within (s) of the outage's end (or its chat)")],
    },
    "new-account": {
        "title": "the default quota of a new account: 2/s burst 5 for both operations, 120 jobs, half of each",
        "sim": ["--start-chat-rate", "2", "--start-chat-burst", "5", "--associate-rate", "2", "--associate-burst",
                "5", *NO_CHAT_LIMIT],
        "jobs": 120, "replicas": 1, "rate": "2", "burst": "5", "allowed": 2.0,
        "env": {"ASSOCIATE_RATE": "2", "ASSOCIATE_BURST": "5"},
        "quota": {"StartChatContact": (2.0, 5), "CreatePersistentContactAssociation": (2.0, 5)},
        "mix": [("startPersistentChat", None, 1), ("associatePersistentContact", None, 1)],
        "seeds": 3, "chart_lines": [(2, "quota 2/s per operation")],
        "targets": LONE,
    },
    "both-ops": {
        "title": "both operations binding at once: StartChatContact 10/s burst 10, "
                 "CreatePersistentContactAssociation 5/s burst 5, 450 jobs (2 chats : 1 association)",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", "--associate-rate", "5", "--associate-burst",
                "5", *NO_CHAT_LIMIT],
        "jobs": 450, "replicas": 1, "rate": "10", "burst": "10", "allowed": 10.0,
        "env": {"ASSOCIATE_RATE": "5", "ASSOCIATE_BURST": "5"},
        "quota": {"StartChatContact": (10.0, 10), "CreatePersistentContactAssociation": (5.0, 5)},
        "mix": [("startPersistentChat", None, 2), ("associatePersistentContact", None, 1)],
        "seeds": 3, "chart_lines": [(10, "StartChatContact quota 10/s"), (5, "association quota 5/s")],
        "targets": LONE,
    },
    "latency": {
        "title": "quota 10/s burst 10, Connect answers after 1 s, 300 jobs (baseline: 32 threads)",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", "--latency-ms", "1000", *NO_CHAT_LIMIT],
        "jobs": 300, "replicas": 1, "rate": "10", "burst": "10", "allowed": 10.0, "baseline_threads": 32,
        "seeds": 3, "chart_lines": [(10, "quota 10/s")],
        "targets": LONE,
    },
    "trickle": {
        "title": "a trickle: 2 jobs/s (Poisson), no backlog, quota 10/s burst 10, Connect latency 20 ms, 60 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", "--latency-ms", "20", *NO_CHAT_LIMIT],
        "jobs": 60, "replicas": 1, "rate": "10", "burst": "10", "allowed": 10.0, "trickle": 2.0, "latency_ms": 20,
        "seeds": 3, "chart_lines": [(2, "arrivals 2/s")],
        "targets": [("job_overhead_p50_ms", "<=", 30.0, "job latency above Connect's, p50 (ms)"),
                    ("job_overhead_p99_ms", "<=", 100.0, "job latency above Connect's, p99 (ms)")],
    },
})

# overhead: no quota; the Rust example's in-memory run, then both workers against moto.
OVERHEAD = {
    "example_jobs": 5000,
    # moto slows down as its queue grows (about 10 jobs/s with 2,000 queued, here), so keep it small.
    "moto_jobs": 500,
    "moto_timeout_rate": 10.0,
    # The example again with a 10/s quota: the cost per job of a worker held back by the quota.
    "paced_jobs": 300,
    "paced_rate": "10",
    "sim": ["--start-chat-rate", "100000", "--start-chat-burst", "100000", *NO_CHAT_LIMIT],
    "rate": "10000", "burst": "10000",
    # 20 s of idle after a 5 s start-up: /proc's CPU times tick at 10 ms, 0.05 % of a core over 20 s.
    "idle_seconds": 20,
    "targets": [("cpu_ms_per_job", "<=", 1.0, "worker CPU per job (ms)"),
                ("idle_rss_mib", "<=", 30.0, "idle RSS (MiB)"),
                ("idle_cpu_pct", "<=", 1.0, "idle CPU (% of a core)")],
}

# The fleets again with the optional fleet-wide limiter (REDIS_URL): a GCRA in Redis shared by the
# replicas, on top of each one's adaptive limiter. Ours only: the baseline has no such mode.
for _n in ("fleet3", "fleet6"):
    SCENARIOS[_n + "-redis"] = dict(SCENARIOS[_n], redis=True, impls=["ours"], targets=REDIS_TARGETS, seeds=1,
                                    title=SCENARIOS[_n]["title"] + ", with REDIS_URL (shared GCRA)")

# Fleet6 again for two minutes: every replica needs a 429 of its own to learn that it shares, which
# a 40 s run cannot amortize (six 429s are already 1.5 % of 400 calls); this shows where the fleet
# settles. 300 jobs up front, then 900 at the quota's 10/s (Poisson), so the backlog stays near 300
# for the whole run: moto's SQS slows as a queue grows, and 1,200 queued at once outpace it (the
# first run of this scenario saw jobs redelivered and results undrained). Ours only; the same
# targets, so both runs show side by side.
SCENARIOS["fleet6-long"] = dict(SCENARIOS["fleet6"], jobs=1200, preload=300, trickle=10.0, impls=["ours"], seeds=1,
                                title="6 replicas sharing quota 10/s burst 10 (each START_CHAT_RATE=10), "
                                      "1,200 jobs (300 queued, then 900 at 10/s: two minutes)")

# Capacity and lifetimes again with contact events: the harness creates a `contact-events` queue in
# moto, connect-sim sends an EventBridge DISCONNECTED envelope to it 0.25–0.75 s after each chat ends
# (`--contact-events-queue-url`, `--contact-events-delay-ms`), and our workers get
# CONTACT_EVENTS_QUEUE_URL, so they can learn when a slot frees instead of guessing. The same sim
# flags, jobs, seeds and targets. Ours only: the baseline ignores the events, so its run would be the
# one of `capacity` / `lifetimes` again.
CONTACT_EVENTS_DELAY_MS = (250, 750)
for _n in ("capacity", "lifetimes"):
    SCENARIOS[_n + "-events"] = dict(SCENARIOS[_n], contact_events=CONTACT_EVENTS_DELAY_MS, impls=["ours"],
                                     title=SCENARIOS[_n]["title"] + ", with contact events")


def contact_events_note(scn):
    """The scenario list's words for a scenario with contact events (None without)."""
    if not scn.get("contact_events"):
        return None
    lo, hi = scn["contact_events"]
    return (f"contact events: EventBridge DISCONNECTED events via an SQS queue, delivered {lo / 1000:g}–{hi / 1000:g} s "
            f"after each chat ends (connect-sim `--contact-events-queue-url <contact-events queue> "
            f"--contact-events-delay-ms {lo}:{hi}`, our workers `CONTACT_EVENTS_QUEUE_URL`); ours only (the baseline "
            f"ignores the events: its run would be the one without them)")


ORDER = ["steady", "noisy", "neighbour", "capacity", "lifetimes", "capacity-events", "lifetimes-events",
         "two-instances", "new-account", "both-ops",
         "latency", "trickle", "faults", "outage", "fleet3", "fleet6", "staggered", "kill", "fleet3-redis",
         "fleet6-redis", "fleet6-long", "overhead"]


def meets(value, op, target):
    if value is None:
        return None
    return {"==": value == target, ">=": value >= target, "<=": value <= target}[op]
