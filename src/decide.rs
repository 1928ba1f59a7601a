//! What a job does next: one pure decision per job.
//!
//! [`decide`] is a plain function of the job's [`JobState`], the [`Event`] that just happened,
//! `now` ([`Now`]: tokio's monotonic clock and the wall clock) and a jitter sample in `[0, 1)`.
//! It returns the next [`Step`]; `src/pipeline/process.rs` carries the steps out and reports what
//! happened as the next event. Nothing else decides what a job does: retries, capacity waits,
//! give-backs, recycling, expiry and publish retries are all here, and tested as a table
//! (`tests` below) with no clock, no I/O and no randomness.
//!
//! # The protocol of one delivery
//!
//! ```text
//! Received ─▶ (a FIFO group's message) AwaitTurn ─▶ Turn(true) ─▶ as below;  Turn(false) ─▶ GiveBack(0)
//! Received ─▶ Publish(RetriesExhausted | Invalid | Expired)            (settled at once)
//!          └▶ StartChatContact: AskCapacity ─▶ Capacity(Go) ─▶ Acquire
//!                                           └▶ Capacity(NotBefore) ─▶ HoldForCapacity ─▶ Woke ─▶ AskCapacity
//!                                                                  └▶ GiveBack / Recycle (too long to hold)
//!             CreatePersistentContactAssociation: Acquire
//! Acquire ─▶ Woke (a start whose instance was found full while it waited for its token) ─▶ AskCapacity
//! Acquire ─▶ Permitted ─▶ start: ClaimCapacity ─▶ Claimed(Go) ─▶ Call
//!                                             └▶ Claimed(NotBefore) ─▶ hold or give back, as above
//!                      └▶ association: Call;   past notAfter: Publish(Expired)
//! Call ─▶ Answered ─▶ the one match on the error class (below)
//! Publish ─▶ Published(ok) ─▶ Done;  Published(failed) ─▶ RetryPublish ─▶ Woke ─▶ Publish (same verdict)
//! any wait ─▶ Stopped / HandedOff ─▶ GiveBack(0)
//! ```
//!
//! After a Connect answer (`Answered`), by class:
//! - success → publish the result at once (the participant token's connect window is running:
//!   a created chat never waits for capacity or in SQS again; a failed publish is retried here);
//! - `Throttled` / `Transient` → back off with full jitter and try again in this process, up to
//!   `retries_per_delivery`, then back to SQS with a delay that grows with the receive count;
//! - `LimitExceeded` → ask the instance's capacity machine again (it was told of the limit by
//!   the call's permit and now paces starts): hold or give back;
//! - `Credentials` (expired or unrecognized credentials, bad signature) → back to SQS after a
//!   short delay (recycled at the receive budget): not the job's fault, it must not fail;
//! - `Rejected` → a failed result with Connect's code.
//!
//! A FIFO group's message waits for its turn first (`pipeline::groups`): one job of a group at a
//! time, in order. It is never recycled (a FIFO queue takes no per-message delay and a copy would
//! go to the end of its group); at the receive budget a wait that is not its fault is spent in
//! the worker instead, hidden by the heartbeat, since its group waits for it either way.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::connect::{ErrorClass, Operation};
use crate::rate::capacity::CapacityAdmit;

