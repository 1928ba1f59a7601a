"""Unit tests of the benchmark's own arithmetic (no processes): the goodput bound with the burst,
the clairvoyant starter, the recovery window, the job mix. Run: .venv/bin/python -m pytest bench -q"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import analysis  # noqa: E402
import run  # noqa: E402


def test_an_ideal_lone_worker_scores_one_with_the_burst_counted():
    # 10 calls at once (the burst), then one every 100 ms at 10/s.
    times = [0] * 10 + [100 * i for i in range(1, 291)]
    assert abs(analysis.burst_goodput(times, 10, 10) - 1.0) < 1e-9
    # Ignoring the burst (calling at the rate from the start) loses the burst's share.
    paced = [100 * i for i in range(300)]
    assert analysis.burst_goodput(paced, 10, 10) < 0.975
    # What another caller took is not ours to use.
    assert abs(analysis.burst_goodput(times, 10, 10 + 50, other_accepted=50) - 1.0) < 1e-9


def test_the_clairvoyant_starter_is_bound_by_slots_and_by_the_bucket():
    # Fixed 5 s lifetimes, 20 slots: waves every 5 s, the 8th wave at 35 s.
    assert analysis.clairvoyant_last_start([5.0] * 160, 20, 20, 20) == 35.0
    # No capacity limit: the bucket alone, (300 - 10) / 10 s.
    assert abs(analysis.clairvoyant_last_start([0.0] * 300, 1000, 10, 10) - 29.0) < 1e-6
    # Varied lifetimes: a short chat frees its slot early, so the ideal is faster than the mean suggests.
    varied = [1.0, 9.0] * 40
    assert analysis.clairvoyant_last_start(varied, 2, 100, 100) < analysis.clairvoyant_last_start([5.0] * 80, 2, 100, 100)


def test_recovery_is_the_first_whole_second_back_at_the_rate():
    slow = [20000 + 200 * i for i in range(15)]  # 5/s from 20 s to 23 s
    fast = [23000 + 100 * i for i in range(50)]  # 10/s from 23 s
    # [22.8, 23.8) is the first whole second with 9 calls (the slow tail's last one included).
    assert analysis.sliding_recovery(slow + fast, 20, 9, 27) == 2.8
    assert analysis.sliding_recovery(slow, 20, 9, 22) is None


def test_the_job_mix_is_shuffled_by_seed_and_keeps_its_shares():
    scn = {"jobs": 90, "mix": [("startPersistentChat", None, 2), ("associatePersistentContact", None, 1)]}
    kinds = run.job_kinds(scn, 1)
    assert len(kinds) == 90
    assert sum(1 for a, _ in kinds if a == "associatePersistentContact") == 30
    assert kinds != run.job_kinds(scn, 2)
    assert kinds == run.job_kinds(scn, 1)


def test_the_sampler_reads_one_replicas_start_rate_sharers_in_flight_and_calls():
    import timeline  # noqa: E402
    lines = ['resume_chat_allowed_rate{operation="StartChatContact"} 5.5',
             'resume_chat_allowed_rate{operation="CreatePersistentContactAssociation"} 9',
             'resume_chat_rate_sharers 2.5', 'resume_chat_jobs_in_flight 12',
             'resume_chat_connect_calls_total{code="OK",operation="StartChatContact"} 40',
             'resume_chat_connect_calls_total{code="TooManyRequestsException",operation="StartChatContact"} 2']
    row = run.Sampler._sample(lines)
    assert row == [5.5, 2.5, 12.0, {"OK": 40, "TooManyRequestsException": 2}]
    assert run.Sampler._sample([]) is None, "nothing scraped: no row"
    # Two samples of one replica in one bin, one in the next: calls and 429s are differences.
    rows = [[0.5, 0, *row], [1.5, 0, 5.0, 2.5, 10.0, {"OK": 45, "TooManyRequestsException": 3}],
            [2.5, 0, 5.0, 2.5, 9.0, {"OK": 50, "TooManyRequestsException": 3}]]
    t = timeline.table(rows, 2.0)
    assert t[(0, 0)] == (5.0, 2.5, 10.0, 48, 3)
    assert t[(1, 0)] == (5.0, 2.5, 9.0, 5, 0)


def test_the_report_names_scenarios_built_from_another_commit():
    import report
    stored = {"meta": {"commit": "bbb"}, "scenarios": {
        "steady": {"ours": {"runs": [{"commit": "aaa"}, {"commit": "aaa"}]}, "baseline": {"runs": [{"commit": "aaa"}]}},
        "two-instances": {"ours": {"runs": [{"commit": "bbb"}]}}}}
    assert report.commits_note(stored) == "Commits: `bbb` for two-instances/ours; `aaa` for the rest"
    for e in stored["scenarios"]["steady"].values():
        e["runs"] = [{"commit": "bbb"}]
    assert report.commits_note(stored) == "Commit: `bbb`"


def test_sqs_requests_add_up_over_replicas_by_operation():
    scraped = [['resume_chat_sqs_requests_total{operation="ReceiveMessage"} 3',
                'resume_chat_connect_calls_total{operation="StartChatContact",code="OK"} 9'],
               ['resume_chat_sqs_requests_total{operation="ReceiveMessage"} 2',
                'resume_chat_sqs_requests_total{operation="DeleteMessageBatch"} 1']]
    assert run.sqs_requests(scraped) == {"ReceiveMessage": 5, "DeleteMessageBatch": 1}


def test_the_contact_events_scenarios_are_capacity_and_lifetimes_plus_the_queue():
    from scenarios import ORDER, SCENARIOS, contact_events_note
    for base in ("capacity", "lifetimes"):
        scn, orig = SCENARIOS[base + "-events"], SCENARIOS[base]
        assert base + "-events" in ORDER
        for key in ("sim", "jobs", "seeds", "targets", "rate", "burst", "allowed", "max_active_chats"):
            assert scn.get(key) == orig.get(key), key
        assert scn["contact_events"] == (250, 750) and scn["impls"] == ["ours"]
        flags = run.sim_flags(scn, 2, "http://127.0.0.1:1/123456789012/contact-events")
        assert flags[flags.index("--contact-events-queue-url") + 1].endswith("/contact-events")
        assert flags[flags.index("--contact-events-delay-ms") + 1] == "250:750"
        assert flags[flags.index("--seed") + 1] == "2"
        assert "--contact-events-queue-url" not in run.sim_flags(orig, 2)
        assert "delivered 0.25–0.75 s after each chat ends" in contact_events_note(scn)
        assert contact_events_note(orig) is None


def test_contact_events_read_add_up_over_replicas_by_kind():
    scraped = [['resume_chat_contact_events_total{kind="chat_ended"} 7',
                'resume_chat_sqs_requests_total{operation="ReceiveMessage"} 3'],
               ['resume_chat_contact_events_total{kind="chat_ended"} 2',
                'resume_chat_contact_events_total{kind="duplicate"} 1']]
    assert run.contact_events_read(scraped) == {"chat_ended": 9, "duplicate": 1}
    assert run.contact_events_read([]) == {}


def test_the_neighbours_arrival_moves_by_seed_within_its_first_period_and_keeps_its_leaving():
    scn = {"sim": ["--background-schedule", "8:20:4,30:40:2"], "background_phase": True}
    flags = run.sim_flags(scn, 1)
    first, second = flags[flags.index("--background-schedule") + 1].split(",")
    start, stop, rate = (float(v) for v in first.split(":"))
    assert 8.0 <= start < 8.25 and stop == 20.0 and rate == 4.0
    start, stop, _ = (float(v) for v in second.split(":"))
    assert 30.0 <= start < 30.5 and stop == 40.0
    assert flags == run.sim_flags(scn, 1)
    assert flags != run.sim_flags(scn, 2)
    assert scn["sim"] == ["--background-schedule", "8:20:4,30:40:2"]


def test_a_steady_other_caller_starts_at_a_phase_drawn_by_seed_and_never_leaves():
    scn = {"sim": ["--start-chat-rate", "10", "--background-rate", "3"], "background_phase": True}
    flags = run.sim_flags(scn, 1)
    assert "--background-rate" not in flags
    start, stop, rate = (float(v) for v in flags[flags.index("--background-schedule") + 1].split(":"))
    assert 0.0 <= start < 1 / 3 and stop == run.STEADY_UNTIL_S and rate == 3.0
    assert flags != run.sim_flags(scn, 2)
    assert "--background-schedule" not in scn["sim"]
