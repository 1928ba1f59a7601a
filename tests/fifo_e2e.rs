//! FIFO queues end to end against moto's FIFO SQS: a FIFO results queue gets `MessageGroupId` and
//! `MessageDeduplicationId` on every result (without them moto, like SQS, refuses the whole
//! `SendMessageBatch`), a redelivered job's identical second result is dropped by SQS's
//! deduplication, and a FIFO jobs queue with a FIFO dead-letter queue works through
//! `enqueue`, the worker's dead-lettering and `dlq replay`.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use common::*;
use connect_sim::SimConfig;

const WAIT: Duration = Duration::from_secs(60);

async fn create(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attrs: &[(QueueAttributeName, String)],
) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), v);
    }
    req.send()
        .await
        .expect("create queue")
        .queue_url
        .expect("url")
}

async fn arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("arn")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("arn")
}

/// FIFO jobs (30 s visibility, redrive to the DLQ after `max_receive`), results and DLQ queues.
async fn fifo_queues(sqs: &aws_sdk_sqs::Client, max_receive: u32) -> (String, String, String) {
    let fifo = || (QueueAttributeName::FifoQueue, "true".to_owned());
    let dlq = create(sqs, "dlq.fifo", &[fifo()]).await;
    let redrive = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"{max_receive}"}}"#,
        arn(sqs, &dlq).await
    );
    let jobs = create(
        sqs,
        "jobs.fifo",
        &[
            fifo(),
            (QueueAttributeName::VisibilityTimeout, "30".into()),
            (QueueAttributeName::RedrivePolicy, redrive),
        ],
    )
    .await;
    let results = create(sqs, "results.fifo", &[fifo()]).await;
    (jobs, results, dlq)
}

/// One received message: body (as JSON), group id, dedup id.
struct Got {
    json: serde_json::Value,
    group: Option<String>,
    dedup: Option<String>,
}

/// Receives (and deletes) until `n` messages or `timeout`; each receive waits 1 s.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str, n: usize, timeout: Duration) -> Vec<Got> {
    let deadline = std::time::Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n && std::time::Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        for m in out.messages.unwrap_or_default() {
            let attrs = m.attributes.clone().unwrap_or_default();
            got.push(Got {
                json: serde_json::from_str(m.body.as_deref().unwrap_or("")).unwrap_or_default(),
                group: attrs
                    .get(&MessageSystemAttributeName::MessageGroupId)
                    .cloned(),
                dedup: attrs
                    .get(&MessageSystemAttributeName::MessageDeduplicationId)
                    .cloned(),
            });
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
    got
}