/// Every constant of the decisions, each with where its value comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct DecideSettings {
    /// A job received more than this many times fails with `RetriesExhausted` (`MAX_RECEIVE_COUNT`).
    pub max_receive_count: u32,
    /// In-process retries per delivery after throttles or transient failures. 3, as the AWS SDKs'
    /// standard retry mode (3 attempts) gives.
    pub retries_per_delivery: u32,
    /// Backoff envelope of those retries: 200 ms doubling to 5 s, full jitter (AWS Architecture
    /// Blog, "Exponential Backoff And Jitter"; the SDKs' standard mode uses a 20 s cap, ours is
    /// shorter because a customer waits behind the job).
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Visibility delay when in-process retries are spent: 5 s doubling per receive up to 300 s,
    /// equal jitter, so a Connect outage is not hammered by every job every second.
    pub transient_base: Duration,
    pub transient_max: Duration,
    /// Longest one delivery of a start-chat job waits in the worker for its instance's chat
    /// capacity, over all its waits. Held jobs occupy in-flight slots; the receiver holds about
    /// 5 s of work (`pipeline::receiver`), so 10 s (handoff's horizon) keeps a held job no longer
    /// than the worker would keep any waiting job.
    pub capacity_hold: Duration,
    /// Bounds of the SQS visibility delay of a job given back for capacity: SQS delays are whole
    /// seconds, so at least 1 s; at most 120 s, so a job is back soon after capacity returns
    /// without notice (another caller's chats ended).
    pub capacity_min_wait: Duration,
    pub capacity_max_wait: Duration,
    /// Visibility delay of a job given back after a credentials or signing error (equal jitter,
    /// not growing: the outage is the worker's, not the job's, and ends for all jobs at once).
    /// 10 s: role credentials are refreshed minutes before they expire and a drifted clock is
    /// corrected by NTP within seconds; meanwhile the receiver takes one job per pause only.
    /// Like a capacity wait it must not use up the receive budget: recycled at the budget.
    pub credentials_wait: Duration,
    /// Backoff of a failed publish: 250 ms doubling to 2 s, equal jitter; 2 s so a result goes
    /// out within about 2 s after the results queue comes back.
    pub publish_min: Duration,
    pub publish_max: Duration,
    /// How long a job keeps retrying its publish in the worker before it goes back to SQS: the
    /// participant token's connect window (5 minutes, StartChatContact documentation), after which
    /// a start result is no use to the customer anyway.
    pub publish_budget: Duration,
}

impl Default for DecideSettings {
    fn default() -> Self {
        DecideSettings {
            max_receive_count: 10,
            retries_per_delivery: 3,
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            transient_base: Duration::from_secs(5),
            transient_max: Duration::from_secs(300),
            capacity_hold: Duration::from_secs(10),
            capacity_min_wait: Duration::from_secs(1),
            capacity_max_wait: Duration::from_secs(120),
            credentials_wait: Duration::from_secs(10),
            publish_min: Duration::from_millis(250),
            publish_max: Duration::from_secs(2),
            publish_budget: Duration::from_secs(300),
        }
    }
}

/// The clocks a decision reads: tokio's monotonic one for waits, the wall clock for `notAfter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall: OffsetDateTime,
}

impl Now {
    pub fn read() -> Self {
        Now {
            mono: Instant::now(),
            wall: OffsetDateTime::now_utc(),
        }
    }
}

/// What the decision remembers about one delivery of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobState {
    /// `None` until the job parsed (an invalid job has no operation).
    pub op: Option<Operation>,
    pub receive_count: u32,
    pub not_after: Option<OffsetDateTime>,
    /// Connect calls made in this delivery.
    pub calls: u32,
    /// Throttled or transient answers in this delivery (the backoff envelope's exponent).
    pub retries: u32,
    /// Until when this delivery may hold the job for capacity (set at its first hold).
    pub hold_deadline: Option<Instant>,
    /// What is being published, once decided.
    pub verdict: Option<Verdict>,
    /// Failed publish attempts, and when the first publish began.
    pub publish_failures: u32,
    pub publish_started: Option<Instant>,
    /// The delay and reason of a recycle under way, for a plain give-back should it fail.
    pub recycling: Option<(Duration, RequeueReason)>,
    /// The message belongs to a FIFO group: it waits for its turn first, and is never recycled
    /// (a FIFO queue takes no per-message delay, and a re-sent copy would go to the end of the
    /// group).
    pub grouped: bool,
    /// What arrived, kept while a grouped job waits for its turn.
    pub received: Option<Result<(Operation, Option<OffsetDateTime>), String>>,
}

impl JobState {
    pub fn new(receive_count: u32) -> Self {
        JobState {
            op: None,
            receive_count,
            not_after: None,
            calls: 0,
            retries: 0,
            hold_deadline: None,
            verdict: None,
            publish_failures: 0,
            publish_started: None,
            recycling: None,
            grouped: false,
            received: None,
        }
    }

    /// A delivery of a FIFO group's message.
    pub fn grouped(receive_count: u32) -> Self {
        JobState {
            grouped: true,
            ..JobState::new(receive_count)
        }
    }
}

