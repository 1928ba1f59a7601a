//! Core decisions under paused tokio time (deterministic): idempotency creates nothing and
//! still takes a rate token, chat capacity frees up when chats end, duplicates of a source
//! contact are counted, partial failures replay the created chat, reset starts afresh.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Core, Outcome};
use crate::config::SimConfig;
use crate::error::ErrorCode;
use crate::validate::{self, Associate, StartChat};

fn config() -> SimConfig {
    SimConfig {
        start_chat_rate: 1000.0,
        start_chat_burst: 1000,
        chat_seconds: 10.0,
        seed: Some(7),
        ..SimConfig::default()
    }
}

fn chat(token: &str, source: &str) -> StartChat {
    let body = json!({
        "InstanceId": "inst", "ContactFlowId": "flow",
        "ParticipantDetails": {"DisplayName": "Ana"}, "ClientToken": token,
        "PersistentChat": {"RehydrationType": "ENTIRE_PAST_SESSION", "SourceContactId": source}
    });
    validate::start_chat(body.to_string().as_bytes()).expect("valid request")
}

fn assoc(token: &str) -> Associate {
    let body =
        json!({"RehydrationType": "FROM_SEGMENT", "SourceContactId": "s", "ClientToken": token});
    validate::associate("inst", "init", body.to_string().as_bytes()).expect("valid request")
}

fn ok(o: Outcome) -> Value {
    match o {
        Outcome::Ok(v) => serde_json::from_str(&v).expect("JSON body"),
        other => panic!("expected 200, got {other:?}"),
    }
}

