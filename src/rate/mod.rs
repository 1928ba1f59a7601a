//! Rate control of the Connect calls: an adaptive rate limiter per operation and the
//! active-chat capacity gate of StartChatContact.
//!
//! Connect answers HTTP 429 for two different reasons, and they need opposite reactions:
//! - "too fast" (`TooManyRequestsException` from StartChatContact, `ThrottlingException` from
//!   CreatePersistentContactAssociation): the per-account, per-Region rate quota, shared with
//!   every other task and caller, is exhausted. [`AdaptiveLimiter`] slows down multiplicatively
//!   and recovers gently ([`RateController`]), so replicas sharing the quota settle at their
//!   share.
//! - "no chat capacity" (`LimitExceededException` from StartChatContact): the instance has its
//!   maximum of concurrent active chats. Going slower does not help, only waiting for chats to
//!   end does: [`CapacityGate`] closes, lets one probe through after a growing cooldown, and
//!   never touches the rate. Its [`ReleaseClock`] learns how long our chats live and lets a
//!   start through as each of ours is predicted to end.
//!
//! Callers map every Connect outcome to a [`RateFeedback`] and report it to the operation's
//! limiter: `Throttled` only for the two "too fast" exceptions, `Accepted` for a success, and
//! `Neutral` for everything else, `LimitExceededException` included. With `REDIS_URL` set, a
//! fleet-wide GCRA in Redis ([`fleet`]) follows the local limiter. Design notes and tuning:
//! `docs/rate-control.md`; scenario files: `tests/data/rate-scenarios/`.

pub mod capacity;
#[cfg(test)]
mod capacity_scenarios;
mod clock;
mod controller;
pub mod fleet;
mod gate;
mod limiter;
mod release;
#[cfg(test)]
mod scenarios;

pub use clock::{TokioClock, TokioInstant};
pub use controller::{ControllerSettings, RateController};
pub use gate::{Admission, CapacityGate, CapacityOutcome, GateCall, GateSettings, GateState};
pub use limiter::AdaptiveLimiter;
pub use release::ReleaseClock;

/// What one Connect call told us about the rate quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateFeedback {
    /// The call was accepted (it succeeded, or failed for a reason decided after the rate check).
    Accepted,
    /// The call was refused for going too fast (`TooManyRequestsException`,
    /// `ThrottlingException`).
    Throttled,
    /// Errors that say nothing about the rate: other 4xx, 5xx, transport errors, and
    /// `LimitExceededException` (active-chat capacity, handled by [`CapacityGate`]).
    Neutral,
}
