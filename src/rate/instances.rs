//! [`CapacityBook`]: one [`InstanceCapacity`] machine per Connect instance, read with tokio's clock.
//!
//! The active-chat quota is per instance, so everything about capacity is too: the machine that
//! paces starts after a `LimitExceededException`, the count of jobs this worker holds waiting for
//! it, and the notification that wakes them. A full instance never holds back another
//! instance's jobs.
//!
//! # Protocol
//! - [`CapacityBook::peek`] asks the instance's machine whether a start could go now, without
//!   taking it: a job checks before it waits for a rate token, so jobs for a full instance do not
//!   queue for (and use up) the rate shared with other instances. While the machine paces
//!   starts, a `Go` comes with a [`CapacityPromise`] for one of the starts its bucket holds, and
//!   no more jobs are told `Go` than it holds: the others are told `NotBefore` the time the
//!   bucket has one for them too. Without it every job that asked while one start was ready
//!   went on to take a rate token, and all but one of them found the start taken at its claim
//!   (the benchmark's two instances, one full: 62 rate tokens wasted for 105 calls, the free
//!   instance drained at 0.6 of the rate). The promise is given up at the claim, or when the job
//!   goes another way (its permit is dropped), which wakes the holders.
//! - [`CapacityBook::claim`] takes the start right before the call, after the rate token: the
//!   machine counts a claimed start as a call on the wire until its outcome comes back. `Go`
//!   comes with a [`CapacityLease`]: the start owes the machine exactly one outcome, which the
//!   call's permit reports (`pipeline::permit`); a lease dropped unreported reports
//!   `Inconclusive`. A claim refused (the instance filled while the job waited for its token)
//!   sends the job back to holding; its token goes unused.
//! - A job told `NotBefore` that decides to hold takes a [`HoldTicket`] (counted in `ahead` for
//!   the next askers, so the decision can give back what the instance will not start soon) and
//!   waits on [`CapacityBook::changes`] or until the time given.
//! - Every report bumps the instance's change counter, so held jobs ask again at once.
//! - With contact events, [`CapacityBook::freed`] hands a chat end to the instance's machine
//!   (only an instance this worker has a machine for: events name every instance of the
//!   account) and bumps its counter the same way; [`CapacityBook::set_contact_events`] turns
//!   that mode on or off for every machine (the reader's health).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;

use super::capacity::{CapacityAdmit, CapacityOutcome, CapacitySettings, InstanceCapacity};

struct Slot {
    machine: InstanceCapacity,
    holding: usize,
    changes: watch::Sender<u64>,
    /// Peeks answered `Go` while the machine paces starts, not yet claimed or given up: each
    /// holds one of the starts its bucket holds.
    promised: usize,
    /// Whether the machine was ever limited: only such instances get gauges, so jobs naming
    /// made-up instances cannot grow the metrics.
    gauged: bool,
}

/// Rounding tolerance when counting a bucket's ready starts against promises (not a tuning
/// constant; the machine's own is the same).
const PROMISE_EPSILON: f64 = 1e-6;

/// Above this many machines, the ones that can be forgotten are (instance ids come from jobs).
const PRUNE_ABOVE: usize = 64;

/// Gauges of one instance, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceGauges {
    pub instance: String,
    pub state_code: i64,
    pub start_rate: Option<f64>,
}

/// See the module doc.
pub struct CapacityBook {
    settings: CapacitySettings,
    /// Whether chat ends are being reported (new machines start in that mode).
    contact_events: AtomicBool,
    slots: Mutex<HashMap<String, Slot>>,
    /// Called after a report with the gauges of an instance that has been limited, and with
    /// `None` for its rate when the machine is forgotten (the gauges go).
    on_change: Box<dyn Fn(&InstanceGauges) + Send + Sync>,
    on_forget: Box<dyn Fn(&str) + Send + Sync>,
}

/// What [`CapacityBook::ask`] answered.
pub struct Asked {
    pub admit: CapacityAdmit,
    /// Jobs of this worker already holding for this instance.
    pub holding: usize,
    pub start_rate: Option<f64>,
    pub lease: Option<CapacityLease>,
    /// With a peek's `Go` while the machine paces starts: one of its ready starts, promised.
    pub promise: Option<CapacityPromise>,
}

impl CapacityBook {
    pub fn new(
        settings: CapacitySettings,
        on_change: impl Fn(&InstanceGauges) + Send + Sync + 'static,
        on_forget: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        CapacityBook {
            contact_events: AtomicBool::new(settings.contact_events),
            settings,
            slots: Mutex::new(HashMap::new()),
            on_change: Box::new(on_change),
            on_forget: Box::new(on_forget),
        }
    }

