//! Unit tests of `disconnectOnCustomerExit`, `segmentAttributes` and `participantConfiguration`,
//! at both sides of each rule of the service model (see `members`).

use serde_json::{Value, json};

use super::*;

fn defaults() -> JobDefaults {
    JobDefaults {
        instance_id: Some("inst".into()),
        contact_flow_id: Some("flow".into()),
    }
}

fn start_with(key: &str, value: Value) -> Value {
    let mut v =
        json!({"jobId": "job-1", "sourceContactId": "c", "participant": {"displayName": "A"}});
    v[key] = value;
    v
}

fn ok(v: &Value) -> Job {
    match parse_job(&v.to_string(), &defaults()) {
        Ok(j) => j,
        Err(e) => panic!("expected valid, got {e}: {v}"),
    }
}

/// Asserts the rejection names `field`; returns the message.
fn rejects(v: &Value, field: &str) -> String {
    match parse_job(&v.to_string(), &defaults()) {
        Ok(j) => panic!("expected invalid, got {j:?}"),
        Err(e) => {
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.message.starts_with(&format!("field `{field}` ")), "{e}");
            e.message
        }
    }
}

fn seg(value: Value) -> Value {
    start_with("segmentAttributes", value)
}

#[test]
fn disconnect_on_customer_exit_takes_exactly_agent() {
    let job = ok(&start_with("disconnectOnCustomerExit", json!(["AGENT"])));
    assert_eq!(
        job.disconnect_on_customer_exit,
        Some(vec!["AGENT".to_owned()])
    );
    assert_eq!(
        ok(&start_with("disconnectOnCustomerExit", Value::Null)).disconnect_on_customer_exit,
        None
    );
    rejects(
        &start_with("disconnectOnCustomerExit", json!([])),
        "disconnectOnCustomerExit",
    );
    rejects(
        &start_with("disconnectOnCustomerExit", json!(["AGENT", "AGENT"])),
        "disconnectOnCustomerExit",
    );
    rejects(
        &start_with("disconnectOnCustomerExit", json!(["CUSTOMER"])),
        "disconnectOnCustomerExit[0]",
    );
    rejects(
        &start_with("disconnectOnCustomerExit", json!([1])),
        "disconnectOnCustomerExit[0]",
    );
    rejects(
        &start_with("disconnectOnCustomerExit", json!("AGENT")),
        "disconnectOnCustomerExit",
    );
}

#[test]
fn response_mode_is_one_of_two() {
    for (s, m) in [
        ("INCREMENTAL", ResponseMode::Incremental),
        ("COMPLETE", ResponseMode::Complete),
    ] {
        let job = ok(&start_with(
            "participantConfiguration",
            json!({"responseMode": s}),
        ));
        assert_eq!(job.response_mode, Some(m));
    }
    assert_eq!(
        ok(&start_with("participantConfiguration", json!({}))).response_mode,
        None
    );
    rejects(
        &start_with(
            "participantConfiguration",
            json!({"responseMode": "incremental"}),
        ),
        "participantConfiguration.responseMode",
    );
    rejects(
        &start_with("participantConfiguration", json!({"responseMode": 1})),
        "participantConfiguration.responseMode",
    );
    rejects(
        &start_with("participantConfiguration", json!("COMPLETE")),
        "participantConfiguration",
    );
}

#[test]
fn every_segment_value_form_parses() {
    let job = ok(&seg(json!({
        "connect:Subtype": {"valueString": "connect:Chat"},
        "connect:Ids": {"valueList": [{"valueString": "a"}, {"valueInteger": 7}]},
        "connect:Queue": {"valueArn": "arn:aws:connect:us-east-1:123456789012:instance/i-1/queue/q-1"},
        "tier": {"valueMap": {"level": {"valueInteger": -3}, "name": {"valueString": ""}}},
        "count": {"valueInteger": 2147483647}
    })));
    let a = &job.segment_attributes;
    assert_eq!(
        a["connect:Subtype"],
        SegmentValue::String("connect:Chat".into())
    );
    assert_eq!(
        a["connect:Ids"],
        SegmentValue::List(vec![
            SegmentValue::String("a".into()),
            SegmentValue::Integer(7)
        ])
    );
    assert!(matches!(a["connect:Queue"], SegmentValue::Arn(_)));
    let SegmentValue::Map(m) = &a["tier"] else {
        panic!("{a:?}")
    };
    assert_eq!(m["level"], SegmentValue::Integer(-3));
    assert_eq!(a["count"], SegmentValue::Integer(i32::MAX));
}

