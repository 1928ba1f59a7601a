//! Injected faults: 500 InternalServiceException, dropped connections, latency.

use std::time::Duration;

use aws_sdk_connect::error::SdkError;
use aws_sdk_connect::operation::start_chat_contact::StartChatContactError as StartErr;
use connect_sim::SimConfig;

use crate::common::*;

#[tokio::test]
async fn fail_rate_answers_internal_service_exception() {
    let sim = sim(SimConfig {
        fail_rate: 1.0,
        fail_after_create_ratio: 1.0,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    let e = start_chat(&c, "s")
        .client_token("tok-1")
        .send()
        .await
        .expect_err("500")
        .into_service_error();
    assert!(matches!(e, StartErr::InternalServiceException(_)), "{e:?}");
    let s = sim.stats();
    assert_eq!(s.operations.start_chat_contact.server_error, 1);
    assert_eq!(
        s.chats_created, 1,
        "this failure happened after the chat was created"
    );
}

#[tokio::test]
async fn dropped_connections_get_no_response() {
    let sim = sim(SimConfig {
        drop_rate: 1.0,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    let err = start_chat(&c, "s").send().await.expect_err("no response");
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{err:?}"
    );
    let err = associate(&c, "i", "s")
        .send()
        .await
        .expect_err("no response");
    assert!(err.raw_response().is_none(), "{err:?}");
    let s = sim.stats();
    assert_eq!(s.operations.start_chat_contact.dropped, 1);
    assert_eq!(
        s.operations.create_persistent_contact_association.dropped,
        1
    );
}

#[tokio::test]
async fn latency_delays_every_response() {
    let sim = sim(SimConfig {
        latency_ms: 150,
        ..roomy()
    })
    .await;
    let c = client(&sim);
    let t0 = tokio::time::Instant::now();
    start_chat(&c, "s").send().await.expect("200");
    // A lower bound only: the sim sleeps at least this long before answering.
    assert!(t0.elapsed() >= Duration::from_millis(150));
}
