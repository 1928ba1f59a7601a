//! Table tests of [`decide`]: every event in the states where it matters, with no clock, no I/O
//! and no randomness (the jitter sample is an input).

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::*;

const START: Operation = Operation::StartChatContact;
const ASSOCIATE: Operation = Operation::CreatePersistentContactAssociation;

fn now_at(base: Instant, ms: u64) -> Now {
    Now {
        mono: base + Duration::from_millis(ms),
        wall: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
    }
}

fn received(op: Operation) -> Event {
    Event::Received(Ok((op, None)))
}

fn err(class: ErrorClass, code: &str) -> Event {
    Event::Answered(Answer::Err {
        class,
        code: code.to_owned(),
        message: format!("{code} message"),
    })
}

fn view(admit: CapacityAdmit, ahead: usize, start_rate: Option<f64>) -> Event {
    Event::Capacity(CapacityView {
        admit,
        ahead,
        start_rate,
    })
}

fn view_claimed(admit: CapacityAdmit) -> Event {
    Event::Claimed(CapacityView {
        admit,
        ahead: 0,
        start_rate: Some(1.0),
    })
}

/// A job of `op` after its `Received` event, at `base`.
fn working(op: Operation, receive_count: u32, base: Instant) -> JobState {
    let mut job = JobState::new(receive_count);
    decide(
        &DecideSettings::default(),
        &mut job,
        received(op),
        now_at(base, 0),
        0.5,
    );
    job
}

#[test]
fn received_jobs_start_where_their_operation_waits_or_settle_at_once() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let now = now_at(base, 0);
    let cases: Vec<(&str, u32, Event, Step)> = vec![
        (
            "start chat waits for capacity",
            1,
            received(START),
            Step::AskCapacity,
        ),
        (
            "association goes to the rate permit",
            1,
            received(ASSOCIATE),
            Step::Acquire,
        ),
        (
            "invalid",
            1,
            Event::Received(Err("jobId: missing".into())),
            Step::Publish(Verdict::Invalid {
                message: "jobId: missing".into(),
            }),
        ),
        (
            "past notAfter",
            1,
            Event::Received(Ok((START, Some(now.wall - time::Duration::seconds(1))))),
            Step::Publish(Verdict::Expired),
        ),
        (
            "at notAfter still starts",
            1,
            Event::Received(Ok((START, Some(now.wall)))),
            Step::AskCapacity,
        ),
        (
            "receive budget spent",
            11,
            received(START),
            Step::Publish(Verdict::RetriesExhausted),
        ),
        (
            "receive budget spent wins over invalid",
            11,
            Event::Received(Err("x".into())),
            Step::Publish(Verdict::RetriesExhausted),
        ),
        (
            "last allowed receive",
            10,
            received(ASSOCIATE),
            Step::Acquire,
        ),
    ];
    for (name, rc, event, expected) in cases {
        let mut job = JobState::new(rc);
        assert_eq!(decide(&s, &mut job, event, now, 0.5), expected, "{name}");
    }
}

