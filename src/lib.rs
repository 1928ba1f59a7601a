//! resume-chat-worker: takes "resume chat" jobs from SQS, resumes the chat in Amazon Connect
//! within Connect's quotas, and publishes exactly one result per job.
//!
//! # Map of the modules
//!
//! Data, parsed once at the edge:
//! - [`config`]: settings from environment variables and flags; a bad one exits 2 with one line.
//! - [`job`]: the job message of the contract, parsed and validated into a [`job::Job`].
//! - [`outcome`]: the result message of the contract, built from how a job ended.
//!
//! Adapters (the only code that knows the AWS SDKs; they classify errors into our own types):
//! - [`connect`]: the [`connect::ConnectApi`] trait, its `aws-sdk-connect` adapter and error classes.
//! - [`queue`]: the [`queue::MessageQueue`] trait, its `aws-sdk-sqs` adapter and an in-memory queue.
//!
//! Decisions (plain functions of their inputs, tested under paused time):
//! - [`decide`]: what a job does next, one pure function of its state, the event, `now` and a
//!   jitter sample (capacity waits, calls, retries, give-backs, publish retries).
//! - [`rate`]: the adaptive per-operation rate limiter, the per-instance chat-capacity machines,
//!   and the optional fleet-wide limiter in Redis.
//!
//! The pipeline (carries the decisions out):
//! - [`pipeline`]: receiver, per-job processing (carries out the decisions), call permits,
//!   visibility heartbeat, settling results.
//! - [`metrics`], [`http`]: Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` server.
//! - [`telemetry`]: JSON or text logs through `tracing`.
//! - [`cli`]: the operator commands (`run`, `enqueue`, `dlq replay`, `validate`).

pub mod cli;
pub mod config;
pub mod connect;
pub mod decide;
pub mod http;
pub mod job;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod queue;
pub mod rate;
pub mod telemetry;
