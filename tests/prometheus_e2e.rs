//! End-to-end metrics: a real Prometheus server scrapes a running worker, and the test reads the
//! worker's series back through Prometheus' HTTP API, as a dashboard or an alert would.
//!
//! Setup: moto's SQS, connect-sim and the worker binary as in `worker_e2e.rs`, plus our own
//! Prometheus (`PROMETHEUS_BIN`, else `/usr/bin/prometheus`, else `prometheus` on PATH; the
//! README's test command installs Debian's package through `scripts/prometheus.sh`) on a free
//! loopback port, with a throwaway config and TSDB directory. It never uses a system Prometheus
//! on :9090 that installing the package may have started. The config scrapes the worker's
//! METRICS_ADDR every second as `job="resume-chat-worker"` (the job name the alerts and the
//! dashboard select) and loads deploy/prometheus/rules/, the recording group evaluated every
//! second instead of every 30 s so the test sees it evaluated.
//!
//! Checks: the target is up, the job counters reach exactly the number of jobs sent, and every
//! recording and alerting rule from deploy/ is loaded and evaluates without error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const START_JOBS: usize = 5;
const ASSOCIATE_JOBS: usize = 1;
const WAIT: Duration = Duration::from_secs(60);

/// The Prometheus binary, or a failure that says how to get it.
fn prometheus_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "PROMETHEUS_BIN={} does not exist: unset it, or run the test setup (scripts/prometheus.sh prints the path)",
            p.display()
        );
        return p;
    }
    let debian = PathBuf::from("/usr/bin/prometheus");
    if debian.is_file() {
        return debian;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file());
    match on_path {
        Some(p) => p,
        None => panic!(
            "prometheus not found (PROMETHEUS_BIN, /usr/bin/prometheus, PATH): run the test setup, \
             scripts/prometheus.sh (scripts/test.sh, the README's test command, runs it), which \
             installs Debian's prometheus package"
        ),
    }
}

/// One sample of an instant-query result: its labels and value.
#[derive(Debug, Clone)]
struct Sample {
    labels: serde_json::Map<String, serde_json::Value>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).and_then(|v| v.as_str()).unwrap_or("")
    }
}

