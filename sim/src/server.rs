//! The listener. An own accept loop (hyper-util, HTTP/1.1 and h2c) instead of
//! `axum::serve`, so that fault injection can close a connection mid-request: each
//! connection gets a `ConnControl` in its requests' extensions, and the connection task
//! drops the connection (closing the socket, no response) when a handler asks it to.
//!
//! `SimHandle` owns the server and background tasks; `shutdown()` or dropping the handle
//! stops them and closes every open connection.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower_service::Service;

use crate::config::SimConfig;
use crate::contact_events::{self, SqsSink};
use crate::core::Core;
use crate::credentials::{self, CredentialSwitch};
use crate::stats::Stats;
use crate::{api, background};

/// Lets a handler close the connection its request came on.
#[derive(Clone)]
pub struct ConnControl {
    kill: Arc<Notify>,
}

impl ConnControl {
    pub fn drop_connection(&self) {
        self.kill.notify_one();
    }
}

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    core: Arc<Core>,
    credentials: Arc<CredentialSwitch>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    background: JoinHandle<()>,
    /// The contact-events task (`--contact-events-queue-url`).
    events: Option<JoinHandle<()>>,
}

/// Binds `addr` (port 0 picks a free port) and serves until the handle is shut down or
/// dropped. Fails on an invalid configuration (`InvalidInput`) or when binding fails.
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let background_rate = config.background_rate;
    let credentials = Arc::new(CredentialSwitch::new(config.credential_fault));
    let background_schedule = config.background_schedule.clone();
    let sink = match &config.contact_events_queue_url {
        Some(url) => {
            let sink = SqsSink::new(
                url,
                config.contact_events_endpoint.as_deref(),
                config.contact_events_credentials.clone(),
            )
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            Some((sink, contact_events::account_of(url)))
        }
        None => None,
    };
    let core = Arc::new(Core::new(config));
    let (stop, stopped) = watch::channel(false);
    let router = credentials::wrap(api::router(Arc::clone(&core)), Arc::clone(&credentials));
    let server = tokio::spawn(accept_loop(listener, router, stopped));
    let background = tokio::spawn(background::run(
        Arc::clone(&core),
        background_rate,
        background_schedule,
    ));
    let events = sink.map(|(sink, account)| {
        let region = sink.region().to_owned();
        tracing::info!(%account, %region, "contact events on");
        tokio::spawn(contact_events::run(
            Arc::clone(&core),
            Arc::new(sink),
            account,
            region,
        ))
    });
    tracing::info!(%addr, "connect-sim listening");
    Ok(SimHandle {
        addr,
        core,
        credentials,
        stop,
        server: Some(server),
        background,
        events,
    })
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, to pass as the SDK's endpoint URL.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// The credential-outage switch (see `credentials`).
    pub fn credentials(&self) -> &CredentialSwitch {
        &self.credentials
    }

    pub fn reset(&self) {
        self.core.reset();
    }

    pub fn config(&self) -> &SimConfig {
        self.core.config()
    }

    /// What the sim knows of a contact: the same JSON as `GET /_sim/contacts/{id}`.
    pub fn contact(&self, contact_id: &str) -> Option<serde_json::Value> {
        self.core.describe_contact(contact_id)
    }

    /// Connects the participant of `participant_token`, as `POST /participant/connection`
    /// (CreateParticipantConnection) does: `Ok(contact id)`, or the 403 it would answer.
    pub fn connect_participant(&self, participant_token: &str) -> Result<String, String> {
        self.core
            .connect_participant(participant_token)
            .map_err(|e| e.to_string())
    }

    /// Stops accepting, closes every connection and waits for the server task to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.background.abort();
        if let Some(events) = &self.events {
            events.abort();
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.background.abort();
        if let Some(events) = &self.events {
            events.abort();
        }
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    // Dropping the set (when this task ends) aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => return,
            // Reap finished connection tasks so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let control = ConnControl {
            kill: Arc::new(Notify::new()),
        };
        let kill = Arc::clone(&control.kill);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(control.clone());
            let mut router = router.clone();
            async move { router.call(req).await }
        });
        let builder = builder.clone();
        connections.spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                // Dropping `conn` closes the socket without a response.
                _ = kill.notified() => {}
            }
        });
    }
}
