//! The fleet limiter (src/rate/fleet.rs) against a real redis-server of its own: the GCRA's
//! bound (burst, then the rate), sharing between two links (two processes' worth), and the
//! fallback to local control when Redis dies or hangs, and back when it returns.
//!
//! The sharing check runs in every mode ElastiCache offers: plain, TLS (a CA the test makes),
//! an ACL user with a password (in the URL or from `REDIS_PASSWORD`), and a three-primary cluster
//! (`redis-cli --cluster create`), where the key's slot is also moved mid-run so that the limiter
//! must follow `ASK` and then `MOVED`. Wrong credentials or a wrong trust root fall back to local
//! control with a log line that names the cause.
//!
//! Bounds are the GCRA's own guarantee, measured so that slowness can never fail them: every
//! grant happened (in Redis' time) after its `acquire` started and before it returned, so the
//! grants whose acquires lie within [a, b] number at most `burst + rate × (b - a)`.

mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use redis_server::{RedisCluster, RedisServer, TestCa, free_port};
use resume_chat_worker::config::ClusterMode;
use resume_chat_worker::rate::fleet::{
    FleetLimiter, FleetLink, FleetMetrics, FleetOptions, FleetState,
};
use tokio::time::Instant;

fn link(url: &str, cooldown: Duration) -> Arc<FleetLink> {
    let mut options = FleetOptions::new(url, "test");
    options.cooldown = cooldown;
    link_with(options)
}

fn link_with(options: FleetOptions) -> Arc<FleetLink> {
    Arc::new(FleetLink::new(options, FleetMetrics::unregistered()).expect("valid URL"))
}

/// One grant: when its acquire started and when it returned.
#[derive(Clone, Copy, Debug)]
struct Grant {
    asked: Instant,
    got: Instant,
}

