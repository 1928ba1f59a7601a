//! The fleet limiter (src/rate/fleet.rs) against a real redis-server of its own: the GCRA's
//! bound (burst, then the rate), sharing between two links (two processes' worth), and the
//! fallback to local control when Redis dies or hangs, and back when it returns.
//!
//! Bounds are the GCRA's own guarantee, measured so that slowness can never fail them: every
//! grant happened (in Redis' time) after its `acquire` started and before it returned, so the
//! grants whose acquires lie within [a, b] number at most `burst + rate × (b - a)`.

mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use redis_server::{RedisServer, free_port};
use resume_chat_worker::rate::fleet::{
    FleetLimiter, FleetLink, FleetMetrics, FleetOptions, FleetState,
};
use tokio::time::Instant;

fn link(url: &str, cooldown: Duration) -> Arc<FleetLink> {
    let mut options = FleetOptions::new(url, "test");
    options.cooldown = cooldown;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_links_on_one_key_share_the_rate() {
    let redis = RedisServer::start();
    let (rate, burst) = (10.0, 3);
    // Two links: two connections, as two replicas would have.
    let a = Arc::new(FleetLimiter::new(
        link(&redis.url(), Duration::from_secs(5)),
        "StartChatContact",
        rate,
        burst,
    ));
    let b = Arc::new(FleetLimiter::new(
        link(&redis.url(), Duration::from_secs(5)),
        "StartChatContact",
        rate,
        burst,
    ));
    // A different operation has its own key and does not slow these down (checked below by the
    // bound including only the shared key's grants).
    let other = Arc::new(FleetLimiter::new(
        link(&redis.url(), Duration::from_secs(5)),
        "Other",
        rate,
        burst,
    ));
    let start = Instant::now();
    let (ga, gb, _) = tokio::join!(take(a, 3, 5), take(b, 3, 5), take(other, 2, 5));
    let elapsed = start.elapsed();

    // Configured burst 3: the GCRA's is 2.
    let burst = burst - 1;
    let all: Vec<Grant> = ga.iter().chain(gb.iter()).copied().collect();
    assert_eq!(all.len(), 30);
    // Alone, each link would need (15 - 2) / 10 = 1.3 s; sharing, the 30 need 2.8 s.
    assert!(
        elapsed.as_secs_f64() >= (30.0 - 2.0) / rate,
        "30 grants in {elapsed:?}"
    );
    assert_within_bound(&all, rate, burst);
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
