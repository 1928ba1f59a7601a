//! Validation rules, one case per rule: each invalid request must fail with the expected
//! code and a message naming the member; the valid base request must pass.

use serde_json::{Value, json};

use super::*;
use crate::error::ErrorCode;

fn base() -> Value {
    json!({
        "InstanceId": "inst-1",
        "ContactFlowId": "flow-1",
        "ParticipantDetails": {"DisplayName": "Ana"},
        "ClientToken": "tok-1"
    })
}

fn with(patch: Value) -> Vec<u8> {
    let mut v = base();
    if let (Value::Object(m), Value::Object(p)) = (&mut v, patch) {
        for (k, val) in p {
            if val.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, val);
            }
        }
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

fn err(body: &[u8]) -> (ErrorCode, String) {
    match start_chat(body) {
        Ok(_) => panic!("expected an error for {}", String::from_utf8_lossy(body)),
        Err(e) => (e.code, e.message),
    }
}

#[test]
fn valid_request_passes_and_keeps_what_the_sim_needs() {
    let body = with(json!({
        "PersistentChat": {"RehydrationType": "ENTIRE_PAST_SESSION", "SourceContactId": "c-1"},
        "Attributes": {"tier": "gold", "a-b_c": ""},
        "InitialMessage": {"ContentType": "text/plain", "Content": "hi"},
        "SupportedMessagingContentTypes": ["text/markdown", "text/plain"],
        "ChatDurationInMinutes": 60,
        "ConnectionTypes": ["WEBSOCKET"],
        "UnknownFutureMember": 1
    }));
    let r = start_chat(&body).expect("valid");
    assert_eq!(r.instance_id, "inst-1");
    assert_eq!(r.client_token.as_deref(), Some("tok-1"));
    assert_eq!(
        r.persistent_chat.map(|p| p.source_contact_id),
        Some("c-1".to_string())
    );
    assert!(r.want_websocket && !r.want_connection_credentials);
    // The fingerprint ignores ClientToken and member order, and sees every other change.
    let mut v: Value = serde_json::from_slice(&body).unwrap_or_default();
    v["ClientToken"] = json!("another");
    let same = start_chat(&serde_json::to_vec(&v).unwrap_or_default()).expect("valid");
    assert_eq!(same.fingerprint, r.fingerprint);
    let reordered = br#"{"ParticipantDetails":{"DisplayName":"Ana"},"ContactFlowId":"flow-1","InstanceId":"inst-1"}"#;
    let ordered = br#"{"InstanceId":"inst-1","ContactFlowId":"flow-1","ParticipantDetails":{"DisplayName":"Ana"}}"#;
    assert_eq!(
        start_chat(reordered).expect("valid").fingerprint,
        start_chat(ordered).expect("valid").fingerprint
    );
    v["Attributes"]["tier"] = json!("silver");
    let other = start_chat(&serde_json::to_vec(&v).unwrap_or_default()).expect("valid");
    assert_ne!(other.fingerprint, r.fingerprint);
}

