//! Test harness: real parts on loopback ports. moto's SQS server as a child process (from the
//! repo's `.venv`, made by `scripts/python-env.sh`, or `MOTO_SERVER`), `connect-sim` in-process on
//! port 0, and the real `resume-chat-worker` binary as a child process with its environment.
//! Everything is killed on drop, so a failing test leaves nothing behind.
//!
//! # The deployed IAM policy
//!
//! [`Queues::create`] ends by switching moto's IAM access control on (tests/iam/task_principal.py):
//! from then on every SQS call must be signed by an IAM user of moto's and allowed by its policy.
//! The worker, `enqueue` and `dlq replay` run as a user whose only policy is the SQS part of the
//! task role in deploy/cloudformation/worker.yaml, read from the template by that script (not a
//! copy) with the test's queue ARNs substituted; the test's own calls (sending jobs, reading
//! results) use an admin user. A call the role does not allow fails with AccessDenied, and the
//! test fails. What moto cannot evaluate (resource policies such as DenyInsecureTransport,
//! conditions, KMS, the role's trust policy, GetQueueUrl, anything Connect) is listed in that
//! script's doc comment; IAM's rule that a batch call needs the non-batch action is translated
//! there, since moto names the batch actions separately.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

pub const REGION: &str = "us-east-1";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    panic!(
        "moto_server not found: run scripts/python-env.sh (the README's test command does) or set MOTO_SERVER"
    );
}

/// moto's server, one per test.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// Set by [`Queues::create`]: the task principal's and the admin's access keys.
    principals: std::sync::OnceLock<Principals>,
}

/// Access keys of the two IAM users [`Queues::create`] makes.
#[derive(Clone, Debug)]
pub struct Principals {
    /// The task role's SQS statements from worker.yaml.
    pub task: (String, String),
    /// Everything allowed: the test's own calls.
    pub admin: (String, String),
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto {
            child,
            endpoint,
            principals: std::sync::OnceLock::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&format!("127.0.0.1:{port}"), "/moto-api/").is_none() {
            assert!(Instant::now() < deadline, "moto did not start within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Moto {
    /// The (access key id, secret) the worker and the CLI run with: the task principal once
    /// [`Queues::create`] ran, else moto's default (IAM not enforced yet).
    pub fn task_credentials(&self) -> (String, String) {
        self.principals
            .get()
            .map(|p| p.task.clone())
            .unwrap_or_else(|| ("test".to_owned(), "test".to_owned()))
    }

    /// The admin's (access key id, secret): everything allowed.
    pub fn admin_credentials(&self) -> (String, String) {
        self.principals
            .get()
            .map(|p| p.admin.clone())
            .unwrap_or_else(|| ("test".to_owned(), "test".to_owned()))
    }

    /// Switches IAM enforcement on with the task principal's policy from worker.yaml (see the
    /// module doc); `drop` removes `action@LogicalId` pairs from it (a test of their absence).
    pub fn enforce_task_policy(
        &self,
        jobs: &str,
        results: &str,
        dlq: &str,
        events: &str,
        drop: &[&str],
    ) {
        let python = repo_root().join(".venv/bin/python");
        let mut cmd = Command::new(&python);
        cmd.arg(repo_root().join("tests/iam/task_principal.py"))
            .args([&self.endpoint, jobs, results, dlq, events]);
        for d in drop {
            cmd.args(["--drop", d]);
        }
        let out = cmd
            .output()
            .expect("run tests/iam/task_principal.py (scripts/python-env.sh makes .venv)");
        assert!(
            out.status.success(),
            "task_principal.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("principals JSON");
        let key = |who: &str| {
            (
                v[who]["key"].as_str().expect("key").to_owned(),
                v[who]["secret"].as_str().expect("secret").to_owned(),
            )
        };
        let _ = self.principals.set(Principals {
            task: key("task"),
            admin: key("admin"),
        });
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SQS client for the test's own use (sending jobs, reading results).
pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    sqs_client_as(endpoint, ("test", "test"))
}

/// An SQS client signing as `(access key id, secret)`.
pub fn sqs_client_as(endpoint: &str, (key, secret): (&str, &str)) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_sqs::config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            key, secret, None, None, "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// The queues of one test: jobs, results, DLQ, and the contact events (EventBridge's target;
/// the worker reads it only when a test sets `CONTACT_EVENTS_QUEUE_URL`).
pub struct Queues {
    pub sqs: aws_sdk_sqs::Client,
    pub jobs: String,
    pub results: String,
    pub dlq: String,
    pub events: String,
}

impl Queues {
    /// Creates jobs (with a redrive policy to the DLQ after `max_receive` receives), results, DLQ,
    /// then enforces IAM with the task role's policy (see the module doc).
    pub async fn create(moto: &Moto, visibility_secs: u32, max_receive: u32) -> Queues {
        Self::create_with_policy(moto, visibility_secs, max_receive, &[]).await
    }

    /// [`Queues::create`] with `drop` (`action@LogicalId`) removed from the task policy.
    pub async fn create_with_policy(
        moto: &Moto,
        visibility_secs: u32,
        max_receive: u32,
        drop: &[&str],
    ) -> Queues {
        let sqs = sqs_client(&moto.endpoint);
        let dlq = sqs
            .create_queue()
            .queue_name("dlq")
            .send()
            .await
            .expect("dlq")
            .queue_url
            .expect("url");
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq arn")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("arn");
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive}"}}"#);
        let jobs = sqs
            .create_queue()
            .queue_name("jobs")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_secs.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .expect("jobs")
            .queue_url
            .expect("url");
        let results = sqs
            .create_queue()
            .queue_name("results")
            .send()
            .await
            .expect("results")
            .queue_url
            .expect("url");
        let events = sqs
            .create_queue()
            .queue_name("contact-events")
            .send()
            .await
            .expect("contact-events")
            .queue_url
            .expect("url");
        let arn = |url: &str| {
            let name = url.rsplit('/').next().unwrap_or_default();
            dlq_arn
                .rsplit_once(':')
                .map(|(p, _)| format!("{p}:{name}"))
                .expect("arn")
        };
        moto.enforce_task_policy(&arn(&jobs), &arn(&results), &dlq_arn, &arn(&events), drop);
        let admin = moto.principals.get().expect("principals").admin.clone();
        let sqs = sqs_client_as(&moto.endpoint, (&admin.0, &admin.1));
        Queues {
            sqs,
            jobs,
            results,
            dlq,
            events,
        }
    }

    pub async fn send_job(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.jobs)
            .message_body(body)
            .send()
            .await
            .expect("send job");
    }

    pub async fn send_jobs(&self, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.jobs)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send batch");
            assert!(out.failed.is_empty(), "send batch failed: {:?}", out.failed);
        }
    }