#[test]
fn capacity_answers_acquire_hold_or_give_back() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let now = now_at(base, 0);
    let at = |ms| base + Duration::from_millis(ms);
    let cases: Vec<(&str, u32, Event, Step)> = vec![
        ("go", 1, view(CapacityAdmit::Go, 0, None), Step::Acquire),
        (
            "admit within the hold budget: hold",
            1,
            view(CapacityAdmit::NotBefore(at(3_000)), 0, Some(1.0)),
            Step::HoldForCapacity { until: at(3_000) },
        ),
        (
            "admit later than the hold budget: back to SQS for about that long",
            1,
            view(CapacityAdmit::NotBefore(at(40_000)), 0, Some(0.1)),
            Step::GiveBack {
                after: Duration::from_secs(30),
                reason: RequeueReason::Capacity,
            },
        ),
        (
            "soon, but too many held ahead at the instance's rate",
            1,
            view(CapacityAdmit::NotBefore(at(500)), 40, Some(2.0)),
            Step::GiveBack {
                after: Duration::from_secs(15),
                reason: RequeueReason::Capacity,
            },
        ),
        (
            "a few held ahead fit the budget",
            1,
            view(CapacityAdmit::NotBefore(at(500)), 10, Some(2.0)),
            Step::HoldForCapacity { until: at(500) },
        ),
        (
            "nothing known of the rate and others held: the longest wait",
            1,
            view(CapacityAdmit::NotBefore(at(500)), 3, None),
            Step::GiveBack {
                after: Duration::from_secs(90),
                reason: RequeueReason::Capacity,
            },
        ),
        (
            "a very long wait is capped",
            1,
            view(CapacityAdmit::NotBefore(at(3_600_000)), 0, Some(0.001)),
            Step::GiveBack {
                after: Duration::from_secs(120),
                reason: RequeueReason::Capacity,
            },
        ),
        (
            "at the receive budget a capacity wait is recycled instead",
            10,
            view(CapacityAdmit::NotBefore(at(40_000)), 0, Some(0.1)),
            Step::Recycle {
                after: Duration::from_secs(30),
            },
        ),
    ];
    for (name, rc, event, expected) in cases {
        let mut job = working(START, rc, base);
        assert_eq!(decide(&s, &mut job, event, now, 0.5), expected, "{name}");
    }
}

#[test]
fn the_hold_budget_is_per_delivery_not_per_wait() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let mut job = working(START, 1, base);
    let mut t = 0;
    // Holds of 4 s each: the first two fit the 10 s budget, the third does not.
    for expected_hold in [true, true, false] {
        let now = now_at(base, t);
        let until = now.mono + Duration::from_secs(4);
        let step = decide(
            &s,
            &mut job,
            view(CapacityAdmit::NotBefore(until), 0, Some(1.0)),
            now,
            0.5,
        );
        assert_eq!(
            matches!(step, Step::HoldForCapacity { .. }),
            expected_hold,
            "at {t} ms: {step:?}"
        );
        assert_eq!(
            decide(&s, &mut job, Event::Woke, now, 0.5),
            Step::AskCapacity
        );
        t += 4_000;
    }
}

#[test]
fn permits_lead_to_the_call_unless_the_job_expired_meanwhile() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let now = now_at(base, 0);
    let mut job = working(ASSOCIATE, 1, base);
    assert_eq!(decide(&s, &mut job, Event::Permitted, now, 0.5), Step::Call);
    assert_eq!(job.calls, 1);
    // A start claims its instance's capacity right before the call.
    let mut start = working(START, 1, base);
    assert_eq!(
        decide(&s, &mut start, Event::Permitted, now, 0.5),
        Step::ClaimCapacity
    );
    assert_eq!(start.calls, 0);
    assert_eq!(
        decide(
            &s,
            &mut start.clone(),
            view_claimed(CapacityAdmit::Go),
            now,
            0.5
        ),
        Step::Call
    );
    // The instance filled while it waited for the token: it holds again, nothing is called.
    let soon = base + Duration::from_secs(1);
    assert_eq!(
        decide(
            &s,
            &mut start,
            view_claimed(CapacityAdmit::NotBefore(soon)),
            now,
            0.5
        ),
        Step::HoldForCapacity { until: soon }
    );
    assert_eq!(start.calls, 0);

    let mut late = JobState::new(1);
    let not_after = now.wall + time::Duration::seconds(1);
    decide(
        &s,
        &mut late,
        Event::Received(Ok((START, Some(not_after)))),
        now,
        0.5,
    );
    let later = Now {
        wall: now.wall + time::Duration::seconds(2),
        ..now
    };
    assert_eq!(
        decide(&s, &mut late, Event::Permitted, later, 0.5),
        Step::Publish(Verdict::Expired)
    );
    assert_eq!(late.calls, 0);
}