fn code(o: Outcome) -> ErrorCode {
    match o {
        Outcome::Err(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn replay_returns_the_original_and_creates_nothing() {
    let core = Core::new(SimConfig {
        max_active_chats: 1,
        ..config()
    });
    let first = ok(core.start_chat(&chat("t1", "c1")));
    assert_eq!(first["ContinuedFromContactId"], "c1");
    // Capacity is 1 and used: a replay must still succeed, because it creates nothing.
    let again = ok(core.start_chat(&chat("t1", "c1")));
    assert_eq!(again, first);
    assert_eq!(
        code(core.start_chat(&chat("t2", "c2"))),
        ErrorCode::LimitExceeded
    );
    let s = core.stats();
    assert_eq!(s.chats_created, 1);
    assert_eq!(s.operations.start_chat_contact.ok, 1);
    assert_eq!(s.operations.start_chat_contact.idempotent_replays, 1);
    assert_eq!(s.operations.start_chat_contact.limit_exceeded, 1);
    assert_eq!(s.active_chats, 1);
}

#[tokio::test(start_paused = true)]
async fn same_token_with_other_parameters_is_invalid() {
    let core = Core::new(config());
    ok(core.start_chat(&chat("t1", "c1")));
    assert_eq!(
        code(core.start_chat(&chat("t1", "c2"))),
        ErrorCode::InvalidRequest
    );
    ok(core.associate(&assoc("t1")));
    // Tokens are per operation: the association's t1 is not the chat's t1.
    assert_eq!(core.stats().operations.start_chat_contact.invalid, 1);
}

#[tokio::test(start_paused = true)]
async fn replay_takes_a_rate_token() {
    let core = Core::new(SimConfig {
        start_chat_rate: 0.0,
        start_chat_burst: 2,
        ..config()
    });
    ok(core.start_chat(&chat("t1", "c1")));
    ok(core.start_chat(&chat("t1", "c1")));
    assert_eq!(
        code(core.start_chat(&chat("t1", "c1"))),
        ErrorCode::TooManyRequests
    );
    let s = core.stats().operations.start_chat_contact;
    assert_eq!((s.ok, s.idempotent_replays, s.throttled), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn chats_end_after_chat_seconds() {
    let core = Core::new(SimConfig {
        max_active_chats: 2,
        ..config()
    });
    ok(core.start_chat(&chat("a", "c1")));
    ok(core.start_chat(&chat("b", "c2")));
    assert_eq!(
        code(core.start_chat(&chat("c", "c3"))),
        ErrorCode::LimitExceeded
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(core.stats().active_chats, 0);
    ok(core.start_chat(&chat("c", "c3")));
    let s = core.stats();
    assert_eq!((s.active_chats, s.peak_active_chats), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn capacity_is_per_instance() {
    let core = Core::new(SimConfig {
        max_active_chats: 1,
        ..config()
    });
    ok(core.start_chat(&chat("a", "c1")));
    let mut other = chat("b", "c2");
    other.instance_id = "other".into();
    ok(core.start_chat(&other));
    assert_eq!(core.stats().active_chats, 2);
}

#[tokio::test(start_paused = true)]
async fn second_chat_for_a_source_contact_is_counted() {
    let core = Core::new(config());
    ok(core.start_chat(&chat("a", "c1")));
    ok(core.start_chat(&chat("a", "c1"))); // replay: not a duplicate
    // New token, same source, while the first resumed chat of the session is active: refused
    // (only ended sessions rehydrate).
    assert_eq!(
        code(core.start_chat(&chat("b", "c1"))),
        ErrorCode::InvalidRequest
    );
    ok(core.start_chat(&chat("c", "c2")));
    // Once it ended, the same source may be resumed again: a duplicate.
    tokio::time::advance(Duration::from_secs(11)).await;
    ok(core.start_chat(&chat("b", "c1")));
    let s = core.stats();
    assert_eq!((s.chats_created, s.duplicate_source_chats), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn unknown_instance_and_missing_contacts_are_not_found() {
    let core = Core::new(SimConfig {
        instance_ids: vec!["inst".into()],
        ..config()
    });
    let mut c = chat("a", "c1");
    c.instance_id = "nope".into();
    assert_eq!(code(core.start_chat(&c)), ErrorCode::ResourceNotFound);
    assert_eq!(
        code(core.start_chat(&chat("b", "missing-1"))),
        ErrorCode::ResourceNotFound
    );
    let mut a = assoc("x");
    a.initial_contact_id = "missing-2".into();
    assert_eq!(code(core.associate(&a)), ErrorCode::ResourceNotFound);
    let s = core.stats();
    assert_eq!(s.operations.start_chat_contact.not_found, 2);
    assert_eq!(
        s.operations.create_persistent_contact_association.not_found,
        1
    );
    assert_eq!(s.chats_created, 0);
}

#[tokio::test(start_paused = true)]
async fn failures_after_create_replay_the_created_chat() {
    let core = Core::new(SimConfig {
        fail_rate: 1.0,
        fail_after_create_ratio: 1.0,
        ..config()
    });
    assert_eq!(
        code(core.start_chat(&chat("t", "c1"))),
        ErrorCode::InternalService
    );
    // The chat exists: the retry with the same token gets it, without a second chat.
    let replay = ok(core.start_chat(&chat("t", "c1")));
    assert_eq!(replay["ContinuedFromContactId"], "c1");
    let s = core.stats();
    assert_eq!(
        (
            s.chats_created,
            s.operations.start_chat_contact.server_error
        ),
        (1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn failures_before_create_leave_nothing_behind() {
    let core = Core::new(SimConfig {
        drop_rate: 1.0,
        fail_after_create_ratio: 0.0,
        ..config()
    });
    assert!(matches!(core.start_chat(&chat("t", "c1")), Outcome::Drop));
    assert!(matches!(core.associate(&assoc("t")), Outcome::Drop));
    let s = core.stats();
    assert_eq!(s.chats_created, 0);
    assert_eq!(s.operations.start_chat_contact.dropped, 1);
    assert_eq!(
        s.operations.create_persistent_contact_association.dropped,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn background_caller_shares_the_start_chat_bucket() {
    let core = Core::new(SimConfig {
        start_chat_rate: 0.0,
        start_chat_burst: 3,
        ..config()
    });
    assert!(core.background_call());
    assert!(core.background_call());
    ok(core.start_chat(&chat("a", "c1")));
    assert!(!core.background_call());
    assert_eq!(
        code(core.start_chat(&chat("b", "c2"))),
        ErrorCode::TooManyRequests
    );
    let s = core.stats();
    assert_eq!(
        (
            s.background.attempted,
            s.background.accepted,
            s.background.refused
        ),
        (3, 2, 1)
    );
    assert_eq!(s.timeline[0].background.accepted, 2);
    assert_eq!(s.timeline[0].start_chat_contact.refused, 1);
}

#[tokio::test(start_paused = true)]
async fn timeline_counts_per_second_from_reset() {
    let core = Core::new(config());
    ok(core.start_chat(&chat("a", "c1")));
    tokio::time::advance(Duration::from_millis(2500)).await;
    ok(core.associate(&assoc("a")));
    let t = core.stats().timeline;
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].start_chat_contact.accepted, 1);
    assert_eq!(t[2].create_persistent_contact_association.accepted, 1);
    core.reset();
    let s = core.stats();
    assert!(s.timeline.is_empty());
    assert_eq!((s.chats_created, s.active_chats), (0, 0));
    // Tokens are forgotten too: the same token now creates a new chat.
    ok(core.start_chat(&chat("a", "c9")));
    assert_eq!(core.stats().chats_created, 1);
}

#[tokio::test(start_paused = true)]
async fn client_tokens_expire_after_the_ttl() {
    let core = Core::new(SimConfig {
        idempotency_ttl_seconds: 5.0,
        ..config()
    });
    ok(core.start_chat(&chat("t", "c1")));
    tokio::time::advance(Duration::from_secs(6)).await;
    ok(core.start_chat(&chat("t", "c2")));
    assert_eq!(core.stats().chats_created, 2);
}
