//! [`Permit`]: one Connect call's right to go, and its debt of feedback.
//!
//! Every limiter that let a call through learns from its outcome exactly once: the operation's
//! adaptive rate limiter (throttles slow it down), and for StartChatContact the instance's
//! capacity machine (a `LimitExceededException` paces starts). The permit collects what was
//! granted — the promise of a paced instance's start (given up if the call never comes), the rate
//! token, the fleet slot (which needs no feedback), then right before the call the instance's
//! capacity lease — and [`Permit::report`] tells each its reading of the classified outcome in one
//! place. A permit dropped unreported (shutdown, handoff, expiry, an abandoned call) reports
//! "neutral" to all of them: a call that was not made, or whose answer is unknown, says nothing.

use std::sync::Arc;

use tokio::time::Instant;

use crate::connect::ErrorClass;
use crate::rate::capacity::CapacityOutcome;
use crate::rate::instances::{CapacityLease, CapacityPromise};
use crate::rate::{AdaptiveLimiter, RateFeedback, RoundTrip};

/// See the module doc.
#[derive(Default)]
pub struct Permit {
    promise: Option<CapacityPromise>,
    capacity: Option<CapacityLease>,
    /// The limiter that gave this call its token, and when (the call went right after).
    rate: Option<(Arc<AdaptiveLimiter>, Instant)>,
}

impl Permit {
    /// A permit holding the capacity lease of a start (or nothing, for an association).
    pub fn new(capacity: Option<CapacityLease>) -> Self {
        Permit {
            promise: None,
            capacity,
            rate: None,
        }
    }

    /// Records the start a paced instance promised when the job asked (before its rate token).
    pub fn promise(&mut self, promise: CapacityPromise) {
        self.promise = Some(promise);
    }

    /// Whether a paced instance promised this start a slot.
    pub fn has_promise(&self) -> bool {
        self.promise.is_some()
    }

    /// The promise, to redeem at the claim.
    pub fn take_promise(&mut self) -> Option<CapacityPromise> {
        self.promise.take()
    }

    /// Records the capacity lease of a start, claimed right before its call.
    pub fn lease(&mut self, lease: CapacityLease) {
        self.capacity = Some(lease);
    }

    /// Records that `limiter` gave a token just now: it is owed one feedback from now on, and
    /// learns the call's round trip from it.
    pub fn granted(&mut self, limiter: Arc<AdaptiveLimiter>) {
        self.rate = Some((limiter, Instant::now()));
    }

    /// The call's outcome (`None`: success), read by every limiter that let it through.
    pub fn report(mut self, failure: Option<ErrorClass>) {
        if let Some((rate, sent)) = self.rate.take() {
            rate.feedback_trip(rate_reading(failure), RoundTrip::SentAt(sent));
        }
        if let Some(lease) = self.capacity.take() {
            lease.report(capacity_reading(failure));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((rate, _)) = self.rate.take() {
            // Not made, or its answer unknown: no round trip to learn from.
            rate.feedback_trip(RateFeedback::Neutral, RoundTrip::Unmeasured);
        }
        // A lease dropped unreported reports `Inconclusive` itself.
    }
}

/// What an outcome says about the rate quota: only throttles are a signal to slow down.
pub fn rate_reading(failure: Option<ErrorClass>) -> RateFeedback {
    match failure {
        None => RateFeedback::Accepted,
        Some(ErrorClass::Throttled) => RateFeedback::Throttled,
        Some(_) => RateFeedback::Neutral,
    }
}

/// What an outcome says about the instance's chat capacity.
pub fn capacity_reading(failure: Option<ErrorClass>) -> CapacityOutcome {
    match failure {
        None => CapacityOutcome::Started,
        Some(ErrorClass::LimitExceeded) => CapacityOutcome::LimitExceeded,
        Some(_) => CapacityOutcome::Inconclusive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::capacity::{CapacityAdmit, CapacitySettings};
    use crate::rate::instances::CapacityBook;

    #[test]
    fn readings_of_each_class() {
        assert_eq!(rate_reading(None), RateFeedback::Accepted);
        assert_eq!(
            rate_reading(Some(ErrorClass::Throttled)),
            RateFeedback::Throttled
        );
        for c in [
            ErrorClass::LimitExceeded,
            ErrorClass::Transient,
            ErrorClass::Credentials,
            ErrorClass::Rejected,
        ] {
            assert_eq!(rate_reading(Some(c)), RateFeedback::Neutral, "{c:?}");
        }
        assert_eq!(capacity_reading(None), CapacityOutcome::Started);
        assert_eq!(
            capacity_reading(Some(ErrorClass::LimitExceeded)),
            CapacityOutcome::LimitExceeded
        );
        assert_eq!(
            capacity_reading(Some(ErrorClass::Throttled)),
            CapacityOutcome::Inconclusive
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_reaches_every_limiter_once() {
        let book = Arc::new(CapacityBook::new(
            CapacitySettings::default(),
            |_| {},
            |_| {},
        ));
        let limiter = Arc::new(AdaptiveLimiter::new(10.0, 10));
        let mut permit = Permit::default();
        limiter.acquire().await;
        permit.granted(limiter.clone());
        let claimed = book.claim("i", None);
        assert_eq!(claimed.admit, CapacityAdmit::Go);
        permit.lease(claimed.lease.expect("a lease with Go"));
        permit.report(Some(ErrorClass::LimitExceeded));
        // The instance heard of the limit; the rate limiter did not slow down.
        assert!(
            book.peek("i").start_rate.is_some(),
            "the instance is limited"
        );
        assert_eq!(limiter.cuts(), 0);
        assert_eq!(limiter.allowed_rate(), 10.0);
    }
}
