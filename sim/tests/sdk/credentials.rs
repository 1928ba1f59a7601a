//! Credential outages (src/credentials.rs): the flag, the control endpoint and what the SDK sees.

use aws_sdk_connect::error::ProvideErrorMetadata;
use connect_sim::{CredentialFault, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// One HTTP/1.1 request with a JSON body; returns (status code, body).
async fn send(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn each_fault_is_the_error_the_sdk_sees_until_it_is_switched_off() {
    let sim = sim(SimConfig {
        credential_fault: Some(CredentialFault::InvalidSignature),
        ..roomy()
    })
    .await;
    let c = client(&sim);
    for (fault, code) in [
        (None, "InvalidSignatureException"),
        (Some("expired-token"), "ExpiredTokenException"),
        (Some("unrecognized-client"), "UnrecognizedClientException"),
    ] {
        if let Some(f) = fault {
            let (status, _) = send(
                sim.addr(),
                "PUT",
                "/_sim/credentials",
                &format!(r#"{{"fault":"{f}"}}"#),
            )
            .await;
            assert_eq!(status, 204);
        }
        let err = start_chat(&c, "s").send().await.expect_err(code);
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
        assert_eq!(err.code(), Some(code), "{err:?}");
        let err = associate(&c, "a", "b").send().await.expect_err(code);
        assert_eq!(err.code(), Some(code));
    }
    // Refused before anything counts: no call reached the account.
    assert_eq!(sim.stats().operations.start_chat_contact.ok, 0);
    let (_, status) = send(sim.addr(), "GET", "/_sim/credentials", "").await;
    assert!(
        status.contains(r#""fault":"unrecognized-client""#),
        "{status}"
    );
    assert!(status.contains(r#""refused":6"#), "{status}");

    let (code, _) = send(sim.addr(), "PUT", "/_sim/credentials", r#"{"fault":null}"#).await;
    assert_eq!(code, 204);
    start_chat(&c, "s").send().await.expect("works again");
    let (code, body) = send(
        sim.addr(),
        "PUT",
        "/_sim/credentials",
        r#"{"fault":"nope"}"#,
    )
    .await;
    assert_eq!(code, 400, "{body}");
}
