//! The `/_sim` endpoints over plain HTTP, unknown routes, and the CLI binary.

use std::process::Stdio;

use connect_sim::Stats;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::*;

/// One HTTP/1.1 request on a fresh connection; returns (status line, headers, body).
async fn raw(addr: std::net::SocketAddr, method: &str, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

#[tokio::test]
async fn stats_endpoint_serves_the_same_stats_and_reset_clears_them() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    start_chat(&c, "s").send().await.expect("200");
    let (status, headers, body) = raw(sim.addr(), "GET", "/_sim/stats").await;
    assert!(status.contains("200"), "{status}");
    assert!(headers.contains("content-type: application/json"));
    let served: Stats = serde_json::from_str(&body).expect("Stats JSON");
    assert_eq!(served, sim.stats());
    assert_eq!(served.operations.start_chat_contact.ok, 1);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["operations"]["StartChatContact"]["ok"], 1);
    assert_eq!(v["timeline"][0]["StartChatContact"]["accepted"], 1);

    let (status, _, _) = raw(sim.addr(), "POST", "/_sim/reset").await;
    assert!(status.contains("204"), "{status}");
    let s = sim.stats();
    // A reset starts a new epoch (the records' time base); everything else is zero again.
    assert!(s.epoch_unix_ms > 0);
    assert_eq!(
        Stats {
            epoch_unix_ms: 0,
            ..s
        },
        Stats::default()
    );
}

#[tokio::test]
async fn unknown_routes_are_404_with_an_error_type() {
    let sim = sim(roomy()).await;
    let (status, headers, body) = raw(sim.addr(), "POST", "/contact/nope").await;
    assert!(status.contains("404"), "{status}");
    assert!(
        headers.contains("x-amzn-errortype: unknownoperationexception"),
        "{headers}"
    );
    assert!(body.contains("message"));
}

#[tokio::test]
async fn cli_prints_the_listening_line_and_serves() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_connect-sim"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--start-chat-burst",
            "1",
            "--start-chat-rate",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn connect-sim");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("read line");
    let url = line
        .trim_end()
        .strip_prefix("connect-sim listening on http://127.0.0.1:")
        .map(|port| format!("http://127.0.0.1:{port}"))
        .expect("the documented listening line");
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().expect("addr");
    let (status, _, body) = raw(addr, "GET", "/_sim/stats").await;
    assert!(status.contains("200"));
    let s: Stats = serde_json::from_str(&body).expect("Stats JSON");
    assert_eq!(s.operations.start_chat_contact.ok, 0);
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn cli_help_documents_every_flag() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_connect-sim"))
        .arg("--help")
        .output()
        .await
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--addr",
        "--start-chat-rate",
        "--start-chat-burst",
        "--associate-rate",
        "--associate-burst",
        "--max-active-chats",
        "--chat-seconds",
        "--background-rate",
        "--fail-rate",
        "--fail-after-create-ratio",
        "--latency-ms",
        "--drop-rate",
        "--instance-id",
        "--missing-contact-prefix",
        "--idempotency-ttl-seconds",
        "--seed",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("127.0.0.1:8500"));
}
