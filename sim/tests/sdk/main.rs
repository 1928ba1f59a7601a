//! connect-sim driven by the real `aws-sdk-connect` client through an endpoint override:
//! every success shape, every error code, idempotent replays, faults, the quotas under
//! concurrent load, the `/_sim` endpoints and the CLI. One test binary (modules in sdk/)
//! so the SDK is linked once.

mod common;
mod credentials;
mod errors;
mod faults;
mod http;
mod idempotency;
mod quotas;
mod success;
