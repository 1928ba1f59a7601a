//! HTTP routes. The two Connect operations on the restJson1 protocol, and the `/_sim`
//! control endpoints:
//! - `PUT /contact/chat` → StartChatContact
//! - `POST /contact/persistent-contact-association/{InstanceId}/{InitialContactId}` →
//!   CreatePersistentContactAssociation
//! - `GET /_sim/stats` → `Stats` as JSON; `POST /_sim/reset` → fresh account, 204.
//!
//! Per request: auth (403) → parse and validate (400) → the account's decision (`core`) →
//! `--latency-ms` → respond, or close the connection when fault injection says so.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::core::{Core, Outcome};
use crate::error::{ApiError, ErrorCode};
use crate::server::ConnControl;
use crate::stats::Op;
use crate::{auth, ids, validate};

pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/contact/chat", put(start_chat))
        .route(
            "/contact/persistent-contact-association/{instance_id}/{initial_contact_id}",
            post(associate),
        )
        .route("/participant/connection", post(participant_connection))
        .route("/_sim/contacts/{contact_id}", get(contact))
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset", post(reset))
        .fallback(unknown)
        .with_state(core)
}

async fn start_chat(
    State(core): State<Arc<Core>>,
    conn: Option<axum::Extension<ConnControl>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = auth::check(&headers)
        .and_then(|()| validate::start_chat(&body))
        .map(|req| core.start_chat(&req));
    finish(&core, Op::StartChat, outcome, conn).await
}

async fn associate(
    State(core): State<Arc<Core>>,
    Path((instance_id, initial_contact_id)): Path<(String, String)>,
    conn: Option<axum::Extension<ConnControl>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = auth::check(&headers)
        .and_then(|()| validate::associate(&instance_id, &initial_contact_id, &body))
        .map(|req| core.associate(&req));
    finish(&core, Op::Associate, outcome, conn).await
}

/// Counts early rejections, applies the latency, then answers or drops the connection.
async fn finish(
    core: &Core,
    op: Op,
    outcome: Result<Outcome, ApiError>,
    conn: Option<axum::Extension<ConnControl>>,
) -> Response {
    let outcome = outcome.unwrap_or_else(|e| {
        core.count_rejected(op, &e);
        Outcome::Err(e)
    });
    let latency = core.config().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    tracing::debug!(operation = op.name(), ?outcome, "request decided");
    match outcome {
        Outcome::Ok(body) => json_response(StatusCode::OK, None, body.to_string()),
        Outcome::Err(e) => error_response(&e),
        Outcome::Drop => match conn {
            Some(axum::Extension(conn)) => {
                conn.drop_connection();
                // The connection task now drops this future with the connection.
                std::future::pending::<Response>().await
            }
            // Not served by our accept loop (e.g. a bare Router in a test): the closest we
            // can do is an empty 500 without any error header.
            None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
    }
}

fn json_response(status: StatusCode, error_type: Option<&str>, body: String) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let request_id = ids::uuid(&mut rand::rng());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-RequestId", v);
    }
    if let Some(code) = error_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert("x-amzn-ErrorType", code);
    }
    (status, headers, body).into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code.status(), Some(e.code.as_str()), e.body().to_string())
}

async fn stats(State(core): State<Arc<Core>>) -> Response {
    // Serialized from the struct (not a Value) so keys keep the documented order.
    match serde_json::to_string(&core.stats()) {
        Ok(v) => json_response(StatusCode::OK, None, v),
        Err(e) => error_response(&ApiError::new(ErrorCode::InternalService, e.to_string())),
    }
}

async fn reset(State(core): State<Arc<Core>>) -> StatusCode {
    core.reset();
    StatusCode::NO_CONTENT
}

/// CreateParticipantConnection of the Connect Participant Service (restJson1, `POST
/// /participant/connection`, the participant token in `X-Amz-Bearer`, no SigV4): marks the chat
/// connected so the connect window no longer ends it. Answers the connection details the
/// service would (`Websocket`, `ConnectionCredentials`), or 403 AccessDeniedException for an
/// unknown token or a chat that has ended.
async fn participant_connection(State(core): State<Arc<Core>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("x-amz-bearer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match core.connect_participant(token) {
        Ok(_) => {
            let mut rng = rand::rng();
            let expiry = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let body = serde_json::json!({
                "Websocket": {
                    "Url": format!("wss://connect-sim.invalid/connect?token={}", ids::token(&mut rng, 64)),
                    "ConnectionExpiry": expiry,
                },
                "ConnectionCredentials": {
                    "ConnectionToken": ids::token(&mut rng, 172),
                    "Expiry": expiry,
                },
            });
            json_response(StatusCode::OK, None, body.to_string())
        }
        Err(e) => error_response(&e),
    }
}

async fn contact(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    match core.describe_contact(&id) {
        Some(v) => json_response(StatusCode::OK, None, v.to_string()),
        None => error_response(&ApiError::new(
            ErrorCode::ResourceNotFound,
            format!("connect-sim knows no contact {id}"),
        )),
    }
}

async fn unknown() -> Response {
    error_response(&ApiError::new(
        ErrorCode::UnknownOperation,
        "connect-sim implements StartChatContact and CreatePersistentContactAssociation only",
    ))
}
