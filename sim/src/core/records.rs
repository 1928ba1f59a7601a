//! The benchmark-scenario parts of the account, kept apart from the request decisions in `ops`:
//! per-instance limits and counters, chats other callers hold (prefill) or open (the background
//! caller on an instance), chat lifetimes from `--chat-lifetime`, and the `chats` / `calls`
//! records `/_sim/stats` serves so a benchmark can rebuild what happened without trusting the
//! worker's own metrics.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::{Core, Inner, Outcome};
use crate::config::{BackgroundOperation, SimConfig};
use crate::error::ErrorCode;
use crate::instances;
use crate::lifetimes::{Lifetime, Lifetimes};
use crate::stats::{CallRecord, ChatRecord, InstanceCounters, Lane, MAX_RECORDS, Op, Stats};

/// A prefilled chat "for the whole run" ends this far in the future.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What `Inner` keeps for the scenario features.
pub(super) struct Scenario {
    /// Lifetimes of API callers' chats, in creation order.
    pub lifetimes: Lifetimes,
    /// Lifetimes of the background caller's chats (own draws, so ours stay the seed's).
    pub background_lifetimes: Lifetimes,
}

impl Scenario {
    pub fn new(config: &SimConfig) -> Self {
        let dist = config
            .chat_lifetime
            .unwrap_or(Lifetime::Fixed(config.chat_seconds));
        Scenario {
            lifetimes: Lifetimes::new(dist, config.seed),
            background_lifetimes: Lifetimes::new(dist, config.seed.map(|s| s.wrapping_add(1))),
        }
    }
}

/// Inserts `end` keeping the queue ordered by end (lifetimes vary, so a later chat may end
/// first); `prune_active` pops from the front.
pub(super) fn insert_end(queue: &mut VecDeque<Instant>, end: Instant) {
    let at = queue.partition_point(|&e| e <= end);
    queue.insert(at, end);
}

fn ms_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn outcome_name(outcome: &Outcome, replay: bool) -> &'static str {
    match outcome {
        Outcome::Ok(_) if replay => "replay",
        Outcome::Ok(_) => "ok",
        Outcome::Drop => "dropped",
        Outcome::Err(e) => match e.code {
            ErrorCode::TooManyRequests | ErrorCode::Throttling => "throttled",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::InternalService => "server_error",
            ErrorCode::ResourceNotFound | ErrorCode::UnknownOperation => "not_found",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::InvalidParameter | ErrorCode::InvalidRequest => "invalid",
        },
    }
}

impl Inner {
    /// The chats other callers hold from the start (`--instance-prefill`).
    pub(super) fn prefill(&mut self, config: &SimConfig, now: Instant) {
        for p in &config.instance_prefill {
            let end = match p.seconds {
                Some(s) => now + Duration::from_secs_f64(s),
                None => now
                    .checked_add(FOREVER)
                    .unwrap_or(now + Duration::from_secs(86_400)),
            };
            let queue = self.active.entry(p.instance.clone()).or_default();
            for _ in 0..p.chats {
                insert_end(queue, end);
            }
            self.active_total += u64::from(p.chats);
            // Held for SECONDS: they end then (contact events); for the whole run: never.
            if p.seconds.is_some() {
                for _ in 0..p.chats {
                    self.schedule_end(&p.instance, None, now, end);
                }
            }
        }
        self.stats.peak_active_chats = self.active_total;
        for p in &config.instance_prefill {
            let held = self.active.get(&p.instance).map_or(0, |q| q.len() as u64);
            let c = self.instance_mut(config, &p.instance);
            c.peak_active = c.peak_active.max(held);
        }
    }

    pub(super) fn instance_mut(&mut self, config: &SimConfig, id: &str) -> &mut InstanceCounters {
        self.stats
            .instances
            .entry(id.to_string())
            .or_insert_with(|| InstanceCounters {
                max_chats: u64::from(max_chats(config, id)),
                ..InstanceCounters::default()
            })
    }

    /// Adds a chat ending at `now + lifetime` to `instance`, updating the peaks.
    pub(super) fn open_chat(
        &mut self,
        config: &SimConfig,
        instance: &str,
        lifetime: Duration,
        now: Instant,
    ) {
        let queue = self.active.entry(instance.to_string()).or_default();
        insert_end(queue, now + lifetime);
        let here = queue.len() as u64;
        self.active_total += 1;
        self.stats.peak_active_chats = self.stats.peak_active_chats.max(self.active_total);
        let c = self.instance_mut(config, instance);
        c.peak_active = c.peak_active.max(here);
    }

