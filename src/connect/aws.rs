//! The `aws-sdk-connect` adapter: builds the two requests from a [`Job`] and turns every SDK error
//! into a [`ConnectError`]. This is the only file that matches on `SdkError` for Connect.
//!
//! The client is built with the SDK's retries turned off (our pipeline classifies and retries
//! itself; the SDK would retry `LimitExceededException` as a throttle) and with explicit timeouts,
//! so a hung connection becomes a `Timeout`, not a stuck job.

use std::time::Duration;

use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_connect::types::{
    ChatMessage, DisconnectOnCustomerExitParticipantType, ParticipantConfiguration,
    ParticipantDetails, PersistentChat, RehydrationType, ResponseMode, SegmentAttributeValue,
};

use super::{Associated, ConnectApi, ConnectError, ErrorClass, StartedChat, classify};
use crate::job::{self, Job};

/// `ConnectApi` over the real `aws-sdk-connect` client.
#[derive(Clone, Debug)]
pub struct AwsConnect {
    client: aws_sdk_connect::Client,
}

impl AwsConnect {
    /// Builds the client from the shared AWS config (region, credentials, and
    /// `AWS_ENDPOINT_URL_CONNECT` for the simulator), with SDK retries off.
    pub fn new(shared: &aws_config::SdkConfig, call_timeout: Duration) -> Self {
        let timeouts = aws_sdk_connect::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3).min(call_timeout))
            .operation_attempt_timeout(call_timeout)
            .operation_timeout(call_timeout)
            .build();
        let config = aws_sdk_connect::config::Builder::from(shared)
            .retry_config(aws_sdk_connect::config::retry::RetryConfig::disabled())
            .timeout_config(timeouts)
            .build();
        AwsConnect {
            client: aws_sdk_connect::Client::from_conf(config),
        }
    }

    pub fn from_client(client: aws_sdk_connect::Client) -> Self {
        AwsConnect { client }
    }
}

fn rehydration(r: job::RehydrationType) -> RehydrationType {
    match r {
        job::RehydrationType::EntirePastSession => RehydrationType::EntirePastSession,
        job::RehydrationType::FromSegment => RehydrationType::FromSegment,
    }
}

