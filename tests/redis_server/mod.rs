//! A throwaway `redis-server` for the fleet limiter tests: its own process on a free loopback
//! port, no persistence (`--save '' --appendonly no`), killed on drop. Never the system Redis that
//! installing Debian's package may have started on 6379.
//!
//! The binary: `$REDIS_SERVER`, else /usr/bin/redis-server, else `redis-server` on PATH; when
//! there is none the test fails and says to run `scripts/redis.sh` (the test command does).
//! `redis-cli` (Debian's redis-tools, a dependency of the redis-server package) is taken from
//! the same directory, else PATH.
//!
//! Modes, as ElastiCache runs them: plain ([`RedisServer::start`]), TLS only with a CA this
//! helper generates with the `openssl` CLI ([`RedisServer::start_tls`], [`TestCa`]), an ACL user
//! with a password and the default user off ([`RedisServer::start_acl`]), and a three-primary
//! cluster made by `redis-cli --cluster create` ([`RedisCluster::start`]).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let usr = PathBuf::from("/usr/bin/redis-server");
    if usr.exists() {
        return usr;
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("redis-server"))
            .find(|p| p.exists())
    }) {
        return p;
    }
    panic!(
        "redis-server not found: run scripts/redis.sh (it installs Debian's redis-server package; the test command runs it) or set REDIS_SERVER"
    );
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn cli_binary() -> PathBuf {
    let sibling = binary().with_file_name("redis-cli");
    if sibling.exists() {
        return sibling;
    }
    PathBuf::from("redis-cli")
}