    /// An API caller's chat was created: counters and the `chats` record.
    pub(super) fn record_chat(
        &mut self,
        config: &SimConfig,
        instance: &str,
        source: Option<&str>,
        lifetime: Duration,
        now: Instant,
    ) {
        self.instance_mut(config, instance).created += 1;
        if self.stats.chats.len() < MAX_RECORDS {
            let record = ChatRecord {
                t_ms: ms_since(self.epoch, now),
                instance: instance.to_string(),
                source: source.map(str::to_string),
                lifetime_ms: u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX),
            };
            self.stats.chats.push(record);
        } else {
            self.stats.records_dropped += 1;
        }
    }

    /// One decided call of an API caller: per-instance refusals and the `calls` record.
    pub(super) fn record_call(
        &mut self,
        config: &SimConfig,
        op: Op,
        instance: &str,
        outcome: &Outcome,
        replay: bool,
        now: Instant,
    ) {
        let name = outcome_name(outcome, replay);
        match name {
            "limit_exceeded" => self.instance_mut(config, instance).limit_exceeded += 1,
            "throttled" if op == Op::StartChat => {
                self.instance_mut(config, instance).throttled += 1;
            }
            _ => {}
        }
        if self.stats.calls.len() < MAX_RECORDS {
            let record = CallRecord {
                t_ms: ms_since(self.epoch, now),
                op: op.name().to_string(),
                instance: instance.to_string(),
                outcome: name.to_string(),
            };
            self.stats.calls.push(record);
        } else {
            self.stats.records_dropped += 1;
        }
    }

    /// Fills in what is computed on read: active chats per instance.
    pub(super) fn finish_stats(&self, config: &SimConfig, stats: &mut Stats) {
        for (id, queue) in &self.active {
            let c = stats
                .instances
                .entry(id.clone())
                .or_insert_with(|| InstanceCounters {
                    max_chats: u64::from(max_chats(config, id)),
                    ..InstanceCounters::default()
                });
            c.active = queue.len() as u64;
        }
    }
}

/// The active-chats limit of `instance`.
pub(super) fn max_chats(config: &SimConfig, instance: &str) -> u32 {
    instances::max_chats(
        &config.instance_max_chats,
        config.max_active_chats,
        instance,
    )
}

impl Core {
    /// Time since the start or last reset (the background schedule's clock).
    pub fn elapsed(&self) -> Duration {
        let inner = self.lock();
        Instant::now().saturating_duration_since(inner.epoch)
    }

