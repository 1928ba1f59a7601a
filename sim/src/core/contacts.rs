//! Contacts and chat sessions: what persistent chat rehydrates from, and the connect window.
//!
//! Sessions (the persistent-chat documentation's example): a chat session is a chain of chat
//! contacts C1 → C2 → C3 (C1 the initial contact, C3 e.g. a post-chat survey from a disconnect
//! flow). `PersistentChat { RehydrationType, SourceContactId }` resolves as the API reference says:
//! - `ENTIRE_PAST_SESSION`: from "the most recently terminated past chat contact" of the
//!   source's session, so `SourceContactId = C1` continues from C3;
//! - `FROM_SEGMENT`: from the named contact itself, so `C2` continues from C2;
//! - "Only chat sessions that have ended are allowed to rehydrate": a session with a contact
//!   still active, or a source that is not a chat, is refused with 400 InvalidRequestException
//!   (the exact message of the real service is not documented; these say what is wrong).
//!
//! The new chat joins the source's session as its newest segment, so a second resume of the
//! same session while the first resumed chat lives is refused too, and once it has ended
//! `ENTIRE_PAST_SESSION` continues from it. Where contacts come from: `--past-session C1>C2>C3`
//! seeds ended sessions; ids with `--active-contact-prefix` are active chats and ids with
//! `--voice-contact-prefix` voice contacts; any other id the sim has not seen is an ended
//! one-segment chat session (so callers that know nothing of sessions keep working).
//!
//! The connect window: "clients must subscribe to the participant's connection for the created
//! chat within 5 minutes". A chat created with the window on (`--connect-window-seconds` > 0)
//! must be connected (`POST /participant/connection` with its participant token) by
//! `created + window`, or it ends then, frees its capacity and counts in `chats_abandoned`. A
//! connected chat lives its full lifetime. An idempotent replay returns the stored response
//! whatever became of the chat (see sim/README.md for why).
//!
//! Records are forgotten `idempotency_ttl` after their chat ended, which bounds memory in long
//! soaks; a forgotten id is then an unknown one (an ended one-segment session).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::SimConfig;
use crate::error::{ApiError, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Chat,
    Voice,
}

#[derive(Debug)]
struct Contact {
    session: String,
    channel: Channel,
    /// When it ends or ended; `None`: ended before the sim started (seeded).
    ends: Option<Instant>,
    /// Sim-created chats: the instance and the instant its capacity slot was queued with.
    slot: Option<(String, Instant)>,
    connect_by: Option<Instant>,
    connected: bool,
    continued_from: Option<String>,
    token: Option<String>,
    /// The request members a test may want to see again (segment attributes and the like).
    details: Value,
}

/// A chat the account just created, to remember.
pub struct NewChat<'a> {
    pub contact_id: &'a str,
    pub instance_id: &'a str,
    pub participant_token: &'a str,
    pub continued_from: Option<&'a str>,
    /// When its lifetime ends (the instant its capacity slot was queued with).
    pub ends: Instant,
    pub details: Value,
}

#[derive(Default)]
pub struct Contacts {
    by_id: HashMap<String, Contact>,
    /// Session id (its initial contact) → its contacts in order.
    sessions: HashMap<String, Vec<String>>,
    by_token: HashMap<String, String>,
    /// Unconnected chats by connect-by instant (one window for all, so FIFO).
    unconnected: VecDeque<(Instant, String)>,
    /// When each sim-created record may be forgotten.
    retire: BinaryHeap<Reverse<(Instant, String)>>,
    pub abandoned: u64,
}

impl Contacts {
    /// Seeds the ended past sessions of `config.past_sessions` (`C1>C2>C3`).
    pub fn new(config: &SimConfig) -> Self {
        let mut c = Contacts::default();
        for spec in &config.past_sessions {
            let ids: Vec<&str> = spec
                .split('>')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let Some(first) = ids.first() else { continue };
            for (i, id) in ids.iter().enumerate() {
                c.by_id.insert(
                    (*id).to_owned(),
                    Contact {
                        session: (*first).to_owned(),
                        channel: Channel::Chat,
                        ends: None,
                        slot: None,
                        connect_by: None,
                        connected: false,
                        continued_from: (i > 0).then(|| ids[i - 1].to_owned()),
                        token: None,
                        details: Value::Null,
                    },
                );
            }
            c.sessions.insert(
                (*first).to_owned(),
                ids.iter().map(|s| (*s).to_owned()).collect(),
            );
        }
        c
    }

