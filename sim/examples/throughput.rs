//! Throughput benchmark of connect-sim (not a test): starts the simulator in this process
//! with quotas too high to throttle, or targets one already running (`--endpoint`), then
//! fires StartChatContact calls from `--concurrency` concurrent callers for `--seconds` and
//! reports requests per second and the status codes seen. Every call carries its own
//! ClientToken and creates a chat, so the idempotency store and chat queues do real work.
//!
//! Clients:
//! - `--client raw` (default): hyper HTTP/1.1 keep-alive connections, one per caller, with a
//!   fixed SigV4-shaped Authorization header: the most load a client can put on the sim.
//! - `--client sdk`: the real aws-sdk-connect client (signing, serialization, parsing);
//!   the client side is then the bottleneck (the workspace builds aws-sdk-connect at
//!   opt-level 0 even in release).
//!
//! Run: cargo run --release -p connect-sim --example throughput -- --client raw

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use connect_sim::SimConfig;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClientKind {
    Raw,
    Sdk,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum, default_value = "raw")]
    client: ClientKind,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// host:port of a running connect-sim; absent: start one in this process.
    #[arg(long)]
    endpoint: Option<SocketAddr>,
}

/// Distinguishes this run's ClientTokens from an earlier run's against the same sim.
fn run_id() -> String {
    format!("{}-{}", std::process::id(), started_unix_ms())
}

fn started_unix_ms() -> u128 {
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    })
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    throttled: AtomicU64,
    other: AtomicU64,
}

impl Counts {
    fn add(&self, status: u16) {
        let c = match status {
            200 => &self.ok,
            429 => &self.throttled,
            _ => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let local = match args.endpoint {
        Some(_) => None,
        None => Some(
            connect_sim::start(
                SimConfig {
                    start_chat_rate: 1e9,
                    start_chat_burst: u32::MAX,
                    max_active_chats: u32::MAX,
                    chat_seconds: 1.0,
                    ..SimConfig::default()
                },
                "127.0.0.1:0".parse()?,
            )
            .await?,
        ),
    };
    let addr = match (&local, args.endpoint) {
        (Some(sim), _) => sim.addr(),
        (None, Some(addr)) => addr,
        (None, None) => return Err("no endpoint".into()),
    };
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    match args.client {
        ClientKind::Raw => {
            for worker in 0..args.concurrency {
                tasks.spawn(raw::caller(addr, worker, deadline, Arc::clone(&counts)));
            }
        }
        ClientKind::Sdk => {
            let client = sdk::client(addr);
            for worker in 0..args.concurrency {
                tasks.spawn(sdk::caller(
                    client.clone(),
                    worker,
                    deadline,
                    Arc::clone(&counts),
                ));
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            eprintln!("caller stopped: {e}");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = counts.ok.load(Ordering::Relaxed);
    let throttled = counts.throttled.load(Ordering::Relaxed);
    let other = counts.other.load(Ordering::Relaxed);
    let total = ok + throttled + other;
    println!(
        "client={:?} concurrency={} seconds={elapsed:.2} requests={total} ok={ok} 429={throttled} other={other} rps={:.0}",
        args.client,
        args.concurrency,
        total as f64 / elapsed
    );
    if let Some(sim) = local {
        let s = sim.stats();
        println!(
            "sim: ok={} chats_created={} peak_active_chats={}",
            s.operations.start_chat_contact.ok, s.chats_created, s.peak_active_chats
        );
    }
    Ok(())
}

mod raw {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/connect/aws4_request, \
                        SignedHeaders=host;x-amz-date, Signature=0000";

    pub async fn caller(
        addr: SocketAddr,
        worker: usize,
        deadline: Instant,
        counts: Arc<Counts>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let run = run_id();
        let mut i = 0u64;
        while Instant::now() < deadline {
            i += 1;
            let body = format!(
                r#"{{"InstanceId":"inst-1","ContactFlowId":"flow-1","ParticipantDetails":{{"DisplayName":"Ana"}},"ClientToken":"{run}-w{worker}-{i}","PersistentChat":{{"RehydrationType":"ENTIRE_PAST_SESSION","SourceContactId":"c-{run}-{worker}-{i}"}}}}"#
            );
            let req = hyper::Request::put("/contact/chat")
                .header("host", addr.to_string())
                .header("content-type", "application/json")
                .header("authorization", AUTH)
                .body(Full::new(Bytes::from(body)))?;
            send.ready().await?;
            let resp = send.send_request(req).await?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await?;
            counts.add(status);
        }
        Ok(())
    }
}

mod sdk {
    use super::*;
    use aws_sdk_connect::config::retry::RetryConfig;
    use aws_sdk_connect::config::{Credentials, Region};
    use aws_sdk_connect::error::SdkError;
    use aws_sdk_connect::types::{ParticipantDetails, PersistentChat, RehydrationType};

    pub fn client(addr: SocketAddr) -> aws_sdk_connect::Client {
        let conf = aws_sdk_connect::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "bench"))
            .endpoint_url(format!("http://{addr}"))
            .retry_config(RetryConfig::disabled())
            .build();
        aws_sdk_connect::Client::from_conf(conf)
    }

    pub async fn caller(
        client: aws_sdk_connect::Client,
        worker: usize,
        deadline: Instant,
        counts: Arc<Counts>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let details = ParticipantDetails::builder().display_name("Ana").build()?;
        let run = run_id();
        let mut i = 0u64;
        while Instant::now() < deadline {
            i += 1;
            let result = client
                .start_chat_contact()
                .instance_id("inst-1")
                .contact_flow_id("flow-1")
                .participant_details(details.clone())
                .client_token(format!("{run}-w{worker}-{i}"))
                .persistent_chat(
                    PersistentChat::builder()
                        .rehydration_type(RehydrationType::EntirePastSession)
                        .source_contact_id(format!("c-{run}-{worker}-{i}"))
                        .build(),
                )
                .send()
                .await;
            let status = match &result {
                Ok(_) => 200,
                Err(SdkError::ServiceError(e)) => e.raw().status().as_u16(),
                Err(_) => 0,
            };
            counts.add(status);
        }
        Ok(())
    }
}
