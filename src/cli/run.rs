//! `run`: validates the settings (exit 2 on the first bad one), loads the AWS configuration
//! (region, credentials, `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL_CONNECT`), starts the HTTP
//! endpoints, wires SIGTERM and SIGINT to a graceful stop, and runs the worker until it returns.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::config::{ConfigError, RawSettings};
use crate::connect::aws::AwsConnect;
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::pipeline::Worker;
use crate::queue::counted::Counted;
use crate::queue::sqs::SqsQueue;

pub async fn run(raw: RawSettings) -> Result<ExitCode, CliError> {
    let settings = raw.validate()?;
    crate::telemetry::init(settings.log_format);
    let shared = super::aws_config().await?;

    let metrics = Metrics::new();
    let health = Arc::new(Health::new(settings.ready_stale));
    let http_stop = CancellationToken::new();
    let (bound, http_task) = http::serve(
        settings.metrics_addr,
        metrics.clone(),
        health.clone(),
        http_stop.clone(),
    )
    .await
    .map_err(|e| ConfigError {
        setting: "METRICS_ADDR",
        problem: format!("cannot listen on {}: {e}", settings.metrics_addr),
    })?;

    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));

    tracing::info!(
        metrics_addr = %bound,
        max_in_flight = settings.max_in_flight,
        start_chat_rate = settings.start_chat.per_second,
        associate_rate = settings.associate.per_second,
        "resume-chat-worker started"
    );
    let queue = Arc::new(Counted::new(
        SqsQueue::new(&shared),
        metrics.sqs_requests.clone(),
    ));
    let connect = Arc::new(AwsConnect::new(&shared, settings.connect_timeout));
    let summary = Worker::new(settings, queue, connect, metrics, health, stop)
        .run()
        .await;
    http_stop.cancel();
    let _ = http_task.await;
    tracing::info!(
        released_after_grace = summary.released_after_grace,
        "resume-chat-worker stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Cancels `stop` on the first SIGTERM (ECS) or SIGINT (Ctrl-C).
async fn stop_on_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!(signal = name, "stop requested");
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    stop.cancel();
}
