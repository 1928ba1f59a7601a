//! ClientToken: a replay returns the original response and creates nothing; the same token
//! with other parameters is 400.

use aws_sdk_connect::operation::create_persistent_contact_association::CreatePersistentContactAssociationError as AssocErr;
use aws_sdk_connect::operation::start_chat_contact::StartChatContactError as StartErr;
use connect_sim::SimConfig;

use crate::common::*;

#[tokio::test]
async fn replay_returns_the_original_chat() {
    let sim = sim(SimConfig {
        max_active_chats: 1,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    let first = start_chat(&c, "s")
        .client_token("job-1")
        .send()
        .await
        .expect("200");
    let again = start_chat(&c, "s")
        .client_token("job-1")
        .send()
        .await
        .expect("replay");
    assert_eq!(first.contact_id(), again.contact_id());
    assert_eq!(first.participant_token(), again.participant_token());
    let s = sim.stats();
    assert_eq!(s.chats_created, 1);
    assert_eq!(s.duplicate_source_chats, 0);
    assert_eq!(s.operations.start_chat_contact.idempotent_replays, 1);
    assert_eq!(
        s.active_chats, 1,
        "a replay uses no capacity (max is 1 and it succeeded)"
    );
}

#[tokio::test]
async fn different_parameters_with_the_same_token_are_rejected() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    start_chat(&c, "s1")
        .client_token("job-1")
        .send()
        .await
        .expect("200");
    let e = start_chat(&c, "s2")
        .client_token("job-1")
        .send()
        .await
        .expect_err("400")
        .into_service_error();
    assert!(matches!(e, StartErr::InvalidRequestException(_)), "{e:?}");
    assert!(e.to_string().contains("ClientToken"), "{e}");

    associate(&c, "i", "s")
        .client_token("a-1")
        .send()
        .await
        .expect("200");
    associate(&c, "i", "s")
        .client_token("a-1")
        .send()
        .await
        .expect("replay");
    let e = associate(&c, "other", "s")
        .client_token("a-1")
        .send()
        .await
        .expect_err("400: the path is part of the parameters")
        .into_service_error();
    assert!(matches!(e, AssocErr::InvalidRequestException(_)), "{e:?}");
    let s = sim.stats();
    assert_eq!(s.chats_created, 1);
    assert_eq!(
        s.operations
            .create_persistent_contact_association
            .idempotent_replays,
        1
    );
}

#[tokio::test]
async fn sdk_fills_a_fresh_token_for_start_chat() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    // Without an explicit token the SDK generates one per call: the second call is a new
    // request (a replay would answer 200 with the same chat), refused because the session of
    // "s" has an active chat now, the first one.
    start_chat(&c, "s").send().await.expect("200");
    let b = start_chat(&c, "s").send().await;
    let code = b
        .as_ref()
        .err()
        .and_then(|e| e.as_service_error())
        .and_then(|e| e.meta().code());
    assert_eq!(code, Some("InvalidRequestException"), "{b:?}");
    let s = sim.stats();
    assert_eq!(s.chats_created, 1);
}

#[tokio::test]
async fn partial_failure_then_retry_returns_the_created_chat() {
    let sim = sim(SimConfig {
        fail_rate: 1.0,
        fail_after_create_ratio: 1.0,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    start_chat(&c, "s")
        .client_token("job-7")
        .send()
        .await
        .expect_err("500");
    let out = start_chat(&c, "s")
        .client_token("job-7")
        .send()
        .await
        .expect("replay is never faulted");
    assert_eq!(out.continued_from_contact_id(), Some("s"));
    assert_eq!(sim.stats().chats_created, 1);
}