#[test]
fn each_connect_error_class_has_one_answer() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let now = now_at(base, 0);
    let cases: Vec<(&str, Event, Step)> = vec![
        (
            "success publishes at once",
            Event::Answered(Answer::Ok),
            Step::Publish(Verdict::Succeeded),
        ),
        (
            "throttled: full-jitter backoff in the process",
            err(ErrorClass::Throttled, "TooManyRequestsException"),
            Step::Backoff {
                until: now.mono + Duration::from_millis(100),
            },
        ),
        (
            "transient: the same",
            err(ErrorClass::Transient, "InternalServiceException"),
            Step::Backoff {
                until: now.mono + Duration::from_millis(100),
            },
        ),
        (
            "limit exceeded: ask the instance's capacity again",
            err(ErrorClass::LimitExceeded, "LimitExceededException"),
            Step::AskCapacity,
        ),
        (
            "credentials: not the job's fault, back to SQS shortly",
            err(ErrorClass::Credentials, "ExpiredTokenException"),
            Step::GiveBack {
                after: Duration::from_secs(7),
                reason: RequeueReason::Credentials,
            },
        ),
        (
            "rejected: a failed result with Connect's code",
            err(ErrorClass::Rejected, "InvalidParameterException"),
            Step::Publish(Verdict::Failed {
                code: "InvalidParameterException".into(),
                message: "InvalidParameterException message".into(),
            }),
        ),
    ];
    for (name, event, expected) in cases {
        let mut job = working(START, 1, base);
        assert_eq!(decide(&s, &mut job, event, now, 0.5), expected, "{name}");
    }
}

#[test]
fn in_process_retries_back_off_exponentially_then_go_back_to_sqs() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let now = now_at(base, 0);
    let mut job = working(ASSOCIATE, 2, base);
    let throttled = || err(ErrorClass::Throttled, "ThrottlingException");
    // Envelopes 200, 400, 800 ms; jitter 0.999 gives just under each.
    for envelope_ms in [200u64, 400, 800] {
        let step = decide(&s, &mut job, throttled(), now, 0.999);
        let Step::Backoff { until } = step else {
            panic!("{step:?}")
        };
        let wait = until - now.mono;
        assert!(
            wait < Duration::from_millis(envelope_ms)
                && wait >= Duration::from_millis(envelope_ms * 99 / 100),
            "{wait:?} for {envelope_ms}"
        );
        assert_eq!(decide(&s, &mut job, Event::Woke, now, 0.5), Step::Acquire);
    }
    // The fourth: spent; back to SQS with 5 s × 2^(2−1) = 10 s, equal jitter (0.5 → 7.5 s → 7 s).
    assert_eq!(
        decide(&s, &mut job, throttled(), now, 0.5),
        Step::GiveBack {
            after: Duration::from_secs(7),
            reason: RequeueReason::Transient,
        }
    );
}

#[test]
fn a_failed_publish_is_retried_in_the_worker_within_its_budget() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let mut job = working(START, 1, base);
    assert_eq!(
        decide(
            &s,
            &mut job,
            Event::Answered(Answer::Ok),
            now_at(base, 0),
            0.5
        ),
        Step::Publish(Verdict::Succeeded)
    );
    // Backoff 250 ms doubling to 2 s, equal jitter (0.0 → half the envelope).
    let mut t = 0;
    for half_envelope_ms in [125u64, 250, 500, 1_000, 1_000] {
        let now = now_at(base, t);
        assert_eq!(
            decide(&s, &mut job, Event::Published(false), now, 0.0),
            Step::Backoff {
                until: now.mono + Duration::from_millis(half_envelope_ms)
            }
        );
        // The same verdict is published again: no second Connect call.
        assert_eq!(
            decide(&s, &mut job, Event::Woke, now, 0.0),
            Step::Publish(Verdict::Succeeded)
        );
        t += half_envelope_ms;
    }
    assert_eq!(
        decide(&s, &mut job, Event::Published(true), now_at(base, t), 0.0),
        Step::Done
    );
    // Past the budget (the connect window), the job goes back to SQS instead.
    let mut stuck = working(ASSOCIATE, 1, base);
    decide(
        &s,
        &mut stuck,
        Event::Answered(Answer::Ok),
        now_at(base, 0),
        0.5,
    );
    decide(
        &s,
        &mut stuck,
        Event::Published(false),
        now_at(base, 0),
        0.5,
    );
    assert_eq!(
        decide(
            &s,
            &mut stuck,
            Event::Published(false),
            now_at(base, 300_000),
            0.5
        ),
        Step::GiveBack {
            after: Duration::from_secs(3),
            reason: RequeueReason::Unpublished,
        }
    );
}

