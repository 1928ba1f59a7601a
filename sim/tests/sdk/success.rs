//! 200 responses, parsed by the SDK into its output types.

use aws_sdk_connect::types::{ChatMessage, ConnectionType};

use crate::common::*;

#[tokio::test]
async fn start_persistent_chat_returns_ids_and_continued_from() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    let out = start_chat(&c, "past-1")
        .initial_message(
            ChatMessage::builder()
                .content_type("text/plain")
                .content("I'm back")
                .build()
                .expect("complete message"),
        )
        .attributes("tier", "gold")
        .supported_messaging_content_types("text/plain")
        .chat_duration_in_minutes(60)
        .send()
        .await
        .expect("200");
    let contact = out.contact_id().expect("ContactId");
    assert_eq!(contact.len(), 36);
    assert!(
        out.participant_id()
            .is_some_and(|p| p.len() == 36 && p != contact)
    );
    assert!(out.participant_token().is_some_and(|t| !t.is_empty()));
    assert_eq!(out.continued_from_contact_id(), Some("past-1"));
    assert!(out.websocket().is_none() && out.connection_credentials().is_none());
    let s = sim.stats();
    assert_eq!(s.operations.start_chat_contact.ok, 1);
    assert_eq!((s.chats_created, s.active_chats), (1, 1));
}

#[tokio::test]
async fn non_persistent_chat_has_no_continued_from() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    let out = c
        .start_chat_contact()
        .instance_id(INSTANCE)
        .contact_flow_id(FLOW)
        .participant_details(
            aws_sdk_connect::types::ParticipantDetails::builder()
                .display_name("Ana")
                .build()
                .expect("display name set"),
        )
        .connection_types(ConnectionType::Websocket)
        .connection_types(ConnectionType::ConnectionCredentials)
        .send()
        .await
        .expect("200");
    assert!(out.contact_id().is_some());
    assert_eq!(out.continued_from_contact_id(), None);
    assert!(out.websocket().and_then(|w| w.url()).is_some());
    assert!(
        out.connection_credentials()
            .and_then(|w| w.connection_token())
            .is_some()
    );
}

#[tokio::test]
async fn associate_returns_continued_from() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    let out = associate(&c, "current-1", "past-1")
        .client_token("tok")
        .send()
        .await
        .expect("200");
    assert_eq!(out.continued_from_contact_id(), Some("past-1"));
    let s = sim.stats();
    assert_eq!(s.operations.create_persistent_contact_association.ok, 1);
    assert_eq!(s.chats_created, 0, "an association opens no chat");
}

#[tokio::test]
async fn ids_with_reserved_characters_survive_the_path() {
    let sim = sim(roomy()).await;
    let c = client(&sim);
    let out = associate(&c, "a b/c%d", "s")
        .send()
        .await
        .expect("200: the label is percent-encoded by the SDK and decoded by the sim");
    assert_eq!(out.continued_from_contact_id(), Some("s"));
}