/// Why a job goes back to SQS without a result (`resume_chat_jobs_requeued_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequeueReason {
    /// Its instance has no chat capacity it can start soon.
    Capacity,
    /// In-process retries are spent on throttles or transient failures.
    Transient,
    /// Connect refused our credentials or signature (not the job's fault).
    Credentials,
    /// The result could not be published within the publish budget.
    Unpublished,
    /// The worker is shutting down before the job's call started.
    Shutdown,
    /// This replica cannot start the job soon at its current rate (`pipeline::handoff`).
    Handoff,
    /// An earlier job of its FIFO group went back to SQS: it follows, unworked, to keep the
    /// group's order.
    Group,
}

impl RequeueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RequeueReason::Capacity => "capacity",
            RequeueReason::Transient => "transient",
            RequeueReason::Credentials => "credentials",
            RequeueReason::Unpublished => "unpublished",
            RequeueReason::Shutdown => "shutdown",
            RequeueReason::Handoff => "handoff",
            RequeueReason::Group => "group",
        }
    }
}

/// What a job's result says, decided here; the pipeline fills in the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The Connect call succeeded (the pipeline holds the response).
    Succeeded,
    /// Connect refused the job for good with this code.
    Failed { code: String, message: String },
    /// The body is not a valid job (the message names the field).
    Invalid { message: String },
    /// `notAfter` passed before the job was started.
    Expired,
    /// Received more than `max_receive_count` times; moved to the DLQ when there is one.
    RetriesExhausted,
}

/// What a Connect call answered, classified at the adapter boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Err {
        class: ErrorClass,
        code: String,
        message: String,
    },
}

/// What the instance's capacity machine said, and how crowded its wait is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CapacityView {
    pub admit: CapacityAdmit,
    /// Jobs of this worker already held for this instance (not counting this one).
    pub ahead: usize,
    /// Starts per second the machine allows now while the instance is limited.
    pub start_rate: Option<f64>,
}

/// What just happened to the job.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The delivery arrived: the parsed job's operation and `notAfter`, or why it is invalid.
    Received(Result<(Operation, Option<OffsetDateTime>), String>),
    /// A grouped job's turn came (`true`), or an earlier job of its group went back (`false`).
    Turn(bool),
    /// The instance's capacity machine answered an [`Step::AskCapacity`].
    Capacity(CapacityView),
    /// A hold or a backoff is over (or the instance's capacity changed while held).
    Woke,
    /// The rate permit was granted.
    Permitted,
    /// The instance's capacity machine answered a [`Step::ClaimCapacity`] (`Go`: the start is
    /// the caller's, in its permit).
    Claimed(CapacityView),
    /// Connect answered the call.
    Answered(Answer),
    /// The settler tried to publish the verdict: `true` when published and the job deleted.
    Published(bool),
    /// A recycle (re-send as a new delayed message) was tried: `true` when the copy went out.
    Recycled(bool),
    /// Handoff asked for the job back: this replica cannot start it soon.
    HandedOff,
    /// Receiving stopped (shutdown) while the job waited; or the grace period ended on the wire.
    Stopped,
}

/// The next thing the pipeline does with the job.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Wait until the earlier jobs of the job's FIFO group held here are done; report `Turn`.
    AwaitTurn,
    /// Ask the instance's capacity machine whether a start could go now (nothing is taken).
    AskCapacity,
    /// Keep the job in the worker until `until`, or until the instance's capacity changes; then
    /// report `Woke`.
    HoldForCapacity { until: Instant },
    /// Wait for the operation's rate permit (handoff or shutdown may interrupt).
    Acquire,
    /// Take the start from the instance's capacity machine, right before the call.
    ClaimCapacity,
    /// Call Connect with the permit.
    Call,
    /// Sleep until `until`, then report `Woke`.
    Backoff { until: Instant },
    /// Give the message back to SQS, visible again after `after`.
    GiveBack {
        after: Duration,
        reason: RequeueReason,
    },
    /// Send the job again as a new message delayed by `after` and delete this one: a capacity
    /// wait must not use up the receive budget. Report `Recycled`.
    Recycle { after: Duration },
    /// Publish this verdict's result, then delete the job (after the DLQ move for
    /// `RetriesExhausted` when there is a DLQ). Report `Published`.
    Publish(Verdict),
    /// The job is settled; nothing more to do.
    Done,
}

