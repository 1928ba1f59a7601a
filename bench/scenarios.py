"""The benchmark's scenarios, as data: connect-sim's flags, the backlog, the workers' rate settings,
the rate the quota leaves to the workers (the goodput denominator) and the issue's targets.

Every scenario but `capacity` lifts the active-chat limit (connect-sim's default is 100 chats of
60 s, which a 10/s run would hit after 10 s): only `capacity` is about chat capacity.
`overhead` is special-cased in run.py (no quota, worker CPU and memory).
"""

NO_CHAT_LIMIT = ["--max-active-chats", "1000000"]

# (metric key, comparison, target value, label)
EVERYWHERE = [("lost", "==", 0, "lost jobs"), ("duplicate_chats", "==", 0, "duplicate chats")]

SCENARIOS = {
    "steady": {
        "title": "quota 10/s burst 10, 300 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", *NO_CHAT_LIMIT],
        "jobs": 300, "replicas": 1, "rate": "10", "burst": "10", "allowed": 10.0,
        "chart_lines": [(10, "quota 10/s")],
        "targets": [("goodput", ">=", 0.98, "goodput"), ("throttled_ratio", "<=", 0.005, "429 ratio")],
    },
    "noisy": {
        "title": "quota 10/s, another caller at 3/s, 300 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", "--background-rate", "3", *NO_CHAT_LIMIT],
        "jobs": 300, "replicas": 1, "rate": "10", "burst": "10", "allowed": 7.0,
        "chart_lines": [(10, "quota 10/s"), (7, "left by the other caller: 7/s")],
        "targets": [("goodput", ">=", 0.95, "goodput (of the 7/s left)"),
                    ("throttled_ratio", "<=", 0.02, "429 ratio"),
                    ("background_refused_ratio", "<=", 0.02, "other caller refused")],
    },
    "capacity": {
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
        "targets": [("goodput", ">=", 0.97, "goodput"), ("throttled_ratio", "<=", 0.02, "429 ratio")],
    },
    "fleet6": {
        "title": "6 replicas sharing quota 10/s burst 10 (each START_CHAT_RATE=10), 400 jobs",
        "sim": ["--start-chat-rate", "10", "--start-chat-burst", "10", *NO_CHAT_LIMIT],
        "jobs": 400, "replicas": 6, "rate": "10", "burst": "10", "allowed": 10.0,
        "chart_lines": [(10, "quota 10/s")],
        "targets": [("goodput", ">=", 0.97, "goodput"), ("throttled_ratio", "<=", 0.02, "429 ratio")],
    },
}

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
    "idle_seconds": 10,
    "targets": [("cpu_ms_per_job", "<=", 1.0, "worker CPU per job (ms)"),
                ("idle_rss_mib", "<=", 30.0, "idle RSS (MiB)")],
}

# The fleets again with the optional fleet-wide limiter (REDIS_URL): a GCRA in Redis shared by the
# replicas, on top of each one's adaptive limiter. Ours only: the baseline has no such mode.
for _n in ("fleet3", "fleet6"):
    SCENARIOS[_n + "-redis"] = dict(SCENARIOS[_n], redis=True, impls=["ours"],
                                    title=SCENARIOS[_n]["title"] + ", with REDIS_URL (shared GCRA)")

# Fleet6 again for two minutes: every replica needs a 429 of its own to learn that it shares, which
# a 40 s run cannot amortize (six 429s are already 1.5 % of 400 calls); this shows where the fleet
# settles. Ours only; the same targets, so both runs show side by side.
SCENARIOS["fleet6-long"] = dict(SCENARIOS["fleet6"], jobs=1200, impls=["ours"],
                                title="6 replicas sharing quota 10/s burst 10 (each START_CHAT_RATE=10), "
                                      "1,200 jobs (two minutes)")

ORDER = ["steady", "noisy", "capacity", "faults", "fleet3", "fleet6", "fleet3-redis", "fleet6-redis", "fleet6-long",
         "overhead"]


def meets(value, op, target):
    if value is None:
        return None
    return {"==": value == target, ">=": value >= target, "<=": value <= target}[op]
