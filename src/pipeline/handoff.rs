//! Handing waiting jobs back to SQS when this replica cannot start them soon.
//!
//! # Protocol
//!
//! The receiver holds about five seconds of work at the limiters' rates of the moment. If the
//! rate then drops (a fleet's start-up storm pushed this replica to a small share, a neighbour
//! appeared), the jobs it already holds would wait here far longer than on a replica with
//! headroom, invisible to everyone else. So:
//!
//! - Every job waiting for a rate token of an operation is registered in that operation's
//!   [`Waiting`] list, in arrival order (the limiter serves waiters first come, first served).
//! - Every [`EVERY`], [`run`] asks [`excess`] how many of them the limiters cannot start within
//!   [`HORIZON`] at their current rate, and signals the newest that many: they are at the back of
//!   the limiter's queue. A signalled job stops waiting and is given back with visibility 0
//!   (`resume_chat_jobs_requeued_total{reason="handoff"}`); another replica, or this one once it
//!   has room, receives it.
//! - Only jobs received fewer than [`MAX_RECEIVES`] times are handed off, so a job bounced
//!   between busy replicas keeps most of its `MAX_RECEIVE_COUNT` budget for real failures.
//!
//! The horizon is twice the receiver's lookahead: a replica whose rate merely wobbles keeps its
//! jobs; one whose rate fell to less than half does not sit on them.
//!
//! # End of a backlog
//!
//! When the jobs queue has no visible messages left, what each replica holds is all that is left,
//! and the run ends when the last replica is done. The fleet is done soonest when every replica
//! finishes at the same time: each holding what its own rate starts in the time the fleet needs
//! for everything held, `T = held by the fleet / the fleet's jobs per second` (the queue's
//! not-visible count over this replica's rate times its estimate of sharers, at most the quota:
//! see [`fleet_jobs_per_second`]). Jobs
//! beyond that finish later than the fleet could finish them, so they go back for replicas that
//! run out sooner. A replica running below [`SHORT_SHARE`] of its ceiling with jobs waiting
//! asks SQS for the queue's depth (at most every [`DEPTH_EVERY`]); if nothing is visible, until
//! the next check it hands off the jobs it is not expected to start within `T`
//! ([`beyond_finish`], its last job too: a replica starved to a small rate would start it
//! seconds after an idle sibling could), and its receiver holds no more than that, at least one
//! ([`BacklogState::fleet_finish`]). Replicas that hold about
//! `T` of work each (the receiver holds a lookahead of work at each replica's rate, so shares of
//! the quota and of the jobs agree) keep it all and finish together; a replica held back to a
//! small share (at 0.5 calls/s, five jobs are ten seconds) gives its surplus to idle ones. A
//! replica at (most of) its ceiling never hands off: alone, it would only receive its own jobs
//! again. (Keeping a fixed two seconds instead made every replica of a fleet sharing one quota
//! — each below half its ceiling — give its jobs to those that had not looked yet, which then
//! finished seconds after the others had gone idle; keeping at least 2 s, the same way, left two
//! slow replicas of the staggered fleet with 2–3 jobs each while the fast one sat idle.) Jobs
//! waiting for chat capacity are not on these lists (they wait in the instance's hold, see
//! [`crate::rate::instances`]), so a replica bound by capacity is not affected.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use tokio::time::Instant;

use super::Context;
use crate::connect::Operation;
use crate::queue::MessageQueue;

/// How far ahead a replica keeps the jobs it waits on.
pub const HORIZON: Duration = Duration::from_secs(10);
/// How often the waiting lists are checked.
pub const EVERY: Duration = Duration::from_millis(250);
/// Jobs received this many times or more are never handed off.
pub const MAX_RECEIVES: u32 = 3;
/// Below this share of its ceiling a replica hands off at the end of a backlog.
pub const SHORT_SHARE: f64 = 0.5;
/// Shortest time between two queue-depth checks.
pub const DEPTH_EVERY: Duration = Duration::from_secs(2);

/// How many of `waiting` jobs to hand off: those beyond what `rate` calls/s start within
/// `horizon` (always keeping at least one).
pub fn excess(waiting: usize, rate: f64, horizon: Duration) -> usize {
    let keep = if rate.is_finite() && rate > 0.0 {
        (rate * horizon.as_secs_f64()).ceil().min(usize::MAX as f64) as usize
    } else {
        0
    };
    waiting.saturating_sub(keep.max(1))
}

/// At the end of a backlog: how many of `waiting` jobs this replica is not expected to start
/// before the fleet is done, `finish` from now, at `rate` calls/s. It starts about
/// `rate × finish` of them by then (its pacer's next slot is anywhere within `1 / rate`), so it
/// keeps that many, rounded to the nearest: a job it more likely than not starts after `finish`
/// goes back, its last one too, for a sibling that runs out then.
pub fn beyond_finish(waiting: usize, rate: f64, finish: Duration) -> usize {
    waiting.saturating_sub(keep_until(rate, finish))
}