/// The decision. See the module doc for the protocol.
pub fn decide(s: &DecideSettings, job: &mut JobState, event: Event, now: Now, jitter: f64) -> Step {
    match event {
        Event::Received(parsed) if job.grouped => {
            job.received = Some(parsed);
            Step::AwaitTurn
        }
        Event::Turn(false) => Step::GiveBack {
            after: Duration::ZERO,
            reason: RequeueReason::Group,
        },
        Event::Turn(true) => {
            let parsed = job
                .received
                .take()
                .unwrap_or_else(|| Err("internal error: no job to work".to_owned()));
            job.grouped = false;
            let step = decide(s, job, Event::Received(parsed), now, jitter);
            job.grouped = true;
            step
        }
        Event::Received(parsed) => {
            if job.receive_count > s.max_receive_count {
                return publish(job, Verdict::RetriesExhausted, now);
            }
            let (op, not_after) = match parsed {
                Ok(p) => p,
                Err(message) => return publish(job, Verdict::Invalid { message }, now),
            };
            job.op = Some(op);
            job.not_after = not_after;
            if expired(job, now) {
                return publish(job, Verdict::Expired, now);
            }
            first_wait(job)
        }
        Event::Woke => match &job.verdict {
            Some(v) => Step::Publish(v.clone()),
            None => first_wait(job),
        },
        Event::Capacity(view) => match view.admit {
            CapacityAdmit::Go => Step::Acquire,
            CapacityAdmit::NotBefore(at) => capacity_wait(s, job, view, at, now, jitter),
        },
        Event::Permitted => {
            if expired(job, now) {
                return publish(job, Verdict::Expired, now);
            }
            if job.op == Some(Operation::StartChatContact) {
                return Step::ClaimCapacity;
            }
            job.calls += 1;
            Step::Call
        }
        // The instance filled while the job waited for its token: the token goes unused (its
        // permit reports neutral) and the job waits for capacity again.
        Event::Claimed(view) => match view.admit {
            CapacityAdmit::Go => {
                job.calls += 1;
                Step::Call
            }
            CapacityAdmit::NotBefore(at) => capacity_wait(s, job, view, at, now, jitter),
        },
        Event::Answered(Answer::Ok) => publish(job, Verdict::Succeeded, now),
        Event::Answered(Answer::Err {
            class,
            code,
            message,
        }) => match class {
            ErrorClass::Throttled | ErrorClass::Transient => {
                job.retries += 1;
                if job.retries <= s.retries_per_delivery {
                    let envelope = doubling(s.retry_min, s.retry_max, job.retries);
                    Step::Backoff {
                        until: now.mono + full_jitter(envelope, jitter),
                    }
                } else {
                    Step::GiveBack {
                        after: requeue_delay(
                            s.transient_base,
                            s.transient_max,
                            job.receive_count,
                            jitter,
                        ),
                        reason: RequeueReason::Transient,
                    }
                }
            }
            ErrorClass::LimitExceeded => Step::AskCapacity,
            ErrorClass::Credentials => {
                let after = whole_seconds(equal_jitter(s.credentials_wait, jitter));
                give_back_or_recycle(s, job, after, RequeueReason::Credentials, now)
            }
            ErrorClass::Rejected => publish(job, Verdict::Failed { code, message }, now),
        },
        Event::Published(true) => Step::Done,
        Event::Published(false) => {
            job.publish_failures += 1;
            let started = *job.publish_started.get_or_insert(now.mono);
            if now.mono.saturating_duration_since(started) >= s.publish_budget {
                return Step::GiveBack {
                    after: requeue_delay(
                        s.transient_base,
                        s.transient_max,
                        job.receive_count,
                        jitter,
                    ),
                    reason: RequeueReason::Unpublished,
                };
            }
            let envelope = doubling(s.publish_min, s.publish_max, job.publish_failures);
            Step::Backoff {
                until: now.mono + equal_jitter(envelope, jitter),
            }
        }
        Event::Recycled(true) => Step::Done,
        // The copy could not be sent (denied, throttled, SQS down). A give-back would spend the
        // job's last receive on a wait that is not its fault, so it waits here instead, hidden by
        // the heartbeat, and the next wait at the budget tries the recycle again.
        Event::Recycled(false) => {
            let (after, _) = job
                .recycling
                .take()
                .unwrap_or((s.capacity_min_wait, RequeueReason::Capacity));
            Step::Backoff {
                until: now.mono + after,
            }
        }
        Event::HandedOff => Step::GiveBack {
            after: Duration::ZERO,
            reason: RequeueReason::Handoff,
        },
        Event::Stopped => Step::GiveBack {
            after: Duration::ZERO,
            reason: RequeueReason::Shutdown,
        },
    }
}