    /// One call of the background caller on `--background-operation`: a rate token, and with
    /// `--background-instance` a chat on that instance when it has room. Counted under
    /// `background`, never under `operations`. Returns whether it was accepted.
    pub fn background_call(&self) -> bool {
        let config = &self.config;
        let mut inner = self.lock();
        let now = Instant::now();
        let mut accepted = match config.background_operation {
            BackgroundOperation::StartChat => inner.start_bucket.try_take(now),
            BackgroundOperation::Associate => inner.associate_bucket.try_take(now),
        };
        if accepted && let Some(instance) = &config.background_instance {
            inner.prune_active(now);
            let here = inner.active.get(instance).map_or(0, VecDeque::len);
            if here >= max_chats(config, instance) as usize {
                accepted = false;
            } else {
                let lifetime = inner.scenario.background_lifetimes.draw();
                inner.open_chat(config, instance, lifetime, now);
                if inner.schedule_end(instance, None, now, now + lifetime) {
                    self.ends_changed.notify_one();
                }
            }
        }
        let second = inner.second(now);
        let bg = &mut inner.stats.background;
        bg.attempted += 1;
        if accepted {
            bg.accepted += 1;
        } else {
            bg.refused += 1;
        }
        inner.stats.mark(second, Lane::Background, accepted);
        accepted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::{Core, Outcome};
    use crate::config::SimConfig;
    use crate::error::ErrorCode;
    use crate::validate::{self, StartChat};

    fn config() -> SimConfig {
        SimConfig {
            start_chat_rate: 1000.0,
            start_chat_burst: 1000,
            seed: Some(5),
            ..SimConfig::default()
        }
    }

    fn chat(instance: &str, source: &str) -> StartChat {
        let body = json!({
            "InstanceId": instance, "ContactFlowId": "flow",
            "ParticipantDetails": {"DisplayName": "Ana"}, "ClientToken": source,
            "PersistentChat": {"RehydrationType": "ENTIRE_PAST_SESSION", "SourceContactId": source}
        });
        validate::start_chat(body.to_string().as_bytes()).expect("valid request")
    }

    fn is_ok(o: &Outcome) -> bool {
        matches!(o, Outcome::Ok(_))
    }

    fn code(o: Outcome) -> Option<ErrorCode> {
        match o {
            Outcome::Err(e) => Some(e.code),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn varied_lifetimes_free_capacity_as_each_chat_ends() {
        let core = Core::new(SimConfig {
            max_active_chats: 3,
            chat_lifetime: Some("uniform:1:15".parse().expect("valid")),
            ..config()
        });
        for i in 0..3 {
            assert!(is_ok(&core.start_chat(&chat("i", &format!("c{i}")))));
        }
        let s = core.stats();
        let mut ends: Vec<u64> = s.chats.iter().map(|c| c.lifetime_ms).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|&l| (1000..=15_000).contains(&l)));
        ends.sort_unstable();
        assert!(ends[0] < ends[2], "draws vary");
        // Just after the shortest chat ends (whichever was created first), one slot is free.
        tokio::time::advance(Duration::from_millis(ends[0] + 1)).await;
        assert_eq!(core.stats().active_chats, 2);
        assert!(is_ok(&core.start_chat(&chat("i", "c3"))));
        assert_eq!(
            code(core.start_chat(&chat("i", "c4"))),
            Some(ErrorCode::LimitExceeded)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_instance_has_its_own_limit_and_counters() {
        let core = Core::new(SimConfig {
            max_active_chats: 100,
            instance_max_chats: vec!["A=1".parse().expect("valid")],
            ..config()
        });
        assert!(is_ok(&core.start_chat(&chat("A", "a1"))));
        assert_eq!(
            code(core.start_chat(&chat("A", "a2"))),
            Some(ErrorCode::LimitExceeded)
        );
        for i in 0..5 {
            assert!(is_ok(&core.start_chat(&chat("B", &format!("b{i}")))));
        }
        let s = core.stats();
        let (a, b) = (s.instances["A"], s.instances["B"]);
        assert_eq!(
            (a.created, a.limit_exceeded, a.active, a.max_chats),
            (1, 1, 1, 1)
        );
        assert_eq!(
            (b.created, b.limit_exceeded, b.active, b.max_chats),
            (5, 0, 5, 100)
        );
        let outcomes: Vec<&str> = s.calls.iter().map(|c| c.outcome.as_str()).collect();
        assert_eq!(outcomes[..2], ["ok", "limit_exceeded"]);
        assert_eq!(s.calls.len(), 7);
        assert_eq!(s.chats[1].source.as_deref(), Some("b0"));
    }

    #[tokio::test(start_paused = true)]
    async fn prefilled_chats_hold_the_instance_for_their_time_and_come_back_on_reset() {
        let core = Core::new(SimConfig {
            instance_max_chats: vec!["A=5".parse().expect("valid"), "C=1".parse().expect("valid")],
            instance_prefill: vec![
                "A=5".parse().expect("valid"),
                "C=1:2".parse().expect("valid"),
            ],
            ..config()
        });
        assert_eq!(
            code(core.start_chat(&chat("A", "a1"))),
            Some(ErrorCode::LimitExceeded)
        );
        assert_eq!(
            code(core.start_chat(&chat("C", "c1"))),
            Some(ErrorCode::LimitExceeded)
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(is_ok(&core.start_chat(&chat("C", "c1"))));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(
            code(core.start_chat(&chat("A", "a1"))),
            Some(ErrorCode::LimitExceeded)
        );
        let s = core.stats();
        assert_eq!(
            (s.instances["A"].active, s.chats_created, s.chats.len()),
            (5, 1, 1)
        );
        core.reset();
        let s = core.stats();
        assert_eq!((s.instances["A"].active, s.instances["C"].active), (5, 1));
        assert!(s.calls.is_empty() && s.chats.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_replays_the_same_lifetime_draws() {
        let core = Core::new(SimConfig {
            chat_lifetime: Some("lognormal:5:1:15".parse().expect("valid")),
            ..config()
        });
        let run = |core: &Core| {
            for i in 0..20 {
                core.start_chat(&chat("i", &format!("c{i}")));
            }
            core.stats()
                .chats
                .iter()
                .map(|c| c.lifetime_ms)
                .collect::<Vec<_>>()
        };
        let first = run(&core);
        core.reset();
        assert_eq!(run(&core), first);
    }

    #[tokio::test(start_paused = true)]
    async fn the_background_caller_can_hold_chats_on_an_instance() {
        let core = Core::new(SimConfig {
            instance_max_chats: vec!["A=2".parse().expect("valid")],
            background_rate: 1.0,
            background_instance: Some("A".into()),
            ..config()
        });
        assert!(core.background_call());
        assert!(core.background_call());
        // Full: the third is refused, and our call too.
        assert!(!core.background_call());
        assert_eq!(
            code(core.start_chat(&chat("A", "a1"))),
            Some(ErrorCode::LimitExceeded)
        );
        let s = core.stats();
        assert_eq!((s.background.accepted, s.background.refused), (2, 1));
        assert_eq!((s.instances["A"].active, s.instances["A"].created), (2, 0));
        assert_eq!(s.chats_created, 0);
    }
}
