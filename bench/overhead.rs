//! Overhead benchmark: the worker's own CPU and memory per job, without moto's cost.
//!
//! Mechanism: runs the library's `pipeline::Worker` in this process with the in-memory queue
//! (`queue::memory::MemoryQueue`, the same `MessageQueue` trait as SQS) and the real
//! `connect::aws::AwsConnect` client (aws-sdk-connect over HTTP) against a `connect-sim` child
//! process with no effective quota. Every job is enqueued first; the clock starts when the worker
//! starts and stops when the last result is published. CPU is this process's utime + stime
//! (from /proc/self/stat, clock ticks), so the simulator's own CPU (a separate process) is not
//! counted; the in-memory queue's bookkeeping is (it is small and stands in for the SQS client).
//! Peak RSS is VmHWM from /proc/self/status.
//!
//! Logs are on (JSON to stderr, as the daemon's): redirect stderr to /dev/null.
//! Usage: cargo run --release --example overhead -- [JOBS] [CONNECT_SIM_BIN] [RATE] 2>/dev/null
//! (defaults: 5000, target/release/connect-sim, no quota). With RATE, the simulator's quota and
//! START_CHAT_RATE are both RATE calls/s (burst = RATE): the cost of a worker held back by the quota. Prints one JSON object on stdout:
//! {"jobs", "succeeded", "seconds", "cpu_seconds", "cpu_ms_per_job", "cpu_seconds_per_1000_jobs",
//!  "peak_rss_mib", "rss_before_mib", "sim_ok", "sim_duplicate_source_chats"}.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resume_chat_worker::config::RawSettings;
use resume_chat_worker::connect::aws::AwsConnect;
use resume_chat_worker::http::Health;
use resume_chat_worker::metrics::Metrics;
use resume_chat_worker::pipeline::Worker;
use resume_chat_worker::queue::memory::MemoryQueue;
use tokio_util::sync::CancellationToken;

const JOBS_URL: &str = "http://memory.local/jobs";
const RESULTS_URL: &str = "http://memory.local/results";

/// The connect-sim child, killed on drop.
struct Sim {
    child: Child,
    url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(bin: &str, rate: &str) -> Result<Sim, String> {
    let mut child = Command::new(bin)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--start-chat-rate",
            rate,
            "--start-chat-burst",
            rate,
        ])
        .args(["--max-active-chats", "1000000", "--chat-seconds", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .trim()
        .strip_prefix("connect-sim listening on ")
        .ok_or_else(|| format!("unexpected line {line:?}"))?
        .to_owned();
    Ok(Sim { child, url })
}

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux we run on; no libc dependency for one constant.
    100.0
}

/// A `Vm*` line of /proc/self/status, in MiB.
fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// GET on the simulator: the JSON body.
fn sim_stats(url: &str) -> serde_json::Value {
    let addr = url.trim_start_matches("http://");
    let Ok(mut s) = TcpStream::connect(addr) else {
        return serde_json::Value::Null;
    };
    let _ = write!(s, "GET /_sim/stats HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let bin = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/connect-sim").to_owned()
    });
    let rate = args
        .next()
        .filter(|r| r.parse::<f64>().is_ok_and(|r| r > 0.0));
    let sim = start_sim(&bin, rate.as_deref().unwrap_or("100000"))?;

    let raw = RawSettings {
        jobs_queue_url: Some(JOBS_URL.to_owned()),
        results_queue_url: Some(RESULTS_URL.to_owned()),
        connect_instance_id: Some("inst-1".to_owned()),
        connect_contact_flow_id: Some("flow-1".to_owned()),
        start_chat_rate: Some(rate.clone().unwrap_or_else(|| "10000".to_owned())),
        start_chat_burst: Some(rate.clone().map_or_else(
            || "10000".to_owned(),
            |r| r.split('.').next().unwrap_or("1").to_owned(),
        )),
        max_in_flight: Some("64".to_owned()),
        ..RawSettings::default()
    };
    let settings = raw.validate().map_err(|e| e.to_string())?;
    // The daemon's own logging (one JSON line per job to stderr) is part of its cost.
    resume_chat_worker::telemetry::init(settings.log_format);
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_connect::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .endpoint_url(&sim.url)
        .load()
        .await;
    let connect = Arc::new(AwsConnect::new(&shared, settings.connect_timeout));
    let queue = Arc::new(MemoryQueue::new());
    for n in 0..jobs {
        queue.push(JOBS_URL, format!(r#"{{"jobId":"bench-{n}","sourceContactId":"src-{n}","participant":{{"displayName":"B"}}}}"#));
    }
    let rss_before = status_mib("VmRSS:");
    let stop = CancellationToken::new();
    let worker = Worker::new(
        settings,
        queue.clone(),
        connect,
        Metrics::new(),
        Arc::new(Health::new(Duration::from_secs(90))),
        stop.clone(),
    );

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let run = tokio::spawn(worker.run());
    let deadline = t0 + Duration::from_secs(600);
    while queue.len(RESULTS_URL) < jobs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    stop.cancel();
    let _ = run.await;

    let results = queue.bodies(RESULTS_URL);
    let succeeded = results
        .iter()
        .filter(|b| b.contains(r#""status":"succeeded""#))
        .count();
    let stats = sim_stats(&sim.url);
    let out = serde_json::json!({
        "jobs": jobs,
        "rate": rate,
        "results": results.len(),
        "succeeded": succeeded,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "cpu_ms_per_job": cpu * 1000.0 / jobs.max(1) as f64,
        "cpu_seconds_per_1000_jobs": cpu * 1000.0 / jobs.max(1) as f64,
        "peak_rss_mib": status_mib("VmHWM:"),
        "rss_before_mib": rss_before,
        "sim_ok": stats["operations"]["StartChatContact"]["ok"],
        "sim_duplicate_source_chats": stats["duplicate_source_chats"],
    });
    println!("{out}");
    Ok(())
}
