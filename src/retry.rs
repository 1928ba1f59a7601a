//! Retry decisions: what to do after a Connect call failed, as a plain function of the error class,
//! the backoff schedule's next step, the delivery's receive count and a jitter sample in `[0, 1)`.
//! The pipeline carries the [`Decision`] out; tests check it with no clock and no randomness.
//!
//! - Rate throttles and transient failures retry in-process after exponential backoff with full
//!   jitter (AWS's recommendation: spread retries over the whole window so replicas don't retry in
//!   lockstep). The exponential envelope and the attempt limit come from `backon`
//!   ([`RetryPolicy::schedule`]); when it is spent, the job goes back to SQS.
//! - `LimitExceededException` (no chat capacity) never retries in-process: the job goes back to
//!   SQS with a visibility delay that grows with its receive count, so it waits without burning
//!   calls. "Equal jitter" (half fixed, half random) keeps the wait from collapsing to zero.
//! - Rejections (4xx) fail the job with Connect's code.

use std::time::Duration;

use crate::connect::{ConnectError, ErrorClass};

/// Tunables for retries; defaults suit Connect's default quotas.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// In-process retries per delivery after throttles or transient failures.
    pub retries_per_delivery: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Visibility delay for the first capacity wait; doubles per receive.
    pub capacity_base: Duration,
    pub capacity_max: Duration,
    /// Visibility delay when in-process retries are spent on transient failures; doubles per receive.
    pub transient_base: Duration,
    pub transient_max: Duration,
    /// Visibility delay after Connect refused the worker's credentials (equal jitter, not
    /// growing: the outage is the worker's, not the job's, and ends for all jobs at once).
    pub credentials_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries_per_delivery: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            // Small and growing: capacity frees continuously as chats end, and a job should be
            // back soon after the gate may probe again, not sit out minutes of free capacity.
            capacity_base: Duration::from_secs(2),
            capacity_max: Duration::from_secs(120),
            transient_base: Duration::from_secs(5),
            transient_max: Duration::from_secs(300),
            // Short: role credentials are refreshed minutes before they expire and a drifted
            // clock is corrected by NTP within seconds; while the outage lasts the receiver
            // takes one job per pause only (pipeline/receiver.rs), so waiting jobs stay in SQS.
            credentials_wait: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The exponential envelope of in-process retries for one delivery (no jitter: we apply full
    /// jitter ourselves from an injected sample). `None` from the iterator means "spent".
    pub fn schedule(&self) -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.retries_per_delivery)
            .build()
    }
}

/// Why a job goes back to SQS without a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequeueReason {
    /// No chat capacity (`LimitExceededException` or the capacity gate is closed).
    Capacity,
    /// In-process retries are spent on throttles or transient failures.
    Transient,
    /// The worker is shutting down before the job's call started.
    Shutdown,
    /// This replica's rate fell so low that the job would wait long here (see
    /// `pipeline::handoff`): another replica, or this one later, takes it.
    Handoff,
    /// Connect refused the worker's credentials or signature: not the job's fault.
    Credentials,
}

impl RequeueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RequeueReason::Capacity => "capacity",
            RequeueReason::Transient => "transient",
            RequeueReason::Shutdown => "shutdown",
            RequeueReason::Handoff => "handoff",
            RequeueReason::Credentials => "credentials",
        }
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Call again after this delay, in this process.
    RetryAfter(Duration),
    /// Give the message back to SQS, visible again after this delay.
    Requeue {
        after: Duration,
        reason: RequeueReason,
    },
    /// The job has failed for good with this code.
    Fail { code: String, message: String },
}

/// Decides after a failed call. `next_envelope` is the schedule's next step (`None` when spent),
/// `gate_reopens_in` the capacity gate's remaining cooldown, `jitter` a sample in `[0, 1)`.
pub fn after_failure(
    policy: &RetryPolicy,
    err: &ConnectError,
    next_envelope: Option<Duration>,
    receive_count: u32,
    gate_reopens_in: Option<Duration>,
    jitter: f64,
) -> Decision {
    match err.class {
        ErrorClass::Throttled | ErrorClass::Transient => match next_envelope {
            Some(envelope) => Decision::RetryAfter(full_jitter(envelope, jitter)),
            None => Decision::Requeue {
                after: requeue_delay(
                    policy.transient_base,
                    policy.transient_max,
                    receive_count,
                    jitter,
                ),
                reason: RequeueReason::Transient,
            },
        },
        ErrorClass::LimitExceeded => Decision::Requeue {
            after: capacity_wait(policy, receive_count, gate_reopens_in, jitter),
            reason: RequeueReason::Capacity,
        },
        ErrorClass::Credentials => Decision::Requeue {
            after: Duration::from_secs(
                policy
                    .credentials_wait
                    .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
                    .as_secs()
                    .max(1),
            ),
            reason: RequeueReason::Credentials,
        },
        ErrorClass::Rejected => Decision::Fail {
            code: err.code.clone(),
            message: err.message.clone(),
        },
    }
}

/// How long a job waits in SQS for chat capacity: at least until the gate may probe again, and
/// growing with the number of times the job was already received.
pub fn capacity_wait(
    policy: &RetryPolicy,
    receive_count: u32,
    gate_reopens_in: Option<Duration>,
    jitter: f64,
) -> Duration {
    let grown = requeue_delay(
        policy.capacity_base,
        policy.capacity_max,
        receive_count,
        jitter,
    );
    grown.max(gate_reopens_in.unwrap_or(Duration::ZERO))
}

