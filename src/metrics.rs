//! The worker's Prometheus metrics, in one registry, named by Prometheus conventions
//! (`_total` counters, `_seconds` units, labels of small fixed sets). The README's metrics table
//! and deploy/prometheus rules use these names.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics; cheap to clone handles live inside.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub jobs_received: IntCounter,
    pub jobs_completed: IntCounterVec,
    pub jobs_requeued: IntCounterVec,
    pub jobs_dead_lettered: IntCounter,
    pub jobs_in_flight: IntGauge,
    pub job_age: HistogramVec,
    pub connect_calls: IntCounterVec,
    pub connect_call_duration: HistogramVec,
    pub rate_wait: HistogramVec,
    pub allowed_rate: GaugeVec,
    pub rate_ceiling: GaugeVec,
    pub rate_sharers: Gauge,
    pub capacity_limited: IntGaugeVec,
    pub capacity_start_rate: GaugeVec,
    pub fleet_limiter_state: IntGauge,
    pub fleet_limiter_errors: IntCounter,
    pub visibility_extensions: IntCounterVec,
    pub sqs_errors: IntCounterVec,
    pub sqs_requests: IntCounterVec,
    pub last_receive_success: Gauge,
    pub queue_messages: IntGaugeVec,
    pub ready: IntGauge,
    pub results_published: IntCounter,
    pub job_duration: Histogram,
    pub credential_errors: IntCounterVec,
    pub recycle_failures: IntCounter,
    pub build_info: IntGaugeVec,
    pub connect_window_used: Histogram,
    pub contact_events: IntCounterVec,
    pub contact_events_readable: IntGauge,
}