    /// Reads results until `n` arrived or `timeout` passed, deleting them. Each result comes with
    /// its message attributes.
    pub async fn results(&self, n: usize, timeout: Duration) -> Vec<TestResult> {
        self.drain(&self.results.clone(), n, timeout).await
    }

    /// Results until `n` distinct jobs have one (or `timeout`), redelivered jobs' second results
    /// included: SQS is at-least-once, and moto delivers a message twice now and then when
    /// several replicas receive, each of which then publishes (the same result, from Connect's
    /// idempotent replay).
    pub async fn results_for_jobs(&self, n: usize, timeout: Duration) -> Vec<TestResult> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<TestResult> = Vec::new();
        loop {
            let distinct = got
                .iter()
                .filter_map(TestResult::job_id)
                .collect::<std::collections::HashSet<_>>()
                .len();
            let left = deadline.saturating_duration_since(Instant::now());
            if distinct >= n || left.is_zero() {
                return got;
            }
            let results = self.results.clone();
            got.extend(self.drain(&results, n - distinct, left).await);
        }
    }

    pub async fn drain(&self, queue: &str, n: usize, timeout: Duration) -> Vec<TestResult> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive results");
            for m in out.messages.unwrap_or_default() {
                let body = m.body.clone().unwrap_or_default();
                let attributes = m
                    .message_attributes
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.string_value?)))
                    .collect();
                if let Some(r) = m.receipt_handle.as_deref() {
                    self.sqs
                        .delete_message()
                        .queue_url(queue)
                        .receipt_handle(r)
                        .send()
                        .await
                        .expect("delete");
                }
                let json =
                    serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body.clone()));
                got.push(TestResult {
                    body,
                    json,
                    attributes,
                });
            }
        }
        got
    }

    /// Approximate visible + in-flight messages of a queue.
    pub async fn depth(&self, queue: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("attributes");
        let attrs = out.attributes.unwrap_or_default();
        let get = |n: QueueAttributeName| attrs.get(&n).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

#[derive(Debug, Clone)]
pub struct TestResult {
    pub body: String,
    pub json: serde_json::Value,
    pub attributes: HashMap<String, String>,
}

impl TestResult {
    pub fn job_id(&self) -> Option<&str> {
        self.json["jobId"].as_str()
    }
    pub fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("")
    }
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or("")
    }
}