    /// Ends unconnected chats whose window passed; returns the capacity slots they held (the
    /// instance and the instant each was queued with) for the caller to free, and forgets
    /// records past their retirement.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, Instant)> {
        let mut freed = Vec::new();
        while self.unconnected.front().is_some_and(|(by, _)| *by <= now) {
            let Some((by, id)) = self.unconnected.pop_front() else {
                break;
            };
            let Some(c) = self.by_id.get_mut(&id) else {
                continue;
            };
            if c.connected || c.ends.is_some_and(|e| e <= by) {
                continue;
            }
            c.ends = Some(by);
            self.abandoned += 1;
            if let Some(slot) = c.slot.take() {
                freed.push(slot);
            }
        }
        while self.retire.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            if let Some(Reverse((_, id))) = self.retire.pop()
                && let Some(c) = self.by_id.remove(&id)
            {
                if let Some(segments) = self.sessions.get_mut(&c.session) {
                    segments.retain(|s| s != &id);
                    if segments.is_empty() {
                        self.sessions.remove(&c.session);
                    }
                }
                if let Some(token) = &c.token {
                    self.by_token.remove(token);
                }
            }
        }
        freed
    }

    /// The contact a persistent chat (or association) continues from, or why it cannot.
    pub fn rehydrate(
        &self,
        config: &SimConfig,
        source: &str,
        rehydration_type: &str,
        now: Instant,
    ) -> Result<String, ApiError> {
        let prefixed = |p: &String| !p.is_empty() && source.starts_with(p.as_str());
        let known = self.by_id.get(source);
        let channel = known.map_or_else(
            || {
                if prefixed(&config.voice_contact_prefix) {
                    Channel::Voice
                } else {
                    Channel::Chat
                }
            },
            |c| c.channel,
        );
        if channel != Channel::Chat {
            return Err(ApiError::invalid_request(format!(
                "SourceContactId {source} is not a chat contact; only chat contacts can be \
                 rehydrated"
            )));
        }
        let segments: Vec<&str> = match known.and_then(|c| self.sessions.get(&c.session)) {
            Some(s) => s.iter().map(String::as_str).collect(),
            None => vec![source],
        };
        let active = |id: &str| match self.by_id.get(id) {
            Some(c) => c.ends.is_some_and(|e| e > now),
            None => prefixed(&config.active_contact_prefix),
        };
        if let Some(live) = segments.iter().find(|id| active(id)) {
            return Err(ApiError::invalid_request(format!(
                "Only chat sessions that have ended can be rehydrated: contact {live} of the \
                 session of SourceContactId {source} is still active"
            )));
        }
        Ok(match rehydration_type {
            "ENTIRE_PAST_SESSION" => segments.last().copied().unwrap_or(source).to_owned(),
            _ => source.to_owned(),
        })
    }

    /// Remembers a chat the account created; `window` is the connect window (zero: off) and
    /// `ttl` how long after its end the record is kept.
    pub fn add_chat(&mut self, chat: NewChat<'_>, now: Instant, window: Duration, ttl: Duration) {
        let session = match chat.continued_from {
            Some(from) => {
                if !self.by_id.contains_key(from) {
                    // An implicit ended one-segment session becomes a real one.
                    self.by_id.insert(
                        from.to_owned(),
                        Contact {
                            session: from.to_owned(),
                            channel: Channel::Chat,
                            ends: None,
                            slot: None,
                            connect_by: None,
                            connected: false,
                            continued_from: None,
                            token: None,
                            details: Value::Null,
                        },
                    );
                    self.sessions.insert(from.to_owned(), vec![from.to_owned()]);
                    self.retire
                        .push(Reverse((chat.ends + ttl, from.to_owned())));
                }
                self.by_id
                    .get(from)
                    .map_or_else(|| from.to_owned(), |c| c.session.clone())
            }
            None => chat.contact_id.to_owned(),
        };
        let id = chat.contact_id.to_owned();
        self.sessions
            .entry(session.clone())
            .or_default()
            .push(id.clone());
        let connect_by = (!window.is_zero()).then(|| now + window);
        if let Some(by) = connect_by {
            self.unconnected.push_back((by, id.clone()));
        }
        self.by_token
            .insert(chat.participant_token.to_owned(), id.clone());
        self.retire.push(Reverse((chat.ends + ttl, id.clone())));
        self.by_id.insert(
            id,
            Contact {
                session,
                channel: Channel::Chat,
                ends: Some(chat.ends),
                slot: Some((chat.instance_id.to_owned(), chat.ends)),
                connect_by,
                connected: false,
                continued_from: chat.continued_from.map(str::to_owned),
                token: Some(chat.participant_token.to_owned()),
                details: chat.details,
            },
        );
    }

    /// CreateParticipantConnection: marks the chat of `token` connected. 403
    /// AccessDeniedException when the token is unknown or its chat has ended (by its lifetime,
    /// or by its connect window passing unconnected).
    pub fn connect(&mut self, token: &str, now: Instant) -> Result<String, ApiError> {
        let denied = || {
            ApiError::new(
                ErrorCode::AccessDenied,
                "The participant token is not valid, or its chat has ended",
            )
        };
        let id = self.by_token.get(token).ok_or_else(denied)?.clone();
        let c = self.by_id.get_mut(&id).ok_or_else(denied)?;
        let window_over = !c.connected && c.connect_by.is_some_and(|by| by <= now);
        if window_over || c.ends.is_some_and(|e| e <= now) {
            return Err(denied());
        }
        c.connected = true;
        Ok(id)
    }

    /// When a contact ends or ended, as far as the sim knows now (`None`: unknown, forgotten or
    /// ended before the sim started). Only final once its connect window has passed or it was
    /// connected: see `expire`.
    pub fn ends_of(&self, id: &str) -> Option<Instant> {
        self.by_id.get(id).and_then(|c| c.ends)
    }

    /// What the sim knows of a contact, for `GET /_sim/contacts/{id}` (test introspection).
    pub fn describe(&self, id: &str, now: Instant) -> Option<Value> {
        let c = self.by_id.get(id)?;
        let state = if c.ends.is_some_and(|e| e > now) {
            "ACTIVE"
        } else {
            "ENDED"
        };
        let segments = self.sessions.get(&c.session).cloned().unwrap_or_default();
        let mut v = json!({
            "ContactId": id,
            "InitialContactId": c.session,
            "Channel": match c.channel { Channel::Chat => "CHAT", Channel::Voice => "VOICE" },
            "State": state,
            "ContinuedFromContactId": c.continued_from,
            "Connected": c.connected,
            "SessionContactIds": segments,
        });
        if let (Value::Object(out), Value::Object(details)) = (&mut v, &c.details) {
            out.extend(details.clone());
        }
        Some(v)
    }
}
