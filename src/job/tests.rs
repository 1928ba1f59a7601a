//! Unit tests of job parsing: one or more per contract rule, at both sides of every boundary,
//! plus a deterministic fuzz loop that throws garbage and mutated jobs at `parse_job`.

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::*;

fn defaults() -> JobDefaults {
    JobDefaults {
        instance_id: Some("inst-default".into()),
        contact_flow_id: Some("flow-default".into()),
    }
}

/// The smallest valid startPersistentChat job.
fn start() -> Value {
    json!({"jobId": "job-1", "sourceContactId": "c-past", "participant": {"displayName": "Ana"}})
}

/// The smallest valid associatePersistentContact job.
fn associate() -> Value {
    json!({"jobId": "job-2", "action": "associatePersistentContact", "sourceContactId": "c-past",
           "initialContactId": "c-now"})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert(key.to_owned(), value);
    }
    v
}

fn without(mut v: Value, key: &str) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove(key);
    }
    v
}

fn ok(v: &Value) -> Job {
    match parse_job(&v.to_string(), &defaults()) {
        Ok(job) => job,
        Err(e) => panic!("expected valid, got: {e}\nbody: {}", short(&v.to_string())),
    }
}

fn err(v: &Value) -> InvalidJob {
    err_body(&v.to_string())
}

fn err_body(body: &str) -> InvalidJob {
    match parse_job(body, &defaults()) {
        Ok(job) => panic!("expected invalid, got {job:?}\nbody: {}", short(body)),
        Err(e) => e,
    }
}