/// Our own Prometheus server, killed and its directory removed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Prometheus {
    fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = repo_root().join("target/test-tmp").join(format!(
            "prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let rules = repo_root().join("deploy/prometheus/rules");
        // Same rules; the recording group is evaluated every second instead of every 30 s.
        let recording = std::fs::read_to_string(rules.join("recording.yml"))
            .expect("recording rules")
            .replace("interval: 30s", "interval: 1s");
        std::fs::write(dir.join("recording.yml"), recording).expect("write recording rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {recording}\n  - {alerts}\n\
             scrape_configs:\n  - job_name: resume-chat-worker\n    static_configs:\n      - targets: [\"{target}\"]\n",
            recording = dir.join("recording.yml").display(),
            alerts = rules.join("alerts.yml").display(),
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut server = Prometheus { child, addr, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while http_get(&server.addr, "/-/ready").map(|r| r.0) != Some(200) {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", server.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus not ready in 30 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` → the `data` member of a successful answer.
    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (status, body) = http_get(&self.addr, &format!("/api/v1/{path}"))?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && json["status"] == "success").then(|| json["data"].clone())
    }

    /// An instant query; `None` when Prometheus did not answer.
    fn query(&self, promql: &str) -> Option<Vec<Sample>> {
        let data = self.api(&format!("query?query={}", percent_encode(promql)))?;
        let samples = data["result"]
            .as_array()?
            .iter()
            .filter_map(|r| {
                Some(Sample {
                    labels: r["metric"].as_object()?.clone(),
                    value: r["value"][1].as_str()?.parse().ok()?,
                })
            })
            .collect();
        Some(samples)
    }

    /// Sum of the values of `promql`'s result (0 when it has no series yet).
    fn total(&self, promql: &str) -> f64 {
        self.query(promql)
            .unwrap_or_default()
            .iter()
            .map(|s| s.value)
            .sum()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for a query string).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` every 500 ms until it returns `Ok`, or returns the last `Err` after `timeout`.
async fn until<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if tokio::time::Instant::now() >= deadline => panic!("timed out: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Number of lines of a rule file that start a rule of `kind` (`record` or `alert`).
fn rules_in(file: &str, kind: &str) -> usize {
    let text = std::fs::read_to_string(repo_root().join("deploy/prometheus/rules").join(file))
        .expect("rule file");
    let prefix = format!("- {kind}:");
    text.lines()
        .filter(|l| l.trim_start().starts_with(&prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_worker_and_serves_its_series_and_rules() {
    let binary = prometheus_binary();
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    worker.wait_healthy();
    let target = worker.metrics_addr.to_string();
    let prometheus = Prometheus::start(&binary, &target);

    // The target is up under the job name the alerts and the dashboard select.
    let up = until(WAIT, || {
        let samples = prometheus
            .query(r#"up{job="resume-chat-worker"}"#)
            .unwrap_or_default();
        match samples.as_slice() {
            [s] if s.value == 1.0 => Ok(s.clone()),
            other => Err(format!(
                "up = {other:?}\nprometheus log:\n{}",
                prometheus.log()
            )),
        }
    })
    .await;
    assert_eq!(up.label("instance"), target);

    // Two waves, each seen by Prometheus: the counters then rise between scrapes, which rate()
    // (and so the recording rules) needs; a series first scraped at its final value has rate 0.
    let mut jobs: Vec<String> = (0..START_JOBS)
        .map(|i| start_job(&format!("prom-{i}")))
        .collect();
    jobs.extend((0..ASSOCIATE_JOBS).map(|i| associate_job(&format!("prom-assoc-{i}"))));
    let (first, second) = jobs.split_at(2);
    let mut sent_so_far = 0.0;
    for wave in [first, second] {
        queues.send_jobs(wave).await;
        let results = queues.results(wave.len(), WAIT).await;
        assert_eq!(results.len(), wave.len(), "log:\n{}", worker.log());
        assert!(
            results.iter().all(|r| r.status() == "succeeded"),
            "{results:#?}"
        );
        // A job is counted as completed after its delete, which follows the published result:
        // wait for the worker's own counter before comparing Prometheus with it.
        sent_so_far += wave.len() as f64;
        let done = sent_so_far;
        until(WAIT, || {
            match worker.metric("resume_chat_jobs_completed_total") {
                v if v == done => Ok(()),
                v => Err(format!(
                    "the worker has {v} completed jobs, expected {done}"
                )),
            }
        })
        .await;
        until(WAIT, || {
            match prometheus.total("resume_chat_jobs_completed_total") {
                v if v == done => Ok(()),
                v => Err(format!(
                    "Prometheus has {v} completed jobs, the worker {done}"
                )),
            }
        })
        .await;
    }

    // The counters reach exactly what was done (no more jobs are coming).
    let sent = jobs.len() as f64;
    let completed = until(WAIT, || {
        let samples = prometheus
            .query("resume_chat_jobs_completed_total")
            .unwrap_or_default();
        let succeeded: f64 = samples
            .iter()
            .filter(|s| s.label("status") == "succeeded")
            .map(|s| s.value)
            .sum();
        if succeeded == sent {
            Ok(samples)
        } else {
            Err(format!(
                "succeeded = {succeeded}, want {sent}; series {samples:?}"
            ))
        }
    })
    .await;
    for s in &completed {
        assert_eq!(s.label("job"), "resume-chat-worker", "{s:?}");
        assert_eq!(s.label("instance"), target, "{s:?}");
    }
    let start_ok = r#"resume_chat_connect_calls_total{operation="StartChatContact",code="OK"}"#;
    until(WAIT, || match prometheus.total(start_ok) {
        v if v == START_JOBS as f64 => Ok(()),
        v => Err(format!("{start_ok} = {v}, want {START_JOBS}")),
    })
    .await;
    // Prometheus holds what the worker itself reports.
    assert_eq!(worker.metric(start_ok), START_JOBS as f64);
    // Every job was received and deleted by SQS requests the worker counts by operation.
    for op in ["ReceiveMessage", "DeleteMessageBatch", "SendMessageBatch"] {
        let series = format!(r#"resume_chat_sqs_requests_total{{operation="{op}"}}"#);
        until(WAIT, || match prometheus.total(&series) {
            v if v >= 1.0 => Ok(()),
            v => Err(format!("{series} = {v}, want at least 1")),
        })
        .await;
    }
    assert_eq!(
        worker.metric(r#"resume_chat_jobs_completed_total{status="succeeded",code="none"}"#),
        sent
    );

    // Every rule from deploy/ is loaded and has been evaluated without error.
    let expected_groups = [
        (
            "resume-chat-worker.recording",
            rules_in("recording.yml", "record"),
        ),
        ("resume-chat-worker.alerts", rules_in("alerts.yml", "alert")),
    ];
    until(WAIT, || {
        let data = prometheus
            .api("rules")
            .ok_or_else(|| "no answer from /api/v1/rules".to_owned())?;
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        for (name, count) in expected_groups {
            let group = groups
                .iter()
                .find(|g| g["name"] == name)
                .ok_or_else(|| format!("group {name} not loaded: {data}"))?;
            let rules = group["rules"].as_array().cloned().unwrap_or_default();
            if rules.len() != count {
                return Err(format!("group {name}: {} rules, want {count}", rules.len()));
            }
            if let Some(bad) = rules.iter().find(|r| r["health"] != "ok") {
                return Err(format!("group {name}: rule not (yet) healthy: {bad}"));
            }
        }
        Ok(())
    })
    .await;
    // A recording rule computed from the scraped counters.
    let recorded = r#"job_status_code:resume_chat_jobs_completed:rate5m{job="resume-chat-worker",status="succeeded"}"#;
    until(WAIT, || match prometheus.total(recorded) {
        v if v > 0.0 => Ok(()),
        v => Err(format!("{recorded} = {v}")),
    })
    .await;
}
