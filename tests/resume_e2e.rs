//! End-to-end tests of what a resume needs from real Connect (issue 13): the participant token's
//! connect window, the StartChatContact members a resume uses, accounts without custom chat
//! durations, and chat-session semantics. The real worker binary against moto's SQS and
//! connect-sim over HTTP, as in `worker_e2e.rs`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use connect_sim::SimConfig;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const WAIT: Duration = Duration::from_secs(60);

fn job(id: &str, extra: Value) -> String {
    let mut v = json!({"jobId": id, "sourceContactId": format!("past-{id}"),
                       "participant": {"displayName": "Ana"}});
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v.to_string()
}

fn rfc3339(v: &Value) -> OffsetDateTime {
    let s = v.as_str().unwrap_or_default();
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
}

/// CreateParticipantConnection as a chat client calls it: `POST /participant/connection` with the
/// participant token in `X-Amz-Bearer`. Returns the HTTP status.
fn connect_participant(sim: &connect_sim::SimHandle, token: &str) -> u16 {
    let body = r#"{"Type":["WEBSOCKET","CONNECTION_CREDENTIALS"],"ConnectParticipant":true}"#;
    let mut s = TcpStream::connect(sim.addr()).expect("connect to the sim");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "POST /participant/connection HTTP/1.1\r\nHost: localhost\r\nX-Amz-Bearer: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_chat_carries_connect_by_and_only_a_connected_chat_outlives_its_window() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(SimConfig {
        connect_window_seconds: 2.0,
        chat_seconds: 60.0,
        ..generous_sim()
    })
    .await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    queues
        .send_jobs(&[start_job("win-1"), start_job("win-2")])
        .await;
    let results = queues.results(2, WAIT).await;
    assert_eq!(results.len(), 2, "log:\n{}", worker.log());
    for r in &results {
        assert_eq!(r.status(), "succeeded", "{}", r.body);
        // 300 s from the Connect response, which came just before completedAt.
        let left = rfc3339(&r.json["connectBy"]) - rfc3339(&r.json["completedAt"]);
        assert!(
            left <= time::Duration::seconds(300) && left > time::Duration::seconds(299),
            "{left}: {}",
            r.body
        );
    }
    // The client of the first connects in time; nobody connects to the second.
    let token = results[0].json["participantToken"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(connect_participant(&sim, token), 200);
    assert!(
        eventually(Duration::from_secs(10), || sim.stats().chats_abandoned == 1).await,
        "{:?}",
        sim.stats()
    );
    assert_eq!(sim.stats().active_chats, 1);
    let lone = results[1].json["participantToken"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(connect_participant(&sim, lone), 403, "too late to connect");
    let contact = results[0].json["contactId"].as_str().unwrap_or_default();
    assert_eq!(sim.contact(contact).unwrap_or_default()["Connected"], true);
    // Both results were observed from Connect response to publishing, well inside the window.
    let used = "resume_chat_connect_window_used_seconds_count";
    assert!(eventually(Duration::from_secs(5), || worker.metric(used) == 2.0).await);
    assert_eq!(
        worker.metric(r#"resume_chat_connect_window_used_seconds_bucket{le="60"}"#),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_enough_window_left_is_never_published_as_a_success() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let mut env = worker_env(&moto, &queues, &sim);
    // A margin of the whole window: no token is ever fresh enough when its result goes out.
    set(&mut env, "CONNECT_MARGIN_SECONDS", "300");
    let worker = Worker::start(&env);
    queues
        .send_jobs(&[start_job("late-1"), associate_job("late-2")])
        .await;
    let results = queues.results(2, WAIT).await;
    assert_eq!(results.len(), 2, "log:\n{}", worker.log());
    let start = results
        .iter()
        .find(|r| r.job_id() == Some("late-1"))
        .expect("start result");
    assert_eq!(start.status(), "failed", "{}", start.body);
    assert_eq!(start.code(), "ConnectWindowExpired");
    assert!(
        start.json.get("participantToken").is_none(),
        "{}",
        start.body
    );
    let created = sim.stats().chats_created;
    assert_eq!(created, 1, "the chat was created once, and not again");
    assert!(start.message().contains("new jobId"), "{}", start.message());
    // The associate job has no token and no window.
    let assoc = results
        .iter()
        .find(|r| r.job_id() == Some("late-2"))
        .expect("associate result");
    assert_eq!(assoc.status(), "succeeded", "{}", assoc.body);
    assert!(assoc.json.get("connectBy").is_none());
    let expired =
        r#"resume_chat_jobs_completed_total{status="failed",code="ConnectWindowExpired"}"#;
    assert!(eventually(Duration::from_secs(5), || worker.metric(expired) == 1.0).await);
    // Settled: the job is deleted, not retried for another replay of the same dead token.
    let mut empty = false;
    for _ in 0..100 {
        if queues.depth(&queues.jobs).await == (0, 0) {
            empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(empty, "the jobs queue still holds the job");
    assert_eq!(
        sim.stats().operations.start_chat_contact.idempotent_replays,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_members_reach_connect_and_bad_ones_fail_naming_the_field() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(generous_sim()).await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    let guide_types = json!([
        "text/plain",
        "application/vnd.amazonaws.connect.message.interactive",
        "application/vnd.amazonaws.connect.message.interactive.response"
    ]);
    let good = job(
        "mem-1",
        json!({
            "disconnectOnCustomerExit": ["AGENT"],
            "participantConfiguration": {"responseMode": "COMPLETE"},
            "supportedMessagingContentTypes": guide_types,
            "segmentAttributes": {
                "connect:Subtype": {"valueString": "connect:Guide"},
                "connect:Tags": {"valueList": [{"valueString": "vip"}, {"valueInteger": 3}]},
                "connect:Queue": {"valueArn": "arn:aws:connect:us-east-1:123456789012:instance/i/queue/q"},
                "order": {"valueMap": {"id": {"valueInteger": 42}}}
            }
        }),
    );
    let guide_without_types = job(
        "mem-2",
        json!({"segmentAttributes": {"connect:Subtype": {"valueString": "connect:Guide"}}}),
    );
    let list_on_a_user_key = job(
        "mem-3",
        json!({"segmentAttributes": {"order": {"valueList": []}}}),
    );
    let bad_mode = job(
        "mem-4",
        json!({"participantConfiguration": {"responseMode": "FAST"}}),
    );
    queues
        .send_jobs(&[good, guide_without_types, list_on_a_user_key, bad_mode])
        .await;
    let results = queues.results(4, WAIT).await;
    assert_eq!(results.len(), 4, "log:\n{}", worker.log());
    let by = |id: &str| {
        results
            .iter()
            .find(|r| r.job_id() == Some(id))
            .cloned()
            .unwrap_or_else(|| panic!("no result for {id}"))
    };
    let ok = by("mem-1");
    assert_eq!(ok.status(), "succeeded", "{}", ok.body);
    // What Connect received, read back from the contact it created.
    let contact = sim
        .contact(ok.json["contactId"].as_str().unwrap_or_default())
        .expect("the sim knows the contact");
    assert_eq!(contact["DisconnectOnCustomerExit"], json!(["AGENT"]));
    assert_eq!(
        contact["ParticipantConfiguration"],
        json!({"ResponseMode": "COMPLETE"})
    );
    let seg = &contact["SegmentAttributes"];
    assert_eq!(
        seg["connect:Subtype"],
        json!({"ValueString": "connect:Guide"})
    );
    assert_eq!(
        seg["connect:Tags"],
        json!({"ValueList": [{"ValueString": "vip"}, {"ValueInteger": 3}]})
    );
    assert_eq!(
        seg["connect:Queue"]["ValueArn"],
        "arn:aws:connect:us-east-1:123456789012:instance/i/queue/q"
    );
    assert_eq!(
        seg["order"],
        json!({"ValueMap": {"id": {"ValueInteger": 42}}})
    );
    for (id, field) in [
        ("mem-2", "supportedMessagingContentTypes"),
        ("mem-3", "segmentAttributes.order.valueList"),
        ("mem-4", "participantConfiguration.responseMode"),
    ] {
        let r = by(id);
        assert_eq!(r.code(), "InvalidJob", "{}", r.body);
        assert!(
            r.message().starts_with(&format!("field `{field}` ")),
            "{}",
            r.body
        );
    }
    // Only the good job reached Connect.
    assert_eq!(sim.stats().operations.start_chat_contact.ok, 1);
    assert_eq!(sim.stats().operations.start_chat_contact.invalid, 0);
}

#[test]
fn validate_explains_each_new_error() {
    let dir = repo_root().join("target/test-tmp");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join(format!("members-{}.jsonl", std::process::id()));
    let lines = [
        job("v-1", json!({"disconnectOnCustomerExit": ["CUSTOMER"]})),
        job(
            "v-2",
            json!({"segmentAttributes": {"bad key!": {"valueString": "x"}}}),
        ),
        job(
            "v-3",
            json!({"segmentAttributes": {"connect:Subtype": {"valueString": "connect:Guide"}}}),
        ),
        job("v-4", json!({"participantConfiguration": "COMPLETE"})),
    ];
    std::fs::write(&file, lines.join("\n")).expect("write");
    let path = file.to_str().unwrap_or_default();
    // `enqueue` checks the file the same way and sends nothing when a line is bad (the queue
    // URL points nowhere: it is never called).
    for args in [vec!["validate", path], vec!["enqueue", path]] {
        let out = std::process::Command::new(worker_binary())
            .args(&args)
            .env_clear()
            .env("CONNECT_INSTANCE_ID", "i")
            .env("CONNECT_CONTACT_FLOW_ID", "f")
            .env("JOBS_QUEUE_URL", "http://127.0.0.1:9/000000000000/jobs")
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .expect("run the command");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?}: {text}");
        explains_each(&text);
    }
    let _ = std::fs::remove_file(&file);
}

fn explains_each(text: &str) {
    for needle in [
        "field `disconnectOnCustomerExit[0]` must be AGENT",
        "[\"AGENT\"]: the agent is disconnected when the customer leaves",
        "field `segmentAttributes.bad key!` has a key with characters other than",
        "valueString (0–1,024 characters)",
        "field `supportedMessagingContentTypes` must contain",
        "both interactive types when segmentAttributes sets connect:Subtype to connect:Guide",
        "field `participantConfiguration` must be an object",
        "\"INCREMENTAL\" or \"COMPLETE\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_custom_durations_fails_the_job_naming_chat_duration() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(SimConfig {
        no_custom_chat_durations: true,
        ..generous_sim()
    })
    .await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    queues
        .send_jobs(&[
            job("dur-1", json!({"chatDurationInMinutes": 120})),
            job("dur-2", json!({})),
        ])
        .await;
    let results = queues.results(2, WAIT).await;
    assert_eq!(results.len(), 2, "log:\n{}", worker.log());
    let with = results
        .iter()
        .find(|r| r.job_id() == Some("dur-1"))
        .expect("dur-1");
    assert_eq!(with.status(), "failed", "{}", with.body);
    assert_eq!(with.code(), "ChatDurationNotSupported");
    assert!(
        with.message().starts_with(
            "field `chatDurationInMinutes` (120) is not supported by this Connect account"
        ),
        "{}",
        with.message()
    );
    assert!(with.message().contains("leave chatDurationInMinutes out"));
    let without = results
        .iter()
        .find(|r| r.job_id() == Some("dur-2"))
        .expect("dur-2");
    assert_eq!(without.status(), "succeeded", "{}", without.body);
    // Refused once and not retried: a 400 fails the job.
    assert_eq!(sim.stats().operations.start_chat_contact.invalid, 1);
    let series =
        r#"resume_chat_jobs_completed_total{status="failed",code="ChatDurationNotSupported"}"#;
    assert!(eventually(Duration::from_secs(5), || worker.metric(series) == 1.0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_continue_from_the_right_segment_and_live_or_voice_sources_are_refused() {
    let moto = Moto::start();
    let queues = Queues::create(&moto, 30, 5).await;
    let sim = start_sim(SimConfig {
        past_sessions: vec![
            "a-c1>a-c2>a-c3".into(),
            "b-c1>b-c2>b-c3".into(),
            "c-c1>c-c2".into(),
        ],
        ..generous_sim()
    })
    .await;
    let worker = Worker::start(&worker_env(&moto, &queues, &sim));
    let src = |id: &str, source: &str, rehydration: &str| {
        job(
            id,
            json!({"sourceContactId": source, "rehydrationType": rehydration}),
        )
    };
    let associate = json!({"jobId": "s-assoc", "action": "associatePersistentContact",
        "sourceContactId": "c-c1", "initialContactId": "now-1",
        "rehydrationType": "ENTIRE_PAST_SESSION"})
    .to_string();
    queues
        .send_jobs(&[
            src("s-entire", "a-c1", "ENTIRE_PAST_SESSION"),
            src("s-segment", "b-c2", "FROM_SEGMENT"),
            src("s-active", "active-chat-9", "ENTIRE_PAST_SESSION"),
            src("s-voice", "voice-call-9", "FROM_SEGMENT"),
            associate,
        ])
        .await;
    let results = queues.results(5, WAIT).await;
    assert_eq!(results.len(), 5, "log:\n{}", worker.log());
    let by = |id: &str| {
        results
            .iter()
            .find(|r| r.job_id() == Some(id))
            .cloned()
            .unwrap_or_else(|| panic!("no result for {id}"))
    };
    // ENTIRE_PAST_SESSION from the initial contact continues from the session's last segment.
    let entire = by("s-entire");
    assert_eq!(entire.status(), "succeeded", "{}", entire.body);
    assert_eq!(entire.json["continuedFromContactId"], "a-c3");
    let new = entire.json["contactId"].as_str().unwrap_or_default();
    let described = sim.contact(new).unwrap_or_default();
    assert_eq!(described["InitialContactId"], "a-c1");
    assert_eq!(
        described["SessionContactIds"],
        json!(["a-c1", "a-c2", "a-c3", new])
    );
    // FROM_SEGMENT continues from the named segment, not the last one.
    let segment = by("s-segment");
    assert_eq!(
        segment.json["continuedFromContactId"], "b-c2",
        "{}",
        segment.body
    );
    // The association follows the same rule.
    assert_eq!(by("s-assoc").json["continuedFromContactId"], "c-c2");
    for (id, why) in [("s-active", "still active"), ("s-voice", "not a chat")] {
        let r = by(id);
        assert_eq!(r.status(), "failed", "{}", r.body);
        assert_eq!(r.code(), "InvalidRequestException", "{}", r.body);
        assert!(r.message().contains(why), "{}", r.body);
    }
    // A second resume of the session whose resumed chat is live now is refused as well.
    queues
        .send_jobs(&[src("s-again", "a-c2", "FROM_SEGMENT")])
        .await;
    let again = queues.results(1, WAIT).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].code(),
        "InvalidRequestException",
        "{}",
        again[0].body
    );
    assert!(again[0].message().contains(new), "{}", again[0].body);
}
