//! The account's side of resuming a chat, kept apart from the quota logic in `ops`: which contact
//! a persistent chat continues from (sessions, see `contacts`), the account without custom chat
//! durations, and CreateParticipantConnection for the connect window.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::contacts::NewChat;
use super::{Core, Inner};
use crate::error::ApiError;
use crate::validate::{PersistentChat, StartChat};

impl Core {
    /// `--no-custom-chat-durations`: the StartChatContact documentation says "If you use the
    /// ChatDurationInMinutes parameter and receive a 400 error, your account may not support the
    /// ability to configure custom chat durations."
    pub(super) fn check_duration(&self, req: &StartChat) -> Option<ApiError> {
        (self.config.no_custom_chat_durations && req.chat_duration).then(|| {
            ApiError::invalid_request(
                "ChatDurationInMinutes: this account does not support custom chat durations; \
                 leave ChatDurationInMinutes out (25 hours by default) or contact AWS Support",
            )
        })
    }

    /// The contact a persistent chat continues from; `None` for a chat that is not persistent.
    pub(super) fn continued_from(
        &self,
        inner: &mut Inner,
        pc: Option<&PersistentChat>,
        now: Instant,
    ) -> Result<Option<String>, ApiError> {
        let Some(pc) = pc else { return Ok(None) };
        inner.prune_active(now);
        inner
            .contacts
            .rehydrate(
                &self.config,
                &pc.source_contact_id,
                &pc.rehydration_type,
                now,
            )
            .map(Some)
    }

    pub(super) fn remember_contact(
        &self,
        inner: &mut Inner,
        req: &StartChat,
        body: &Value,
        continued_from: Option<&str>,
        ends: Instant,
        now: Instant,
    ) {
        let (Some(contact_id), Some(token)) = (
            body["ContactId"].as_str(),
            body["ParticipantToken"].as_str(),
        ) else {
            return;
        };
        let window = Duration::from_secs_f64(self.config.connect_window_seconds);
        inner.contacts.add_chat(
            NewChat {
                contact_id,
                instance_id: &req.instance_id,
                participant_token: token,
                continued_from,
                ends,
                details: req.details.clone(),
            },
            now,
            window,
            self.idempotency_ttl,
        );
    }

    /// CreateParticipantConnection with the participant token: marks the chat connected, so it
    /// lives its lifetime instead of ending at its connect window.
    pub fn connect_participant(&self, token: &str) -> Result<String, ApiError> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.prune_active(now);
        inner.contacts.connect(token, now)
    }

    /// What the sim knows of a contact (`GET /_sim/contacts/{id}`).
    pub fn describe_contact(&self, id: &str) -> Option<Value> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.prune_active(now);
        inner.contacts.describe(id, now)
    }
}
