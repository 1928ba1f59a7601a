//! The counters `GET /_sim/stats` serves and `SimHandle::stats()` returns. Benchmarks read
//! quota refusals from here, never from the worker's own metrics. Shape (see README):
//! per-operation outcome counts, active chats now and peak, chats created, duplicate
//! persistent chats for one source contact, the background caller's counts, and a
//! per-second timeline (second 0 = start or last reset) of accepted (200) and refused (429
//! of either kind) calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Outcome counts of one operation. Each request lands in exactly one counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounters {
    /// 200 that created a chat / association.
    pub ok: u64,
    /// 429 from the rate quota (TooManyRequestsException / ThrottlingException).
    pub throttled: u64,
    /// 429 LimitExceededException (concurrent active chats).
    pub limit_exceeded: u64,
    /// 400 InvalidParameterException / InvalidRequestException.
    pub invalid: u64,
    /// 404 ResourceNotFoundException.
    pub not_found: u64,
    /// 403 AccessDeniedException.
    pub access_denied: u64,
    /// 500 InternalServiceException (injected).
    pub server_error: u64,
    /// Connections closed without a response (injected).
    pub dropped: u64,
    /// 200 that returned the stored response of an earlier call with the same ClientToken.
    pub idempotent_replays: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operations {
    #[serde(rename = "StartChatContact")]
    pub start_chat_contact: OpCounters,
    #[serde(rename = "CreatePersistentContactAssociation")]
    pub create_persistent_contact_association: OpCounters,
}

/// The background caller (another client of the same account's StartChatContact quota).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackgroundCounters {
    pub attempted: u64,
    pub accepted: u64,
    pub refused: u64,
}

/// Accepted (200) and refused (429) calls within one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondCounts {
    pub accepted: u64,
    pub refused: u64,
}

/// One second of the timeline; `second` counts from the start or the last reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineSecond {
    pub second: u64,
    #[serde(rename = "StartChatContact")]
    pub start_chat_contact: SecondCounts,
    #[serde(rename = "CreatePersistentContactAssociation")]
    pub create_persistent_contact_association: SecondCounts,
    pub background: SecondCounts,
}

/// One instance's chat counters (`instances` in the stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceCounters {
    /// Chats created here by callers of the API (not the background caller's, not prefilled).
    pub created: u64,
    /// StartChatContact calls refused here with LimitExceededException.
    pub limit_exceeded: u64,
    /// StartChatContact calls for this instance refused by the rate quota.
    pub throttled: u64,
    /// Active chats now, every caller's (prefilled and background ones included).
    pub active: u64,
    /// Highest `active` since start or reset.
    pub peak_active: u64,
    /// The instance's active-chats limit.
    pub max_chats: u64,
}

/// One chat created by an API caller (`chats` in the stats), in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// Milliseconds since the start or last reset.
    pub t_ms: u64,
    pub instance: String,
    /// `PersistentChat.SourceContactId`, when there is one.
    pub source: Option<String>,
    /// How long the chat stays active (the lifetime draw).
    pub lifetime_ms: u64,
}

/// One call of an API caller (`calls` in the stats; the background caller is not in it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Milliseconds since the start or last reset, when the call was decided.
    pub t_ms: u64,
    /// `StartChatContact` or `CreatePersistentContactAssociation`.
    pub op: String,
    pub instance: String,
    /// `ok`, `replay`, `throttled`, `limit_exceeded`, `server_error`, `dropped`, `invalid`,
    /// `not_found`.
    pub outcome: String,
}

/// How many `chats` and `calls` records are kept (each about 100 bytes); later ones are
/// counted in `records_dropped` only.
pub const MAX_RECORDS: usize = 200_000;

/// Contact events (`--contact-events-queue-url`): SendMessage calls that reached the queue, and
/// events given up after their retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEventCounters {
    pub sent: u64,
    pub failed: u64,
}

