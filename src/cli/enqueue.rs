//! `resume-chat-worker enqueue [FILE|-]`: sends jobs from a JSON-lines file (or stdin) to the
//! jobs queue, after checking every line with the worker's own parser.
//!
//! Mechanism:
//! 1. The whole input is read first and every non-blank line is parsed with [`parse_job`] and the
//!    same defaults the worker applies (`CONNECT_INSTANCE_ID`, `CONNECT_CONTACT_FLOW_ID`). Bad lines
//!    are printed with their line number and an explanation ([`validate_lines`]'s report). If any
//!    line is bad, NOTHING is sent (exit 1), so a half-sent file never has to be untangled;
//!    `--skip-invalid` sends the good lines and reports the bad ones.
//! 2. Each good line is sent as it is written (unknown fields kept), with a `jobId` message
//!    attribute, in `SendMessageBatch` calls of at most 10 entries and 256 KiB
//!    ([`super::batch`]); entries that fail for a reason other than a sender fault are re-sent a
//!    few times. A missing queue or denied call stops the run.
//! 3. It prints `enqueued N jobs (M invalid lines skipped)`; when some jobs were not sent it lists
//!    their line numbers and exits 1, so the operator can re-send exactly those lines. Re-sending
//!    a job that did arrive is harmless: the worker derives the Connect `ClientToken` from the jobId.
//!
//! To a FIFO jobs queue (`.fifo`) each job carries `MessageGroupId` = its jobId and a
//! `MessageDeduplicationId` from its body and attributes (`queue::fifo`), so a re-run of the same
//! file within SQS's 5-minute deduplication window sends each job once.
//!
//! A progress bar is drawn on stderr only when stderr is a terminal.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use super::CliError;
use super::batch::{RetryPolicy, send_batch_with_retry, split_batches};
use super::validate::{ValidationReport, validate_lines};
use crate::config::ConfigError;
use crate::job::{JobDefaults, parse_job};
use crate::queue::sqs::SqsQueue;
use crate::queue::{MessageQueue, OutgoingMessage};

/// Send jobs from a JSON-lines file or stdin to the jobs queue, after validating every line.
#[derive(clap::Args, Debug)]
pub struct EnqueueArgs {
    /// The file (one job per line); `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// URL of the jobs queue.
    #[arg(long, env = "JOBS_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// Default instance id, as the worker would apply it (for validation only).
    #[arg(long, env = "CONNECT_INSTANCE_ID")]
    pub connect_instance_id: Option<String>,
    /// Default contact flow id, as the worker would apply it (for validation only).
    #[arg(long, env = "CONNECT_CONTACT_FLOW_ID")]
    pub connect_contact_flow_id: Option<String>,
    /// Send the valid lines even when some lines are invalid (those are reported, not sent).
    #[arg(long)]
    pub skip_invalid: bool,
}

/// A valid line, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingJob {
    /// 1-based line number in the input.
    pub line: usize,
    pub job_id: String,
    /// The line as written, without its line ending.
    pub body: String,
}

impl PendingJob {
    fn message(&self) -> OutgoingMessage {
        OutgoingMessage {
            body: self.body.clone(),
            attributes: vec![("jobId".to_owned(), self.job_id.clone())],
        }
    }
}

/// A job that was not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotSent {
    pub line: usize,
    pub job_id: String,
    pub code: String,
    pub message: String,
}

/// What [`send_jobs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendSummary {
    pub sent: usize,
    /// In line order.
    pub not_sent: Vec<NotSent>,
    /// Why sending stopped early (missing queue, access denied), if it did.
    pub stopped: Option<String>,
}

/// Validates every line of `input`: the report (bad lines, duplicate warnings) and the good jobs.
/// Line numbers and blank-line rules are those of [`validate_lines`].
pub fn prepare(input: &[u8], defaults: &JobDefaults) -> (ValidationReport, Vec<PendingJob>) {
    let report = validate_lines(input, defaults);
    let mut jobs = Vec::with_capacity(report.valid);
    for (i, raw) in input.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(text) = std::str::from_utf8(raw) else {
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if let Ok(job) = parse_job(text, defaults) {
            jobs.push(PendingJob {
                line: i + 1,
                job_id: job.job_id,
                body: text.to_owned(),
            });
        }
    }
    (report, jobs)
}

/// Sends `jobs` in size-limited batches, advancing `progress` by each finished batch.
pub async fn send_jobs<Q: MessageQueue>(
    queue: &Q,
    queue_url: &str,
    jobs: &[PendingJob],
    progress: &ProgressBar,
    policy: RetryPolicy,
) -> SendSummary {
    let messages: Vec<OutgoingMessage> = jobs.iter().map(PendingJob::message).collect();
    let mut summary = SendSummary::default();
    for range in split_batches(&messages) {
        let (Some(batch), Some(batch_jobs)) =
            (messages.get(range.clone()), jobs.get(range.clone()))
        else {
            continue;
        };
        if let Some(reason) = &summary.stopped {
            summary.not_sent.extend(
                batch_jobs
                    .iter()
                    .map(|j| not_sent(j, "NotAttempted", reason)),
            );
            continue;
        }
        let outcome = send_batch_with_retry(queue, queue_url, batch, policy).await;
        summary.sent += outcome.sent.len();
        for f in outcome.failed {
            if let Some(job) = batch_jobs.get(f.index) {
                summary.not_sent.push(not_sent(job, &f.code, &f.message));
            }
        }
        if let Some(e) = outcome.fatal {
            summary.stopped = Some(e.to_string());
        }
        progress.inc(batch.len() as u64);
    }
    summary.not_sent.sort_by_key(|n| n.line);
    summary
}

