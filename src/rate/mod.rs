//! Rate control of the Connect calls: an adaptive rate limiter per operation and the
//! active-chat capacity gate of StartChatContact.
//!
//! Connect answers HTTP 429 for two different reasons, and they need opposite reactions:
//! - "too fast" (`TooManyRequestsException` from StartChatContact, `ThrottlingException` from
//!   CreatePersistentContactAssociation): the per-account, per-Region rate quota, shared with
//!   every other task and caller, is exhausted. [`AdaptiveLimiter`] slows down multiplicatively
//!   and recovers gently ([`RateController`]), so replicas sharing the quota settle at their
//!   share.
//! - "no chat capacity" (`LimitExceededException` from StartChatContact): that instance has its
//!   maximum of concurrent active chats. The quota is per instance, so is the reaction:
//!   [`capacity::InstanceCapacity`] (one pure machine per instance, kept in
//!   [`instances::CapacityBook`]) paces starts on that instance to the rate its chats free up,
//!   and never touches the rate limiter. With contact events (`CONTACT_EVENTS_QUEUE_URL`),
//!   a full instance admits one start per chat end Connect reports instead ([`freed`]).
//!
//! Callers map every Connect outcome to a [`RateFeedback`] and report it to the operation's
//! limiter: `Throttled` only for the two "too fast" exceptions, `Accepted` for a success, and
//! `Neutral` for everything else, `LimitExceededException` included (`pipeline::permit` reports
//! every call's outcome to each limiter that let it through). With `REDIS_URL` set, a
//! fleet-wide GCRA in Redis ([`fleet`]) follows the local limiter. Design notes and tuning:
//! `docs/rate-control.md`; scenario files: `tests/data/rate-scenarios/`.

pub mod capacity;
#[cfg(test)]
mod capacity_scenarios;
mod clock;
mod controller;
pub mod fleet;
pub mod freed;
pub mod instances;
mod limiter;
#[cfg(test)]
mod scenarios;

pub use clock::{TokioClock, TokioInstant};
pub use controller::{ControllerSettings, RateController, RoundTrip};
pub use limiter::AdaptiveLimiter;

/// What one Connect call told us about the rate quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateFeedback {
    /// The call was accepted (it succeeded, or failed for a reason decided after the rate check).
    Accepted,
    /// The call was refused for going too fast (`TooManyRequestsException`,
    /// `ThrottlingException`).
    Throttled,
    /// Errors that say nothing about the rate: other 4xx, 5xx, transport errors, and
    /// `LimitExceededException` (active-chat capacity, handled per instance by [`capacity`]).
    Neutral,
}
