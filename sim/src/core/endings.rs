//! When chats end, for contact events (`--contact-events-queue-url`, see `contact_events`).
//!
//! The account frees capacity lazily (`prune_active` drops ended chats when a request looks), so
//! nothing there runs at the instant a chat ends. With contact events on, every chat that will
//! end is also entered here, in a min-heap of the instants to look at it again, and the events
//! task (`contact_events::run`) sleeps until the earliest, takes what has ended
//! (`Core::take_ended`) and sends each event its delivery delay later.
//!
//! Which chats end, and when:
//! - an API caller's chat at the end of its lifetime, or earlier at its connect window when
//!   nobody connected (`contacts`): it is looked at first at the earlier of the two, and then,
//!   when it turns out connected, again at the end of its lifetime;
//! - the background caller's chats (`--background-instance`) at the end of their lifetimes;
//! - prefilled chats (`--instance-prefill ID=N:SECONDS`) SECONDS after the start or reset; those
//!   held "for the whole run" (`ID=N`) never end and send nothing;
//! - a reset forgets every chat without ending it (no events; events already due are still sent).
//!
//! Delays and event ids come from two RNG streams of their own (seeded from `--seed`, re-seeded
//! on reset), drawn when a chat is created: one for the API callers' chats in creation order, so
//! the n-th chat of a run gets the same delay whatever the timing; one for the other callers'
//! chats (their contact ids too). The lifetime and fault draws are untouched.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use super::{Core, Inner};
use crate::config::SimConfig;
use crate::contact_events::{DelayRange, EndedChat};
use crate::ids;

/// Mixed into `--seed` for the API callers' chats, and for the other callers'.
const OURS_SALT: u64 = 0x636f_6e74_6163_7431;
const OTHERS_SALT: u64 = 0x636f_6e74_6163_7432;

struct Ending {
    instance: String,
    contact_id: String,
    event_id: String,
    initiated: Instant,
    delay: Duration,
    /// An API caller's chat: the contact record says when it really ends (its connect window).
    api: bool,
}

/// The chats still to end.
pub(super) struct Endings {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    chats: HashMap<u64, Ending>,
    next_seq: u64,
    delays: DelayRange,
    ours: StdRng,
    others: StdRng,
}

fn rng(seed: Option<u64>, salt: u64) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed ^ salt),
        None => StdRng::from_rng(&mut rand::rng()),
    }
}

impl Endings {
    /// `None` without `--contact-events-queue-url`: nothing is tracked.
    pub fn new(config: &SimConfig) -> Option<Self> {
        config.contact_events_queue_url.as_ref()?;
        Some(Endings {
            heap: BinaryHeap::new(),
            chats: HashMap::new(),
            next_seq: 0,
            delays: config.contact_events_delay_ms,
            ours: rng(config.seed, OURS_SALT),
            others: rng(config.seed, OTHERS_SALT),
        })
    }

    /// Enters a chat; `contact_id` None: another caller's chat, which gets an id here. `check` is
    /// the first instant to look at it. Returns whether it is now the earliest (the events task
    /// must wake up).
    fn add(
        &mut self,
        instance: &str,
        contact_id: Option<&str>,
        initiated: Instant,
        check: Instant,
    ) -> bool {
        let api = contact_id.is_some();
        let rng = if api {
            &mut self.ours
        } else {
            &mut self.others
        };
        let contact_id = contact_id.map_or_else(|| ids::uuid(rng), str::to_owned);
        let (lo, hi) = (self.delays.lo_ms as f64, self.delays.hi_ms as f64);
        let delay_ms = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let event_id = ids::uuid(rng);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.chats.insert(
            seq,
            Ending {
                instance: instance.to_owned(),
                contact_id,
                event_id,
                initiated,
                delay: Duration::from_secs_f64(delay_ms / 1000.0),
                api,
            },
        );
        let earliest = self.heap.peek().is_none_or(|Reverse((t, _))| check < *t);
        self.heap.push(Reverse((check, seq)));
        earliest
    }

    pub fn pending(&self) -> usize {
        self.chats.len()
    }
}

impl Inner {
    /// Unix milliseconds of an instant of this epoch.
    fn unix_ms(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.epoch).as_millis();
        self.stats
            .epoch_unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// Enters a chat that ends (see `Endings::add`); false when contact events are off.
    pub(super) fn schedule_end(
        &mut self,
        instance: &str,
        contact_id: Option<&str>,
        initiated: Instant,
        check: Instant,
    ) -> bool {
        self.endings
            .as_mut()
            .is_some_and(|e| e.add(instance, contact_id, initiated, check))
    }
}

impl Core {
    /// Chats that have ended by `now` (each once, in the order they ended), and when to look
    /// again (`None`: no chat left to end; a new one wakes the task through `ends_changed`).
    pub fn take_ended(&self, now: Instant) -> (Vec<EndedChat>, Option<Instant>) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        // Ends the chats whose connect window passed unconnected (their `ends` move earlier).
        inner.prune_active(now);
        let Some(endings) = inner.endings.as_mut() else {
            return (Vec::new(), None);
        };
        let mut ended = Vec::new();
        while let Some(&Reverse((check, seq))) = endings.heap.peek() {
            if check > now {
                break;
            }
            endings.heap.pop();
            let Some(chat) = endings.chats.get(&seq) else {
                continue;
            };
            let end = if chat.api {
                inner.contacts.ends_of(&chat.contact_id).unwrap_or(check)
            } else {
                check
            };
            if end > now {
                // Connected within its window: it lives its whole lifetime.
                endings.heap.push(Reverse((end, seq)));
                continue;
            }
            let Some(chat) = endings.chats.remove(&seq) else {
                continue;
            };
            ended.push((end, chat));
        }
        let next = endings.heap.peek().map(|Reverse((t, _))| *t);
        ended.sort_by_key(|(end, _)| *end);
        let ended = ended
            .into_iter()
            .map(|(end, chat)| EndedChat {
                initiated_unix_ms: inner.unix_ms(chat.initiated),
                disconnected_unix_ms: inner.unix_ms(end),
                due: end + chat.delay,
                ended_at: end,
                instance: chat.instance,
                contact_id: chat.contact_id,
                event_id: chat.event_id,
            })
            .collect();
        (ended, next)
    }

    /// Chats entered and not yet ended (contact events on), for tests.
    pub fn pending_ends(&self) -> usize {
        self.lock().endings.as_ref().map_or(0, Endings::pending)
    }

    /// Counts one contact event sent, or given up.
    pub fn count_contact_event(&self, sent: bool) {
        let mut inner = self.lock();
        let c = &mut inner.stats.contact_events;
        if sent {
            c.sent += 1;
        } else {
            c.failed += 1;
        }
    }

    /// Notified when a chat entered for contact events ends before all the others (and on
    /// reset): the events task then looks at the heap again.
    pub fn ends_changed(&self) -> &tokio::sync::Notify {
        &self.ends_changed
    }
}