/// Everything `/_sim/stats` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub operations: Operations,
    /// Chats active now, all instances together.
    pub active_chats: u64,
    /// Highest `active_chats` seen since start or reset.
    pub peak_active_chats: u64,
    /// Chats created (idempotent replays create none).
    pub chats_created: u64,
    /// Chats created for a `PersistentChat.SourceContactId` that already had a chat created.
    pub duplicate_source_chats: u64,
    /// Chats that ended because nobody connected within the connect window.
    #[serde(default)]
    pub chats_abandoned: u64,
    pub background: BackgroundCounters,
    /// Dense: one entry per second from 0 to the last second that saw a call.
    pub timeline: Vec<TimelineSecond>,
    /// Wall-clock time of second 0 (the start or last reset), Unix milliseconds.
    #[serde(default)]
    pub epoch_unix_ms: u64,
    /// Per instance that saw a call or holds chats.
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceCounters>,
    /// Every chat created by an API caller, in creation order.
    #[serde(default)]
    pub chats: Vec<ChatRecord>,
    /// Every call of an API caller that reached the account (past auth and validation).
    #[serde(default)]
    pub calls: Vec<CallRecord>,
    /// Records not kept in `chats` or `calls` beyond `MAX_RECORDS`.
    #[serde(default)]
    pub records_dropped: u64,
    /// Contact events sent and failed (zero without `--contact-events-queue-url`).
    #[serde(default)]
    pub contact_events: ContactEventCounters,
}

/// The two Connect operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    StartChat,
    Associate,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::StartChat => "StartChatContact",
            Op::Associate => "CreatePersistentContactAssociation",
        }
    }
}

impl Operations {
    pub fn get_mut(&mut self, op: Op) -> &mut OpCounters {
        match op {
            Op::StartChat => &mut self.start_chat_contact,
            Op::Associate => &mut self.create_persistent_contact_association,
        }
    }

    pub fn get(&self, op: Op) -> &OpCounters {
        match op {
            Op::StartChat => &self.start_chat_contact,
            Op::Associate => &self.create_persistent_contact_association,
        }
    }
}

/// Which timeline column a call lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Op(Op),
    Background,
}

impl Stats {
    /// Adds one accepted or refused call to second `second` of the timeline, growing it
    /// densely so that consumers can index by second.
    pub fn mark(&mut self, second: u64, lane: Lane, accepted: bool) {
        while (self.timeline.len() as u64) <= second {
            let next = self.timeline.len() as u64;
            self.timeline.push(TimelineSecond {
                second: next,
                ..TimelineSecond::default()
            });
        }
        let Ok(index) = usize::try_from(second) else {
            return;
        };
        let Some(entry) = self.timeline.get_mut(index) else {
            return;
        };
        let counts = match lane {
            Lane::Op(Op::StartChat) => &mut entry.start_chat_contact,
            Lane::Op(Op::Associate) => &mut entry.create_persistent_contact_association,
            Lane::Background => &mut entry.background,
        };
        if accepted {
            counts.accepted += 1;
        } else {
            counts.refused += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_the_documented_one() {
        let mut s = Stats::default();
        s.mark(1, Lane::Op(Op::StartChat), true);
        s.mark(1, Lane::Background, false);
        let v = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(v["operations"]["StartChatContact"]["idempotent_replays"], 0);
        assert_eq!(
            v["operations"]["CreatePersistentContactAssociation"]["access_denied"],
            0
        );
        assert_eq!(v["timeline"][0]["second"], 0);
        assert_eq!(v["timeline"][1]["StartChatContact"]["accepted"], 1);
        assert_eq!(v["timeline"][1]["background"]["refused"], 1);
        assert_eq!(v["background"]["attempted"], 0);
        assert_eq!(v["duplicate_source_chats"], 0);
        assert_eq!(v["contact_events"]["sent"], 0);
        assert_eq!(v["contact_events"]["failed"], 0);
        let back: Stats = serde_json::from_value(v).unwrap_or_default();
        assert_eq!(back, s);
    }
}