#[test]
fn each_rule_fails_with_its_code_and_names_the_member() {
    use ErrorCode::{InvalidParameter as P, InvalidRequest as R};
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(Value, ErrorCode, &str)> = vec![
        (json!({"InstanceId": null}), P, "InstanceId"),
        (json!({"InstanceId": long(101)}), P, "InstanceId"),
        (json!({"InstanceId": 5}), P, "InstanceId"),
        (json!({"ContactFlowId": null}), P, "ContactFlowId"),
        (json!({"ContactFlowId": long(501)}), P, "ContactFlowId"),
        (json!({"ParticipantDetails": null}), P, "ParticipantDetails"),
        (
            json!({"ParticipantDetails": {}}),
            P,
            "ParticipantDetails.DisplayName",
        ),
        (
            json!({"ParticipantDetails": {"DisplayName": long(257)}}),
            P,
            "DisplayName",
        ),
        (json!({"ClientToken": long(501)}), P, "ClientToken"),
        (
            json!({"ChatDurationInMinutes": 59}),
            P,
            "ChatDurationInMinutes",
        ),
        (
            json!({"ChatDurationInMinutes": 10_081}),
            P,
            "ChatDurationInMinutes",
        ),
        (
            json!({"ChatDurationInMinutes": "60"}),
            P,
            "ChatDurationInMinutes",
        ),
        (
            json!({"SupportedMessagingContentTypes": ["text/markdown"]}),
            R,
            "text/plain",
        ),
        (
            json!({"SupportedMessagingContentTypes": ["text/plain", "image/png"]}),
            R,
            "SupportedMessagingContentTypes",
        ),
        (
            json!({"InitialMessage": {"ContentType": "text/plain"}}),
            P,
            "InitialMessage.Content",
        ),
        (
            json!({"InitialMessage": {"ContentType": "text/plain", "Content": ""}}),
            P,
            "InitialMessage.Content",
        ),
        (
            json!({"InitialMessage": {"ContentType": "text/plain", "Content": long(1025)}}),
            R,
            "InitialMessage.Content",
        ),
        (
            json!({"InitialMessage": {"ContentType": "text/markdown", "Content": long(1025)}}),
            R,
            "InitialMessage.Content",
        ),
        (
            json!({"InitialMessage": {"ContentType": "application/json", "Content": long(12_001)}}),
            R,
            "InitialMessage.Content",
        ),
        (
            json!({"InitialMessage": {"ContentType": "application/vnd.amazonaws.connect.message.interactive.response", "Content": long(12_289)}}),
            R,
            "InitialMessage.Content",
        ),
        (
            json!({"InitialMessage": {"ContentType": "image/png", "Content": "x"}}),
            R,
            "InitialMessage.ContentType",
        ),
        (
            json!({"PersistentChat": {"RehydrationType": "ALL", "SourceContactId": "c"}}),
            P,
            "PersistentChat.RehydrationType",
        ),
        (
            json!({"PersistentChat": {"RehydrationType": "FROM_SEGMENT"}}),
            R,
            "PersistentChat.SourceContactId",
        ),
        (
            json!({"PersistentChat": {"RehydrationType": "FROM_SEGMENT", "SourceContactId": long(257)}}),
            P,
            "PersistentChat.SourceContactId",
        ),
        (
            json!({"PersistentChat": {"RehydrationType": "FROM_SEGMENT", "SourceContactId": "c"}, "RelatedContactId": "r"}),
            R,
            "RelatedContactId",
        ),
        (json!({"Attributes": {"bad key": "v"}}), P, "Attributes"),
        (json!({"Attributes": {"k": 1}}), P, "Attributes.k"),
        (
            json!({"Attributes": {"a": long(20_000), "b": long(13_000)}}),
            R,
            "Attributes",
        ),
        (json!({"CustomerId": ""}), P, "CustomerId"),
        (json!({"ConnectionTypes": ["PIGEON"]}), P, "ConnectionTypes"),
        (
            json!({"DisconnectOnCustomerExit": ["AGENT", "AGENT"]}),
            P,
            "DisconnectOnCustomerExit",
        ),
    ];
    for (patch, code, member) in cases {
        let body = with(patch.clone());
        let (got, message) = err(&body);
        assert_eq!(got, code, "{patch}: {message}");
        assert!(
            message.contains(member),
            "{patch}: '{message}' should name {member}"
        );
    }
}

#[test]
fn limits_count_characters_not_bytes() {
    // 1,024 two-byte characters is within the text/plain limit.
    let body =
        with(json!({"InitialMessage": {"ContentType": "text/plain", "Content": "é".repeat(1024)}}));
    assert!(start_chat(&body).is_ok());
}

#[test]
fn attributes_exactly_at_the_size_limit_pass() {
    let body = with(json!({"Attributes": {"k": "v".repeat(32_767)}}));
    assert!(start_chat(&body).is_ok());
}

#[test]
fn garbage_bodies_are_invalid_requests() {
    for body in [&b"{"[..], b"[1]", b"\"x\"", b"\xff\xfe"] {
        assert_eq!(err(body).0, ErrorCode::InvalidRequest);
    }
}

#[test]
fn associate_validates_path_and_body() {
    let ok =
        br#"{"RehydrationType":"ENTIRE_PAST_SESSION","SourceContactId":"s","ClientToken":"t"}"#;
    let r = associate("inst", "init", ok).expect("valid");
    assert_eq!(r.source_contact_id, "s");
    let other = associate("inst", "init2", ok).expect("valid");
    assert_ne!(
        r.fingerprint, other.fingerprint,
        "path labels are parameters"
    );

    let long_inst = "i".repeat(101);
    let long_init = "c".repeat(257);
    let cases: Vec<(&str, &str, &[u8], &str)> = vec![
        (
            "inst",
            "init",
            br#"{"SourceContactId":"s"}"#,
            "RehydrationType",
        ),
        (
            "inst",
            "init",
            br#"{"RehydrationType":"X","SourceContactId":"s"}"#,
            "RehydrationType",
        ),
        (
            "inst",
            "init",
            br#"{"RehydrationType":"FROM_SEGMENT"}"#,
            "SourceContactId",
        ),
        ("inst", "init", b"", "RehydrationType"),
        (&long_inst, "init", ok, "InstanceId"),
        ("inst", &long_init, ok, "InitialContactId"),
    ];
    for (inst, init, body, member) in cases {
        match associate(inst, init, body) {
            Ok(_) => panic!("expected an error naming {member}"),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::InvalidParameter, "{}", e.message);
                assert!(
                    e.message.contains(member),
                    "'{}' should name {member}",
                    e.message
                );
            }
        }
    }
}

