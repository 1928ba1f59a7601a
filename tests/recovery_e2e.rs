//! Recovery end to end, with the real binary, moto's SQS (IAM enforced) and connect-sim: a
//! replica killed with SIGKILL, and a results queue that disappears for a while. Nothing is lost
//! and no job opens a second chat. (How fast: BENCHMARKS.md, `kill` and `outage`.)

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_jobs_are_worked_again_by_another() {
    let moto = Moto::start();
    // The queue's own visibility timeout is long: only the worker's short in-flight visibility
    // (kept alive by its heartbeat while it lives) can bring the killed replica's jobs back soon.
    let queues = Queues::create(&moto, 300, 50).await;
    let sim = start_sim(generous_sim()).await;
    let mut env = worker_env(&moto, &queues, &sim);
    // Slow enough that the first replica holds several jobs when it dies.
    set(&mut env, "START_CHAT_RATE", "1");
    set(&mut env, "START_CHAT_BURST", "1");
    let jobs: Vec<String> = (0..8).map(|i| start_job(&format!("kill-{i}"))).collect();
    queues.send_jobs(&jobs).await;
    let mut first = Worker::start(&env);
    assert!(
        eventually(Duration::from_secs(30), || first
            .metric("resume_chat_jobs_in_flight")
            >= 3.0)
        .await,
        "{}",
        first.log()
    );
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    let killed_at = Instant::now();

    let mut fast = worker_env(&moto, &queues, &sim);
    set(&mut fast, "START_CHAT_RATE", "20");
    let second = Worker::start(&fast);
    // A job whose result the killed replica published but had not deleted yet is published
    // again (at-least-once; consumers dedupe by jobId): wait for eight distinct jobs.
    let mut results = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    while ids.len() < 8 && killed_at.elapsed() < Duration::from_secs(90) {
        results.extend(queues.results(1, Duration::from_secs(5)).await);
        ids = results
            .iter()
            .filter_map(|r| r.job_id().map(str::to_owned))
            .collect();
        ids.sort_unstable();
        ids.dedup();
    }
    let took = killed_at.elapsed();
    assert_eq!(ids.len(), 8, "{results:#?}\n{}", second.log());
    assert!(results.iter().all(|r| r.status() == "succeeded"));
    // Back after the worker's in-flight visibility (15 s by default), not the queue's 300 s.
    assert!(took < Duration::from_secs(60), "{took:?}");
    // Whatever the killed replica had started, no job opened a second chat.
    assert_eq!(sim.stats().chats_created, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_published_once_the_results_queue_is_back() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 50).await;
    let sim = start_sim(generous_sim()).await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    worker.wait_healthy();
    // The results queue goes away (deleted), jobs arrive, and it comes back.
    queues
        .sqs
        .delete_queue()
        .queue_url(&queues.results)
        .send()
        .await
        .expect("delete results queue");
    let jobs: Vec<String> = (0..5).map(|i| start_job(&format!("out-{i}"))).collect();
    queues.send_jobs(&jobs).await;
    assert!(
        eventually(Duration::from_secs(30), || sim.stats().chats_created == 5).await,
        "{}",
        worker.log()
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let failed_publishes: f64 = worker
        .metrics()
        .lines()
        .filter(|l| {
            l.starts_with("resume_chat_sqs_errors_total")
                && l.contains(r#"operation="SendMessageBatch""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        failed_publishes > 0.0,
        "publishing failed while the queue was gone:\n{}",
        worker.metrics()
    );
    let name = queues.results.rsplit('/').next().expect("name").to_owned();
    queues
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("recreate results queue");
    let results = queues.results(5, Duration::from_secs(60)).await;
    assert_eq!(results.len(), 5, "{}", worker.log());
    for r in &results {
        assert_eq!(r.status(), "succeeded");
        // Kept in the worker and retried, not given back to SQS and worked again.
        assert_eq!(r.json["receiveCount"], 1, "{:?}", r.json);
    }
    assert_eq!(sim.stats().chats_created, 5, "no second chat");
    let ops = sim.stats().operations.start_chat_contact;
    assert_eq!(
        (ops.ok, ops.idempotent_replays),
        (5, 0),
        "one Connect call per job"
    );
}
