//! Quotas under concurrent load from the real client. The assertions are invariants of a
//! correct token bucket, true however fast or slow the machine is: in any one-second
//! window accepted calls never exceed burst + rate, and over the whole run never exceed
//! burst + rate * elapsed.

use std::time::Duration;

use aws_sdk_connect::error::ProvideErrorMetadata;
use connect_sim::SimConfig;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::common::*;

/// Fires `n` StartChatContact calls at once; returns (accepted, errors by code).
async fn wave(c: &aws_sdk_connect::Client, n: usize, tag: &str) -> (u64, Vec<String>) {
    let mut set = JoinSet::new();
    for i in 0..n {
        let req = start_chat(c, &format!("{tag}-{i}"));
        set.spawn(async move { req.send().await });
    }
    let (mut ok, mut errors) = (0, Vec::new());
    while let Some(joined) = set.join_next().await {
        match joined.expect("task ran") {
            Ok(_) => ok += 1,
            Err(e) => errors.push(e.code().unwrap_or("no code").to_string()),
        }
    }
    (ok, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_calls_never_exceed_burst_plus_rate() {
    let (rate, burst) = (5.0, 5u32);
    let sim = sim(SimConfig {
        start_chat_rate: rate,
        start_chat_burst: burst,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    let t0 = Instant::now();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for w in 0..4 {
        let (ok, errors) = wave(&c, 40, &format!("w{w}")).await;
        assert!(
            errors.iter().all(|c| c == "TooManyRequestsException"),
            "{errors:?}"
        );
        accepted += ok;
        refused += errors.len() as u64;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();

    let s = sim.stats();
    let op = s.operations.start_chat_contact;
    assert_eq!(
        (op.ok, op.throttled),
        (accepted, refused),
        "stats agree with the client"
    );
    assert!(
        accepted >= u64::from(burst),
        "the full bucket admits the first burst"
    );
    let bound = f64::from(burst) + rate * elapsed;
    assert!(
        accepted as f64 <= bound,
        "{accepted} accepted in {elapsed:.2}s > {bound}"
    );
    for t in &s.timeline {
        let a = t.start_chat_contact.accepted as f64;
        assert!(
            a <= f64::from(burst) + rate,
            "second {}: {a} accepted",
            t.second
        );
    }
    let timeline_total: u64 = s
        .timeline
        .iter()
        .map(|t| t.start_chat_contact.accepted)
        .sum();
    assert_eq!(timeline_total, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associate_bucket_is_separate_and_throttles() {
    let sim = sim(SimConfig {
        associate_rate: 2.0,
        associate_burst: 3,
        start_chat_rate: 0.0,
        start_chat_burst: 0,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..30 {
        let req = associate(&c, &format!("i{i}"), "s");
        set.spawn(async move { req.send().await });
    }
    let mut ok = 0u64;
    while let Some(r) = set.join_next().await {
        match r.expect("task ran") {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Some("ThrottlingException")),
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(
        ok >= 3 && ok as f64 <= 3.0 + 2.0 * elapsed,
        "{ok} in {elapsed}s"
    );
    // The StartChatContact bucket (burst 0) was not touched by associations.
    assert_eq!(sim.stats().operations.start_chat_contact.ok, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_chats_stop_exactly_at_the_limit() {
    let sim = sim(SimConfig {
        max_active_chats: 7,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    let (ok, errors) = wave(&c, 30, "lim").await;
    assert_eq!(ok, 7);
    assert_eq!(errors.len(), 23);
    assert!(
        errors.iter().all(|c| c == "LimitExceededException"),
        "{errors:?}"
    );
    let s = sim.stats();
    assert_eq!(
        (s.active_chats, s.peak_active_chats, s.chats_created),
        (7, 7, 7)
    );
    assert_eq!(s.operations.start_chat_contact.limit_exceeded, 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_token_create_one_chat() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    let mut set = JoinSet::new();
    for _ in 0..20 {
        let req = start_chat(&c, "s").client_token("same-job");
        set.spawn(async move { req.send().await });
    }
    let mut contacts = std::collections::HashSet::new();
    while let Some(r) = set.join_next().await {
        let out = r.expect("task ran").expect("200 or replay");
        contacts.insert(out.contact_id().map(str::to_string));
    }
    assert_eq!(contacts.len(), 1, "every caller got the same chat");
    let s = sim.stats();
    assert_eq!(s.chats_created, 1);
    assert_eq!(s.operations.start_chat_contact.idempotent_replays, 19);
}

#[tokio::test]
async fn background_caller_uses_the_same_quota() {
    let sim = sim(SimConfig {
        start_chat_rate: 0.0,
        start_chat_burst: 1,
        background_rate: 50.0,
        ..roomy()
    })
    .await;
    // Bounded wait for the background caller to have made a few attempts.
    for _ in 0..500 {
        if sim.stats().background.attempted >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bg = sim.stats().background;
    assert!(bg.attempted >= 5, "{bg:?}");
    assert_eq!(
        bg.accepted, 1,
        "the one token went to the first background call"
    );
    assert_eq!(bg.refused, bg.attempted - 1);
    let c = client(&sim);
    let e = start_chat(&c, "s")
        .send()
        .await
        .expect_err("the quota is used up");
    assert_eq!(e.code(), Some("TooManyRequestsException"));
    let s = sim.stats();
    assert_eq!(s.operations.start_chat_contact.throttled, 1);
    let bg_timeline: u64 = s.timeline.iter().map(|t| t.background.refused).sum();
    assert_eq!(bg_timeline, s.background.refused);
}