#[test]
fn segment_attributes_accept_every_value_form() {
    let body = with(json!({
        "SegmentAttributes": {
            "connect:Subtype": {"ValueString": "connect:Guide"},
            "connect:List": {"ValueList": [{"ValueInteger": 1}, {"ValueMap": {"a": {"ValueString": ""}}}]},
            "connect:Arn": {"ValueArn": "arn:aws:connect:us-east-1:123456789012:instance/i"},
            "tier": {"ValueMap": {"level": {"ValueInteger": -2147483648i64}}}
        },
        "SupportedMessagingContentTypes": [
            "text/plain",
            "application/vnd.amazonaws.connect.message.interactive",
            "application/vnd.amazonaws.connect.message.interactive.response"
        ]
    }));
    assert!(start_chat(&body).is_ok());
}

#[test]
fn segment_attributes_are_validated_as_the_model_says() {
    let cases: Vec<(Value, ErrorCode, &str)> = vec![
        (
            json!({"bad key!": {"ValueString": "x"}}),
            ErrorCode::InvalidParameter,
            "bad key!",
        ),
        (
            json!({"k".repeat(129): {"ValueString": "x"}}),
            ErrorCode::InvalidParameter,
            "length less than or equal to 128",
        ),
        (
            json!({"t": {"ValueString": "x".repeat(1025)}}),
            ErrorCode::InvalidParameter,
            "SegmentAttributes.t.ValueString",
        ),
        (
            json!({"t": {"ValueInteger": 2147483648i64}}),
            ErrorCode::InvalidParameter,
            "SegmentAttributes.t.ValueInteger",
        ),
        (json!({"t": {}}), ErrorCode::InvalidParameter, "exactly one"),
        (
            json!({"t": {"ValueString": "a", "ValueInteger": 1}}),
            ErrorCode::InvalidParameter,
            "exactly one",
        ),
        (
            json!({"t": "x"}),
            ErrorCode::InvalidParameter,
            "SegmentAttributes.t",
        ),
        (
            json!({"t": {"ValueList": []}}),
            ErrorCode::InvalidRequest,
            "system-defined",
        ),
        (
            json!({"t": {"ValueArn": "arn:aws:s3:::b"}}),
            ErrorCode::InvalidRequest,
            "system-defined",
        ),
        (
            json!({"connect:A": {"ValueArn": "not-an-arn"}}),
            ErrorCode::InvalidRequest,
            "valid ARN",
        ),
        (
            json!({"t": {"ValueMap": {"a b": {"ValueString": "x"}}}}),
            ErrorCode::InvalidParameter,
            "a b",
        ),
        (
            json!({"connect:Subtype": {"ValueString": "connect:Guide"}}),
            ErrorCode::InvalidRequest,
            "connect:Guide",
        ),
    ];
    for (seg, code, needle) in cases {
        let (c, msg) = err(&with(json!({ "SegmentAttributes": seg })));
        assert_eq!(c, code, "{seg}: {msg}");
        assert!(msg.contains(needle), "{seg}: {msg}");
        assert!(!msg.contains("xxxxxxxx"), "values are never echoed: {msg}");
    }
}

#[test]
fn disconnect_on_customer_exit_and_response_mode_are_enums() {
    assert!(
        start_chat(&with(json!({"DisconnectOnCustomerExit": ["AGENT"],
        "ParticipantConfiguration": {"ResponseMode": "COMPLETE"}})))
        .is_ok()
    );
    for patch in [
        json!({"DisconnectOnCustomerExit": []}),
        json!({"DisconnectOnCustomerExit": ["AGENT", "AGENT"]}),
        json!({"DisconnectOnCustomerExit": ["CUSTOMER"]}),
        json!({"ParticipantConfiguration": {"ResponseMode": "FAST"}}),
    ] {
        assert_eq!(
            err(&with(patch.clone())).0,
            ErrorCode::InvalidParameter,
            "{patch}"
        );
    }
}