/// Jobs `rate` calls/s start within `finish`, rounded to the nearest (0 for a rate that is not
/// a positive number).
pub fn keep_until(rate: f64, finish: Duration) -> usize {
    let jobs = rate * finish.as_secs_f64();
    if jobs.is_finite() && jobs > 0.0 {
        jobs.round().min(usize::MAX as f64) as usize
    } else {
        0
    }
}

struct Entry {
    id: u64,
    eligible: bool,
    signal: CancellationToken,
}

/// The jobs waiting for one operation's tokens, oldest first.
#[derive(Default)]
pub struct Waiting {
    entries: Mutex<VecDeque<Entry>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A job's place in a [`Waiting`] list; leaves the list when dropped.
pub struct Ticket {
    list: Arc<Waiting>,
    id: u64,
    signal: CancellationToken,
}

impl Ticket {
    /// Resolves when the job should be handed off (never, for an ineligible job).
    pub async fn handed_off(&self) {
        self.signal.cancelled().await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut entries = self.list.lock();
        if let Some(i) = entries.iter().position(|e| e.id == self.id) {
            entries.remove(i);
        }
    }
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a job that starts waiting; `eligible` = it may be handed off.
    pub fn enter(self: &Arc<Self>, eligible: bool) -> Ticket {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let signal = CancellationToken::new();
        self.lock().push_back(Entry {
            id,
            eligible,
            signal: signal.clone(),
        });
        Ticket {
            list: self.clone(),
            id,
            signal,
        }
    }

    /// Jobs waiting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Signals up to `n` eligible jobs, newest first, and takes them off the list; returns how
    /// many were signalled. Ineligible jobs are skipped (they stay and keep their place).
    pub fn hand_off_newest(&self, n: usize) -> usize {
        let mut entries = self.lock();
        let mut done = 0;
        let mut i = entries.len();
        while done < n && i > 0 {
            i -= 1;
            if entries[i].eligible
                && let Some(e) = entries.remove(i)
            {
                e.signal.cancel();
                done += 1;
            }
        }
        done
    }
}

/// How long the fleet needs for the `held` jobs it holds at `jobs_per_second`
/// ([`fleet_jobs_per_second`]): the time by which every replica should be done at the end of a
/// backlog. At most [`HORIZON`] (beyond it the ordinary handoff applies; also when nothing could
/// be started). No lower bound: a replica that keeps more than its rate starts by then finishes
/// after the others have gone idle (a 2 s floor cost the staggered fleet its last seconds).
pub fn fleet_finish_time(held: u64, jobs_per_second: f64) -> Duration {
    if !(jobs_per_second.is_finite() && jobs_per_second > 0.0) {
        return HORIZON;
    }
    let t = (held as f64 / jobs_per_second).min(HORIZON.as_secs_f64());
    Duration::from_secs_f64(t)
}

/// What the handoff task learned about the jobs queue, for the receiver.
#[derive(Default)]
pub struct BacklogState {
    /// When a depth check last found no visible message, and the fleet's finish time then.
    drained: Mutex<Option<(Instant, Duration)>>,
}

impl BacklogState {
    fn set(&self, finish: Option<Duration>) {
        let mut at = self.drained.lock().unwrap_or_else(|e| e.into_inner());
        *at = finish.map(|f| (Instant::now(), f));
    }

