//! Each error code as the SDK sees it: modeled errors become their typed variant, the
//! others keep their code (`ProvideErrorMetadata::code`), and messages name the field.

use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_connect::operation::create_persistent_contact_association::CreatePersistentContactAssociationError as AssocErr;
use aws_sdk_connect::operation::start_chat_contact::StartChatContactError as StartErr;
use connect_sim::SimConfig;

use crate::common::*;

fn status<E>(e: &SdkError<E>) -> u16 {
    e.raw_response().map_or(0, |r| r.status().as_u16())
}

#[tokio::test]
async fn invalid_parameter_names_the_member() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    let err = start_chat(&c, "s")
        .chat_duration_in_minutes(59)
        .send()
        .await
        .expect_err("400");
    assert_eq!(status(&err), 400);
    let e = err.into_service_error();
    assert!(matches!(e, StartErr::InvalidParameterException(_)), "{e:?}");
    assert!(
        e.message()
            .is_some_and(|m| m.contains("ChatDurationInMinutes")),
        "{e:?}"
    );
    assert_eq!(sim.stats().operations.start_chat_contact.invalid, 1);
}

#[tokio::test]
async fn invalid_request_names_the_member() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    let err = start_chat(&c, "s")
        .supported_messaging_content_types("text/markdown")
        .send()
        .await
        .expect_err("400");
    let e = err.into_service_error();
    assert!(matches!(e, StartErr::InvalidRequestException(_)), "{e:?}");
    assert!(
        e.message()
            .is_some_and(|m| m.contains("SupportedMessagingContentTypes"))
    );

    let err = start_chat(&c, "s")
        .related_contact_id("r")
        .send()
        .await
        .expect_err("400");
    let e = err.into_service_error();
    assert!(matches!(e, StartErr::InvalidRequestException(_)), "{e:?}");
    assert!(e.message().is_some_and(|m| m.contains("RelatedContactId")));

    let err = associate(&c, "init", &"x".repeat(257))
        .send()
        .await
        .expect_err("400");
    let e = err.into_service_error();
    assert!(matches!(e, AssocErr::InvalidParameterException(_)), "{e:?}");
    assert!(e.message().is_some_and(|m| m.contains("SourceContactId")));
    let s = sim.stats();
    assert_eq!(s.operations.start_chat_contact.invalid, 2);
    assert_eq!(
        s.operations.create_persistent_contact_association.invalid,
        1
    );
}

#[tokio::test]
async fn not_found_for_unknown_instance_and_missing_contacts() {
    let sim = sim(SimConfig {
        instance_ids: vec![INSTANCE.to_string()],
        ..roomy()
    })
    .await;
    let c = client(&sim);
    let e = start_chat(&c, "missing-42")
        .send()
        .await
        .expect_err("404")
        .into_service_error();
    assert!(matches!(e, StartErr::ResourceNotFoundException(_)), "{e:?}");
    let e = start_chat(&c, "s")
        .instance_id("other-instance")
        .send()
        .await
        .expect_err("404")
        .into_service_error();
    assert!(matches!(e, StartErr::ResourceNotFoundException(_)), "{e:?}");
    let e = associate(&c, "missing-1", "s")
        .send()
        .await
        .expect_err("404")
        .into_service_error();
    assert!(matches!(e, AssocErr::ResourceNotFoundException(_)), "{e:?}");
    let s = sim.stats();
    assert_eq!(s.operations.start_chat_contact.not_found, 2);
    assert_eq!(
        s.operations.create_persistent_contact_association.not_found,
        1
    );
    assert_eq!(s.chats_created, 0);
}

#[tokio::test]
async fn unsigned_requests_are_access_denied() {
    let sim = sim(roomy()).await;
    let c = unsigned_client(&sim);
    let err = start_chat(&c, "s").send().await.expect_err("403");
    assert_eq!(status(&err), 403);
    // Not modeled for StartChatContact: the code is still there.
    assert_eq!(err.code(), Some("AccessDeniedException"));
    let e = associate(&c, "i", "s")
        .send()
        .await
        .expect_err("403")
        .into_service_error();
    assert!(matches!(e, AssocErr::AccessDeniedException(_)), "{e:?}");
    let s = sim.stats();
    assert_eq!(s.operations.start_chat_contact.access_denied, 1);
    assert_eq!(
        s.operations
            .create_persistent_contact_association
            .access_denied,
        1
    );
}

#[tokio::test]
async fn rate_quota_answers_too_many_requests_and_throttling() {
    let sim = sim(SimConfig {
        start_chat_rate: 0.0,
        start_chat_burst: 1,
        associate_rate: 0.0,
        associate_burst: 1,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    start_chat(&c, "s1").send().await.expect("within burst");
    let err = start_chat(&c, "s2").send().await.expect_err("429");
    assert_eq!(status(&err), 429);
    let e = err.into_service_error();
    // Not in the service model: an unhandled error that keeps the code.
    assert_eq!(e.code(), Some("TooManyRequestsException"));
    assert!(e.message().is_some_and(|m| !m.is_empty()));

    // Other sources: the session of s1 has an active chat now and would be refused.
    associate(&c, "i1", "s3")
        .send()
        .await
        .expect("within burst");
    let e = associate(&c, "i2", "s4")
        .send()
        .await
        .expect_err("429")
        .into_service_error();
    assert!(matches!(e, AssocErr::ThrottlingException(_)), "{e:?}");
    assert_eq!(e.code(), Some("ThrottlingException"));
    let s = sim.stats();
    assert_eq!(s.operations.start_chat_contact.throttled, 1);
    assert_eq!(
        s.operations.create_persistent_contact_association.throttled,
        1
    );
    assert_eq!(
        s.timeline
            .iter()
            .map(|t| t.start_chat_contact.refused)
            .sum::<u64>(),
        1
    );
}

#[tokio::test]
async fn active_chats_quota_answers_limit_exceeded() {
    let sim = sim(SimConfig {
        max_active_chats: 1,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    start_chat(&c, "s1").send().await.expect("first chat fits");
    let err = start_chat(&c, "s2").send().await.expect_err("429");
    assert_eq!(status(&err), 429);
    let e = err.into_service_error();
    assert!(matches!(e, StartErr::LimitExceededException(_)), "{e:?}");
    assert_eq!(sim.stats().operations.start_chat_contact.limit_exceeded, 1);
}

#[tokio::test]
async fn chats_end_and_free_capacity() {
    let sim = sim(SimConfig {
        max_active_chats: 1,
        chat_seconds: 0.3,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    start_chat(&c, "s1").send().await.expect("first chat fits");
    // Sleeping past the chat's end guarantees it ended, however slow the machine.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    start_chat(&c, "s2")
        .send()
        .await
        .expect("the first chat ended");
    let s = sim.stats();
    assert_eq!((s.chats_created, s.peak_active_chats), (2, 1));
}