    fn with_slot<T>(&self, instance: &str, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() > PRUNE_ABOVE && !slots.contains_key(instance) {
            let now = Instant::now();
            slots.retain(|id, s| {
                let keep = s.holding > 0 || s.promised > 0 || !s.machine.can_forget(now);
                if !keep && s.gauged {
                    (self.on_forget)(id);
                }
                keep
            });
        }
        let events = self.contact_events.load(Ordering::Relaxed);
        let slot = slots.entry(instance.to_owned()).or_insert_with(|| Slot {
            machine: InstanceCapacity::new(
                CapacitySettings {
                    contact_events: events,
                    ..self.settings.clone()
                },
                Instant::now(),
            ),
            holding: 0,
            promised: 0,
            changes: watch::channel(0).0,
            gauged: false,
        });
        f(slot)
    }

    /// Whether a start on `instance` could go now, without taking it (a job checks before it
    /// waits for a rate token, and [`CapacityBook::claim`]s right before its call). While the
    /// machine paces starts, at most as many peeks are told `Go` as it has starts ready, each
    /// with a [`CapacityPromise`].
    pub fn peek(self: &Arc<Self>, instance: &str) -> Asked {
        let now = Instant::now();
        let (admit, holding, start_rate, promised) = self.with_slot(instance, |s| {
            let mut admit = s.machine.clone().admit(now);
            let start_rate = s.machine.start_rate(now);
            let mut promised = false;
            if let (CapacityAdmit::Go, Some(rate)) = (admit, start_rate) {
                // Paced: the earlier promises hold starts of the bucket too.
                let ready = s.machine.ready_starts(now);
                let short = (s.promised + 1) as f64 - ready;
                if short > PROMISE_EPSILON && rate > 0.0 {
                    let wait = std::time::Duration::from_secs_f64((short / rate).min(1e6));
                    admit = CapacityAdmit::NotBefore(now + wait);
                } else {
                    s.promised += 1;
                    promised = true;
                }
            }
            (admit, s.holding, start_rate, promised)
        });
        Asked {
            admit,
            holding,
            start_rate,
            lease: None,
            promise: promised.then(|| CapacityPromise {
                book: self.clone(),
                instance: instance.to_owned(),
                redeemed: false,
            }),
        }
    }

    /// Takes one start on `instance` now, right before the call: the machine counts a `Go` as
    /// a call on the wire until its outcome is reported. The peek's promise, if any, is
    /// redeemed in the same step (it held the start this claim takes, so no other peek can be
    /// promised that start in between).
    pub fn claim(self: &Arc<Self>, instance: &str, promise: Option<CapacityPromise>) -> Asked {
        // A promise of another instance (not something the pipeline makes) is given up.
        let redeemed = match promise {
            Some(mut p) if p.instance == instance => {
                p.redeemed = true;
                true
            }
            _ => false,
        };
        let now = Instant::now();
        let (admit, holding, start_rate) = self.with_slot(instance, |s| {
            if redeemed {
                s.promised = s.promised.saturating_sub(1);
            }
            (s.machine.admit(now), s.holding, s.machine.start_rate(now))
        });
        let lease = (admit == CapacityAdmit::Go).then(|| CapacityLease {
            book: self.clone(),
            instance: instance.to_owned(),
            reported: false,
        });
        Asked {
            admit,
            holding,
            start_rate,
            lease,
            promise: None,
        }
    }

    /// Whether the instance's machine paces starts now (it has been found full).
    pub fn paced(&self, instance: &str) -> bool {
        let now = Instant::now();
        self.with_slot(instance, |s| s.machine.start_rate(now).is_some())
    }

    /// Subscribes to the instance's changes (subscribe before asking, so none is missed).
    pub fn changes(&self, instance: &str) -> watch::Receiver<u64> {
        self.with_slot(instance, |s| s.changes.subscribe())
    }

    /// Counts a job holding for `instance` until the ticket is dropped.
    pub fn hold(self: &Arc<Self>, instance: &str) -> HoldTicket {
        self.with_slot(instance, |s| s.holding += 1);
        HoldTicket {
            book: self.clone(),
            instance: instance.to_owned(),
        }
    }

    fn report(&self, instance: &str, outcome: CapacityOutcome) {
        let now = Instant::now();
        let gauges = self.with_slot(instance, |s| {
            s.machine.report(outcome, now);
            s.changes.send_modify(|n| *n = n.wrapping_add(1));
            s.gauged |= s.machine.is_limited();
            s.gauged.then(|| InstanceGauges {
                instance: instance.to_owned(),
                state_code: s.machine.state_code(),
                start_rate: s.machine.start_rate(now),
            })
        });
        if let Some(g) = gauges {
            (self.on_change)(&g);
        }
    }