/// Where a job starts waiting: start chats at their instance's capacity, associations at the rate.
fn first_wait(job: &JobState) -> Step {
    match job.op {
        Some(Operation::StartChatContact) => Step::AskCapacity,
        _ => Step::Acquire,
    }
}

fn publish(job: &mut JobState, verdict: Verdict, now: Now) -> Step {
    job.verdict = Some(verdict.clone());
    job.publish_started.get_or_insert(now.mono);
    Step::Publish(verdict)
}

fn expired(job: &JobState, now: Now) -> bool {
    job.not_after.is_some_and(|t| now.wall > t)
}

/// The instance is full: hold the job while what it expects to wait fits this delivery's hold
/// budget, else give it back to SQS for about that long (recycled when the next receive would
/// exceed the receive budget).
fn capacity_wait(
    s: &DecideSettings,
    job: &mut JobState,
    view: CapacityView,
    at: Instant,
    now: Now,
    jitter: f64,
) -> Step {
    let until_admit = at.saturating_duration_since(now.mono);
    // The jobs held before this one go first at the machine's rate.
    let queued = match view.start_rate {
        Some(r) if r > 0.0 && r.is_finite() => {
            Duration::from_secs_f64((view.ahead as f64 / r).min(86_400.0))
        }
        _ if view.ahead > 0 => s.capacity_max_wait,
        _ => Duration::ZERO,
    };
    let expected = until_admit.max(queued);
    let deadline = *job.hold_deadline.get_or_insert(now.mono + s.capacity_hold);
    if now.mono + expected <= deadline {
        return Step::HoldForCapacity { until: at };
    }
    let after = equal_jitter(expected, jitter).clamp(s.capacity_min_wait, s.capacity_max_wait);
    give_back_or_recycle(s, job, whole_seconds(after), RequeueReason::Capacity, now)
}

/// A wait that is not the job's fault (capacity, credentials) must not use up its receive budget:
/// at the budget the job is recycled as a new message instead of given back.
fn give_back_or_recycle(
    s: &DecideSettings,
    job: &mut JobState,
    after: Duration,
    reason: RequeueReason,
    now: Now,
) -> Step {
    if job.receive_count < s.max_receive_count {
        Step::GiveBack { after, reason }
    } else if job.grouped {
        // A FIFO message cannot be recycled; given back it would use up its last receive. Its
        // group waits for it either way (SQS delivers no later message of the group while it is
        // invisible), so it waits here, hidden by the heartbeat: one slot, no receive spent.
        Step::Backoff {
            until: now.mono + after,
        }
    } else {
        job.recycling = Some((after, reason));
        Step::Recycle { after }
    }
}

/// SQS delays are whole seconds; at least one.
fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

/// `min × 2^(n − 1)`, capped at `max`.
pub fn doubling(min: Duration, max: Duration, n: u32) -> Duration {
    min.saturating_mul(1u32 << n.saturating_sub(1).min(20))
        .min(max)
}

/// Full jitter: uniform in `[0, envelope)`.
pub fn full_jitter(envelope: Duration, jitter: f64) -> Duration {
    envelope.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Equal jitter: uniform in `[envelope / 2, envelope)`, so a wait never collapses to zero.
pub fn equal_jitter(envelope: Duration, jitter: f64) -> Duration {
    envelope.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// `base × 2^(receive_count − 1)`, capped, with equal jitter; whole seconds, as SQS visibility
/// timeouts are, and at least one second.
pub fn requeue_delay(base: Duration, max: Duration, receive_count: u32, jitter: f64) -> Duration {
    whole_seconds(equal_jitter(doubling(base, max, receive_count), jitter))
}

#[cfg(test)]
mod tests;