/// A directory under target/test-tmp, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-tmp")
            .join(format!("{what}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, made with the
/// `openssl` CLI for one test.
pub struct TestCa {
    pub dir: TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = TempDir::new("ca");
        let d = dir.0.display().to_string();
        let script = format!(
            r#"set -e
cd '{d}'
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
  -days 2 -subj /CN=resume-chat-worker-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
  -subj /CN=localhost
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
  -days 2 -extfile ext.cnf
"#
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("run openssl (the openssl CLI is needed for the TLS tests)");
        assert!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestCa { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.0.join(file).display().to_string()
    }

    /// The CA certificate, PEM (what `REDIS_CA_FILE` points at).
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.crt")).expect("ca.crt")
    }
}

/// How `redis-cli` reaches a server.
#[derive(Clone, Default)]
struct CliAuth {
    tls_ca: Option<String>,
    user: Option<(String, String)>,
}

/// One redis-server process.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    auth: CliAuth,
}

/// `--user` directives: the default user off, `user` with exactly the fleet limiter's commands,
/// and `admin` (password `admin-pass`) for the test's own `redis-cli`.
fn acl_args(user: &str, password: &str) -> Vec<String> {
    let mut args = Vec::new();
    for directive in [
        "default off".to_owned(),
        format!(
            "{user} on >{password} ~test:* ~resume-chat-worker:* -@all +evalsha +script|load +get +set +time +ping +info"
        ),
        "admin on >admin-pass ~* &* +@all".to_owned(),
    ] {
        args.push("--user".to_owned());
        args.extend(directive.split(' ').map(str::to_owned));
    }
    args
}

/// The arguments every test server gets: loopback, no persistence.
fn base_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` and waits until it answers PING.
    pub fn start_on(port: u16) -> RedisServer {
        Self::spawn(port, base_args(port), CliAuth::default())
    }

    /// TLS only (no plain port), the server certificate from `ca`; clients need no certificate
    /// (as ElastiCache in transit encryption).
    pub fn start_tls(ca: &TestCa) -> RedisServer {
        Self::start_secure(Some(ca), None)
    }

    /// [`RedisServer::start_acl`]'s users on [`RedisServer::start_tls`]'s TLS port.
    pub fn start_tls_acl(ca: &TestCa, user: &str, password: &str) -> RedisServer {
        Self::start_secure(Some(ca), Some((user, password)))
    }

    fn start_secure(ca: Option<&TestCa>, acl: Option<(&str, &str)>) -> RedisServer {
        let Some(ca) = ca else {
            let (user, password) = acl.expect("TLS or ACL");
            return Self::start_acl(user, password);
        };
        let port = free_port();
        let mut args = base_args(0);
        if let Some((user, password)) = acl {
            args.extend(acl_args(user, password));
        }
        args.extend(
            [
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &ca.path("server.crt"),
                "--tls-key-file",
                &ca.path("server.key"),
                "--tls-ca-cert-file",
                &ca.path("ca.crt"),
                "--tls-auth-clients",
                "no",
            ]
            .into_iter()
            .map(str::to_owned),
        );
        let auth = CliAuth {
            tls_ca: Some(ca.path("ca.crt")),
            user: acl.map(|_| ("admin".to_owned(), "admin-pass".to_owned())),
        };
        Self::spawn(port, args, auth)
    }

    /// The default user off; `user` with `password` may run exactly what the fleet limiter
    /// needs (docs/operations.md lists it) on keys under `test:` and `resume-chat-worker:`.
    pub fn start_acl(user: &str, password: &str) -> RedisServer {
        let port = free_port();
        let mut args = base_args(port);
        args.extend(acl_args(user, password));
        let auth = CliAuth {
            tls_ca: None,
            user: Some(("admin".to_owned(), "admin-pass".to_owned())),
        };
        Self::spawn(port, args, auth)
    }

    fn spawn(port: u16, args: Vec<String>, auth: CliAuth) -> RedisServer {
        let child = Command::new(binary())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = RedisServer {
            child: Some(child),
            port,
            auth,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `redis-cli` with this server's TLS and admin credentials; its stdout, trimmed (`None`
    /// when it could not run).
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new(cli_binary());
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(ca) = &self.auth.tls_ca {
            cmd.args(["--tls", "--cacert", ca]);
        }
        if let Some((user, pass)) = &self.auth.user {
            cmd.args(["--user", user, "--pass", pass, "--no-auth-warning"]);
        }
        let out = cmd.args(args).stderr(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One inline command; the first line of the reply.
    pub fn command(&self, line: &str) -> Option<String> {
        let mut s = TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", self.port).parse().ok()?,
            Duration::from_secs(1),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "{line}\r\n").ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        text.lines().next().map(str::to_owned)
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status();
        }
    }

    /// Kills the server (the port is free again).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three primaries (no replicas) with cluster mode on, slots spread by `redis-cli --cluster
/// create`, as a node-based ElastiCache cluster with cluster mode enabled.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = TempDir::new("cluster");
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| {
                let port = free_port();
                let mut args = base_args(port);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{i}-{port}.conf"),
                        "--cluster-node-timeout",
                        "5000",
                        "--dir",
                        &dir.0.display().to_string(),
                    ]
                    .into_iter()
                    .map(str::to_owned),
                );
                RedisServer::spawn(port, args, CliAuth::default())
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(cli_binary())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes.iter().all(|n| {
            n.cli(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        }) {
            assert!(Instant::now() < deadline, "cluster not ok within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes, _dir: dir }
    }

    /// `key`'s slot.
    pub fn slot(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.parse().ok())
            .expect("keyslot")
    }

    /// The index of the node that owns `slot`, from `CLUSTER NODES` (`id addr flags master ping
    /// pong epoch state range...`).
    pub fn owner(&self, slot: u16) -> usize {
        let nodes = self.nodes[0]
            .cli(&["CLUSTER", "NODES"])
            .expect("cluster nodes");
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let owns = fields.iter().skip(8).any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if owns {
                let port: u16 = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .expect("port");
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port)
                    .expect("node");
            }
        }
        panic!("no owner of slot {slot}:\n{nodes}");
    }

    pub fn node_id(&self, i: usize) -> String {
        self.nodes[i]
            .cli(&["CLUSTER", "MYID"])
            .expect("cluster myid")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped process ignores nothing but SIGKILL; resume it first anyway for a clean exit.
        self.signal("CONT");
        self.kill();
    }
}