    /// A chat on `instance` ended at `ended` (a contact event): the machine may admit a start
    /// for it, and held jobs ask again. An instance without a machine here is left alone.
    pub fn freed(&self, instance: &str, ended: Instant) {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slots.get_mut(instance) {
            s.machine.freed(ended.min(now), now);
            s.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether chat ends are reported from now on, for every machine (off: the blind pace).
    pub fn set_contact_events(&self, on: bool) {
        if self.contact_events.swap(on, Ordering::Relaxed) == on {
            return;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for s in slots.values_mut() {
            s.machine.set_contact_events(on);
            s.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// When every instance this worker has started chats on is out of capacity, the starts per
    /// second their machines allow together; `None` while any of them is open (or none is known):
    /// then the rate limiter alone bounds the start-chat work worth holding.
    pub fn start_rate_bound(&self) -> Option<f64> {
        let now = Instant::now();
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = 0.0;
        for s in slots.values() {
            sum += s.machine.start_rate(now)?;
        }
        (!slots.is_empty()).then_some(sum)
    }
}

/// One admitted start; reports its outcome to the instance's machine exactly once.
pub struct CapacityLease {
    book: Arc<CapacityBook>,
    instance: String,
    reported: bool,
}

impl CapacityLease {
    pub fn report(mut self, outcome: CapacityOutcome) {
        self.reported = true;
        self.book.report(&self.instance, outcome);
    }
}

impl Drop for CapacityLease {
    fn drop(&mut self) {
        if !self.reported {
            self.book
                .report(&self.instance, CapacityOutcome::Inconclusive);
        }
    }
}

/// One of a paced instance's ready starts, promised to a job by [`CapacityBook::peek`] until
/// its claim; given up when dropped (the job went another way), which wakes the holders.
pub struct CapacityPromise {
    book: Arc<CapacityBook>,
    instance: String,
    redeemed: bool,
}

impl Drop for CapacityPromise {
    fn drop(&mut self) {
        if !self.redeemed {
            self.book.with_slot(&self.instance, |s| {
                s.promised = s.promised.saturating_sub(1);
                s.changes.send_modify(|n| *n = n.wrapping_add(1));
            });
        }
    }
}

/// A job holding for an instance's capacity; see [`CapacityBook::hold`].
pub struct HoldTicket {
    book: Arc<CapacityBook>,
    instance: String,
}

impl Drop for HoldTicket {
    fn drop(&mut self) {
        self.book
            .with_slot(&self.instance, |s| s.holding = s.holding.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn machines_of_made_up_instances_are_forgotten_and_get_no_gauges() {
        let gauged = Arc::new(Mutex::new(Vec::new()));
        let g = gauged.clone();
        let book = Arc::new(CapacityBook::new(
            CapacitySettings::default(),
            move |x| g.lock().unwrap().push(x.instance.clone()),
            |_| {},
        ));
        for i in 0..1_000 {
            let id = format!("made-up-{i}");
            let claimed = book.claim(&id, None);
            // Connect answered 404 for it: says nothing about capacity.
            claimed.lease.unwrap().report(CapacityOutcome::Inconclusive);
        }
        assert!(book.slots.lock().unwrap().len() <= PRUNE_ABOVE + 1);
        assert!(gauged.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn instances_are_independent_and_a_dropped_lease_is_inconclusive() {
        let book = Arc::new(CapacityBook::new(
            CapacitySettings::default(),
            |_| {},
            |_| {},
        ));
        assert_eq!(book.peek("A").admit, CapacityAdmit::Go);
        let a = book.claim("A", None);
        assert_eq!(a.admit, CapacityAdmit::Go);
        a.lease.unwrap().report(CapacityOutcome::LimitExceeded);
        assert!(
            book.start_rate_bound().is_some(),
            "the only instance is limited"
        );
        // A is limited; B is untouched.
        assert_eq!(book.peek("B").admit, CapacityAdmit::Go);
        assert!(book.start_rate_bound().is_none(), "B is open");
        assert!(book.peek("A").start_rate.is_some());
        let changes = book.changes("A");
        let _t1 = book.hold("A");
        let t2 = book.hold("A");
        assert_eq!(book.peek("A").holding, 2);
        drop(t2);
        assert_eq!(book.peek("A").holding, 1);
        // A peek takes nothing; a lease dropped without a report tells the machine (and wakes
        // the holders).
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        assert_eq!(book.peek("A").admit, CapacityAdmit::Go);
        assert_eq!(book.peek("A").admit, CapacityAdmit::Go);
        assert!(!changes.has_changed().unwrap());
        let probe = book.claim("A", None);
        assert_eq!(probe.admit, CapacityAdmit::Go);
        drop(probe);
        assert!(changes.has_changed().unwrap());
    }
}
