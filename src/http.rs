//! The HTTP endpoints on `METRICS_ADDR`: `GET /metrics` (Prometheus text format), `GET /healthz`
//! (200 while the process serves requests) and `GET /readyz` (200 only while polling the jobs
//! queue works and Connect accepts the worker's credentials; the receiver's watchdog and the
//! Connect calls' outcomes in [`Health`] decide).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// How long one refusal of the worker's credentials keeps `/readyz` at 503 without another. While
/// jobs wait, the receiver's probe (one job per 5 s) refreshes it well within this; an idle
/// worker is ready again after it, and its next job is the probe.
pub const CREDENTIALS_STALE: Duration = Duration::from_secs(60);

/// Readiness: the receiver reports each successful receive and each failure; `/readyz` is 200
/// while the last success is recent and the last failure was not a hard one (missing queue or
/// denied access). Connect calls report credential refusals and successes: from the first
/// refusal (`ExpiredTokenException` and the like) to the next successful call, `/readyz` is 503
/// with the code as its reason; a refusal older than [`CREDENTIALS_STALE`] with none since no
/// longer counts (an idle worker has no call to prove the credentials work again).
#[derive(Debug)]
pub struct Health {
    stale_after: Duration,
    last_success: Mutex<Option<Instant>>,
    problem: Mutex<Option<String>>,
    /// Why Connect refuses the worker's credentials and when it last did, until a call succeeds.
    connect_problem: std::sync::Mutex<Option<(String, Instant)>>,
    stopping: AtomicBool,
}

impl Health {
    pub fn new(stale_after: Duration) -> Self {
        Health {
            stale_after,
            last_success: Mutex::new(None),
            problem: Mutex::new(None),
            connect_problem: std::sync::Mutex::new(None),
            stopping: AtomicBool::new(false),
        }
    }

    /// Connect refused the worker's credentials or signature (`code`): not ready until a
    /// Connect call succeeds. Returns `true` when this starts an outage (log it once).
    pub fn connect_credentials_refused(&self, code: &str) -> bool {
        let mut p = self
            .connect_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let new = p
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() > CREDENTIALS_STALE);
        *p = Some((
            format!(
                "Amazon Connect refuses the worker's credentials ({code}); jobs wait in SQS until a call succeeds"
            ),
            Instant::now(),
        ));
        new
    }

    /// A Connect call succeeded: the credentials work. Returns `true` when this ends an outage.
    pub fn connect_call_succeeded(&self) -> bool {
        self.connect_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some_and(|(_, at)| at.elapsed() <= CREDENTIALS_STALE)
    }

    /// Whether Connect currently refuses the worker's credentials.
    pub fn connect_credentials_failing(&self) -> bool {
        self.connect_problem().is_some()
    }

    /// The refusal's reason while it is fresh.
    fn connect_problem(&self) -> Option<String> {
        self.connect_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(_, at)| at.elapsed() <= CREDENTIALS_STALE)
            .map(|(why, _)| why.clone())
    }

    pub async fn receive_succeeded(&self) {
        *self.last_success.lock().await = Some(Instant::now());
        *self.problem.lock().await = None;
    }

    /// A hard failure (missing queue, denied access): not ready until a receive succeeds again.
    pub async fn receive_failed_hard(&self, why: String) {
        *self.problem.lock().await = Some(why);
    }

    /// Shutting down: stop taking traffic.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub async fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("shutting down".to_owned());
        }
        if let Some(p) = self.problem.lock().await.clone() {
            return Err(p);
        }
        if let Some(p) = self.connect_problem() {
            return Err(p);
        }
        match *self.last_success.lock().await {
            None => Err("no successful receive yet".to_owned()),
            Some(t) if t.elapsed() > self.stale_after => Err(format!(
                "no successful receive for {} s",
                t.elapsed().as_secs()
            )),
            Some(_) => Ok(()),
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Arc<Health>,
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    let ready = s.health.readiness().await.is_ok();
    s.metrics.ready.set(i64::from(ready));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.health.readiness().await {
        Ok(()) => {
            s.metrics.ready.set(1);
            (StatusCode::OK, "ready\n".to_owned())
        }
        Err(why) => {
            s.metrics.ready.set(0);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            )
        }
    }
}

/// Binds `addr` and serves until `shutdown` completes. Returns the bound address (port 0 works).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_credential_refusal_is_not_ready_until_a_success_or_a_quiet_minute() {
        let h = Health::new(Duration::from_secs(90));
        h.receive_succeeded().await;
        assert!(h.readiness().await.is_ok());
        assert!(h.connect_credentials_refused("ExpiredTokenException"));
        assert!(
            !h.connect_credentials_refused("ExpiredTokenException"),
            "one outage"
        );
        let why = h.readiness().await.expect_err("not ready");
        assert!(why.contains("ExpiredTokenException"), "{why}");
        assert!(h.connect_call_succeeded(), "ends the outage");
        assert!(h.readiness().await.is_ok());
        assert!(!h.connect_call_succeeded());

        h.connect_credentials_refused("InvalidSignatureException");
        tokio::time::advance(CREDENTIALS_STALE / 2).await;
        h.receive_succeeded().await;
        assert!(h.connect_credentials_failing());
        tokio::time::advance(CREDENTIALS_STALE).await;
        h.receive_succeeded().await;
        assert!(!h.connect_credentials_failing(), "stale");
        assert!(h.readiness().await.is_ok());
    }
}
