//! `healthcheck`: a minimal HTTP/1.0 GET of `/healthz` on METRICS_ADDR, for the ECS container
//! health check (the distroless image has no curl). A wildcard bind address is probed on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CliError;
use crate::config::{ConfigError, parse_addr};

pub async fn check(metrics_addr: &str) -> Result<ExitCode, CliError> {
    let mut addr = parse_addr(metrics_addr).ok_or_else(|| ConfigError {
        setting: "METRICS_ADDR",
        problem: format!("must be host:port, got {metrics_addr:?}"),
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = Vec::new();
        stream.take(64).read_to_end(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(head)) if head.starts_with(b"HTTP/1.0 200") || head.starts_with(b"HTTP/1.1 200") => {
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(head)) => Err(CliError::Failed(format!(
            "unhealthy: {}",
            String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or_default())
        ))),
        Ok(Err(e)) => Err(CliError::Failed(format!("unhealthy: {addr}: {e}"))),
        Err(_) => Err(CliError::Failed(format!(
            "unhealthy: {addr} did not answer within 3 s"
        ))),
    }
}