fn env_for(
    moto: &Moto,
    sim: &connect_sim::SimHandle,
    jobs: &str,
    results: &str,
    dlq: &str,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("JOBS_QUEUE_URL", jobs),
        ("RESULTS_QUEUE_URL", results),
        ("DEAD_LETTER_QUEUE_URL", dlq),
        ("CONNECT_INSTANCE_ID", "inst-1"),
        ("CONNECT_CONTACT_FLOW_ID", "flow-1"),
        ("AWS_ENDPOINT_URL_SQS", moto.endpoint.as_str()),
        ("START_CHAT_RATE", "50"),
        ("START_CHAT_BURST", "10"),
        ("SHUTDOWN_GRACE_SECONDS", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect::<Vec<_>>();
    set(&mut env, "AWS_ENDPOINT_URL_CONNECT", &sim.endpoint_url());
    env
}

fn cli(moto: &Moto, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(worker_binary())
        .args(args)
        .env_clear()
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL_SQS", &moto.endpoint)
        .env("CONNECT_INSTANCE_ID", "inst-1")
        .env("CONNECT_CONTACT_FLOW_ID", "flow-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_results_queue_gets_group_and_dedup_ids_and_drops_a_redelivered_jobs_second_result()
{
    let moto = Moto::start();
    let sqs = sqs_client(&moto.endpoint);
    let jobs = create(&sqs, "jobs", &[]).await;
    let dlq = create(&sqs, "dlq", &[]).await;
    // No content-based deduplication: without explicit ids every send would be refused.
    let results = create(
        &sqs,
        "results.fifo",
        &[(QueueAttributeName::FifoQueue, "true".into())],
    )
    .await;
    let sim = start_sim(generous_sim()).await;
    let worker = Worker::start(&env_for(&moto, &sim, &jobs, &results, &dlq));
    // The same job twice (at-least-once delivery), and another one.
    for body in [start_job("f-1"), start_job("f-1"), start_job("f-2")] {
        sqs.send_message()
            .queue_url(&jobs)
            .message_body(body)
            .send()
            .await
            .expect("send job");
    }
    let published = "resume_chat_results_published_total";
    assert!(
        eventually(WAIT, || worker.metric(published) == 3.0).await,
        "log:\n{}",
        worker.log()
    );
    let got = drain(&sqs, &results, 3, Duration::from_secs(5)).await;
    // Three published, two delivered: SQS dropped the identical second result of f-1.
    assert_eq!(
        got.len(),
        2,
        "{:?}",
        got.iter().map(|g| &g.json).collect::<Vec<_>>()
    );
    for g in &got {
        let id = g.json["jobId"].as_str().unwrap_or_default();
        assert_eq!(g.json["status"], "succeeded", "{}", g.json);
        assert_eq!(g.group.as_deref(), Some(id), "grouped by jobId");
        assert_eq!(g.dedup.as_ref().map(String::len), Some(64));
    }
    let mut ids: Vec<_> = got
        .iter()
        .filter_map(|g| g.json["jobId"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["f-1", "f-2"]);
    assert_eq!(sim.stats().chats_created, 2);
    assert_eq!(
        worker.metric(r#"resume_chat_sqs_errors_total{operation="SendMessageBatch"}"#),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_jobs_results_and_dead_letter_queues_work_with_enqueue_and_dlq_replay() {
    let moto = Moto::start();
    let sqs = sqs_client(&moto.endpoint);
    let (jobs, results, dlq) = fifo_queues(&sqs, 10).await;

    // `enqueue` to a FIFO jobs queue: moto refuses entries without a group id, so this only
    // succeeds because enqueue sets them.
    let lines = format!("{}\n", start_job("ff-doomed"));
    let out = cli(&moto, &["enqueue", "-", "--queue-url", &jobs], &lines);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A producer's own group: a customer's jobs in order.
    sqs.send_message()
        .queue_url(&jobs)
        .message_body(start_job("ff-grouped"))
        .message_group_id("customer-7")
        .message_deduplication_id("ff-grouped-1")
        .send()
        .await
        .expect("send a grouped job");

    // Connect always fails: each job is retried, received again, and then dead-lettered.
    let sim = start_sim(SimConfig {
        fail_rate: 1.0,
        fail_after_create_ratio: 0.0,
        ..generous_sim()
    })
    .await;
    let mut env = env_for(&moto, &sim, &jobs, &results, &dlq);
    set(&mut env, "MAX_RECEIVE_COUNT", "1");
    let mut worker = Worker::start(&env);
    let got = drain(&sqs, &results, 2, WAIT).await;
    assert_eq!(got.len(), 2, "log:\n{}", worker.log());
    for g in &got {
        assert_eq!(g.json["error"]["code"], "RetriesExhausted", "{}", g.json);
        // A result is grouped by its job's own group, which for enqueue is the jobId.
        let want = match g.json["jobId"].as_str() {
            Some("ff-grouped") => "customer-7",
            _ => "ff-doomed",
        };
        assert_eq!(g.group.as_deref(), Some(want), "{}", g.json);
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            worker.metric("resume_chat_jobs_dead_lettered_total") == 2.0
        })
        .await
    );
    // Look at the DLQ copies without taking them: each kept its job's group.
    let peek = sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .send()
        .await
        .expect("peek the DLQ");
    let mut groups: Vec<String> = peek
        .messages
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            m.attributes
                .as_ref()?
                .get(&MessageSystemAttributeName::MessageGroupId)
                .cloned()
        })
        .collect();
    groups.sort();
    assert_eq!(groups, ["customer-7", "ff-doomed"]);
    worker.signal("TERM");
    assert!(worker.wait_exit(Duration::from_secs(15)).is_some());

    // The FIFO DLQ holds the jobs (moved with their groups and dedup ids); replay them to a FIFO
    // queue. Not to `jobs.fifo` itself: the stopped worker's last 20 s long poll is still open on
    // moto's side and would take (and hide) what arrives there, as it would on SQS.
    let replayed = create(
        &sqs,
        "replayed.fifo",
        &[(QueueAttributeName::FifoQueue, "true".to_owned())],
    )
    .await;
    // The original send of ff-doomed, as `enqueue` made it, is in this queue's deduplication
    // window too: a replay must not be dropped as its duplicate. (It stays in the queue: moto,
    // unlike SQS, forgets a deduplication id once its message is deleted.)
    let out = cli(&moto, &["enqueue", "-", "--queue-url", &replayed], &lines);
    assert!(out.status.success());
    let out = cli(
        &moto,
        &["dlq", "replay", "--dlq-url", &dlq, "--queue-url", &replayed],
        "",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let back = drain(&sqs, &replayed, 3, Duration::from_secs(10)).await;
    assert_eq!(
        back.len(),
        3,
        "the enqueued original and both replays: {text}"
    );
    for b in &back {
        // A replay groups by jobId (its place in the original group's order is gone anyway).
        assert_eq!(b.group.as_deref(), b.json["jobId"].as_str(), "{}", b.json);
    }
    assert!(
        drain(&sqs, &dlq, 1, Duration::from_secs(2))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_groups_jobs_are_worked_in_order_through_capacity_waits_and_groups_in_parallel() {
    let moto = Moto::start();
    let sqs = sqs_client(&moto.endpoint);
    let (jobs, results, dlq) = fifo_queues(&sqs, 50).await;
    // Two groups of four, sent interleaved; one receive may return several of a group.
    for i in 0..4 {
        for g in ["a", "b"] {
            sqs.send_message()
                .queue_url(&jobs)
                .message_body(start_job(&format!("{g}{i}")))
                .message_group_id(format!("customer-{g}"))
                .message_deduplication_id(format!("{g}{i}"))
                .send()
                .await
                .expect("send");
        }
    }
    // Room for two chats of 1.5 s: the groups' jobs keep running into the limit, so capacity
    // waits (held or given back) happen while the order must hold.
    let sim = start_sim(SimConfig {
        max_active_chats: 2,
        chat_seconds: 1.5,
        latency_ms: 50,
        connect_window_seconds: 0.0,
        ..generous_sim()
    })
    .await;
    let worker = Worker::start(&env_for(&moto, &sim, &jobs, &results, &dlq));
    let got = drain(&sqs, &results, 8, Duration::from_secs(120)).await;
    assert_eq!(got.len(), 8, "log:\n{}", worker.log());
    assert!(
        got.iter().all(|g| g.json["status"] == "succeeded"),
        "{:?}",
        got.iter().map(|g| &g.json).collect::<Vec<_>>()
    );
    // A FIFO results queue returns each group's results in the order they were published.
    for g in ["a", "b"] {
        let order: Vec<&str> = got
            .iter()
            .filter(|r| r.group.as_deref() == Some(&format!("customer-{g}")))
            .filter_map(|r| r.json["jobId"].as_str())
            .collect();
        let want: Vec<String> = (0..4).map(|i| format!("{g}{i}")).collect();
        assert_eq!(order, want, "group {g} in order");
    }
    assert!(
        sim.stats().operations.start_chat_contact.limit_exceeded > 0,
        "capacity ran out on the way"
    );
    assert_eq!(sim.stats().chats_created, 8, "no second chat");
    // Groups in parallel: the results of the two groups interleave.
    let first_b = got
        .iter()
        .position(|r| r.json["jobId"].as_str().is_some_and(|j| j.starts_with('b')));
    let last_a = got
        .iter()
        .rposition(|r| r.json["jobId"].as_str().is_some_and(|j| j.starts_with('a')));
    assert!(first_b < last_a, "groups interleave");
}
