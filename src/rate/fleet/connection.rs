//! How the fleet limiter reaches Redis or Valkey: plain or TLS, with or without a user and
//! password, one primary or a cluster. The limiter above only sees [`RedisConn`].
//!
//! # Protocol
//!
//! - `rediss://` is TLS through rustls (the aws-lc-rs provider the AWS SDK already links). The
//!   server certificate is checked against the system roots, or against `REDIS_CA_FILE` only when
//!   that is set (like `redis-cli --cacert`). There is no way to turn the check off.
//! - A user and password come from the URL (`rediss://user:password@host`); `REDIS_PASSWORD`
//!   supplies the password instead, so that ECS can inject it from Secrets Manager and it never
//!   appears in the task definition. The redis crate sends `AUTH user password` (or `HELLO`) when
//!   it connects; a refusal fails that connection attempt like any other error, and the link
//!   falls back to local control with a log line that names the cause.
//! - Cluster mode (`REDIS_CLUSTER`): ElastiCache Serverless and cluster-mode-enabled clusters
//!   split the key space into slots owned by different shards and answer `MOVED`/`ASK` for a key
//!   that lives elsewhere. In cluster mode the connection is the redis crate's cluster
//!   connection: it reads the slot map (`CLUSTER SLOTS`), sends each `EVALSHA` to the shard of its
//!   one key, follows `MOVED` (refreshing the map) and `ASK` (one `ASKING` + retry on the target)
//!   during resharding, and loads the script on every primary on `NOSCRIPT`. The GCRA script
//!   touches exactly one key, so it is valid in cluster mode as is. `auto` (the default) connects
//!   to the URL's node and asks `INFO cluster` once; the answer is kept for reconnections.
//!
//! Each attempt is bounded by the caller's timeout; nothing here retries on its own beyond the
//! cluster connection's redirects.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, TlsCertificates, Value,
};

use crate::config::ClusterMode;

/// A connection to one primary or to a cluster; cheap to clone (both multiplex one socket per
/// node).
#[derive(Clone)]
pub enum RedisConn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// What to connect to and how; see the module doc.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `redis://` or `rediss://`, possibly with `user:password@` (never logged).
    pub url: String,
    /// Overrides the URL's password (`REDIS_PASSWORD`).
    pub password: Option<String>,
    /// PEM CA bundle trusted instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub cluster: ClusterMode,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// The URL with any password replaced by `***` (the whole URL hidden if it does not parse).