/// Full jitter: uniform in `[0, envelope)`.
pub fn full_jitter(envelope: Duration, jitter: f64) -> Duration {
    envelope.mul_f64(jitter.clamp(0.0, 1.0))
}

/// `base × 2^(receive_count − 1)`, capped, with equal jitter: uniform in `[d/2, d)`. Whole seconds,
/// as SQS visibility timeouts are, and at least one second.
pub fn requeue_delay(base: Duration, max: Duration, receive_count: u32, jitter: f64) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(20);
    let grown = base.saturating_mul(1u32 << doublings).min(max);
    let jittered = grown.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    Duration::from_secs(jittered.as_secs().max(1))
}

/// A job received more than `max_receive_count` times fails with `RetriesExhausted`.
pub fn receive_limit_reached(receive_count: u32, max_receive_count: u32) -> bool {
    receive_count > max_receive_count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(class: ErrorClass, code: &str) -> ConnectError {
        ConnectError {
            class,
            code: code.to_owned(),
            message: "m".to_owned(),
        }
    }

    #[test]
    fn throttles_retry_in_process_with_full_jitter_until_the_schedule_is_spent() {
        let p = RetryPolicy::default();
        let e = err(ErrorClass::Throttled, "TooManyRequestsException");
        let envelopes: Vec<Duration> = p.schedule().collect();
        assert_eq!(envelopes.len(), p.retries_per_delivery);
        // Exponential and capped.
        // backon multiplies with an f32 factor, so compare whole milliseconds.
        let ms: Vec<u128> = envelopes.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![200, 400, 800]);
        assert_eq!(
            after_failure(&p, &e, Some(Duration::from_millis(400)), 1, None, 0.5),
            Decision::RetryAfter(Duration::from_millis(200))
        );
        assert_eq!(
            after_failure(&p, &e, Some(envelopes[1]), 1, None, 0.0),
            Decision::RetryAfter(Duration::ZERO)
        );
        match after_failure(&p, &e, None, 1, None, 0.0) {
            Decision::Requeue {
                reason: RequeueReason::Transient,
                after,
            } => assert_eq!(after, Duration::from_secs(2)),
            other => panic!("expected a transient requeue, got {other:?}"),
        }
    }

    #[test]
    fn limit_exceeded_never_retries_in_process_and_waits_longer_each_receive() {
        let p = RetryPolicy::default();
        let e = err(ErrorClass::LimitExceeded, "LimitExceededException");
        let wait = |rc, jitter| match after_failure(
            &p,
            &e,
            Some(Duration::from_millis(200)),
            rc,
            None,
            jitter,
        ) {
            Decision::Requeue {
                after,
                reason: RequeueReason::Capacity,
            } => after,
            other => panic!("expected a capacity requeue, got {other:?}"),
        };
        assert_eq!(wait(1, 0.0), Duration::from_secs(1));
        assert_eq!(wait(1, 0.999), Duration::from_secs(1));
        assert_eq!(wait(2, 0.0), Duration::from_secs(2));
        assert_eq!(wait(3, 0.0), Duration::from_secs(4));
        assert_eq!(wait(4, 0.999), Duration::from_secs(15));
        // Capped at capacity_max, however many receives.
        assert_eq!(wait(60, 0.999), Duration::from_secs(119));
        assert!(wait(60, 0.0) >= Duration::from_secs(60));
    }

    #[test]
    fn capacity_wait_lasts_at_least_until_the_gate_may_probe() {
        let p = RetryPolicy::default();
        let e = err(ErrorClass::LimitExceeded, "LimitExceededException");
        let d = after_failure(&p, &e, None, 1, Some(Duration::from_secs(42)), 0.0);
        assert_eq!(
            d,
            Decision::Requeue {
                after: Duration::from_secs(42),
                reason: RequeueReason::Capacity
            }
        );
    }

    #[test]
    fn credential_refusals_give_the_job_back_soon_whatever_its_receive_count() {
        let p = RetryPolicy::default();
        for (receive_count, jitter) in [(1, 0.0), (9, 0.99), (50, 0.5)] {
            let d = after_failure(
                &p,
                &err(ErrorClass::Credentials, "ExpiredTokenException"),
                Some(Duration::from_secs(1)),
                receive_count,
                None,
                jitter,
            );
            let Decision::Requeue { after, reason } = d else {
                panic!("{d:?}");
            };
            assert_eq!(reason, RequeueReason::Credentials);
            assert!(
                (Duration::from_secs(5)..=Duration::from_secs(10)).contains(&after),
                "{after:?}"
            );
        }
    }

    #[test]
    fn rejections_fail_with_connects_code() {
        let p = RetryPolicy::default();
        for code in [
            "InvalidParameterException",
            "ResourceNotFoundException",
            "AccessDeniedException",
        ] {
            let d = after_failure(
                &p,
                &err(ErrorClass::Rejected, code),
                Some(Duration::from_secs(1)),
                1,
                None,
                0.3,
            );
            assert_eq!(
                d,
                Decision::Fail {
                    code: code.to_owned(),
                    message: "m".to_owned()
                }
            );
        }
    }

    #[test]
    fn receive_limit() {
        assert!(!receive_limit_reached(10, 10));
        assert!(receive_limit_reached(11, 10));
    }

    #[test]
    fn delays_never_overflow() {
        assert_eq!(
            requeue_delay(
                Duration::from_secs(10),
                Duration::from_secs(900),
                u32::MAX,
                1.0
            ),
            Duration::from_secs(900)
        );
        assert_eq!(
            full_jitter(Duration::from_secs(1), f64::NAN.max(2.0)),
            Duration::from_secs(1)
        );
    }
}
