//! The operator commands (`enqueue`, `dlq replay`, `validate`) as an operator runs them: the real
//! binary as a child process, talking to moto's SQS over HTTP through the real `aws-sdk-sqs`
//! (`AWS_ENDPOINT_URL_SQS`). Each test gets its own moto and queues; the test checks the queues
//! with its own SQS client afterwards.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// The Connect defaults an operator's environment has (the test jobs leave out instance and flow).
const DEFAULTS: [(&str, &str); 2] = [
    ("CONNECT_INSTANCE_ID", "inst-1"),
    ("CONNECT_CONTACT_FLOW_ID", "flow-1"),
];

/// Runs the binary with only the AWS settings, SQS at moto (plus `env`), feeding `stdin`.
/// It signs as the task principal (the task role's SQS statements, see tests/common): operators
/// run `enqueue` and `dlq replay` as one-off tasks of the worker's task definition.
fn run_cli(moto: &Moto, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    run_cli_at(&moto.endpoint, moto.task_credentials(), args, env, stdin)
}

/// [`run_cli`] against any SQS endpoint, signing with `(key, secret)`.
fn run_cli_at(
    endpoint: &str,
    (key, secret): (String, String),
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(worker_binary());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_ENDPOINT_URL_SQS", endpoint)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start resume-chat-worker");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child
        .wait_with_output()
        .expect("wait for resume-chat-worker")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A job file under target/test-tmp, removed on drop.
struct JobFile(PathBuf);