pub fn redact(url: &str) -> String {
    match redis::parse_redis_url(url) {
        Some(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        None => "<unparsable URL>".to_owned(),
    }
}

/// Makes connections; the URL, TLS roots and password are checked once, in [`Connector::new`].
pub struct Connector {
    single: Client,
    cluster: ClusterClient,
    mode: ClusterMode,
    /// `auto`'s answer, once known.
    detected: Mutex<Option<bool>>,
}

impl Connector {
    pub fn new(options: &ConnectOptions, timeout: Duration) -> Result<Self, RedisError> {
        let mut info: ConnectionInfo = options.url.as_str().into_connection_info()?;
        if let Some(p) = &options.password {
            let redis = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(redis);
        }
        let certs = || TlsCertificates {
            client_tls: None,
            root_cert: options.ca_pem.clone(),
        };
        let single = match &options.ca_pem {
            Some(_) => Client::build_with_tls(info.clone(), certs())?,
            None => Client::open(info.clone())?,
        };
        let mut builder = ClusterClientBuilder::new(vec![info])
            .connection_timeout(timeout)
            .response_timeout(timeout)
            // Redirects (MOVED/ASK) and reconnects to a node within one call; the call timeout
            // bounds them all.
            .retries(3);
        if options.ca_pem.is_some() {
            builder = builder.certs(certs());
        }
        Ok(Connector {
            single,
            cluster: builder.build()?,
            mode: options.cluster,
            detected: Mutex::new(None),
        })
    }

    /// One connection attempt (the caller bounds it with a timeout).
    pub async fn connect(&self, timeout: Duration) -> Result<RedisConn, RedisError> {
        let cluster = match self.mode {
            ClusterMode::On => true,
            ClusterMode::Off => false,
            ClusterMode::Auto => match self.detected() {
                Some(known) => known,
                None => {
                    let mut single = self.single(timeout).await?;
                    let known = is_cluster(&mut single).await?;
                    tracing::info!(
                        cluster_mode = known,
                        "fleet limiter: REDIS_CLUSTER=auto asked the server"
                    );
                    *lock(&self.detected) = Some(known);
                    if !known {
                        return Ok(RedisConn::Single(single));
                    }
                    true
                }
            },
        };
        if cluster {
            Ok(RedisConn::Cluster(
                self.cluster.get_async_connection().await?,
            ))
        } else {
            Ok(RedisConn::Single(self.single(timeout).await?))
        }
    }

    fn detected(&self) -> Option<bool> {
        *lock(&self.detected)
    }

    async fn single(&self, timeout: Duration) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        self.single
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// `INFO cluster` says `cluster_enabled:1` on a cluster-mode node. A server that refuses the
/// command (an ACL user without `+info`) is taken as no cluster mode; should it be one, its
/// `MOVED` answers say so in the log (then set `REDIS_CLUSTER=on`).
async fn is_cluster(conn: &mut MultiplexedConnection) -> Result<bool, RedisError> {
    match redis::cmd("INFO")
        .arg("cluster")
        .query_async::<String>(conn)
        .await
    {
        Ok(info) => Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1")),
        Err(e) if e.code().is_some() && e.kind() != redis::ErrorKind::AuthenticationFailed => {
            tracing::warn!(error = %e, "fleet limiter: INFO cluster refused; assuming no cluster mode (set REDIS_CLUSTER=on if it is one)");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// What an error most likely means, for the operator reading the fallback log line.
pub fn cause(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("wrongpass") || e.contains("noauth") || e.contains("authentication") {
        "Redis refused the credentials: check the user in REDIS_URL and REDIS_PASSWORD"
    } else if e.contains("noperm") {
        "the Redis user lacks a permission: it needs EVALSHA, SCRIPT LOAD, GET, SET, TIME and PING on its keys (INFO for REDIS_CLUSTER=auto, CLUSTER SLOTS in cluster mode)"
    } else if e.contains("certificate") || e.contains("tls") || e.contains("handshake") {
        "TLS failed: check rediss:// versus redis:// and REDIS_CA_FILE"
    } else if e.contains("moved") || e.contains("crossslot") || e.contains("cluster") {
        "a cluster-mode endpoint: set REDIS_CLUSTER=on"
    } else if e.contains("timed out") || e.contains("timeout") {
        "no answer in time: check the security group and that REDIS_URL's host and port are right"
    } else if e.contains("refused") || e.contains("dns") || e.contains("resolve") {
        "cannot reach Redis: check REDIS_URL's host and port"
    } else {
        "Redis error"
    }
}

/// A poisoned lock holds plain values that stay consistent; use it as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact("rediss://u:hunter2@h:6379/0"),
            "rediss://u:***@h:6379/0"
        );
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("nope://u:hunter2@h"), "<unparsable URL>");
        let o = ConnectOptions {
            url: "rediss://u:hunter2@h:1".into(),
            password: Some("hunter3".into()),
            ca_pem: None,
            cluster: ClusterMode::Auto,
        };
        let d = format!("{o:?}");
        assert!(!d.contains("hunter2") && !d.contains("hunter3"), "{d}");
    }

    #[test]
    fn causes() {
        assert!(cause("WRONGPASS: invalid username-password pair").contains("credentials"));
        assert!(cause("invalid peer certificate: UnknownIssuer").contains("TLS"));
        assert!(cause("MOVED 1234 127.0.0.1:7001").contains("REDIS_CLUSTER"));
    }
}