/// A simulator whose rate quotas never get in the way (100/s), for tests about something else.
pub fn generous_sim() -> connect_sim::SimConfig {
    connect_sim::SimConfig {
        start_chat_rate: 100.0,
        start_chat_burst: 100,
        associate_rate: 100.0,
        associate_burst: 100,
        ..connect_sim::SimConfig::default()
    }
}

/// connect-sim in this process, on port 0.
pub async fn start_sim(config: connect_sim::SimConfig) -> connect_sim::SimHandle {
    connect_sim::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start connect-sim")
}

/// A job body: a start-chat job with a unique source contact.
pub fn start_job(id: &str) -> String {
    serde_json::json!({
        "jobId": id,
        "sourceContactId": format!("past-{id}"),
        "participant": {"displayName": "Ana"},
        "customerId": "CUSTOMER-SECRET-42",
        "attributes": {"tier": "gold"},
        "initialMessage": {"contentType": "text/plain", "content": "I'm back about my order"}
    })
    .to_string()
}

pub fn associate_job(id: &str) -> String {
    serde_json::json!({
        "jobId": id,
        "action": "associatePersistentContact",
        "sourceContactId": format!("past-{id}"),
        "initialContactId": format!("now-{id}"),
        "rehydrationType": "FROM_SEGMENT"
    })
    .to_string()
}

/// The real worker binary, as a child process.
pub struct Worker {
    child: Option<Child>,
    pub metrics_addr: SocketAddr,
    pub log_path: PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A throwaway directory under target/, removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The worker's environment for a test: queues, endpoints, fast settings.
pub fn worker_env(
    moto: &Moto,
    queues: &Queues,
    sim: &connect_sim::SimHandle,
) -> Vec<(String, String)> {
    [
        ("JOBS_QUEUE_URL", queues.jobs.as_str()),
        ("RESULTS_QUEUE_URL", queues.results.as_str()),
        ("DEAD_LETTER_QUEUE_URL", queues.dlq.as_str()),
        ("CONNECT_INSTANCE_ID", "inst-1"),
        ("CONNECT_CONTACT_FLOW_ID", "flow-1"),
        ("AWS_ENDPOINT_URL_SQS", moto.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", &moto.task_credentials().0),
        ("AWS_SECRET_ACCESS_KEY", &moto.task_credentials().1),
        ("AWS_ENDPOINT_URL_CONNECT", &sim.endpoint_url()),
        ("START_CHAT_RATE", "50"),
        ("START_CHAT_BURST", "10"),
        ("ASSOCIATE_RATE", "50"),
        ("ASSOCIATE_BURST", "10"),
        ("SHUTDOWN_GRACE_SECONDS", "10"),
        ("LOG_FORMAT", "json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

pub fn worker_binary() -> &'static str {
    env!("CARGO_BIN_EXE_resume-chat-worker")
}

impl Worker {
    pub fn start(env: &[(String, String)]) -> Worker {
        Self::start_with_args(env, &[])
    }

    pub fn start_with_args(env: &[(String, String)], args: &[&str]) -> Worker {
        let dir = repo_root().join("target/test-tmp").join(format!(
            "worker-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let log_path = dir.join("worker.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let port = free_port();
        let metrics_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut cmd = Command::new(worker_binary());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", REGION)
            .env("METRICS_ADDR", metrics_addr.to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start worker");
        Worker {
            child: Some(child),
            metrics_addr,
            log_path,
            _dir: tempdir::Dir(dir),
        }
    }

    /// Waits until /healthz answers.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.get("/healthz").map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "worker not healthy in 20 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.metrics_addr.to_string(), path)
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one sample, e.g. `resume_chat_jobs_received_total` or
    /// `resume_chat_connect_calls_total{operation="StartChatContact",code="OK"}`.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status();
        }
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Finds `series` (name with exact label set as printed) in Prometheus text; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    let (name, labels) = match series.find('{') {
        Some(i) => (&series[..i], Some(&series[i + 1..series.len() - 1])),
        None => (series, None),
    };
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = match key.find('{') {
            Some(i) => (&key[..i], &key[i + 1..key.len() - 1]),
            None => (key, ""),
        };
        if n != name {
            continue;
        }
        let matches = match labels {
            None => true,
            Some(want) => want
                .split(',')
                .all(|pair| l.split(',').any(|have| have == pair)),
        };
        if matches {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}