impl JobFile {
    fn new(name: &str, text: &str) -> JobFile {
        let dir = repo_root().join("target/test-tmp");
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join(format!(
            "{name}-{}-{}.jsonl",
            std::process::id(),
            free_port()
        ));
        std::fs::write(&path, text).expect("write job file");
        JobFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for JobFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Lines 1 and 3 are good jobs; line 2 has a bad rehydrationType; line 4 is not JSON.
fn mixed_file() -> String {
    let bad = r#"{"jobId":"bad-2","sourceContactId":"c","participant":{"displayName":"A"},"rehydrationType":"ALL"}"#;
    format!(
        "{}\n{bad}\n{}\nnot json\n",
        start_job("good-1"),
        start_job("good-3")
    )
}

fn sorted_ids(results: &[TestResult]) -> Vec<String> {
    let mut ids: Vec<String> = results
        .iter()
        .filter_map(|r| r.job_id().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_rejects_a_file_with_bad_lines_by_line_number_and_sends_nothing() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let file = JobFile::new("mixed", &mixed_file());
    let out = run_cli(
        &moto,
        &["enqueue", file.path(), "--queue-url", &queues.jobs],
        &DEFAULTS,
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 2 (jobId bad-2): field `rehydrationType`"),
        "{err}"
    );
    assert!(err.contains("line 4: "), "{err}");
    assert!(err.contains("(expected: "), "explains each error: {err}");
    assert!(err.contains("nothing sent: 2 invalid line(s)"), "{err}");
    assert!(err.contains("--skip-invalid"), "{err}");
    assert!(
        !err.contains("line 1 (") && !err.contains("line 3 ("),
        "good lines are not reported: {err}"
    );
    assert_eq!(queues.depth(&queues.jobs).await, (0, 0), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_with_skip_invalid_sends_the_good_lines_with_a_job_id_attribute() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let file = JobFile::new("mixed", &mixed_file());
    // The queue URL from the environment this time, as in a deployed task.
    let out = run_cli(
        &moto,
        &["enqueue", "--skip-invalid", file.path()],
        &[DEFAULTS[0], DEFAULTS[1], ("JOBS_QUEUE_URL", &queues.jobs)],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "enqueued 2 jobs (2 invalid lines skipped)"
    );
    assert!(
        stderr(&out).contains("line 2 (jobId bad-2)"),
        "the bad lines are still reported"
    );
    let sent = queues.drain(&queues.jobs.clone(), 2, WAIT).await;
    assert_eq!(sorted_ids(&sent), ["good-1", "good-3"]);
    for m in &sent {
        let id = m.job_id().unwrap_or_default();
        assert_eq!(m.body, start_job(id), "the line is sent as written");
        assert_eq!(m.attributes.get("jobId").map(String::as_str), Some(id));
    }
    assert!(
        queues
            .drain(&queues.jobs.clone(), 1, Duration::from_secs(2))
            .await
            .is_empty(),
        "nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_reads_stdin_and_sends_more_than_one_batch() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    // 23 jobs: three SendMessageBatch calls; a blank line does not count.
    let mut input: String = (0..23)
        .map(|i| start_job(&format!("in-{i:02}")) + "\n")
        .collect();
    input.insert(0, '\n');
    let out = run_cli(
        &moto,
        &["enqueue", "-", "--queue-url", &queues.jobs],
        &DEFAULTS,
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "enqueued 23 jobs (0 invalid lines skipped)"
    );
    // Not a terminal: no progress bar drawn.
    assert_eq!(stderr(&out), "");
    let sent = queues.drain(&queues.jobs.clone(), 23, WAIT).await;
    let expected: Vec<String> = (0..23).map(|i| format!("in-{i:02}")).collect();
    assert_eq!(sorted_ids(&sent), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_validates_with_the_configured_defaults() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let job = start_job("needs-defaults");
    let no_defaults = run_cli(
        &moto,
        &["enqueue", "--queue-url", &queues.jobs],
        &[],
        Some(&job),
    );
    assert_eq!(no_defaults.status.code(), Some(1));
    assert!(
        stderr(&no_defaults).contains("instanceId"),
        "{}",
        stderr(&no_defaults)
    );
    let with_defaults = run_cli(
        &moto,
        &["enqueue", "--queue-url", &queues.jobs],
        &DEFAULTS,
        Some(&job),
    );
    assert_eq!(
        with_defaults.status.code(),
        Some(0),
        "{}",
        stderr(&with_defaults)
    );
    assert_eq!(queues.drain(&queues.jobs.clone(), 1, WAIT).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_to_a_missing_queue_fails_and_lists_the_lines_not_sent() {
    let moto = Moto::start();
    let input: String = (0..3)
        .map(|i| start_job(&format!("lost-{i}")) + "\n")
        .collect();
    let missing = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let out = run_cli(
        &moto,
        &["enqueue", "--queue-url", &missing],
        &DEFAULTS,
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "enqueued 0 jobs (0 invalid lines skipped)"
    );
    assert!(
        stderr(&out).contains("3 job(s) not sent"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("lines 1-3"), "{}", stderr(&out));
}

/// Arguments, environment, and the setting the one-line error must name.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn missing_settings_exit_2_with_one_line_naming_them() {
    // No moto needed: the command stops before any call.
    let cases: [Case; 4] = [
        (&["enqueue", "-"], &[], "JOBS_QUEUE_URL"),
        (
            &["dlq", "replay", "--queue-url", "http://127.0.0.1:1/q/jobs"],
            &[],
            "DEAD_LETTER_QUEUE_URL",
        ),
        (
            &["dlq", "replay", "--dlq-url", "http://127.0.0.1:1/q/dlq"],
            &[],
            "JOBS_QUEUE_URL",
        ),
        (
            &["enqueue", "-"],
            // No region anywhere (and no instance metadata to ask).
            &[
                ("JOBS_QUEUE_URL", "http://127.0.0.1:1/q/jobs"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
            "AWS_REGION",
        ),
    ];
    for (args, env, setting) in cases {
        let out = Command::new(worker_binary())
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(setting), "{err}");
    }
}

/// Puts `n` job bodies straight into the DLQ (as the redrive policy would), each with a tag.
async fn fill_dlq(queues: &Queues, n: usize) -> Vec<String> {
    let bodies: Vec<String> = (0..n).map(|i| start_job(&format!("dead-{i:02}"))).collect();
    for b in &bodies {
        let tag = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("batch-7")
            .build()
            .expect("attr");
        queues
            .sqs
            .send_message()
            .queue_url(&queues.dlq)
            .message_body(b)
            .message_attributes("tag", tag)
            .send()
            .await
            .expect("send to dlq");
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_dry_run_counts_and_moves_nothing_then_replay_moves_everything_intact() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let mut bodies = fill_dlq(&queues, 12).await;
    let urls = [
        "--dlq-url",
        queues.dlq.as_str(),
        "--queue-url",
        queues.jobs.as_str(),
    ];

    let dry: Vec<&str> = ["dlq", "replay", "--dry-run"]
        .into_iter()
        .chain(urls)
        .collect();
    let out = run_cli(&moto, &dry, &[], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("dry run: would move 12 messages from DLQ to jobs queue (nothing moved)"),
        "{text}"
    );
    let sample = text
        .lines()
        .find_map(|l| l.strip_prefix("sample jobIds: "))
        .unwrap_or_default();
    let sample: Vec<&str> = sample.split(", ").collect();
    assert!(!sample.is_empty() && sample.len() <= 10, "{text}");
    assert!(sample.iter().all(|id| id.starts_with("dead-")), "{text}");
    assert_eq!(
        queues.depth(&queues.jobs).await,
        (0, 0),
        "dry run sends nothing"
    );
    assert_eq!(
        queues.depth(&queues.dlq).await,
        (12, 0),
        "dry run deletes nothing and releases its sample"
    );

    let real: Vec<&str> = ["dlq", "replay"].into_iter().chain(urls).collect();
    let out = run_cli(&moto, &real, &[], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "moved 12 messages from DLQ to jobs queue"
    );
    assert_eq!(queues.depth(&queues.dlq).await, (0, 0), "the DLQ is empty");
    let moved = queues.drain(&queues.jobs.clone(), 12, WAIT).await;
    let mut got: Vec<String> = moved.iter().map(|m| m.body.clone()).collect();
    got.sort();
    bodies.sort();
    assert_eq!(got, bodies, "bodies intact");
    assert!(
        moved
            .iter()
            .all(|m| m.attributes.get("tag").map(String::as_str) == Some("batch-7")),
        "attributes kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_with_max_moves_that_many_and_leaves_the_rest() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    fill_dlq(&queues, 7).await;
    let env = [
        ("DEAD_LETTER_QUEUE_URL", queues.dlq.as_str()),
        ("JOBS_QUEUE_URL", queues.jobs.as_str()),
    ];
    let out = run_cli(&moto, &["dlq", "replay", "--max", "3"], &env, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "moved 3 messages from DLQ to jobs queue"
    );
    assert_eq!(queues.drain(&queues.jobs.clone(), 3, WAIT).await.len(), 3);
    assert_eq!(queues.depth(&queues.dlq).await, (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_explains_every_error_of_the_invalid_fixture() {
    // Offline: validate makes no AWS call.
    let nowhere = "http://127.0.0.1:1";
    let file = repo_root().join("tests/data/jobs/invalid.jsonl");
    let out = run_cli_at(
        nowhere,
        ("test".into(), "test".into()),
        &["validate", file.to_str().expect("path")],
        &DEFAULTS,
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for line in 1..=18 {
        assert!(
            text.contains(&format!("line {line}")),
            "line {line} explained: {text}"
        );
    }
    assert_eq!(text.matches("(expected: ").count(), 18, "{text}");
    assert!(
        text.trim_end()
            .ends_with("18 jobs checked: 0 valid, 18 invalid"),
        "{text}"
    );
    let valid = repo_root().join("tests/data/jobs/valid.jsonl");
    let out = run_cli_at(
        nowhere,
        ("test".into(), "test".into()),
        &["validate", valid.to_str().expect("path")],
        &DEFAULTS,
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
