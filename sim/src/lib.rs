//! connect-sim: a local Amazon Connect simulator for the two operations the worker uses,
//! StartChatContact and CreatePersistentContactAssociation, on Connect's restJson1 wire
//! protocol, with Connect's quotas (per-operation token buckets for the account, concurrent
//! active chats per instance, another caller sharing the quota), idempotent ClientTokens,
//! fault injection and counters; past chat sessions for persistent chat (which contact a resume
//! continues from, which sources are refused), and the participant token's connect window with
//! the Participant Service's CreateParticipantConnection (`POST /participant/connection`);
//! and contact events: an EventBridge DISCONNECTED envelope sent to an SQS queue when each chat
//! ends (`--contact-events-queue-url`, see `contact_events`).
//!
//! Use it from tests as a library (`start(SimConfig, "127.0.0.1:0")`, then point an AWS SDK
//! at `SimHandle::endpoint_url()` and read `SimHandle::stats()`), or run the `connect-sim`
//! binary. sim/README.md documents the wire behaviour, the order of checks and the stats.

mod api;
mod auth;
mod background;
mod bucket;
pub mod config;
pub mod contact_events;
mod core;
pub mod credentials;
mod error;
mod ids;
pub mod instances;
pub mod lifetimes;
pub mod schedule;
mod server;
pub mod stats;
mod validate;

pub use config::{BackgroundOperation, SimConfig};
pub use credentials::{CredentialFault, CredentialSwitch};
pub use server::{SimHandle, start};
pub use stats::{
    BackgroundCounters, CallRecord, ChatRecord, ContactEventCounters, InstanceCounters, OpCounters,
    Operations, SecondCounts, Stats, TimelineSecond,
};
