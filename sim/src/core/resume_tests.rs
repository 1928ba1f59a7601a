//! Sessions, the connect window and the account without custom durations, under paused time.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Core, Outcome};
use crate::config::SimConfig;
use crate::error::ErrorCode;
use crate::validate::{self, StartChat};

fn config() -> SimConfig {
    SimConfig {
        start_chat_rate: 1000.0,
        start_chat_burst: 1000,
        chat_seconds: 600.0,
        connect_window_seconds: 300.0,
        past_sessions: vec!["C1>C2>C3".into(), "D1>D2".into()],
        seed: Some(3),
        ..SimConfig::default()
    }
}

fn chat(token: &str, rehydration: &str, source: &str) -> StartChat {
    chat_with(
        token,
        json!({"RehydrationType": rehydration, "SourceContactId": source}),
        json!({}),
    )
}

fn chat_with(token: &str, pc: Value, extra: Value) -> StartChat {
    let mut body = json!({
        "InstanceId": "inst", "ContactFlowId": "flow",
        "ParticipantDetails": {"DisplayName": "Ana"}, "ClientToken": token,
        "PersistentChat": pc
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    validate::start_chat(body.to_string().as_bytes()).expect("valid request")
}

fn ok(o: Outcome) -> Value {
    match o {
        Outcome::Ok(v) => serde_json::from_str(&v).expect("JSON body"),
        other => panic!("expected 200, got {other:?}"),
    }
}

fn err(o: Outcome) -> (ErrorCode, String) {
    match o {
        Outcome::Err(e) => (e.code, e.message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn entire_past_session_continues_from_the_last_segment_from_segment_from_the_named_one() {
    let core = Core::new(config());
    let a = ok(core.start_chat(&chat("a", "ENTIRE_PAST_SESSION", "C1")));
    assert_eq!(a["ContinuedFromContactId"], "C3");
    let b = ok(core.start_chat(&chat("b", "FROM_SEGMENT", "D1")));
    assert_eq!(b["ContinuedFromContactId"], "D1");
    // The new chat joined the session as its newest segment.
    let id = a["ContactId"].as_str().unwrap_or_default();
    let d = core.describe_contact(id).unwrap_or_default();
    assert_eq!(d["InitialContactId"], "C1");
    assert_eq!(d["SessionContactIds"], json!(["C1", "C2", "C3", id]));
    assert_eq!(d["State"], "ACTIVE");
    // An unknown contact is an ended one-segment session.
    let c = ok(core.start_chat(&chat("c", "ENTIRE_PAST_SESSION", "x-9")));
    assert_eq!(c["ContinuedFromContactId"], "x-9");
}

#[tokio::test(start_paused = true)]
async fn active_sessions_and_voice_contacts_are_refused_replays_are_not() {
    let core = Core::new(config());
    ok(core.start_chat(&chat("a", "ENTIRE_PAST_SESSION", "C1")));
    // Any segment of that session, either type: the session has an active chat.
    for (t, r, s) in [
        ("b", "ENTIRE_PAST_SESSION", "C1"),
        ("c", "FROM_SEGMENT", "C2"),
    ] {
        let (code, msg) = err(core.start_chat(&chat(t, r, s)));
        assert_eq!(code, ErrorCode::InvalidRequest);
        assert!(msg.contains("still active"), "{msg}");
    }
    // The replay of the chat that made it active still answers.
    ok(core.start_chat(&chat("a", "ENTIRE_PAST_SESSION", "C1")));
    let (code, msg) = err(core.start_chat(&chat("d", "ENTIRE_PAST_SESSION", "active-1")));
    assert_eq!(code, ErrorCode::InvalidRequest);
    assert!(msg.contains("still active"), "{msg}");
    let (code, msg) = err(core.start_chat(&chat("e", "FROM_SEGMENT", "voice-1")));
    assert_eq!(code, ErrorCode::InvalidRequest);
    assert!(msg.contains("not a chat"), "{msg}");
    // Refusals take no rate token and create nothing.
    assert_eq!(core.stats().chats_created, 1);
}

#[tokio::test(start_paused = true)]
async fn a_chat_nobody_connects_to_ends_at_its_window_a_connected_one_lives() {
    let core = Core::new(config());
    let lone = ok(core.start_chat(&chat("a", "FROM_SEGMENT", "u1")));
    let joined = ok(core.start_chat(&chat("b", "FROM_SEGMENT", "u2")));
    let token = joined["ParticipantToken"].as_str().unwrap_or_default();
    tokio::time::advance(Duration::from_secs(299)).await;
    assert!(core.connect_participant(token).is_ok());
    assert_eq!(core.stats().active_chats, 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    let s = core.stats();
    assert_eq!((s.active_chats, s.chats_abandoned), (1, 1));
    let lone_token = lone["ParticipantToken"].as_str().unwrap_or_default();
    let (code, _) = err(Outcome::Err(
        core.connect_participant(lone_token).expect_err("403"),
    ));
    assert_eq!(code, ErrorCode::AccessDenied);
    // The replay after the window is the stored response: the same, now useless, token.
    let replay = ok(core.start_chat(&chat("a", "FROM_SEGMENT", "u1")));
    assert_eq!(replay, lone);
    // The abandoned chat's session has ended: it may be resumed again.
    ok(core.start_chat(&chat("c", "FROM_SEGMENT", "u1")));
    // The connected chat lives its lifetime (600 s), then ends; the new one is abandoned at 601.
    tokio::time::advance(Duration::from_secs(298)).await;
    assert_eq!(core.stats().active_chats, 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    let s = core.stats();
    assert_eq!((s.active_chats, s.chats_abandoned), (0, 2));
    assert!(core.connect_participant(token).is_err());
}

#[tokio::test(start_paused = true)]
async fn window_zero_keeps_every_chat_for_its_lifetime() {
    let core = Core::new(SimConfig {
        connect_window_seconds: 0.0,
        ..config()
    });
    ok(core.start_chat(&chat("a", "FROM_SEGMENT", "u1")));
    tokio::time::advance(Duration::from_secs(599)).await;
    let s = core.stats();
    assert_eq!((s.active_chats, s.chats_abandoned), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_account_without_custom_durations_refuses_chat_duration() {
    let core = Core::new(SimConfig {
        no_custom_chat_durations: true,
        ..config()
    });
    let pc = json!({"RehydrationType": "FROM_SEGMENT", "SourceContactId": "u1"});
    let (code, msg) = err(core.start_chat(&chat_with(
        "a",
        pc.clone(),
        json!({"ChatDurationInMinutes": 60}),
    )));
    assert_eq!(code, ErrorCode::InvalidRequest);
    assert!(msg.contains("ChatDurationInMinutes"), "{msg}");
    ok(core.start_chat(&chat_with("b", pc, json!({}))));
}