fn not_sent(job: &PendingJob, code: &str, message: &str) -> NotSent {
    NotSent {
        line: job.line,
        job_id: job.job_id.clone(),
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// `1-3, 7, 9-10` for `[1, 2, 3, 7, 9, 10]` (sorted input): short even for thousands of lines.
pub fn line_ranges(lines: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = lines.get(i) {
        let mut end = start;
        while lines.get(i + 1) == Some(&(end + 1)) {
            end += 1;
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// Runs the command: exit 0 when every valid job was sent (and, without `--skip-invalid`, every
/// line was valid), 1 otherwise, 2 for a missing setting.
pub async fn command(args: EnqueueArgs) -> Result<ExitCode, CliError> {
    let queue_url = required_url(args.queue_url.as_deref(), "JOBS_QUEUE_URL", "--queue-url")?;
    let queue = sqs_queue().await?;
    let input = read_input(args.file.as_deref())?;
    let defaults = JobDefaults {
        instance_id: args.connect_instance_id,
        contact_flow_id: args.connect_contact_flow_id,
    };
    let (report, jobs) = prepare(&input, &defaults);
    if !report.errors.is_empty() || !report.duplicates.is_empty() {
        eprintln!("{}", report.render_with_hints());
    }
    if report.invalid > 0 && !args.skip_invalid {
        return Err(CliError::Failed(format!(
            "nothing sent: {} invalid line(s), listed above; fix them, or pass --skip-invalid to send the {} valid job(s)",
            report.invalid,
            jobs.len()
        )));
    }

    let progress = progress_bar(jobs.len() as u64);
    let summary = send_jobs(&queue, &queue_url, &jobs, &progress, RetryPolicy::default()).await;
    progress.finish_and_clear();

    println!(
        "enqueued {} jobs ({} invalid lines skipped)",
        summary.sent, report.invalid
    );
    if summary.not_sent.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Details for the first few; the line list below names them all.
    for n in summary
        .not_sent
        .iter()
        .filter(|n| n.code != "NotAttempted")
        .take(20)
    {
        eprintln!(
            "line {} (jobId {}): not sent: {}: {}",
            n.line, n.job_id, n.code, n.message
        );
    }
    let lines: Vec<usize> = summary.not_sent.iter().map(|n| n.line).collect();
    let why = summary
        .stopped
        .map(|s| format!(" (stopped: {s})"))
        .unwrap_or_default();
    Err(CliError::Failed(format!(
        "{} job(s) not sent{why}: lines {}",
        lines.len(),
        line_ranges(&lines)
    )))
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} jobs  {per_sec}  eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

fn read_input(file: Option<&Path>) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    match file {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", p.display())))?;
        }
        _ => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| CliError::Failed(format!("cannot read stdin: {e}")))?;
        }
    }
    Ok(buf)
}

/// A queue URL setting: present and `http(s)://`, else exit 2 naming the setting.
pub(crate) fn required_url(
    value: Option<&str>,
    setting: &'static str,
    flag: &str,
) -> Result<String, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Err(ConfigError {
            setting,
            problem: format!("is required (the URL of an SQS queue; or pass {flag})"),
        });
    };
    if !(v.starts_with("https://") || v.starts_with("http://")) {
        return Err(ConfigError {
            setting,
            problem: format!("must be an SQS queue URL (https://…), got {v:?}"),
        });
    }
    Ok(v.to_owned())
}