/// Classifies any SDK error. Transport failures get codes of our own so metrics and results can
/// tell a timeout from a dropped connection.
fn to_connect_error<E>(
    err: SdkError<E, aws_sdk_connect::config::http::HttpResponse>,
) -> ConnectError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (status, code, message) = match &err {
        SdkError::ServiceError(ctx) => (
            Some(ctx.raw().status().as_u16()),
            err.code().map(str::to_owned),
            err.message().unwrap_or("no message").to_owned(),
        ),
        SdkError::TimeoutError(_) => (
            None,
            Some("Timeout".to_owned()),
            "the call timed out".to_owned(),
        ),
        SdkError::DispatchFailure(d) if d.is_timeout() => (
            None,
            Some("Timeout".to_owned()),
            "the connection timed out".to_owned(),
        ),
        // Credentials are resolved before the request goes out: a provider that cannot load or
        // refresh them (the ECS credentials endpoint down, an expired SSO session) fails here.
        SdkError::DispatchFailure(_)
            if error_chain(Some(&err))
                .to_ascii_lowercase()
                .contains("credentials") =>
        {
            (
                None,
                Some("CredentialsError".to_owned()),
                format!("no usable AWS credentials: {}", error_chain(Some(&err))),
            )
        }
        SdkError::DispatchFailure(d) => (
            None,
            Some("ConnectionError".to_owned()),
            format!(
                "could not reach Connect: {}",
                error_chain(
                    d.as_connector_error()
                        .map(|e| e as &(dyn std::error::Error + 'static))
                )
            ),
        ),
        SdkError::ResponseError(r) => (
            Some(r.raw().status().as_u16()),
            Some("ResponseError".to_owned()),
            "the response could not be read".to_owned(),
        ),
        SdkError::ConstructionFailure(_) => {
            // Our request could not be built: the same job would fail the same way every time.
            return ConnectError {
                class: ErrorClass::Rejected,
                code: "InvalidRequestException".to_owned(),
                message: format!(
                    "the request could not be built: {}",
                    error_chain(Some(&err))
                ),
            };
        }
        _ => (None, Some("Unknown".to_owned()), error_chain(Some(&err))),
    };
    // Transport codes of our own are classified by status only.
    let aws_code = code
        .as_deref()
        .filter(|c| !matches!(*c, "Timeout" | "ConnectionError" | "ResponseError"));
    let class = classify(status, aws_code);
    let code = code.unwrap_or_else(|| match status {
        Some(s) => format!("Http{s}"),
        None => "Unknown".to_owned(),
    });
    ConnectError {
        class,
        code,
        message,
    }
}

fn error_chain(err: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts = Vec::new();
    let mut next = err;
    while let Some(e) = next {
        parts.push(e.to_string());
        next = e.source();
    }
    parts.join(": ")
}

impl ConnectApi for AwsConnect {
    async fn start_chat(&self, job: &Job, client_token: &str) -> Result<StartedChat, ConnectError> {
        let persistent = PersistentChat::builder()
            .rehydration_type(rehydration(job.rehydration_type))
            .source_contact_id(&job.source_contact_id)
            .build();
        let mut req = self
            .client
            .start_chat_contact()
            .instance_id(&job.instance_id)
            .set_contact_flow_id(job.contact_flow_id.clone())
            .participant_details(
                ParticipantDetails::builder()
                    .display_name(job.display_name.clone().unwrap_or_default())
                    .build()
                    .map_err(|e| rejected(format!("participant.displayName: {e}")))?,
            )
            .persistent_chat(persistent)
            .client_token(client_token)
            .set_chat_duration_in_minutes(job.chat_duration_in_minutes)
            .set_supported_messaging_content_types(job.supported_messaging_content_types.clone())
            .set_customer_id(job.customer_id.clone());
        if !job.attributes.is_empty() {
            req = req.set_attributes(Some(job.attributes.clone().into_iter().collect()));
        }
        if let Some(types) = &job.disconnect_on_customer_exit {
            req = req.set_disconnect_on_customer_exit(Some(
                types
                    .iter()
                    .map(|t| DisconnectOnCustomerExitParticipantType::from(t.as_str()))
                    .collect(),
            ));
        }
        if !job.segment_attributes.is_empty() {
            req = req.set_segment_attributes(Some(
                job.segment_attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), segment_value(v)))
                    .collect(),
            ));
        }
        if let Some(mode) = job.response_mode {
            let mode = match mode {
                job::ResponseMode::Incremental => ResponseMode::Incremental,
                job::ResponseMode::Complete => ResponseMode::Complete,
            };
            req = req.participant_configuration(
                ParticipantConfiguration::builder()
                    .response_mode(mode)
                    .build(),
            );
        }
        if let Some(m) = &job.initial_message {
            let msg = ChatMessage::builder()
                .content_type(&m.content_type)
                .content(&m.content)
                .build()
                .map_err(|e| rejected(format!("initialMessage: {e}")))?;
            req = req.initial_message(msg);
        }
        let out = req
            .send()
            .await
            .map_err(|e| super::duration::explain(job, to_connect_error(e)))?;
        match (out.contact_id, out.participant_id, out.participant_token) {
            (Some(contact_id), Some(participant_id), Some(participant_token)) => Ok(StartedChat {
                contact_id,
                participant_id,
                participant_token,
                continued_from_contact_id: out.continued_from_contact_id,
            }),
            _ => Err(ConnectError {
                class: ErrorClass::Transient,
                code: "ResponseError".to_owned(),
                message:
                    "StartChatContact returned no ContactId, ParticipantId or ParticipantToken"
                        .to_owned(),
            }),
        }
    }

    async fn associate(&self, job: &Job, client_token: &str) -> Result<Associated, ConnectError> {
        let out = self
            .client
            .create_persistent_contact_association()
            .instance_id(&job.instance_id)
            .initial_contact_id(job.initial_contact_id.clone().unwrap_or_default())
            .rehydration_type(rehydration(job.rehydration_type))
            .source_contact_id(&job.source_contact_id)
            .client_token(client_token)
            .send()
            .await
            .map_err(to_connect_error)?;
        Ok(Associated {
            continued_from_contact_id: out.continued_from_contact_id,
        })
    }
}

/// A validated segment attribute value in the SDK's shape (one member set).
fn segment_value(v: &job::SegmentValue) -> SegmentAttributeValue {
    let b = SegmentAttributeValue::builder();
    match v {
        job::SegmentValue::String(s) => b.value_string(s),
        job::SegmentValue::Arn(s) => b.value_arn(s),
        job::SegmentValue::Integer(n) => b.value_integer(*n),
        job::SegmentValue::Map(m) => b.set_value_map(Some(
            m.iter()
                .map(|(k, v)| (k.clone(), segment_value(v)))
                .collect(),
        )),
        job::SegmentValue::List(items) => {
            b.set_value_list(Some(items.iter().map(segment_value).collect()))
        }
    }
    .build()
}

fn rejected(message: String) -> ConnectError {
    ConnectError {
        class: ErrorClass::Rejected,
        code: "InvalidRequestException".to_owned(),
        message,
    }
}
