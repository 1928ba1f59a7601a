//! A credential outage on demand: while switched on, every Connect operation answers the
//! error Connect's front door sends when the caller's credentials are expired, unknown or
//! mis-signed (clock drift), before any quota or validation is looked at (so nothing is
//! counted in the stats, no token spent, no chat opened). The `/_sim` endpoints keep working.
//!
//! | fault                | HTTP | `x-amzn-ErrorType`            | when, in AWS                       |
//! |----------------------|------|-------------------------------|------------------------------------|
//! | `expired-token`      | 403  | `ExpiredTokenException`       | the role session expired            |
//! | `unrecognized-client`| 403  | `UnrecognizedClientException` | unknown access key / session token  |
//! | `invalid-signature`  | 403  | `InvalidSignatureException`   | wrong secret, or the clock drifted  |
//!
//! Switched with `--credential-fault <fault>` at start, `PUT /_sim/credentials` with
//! `{"fault": "<fault>"}` or `{"fault": null}` (204), read with `GET /_sim/credentials`
//! (`{"fault": ..., "refused": N}`), or [`crate::SimHandle::credentials`] from a test.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

/// Which credential error to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialFault {
    ExpiredToken,
    UnrecognizedClient,
    InvalidSignature,
}

impl CredentialFault {
    pub fn code(self) -> &'static str {
        match self {
            CredentialFault::ExpiredToken => "ExpiredTokenException",
            CredentialFault::UnrecognizedClient => "UnrecognizedClientException",
            CredentialFault::InvalidSignature => "InvalidSignatureException",
        }
    }

    fn message(self) -> &'static str {
        match self {
            CredentialFault::ExpiredToken => {
                "The security token included in the request is expired"
            }
            CredentialFault::UnrecognizedClient => {
                "The security token included in the request is invalid."
            }
            CredentialFault::InvalidSignature => {
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
            }
        }
    }
}

/// The switch, shared by the middleware, the control endpoint and the handle.
#[derive(Debug, Default)]
pub struct CredentialSwitch {
    fault: Mutex<Option<CredentialFault>>,
    refused: AtomicU64,
}

impl CredentialSwitch {
    pub fn new(initial: Option<CredentialFault>) -> Self {
        CredentialSwitch {
            fault: Mutex::new(initial),
            refused: AtomicU64::new(0),
        }
    }

    /// Switches the outage on (`Some`) or off (`None`).
    pub fn set(&self, fault: Option<CredentialFault>) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
        tracing::info!(?fault, "credential fault switched");
    }

    pub fn get(&self) -> Option<CredentialFault> {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connect calls refused for credentials so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[derive(Serialize, Deserialize)]
struct Status {
    fault: Option<CredentialFault>,
    #[serde(default)]
    refused: u64,
}

/// `router` with the control endpoint added and every other route behind the switch.
pub fn wrap(router: Router, switch: Arc<CredentialSwitch>) -> Router {
    let control = Router::new()
        .route("/_sim/credentials", get(status).put(set))
        .with_state(switch.clone());
    router
        .merge(control)
        .layer(axum::middleware::from_fn_with_state(switch, refuse))
}

async fn refuse(State(switch): State<Arc<CredentialSwitch>>, req: Request, next: Next) -> Response {
    match switch.get() {
        Some(fault) if !req.uri().path().starts_with("/_sim/") => {
            switch.refused.fetch_add(1, Ordering::Relaxed);
            let body = serde_json::json!({ "message": fault.message() }).to_string();
            let mut response = (StatusCode::FORBIDDEN, Body::from(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert("x-amzn-ErrorType", HeaderValue::from_static(fault.code()));
            response
        }
        _ => next.run(req).await,
    }
}

async fn status(State(switch): State<Arc<CredentialSwitch>>) -> axum::Json<Status> {
    axum::Json(Status {
        fault: switch.get(),
        refused: switch.refused(),
    })
}

async fn set(State(switch): State<Arc<CredentialSwitch>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Status>(&body) {
        Ok(s) => {
            switch.set(s.fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!(
                "expected {{\"fault\": \"expired-token\" | \"unrecognized-client\" | \"invalid-signature\" | null}}: {e}\n"
            ),
        )
            .into_response(),
    }
}
