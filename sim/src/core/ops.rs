//! The two operations against the simulated account, each decided in one critical section.
//!
//! Idempotency: a ClientToken seen before (within the TTL) with the same parameters returns
//! the stored response, creating nothing and using no chat capacity; it still takes a rate
//! token, because Connect counts every API call against the rate quota (so a replay can be
//! throttled). The same token with different parameters is 400 InvalidRequestException.
//!
//! Faults: once a call has passed the quotas, `fail_rate` turns it into 500
//! InternalServiceException and `drop_rate` into a closed connection; a share
//! `fail_after_create_ratio` of those happen after the chat or association was made, and
//! its ClientToken then replays the created result, as a real partial failure would.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Core, Inner, Outcome, Stored, records};
use crate::error::{ApiError, ErrorCode};
use crate::ids;
use crate::stats::Op;
use crate::validate::{Associate, PersistentChat, StartChat};

/// What fault injection decided for a call that passed the quotas.
#[derive(Clone, Copy)]
enum Fault {
    None,
    Fail { after_create: bool },
    Drop { after_create: bool },
}

impl Fault {
    /// The answer when the fault strikes before anything is created.
    fn before_create(self) -> Option<Outcome> {
        match self {
            Fault::Fail {
                after_create: false,
            } => Some(Outcome::Err(internal())),
            Fault::Drop {
                after_create: false,
            } => Some(Outcome::Drop),
            _ => None,
        }
    }

    /// The answer once the chat or association exists (and its ClientToken is remembered): the
    /// success, or a fault that hides it, as real partial failures do.
    fn after_create(self, body: Arc<str>) -> Outcome {
        match self {
            Fault::None => Outcome::Ok(body),
            Fault::Fail { .. } => Outcome::Err(internal()),
            Fault::Drop { .. } => Outcome::Drop,
        }
    }
}

impl Core {
    pub fn start_chat(&self, req: &StartChat) -> Outcome {
        let mut inner = self.lock();
        let now = Instant::now();
        let (outcome, replay) = self.decide_start_chat(&mut inner, req, now);
        inner.tally(Op::StartChat, &outcome, replay, now);
        inner.record_call(
            &self.config,
            Op::StartChat,
            &req.instance_id,
            &outcome,
            replay,
            now,
        );
        outcome
    }

    pub fn associate(&self, req: &Associate) -> Outcome {
        let mut inner = self.lock();
        let now = Instant::now();
        let (outcome, replay) = self.decide_associate(&mut inner, req, now);
        inner.tally(Op::Associate, &outcome, replay, now);
        inner.record_call(
            &self.config,
            Op::Associate,
            &req.instance_id,
            &outcome,
            replay,
            now,
        );
        outcome
    }