    /// If the last depth check, within the last two check intervals, found the queue drained:
    /// the fleet's finish time it computed ([`fleet_finish_time`]). Not counted down: checks
    /// come every [`DEPTH_EVERY`] while jobs wait, each from what is held then, and a finish
    /// counted down would, once passed, give away a lone replica's last job (throttled past it,
    /// it would only receive it again).
    pub fn fleet_finish(&self) -> Option<Duration> {
        let at = self.drained.lock().unwrap_or_else(|e| e.into_inner());
        at.and_then(|(t, finish)| (t.elapsed() < DEPTH_EVERY * 2).then_some(finish))
    }
}

/// Whether this replica's `op` rate is below [`SHORT_SHARE`] of its ceiling.
pub fn held_back<Q, C>(ctx: &Context<Q, C>, op: Operation) -> bool {
    ctx.start_rate(op) < SHORT_SHARE * ctx.limiter(op).ceiling()
}

/// The jobs per second the whole fleet does, weighted by the recent mix of operations: per
/// operation this replica's rate times its estimate of the replicas sharing the quota (the
/// estimate is the queue's in-flight count over ours, and holdings follow rates, so this is the
/// fleet's rate when it was taken, see [`super::sharers`]), at most the quota's ceiling (the
/// configured rates are the account's). An idle sibling is invisible in the queue's counts, so
/// the estimate, taken while the siblings held work, is what tells a starved replica that its
/// last job would start sooner elsewhere; a replica alone (estimate 1) does no better than its
/// own rate and keeps its jobs, even when a foreign caller holds it back. The estimate errs high
/// while jobs wait in SQS with a delay (throttle and capacity give-backs count as in flight, not
/// as ours): then a lone replica may give back a few jobs, and receives them again.
pub fn fleet_jobs_per_second<Q, C>(ctx: &Context<Q, C>) -> f64 {
    let fleet_rate = |op: Operation| {
        let limiter = ctx.limiter(op);
        (ctx.start_rate(op) * limiter.sharers()).min(limiter.ceiling())
    };
    super::mix::jobs_per_second(
        ctx.mix.start_share(),
        fleet_rate(Operation::StartChatContact),
        fleet_rate(Operation::CreatePersistentContactAssociation),
    )
}

/// Checks the waiting lists every [`EVERY`] until `stop`.
pub async fn run<Q: MessageQueue, C>(ctx: Arc<Context<Q, C>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_depth_check: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for op in Operation::ALL {
            let waiting = ctx.waiting(op);
            let rate = ctx.start_rate(op);
            let mut n = excess(waiting.len(), rate, HORIZON);
            let held_back = held_back(&ctx, op);
            let may_check = last_depth_check.is_none_or(|t| t.elapsed() >= DEPTH_EVERY);
            if !waiting.is_empty() && held_back && may_check {
                last_depth_check = Some(Instant::now());
                let finish = tokio::select! {
                    _ = stop.cancelled() => return,
                    d = ctx.jobs_depth(Duration::ZERO) => match d {
                        Some(d) if d.visible == 0 => {
                            // SQS's counts lag: the fleet holds at least what this replica does.
                            let ours = ctx.inflight.len().await as u64;
                            let held = d.in_flight.max(ours);
                            Some(fleet_finish_time(held, fleet_jobs_per_second(&ctx)))
                        }
                        _ => None,
                    },
                };
                ctx.handoff.set(finish);
            }
            if held_back && let Some(finish) = ctx.handoff.fleet_finish() {
                n = n.max(beyond_finish(waiting.len(), rate, finish));
            }
            if n > 0 {
                let signalled = waiting.hand_off_newest(n);
                if signalled > 0 {
                    tracing::info!(
                        operation = op.as_str(),
                        signalled,
                        rate,
                        "handing jobs this replica cannot start soon back to the queue"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_keeps_what_the_rate_starts_within_the_horizon() {
        let h = Duration::from_secs(10);
        assert_eq!(excess(50, 10.0, h), 0);
        assert_eq!(excess(50, 2.0, h), 30);
        assert_eq!(excess(50, 0.5, h), 45);
        // At least one job is always kept, whatever the rate.
        assert_eq!(excess(3, 0.0, h), 2);
        assert_eq!(excess(3, f64::NAN, h), 2);
        assert_eq!(excess(0, 0.0, h), 0);
        assert_eq!(excess(1, 0.01, h), 0);
    }

    #[test]
    fn the_fleet_finishes_what_it_holds_at_the_quota_within_the_bounds() {
        let secs = |t: Duration| t.as_secs_f64();
        // 46 jobs held by the fleet at 10 jobs/s: 4.6 s.
        assert!((secs(fleet_finish_time(46, 10.0)) - 4.6).abs() < 1e-9);
        // Short when little is held; never beyond the ordinary horizon.
        assert!((secs(fleet_finish_time(3, 10.0)) - 0.3).abs() < 1e-9);
        assert_eq!(fleet_finish_time(0, 10.0), Duration::ZERO);
        assert_eq!(fleet_finish_time(10_000, 10.0), HORIZON);
        assert_eq!(fleet_finish_time(5, 0.0), HORIZON);
        assert_eq!(fleet_finish_time(5, f64::NAN), HORIZON);
    }

    #[tokio::test]
    async fn newest_eligible_jobs_are_signalled_and_tickets_leave_on_drop() {
        let list = Arc::new(Waiting::default());
        let a = list.enter(true);
        let b = list.enter(false);
        let c = list.enter(true);
        let d = list.enter(false);
        assert_eq!(list.len(), 4);
        // Two wanted: d and b are ineligible, so c then a.
        assert_eq!(list.hand_off_newest(2), 2);
        tokio::time::timeout(Duration::from_secs(1), c.handed_off())
            .await
            .expect("c signalled");
        tokio::time::timeout(Duration::from_secs(1), a.handed_off())
            .await
            .expect("a signalled");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), b.handed_off())
                .await
                .is_err()
        );
        assert_eq!(list.len(), 2);
        assert_eq!(list.hand_off_newest(5), 0);
        drop(b);
        drop(d);
        assert!(list.is_empty());
        drop((a, c));
        assert!(list.is_empty());
    }
}