/// The SQS adapter from the standard AWS configuration (region, credentials,
/// `AWS_ENDPOINT_URL_SQS`), as `run` builds it; a missing region exits 2.
pub(crate) async fn sqs_queue() -> Result<SqsQueue, CliError> {
    let shared = super::aws_config().await?;
    Ok(SqsQueue::new(&shared))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::batch::testing::{FlakyQueue, SendPlan};
    use super::*;
    use crate::queue::QueueErrorKind;

    const Q: &str = "memory://jobs";

    fn defaults() -> JobDefaults {
        JobDefaults {
            instance_id: Some("inst".into()),
            contact_flow_id: Some("flow".into()),
        }
    }

    fn good(id: &str) -> String {
        format!(
            r#"{{"jobId":"{id}","sourceContactId":"c-{id}","participant":{{"displayName":"Ana"}},"extra":1}}"#
        )
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            first_pause: Duration::from_millis(10),
        }
    }

    #[test]
    fn prepare_keeps_good_lines_as_written_with_their_line_numbers() {
        let input = format!(
            "{}\r\n\n{{\"jobId\":\"bad\"}}\n  {}  \nnot json",
            good("a"),
            good("b")
        );
        let (report, jobs) = prepare(input.as_bytes(), &defaults());
        assert_eq!((report.valid, report.invalid), (2, 2));
        assert_eq!(
            report.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![3, 5]
        );
        assert_eq!(
            jobs.iter()
                .map(|j| (j.line, j.job_id.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "a"), (4, "b")]
        );
        // Unknown fields survive: the body is the line itself, trimmed.
        assert_eq!(jobs[0].body, good("a"));
        assert_eq!(jobs[1].body, good("b"));
    }

    #[test]
    fn prepare_applies_the_defaults_like_the_worker() {
        let (report, jobs) = prepare(good("a").as_bytes(), &JobDefaults::default());
        assert_eq!(report.invalid, 1);
        assert!(jobs.is_empty());
        assert_eq!(report.errors[0].error.field.as_deref(), Some("instanceId"));
    }

    #[test]
    fn prepare_reports_a_non_utf8_line_and_keeps_the_rest() {
        let mut input = b"\xff\xfe\n".to_vec();
        input.extend_from_slice(good("a").as_bytes());
        let (report, jobs) = prepare(&input, &defaults());
        assert_eq!(report.errors[0].line, 1);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].line, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn sends_every_job_with_its_job_id_attribute_in_batches_of_ten() {
        let q = FlakyQueue::default();
        let input: String = (0..25).map(|i| good(&format!("j{i}")) + "\n").collect();
        let (_, jobs) = prepare(input.as_bytes(), &defaults());
        let bar = ProgressBar::hidden();
        let summary = send_jobs(&q, Q, &jobs, &bar, fast()).await;
        assert_eq!(summary.sent, 25);
        assert!(summary.not_sent.is_empty());
        assert_eq!(q.calls(), vec![10, 10, 5]);
        assert_eq!(bar.position(), 25);
        let messages = q.inner.messages(Q);
        assert_eq!(messages.len(), 25);
        for (body, attributes, _) in messages {
            let id = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["jobId"].as_str().map(str::to_owned));
            assert_eq!(
                attributes,
                vec![("jobId".to_owned(), id.unwrap_or_default())]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_entries_are_retried_and_permanent_failures_are_reported_by_line() {
        // Batch 1: entry 2 fails once (transient), entry 4 is a sender fault.
        let q = FlakyQueue::new(vec![SendPlan::FailEntries(vec![(2, false), (4, true)])]);
        let input: String = (0..12).map(|i| good(&format!("j{i}")) + "\n").collect();
        let (_, jobs) = prepare(input.as_bytes(), &defaults());
        let summary = send_jobs(&q, Q, &jobs, &ProgressBar::hidden(), fast()).await;
        assert_eq!(summary.sent, 11);
        assert_eq!(summary.not_sent.len(), 1);
        assert_eq!(
            (
                summary.not_sent[0].line,
                summary.not_sent[0].job_id.as_str()
            ),
            (5, "j4")
        );
        assert_eq!(q.inner.len(Q), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_queue_stops_and_lists_every_unsent_line() {
        let q = FlakyQueue::new(vec![
            SendPlan::FailEntries(vec![]),
            SendPlan::FailCall(QueueErrorKind::QueueMissing),
        ]);
        let input: String = (0..30).map(|i| good(&format!("j{i}")) + "\n").collect();
        let (_, jobs) = prepare(input.as_bytes(), &defaults());
        let summary = send_jobs(&q, Q, &jobs, &ProgressBar::hidden(), fast()).await;
        assert_eq!(summary.sent, 10);
        assert_eq!(
            summary.not_sent.iter().map(|n| n.line).collect::<Vec<_>>(),
            (11..=30).collect::<Vec<_>>()
        );
        assert!(summary.stopped.is_some());
        // Stopped after the failing call: the third batch was never attempted.
        assert_eq!(q.calls(), vec![10, 10]);
    }

    #[test]
    fn line_ranges_compress_runs() {
        assert_eq!(line_ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(line_ranges(&[4]), "4");
        assert_eq!(line_ranges(&[]), "");
    }

    #[test]
    fn queue_url_must_be_present_and_a_url() {
        let missing = required_url(None, "JOBS_QUEUE_URL", "--queue-url");
        assert!(
            missing
                .is_err_and(|e| e.setting == "JOBS_QUEUE_URL" && e.problem.contains("--queue-url"))
        );
        assert!(required_url(Some("  "), "JOBS_QUEUE_URL", "--queue-url").is_err());
        assert!(required_url(Some("jobs"), "JOBS_QUEUE_URL", "--queue-url").is_err());
        assert_eq!(
            required_url(Some(" http://h/q "), "X", "--x")
                .ok()
                .as_deref(),
            Some("http://h/q")
        );
    }
}