#[test]
fn recycling_and_interruptions() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let now = now_at(base, 0);
    let mut job = working(START, 10, base);
    let step = decide(
        &s,
        &mut job,
        view(
            CapacityAdmit::NotBefore(base + Duration::from_secs(60)),
            0,
            Some(0.05),
        ),
        now,
        0.5,
    );
    assert_eq!(
        step,
        Step::Recycle {
            after: Duration::from_secs(45)
        }
    );
    assert_eq!(
        decide(&s, &mut job.clone(), Event::Recycled(true), now, 0.5),
        Step::Done
    );
    // A copy that could not be sent: the job keeps its receive budget by waiting here as long,
    // then asks its instance again (and at the budget, tries the recycle again).
    assert_eq!(
        decide(&s, &mut job, Event::Recycled(false), now, 0.5),
        Step::Backoff {
            until: now.mono + Duration::from_secs(45)
        }
    );
    assert_eq!(
        decide(&s, &mut job, Event::Woke, now, 0.5),
        Step::AskCapacity
    );
    // A credentials outage at the receive budget is recycled too, and its give-back says why.
    let mut job = working(START, 10, base);
    assert_eq!(
        decide(
            &s,
            &mut job,
            err(ErrorClass::Credentials, "InvalidSignatureException"),
            now,
            0.5
        ),
        Step::Recycle {
            after: Duration::from_secs(7)
        }
    );
    assert_eq!(
        decide(&s, &mut job, Event::Recycled(false), now, 0.5),
        Step::Backoff {
            until: now.mono + Duration::from_secs(7)
        }
    );
    for (event, reason) in [
        (Event::HandedOff, RequeueReason::Handoff),
        (Event::Stopped, RequeueReason::Shutdown),
    ] {
        let mut job = working(START, 1, base);
        assert_eq!(
            decide(&s, &mut job, event, now, 0.5),
            Step::GiveBack {
                after: Duration::ZERO,
                reason
            }
        );
    }
}

#[test]
fn a_fifo_groups_job_waits_its_turn_and_is_never_recycled() {
    let s = DecideSettings::default();
    let base = Instant::now();
    let now = now_at(base, 0);
    let mut job = JobState::grouped(1);
    assert_eq!(
        decide(&s, &mut job, received(START), now, 0.5),
        Step::AwaitTurn
    );
    assert_eq!(
        decide(&s, &mut job.clone(), Event::Turn(true), now, 0.5),
        Step::AskCapacity
    );
    // An earlier job of its group went back: it follows at once, unworked.
    assert_eq!(
        decide(&s, &mut job, Event::Turn(false), now, 0.5),
        Step::GiveBack {
            after: Duration::ZERO,
            reason: RequeueReason::Group,
        }
    );
    // At the receive budget a capacity wait stays in the worker instead of a recycle (a FIFO
    // queue takes no per-message delay); below it, the usual give-back keeps its place.
    for (rc, expected) in [
        (
            10,
            Step::Backoff {
                until: now.mono + Duration::from_secs(30),
            },
        ),
        (
            3,
            Step::GiveBack {
                after: Duration::from_secs(30),
                reason: RequeueReason::Capacity,
            },
        ),
    ] {
        let mut job = JobState::grouped(rc);
        decide(&s, &mut job, received(START), now, 0.5);
        decide(&s, &mut job, Event::Turn(true), now, 0.5);
        let full = view(
            CapacityAdmit::NotBefore(base + Duration::from_secs(40)),
            0,
            Some(0.1),
        );
        assert_eq!(decide(&s, &mut job, full, now, 0.5), expected, "rc {rc}");
    }
}