const AGE_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0,
];
/// Up to and past the 300 s connect window (observations beyond it are expired results).
const WINDOW_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 240.0, 300.0, 900.0,
];
const CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Metrics {
            jobs_received: IntCounter::new("resume_chat_jobs_received_total", "Job messages received from the jobs queue.").unwrap_or_else(|_| unreachable!()),
            jobs_completed: IntCounterVec::new(
                Opts::new("resume_chat_jobs_completed_total", "Jobs that ended with a published result, by status and error code (none on success)."),
                &["status", "code"],
            ).unwrap_or_else(|_| unreachable!()),
            jobs_requeued: IntCounterVec::new(
                Opts::new("resume_chat_jobs_requeued_total", "Jobs given back to SQS with a visibility delay, by reason."),
                &["reason"],
            ).unwrap_or_else(|_| unreachable!()),
            jobs_dead_lettered: IntCounter::new("resume_chat_jobs_dead_lettered_total", "Jobs moved to the dead-letter queue after too many receives.").unwrap_or_else(|_| unreachable!()),
            jobs_in_flight: IntGauge::new("resume_chat_jobs_in_flight", "Jobs received and not yet settled.").unwrap_or_else(|_| unreachable!()),
            job_age: HistogramVec::new(
                HistogramOpts::new("resume_chat_job_age_seconds", "Age of a job (from SQS SentTimestamp) when its Connect call started and when it completed.").buckets(AGE_BUCKETS.to_vec()),
                &["stage"],
            ).unwrap_or_else(|_| unreachable!()),
            connect_calls: IntCounterVec::new(
                Opts::new("resume_chat_connect_calls_total", "Amazon Connect calls by operation and result code (OK or the error code)."),
                &["operation", "code"],
            ).unwrap_or_else(|_| unreachable!()),
            connect_call_duration: HistogramVec::new(
                HistogramOpts::new("resume_chat_connect_call_duration_seconds", "Latency of Amazon Connect calls.").buckets(CALL_BUCKETS.to_vec()),
                &["operation"],
            ).unwrap_or_else(|_| unreachable!()),
            rate_wait: HistogramVec::new(
                HistogramOpts::new("resume_chat_rate_wait_seconds", "Time jobs waited for a rate token before a Connect call.").buckets(WAIT_BUCKETS.to_vec()),
                &["operation"],
            ).unwrap_or_else(|_| unreachable!()),
            allowed_rate: GaugeVec::new(
                Opts::new("resume_chat_allowed_rate", "Calls per second the adaptive limiter allows now."),
                &["operation"],
            ).unwrap_or_else(|_| unreachable!()),
            rate_sharers: Gauge::new("resume_chat_rate_sharers", "Replicas of ours estimated to share the Connect quota (jobs queue in-flight messages over ours; 1 alone or until estimated).").unwrap_or_else(|_| unreachable!()),
            rate_ceiling: GaugeVec::new(
                Opts::new("resume_chat_rate_ceiling", "Configured calls per second (the limiter's ceiling)."),
                &["operation"],
            ).unwrap_or_else(|_| unreachable!()),
            contact_events: IntCounterVec::new(
                Opts::new("resume_chat_contact_events_total", "Messages read from CONTACT_EVENTS_QUEUE_URL, by kind: chat_ended (a DISCONNECTED chat: a slot freed), duplicate (the same contact again), other (another event type or channel, ignored), malformed (not a contact event; deleted)."),
                &["kind"],
            ).unwrap_or_else(|_| unreachable!()),
            contact_events_readable: IntGauge::new("resume_chat_contact_events_readable", "With CONTACT_EVENTS_QUEUE_URL: 1 while the contact-events queue is read (full instances start on reported chat ends), 0 after its receives failed for 20 s (capacity paced blind), -1 without the setting.").unwrap_or_else(|_| unreachable!()),
            capacity_limited: IntGaugeVec::new(
                Opts::new("resume_chat_capacity_limited", "1 while the Connect instance has been found out of chat capacity (LimitExceededException) and starts on it are paced, else 0 (only instances that were ever limited)."),
                &["connect_instance"],
            ).unwrap_or_else(|_| unreachable!()),
            capacity_start_rate: GaugeVec::new(
                Opts::new("resume_chat_capacity_start_rate", "StartChatContact calls per second the instance's capacity machine allows while it is limited (0 when open)."),
                &["connect_instance"],
            ).unwrap_or_else(|_| unreachable!()),
            fleet_limiter_state: IntGauge::new("resume_chat_fleet_limiter_state", "Fleet-wide limiter in Redis: 0 disabled (no REDIS_URL), 1 shared via Redis, 2 fallback to local control (Redis unreachable or not reached yet).").unwrap_or_else(|_| unreachable!()),
            fleet_limiter_errors: IntCounter::new("resume_chat_fleet_limiter_errors_total", "Failed Redis calls of the fleet-wide limiter (each one means local control only for that call).").unwrap_or_else(|_| unreachable!()),
            visibility_extensions: IntCounterVec::new(
                Opts::new("resume_chat_visibility_extensions_total", "Visibility extensions of in-flight jobs, by result."),
                &["result"],
            ).unwrap_or_else(|_| unreachable!()),
            sqs_errors: IntCounterVec::new(
                Opts::new("resume_chat_sqs_errors_total", "Failed SQS calls or batch entries, by operation and code."),
                &["operation", "code"],
            ).unwrap_or_else(|_| unreachable!()),
            sqs_requests: IntCounterVec::new(
                Opts::new("resume_chat_sqs_requests_total", "SQS requests made, by operation (SQS bills per request)."),
                &["operation"],
            ).unwrap_or_else(|_| unreachable!()),
            last_receive_success: Gauge::new("resume_chat_last_receive_success_timestamp_seconds", "Unix time of the last successful ReceiveMessage.").unwrap_or_else(|_| unreachable!()),
            queue_messages: IntGaugeVec::new(
                Opts::new("resume_chat_queue_messages", "Approximate messages in the jobs queue and DLQ (GetQueueAttributes; the DLQ every 30 s, the jobs queue from its latest reading, at most 45 s old)."),
                &["queue", "state"],
            ).unwrap_or_else(|_| unreachable!()),
            ready: IntGauge::new("resume_chat_ready", "1 while /readyz answers 200.").unwrap_or_else(|_| unreachable!()),
            results_published: IntCounter::new("resume_chat_results_published_total", "Result messages published to the results queue.").unwrap_or_else(|_| unreachable!()),
            job_duration: Histogram::with_opts(
                HistogramOpts::new("resume_chat_job_duration_seconds", "Time from receiving a job to publishing its result.").buckets(AGE_BUCKETS.to_vec()),
            ).unwrap_or_else(|_| unreachable!()),
            credential_errors: IntCounterVec::new(
                Opts::new("resume_chat_credential_errors_total", "Connect calls refused for the worker's own credentials or signature (ExpiredTokenException, UnrecognizedClientException, InvalidSignatureException, ...), by operation and code; each job went back to SQS without a result."),
                &["operation", "code"],
            ).unwrap_or_else(|_| unreachable!()),
            recycle_failures: IntCounter::new("resume_chat_recycle_failures_total", "Jobs whose recycle (sending a copy to the jobs queue so that a capacity or credential wait keeps its receive budget) failed; the job was given back as is.").unwrap_or_else(|_| unreachable!()),
            build_info: IntGaugeVec::new(
                Opts::new("resume_chat_build_info", "Always 1; the labels say which build runs (version from Cargo.toml, commit from the build environment's GIT_COMMIT or git, else unknown)."),
                &["version", "commit"],
            ).unwrap_or_else(|_| unreachable!()),
            connect_window_used: Histogram::with_opts(
                HistogramOpts::new("resume_chat_connect_window_used_seconds", "Time from the StartChatContact response to the published result: how much of the participant token's 300 s connect window the worker used.").buckets(WINDOW_BUCKETS.to_vec()),
            ).unwrap_or_else(|_| unreachable!()),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.jobs_received.clone()),
            Box::new(m.jobs_completed.clone()),
            Box::new(m.jobs_requeued.clone()),
            Box::new(m.jobs_dead_lettered.clone()),
            Box::new(m.jobs_in_flight.clone()),
            Box::new(m.job_age.clone()),
            Box::new(m.connect_calls.clone()),
            Box::new(m.connect_call_duration.clone()),
            Box::new(m.rate_wait.clone()),
            Box::new(m.allowed_rate.clone()),
            Box::new(m.rate_ceiling.clone()),
            Box::new(m.rate_sharers.clone()),
            Box::new(m.capacity_limited.clone()),
            Box::new(m.capacity_start_rate.clone()),
            Box::new(m.fleet_limiter_state.clone()),
            Box::new(m.fleet_limiter_errors.clone()),
            Box::new(m.visibility_extensions.clone()),
            Box::new(m.sqs_errors.clone()),
            Box::new(m.sqs_requests.clone()),
            Box::new(m.last_receive_success.clone()),
            Box::new(m.queue_messages.clone()),
            Box::new(m.ready.clone()),
            Box::new(m.results_published.clone()),
            Box::new(m.job_duration.clone()),
            Box::new(m.credential_errors.clone()),
            Box::new(m.recycle_failures.clone()),
            Box::new(m.build_info.clone()),
            Box::new(m.connect_window_used.clone()),
            Box::new(m.contact_events.clone()),
            Box::new(m.contact_events_readable.clone()),
        ];
        for c in collectors {
            // Names are distinct constants; registration cannot fail.
            let _ = m.registry.register(c);
        }
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ... from
        // /proc/self (Linux; elsewhere the collector reports nothing).
        let _ = m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), build_commit()])
            .set(1);
        m.rate_sharers.set(1.0);
        m.contact_events_readable.set(-1);
        // Series that alerts divide by exist from the start, at zero.
        for op in crate::connect::Operation::ALL {
            m.connect_calls.with_label_values(&[op.as_str(), "OK"]);
        }
        for reason in [
            "capacity",
            "transient",
            "credentials",
            "unpublished",
            "shutdown",
            "handoff",
            "group",
        ] {
            m.jobs_requeued.with_label_values(&[reason]);
        }
        for result in ["ok", "failed"] {
            m.visibility_extensions.with_label_values(&[result]);
        }
        m
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The commit the binary was built from: `GIT_COMMIT` at compile time (the Dockerfile's build
/// argument), else `unknown`.
pub fn build_commit() -> &'static str {
    match option_env!("GIT_COMMIT") {
        Some(c) if !c.trim().is_empty() => c,
        _ => "unknown",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