#[test]
fn segment_keys_follow_the_name_rules() {
    let k128 = "k".repeat(128);
    ok(&seg(json!({ k128: {"valueString": "x"} })));
    let k129 = "k".repeat(129);
    let msg = rejects(
        &seg(json!({ k129.clone(): {"valueString": "x"} })),
        &format!("segmentAttributes.{}…", &k129[..64]),
    );
    assert!(msg.contains("longer than 128"), "{msg}");
    let msg = rejects(
        &seg(json!({"bad key!": {"valueString": "x"}})),
        "segmentAttributes.bad key!",
    );
    assert!(msg.contains("A-Z a-z 0-9 _ - :"), "{msg}");
    rejects(&seg(json!({"": {"valueString": "x"}})), "segmentAttributes");
    // Nested map keys follow the same rules.
    rejects(
        &seg(json!({"t": {"valueMap": {"a b": {"valueString": "x"}}}})),
        "segmentAttributes.t.valueMap.a b",
    );
}

#[test]
fn a_segment_value_has_exactly_one_form() {
    rejects(&seg(json!({"t": {}})), "segmentAttributes.t");
    rejects(
        &seg(json!({"t": {"valueString": "a", "valueInteger": 1}})),
        "segmentAttributes.t",
    );
    rejects(&seg(json!({"t": "plain"})), "segmentAttributes.t");
    rejects(
        &seg(json!({"t": {"valueBool": true}})),
        "segmentAttributes.t.valueBool",
    );
    // null members are absent.
    ok(&seg(
        json!({"t": {"valueString": "a", "valueInteger": null}}),
    ));
}

#[test]
fn segment_strings_are_at_most_1024_characters() {
    ok(&seg(json!({"t": {"valueString": "é".repeat(1024)}})));
    let msg = rejects(
        &seg(json!({"t": {"valueString": "x".repeat(1025)}})),
        "segmentAttributes.t.valueString",
    );
    assert!(msg.contains("1,024") && msg.contains("1,025"), "{msg}");
    rejects(
        &seg(json!({"t": {"valueString": 5}})),
        "segmentAttributes.t.valueString",
    );
}

#[test]
fn segment_integers_are_32_bit() {
    ok(&seg(json!({"t": {"valueInteger": i32::MIN}})));
    rejects(
        &seg(json!({"t": {"valueInteger": 2147483648i64}})),
        "segmentAttributes.t.valueInteger",
    );
    rejects(
        &seg(json!({"t": {"valueInteger": 1.5}})),
        "segmentAttributes.t.valueInteger",
    );
    rejects(
        &seg(json!({"t": {"valueInteger": "1"}})),
        "segmentAttributes.t.valueInteger",
    );
}

#[test]
fn lists_and_arns_are_for_system_attributes_only() {
    let msg = rejects(
        &seg(json!({"tier": {"valueList": []}})),
        "segmentAttributes.tier.valueList",
    );
    assert!(msg.contains("system-defined"), "{msg}");
    rejects(
        &seg(json!({"tier": {"valueArn": "arn:aws:connect:us-east-1:123456789012:instance/x"}})),
        "segmentAttributes.tier.valueArn",
    );
    // Inside a user-defined map, still user-defined.
    rejects(
        &seg(json!({"tier": {"valueMap": {"connect:x": {"valueList": []}}}})),
        "segmentAttributes.tier.valueMap.connect:x.valueList",
    );
    ok(&seg(
        json!({"connect:List": {"valueList": [{"valueMap": {"a": {"valueList": []}}}]}}),
    ));
}

#[test]
fn arns_are_checked() {
    for good in [
        "arn:aws:connect:us-east-1:123456789012:instance/abc",
        "arn:aws-us-gov:s3:::bucket/key",
        "arn:aws-cn:iam::123456789012:role/a:b",
    ] {
        ok(&seg(json!({"connect:A": {"valueArn": good}})));
    }
    for bad in [
        "",
        "arn:aws:connect",
        "arn:gcp:connect:r:123456789012:x",
        "arn:aws::r:1:x",
        "arn:aws:s3:::",
        "arn:aws:s3:r:12345:x",
    ] {
        rejects(
            &seg(json!({"connect:A": {"valueArn": bad}})),
            "segmentAttributes.connect:A.valueArn",
        );
    }
}

#[test]
fn guide_needs_both_interactive_content_types() {
    let guide = json!({"connect:Subtype": {"valueString": "connect:Guide"}});
    let msg = rejects(&seg(guide.clone()), "supportedMessagingContentTypes");
    assert!(msg.contains("connect:Guide"), "{msg}");
    let mut v = seg(guide.clone());
    v["supportedMessagingContentTypes"] = json!([
        "text/plain",
        "application/vnd.amazonaws.connect.message.interactive"
    ]);
    rejects(&v, "supportedMessagingContentTypes");
    v["supportedMessagingContentTypes"] = json!([
        "text/plain",
        "application/vnd.amazonaws.connect.message.interactive",
        "application/vnd.amazonaws.connect.message.interactive.response"
    ]);
    ok(&v);
    // Another subtype needs nothing.
    ok(&seg(
        json!({"connect:Subtype": {"valueString": "connect:SMS"}}),
    ));
}

#[test]
fn values_are_never_echoed() {
    let msg = rejects(
        &seg(json!({"t": {"valueString": "SECRET".repeat(300)}})),
        "segmentAttributes.t.valueString",
    );
    assert!(!msg.contains("SECRET"), "{msg}");
}
