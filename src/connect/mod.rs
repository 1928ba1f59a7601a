//! Amazon Connect, as the worker sees it: two operations behind the [`ConnectApi`] trait, and every
//! failure classified once, at the adapter boundary, into a [`ConnectError`] with an [`ErrorClass`].
//!
//! Core code decides what to do from the class alone; it never sees an `SdkError`. The classes
//! separate Connect's two HTTP 429s, which mean opposite things:
//! - [`ErrorClass::Throttled`] (`TooManyRequestsException`, `ThrottlingException`): the per-account
//!   API rate quota. Slow down and retry soon.
//! - [`ErrorClass::LimitExceeded`] (`LimitExceededException`): the concurrent-active-chats quota.
//!   Retrying within milliseconds only burns calls; the job waits in SQS.

pub mod aws;
pub mod classify;
pub mod duration;

use std::future::Future;

use crate::job::Job;

pub use classify::classify;

/// The Connect operations the worker calls; label values in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    StartChatContact,
    CreatePersistentContactAssociation,
}

impl Operation {
    pub const ALL: [Operation; 2] = [
        Operation::StartChatContact,
        Operation::CreatePersistentContactAssociation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::StartChatContact => "StartChatContact",
            Operation::CreatePersistentContactAssociation => "CreatePersistentContactAssociation",
        }
    }
}

/// What `StartChatContact` returned for a persistent chat.
#[derive(Clone, PartialEq, Eq)]
pub struct StartedChat {
    pub contact_id: String,
    pub participant_id: String,
    /// Secret: lets the bearer join the chat as the customer. Never logged.
    pub participant_token: String,
    pub continued_from_contact_id: Option<String>,
}

impl std::fmt::Debug for StartedChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedChat")
            .field("contact_id", &self.contact_id)
            .field("participant_id", &self.participant_id)
            .field("participant_token", &"<redacted>")
            .field("continued_from_contact_id", &self.continued_from_contact_id)
            .finish()
    }
}

/// What `CreatePersistentContactAssociation` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Associated {
    pub continued_from_contact_id: Option<String>,
}

/// How a failed call should be treated; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The API rate quota (HTTP 429 `TooManyRequestsException` / `ThrottlingException`).
    Throttled,
    /// No chat capacity (HTTP 429 `LimitExceededException`).
    LimitExceeded,
    /// 5xx, timeouts, dropped connections: may work on another try.
    Transient,
    /// 4xx that will fail the same way every time: the job fails with this code.
    Rejected,
    /// The worker's own credentials or signature were refused (expired role session, unknown
    /// key, bad signature, clock drift; see [`classify`]): an infrastructure problem, not the
    /// job's. The job goes back to SQS without a result, `/readyz` reports it, and the next
    /// successful call clears it.
    Credentials,
}

/// A failed Connect call, classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ConnectError {
    pub class: ErrorClass,
    /// The AWS error code (`InvalidParameterException`, …) or our own for transport failures
    /// (`Timeout`, `ConnectionError`, `ResponseError`).
    pub code: String,
    pub message: String,
}

/// The two Connect operations. `client_token` makes the call idempotent: the same token with the
/// same parameters returns the original response and opens nothing new.
pub trait ConnectApi: Send + Sync + 'static {
    fn start_chat(
        &self,
        job: &Job,
        client_token: &str,
    ) -> impl Future<Output = Result<StartedChat, ConnectError>> + Send;

    fn associate(
        &self,
        job: &Job,
        client_token: &str,
    ) -> impl Future<Output = Result<Associated, ConnectError>> + Send;
}