/// Asserts the rejection names `field` and that its message is the one-sentence shape.
fn rejects(v: &Value, field: &str) -> InvalidJob {
    let e = err(v);
    assert_eq!(e.field.as_deref(), Some(field), "{e}");
    assert!(e.message.starts_with(&format!("field `{field}` ")), "{e}");
    assert_eq!(e.to_string(), e.message);
    e
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

fn s(n: usize, c: char) -> String {
    std::iter::repeat_n(c, n).collect()
}

// ---- the whole body ----

#[test]
fn contract_example_parses() {
    let body = r#"{"jobId":"job-0001","sourceContactId":"c-past-42","rehydrationType":"ENTIRE_PAST_SESSION",
 "participant":{"displayName":"Ana"},"attributes":{"tier":"gold"},
 "initialMessage":{"contentType":"text/plain","content":"I'm back about my order"}}"#;
    let job = match parse_job(body, &defaults()) {
        Ok(j) => j,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(job.job_id, "job-0001");
    assert_eq!(job.action, Action::StartPersistentChat);
    assert_eq!(job.instance_id, "inst-default");
    assert_eq!(job.contact_flow_id.as_deref(), Some("flow-default"));
    assert_eq!(job.source_contact_id, "c-past-42");
    assert_eq!(job.rehydration_type, RehydrationType::EntirePastSession);
    assert_eq!(job.initial_contact_id, None);
    assert_eq!(job.display_name.as_deref(), Some("Ana"));
    assert_eq!(job.attributes.get("tier").map(String::as_str), Some("gold"));
    assert_eq!(
        job.initial_message,
        Some(InitialMessage {
            content_type: "text/plain".into(),
            content: "I'm back about my order".into()
        })
    );
    assert_eq!(job.chat_duration_in_minutes, None);
    assert_eq!(job.supported_messaging_content_types, None);
    assert_eq!(job.customer_id, None);
    assert_eq!(job.not_after, None);
}

#[test]
fn body_that_is_not_json_is_rejected_without_a_field() {
    for body in [
        "",
        "   ",
        "not json",
        "{\"jobId\":",
        "{} trailing",
        "{'jobId':'x'}",
        "\u{feff}{}",
    ] {
        let e = err_body(body);
        assert_eq!(e.field, None, "{body:?}");
        assert!(
            e.message.starts_with("body is not valid JSON"),
            "{body:?}: {e}"
        );
        assert_eq!((e.job_id, e.action), (None, None));
    }
}

#[test]
fn body_that_is_not_an_object_is_rejected_without_a_field() {
    for (body, kind) in [
        ("[]", "an array"),
        ("\"job\"", "a string"),
        ("null", "null"),
        ("42", "a number"),
        ("true", "a boolean"),
    ] {
        let e = err_body(body);
        assert_eq!(e.field, None);
        assert_eq!(e.message, format!("body must be a JSON object, not {kind}"));
    }
}

#[test]
fn deep_nesting_is_rejected_not_a_stack_overflow() {
    let deep = format!("{}{}", s(100_000, '['), s(100_000, ']'));
    assert_eq!(err_body(&deep).field, None);
    let nested_field = with(
        start(),
        "attributes",
        serde_json::from_str::<Value>(&format!("{}1{}", s(100, '['), s(100, ']')))
            .unwrap_or(Value::Null),
    );
    assert!(parse_job(&nested_field.to_string(), &defaults()).is_err());
    let deep_unknown = format!(r#"{{"jobId":"j","x":{}{}}}"#, s(5_000, '['), s(5_000, ']'));
    assert_eq!(err_body(&deep_unknown).field, None);
}

#[test]
fn invalid_unicode_escapes_are_rejected() {
    for body in [
        r#"{"jobId":"\ud800"}"#,
        r#"{"jobId":"\udc00x"}"#,
        r#"{"jobId":"\u12"}"#,
        r#"{"jobId":"\x41"}"#,
    ] {
        assert_eq!(err_body(body).field, None, "{body}");
    }
}

#[test]
fn huge_numbers_do_not_panic() {
    for n in [
        "1e400",
        "-1e400",
        "18446744073709551616",
        "123456789012345678901234567890",
        "-0",
        "1e-400",
    ] {
        let body = format!(
            r#"{{"jobId":"j","sourceContactId":"c","participant":{{"displayName":"A"}},"chatDurationInMinutes":{n}}}"#
        );
        assert!(parse_job(&body, &defaults()).is_err(), "{n}");
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let v = with(
        with(start(), "futureField", json!({"a": [1, 2]})),
        "priority",
        json!(3),
    );
    assert_eq!(ok(&v).job_id, "job-1");
}

#[test]
fn duplicate_keys_take_the_last_value() {
    let body = r#"{"jobId":"first","jobId":"last","sourceContactId":"c","participant":{"displayName":"A"}}"#;
    assert_eq!(
        parse_job(body, &defaults()).map(|j| j.job_id),
        Ok("last".to_owned())
    );
}

#[test]
fn null_means_absent_for_every_optional_field() {
    for key in [
        "action",
        "instanceId",
        "contactFlowId",
        "rehydrationType",
        "attributes",
        "initialMessage",
        "chatDurationInMinutes",
        "supportedMessagingContentTypes",
        "customerId",
        "notAfter",
    ] {
        let job = ok(&with(start(), key, Value::Null));
        assert_eq!(job, ok(&start()), "{key}");
    }
    assert_eq!(
        ok(&with(associate(), "participant", Value::Null)),
        ok(&associate())
    );
}

#[test]
fn null_for_a_required_field_is_missing() {
    let e = rejects(&with(start(), "jobId", Value::Null), "jobId");
    assert_eq!(e.message, "field `jobId` is required");
    let e = rejects(
        &with(start(), "sourceContactId", Value::Null),
        "sourceContactId",
    );
    assert_eq!(e.message, "field `sourceContactId` is required");
}

// ---- jobId ----

#[test]
fn job_id_is_required() {
    assert_eq!(
        rejects(&without(start(), "jobId"), "jobId").message,
        "field `jobId` is required"
    );
}

#[test]
fn job_id_must_not_be_empty() {
    assert_eq!(
        rejects(&with(start(), "jobId", json!("")), "jobId").message,
        "field `jobId` must not be empty"
    );
}

#[test]
fn job_id_length_boundary_is_128() {
    assert_eq!(
        ok(&with(start(), "jobId", json!(s(128, 'a')))).job_id.len(),
        128
    );
    let e = rejects(&with(start(), "jobId", json!(s(129, 'a'))), "jobId");
    assert_eq!(
        e.message,
        "field `jobId` must be at most 128 characters (got 129)"
    );
    assert_eq!(e.job_id, None, "an invalid jobId is not echoed");
}

#[test]
fn job_id_accepts_its_whole_charset() {
    let id = "AZaz09._:-";
    assert_eq!(ok(&with(start(), "jobId", json!(id))).job_id, id);
}

#[test]
fn job_id_rejects_other_characters() {
    for id in [
        "job 1",
        "job/1",
        "jöb",
        "job\n1",
        "job#1",
        "job+1",
        "ジョブ",
    ] {
        let e = rejects(&with(start(), "jobId", json!(id)), "jobId");
        assert_eq!(
            e.message,
            "field `jobId` must contain only A-Z a-z 0-9 . _ : -"
        );
    }
}

#[test]
fn job_id_must_be_a_string() {
    for (v, kind) in [
        (json!(42), "a number"),
        (json!(true), "a boolean"),
        (json!(["a"]), "an array"),
        (json!({}), "an object"),
    ] {
        let e = rejects(&with(start(), "jobId", v), "jobId");
        assert_eq!(
            e.message,
            format!("field `jobId` must be a string, not {kind}")
        );
    }
}

// ---- echo of jobId / action on failure ----

#[test]
fn valid_job_id_is_echoed_when_another_field_is_invalid() {
    let e = rejects(&without(start(), "sourceContactId"), "sourceContactId");
    assert_eq!(e.job_id.as_deref(), Some("job-1"));
    assert_eq!(
        e.action,
        Some(Action::StartPersistentChat),
        "absent action means the default"
    );
}

#[test]
fn valid_action_is_echoed_when_job_id_is_invalid() {
    let e = rejects(&with(associate(), "jobId", json!("bad id")), "jobId");
    assert_eq!(e.job_id, None);
    assert_eq!(e.action, Some(Action::AssociatePersistentContact));
}

#[test]
fn invalid_action_is_not_echoed_but_job_id_is() {
    let e = rejects(&with(start(), "action", json!("resume")), "action");
    assert_eq!(e.job_id.as_deref(), Some("job-1"));
    assert_eq!(e.action, None);
}

#[test]
fn associate_failure_echoes_associate() {
    let e = rejects(
        &without(associate(), "initialContactId"),
        "initialContactId",
    );
    assert_eq!(
        (e.job_id.as_deref(), e.action),
        (Some("job-2"), Some(Action::AssociatePersistentContact))
    );
}

// ---- action ----

#[test]
fn action_defaults_to_start() {
    assert_eq!(ok(&start()).action, Action::StartPersistentChat);
    assert_eq!(
        ok(&with(start(), "action", json!("startPersistentChat"))).action,
        Action::StartPersistentChat
    );
}

#[test]
fn action_associate_is_parsed() {
    assert_eq!(ok(&associate()).action, Action::AssociatePersistentContact);
}

#[test]
fn action_must_be_one_of_the_two() {
    for a in ["", "StartPersistentChat", "start", "associate"] {
        let e = rejects(&with(start(), "action", json!(a)), "action");
        assert_eq!(
            e.message,
            "field `action` must be one of startPersistentChat, associatePersistentContact"
        );
    }
    rejects(&with(start(), "action", json!(1)), "action");
}

#[test]
fn action_serde_names_match_as_str() {
    for a in Action::ALL {
        assert_eq!(serde_json::to_value(a).ok(), Some(json!(a.as_str())));
    }
    for r in RehydrationType::ALL {
        assert_eq!(serde_json::to_value(r).ok(), Some(json!(r.as_str())));
    }
    assert_eq!(Action::StartPersistentChat.as_str(), "startPersistentChat");
    assert_eq!(
        Action::AssociatePersistentContact.as_str(),
        "associatePersistentContact"
    );
    assert_eq!(
        RehydrationType::EntirePastSession.as_str(),
        "ENTIRE_PAST_SESSION"
    );
    assert_eq!(RehydrationType::FromSegment.as_str(), "FROM_SEGMENT");
}

// ---- instanceId / contactFlowId ----

#[test]
fn job_values_override_defaults() {
    let job = ok(&with(
        with(start(), "instanceId", json!("inst-job")),
        "contactFlowId",
        json!("flow-job"),
    ));
    assert_eq!(job.instance_id, "inst-job");
    assert_eq!(job.contact_flow_id.as_deref(), Some("flow-job"));
}

#[test]
fn instance_id_is_required_without_a_default() {
    let d = JobDefaults {
        instance_id: None,
        contact_flow_id: Some("f".into()),
    };
    let e = parse_job(&start().to_string(), &d).err();
    assert_eq!(
        e.as_ref().and_then(|e| e.field.as_deref()),
        Some("instanceId")
    );
    assert_eq!(
        e.map(|e| e.message),
        Some(
            "field `instanceId` is required because no default Connect instance is configured"
                .into()
        )
    );
    let with_id = with(start(), "instanceId", json!("inst-job"));
    assert_eq!(
        parse_job(&with_id.to_string(), &d).map(|j| j.instance_id),
        Ok("inst-job".into())
    );
}

#[test]
fn contact_flow_id_is_required_for_start_without_a_default() {
    let d = JobDefaults {
        instance_id: Some("i".into()),
        contact_flow_id: None,
    };
    let e = parse_job(&start().to_string(), &d).err();
    assert_eq!(
        e.as_ref().and_then(|e| e.field.as_deref()),
        Some("contactFlowId")
    );
    assert_eq!(e.and_then(|e| e.job_id), Some("job-1".into()));
    assert!(
        parse_job(&associate().to_string(), &d).is_ok(),
        "associate needs no flow"
    );
}

#[test]
fn instance_id_length_boundary_is_100() {
    assert_eq!(
        ok(&with(start(), "instanceId", json!(s(100, 'i'))))
            .instance_id
            .len(),
        100
    );
    rejects(
        &with(start(), "instanceId", json!(s(101, 'i'))),
        "instanceId",
    );
    let e = rejects(&with(start(), "instanceId", json!("")), "instanceId");
    assert_eq!(
        e.message, "field `instanceId` must not be empty",
        "empty is not missing: no default"
    );
}

#[test]
fn contact_flow_id_length_boundary_is_500() {
    assert!(
        ok(&with(start(), "contactFlowId", json!(s(500, 'f'))))
            .contact_flow_id
            .is_some()
    );
    rejects(
        &with(start(), "contactFlowId", json!(s(501, 'f'))),
        "contactFlowId",
    );
    rejects(&with(start(), "contactFlowId", json!("")), "contactFlowId");
    rejects(&with(start(), "contactFlowId", json!(7)), "contactFlowId");
}

#[test]
fn contact_flow_id_is_ignored_for_associate() {
    for v in [json!("flow"), json!(""), json!(s(600, 'f')), json!(3)] {
        assert_eq!(
            ok(&with(associate(), "contactFlowId", v)).contact_flow_id,
            None
        );
    }
}

// ---- sourceContactId ----

#[test]
fn source_contact_id_is_required_for_both_actions() {
    rejects(&without(start(), "sourceContactId"), "sourceContactId");
    rejects(&without(associate(), "sourceContactId"), "sourceContactId");
    rejects(
        &with(start(), "sourceContactId", json!("")),
        "sourceContactId",
    );
    rejects(
        &with(start(), "sourceContactId", json!(["c"])),
        "sourceContactId",
    );
}

#[test]
fn source_contact_id_length_boundary_is_256_characters_not_bytes() {
    assert_eq!(
        ok(&with(start(), "sourceContactId", json!(s(256, 'é'))))
            .source_contact_id
            .chars()
            .count(),
        256
    );
    let e = rejects(
        &with(start(), "sourceContactId", json!(s(257, 'c'))),
        "sourceContactId",
    );
    assert_eq!(
        e.message,
        "field `sourceContactId` must be at most 256 characters (got 257)"
    );
}

// ---- rehydrationType ----

#[test]
fn rehydration_type_defaults_and_parses() {
    assert_eq!(
        ok(&start()).rehydration_type,
        RehydrationType::EntirePastSession
    );
    assert_eq!(
        ok(&with(start(), "rehydrationType", json!("FROM_SEGMENT"))).rehydration_type,
        RehydrationType::FromSegment
    );
    assert_eq!(
        ok(&with(
            associate(),
            "rehydrationType",
            json!("ENTIRE_PAST_SESSION")
        ))
        .rehydration_type,
        RehydrationType::EntirePastSession
    );
}

#[test]
fn rehydration_type_must_be_one_of_the_two() {
    for r in ["from_segment", "", "ALL"] {
        let e = rejects(
            &with(start(), "rehydrationType", json!(r)),
            "rehydrationType",
        );
        assert_eq!(
            e.message,
            "field `rehydrationType` must be one of ENTIRE_PAST_SESSION, FROM_SEGMENT"
        );
    }
}

// ---- initialContactId ----

#[test]
fn initial_contact_id_is_required_for_associate() {
    let e = rejects(
        &without(associate(), "initialContactId"),
        "initialContactId",
    );
    assert_eq!(
        e.message,
        "field `initialContactId` is required for action associatePersistentContact"
    );
    rejects(
        &with(associate(), "initialContactId", json!("")),
        "initialContactId",
    );
    rejects(
        &with(associate(), "initialContactId", json!(5)),
        "initialContactId",
    );
}

#[test]
fn initial_contact_id_length_boundary_is_256() {
    assert_eq!(
        ok(&with(associate(), "initialContactId", json!(s(256, 'n'))))
            .initial_contact_id
            .map(|c| c.len()),
        Some(256)
    );
    rejects(
        &with(associate(), "initialContactId", json!(s(257, 'n'))),
        "initialContactId",
    );
}

#[test]
fn initial_contact_id_is_ignored_for_start() {
    for v in [json!("c-now"), json!(""), json!(false)] {
        assert_eq!(
            ok(&with(start(), "initialContactId", v)).initial_contact_id,
            None
        );
    }
}

#[test]
fn associate_job_fields() {
    let job = ok(&associate());
    assert_eq!(job.initial_contact_id.as_deref(), Some("c-now"));
    assert_eq!(job.contact_flow_id, None);
    assert_eq!(job.display_name, None);
    assert_eq!(job.instance_id, "inst-default");
}

// ---- participant.displayName ----

#[test]
fn display_name_is_required_for_start() {
    let e = rejects(&without(start(), "participant"), "participant.displayName");
    assert_eq!(
        e.message,
        "field `participant.displayName` is required for action startPersistentChat"
    );
    rejects(
        &with(start(), "participant", Value::Null),
        "participant.displayName",
    );
    rejects(
        &with(start(), "participant", json!({})),
        "participant.displayName",
    );
    rejects(
        &with(start(), "participant", json!({"displayName": null})),
        "participant.displayName",
    );
}

#[test]
fn display_name_must_be_a_non_empty_string() {
    let e = rejects(
        &with(start(), "participant", json!({"displayName": ""})),
        "participant.displayName",
    );
    assert_eq!(
        e.message,
        "field `participant.displayName` must not be empty"
    );
    let e = rejects(
        &with(start(), "participant", json!({"displayName": 1})),
        "participant.displayName",
    );
    assert_eq!(
        e.message,
        "field `participant.displayName` must be a string, not a number"
    );
}

#[test]
fn participant_must_be_an_object() {
    let e = rejects(&with(start(), "participant", json!("Ana")), "participant");
    assert_eq!(
        e.message,
        "field `participant` must be an object, not a string"
    );
}

#[test]
fn display_name_length_boundary_is_256() {
    assert!(
        ok(&with(
            start(),
            "participant",
            json!({"displayName": s(256, 'ñ')})
        ))
        .display_name
        .is_some()
    );
    rejects(
        &with(start(), "participant", json!({"displayName": s(257, 'a')})),
        "participant.displayName",
    );
}

#[test]
fn participant_is_ignored_for_associate() {
    for v in [
        json!("x"),
        json!({"displayName": ""}),
        json!({"displayName": 3}),
    ] {
        assert_eq!(ok(&with(associate(), "participant", v)).display_name, None);
    }
}

// ---- attributes ----

#[test]
fn attributes_are_parsed() {
    let job = ok(&with(
        start(),
        "attributes",
        json!({"tier": "gold", "Order_Id-2": "", "x": "ü"}),
    ));
    assert_eq!(job.attributes.len(), 3);
    assert_eq!(
        job.attributes.get("Order_Id-2").map(String::as_str),
        Some("")
    );
    assert!(
        ok(&with(start(), "attributes", json!({})))
            .attributes
            .is_empty()
    );
}

#[test]
fn attributes_must_be_an_object_of_strings() {
    let e = rejects(&with(start(), "attributes", json!(["a"])), "attributes");
    assert_eq!(
        e.message,
        "field `attributes` must be an object of strings, not an array"
    );
    for v in [
        json!(1),
        json!(null),
        json!({"k": "v"}),
        json!(["v"]),
        json!(true),
    ] {
        let e = rejects(
            &with(start(), "attributes", json!({"ok": "v", "my-key": v})),
            "attributes.my-key",
        );
        assert!(
            e.message
                .starts_with("field `attributes.my-key` must be a string, not "),
            "{e}"
        );
    }
}

#[test]
fn attribute_keys_charset() {
    for key in ["has space", "dot.ted", "colon:", "ümlaut", "new\nline"] {
        let e = err(&with(start(), "attributes", json!({key: "v"})));
        assert!(
            e.message
                .contains("has a key with characters other than A-Z a-z 0-9 _ -"),
            "{e}"
        );
        assert!(
            !e.message.contains('\n'),
            "control characters are escaped: {e:?}"
        );
    }
    assert_eq!(
        err(&with(start(), "attributes", json!({"a b": "v"})))
            .field
            .as_deref(),
        Some("attributes.a b")
    );
    let e = rejects(&with(start(), "attributes", json!({"": "v"})), "attributes");
    assert_eq!(e.message, "field `attributes` must not have an empty key");
}

#[test]
fn long_bad_attribute_key_is_truncated_in_the_message() {
    let key = format!("{} {}", s(1000, 'k'), s(1000, 'k'));
    let e = err(&with(start(), "attributes", json!({key: "v"})));
    assert!(e.message.len() < 200, "{}", e.message.len());
    assert!(e.field.is_some_and(|f| f.ends_with('…')));
}

#[test]
fn attributes_total_boundary_is_32768_utf8_bytes() {
    // key "k" (1 byte) + value: exactly at the limit, then one byte over.
    let at_limit = json!({"k": s(32_767, 'v')});
    assert_eq!(
        ok(&with(start(), "attributes", at_limit)).attributes.len(),
        1
    );
    let e = rejects(
        &with(start(), "attributes", json!({"k": s(32_768, 'v')})),
        "attributes",
    );
    assert_eq!(
        e.message,
        "field `attributes` must total at most 32,768 UTF-8 bytes of keys and values (got 32,769)"
    );
}

#[test]
fn attributes_total_counts_keys_values_and_multibyte_bytes() {
    // Two 2-byte characters per "é": 2 × 8,192 chars = 16,384 bytes per value.
    let half = s(8_192, 'é');
    let over = json!({"a": half, "b": half}); // 1 + 16,384 + 1 + 16,384 = 32,770
    assert!(
        rejects(&with(start(), "attributes", over), "attributes")
            .message
            .contains("(got 32,770)")
    );
    let fits = json!({"a": s(8_191, 'é'), "b": s(8_192, 'é')}); // 32,768
    assert_eq!(ok(&with(start(), "attributes", fits)).attributes.len(), 2);
}

#[test]
fn attribute_values_never_appear_in_errors() {
    let secret = "SECRET-ATTRIBUTE-VALUE";
    let cases = [
        with(start(), "attributes", json!({"k": secret, "bad key": "v"})),
        with(
            start(),
            "attributes",
            json!({"k": format!("{secret}{}", s(40_000, 'x'))}),
        ),
        with(
            with(start(), "attributes", json!({"k": secret})),
            "chatDurationInMinutes",
            json!(1),
        ),
    ];
    for v in cases {
        let e = err(&v);
        assert!(
            !e.message.contains(secret) && !format!("{e:?}").contains(secret),
            "{e:?}"
        );
    }
}

// ---- initialMessage ----

fn message(content_type: &str, content: Value) -> Value {
    with(
        start(),
        "initialMessage",
        json!({"contentType": content_type, "content": content}),
    )
}

#[test]
fn initial_message_max_length_per_content_type() {
    for (content_type, max) in [
        ("text/plain", 1_024),
        ("text/markdown", 1_024),
        ("application/json", 12_000),
        (
            "application/vnd.amazonaws.connect.message.interactive.response",
            12_288,
        ),
    ] {
        let job = ok(&message(content_type, json!(s(max, 'é'))));
        assert_eq!(
            job.initial_message.map(|m| m.content.chars().count()),
            Some(max),
            "{content_type}"
        );
        let e = rejects(
            &message(content_type, json!(s(max + 1, 'a'))),
            "initialMessage.content",
        );
        assert!(e.message.contains(&format!("for {content_type}")), "{e}");
    }
}

#[test]
fn initial_message_text_plain_boundary_message() {
    let e = rejects(
        &message("text/plain", json!(s(1_025, 'a'))),
        "initialMessage.content",
    );
    assert_eq!(
        e.message,
        "field `initialMessage.content` must be at most 1,024 characters for text/plain (got 1,025)"
    );
}

#[test]
fn initial_message_content_must_not_be_empty() {
    let e = rejects(&message("text/plain", json!("")), "initialMessage.content");
    assert_eq!(
        e.message,
        "field `initialMessage.content` must not be empty"
    );
    assert!(
        ok(&message("text/plain", json!("x")))
            .initial_message
            .is_some()
    );
}

#[test]
fn initial_message_content_type_must_be_allowed() {
    // `interactive` (without .response) is a supported chat type but not an initial message type.
    for t in [
        "text/html",
        "",
        "TEXT/PLAIN",
        "application/vnd.amazonaws.connect.message.interactive",
    ] {
        let e = rejects(&message(t, json!("hi")), "initialMessage.contentType");
        assert!(
            e.message.starts_with(
                "field `initialMessage.contentType` must be one of text/plain, text/markdown"
            ),
            "{e}"
        );
    }
}

#[test]
fn initial_message_parts_are_required_and_typed() {
    rejects(
        &with(start(), "initialMessage", json!({"content": "hi"})),
        "initialMessage.contentType",
    );
    rejects(
        &with(
            start(),
            "initialMessage",
            json!({"contentType": "text/plain"}),
        ),
        "initialMessage.content",
    );
    rejects(
        &with(
            start(),
            "initialMessage",
            json!({"contentType": 1, "content": "hi"}),
        ),
        "initialMessage.contentType",
    );
    rejects(
        &message("text/plain", json!({"text": "hi"})),
        "initialMessage.content",
    );
    rejects(
        &with(start(), "initialMessage", json!("hi")),
        "initialMessage",
    );
}

#[test]
fn initial_message_content_is_not_echoed() {
    let e = err(&message(
        "text/plain",
        json!(format!("MESSAGE-CONTENT{}", s(2_000, 'a'))),
    ));
    assert!(!e.message.contains("MESSAGE-CONTENT"), "{e}");
}

// ---- chatDurationInMinutes ----

#[test]
fn chat_duration_boundaries_are_60_and_10080() {
    assert_eq!(
        ok(&with(start(), "chatDurationInMinutes", json!(60))).chat_duration_in_minutes,
        Some(60)
    );
    assert_eq!(
        ok(&with(start(), "chatDurationInMinutes", json!(10_080))).chat_duration_in_minutes,
        Some(10_080)
    );
    for m in [59, 10_081, 0, -60] {
        let e = rejects(
            &with(start(), "chatDurationInMinutes", json!(m)),
            "chatDurationInMinutes",
        );
        assert_eq!(
            e.message,
            "field `chatDurationInMinutes` must be an integer from 60 to 10,080"
        );
    }
}

#[test]
fn chat_duration_rejects_floats_strings_and_huge_numbers() {
    for body in [
        "60.0",
        "60.5",
        "6e1",
        "1e3",
        "\"60\"",
        "true",
        "[60]",
        "18446744073709551615",
        "99999999999999999999",
    ] {
        let v = format!(
            r#"{{"jobId":"j","sourceContactId":"c","participant":{{"displayName":"A"}},"chatDurationInMinutes":{body}}}"#
        );
        let e = err_body(&v);
        assert_eq!(
            e.field.as_deref(),
            Some("chatDurationInMinutes"),
            "{body}: {e}"
        );
    }
    let e = rejects(
        &with(start(), "chatDurationInMinutes", json!("60")),
        "chatDurationInMinutes",
    );
    assert_eq!(
        e.message,
        "field `chatDurationInMinutes` must be an integer from 60 to 10,080, not a string"
    );
}

// ---- supportedMessagingContentTypes ----

#[test]
fn supported_types_are_parsed() {
    let all = json!(SUPPORTED_MESSAGING_CONTENT_TYPES);
    let job = ok(&with(start(), "supportedMessagingContentTypes", all));
    assert_eq!(
        job.supported_messaging_content_types.map(|v| v.len()),
        Some(5)
    );
    let plain = ok(&with(
        start(),
        "supportedMessagingContentTypes",
        json!(["text/plain"]),
    ));
    assert_eq!(
        plain.supported_messaging_content_types,
        Some(vec!["text/plain".to_owned()])
    );
}

#[test]
fn supported_types_must_contain_text_plain() {
    for v in [json!([]), json!(["text/markdown"])] {
        let e = rejects(
            &with(start(), "supportedMessagingContentTypes", v),
            "supportedMessagingContentTypes",
        );
        assert_eq!(
            e.message,
            "field `supportedMessagingContentTypes` must contain text/plain"
        );
    }
}

#[test]
fn supported_types_must_each_be_allowed() {
    let e = rejects(
        &with(
            start(),
            "supportedMessagingContentTypes",
            json!(["text/plain", "text/html"]),
        ),
        "supportedMessagingContentTypes[1]",
    );
    assert!(
        e.message
            .contains("must be one of text/plain, text/markdown, application/json"),
        "{e}"
    );
    rejects(
        &with(
            start(),
            "supportedMessagingContentTypes",
            json!(["text/plain", 3]),
        ),
        "supportedMessagingContentTypes[1]",
    );
    rejects(
        &with(
            start(),
            "supportedMessagingContentTypes",
            json!("text/plain"),
        ),
        "supportedMessagingContentTypes",
    );
}

// ---- customerId ----

#[test]
fn customer_id_length_boundary_is_128() {
    assert_eq!(
        ok(&with(start(), "customerId", json!(s(128, 'c'))))
            .customer_id
            .map(|c| c.len()),
        Some(128)
    );
    rejects(
        &with(start(), "customerId", json!(s(129, 'c'))),
        "customerId",
    );
    let e = rejects(&with(start(), "customerId", json!("")), "customerId");
    assert_eq!(e.message, "field `customerId` must not be empty");
    rejects(&with(start(), "customerId", json!(12345)), "customerId");
}

#[test]
fn customer_id_never_appears_in_errors_or_debug() {
    let secret = format!("CUSTOMER-SECRET{}", s(120, 'z'));
    let e = err(&with(start(), "customerId", json!(secret)));
    assert!(
        !e.message.contains("CUSTOMER-SECRET") && !format!("{e:?}").contains("CUSTOMER-SECRET")
    );

    let job = ok(&with(start(), "customerId", json!("CUST-42")));
    assert_eq!(job.customer_id.as_deref(), Some("CUST-42"));
    let debug = format!("{job:?} {job:#?}");
    assert!(!debug.contains("CUST-42"), "{debug}");
    assert!(debug.contains("customer_id: Some(<redacted>)"), "{debug}");
    assert!(format!("{:?}", ok(&start())).contains("customer_id: None"));
}

// ---- notAfter and expiry ----

fn at(rfc3339: &str) -> OffsetDateTime {
    match OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) {
        Ok(t) => t,
        Err(e) => panic!("{rfc3339}: {e}"),
    }
}

#[test]
fn not_after_is_parsed_with_offsets() {
    let job = ok(&with(
        start(),
        "notAfter",
        json!("2025-01-31T23:59:00+02:00"),
    ));
    assert_eq!(job.not_after, Some(at("2025-01-31T21:59:00Z")));
    assert!(
        ok(&with(
            start(),
            "notAfter",
            json!("2025-01-31T23:59:00.123456Z")
        ))
        .not_after
        .is_some()
    );
}

#[test]
fn not_after_must_be_rfc3339() {
    for v in [
        "2025-01-31",
        "2025-01-31 23:59:00",
        "tomorrow",
        "2025-13-01T00:00:00Z",
        "1738367940",
    ] {
        let e = rejects(&with(start(), "notAfter", json!(v)), "notAfter");
        assert_eq!(
            e.message,
            "field `notAfter` must be an RFC 3339 timestamp such as 2025-01-31T23:59:00Z"
        );
    }
    rejects(&with(start(), "notAfter", json!(1_738_367_940)), "notAfter");
    assert_eq!(
        rejects(&with(start(), "notAfter", json!("")), "notAfter").message,
        "field `notAfter` must not be empty"
    );
}

#[test]
fn expiry_is_strictly_after_not_after() {
    let job = ok(&with(start(), "notAfter", json!("2025-01-31T23:59:00Z")));
    assert!(!job.is_expired(at("2025-01-31T23:58:59Z")));
    assert!(
        !job.is_expired(at("2025-01-31T23:59:00Z")),
        "may still start at exactly notAfter"
    );
    assert!(job.is_expired(at("2025-01-31T23:59:00.000000001Z")));
    assert!(
        !ok(&start()).is_expired(at("9999-12-31T23:59:59Z")),
        "no notAfter never expires"
    );
}

// ---- client token ----

#[test]
fn client_token_is_deterministic_hex_of_64() {
    let a = ok(&start()).client_token();
    assert_eq!(a.len(), 64);
    assert!(
        a.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    // Same job with different optional fields (a redelivery, or an edited resend): same token.
    assert_eq!(
        a,
        ok(&with(start(), "attributes", json!({"x": "y"}))).client_token()
    );
}

#[test]
fn client_token_is_pinned() {
    // Changing it would let a job redelivered across a deploy open a second chat.
    let job = ok(&start());
    let mut expected = Sha256::new();
    expected.update(b"resume-chat-worker/client-token/v1\nstartPersistentChat\njob-1");
    assert_eq!(job.client_token(), hex::encode(expected.finalize()));
}

#[test]
fn client_token_differs_by_job_id_and_action() {
    let a = ok(&start()).client_token();
    assert_ne!(
        a,
        ok(&with(start(), "jobId", json!("job-1b"))).client_token()
    );
    let assoc = ok(&with(associate(), "jobId", json!("job-1"))).client_token();
    assert_ne!(a, assoc);
}

// ---- fuzz: no panic on any input ----

/// xorshift64*: deterministic, so a failure reproduces; no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYS: [&str; 16] = [
    "jobId",
    "action",
    "instanceId",
    "contactFlowId",
    "sourceContactId",
    "rehydrationType",
    "initialContactId",
    "participant",
    "attributes",
    "initialMessage",
    "chatDurationInMinutes",
    "supportedMessagingContentTypes",
    "customerId",
    "notAfter",
    "displayName",
    "content",
];

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    let choice = if depth > 3 {
        rng.below(6)
    } else {
        rng.below(9)
    };
    match choice {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(*rng.pick(&[0i64, 59, 60, 10_080, 10_081, -1, i64::MAX, i64::MIN])),
        3 => json!(*rng.pick(&[60.0f64, 0.5, -1e300, 1e300])),
        4 => json!(*rng.pick(&[
            "",
            "job-1",
            "startPersistentChat",
            "associatePersistentContact",
            "FROM_SEGMENT",
            "text/plain",
            "application/json",
            "2025-01-31T23:59:00Z",
            "\u{0}",
            "é",
            "a b",
            "\u{10FFFF}",
        ])),
        5 => json!(s(rng.below(14_000), *rng.pick(&['a', 'é', '😀', '\n']))),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                m.insert(rng.pick(&KEYS).to_string(), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Checks the invariants every rejection must keep.
fn check(body: &str, secrets: &[&str]) {
    match parse_job(body, &defaults()) {
        Ok(job) => {
            assert!(!job.job_id.is_empty() && job.job_id.len() <= 128);
            assert_eq!(job.client_token().len(), 64);
        }
        Err(e) => {
            match &e.field {
                Some(f) => assert!(e.message.starts_with(&format!("field `{f}` ")), "{e:?}"),
                None => assert!(e.message.starts_with("body "), "{e:?}"),
            }
            assert!(!e.message.contains('\n'), "one line: {e:?}");
            assert!(e.message.len() < 400, "short: {e:?}");
            for secret in secrets {
                assert!(!e.message.contains(secret), "leaked {secret}: {e:?}");
            }
        }
    }
}

#[test]
fn fuzz_structured_jobs_never_panic_or_leak() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base = with(
        with(start(), "customerId", json!("SECRETCUSTOMER")),
        "attributes",
        json!({"k": "SECRETATTRIBUTE"}),
    );
    for _ in 0..3_000 {
        let mut v = base.clone();
        for _ in 0..1 + rng.below(3) {
            let key = *rng.pick(&KEYS);
            let value = random_value(&mut rng, 0);
            v = if rng.below(5) == 0 {
                without(v, key)
            } else {
                with(v, key, value)
            };
        }
        check(&v.to_string(), &["SECRETCUSTOMER", "SECRETATTRIBUTE"]);
    }
}

#[test]
fn fuzz_mutated_bodies_never_panic() {
    let mut rng = Rng(42);
    let seed = with(
        with(
            message("text/plain", json!("hello")),
            "attributes",
            json!({"a": "b"}),
        ),
        "notAfter",
        json!("2025-01-31T23:59:00Z"),
    )
    .to_string();
    let alphabet: Vec<char> = "{}[]\":,\\u0123456789abcdefe.-+ \n\td800DC00nulltrue😀é\u{0}"
        .chars()
        .collect();
    for _ in 0..5_000 {
        let mut chars: Vec<char> = seed.chars().collect();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(chars.len() + 1);
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = *rng.pick(&alphabet),
                _ => chars.insert(at, *rng.pick(&alphabet)),
            }
        }
        let body: String = chars.into_iter().collect();
        check(&body, &[]);
    }
}

#[test]
fn fuzz_random_bytes_never_panic() {
    let mut rng = Rng(7);
    for _ in 0..3_000 {
        let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
        check(&String::from_utf8_lossy(&bytes), &[]);
    }
}

#[test]
fn missing_default_is_reported_after_the_jobs_own_mistakes() {
    let none = JobDefaults::default();
    let v = with(start(), "rehydrationType", json!("ALL"));
    let e = parse_job(&v.to_string(), &none).err();
    assert_eq!(e.and_then(|e| e.field), Some("rehydrationType".into()));
    // A bad value of the field itself is still reported in table order.
    let v = with(
        with(start(), "instanceId", json!("")),
        "rehydrationType",
        json!("ALL"),
    );
    let e = parse_job(&v.to_string(), &none).err();
    assert_eq!(e.and_then(|e| e.field), Some("instanceId".into()));
}