/// `tasks` concurrent callers take `per_task` grants each from `limiter`.
async fn take(limiter: Arc<FleetLimiter>, tasks: usize, per_task: usize) -> Vec<Grant> {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let l = limiter.clone();
        handles.push(tokio::spawn(async move {
            let mut grants = Vec::new();
            for _ in 0..per_task {
                let asked = Instant::now();
                l.acquire().await;
                grants.push(Grant {
                    asked,
                    got: Instant::now(),
                });
            }
            grants
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    all
}

/// Checks the GCRA bound on every window [asked of one grant, got of another].
fn assert_within_bound(grants: &[Grant], rate: f64, burst: u32) {
    for a in grants {
        for b in grants {
            if b.got < a.asked {
                continue;
            }
            let inside = grants
                .iter()
                .filter(|g| g.asked >= a.asked && g.got <= b.got)
                .count();
            let window = (b.got - a.asked).as_secs_f64();
            let bound = f64::from(burst) + rate * window;
            assert!(
                inside as f64 <= bound,
                "{inside} grants within {window:.3} s; the bound is {bound:.2}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_then_the_rate_never_more() {
    let redis = RedisServer::start();
    let l = link(&redis.url(), Duration::from_secs(5));
    let rate = 20.0;
    let limiter = Arc::new(FleetLimiter::new(l.clone(), "Burst", rate, 6));
    // One token of the configured 6 is kept back as a cushion.
    let burst = limiter.burst();
    assert_eq!(burst, 5);
    let start = Instant::now();
    let grants = take(limiter, 6, 8).await;
    let elapsed = start.elapsed();

    assert_eq!(l.state(), FleetState::Shared);
    assert_eq!(l.errors(), 0);
    assert_eq!(grants.len(), 48);
    // 48 grants = 5 at once + 43 at 20/s: at least 2.15 s.
    assert!(
        elapsed.as_secs_f64() >= (48.0 - 5.0) / rate,
        "48 grants in {elapsed:?}"
    );
    assert_within_bound(&grants, rate, burst);
    // The key holds the TAT and expires by itself.
    let ttl = redis.command("PTTL test:Burst").unwrap_or_default();
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap_or(-1);
    assert!(ttl > 0, "PTTL {ttl}");
}

/// The sharing check of every mode: two links (two connections, as two replicas would have) on
/// one key at 10/s, burst 3, take 15 grants each; a third link on another operation's key runs
/// alongside. Together the 30 need (30 - 2) / 10 = 2.8 s (alone, each link would need 1.3 s),
/// and no window holds more than the GCRA's bound. No Redis error on the way.
async fn assert_shared_quota(a: FleetOptions, b: FleetOptions, other: FleetOptions) {
    let (rate, burst) = (10.0, 3);
    let (la, lb, lo) = (link_with(a), link_with(b), link_with(other));
    let a = Arc::new(FleetLimiter::new(
        la.clone(),
        "StartChatContact",
        rate,
        burst,
    ));
    let b = Arc::new(FleetLimiter::new(
        lb.clone(),
        "StartChatContact",
        rate,
        burst,
    ));
    // A different operation has its own key (in a cluster, usually on another shard) and does
    // not slow these down (checked below by the bound including only the shared key's grants).
    let other = Arc::new(FleetLimiter::new(lo.clone(), "Other", rate, burst));
    let start = Instant::now();
    let (ga, gb, _) = tokio::join!(take(a, 3, 5), take(b, 3, 5), take(other, 2, 5));
    let elapsed = start.elapsed();

    for l in [&la, &lb, &lo] {
        assert_eq!(l.state(), FleetState::Shared);
        assert_eq!(l.errors(), 0);
    }
    // Configured burst 3: the GCRA's is 2.
    let burst = burst - 1;
    let all: Vec<Grant> = ga.iter().chain(gb.iter()).copied().collect();
    assert_eq!(all.len(), 30);
    assert!(
        elapsed.as_secs_f64() >= (30.0 - 2.0) / rate,
        "30 grants in {elapsed:?}"
    );
    assert_within_bound(&all, rate, burst);
}

fn options(url: &str) -> FleetOptions {
    FleetOptions::new(url, "test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_links_on_one_key_share_the_rate() {
    let redis = RedisServer::start();
    let o = options(&redis.url());
    assert_shared_quota(o.clone(), o.clone(), o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_of_the_tests_own() {
    let ca = TestCa::new();
    let redis = RedisServer::start_tls(&ca);
    let mut o = options(&format!("rediss://localhost:{}", redis.port));
    o.connect.ca_pem = Some(ca.ca_pem());
    assert_shared_quota(o.clone(), o.clone(), o.clone()).await;
    // 127.0.0.1 is in the certificate too.
    o.connect.url = format!("rediss://127.0.0.1:{}", redis.port);
    assert_shared_quota(o.clone(), o.clone(), o).await;

    // The system roots do not know the test's CA; plain redis:// cannot talk to a TLS port.
    for url in [
        format!("rediss://localhost:{}", redis.port),
        format!("redis://127.0.0.1:{}", redis.port),
    ] {
        let l = link(&url, Duration::from_secs(5));
        assert_eq!(l.check().await, FleetState::Fallback, "{url}");
        assert_eq!(l.errors(), 1, "{url}");
        // And local control goes on at once.
        let limiter = FleetLimiter::new(l.clone(), "StartChatContact", 1.0, 1);
        let waited = tokio::time::timeout(Duration::from_secs(5), limiter.acquire())
            .await
            .expect("acquire returns");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_its_password_in_the_url_or_its_own_setting() {
    let redis = RedisServer::start_acl("worker", "s3cret-Pa55");
    let o = options(&format!(
        "redis://worker:s3cret-Pa55@127.0.0.1:{}",
        redis.port
    ));
    let mut from_env = options(&format!("redis://worker@127.0.0.1:{}", redis.port));
    from_env.connect.password = Some("s3cret-Pa55".into());
    assert_shared_quota(o, from_env.clone(), from_env).await;
}

/// Collects what `tracing` writes, for one current-thread test.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_log_line_and_local_control() {
    let redis = RedisServer::start_acl("worker", "s3cret-Pa55");
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for (url, password) in [
        // Wrong password in the URL, wrong REDIS_PASSWORD, no credentials at all.
        (
            format!("redis://worker:wrong-one@127.0.0.1:{}", redis.port),
            None,
        ),
        (
            format!("redis://worker@127.0.0.1:{}", redis.port),
            Some("wrong-two"),
        ),
        (format!("redis://127.0.0.1:{}", redis.port), None),
    ] {
        let mut o = options(&url);
        o.connect.password = password.map(str::to_owned);
        let l = link_with(o);
        let limiter = FleetLimiter::new(l.clone(), "StartChatContact", 1.0, 1);
        // Local control: both acquires return at once, without a fleet slot.
        for _ in 0..2 {
            let waited = tokio::time::timeout(Duration::from_secs(5), limiter.acquire())
                .await
                .expect("acquire returns");
            assert!(waited < Duration::from_secs(2), "{waited:?}");
        }
        assert_eq!(l.state(), FleetState::Fallback, "{url}");
        assert_eq!(l.errors(), 1, "one attempt per cooldown: {url}");
    }
    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("local rate control only"))
        .collect();
    assert_eq!(warnings.len(), 3, "{log}");
    for w in &warnings {
        assert!(w.contains("WARN"), "{w}");
        assert!(
            w.contains(
                "Redis refused the credentials: check the user in REDIS_URL and REDIS_PASSWORD"
            ),
            "{w}"
        );
    }
    assert!(
        !log.contains("wrong-one") && !log.contains("wrong-two"),
        "{log}"
    );
    assert!(log.contains("redis://worker:***@127.0.0.1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_shares_the_quota_and_follows_ask_and_moved() {
    let cluster = RedisCluster::start();
    let url = |i: usize| format!("redis://127.0.0.1:{}", cluster.nodes[i].port);
    // Auto-detected through any node, and with REDIS_CLUSTER=on.
    let mut on = options(&url(1));
    on.connect.cluster = ClusterMode::On;
    assert_shared_quota(options(&url(0)), on, options(&url(2))).await;

    // Move the key's slot from its owner to another node mid-run: the link must follow ASK
    // while the slot migrates and MOVED once it has moved, without an error or a fallback, and
    // the GCRA's state (the key) moves with the slot, so the bound holds across the move.
    let key = "test:Moving";
    let slot = cluster.slot(key).to_string();
    let from = cluster.owner(cluster.slot(key));
    let to = (from + 1) % 3;
    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    let (a, b) = (&cluster.nodes[from], &cluster.nodes[to]);
    let (rate, burst) = (20.0, 3);
    let l = link_with(options(&url(to)));
    let limiter = Arc::new(FleetLimiter::new(l.clone(), "Moving", rate, burst));
    let mut grants = take(limiter.clone(), 2, 5).await;
    assert_eq!(a.cli(&["EXISTS", key]).as_deref(), Some("1"));

    assert_eq!(
        b.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id])
            .as_deref(),
        Some("OK")
    );
    assert_eq!(
        a.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id])
            .as_deref(),
        Some("OK")
    );
    let moved = a.cli(&[
        "MIGRATE",
        "127.0.0.1",
        &b.port.to_string(),
        key,
        "0",
        "5000",
    ]);
    assert_eq!(moved.as_deref(), Some("OK"));
    // The key is gone from `from`, its slot still migrating: `from` answers ASK.
    grants.extend(take(limiter.clone(), 2, 5).await);
    let asking = b.cli(&["INFO", "commandstats"]).unwrap_or_default();
    assert!(
        asking.contains("cmdstat_asking:calls="),
        "no ASKING on the target:
{asking}"
    );

    for n in &cluster.nodes {
        assert_eq!(
            n.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id])
                .as_deref(),
            Some("OK")
        );
    }
    // The link's slot map still names `from`: it answers MOVED, the link refreshes.
    grants.extend(take(limiter.clone(), 2, 5).await);
    let errors = a.cli(&["INFO", "errorstats"]).unwrap_or_default();
    assert!(
        errors.contains("errorstat_MOVED"),
        "no MOVED from the old owner:
{errors}"
    );
    assert!(
        errors.contains("errorstat_ASK"),
        "no ASK from the old owner:
{errors}"
    );

    assert_eq!(l.state(), FleetState::Shared);
    assert_eq!(l.errors(), 0);
    assert_eq!(grants.len(), 30);
    assert_within_bound(&grants, rate, burst - 1);
    assert_eq!(b.cli(&["EXISTS", key]).as_deref(), Some("1"));
}

/// While Redis is down, one connection attempt (one error) per cooldown, not one per call.
fn assert_attempts(errors: u64, elapsed: Duration, cooldown: Duration) {
    let most = 1 + (elapsed.as_secs_f64() / cooldown.as_secs_f64()) as u64;
    assert!(
        (1..=most).contains(&errors),
        "{errors} errors in {elapsed:?} (cooldown {cooldown:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dies_local_control_goes_on_and_sharing_resumes_when_it_returns() {
    let port = free_port();
    let cooldown = Duration::from_millis(500);
    let l = link(&format!("redis://127.0.0.1:{port}"), cooldown);
    let limiter = Arc::new(FleetLimiter::new(l.clone(), "StartChatContact", 0.5, 1));

    // Down at start-up: every acquire returns, one connection attempt per cooldown.
    let start = Instant::now();
    for _ in 0..20 {
        limiter.acquire().await;
    }
    assert_eq!(l.state(), FleetState::Fallback);
    assert_attempts(l.errors(), start.elapsed(), cooldown);

    // Redis comes up: after the cooldown the next acquire shares again.
    let mut redis = RedisServer::start_on(port);
    tokio::time::sleep(cooldown).await;
    limiter.acquire().await;
    assert_eq!(l.state(), FleetState::Shared);
    assert!(redis.command("EXISTS test:StartChatContact").as_deref() == Some(":1"));
    // Shared at 0.5/s, burst 1: the next grant waits for its slot.
    let waited = limiter.acquire().await;
    assert!(waited > Duration::ZERO);
    assert_eq!(l.state(), FleetState::Shared);

    // Redis dies mid-run: fallback on the first failed call, grants go on without Redis.
    redis.kill();
    let errors = l.errors();
    let start = Instant::now();
    let grants = take(limiter.clone(), 4, 10).await;
    assert_eq!(grants.len(), 40);
    assert_eq!(l.state(), FleetState::Fallback);
    assert_attempts(l.errors() - errors, start.elapsed(), cooldown);

    // Restarted (empty: the script is loaded again on NOSCRIPT): back to shared.
    let redis = RedisServer::start_on(port);
    tokio::time::sleep(cooldown).await;
    limiter.acquire().await;
    assert_eq!(l.state(), FleetState::Shared);
    assert_eq!(
        redis.command("EXISTS test:StartChatContact").as_deref(),
        Some(":1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_holds_a_caller_for_one_call_timeout_only() {
    let redis = RedisServer::start();
    let cooldown = Duration::from_millis(500);
    let l = link(&redis.url(), cooldown);
    let limiter = Arc::new(FleetLimiter::new(l.clone(), "StartChatContact", 100.0, 10));
    limiter.acquire().await;
    assert_eq!(l.state(), FleetState::Shared);

    // SIGSTOP: connections are accepted by the kernel, nothing answers.
    redis.signal("STOP");
    // Generous outer bound: the point is that acquire does not hang with Redis.
    let waited = tokio::time::timeout(Duration::from_secs(10), limiter.acquire())
        .await
        .expect("acquire returns while Redis hangs");
    assert_eq!(l.state(), FleetState::Fallback);
    assert!(
        waited >= Duration::from_millis(200),
        "{waited:?}: the call timed out"
    );
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(10), limiter.acquire())
            .await
            .expect("local control while in cooldown");
    }

    redis.signal("CONT");
    tokio::time::sleep(cooldown).await;
    limiter.acquire().await;
    assert_eq!(l.state(), FleetState::Shared);
}
