//! End-to-end tests of the worker binary against moto's SQS and connect-sim over real HTTP.
//! Each test gets its own moto, simulator and worker process.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use connect_sim::SimConfig;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_actions_succeed_with_one_result_each_and_the_jobs_are_deleted() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    // Past sessions as in the persistent-chat documentation: the start job resumes the whole
    // session of its initial contact (ENTIRE_PAST_SESSION), the associate job from a segment in
    // the middle of its session (FROM_SEGMENT).
    let sim = start_sim(SimConfig {
        past_sessions: vec![
            "past-start-1>start-1-c2>start-1-c3".into(),
            "assoc-1-c1>past-assoc-1>assoc-1-c3".into(),
        ],
        ..generous_sim()
    })
    .await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    worker.wait_healthy();
    queues
        .send_jobs(&[start_job("start-1"), associate_job("assoc-1")])
        .await;

    let results = queues.results(2, WAIT).await;
    assert_eq!(results.len(), 2, "log:\n{}", worker.log());
    let by_id: HashMap<_, _> = results
        .iter()
        .map(|r| (r.job_id().unwrap_or_default().to_owned(), r.clone()))
        .collect();

    let start = &by_id["start-1"];
    assert_eq!(start.status(), "succeeded", "{}", start.body);
    assert_eq!(start.json["action"], "startPersistentChat");
    assert!(
        start.json["contactId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        start.json["participantId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        start.json["participantToken"]
            .as_str()
            .is_some_and(|s| s.len() > 20)
    );
    // Connect continues from the session's most recent contact, not from the source itself.
    assert_eq!(start.json["continuedFromContactId"], "start-1-c3");
    assert_eq!(start.json["receiveCount"], 1);
    assert!(
        start.json["completedAt"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    assert_eq!(
        start.attributes.get("jobId").map(String::as_str),
        Some("start-1")
    );
    assert_eq!(
        start.attributes.get("status").map(String::as_str),
        Some("succeeded")
    );

    let assoc = &by_id["assoc-1"];
    assert_eq!(assoc.status(), "succeeded", "{}", assoc.body);
    // FROM_SEGMENT: from the named segment, not the session's last one.
    assert_eq!(assoc.json["continuedFromContactId"], "past-assoc-1");
    assert!(assoc.json.get("participantToken").is_none());

    let stats = sim.stats();
    assert_eq!(stats.operations.start_chat_contact.ok, 1);
    assert_eq!(stats.operations.create_persistent_contact_association.ok, 1);
    assert!(eventually(Duration::from_secs(10), || true).await);
    // Jobs are deleted once their results are out.
    let mut empty = false;
    for _ in 0..100 {
        if queues.depth(&queues.jobs).await == (0, 0) {
            empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(empty, "jobs queue not empty");

    // Secrets never reach the logs.
    let log = worker.log();
    let token = start.json["participantToken"].as_str().unwrap_or("x");
    assert!(!log.contains(token), "participant token in the log");
    assert!(
        !log.contains("CUSTOMER-SECRET-42"),
        "customer id in the log"
    );
    assert!(
        log.lines()
            .all(|l| l.trim().is_empty() || serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "JSON logs"
    );
    assert!(log.contains("\"job_id\":\"start-1\""), "logs carry job_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_a_specific_error_and_is_never_retried() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let mut env = worker_env(&moto, &queues, &sim);
    // No default flow: a start job without contactFlowId is invalid.
    env.retain(|(k, _)| k != "CONNECT_CONTACT_FLOW_ID");
    let worker = Worker::start(&env);
    let long = "x".repeat(40_000);
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("{not json".into(), "JSON", None),
        ("[1,2]".into(), "object", None),
        (r#"{"jobId":"bad-1","participant":{"displayName":"A"},"contactFlowId":"f"}"#.into(), "sourceContactId", Some("bad-1")),
        (r#"{"jobId":"bad-2","sourceContactId":"s","participant":{"displayName":"A"},"contactFlowId":"f","rehydrationType":"SOMETIMES"}"#.into(), "rehydrationType", Some("bad-2")),
        (r#"{"jobId":"bad-3","sourceContactId":"s","participant":{"displayName":"A"},"contactFlowId":"f","chatDurationInMinutes":59}"#.into(), "chatDurationInMinutes", Some("bad-3")),
        (format!(r#"{{"jobId":"bad-4","sourceContactId":"s","participant":{{"displayName":"A"}},"contactFlowId":"f","attributes":{{"k":"{long}"}}}}"#), "attributes", Some("bad-4")),
        (r#"{"jobId":"bad-5","sourceContactId":"s","participant":{"displayName":"A"}}"#.into(), "contactFlowId", Some("bad-5")),
        (r#"{"jobId":"bad-6","sourceContactId":"s","participant":{"displayName":""},"contactFlowId":"f"}"#.into(), "participant.displayName", Some("bad-6")),
        (r#"{"jobId":"bad-7","action":"associatePersistentContact","sourceContactId":"s"}"#.into(), "initialContactId", Some("bad-7")),
        (r#"{"jobId":"bad 8","sourceContactId":"s"}"#.into(), "jobId", None),
    ];
    let bodies: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    queues.send_jobs(&bodies).await;
    let results = queues.results(cases.len(), WAIT).await;
    assert_eq!(results.len(), cases.len(), "log:\n{}", worker.log());
    for (body, field, job_id) in &cases {
        let r = results
            .iter()
            .find(|r| r.job_id() == *job_id && r.message().contains(field))
            .unwrap_or_else(|| {
                panic!("no InvalidJob result naming {field} for {body:.80}: {results:#?}")
            });
        assert_eq!(r.status(), "failed");
        assert_eq!(r.code(), "InvalidJob");
        assert!(r.json["messageId"].as_str().is_some());
    }
    // Nothing reached Connect, and nothing is left to retry.
    let stats = sim.stats();
    assert_eq!(
        stats.operations.start_chat_contact.ok + stats.operations.start_chat_contact.invalid,
        0
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(queues.depth(&queues.jobs).await, (0, 0));
    assert_eq!(
        worker.metric(r#"resume_chat_jobs_completed_total{status="failed",code="InvalidJob"}"#),
        cases.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_job_is_not_started() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let _worker = Worker::start(&worker_env(&moto, &queues, &sim));
    let mut job: serde_json::Value = serde_json::from_str(&start_job("old-1")).unwrap_or_default();
    job["notAfter"] = "2020-01-01T00:00:00Z".into();
    queues.send_job(&job.to_string()).await;
    let results = queues.results(1, WAIT).await;
    assert_eq!(results[0].code(), "Expired");
    assert!(results[0].message().contains("notAfter"));
    assert_eq!(sim.stats().operations.start_chat_contact.ok, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_rejections_fail_with_connects_code_and_faults_are_retried() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(SimConfig {
        instance_ids: vec!["inst-1".into()],
        ..generous_sim()
    })
    .await;
    let _worker = Worker::start(&worker_env(&moto, &queues, &sim));
    let mut unknown_instance: serde_json::Value =
        serde_json::from_str(&start_job("nf-2")).unwrap_or_default();
    unknown_instance["instanceId"] = "inst-unknown".into();
    let missing_contact = start_job("nf-1").replace("past-nf-1", "missing-contact");
    queues
        .send_jobs(&[missing_contact, unknown_instance.to_string()])
        .await;
    let results = queues.results(2, WAIT).await;
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(r.status(), "failed");
        assert_eq!(r.code(), "ResourceNotFoundException", "{}", r.body);
        assert!(!r.message().is_empty());
    }
    // Each was called once: a 404 is not retried.
    assert_eq!(sim.stats().operations.start_chat_contact.not_found, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_faults_and_dropped_connections_are_retried_without_duplicate_chats() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 10).await;
    let sim = start_sim(SimConfig {
        fail_rate: 0.3,
        drop_rate: 0.1,
        ..generous_sim()
    })
    .await;
    let mut env = worker_env(&moto, &queues, &sim);
    set(&mut env, "CONNECT_TIMEOUT_SECONDS", "2");
    let worker = Worker::start(&env);
    let jobs: Vec<String> = (0..20).map(|i| start_job(&format!("fault-{i}"))).collect();
    queues.send_jobs(&jobs).await;
    let results = queues.results(20, Duration::from_secs(120)).await;
    let ok = results.iter().filter(|r| r.status() == "succeeded").count();
    assert_eq!(
        ok,
        20,
        "all succeed despite faults: {results:#?}\nlog:\n{}",
        worker.log()
    );
    let stats = sim.stats();
    assert!(
        stats.operations.start_chat_contact.server_error > 0,
        "faults were injected"
    );
    assert_eq!(
        stats.chats_created, 20,
        "one chat per job, even when a 500 came after the chat was created"
    );
    assert_eq!(stats.duplicate_source_chats, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_slows_the_worker_and_every_job_still_succeeds_once() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 10).await;
    let sim = start_sim(SimConfig {
        start_chat_rate: 3.0,
        start_chat_burst: 3,
        ..generous_sim()
    })
    .await;
    let mut env = worker_env(&moto, &queues, &sim);
    // Configured far above the real quota: the worker must learn it from the 429s.
    set(&mut env, "START_CHAT_RATE", "30");
    set(&mut env, "START_CHAT_BURST", "30");
    let worker = Worker::start(&env);
    let jobs: Vec<String> = (0..30).map(|i| start_job(&format!("thr-{i}"))).collect();
    queues.send_jobs(&jobs).await;
    let results = queues.results(30, Duration::from_secs(120)).await;
    assert_eq!(
        results.iter().filter(|r| r.status() == "succeeded").count(),
        30,
        "log:\n{}",
        worker.log()
    );
    let stats = sim.stats();
    assert!(
        stats.operations.start_chat_contact.throttled > 0,
        "the quota was hit"
    );
    assert_eq!(stats.chats_created, 30);
    let metrics = worker.metrics();
    assert!(
        metric_value(
            &metrics,
            r#"resume_chat_connect_calls_total{operation="StartChatContact",code="TooManyRequestsException"}"#
        ) > 0.0
    );
    assert!(
        metric_value(
            &metrics,
            r#"resume_chat_allowed_rate{operation="StartChatContact"}"#
        ) < 30.0,
        "the limiter backed off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_without_chat_capacity_wait_and_then_succeed() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 50).await;
    let sim = start_sim(SimConfig {
        max_active_chats: 2,
        chat_seconds: 3.0,
        ..generous_sim()
    })
    .await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    let jobs: Vec<String> = (0..6).map(|i| start_job(&format!("cap-{i}"))).collect();
    queues.send_jobs(&jobs).await;
    let results = queues.results(6, Duration::from_secs(150)).await;
    assert_eq!(
        results.iter().filter(|r| r.status() == "succeeded").count(),
        6,
        "{results:#?}\nlog:\n{}",
        worker.log()
    );
    let stats = sim.stats();
    assert!(
        stats.operations.start_chat_contact.limit_exceeded > 0,
        "capacity ran out"
    );
    assert!(stats.peak_active_chats <= 2);
    assert_eq!(stats.chats_created, 6);
    // Capacity waits are paced by the instance's capacity machine, not in-process hammering
    // (which would be hundreds of calls over this run). What this small run costs: the burst of
    // six into two free slots (four refusals), then halving the pace from the burst's rate
    // (tens per second) to the rate two 3 s chats free up (0.7/s), about six refusals, and a
    // few while the pace settles over only four more starts.
    assert!(
        stats.operations.start_chat_contact.limit_exceeded <= 24,
        "LimitExceeded calls stay few: {}",
        stats.operations.start_chat_contact.limit_exceeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_contact_events_a_full_instance_starts_chats_as_connect_reports_their_ends() {
    // connect-sim sends each ended chat's EventBridge event to the contact-events queue (as the
    // stack's rule does), signed as an admin: EventBridge's own permission, not the task's. The
    // worker reads the queue under the task policy and starts one held job per reported end.
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 50).await;
    let admin = moto.admin_credentials();
    let sim = start_sim(SimConfig {
        max_active_chats: 2,
        chat_seconds: 3.0,
        contact_events_queue_url: Some(queues.events.clone()),
        contact_events_credentials: Some(admin),
        ..generous_sim()
    })
    .await;
    let mut env = worker_env(&moto, &queues, &sim);
    set(&mut env, "CONTACT_EVENTS_QUEUE_URL", &queues.events);
    let worker = Worker::start(&env);
    let jobs: Vec<String> = (0..6).map(|i| start_job(&format!("ev-{i}"))).collect();
    queues.send_jobs(&jobs).await;
    let results = queues.results(6, Duration::from_secs(120)).await;
    assert_eq!(
        results.iter().filter(|r| r.status() == "succeeded").count(),
        6,
        "{results:#?}\nlog:\n{}",
        worker.log()
    );
    let stats = sim.stats();
    assert_eq!(stats.chats_created, 6);
    assert!(stats.peak_active_chats <= 2);
    // The events were read and deleted, under the task policy.
    assert!(stats.contact_events.sent >= 4, "{:?}", stats.contact_events);
    assert_eq!(stats.contact_events.failed, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while worker.metric(r#"resume_chat_contact_events_total{kind="chat_ended"}"#) < 4.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        worker.metric(
            r#"resume_chat_sqs_errors_total{operation="ReceiveMessage",code="AccessDenied"}"#
        ),
        0.0
    );
    // Refusals: the first burst (six calls into two slots) and at most the first insurance
    // probe (5 s after the fill); every later start went on a reported end. The blind pace of
    // `jobs_without_chat_capacity_wait_and_then_succeed` allows up to 24 for the same run.
    let refused = stats.operations.start_chat_contact.limit_exceeded;
    assert!(
        refused <= 6,
        "LimitExceeded {refused}\nlog:\n{}",
        worker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_job_opens_one_chat_not_two() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let _worker = Worker::start(&worker_env(&moto, &queues, &sim));
    // The same job twice, as SQS at-least-once delivery (or a retrying producer) would hand it over.
    queues.send_job(&start_job("dup-1")).await;
    queues.send_job(&start_job("dup-1")).await;
    let results = queues.results(2, WAIT).await;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.status() == "succeeded"));
    assert_eq!(
        results[0].json["contactId"], results[1].json["contactId"],
        "the replay returns the same chat"
    );
    let stats = sim.stats();
    assert_eq!(stats.chats_created, 1);
    assert_eq!(stats.operations.start_chat_contact.idempotent_replays, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_slower_than_the_visibility_timeout_is_not_delivered_twice() {
    let moto = Moto::start();
    // The queue hides messages for 5 s only; jobs wait ~15 s for their turn.
    let queues = Queues::create(&moto, 5, 10).await;
    let sim = start_sim(generous_sim()).await;
    let mut env = worker_env(&moto, &queues, &sim);
    set(&mut env, "VISIBILITY_TIMEOUT_SECONDS", "6");
    set(&mut env, "CONNECT_TIMEOUT_SECONDS", "2");
    set(&mut env, "START_CHAT_RATE", "0.25");
    set(&mut env, "START_CHAT_BURST", "1");
    let worker = Worker::start(&env);
    let jobs: Vec<String> = (0..4).map(|i| start_job(&format!("slow-{i}"))).collect();
    queues.send_jobs(&jobs).await;
    let results = queues.results(4, Duration::from_secs(90)).await;
    assert_eq!(results.len(), 4, "log:\n{}", worker.log());
    for r in &results {
        assert_eq!(r.status(), "succeeded");
        assert_eq!(r.json["receiveCount"], 1, "delivered once: {}", r.body);
    }
    // No stray second delivery produced another result.
    assert!(queues.results(1, Duration::from_secs(3)).await.is_empty());
    assert!(worker.metric(r#"resume_chat_visibility_extensions_total{result="ok"}"#) > 0.0);
    assert_eq!(sim.stats().operations.start_chat_contact.ok, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_jobs_in_flight_loses_nothing() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 10).await;
    let sim = start_sim(SimConfig {
        latency_ms: 300,
        ..generous_sim()
    })
    .await;
    let mut env = worker_env(&moto, &queues, &sim);
    set(&mut env, "START_CHAT_RATE", "4");
    set(&mut env, "START_CHAT_BURST", "1");
    let mut first = Worker::start(&env);
    first.wait_healthy();
    let jobs: Vec<String> = (0..20).map(|i| start_job(&format!("term-{i}"))).collect();
    queues.send_jobs(&jobs).await;
    let mut results = queues.results(3, WAIT).await;
    first.signal("TERM");
    let status = first
        .wait_exit(Duration::from_secs(20))
        .expect("exits within the grace period");
    assert!(
        status.success(),
        "exit 0 after SIGTERM: {status:?}\n{}",
        first.log()
    );
    assert!(first.log().contains("stop requested"));

    // A second worker finishes the rest; released jobs come back at once.
    let _second = Worker::start(&env);
    results.extend(
        queues
            .results(20 - results.len(), Duration::from_secs(90))
            .await,
    );
    let mut ids: Vec<&str> = results.iter().filter_map(|r| r.job_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20, "every job has a result: {ids:?}");
    assert!(results.iter().all(|r| r.status() == "succeeded"));
    let stats = sim.stats();
    assert_eq!(stats.chats_created, 20, "no job opened two chats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_exits_within_two_seconds_of_sigterm() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let mut worker = Worker::start(&worker_env(&moto, &queues, &sim));
    worker.wait_healthy();
    // Let it sit in a long poll.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = std::time::Instant::now();
    worker.signal("INT");
    let status = worker.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    // Not a timing threshold on performance: the contract's 2 s bound on an idle stop.
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_received_too_often_fail_with_retries_exhausted_and_go_to_the_dlq() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 10).await;
    // Connect always fails: in-process retries run out, the job goes back, and is received again.
    let sim = start_sim(SimConfig {
        fail_rate: 1.0,
        fail_after_create_ratio: 0.0,
        ..generous_sim()
    })
    .await;
    let mut env = worker_env(&moto, &queues, &sim);
    set(&mut env, "MAX_RECEIVE_COUNT", "1");
    let worker = Worker::start(&env);
    queues.send_job(&start_job("doomed-1")).await;
    let results = queues.results(1, Duration::from_secs(60)).await;
    assert_eq!(results.len(), 1, "log:\n{}", worker.log());
    assert_eq!(results[0].code(), "RetriesExhausted");
    assert_eq!(results[0].json["receiveCount"], 2);
    let dead = queues
        .drain(&queues.dlq.clone(), 1, Duration::from_secs(10))
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].json["jobId"], "doomed-1",
        "the original job body is in the DLQ"
    );
    assert_eq!(worker.metric("resume_chat_jobs_dead_lettered_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    worker.wait_healthy();
    queues.send_job(&start_job("m-1")).await;
    assert_eq!(queues.results(1, WAIT).await.len(), 1);
    assert!(
        eventually(Duration::from_secs(10), || worker
            .get("/readyz")
            .map(|r| r.0)
            == Some(200))
        .await
    );
    // The result is published before the job is deleted and counted as completed.
    let completed = r#"resume_chat_jobs_completed_total{status="succeeded",code="none"}"#;
    assert!(eventually(Duration::from_secs(10), || worker.metric(completed) == 1.0).await);
    let text = worker.metrics();
    for name in [
        "resume_chat_jobs_received_total",
        "resume_chat_jobs_completed_total",
        "resume_chat_jobs_requeued_total",
        "resume_chat_jobs_in_flight",
        "resume_chat_job_age_seconds_bucket",
        "resume_chat_connect_calls_total",
        "resume_chat_connect_call_duration_seconds_bucket",
        "resume_chat_rate_wait_seconds_bucket",
        "resume_chat_allowed_rate",
        "resume_chat_visibility_extensions_total",
        "resume_chat_last_receive_success_timestamp_seconds",
        "resume_chat_recycle_failures_total",
        // The prometheus crate's process collector.
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let build = format!(
        "resume_chat_build_info{{commit=\"{}\",version=\"{}\"}} 1",
        resume_chat_worker::metrics::build_commit(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{build} missing from:\n{text}");
    assert_eq!(
        metric_value(
            &text,
            r#"resume_chat_jobs_completed_total{status="succeeded",code="none"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            r#"resume_chat_connect_calls_total{operation="StartChatContact",code="OK"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            r#"resume_chat_job_age_seconds_count{stage="started"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_a_clear_log_line_and_not_ready_not_a_crash() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let mut env = worker_env(&moto, &queues, &sim);
    set(
        &mut env,
        "JOBS_QUEUE_URL",
        &format!("{}/123456789012/no-such-queue", moto.endpoint),
    );
    // Under the task role, a queue outside its policy is denied before SQS looks for it (as in
    // AWS, where the role's statements name the stack's queues): the log says both causes.
    let denied = Worker::start(&env);
    denied.wait_healthy();
    assert!(
        eventually(Duration::from_secs(15), || denied
            .log()
            .contains("access to the jobs queue is denied"))
        .await,
        "{}",
        denied.log()
    );
    assert!(
        denied
            .log()
            .contains("check JOBS_QUEUE_URL and the task role")
    );
    assert_eq!(denied.get("/readyz").map(|(s, _)| s), Some(503));
    drop(denied);
    // With every permission, SQS says the queue does not exist.
    let (key, secret) = moto.admin_credentials();
    set(&mut env, "AWS_ACCESS_KEY_ID", &key);
    set(&mut env, "AWS_SECRET_ACCESS_KEY", &secret);
    let mut worker = Worker::start(&env);
    worker.wait_healthy();
    assert!(
        eventually(Duration::from_secs(15), || worker
            .log()
            .contains("the jobs queue does not exist"))
        .await,
        "{}",
        worker.log()
    );
    let (status, body) = worker.get("/readyz").expect("readyz");
    assert_eq!(status, 503);
    assert!(body.contains("does not exist"), "{body}");
    assert!(
        worker.wait_exit(Duration::from_secs(1)).is_none(),
        "still running"
    );
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_setting() {
    let cases = [
        (
            vec![("RESULTS_QUEUE_URL", "http://127.0.0.1:1/q/results")],
            "JOBS_QUEUE_URL",
        ),
        (
            vec![
                ("JOBS_QUEUE_URL", "http://127.0.0.1:1/q/jobs"),
                ("RESULTS_QUEUE_URL", "http://127.0.0.1:1/q/r"),
                ("START_CHAT_RATE", "fast"),
            ],
            "START_CHAT_RATE",
        ),
        (
            vec![
                ("JOBS_QUEUE_URL", "http://127.0.0.1:1/q/jobs"),
                ("RESULTS_QUEUE_URL", "http://127.0.0.1:1/q/r"),
                ("MAX_IN_FLIGHT", "0"),
            ],
            "MAX_IN_FLIGHT",
        ),
        (
            vec![
                ("JOBS_QUEUE_URL", "http://127.0.0.1:1/q/jobs"),
                ("RESULTS_QUEUE_URL", "http://127.0.0.1:1/q/r"),
                ("LOG_FORMAT", "yaml"),
            ],
            "LOG_FORMAT",
        ),
    ];
    for (env, setting) in cases {
        let out = std::process::Command::new(worker_binary())
            .env_clear()
            .envs(env)
            .env("AWS_REGION", REGION)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{setting}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(setting), "{stderr}");
    }
}

/// A credential outage (Connect answering ExpiredTokenException, then
/// UnrecognizedClientException, then InvalidSignatureException for 24 s) fails no job: jobs go
/// back to SQS, `/readyz` says why it is 503, the refusals are counted, and with
/// MAX_RECEIVE_COUNT=3 (the outage outlasts three receives of a job) no job reaches its receive
/// limit, because the worker then takes one job per pause and recycles a job at its limit. Once
/// the credentials work again every job succeeds and the worker is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_outage_fails_no_job_and_the_jobs_succeed_after_it() {
    use connect_sim::CredentialFault;
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 20).await;
    let sim = start_sim(generous_sim()).await;
    sim.credentials().set(Some(CredentialFault::ExpiredToken));
    let mut env = worker_env(&moto, &queues, &sim);
    set(&mut env, "MAX_RECEIVE_COUNT", "3");
    let worker = Worker::start(&env);
    worker.wait_healthy();
    let jobs: Vec<String> = (0..4)
        .map(|i| start_job(&format!("cred-s{i}")))
        .chain((0..2).map(|i| associate_job(&format!("cred-a{i}"))))
        .collect();
    queues.send_jobs(&jobs).await;

    let not_ready_because = |code: &str| {
        worker
            .get("/readyz")
            .is_some_and(|(s, b)| s == 503 && b.contains(code))
    };
    assert!(
        eventually(WAIT, || not_ready_because("ExpiredTokenException")).await,
        "readyz: {:?}\nlog:\n{}",
        worker.get("/readyz"),
        worker.log()
    );
    let mut published = Vec::new();
    for fault in [
        CredentialFault::UnrecognizedClient,
        CredentialFault::InvalidSignature,
    ] {
        // Results read meanwhile: there must be none (each would be a failed job).
        published.extend(queues.results(1, Duration::from_secs(8)).await);
        sim.credentials().set(Some(fault));
        assert!(
            eventually(WAIT, || not_ready_because(fault.code())).await,
            "readyz: {:?}",
            worker.get("/readyz")
        );
    }
    published.extend(queues.results(1, Duration::from_secs(8)).await);
    assert!(
        published.is_empty(),
        "results during the outage: {published:?}"
    );
    let m = worker.metrics();
    for code in [
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
    ] {
        assert!(
            metric_value(
                &m,
                &format!("resume_chat_credential_errors_total{{code=\"{code}\"}}")
            ) >= 1.0,
            "{code} not counted:\n{m}"
        );
    }
    assert!(
        metric_value(
            &m,
            "resume_chat_jobs_requeued_total{reason=\"credentials\"}"
        ) >= 3.0
    );
    assert_eq!(metric_value(&m, "resume_chat_ready"), 0.0);
    assert!(sim.credentials().refused() >= 3);

    sim.credentials().set(None);
    let results = queues.results(jobs.len(), Duration::from_secs(90)).await;
    assert_eq!(results.len(), jobs.len(), "log:\n{}", worker.log());
    for r in &results {
        assert_eq!(r.status(), "succeeded", "{}", r.body);
    }
    assert!(
        eventually(Duration::from_secs(10), || worker
            .get("/readyz")
            .is_some_and(|(s, _)| s == 200))
        .await,
        "readyz after the outage: {:?}",
        worker.get("/readyz")
    );
    assert_eq!(
        queues.depth(&queues.dlq).await,
        (0, 0),
        "nothing dead-lettered"
    );
    assert_eq!(
        metric_value(&worker.metrics(), "resume_chat_jobs_dead_lettered_total"),
        0.0
    );
}

/// Every test here runs under the task role's SQS statements from worker.yaml (tests/common).
/// This one checks that the enforcement is real (the principal may not read the results queue or
/// delete from it, which the worker never does), and that the capacity-wait recycle (a job at
/// MAX_RECEIVE_COUNT sent again as a new message) is allowed by the template's policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_policy_is_enforced_and_allows_the_capacity_recycle() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 20).await;
    let (key, secret) = moto.task_credentials();
    let task = sqs_client_as(&moto.endpoint, (&key, &secret));
    let denied = task
        .receive_message()
        .queue_url(&queues.results)
        .send()
        .await
        .expect_err("the task role may not read results");
    // moto answers IAM refusals in the query protocol's XML even to JSON-protocol requests, so
    // the SDK reads no code from it: check the raw answer.
    let raw = denied.raw_response().expect("a response");
    assert_eq!(raw.status().as_u16(), 403);
    let body = String::from_utf8_lossy(raw.body().bytes().unwrap_or_default()).into_owned();
    assert!(
        body.contains("AccessDenied") && body.contains("sqs:ReceiveMessage"),
        "{body}"
    );
    let bad_key = sqs_client_as(&moto.endpoint, (&key, "not-the-secret"));
    let refused = bad_key
        .get_queue_attributes()
        .queue_url(&queues.jobs)
        .send()
        .await
        .expect_err("a wrong secret is refused");
    assert!(
        format!("{refused:?}").contains("SignatureDoesNotMatch"),
        "{refused:?}"
    );

    let (worker, sim) = recycling_worker(&moto, &queues).await;
    assert!(
        eventually(WAIT, || worker
            .log()
            .contains("job recycled as a new message"))
        .await,
        "log:\n{}",
        worker.log()
    );
    assert_eq!(worker.metric("resume_chat_recycle_failures_total"), 0.0);
    assert!(sim.stats().operations.start_chat_contact.limit_exceeded >= 2);
}

/// Without `sqs:SendMessage` on the jobs queue (the template's bug of issue 12) the recycle is
/// denied: the worker says so with the job id, counts it, and keeps the job waiting in the worker
/// (its receive budget intact) instead of giving it back to use up its last receive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_recycle_is_logged_with_the_job_id_and_counted() {
    let moto = Moto::start();
    let queues = Queues::create_with_policy(&moto, 30, 20, &["sqs:SendMessage@JobsQueue"]).await;
    let (worker, _sim) = recycling_worker(&moto, &queues).await;
    assert!(
        eventually(WAIT, || worker.metric("resume_chat_recycle_failures_total")
            >= 1.0)
        .await,
        "log:\n{}",
        worker.log()
    );
    let log = worker.log();
    let line = log
        .lines()
        .find(|l| l.contains("recycling the job as a new message failed"))
        .unwrap_or_else(|| panic!("no log line:\n{log}"));
    let line: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(line["job_id"], "recycle-1", "{line}");
    assert_eq!(line["level"], "WARN");
    // A 403 (moto's XML body carries no code the JSON SDK reads).
    assert_eq!(line["code"], "Http403", "{line}");
    let m = worker.metrics();
    assert!(
        metric_value(
            &m,
            r#"resume_chat_sqs_errors_total{operation="SendMessage",code="Http403"}"#
        ) >= 1.0,
        "{m}"
    );
    // Not given back to burn its last receive: no RetriesExhausted result, nothing in the DLQ.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        worker
            .metric(r#"resume_chat_jobs_completed_total{status="failed",code="RetriesExhausted"}"#),
        0.0,
        "{}",
        worker.log()
    );
    assert_eq!(queues.depth(&queues.dlq).await, (0, 0));
}

/// A worker with MAX_RECEIVE_COUNT=2 and one start-chat job that never finds chat capacity: its
/// second receive ends in a recycle.
async fn recycling_worker(moto: &Moto, queues: &Queues) -> (Worker, connect_sim::SimHandle) {
    let sim = start_sim(SimConfig {
        max_active_chats: 0,
        ..generous_sim()
    })
    .await;
    let mut env = worker_env(moto, queues, &sim);
    set(&mut env, "MAX_RECEIVE_COUNT", "2");
    let worker = Worker::start(&env);
    worker.wait_healthy();
    queues.send_job(&start_job("recycle-1")).await;
    (worker, sim)
}
