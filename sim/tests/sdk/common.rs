//! Helpers: start a simulator on an ephemeral port and build an SDK client for it the way
//! the worker would (SigV4 with dummy credentials, us-east-1, retries off so every call is
//! exactly one request).

use aws_sdk_connect::Client;
use aws_sdk_connect::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_connect::types::{PersistentChat, RehydrationType};
use connect_sim::{SimConfig, SimHandle};

pub const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";
pub const FLOW: &str = "flow-1";

/// Quotas high enough not to interfere, unless a test sets its own.
pub fn roomy() -> SimConfig {
    SimConfig {
        start_chat_rate: 10_000.0,
        start_chat_burst: 10_000,
        associate_rate: 10_000.0,
        associate_burst: 10_000,
        max_active_chats: 10_000,
        seed: Some(1),
        ..SimConfig::default()
    }
}

pub async fn sim(config: SimConfig) -> SimHandle {
    connect_sim::start(config, "127.0.0.1:0".parse().expect("literal address"))
        .await
        .expect("simulator starts")
}

fn builder(sim: &SimHandle) -> aws_sdk_connect::config::Builder {
    aws_sdk_connect::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .endpoint_url(sim.endpoint_url())
        .retry_config(RetryConfig::disabled())
}

pub fn client(sim: &SimHandle) -> Client {
    Client::from_conf(builder(sim).build())
}

/// Removes the SigV4 `Authorization` header just before sending.
#[derive(Debug)]
struct StripAuth;

impl Intercept for StripAuth {
    fn name(&self) -> &'static str {
        "StripAuth"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        context.request_mut().headers_mut().remove("authorization");
        Ok(())
    }
}

/// A client whose requests reach the simulator unsigned.
pub fn unsigned_client(sim: &SimHandle) -> Client {
    Client::from_conf(builder(sim).interceptor(StripAuth).build())
}

pub fn persistent(source: &str) -> PersistentChat {
    PersistentChat::builder()
        .rehydration_type(RehydrationType::EntirePastSession)
        .source_contact_id(source)
        .build()
}

/// A valid persistent StartChatContact request, ready to send.
pub fn start_chat(
    c: &Client,
    source: &str,
) -> aws_sdk_connect::operation::start_chat_contact::builders::StartChatContactFluentBuilder {
    c.start_chat_contact()
        .instance_id(INSTANCE)
        .contact_flow_id(FLOW)
        .participant_details(
            aws_sdk_connect::types::ParticipantDetails::builder()
                .display_name("Ana")
                .build()
                .expect("display name set"),
        )
        .persistent_chat(persistent(source))
}

/// A valid CreatePersistentContactAssociation request, ready to send.
pub fn associate(
    c: &Client,
    initial: &str,
    source: &str,
) -> aws_sdk_connect::operation::create_persistent_contact_association::builders::CreatePersistentContactAssociationFluentBuilder{
    c.create_persistent_contact_association()
        .instance_id(INSTANCE)
        .initial_contact_id(initial)
        .rehydration_type(RehydrationType::FromSegment)
        .source_contact_id(source)
}
