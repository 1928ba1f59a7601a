//! The simulated account: quotas, active chats, idempotency records and counters, behind
//! one mutex. Every decision about a request is taken in a single critical section with no
//! `.await` inside, so concurrent requests see a consistent state (two calls with the same
//! ClientToken can never both create a chat). Time comes from `tokio::time::Instant`, read
//! under the lock so the per-instance expiry queues stay ordered.
//!
//! Order of checks for a parsed, authenticated request (see `ops`): unknown instance /
//! contact (404) → idempotent replay (still takes a rate token) → rate bucket (429) →
//! active chats (429 LimitExceeded, StartChatContact only) → fault injection → success.

mod contacts;
mod endings;
mod ops;
mod records;
mod resume;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use crate::bucket::TokenBucket;
use crate::config::SimConfig;
use crate::error::{ApiError, ErrorCode};
use crate::stats::{Lane, Op, Stats};

/// What the HTTP layer should do with a request.
#[derive(Debug)]
pub enum Outcome {
    /// 200 with this JSON body (shared with the idempotency record).
    Ok(Arc<str>),
    /// An error response.
    Err(ApiError),
    /// Close the connection without answering.
    Drop,
}

/// A remembered successful response, for idempotent replays: kept serialized, the
/// smallest form, since every call with a ClientToken leaves one for the TTL.
struct Stored {
    fingerprint: u64,
    body: Arc<str>,
}

struct Inner {
    epoch: Instant,
    start_bucket: TokenBucket,
    associate_bucket: TokenBucket,
    /// Per instance: expiry instants of its active chats, oldest first.
    active: HashMap<String, VecDeque<Instant>>,
    active_total: u64,
    idempotency: HashMap<(Op, String), Stored>,
    /// Expiry order of `idempotency` keys (all share one TTL, so FIFO).
    idempotency_expiry: VecDeque<(Instant, Op, String)>,
    /// Source contacts that already had a persistent chat created.
    sources: HashSet<String>,
    /// Contacts, chat sessions and the connect window (`contacts`).
    contacts: contacts::Contacts,
    stats: Stats,
    rng: StdRng,
    /// Lifetime draws (see `records`).
    scenario: records::Scenario,
    /// Chats still to end, for contact events (`endings`); `None` when they are off.
    endings: Option<endings::Endings>,
}

pub struct Core {
    config: SimConfig,
    idempotency_ttl: Duration,
    inner: Mutex<Inner>,
    /// Wakes the contact-events task (see `endings`).
    ends_changed: tokio::sync::Notify,
}

impl Core {
    pub fn new(config: SimConfig) -> Self {
        let now = Instant::now();
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        let inner = Inner::new(&config, now, rng);
        Core {
            idempotency_ttl: Duration::from_secs_f64(config.idempotency_ttl_seconds),
            config,
            inner: Mutex::new(inner),
            ends_changed: tokio::sync::Notify::new(),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere mid-update; the counters are still
        // usable and the simulator must keep answering.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request refused before reaching the account (403 or 400).
    pub fn count_rejected(&self, op: Op, err: &ApiError) {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.tally(op, &Outcome::Err(err.clone()), false, now);
    }

    pub fn stats(&self) -> Stats {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.prune_active(now);
        let mut s = inner.stats.clone();
        s.active_chats = inner.active_total;
        inner.finish_stats(&self.config, &mut s);
        s
    }

    /// Back to a fresh account: counters, timeline (second 0 = now), active chats, full
    /// buckets, forgotten ClientTokens and source contacts.
    pub fn reset(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        let rng = std::mem::replace(&mut inner.rng, StdRng::seed_from_u64(0));
        *inner = Inner::new(&self.config, now, rng);
        drop(inner);
        self.ends_changed.notify_one();
    }
}

impl Inner {
    fn new(config: &SimConfig, now: Instant, rng: StdRng) -> Self {
        let mut inner = Inner {
            epoch: now,
            start_bucket: TokenBucket::new(config.start_chat_rate, config.start_chat_burst, now),
            associate_bucket: TokenBucket::new(config.associate_rate, config.associate_burst, now),
            active: HashMap::new(),
            active_total: 0,
            idempotency: HashMap::new(),
            idempotency_expiry: VecDeque::new(),
            sources: HashSet::new(),
            contacts: contacts::Contacts::new(config),
            stats: Stats {
                epoch_unix_ms: records::unix_ms_now(),
                ..Stats::default()
            },
            rng,
            scenario: records::Scenario::new(config),
            endings: endings::Endings::new(config),
        };
        inner.prefill(config, now);
        inner
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    fn prune_active(&mut self, now: Instant) {
        // Chats nobody connected to within the connect window end early (see `contacts`).
        for (instance, slot) in self.contacts.expire(now) {
            if let Some(queue) = self.active.get_mut(&instance)
                && let Some(pos) = queue.iter().position(|&end| end == slot)
            {
                queue.remove(pos);
                self.active_total = self.active_total.saturating_sub(1);
            }
        }
        self.stats.chats_abandoned = self.contacts.abandoned;
        let mut ended = 0u64;
        self.active.retain(|_, queue| {
            while queue.front().is_some_and(|&end| end <= now) {
                queue.pop_front();
                ended += 1;
            }
            !queue.is_empty()
        });
        self.active_total = self.active_total.saturating_sub(ended);
    }

    fn prune_idempotency(&mut self, now: Instant) {
        while let Some((expires, _, _)) = self.idempotency_expiry.front() {
            if *expires > now {
                break;
            }
            if let Some((_, op, token)) = self.idempotency_expiry.pop_front() {
                self.idempotency.remove(&(op, token));
            }
        }
    }

    /// Records the outcome of one request in the counters and the timeline.
    fn tally(&mut self, op: Op, outcome: &Outcome, replay: bool, now: Instant) {
        let second = self.second(now);
        let c = self.stats.operations.get_mut(op);
        let timeline = match outcome {
            Outcome::Ok(_) if replay => {
                c.idempotent_replays += 1;
                Some(true)
            }
            Outcome::Ok(_) => {
                c.ok += 1;
                Some(true)
            }
            Outcome::Drop => {
                c.dropped += 1;
                None
            }
            Outcome::Err(e) => match e.code {
                ErrorCode::TooManyRequests | ErrorCode::Throttling => {
                    c.throttled += 1;
                    Some(false)
                }
                ErrorCode::LimitExceeded => {
                    c.limit_exceeded += 1;
                    Some(false)
                }
                ErrorCode::InvalidParameter | ErrorCode::InvalidRequest => {
                    c.invalid += 1;
                    None
                }
                ErrorCode::ResourceNotFound | ErrorCode::UnknownOperation => {
                    c.not_found += 1;
                    None
                }
                ErrorCode::AccessDenied => {
                    c.access_denied += 1;
                    None
                }
                ErrorCode::InternalService => {
                    c.server_error += 1;
                    None
                }
            },
        };
        if let Some(accepted) = timeline {
            self.stats.mark(second, Lane::Op(op), accepted);
        }
    }
}

#[cfg(test)]
mod resume_tests;
#[cfg(test)]
mod tests;