    fn decide_start_chat(
        &self,
        inner: &mut Inner,
        req: &StartChat,
        now: Instant,
    ) -> (Outcome, bool) {
        let op = Op::StartChat;
        let mut not_found = self.check_instance(&req.instance_id).err();
        if not_found.is_none() {
            let contacts = [
                req.persistent_chat
                    .as_ref()
                    .map(|p| p.source_contact_id.as_str()),
                req.related_contact_id.as_deref(),
            ];
            not_found = contacts
                .into_iter()
                .flatten()
                .find_map(|c| self.check_contact(c).err());
        }
        if let Some(e) = not_found.or_else(|| self.check_duration(req)) {
            return (Outcome::Err(e), false);
        }
        if let Some(replayed) =
            self.replay(inner, op, req.client_token.as_deref(), req.fingerprint, now)
        {
            return replayed;
        }
        let continued_from = match self.continued_from(inner, req.persistent_chat.as_ref(), now) {
            Ok(c) => c,
            Err(e) => return (Outcome::Err(e), false),
        };
        if !inner.start_bucket.try_take(now) {
            let e = ApiError::new(ErrorCode::TooManyRequests, "Rate exceeded");
            return (Outcome::Err(e), false);
        }
        inner.prune_active(now);
        let active_here = inner.active.get(&req.instance_id).map_or(0, |q| q.len());
        let max_here = records::max_chats(&self.config, &req.instance_id);
        if active_here >= max_here as usize {
            let e = ApiError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "The concurrent active chats quota ({max_here}) for instance {} is exceeded",
                    req.instance_id
                ),
            );
            return (Outcome::Err(e), false);
        }
        let fault = self.draw_fault(inner);
        if let Some(failed) = fault.before_create() {
            return (failed, false);
        }

        let body: Arc<str> = self
            .create_chat(inner, req, continued_from.as_deref(), now)
            .to_string()
            .into();
        self.remember(
            inner,
            op,
            req.client_token.as_deref(),
            req.fingerprint,
            &body,
            now,
        );
        (fault.after_create(body), false)
    }

    fn decide_associate(
        &self,
        inner: &mut Inner,
        req: &Associate,
        now: Instant,
    ) -> (Outcome, bool) {
        let op = Op::Associate;
        let not_found = self
            .check_instance(&req.instance_id)
            .and_then(|()| self.check_contact(&req.initial_contact_id))
            .and_then(|()| self.check_contact(&req.source_contact_id));
        if let Err(e) = not_found {
            return (Outcome::Err(e), false);
        }
        if let Some(replayed) =
            self.replay(inner, op, req.client_token.as_deref(), req.fingerprint, now)
        {
            return replayed;
        }
        let source = PersistentChat {
            rehydration_type: req.rehydration_type.clone(),
            source_contact_id: req.source_contact_id.clone(),
        };
        let continued_from = match self.continued_from(inner, Some(&source), now) {
            Ok(c) => c.unwrap_or_else(|| req.source_contact_id.clone()),
            Err(e) => return (Outcome::Err(e), false),
        };
        if !inner.associate_bucket.try_take(now) {
            let e = ApiError::new(ErrorCode::Throttling, "Rate exceeded");
            return (Outcome::Err(e), false);
        }
        let fault = self.draw_fault(inner);
        if let Some(failed) = fault.before_create() {
            return (failed, false);
        }
        let body: Arc<str> = json!({ "ContinuedFromContactId": continued_from })
            .to_string()
            .into();
        self.remember(
            inner,
            op,
            req.client_token.as_deref(),
            req.fingerprint,
            &body,
            now,
        );
        (fault.after_create(body), false)
    }

    fn check_instance(&self, instance_id: &str) -> Result<(), ApiError> {
        let known = &self.config.instance_ids;
        if known.is_empty() || known.iter().any(|i| i == instance_id) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::ResourceNotFound,
                format!("Instance not found: {instance_id}"),
            ))
        }
    }

    fn check_contact(&self, contact_id: &str) -> Result<(), ApiError> {
        let prefix = &self.config.missing_contact_prefix;
        if !prefix.is_empty() && contact_id.starts_with(prefix.as_str()) {
            Err(ApiError::new(
                ErrorCode::ResourceNotFound,
                format!("Contact not found: {contact_id}"),
            ))
        } else {
            Ok(())
        }
    }

    /// The idempotency step: `None` when the call is new and must go on.
    fn replay(
        &self,
        inner: &mut Inner,
        op: Op,
        token: Option<&str>,
        fingerprint: u64,
        now: Instant,
    ) -> Option<(Outcome, bool)> {
        let token = token?;
        inner.prune_idempotency(now);
        let stored = inner.idempotency.get(&(op, token.to_string()))?;
        if stored.fingerprint != fingerprint {
            let e = ApiError::invalid_request(format!(
                "ClientToken '{token}' was already used with different parameters"
            ));
            return Some((Outcome::Err(e), false));
        }
        let body = Arc::clone(&stored.body);
        let bucket = match op {
            Op::StartChat => &mut inner.start_bucket,
            Op::Associate => &mut inner.associate_bucket,
        };
        if !bucket.try_take(now) {
            let code = match op {
                Op::StartChat => ErrorCode::TooManyRequests,
                Op::Associate => ErrorCode::Throttling,
            };
            return Some((Outcome::Err(ApiError::new(code, "Rate exceeded")), false));
        }
        Some((Outcome::Ok(body), true))
    }

    fn remember(
        &self,
        inner: &mut Inner,
        op: Op,
        token: Option<&str>,
        fingerprint: u64,
        body: &Arc<str>,
        now: Instant,
    ) {
        let Some(token) = token else { return };
        let stored = Stored {
            fingerprint,
            body: Arc::clone(body),
        };
        inner.idempotency.insert((op, token.to_string()), stored);
        inner
            .idempotency_expiry
            .push_back((now + self.idempotency_ttl, op, token.to_string()));
    }

    fn draw_fault(&self, inner: &mut Inner) -> Fault {
        let (fail, drop) = (self.config.fail_rate, self.config.drop_rate);
        if fail <= 0.0 && drop <= 0.0 {
            return Fault::None;
        }
        let u: f64 = inner.rng.random();
        if u >= fail + drop {
            return Fault::None;
        }
        let after_create = inner.rng.random_bool(self.config.fail_after_create_ratio);
        if u < fail {
            Fault::Fail { after_create }
        } else {
            Fault::Drop { after_create }
        }
    }

    /// Creates the chat: capacity, counters, the contact record and the response body.
    fn create_chat(
        &self,
        inner: &mut Inner,
        req: &StartChat,
        continued_from: Option<&str>,
        now: Instant,
    ) -> Value {
        let lifetime = inner.scenario.lifetimes.draw();
        let ends = now + lifetime;
        inner.open_chat(&self.config, &req.instance_id, lifetime, now);
        let source = req
            .persistent_chat
            .as_ref()
            .map(|p| p.source_contact_id.as_str());
        inner.record_chat(&self.config, &req.instance_id, source, lifetime, now);
        inner.stats.chats_created += 1;
        if let Some(pc) = &req.persistent_chat
            && !inner.sources.insert(pc.source_contact_id.clone())
        {
            inner.stats.duplicate_source_chats += 1;
        }

        let rng = &mut inner.rng;
        let mut body = json!({
            "ContactId": ids::uuid(rng),
            "ParticipantId": ids::uuid(rng),
            "ParticipantToken": ids::token(rng, 172),
        });
        if let Some(from) = continued_from {
            body["ContinuedFromContactId"] = json!(from);
        }
        let expiry = expiry_timestamp();
        if req.want_connection_credentials {
            body["ConnectionCredentials"] = json!({
                "ConnectionToken": ids::token(rng, 172),
                "Expiry": expiry,
            });
        }
        if req.want_websocket {
            body["Websocket"] = json!({
                "Url": format!("wss://connect-sim.invalid/connect?token={}", ids::token(rng, 64)),
                "ConnectionExpiry": expiry,
            });
        }
        if req.want_streaming {
            body["StreamingId"] = json!(ids::uuid(rng));
        }
        self.remember_contact(inner, req, &body, continued_from, ends, now);
        if let Some(contact_id) = body["ContactId"].as_str() {
            // Looked at first when its connect window passes (it may end unconnected then).
            let window = Duration::from_secs_f64(self.config.connect_window_seconds);
            let check = if window.is_zero() {
                ends
            } else {
                ends.min(now + window)
            };
            if inner.schedule_end(&req.instance_id, Some(contact_id), now, check) {
                self.ends_changed.notify_one();
            }
        }
        body
    }
}

fn internal() -> ApiError {
    ApiError::new(
        ErrorCode::InternalService,
        "Request processing failed because of an error or failure with the service (injected)",
    )
}

/// ISO 8601 time a day from now, for connection expiries (content only, not scheduling).
fn expiry_timestamp() -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
