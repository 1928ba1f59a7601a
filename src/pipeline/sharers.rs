//! How many replicas of ours share the Connect quota, estimated from SQS, for the rate limiters.
//!
//! A replica cannot tell from Connect's answers whether the other callers draining the quota are
//! replicas of its own fleet (which probe for capacity too, so each must probe gently) or a
//! foreign caller (whose share should be taken back quickly once it leaves): a 429 looks the same.
//! The jobs queue tells them apart. Every replica of ours holds the jobs it works as in-flight
//! messages of that queue, and a foreign caller holds none, so
//! `ApproximateNumberOfMessagesNotVisible / our in-flight jobs` estimates the replicas working the
//! backlog. Within 100 ms of this replica's first jobs in flight, then at every whole multiple
//! of [`EVERY`] on the wall clock while it has jobs in flight (every replica reads at the same
//! instants), [`run`] reads the queue's depth and tells both limiters
//! ([`crate::rate::AdaptiveLimiter::set_sharers`]).
//!
//! # Joining: announce, then enter
//! A replica that starts while siblings work a backlog used to enter at the ceiling into the
//! bucket they keep near empty: each sibling then heard a 429 before it made room, about one per
//! replica present per join (a staggered fleet of three: 2.3 per replica in the start-up, of six:
//! 3.7). The queue lets the joiner announce itself first. Before its first receive it reads the
//! not-visible count ([`first_read`]): with none of its own messages in it, a count of at least
//! [`busy_threshold`] means siblings hold the quota's work, and its limiters *join*: no call yet.
//! It lets the next aligned read be counted first, then receives as usual (its messages in
//! flight are the announcement: its look-ahead at the ceiling, twice [`busy_threshold`]), so an
//! aligned read shows the announcement whole or not at all, and enters at the first aligned
//! read for which it held the whole announcement before the read went out and whose count shows
//! it (risen by [`busy_threshold`] over its first read), at `β ×` its fair share as if just cut
//! there, its share being what the count shows of it. At that same read each sibling sees the
//! others' messages risen by at least [`busy_threshold`] and *makes room*: at most its fair
//! share from then on. Room is made once: a sibling cut by a 429 since its last read (the
//! newcomer did not wait: it started before the siblings' messages showed) leaves it to that
//! cut. After a join the baseline for the next rise is what the others hold at their shares,
//! not the count with the joiner's announcement in it: that shrinks within a period and would
//! hide the next joiner's rise.
//!
//! # Looking: replicas that start together
//! Replicas that start at once read the queue before any of them received, so none joins; each
//! entered at the ceiling into the others' storm. A replica whose first read shows a backlog and
//! no sibling busy *looks* instead: no call until the first estimate (the read after its first
//! receive). Others' messages there ([`TOGETHER_MIN`]) mean they started with it, and it enters
//! on the plateau of its fair share of that count, at most half the quota; none, and it goes
//! alone at the ceiling. One read of delay at start-up for a replica that starts into a backlog.
//!
//! The estimate errs high, never below 1: messages given back to SQS with a visibility delay
//! (capacity waits) count as not visible too, and SQS's counts are approximate. A high estimate
//! slows the probe above the plateau and splits the burst credit; it never raises the rate.
//! SQS counts at some instant of the request while the receiver goes on receiving, so "ours"
//! is the larger of what this replica holds before and after the request, a receive on the
//! wire included ([`super::inflight::InFlight::held`]): over the count
//! before it alone, a lone replica's own new jobs looked like a sibling's in the first seconds
//! of a run (1.3-1.6 in the benchmark, 2026-12-03), and its burst credit was split by that.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::connect::Operation;
use crate::queue::{MAX_BATCH, MessageQueue};

/// Between two estimates: a fleet's make-up changes over tens of seconds (tasks starting,
/// scaling), and one `GetQueueAttributes` per 5 s per replica costs nothing.
pub const EVERY: Duration = Duration::from_secs(5);

/// A joiner whose messages no aligned read shows (SQS's counts lagging, or its reads failing)
/// enters anyway after this, at its fair share of the last estimate: two read periods (the one
/// it lets pass before receiving, the one that shows its announcement) and two seconds of lag.
pub const JOIN_WAIT_MAX: Duration = EVERY
    .saturating_mul(2)
    .saturating_add(Duration::from_secs(2));

/// Others' messages in flight that show a sibling busy on the quota, and the rise that shows a
/// joiner: what the quota starts in half the receiver's look-ahead. Each replica holds what it
/// starts in the look-ahead at its rate, so siblings that together use at least half the quota
/// hold at least this, and a joiner (which holds the look-ahead at the ceiling while it waits)
/// adds twice it; a trickle's few messages are below it, so a joiner into a quota with room
/// enters at once, as a lone worker does.
pub fn busy_threshold(ceiling: f64) -> f64 {
    (ceiling * super::receiver::LOOKAHEAD_SECS / 2.0).max(1.0)
}

/// The estimate from the queue's not-visible count and ours: at least 1.
pub fn estimate(not_visible: u64, ours: usize) -> f64 {
    if ours == 0 {
        return 1.0;
    }
    (not_visible as f64 / ours as f64).max(1.0)
}

/// How often the loop looks whether the first estimate is due: it goes out within this of the
/// first jobs in flight. Short, because the first estimate is the baseline against which the
/// aligned reads look for a joiner: a replica that starts later than this after our first
/// receive sees our messages and joins, and our baseline must not hold its messages yet.
const LOOK: Duration = Duration::from_millis(100);

/// The read before the first receive gives up after this (SQS unreachable: no join).
const FIRST_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A look ([`first_read`]) ends at the ceiling after this if the read after the first receive
/// has not answered: the first receive's long poll returns at once on a backlog, then one read
/// with the first read's own bound.
const LOOK_WAIT_MAX: Duration = FIRST_READ_TIMEOUT.saturating_add(FIRST_READ_TIMEOUT);

/// Others' messages at the read after our first receive that show replicas which started with
/// us: half a receive's worth. Each of them holds at least its first receive (SQS hands out up
/// to [`MAX_BATCH`] per receive from a backlog); a lone replica's count is its own to within a
/// message or two (its receives on the wire and delayed give-backs are taken out).
const TOGETHER_MIN: u64 = MAX_BATCH as u64 / 2;

/// What the read before the first receive found.
#[derive(Clone, Copy, Debug)]
pub struct FirstRead {
    /// The wall clock's grid of aligned reads, as [`run`] follows it.
    aligned: Aligned,
    /// When the limiters joined, if siblings hold the quota's work.
    pub joined_at: Option<Instant>,
    /// The others' messages in flight then (all of them: we held none).
    pub others: Option<u64>,
    /// Whether the limiters look: a backlog and no sibling busy, so replicas may have started
    /// with us; the read after the first receive tells.
    pub looking: bool,
}

/// Messages in flight that show siblings busy, and the rise that shows a joiner, for this
/// replica's configured quota (see [`busy_threshold`]).
fn threshold<Q, C>(ctx: &Context<Q, C>) -> f64 {
    let ceiling = |op| ctx.limiter(op).ceiling();
    busy_threshold(super::mix::jobs_per_second(
        ctx.mix.start_share(),
        ceiling(Operation::StartChatContact),
        ceiling(Operation::CreatePersistentContactAssociation),
    ))
}

/// Before the first receive we hold none of the jobs queue's messages, so its not-visible count
/// is all siblings' (and messages given back with a delay). If it shows siblings busy on the
/// quota ([`busy_threshold`]), the limiters join: no call until the first aligned read whose
/// count shows our messages, at which every sibling sees them too and makes room, then our fair
/// share ([`crate::rate::AdaptiveLimiter::join`]). Not with `REDIS_URL` (the shared limiter
/// coordinates the fleet).
pub async fn first_read<Q: MessageQueue, C>(ctx: &Context<Q, C>) -> FirstRead {
    let aligned = Aligned::new();
    let nothing = FirstRead {
        aligned,
        joined_at: None,
        others: None,
        looking: false,
    };
    if ctx.fleet.is_some() {
        return nothing;
    }
    let asked = Instant::now();
    let depth = tokio::time::timeout(FIRST_READ_TIMEOUT, ctx.jobs_depth(Duration::ZERO)).await;
    let Ok(Some(depth)) = depth else {
        return nothing;
    };
    let took = asked.elapsed();
    let others = depth.in_flight;
    let mut read = FirstRead {
        aligned,
        joined_at: None,
        others: Some(others),
        looking: false,
    };
    let busy = threshold(ctx);
    let backlog = depth.visible as f64 >= busy;
    if others as f64 >= busy {
        let now = Instant::now();
        for op in Operation::ALL {
            ctx.limiter(op).join(now + JOIN_WAIT_MAX);
        }
        read.joined_at = Some(now);
        tracing::info!(
            others_in_flight = others,
            "siblings hold the quota's work: receiving after the next aligned read of the jobs queue, first call at the one after"
        );
        // No receive until the next aligned read has been counted, so that no aligned read
        // shows part of the announcement: at the next one the count shows it whole or not at
        // all. A part of it, shown at the read where the siblings compare, is a rise they may
        // take for a joiner while the joiner waits for the whole one (the benchmark's staggered
        // runs: siblings made room a period before the joiner entered, goodput 0.957, or saw
        // the rise masked by a previous joiner's shrinking holdings and made none, five 429s).
        // The siblings' reads go out at the instant and SQS counts within their round trip:
        // twice ours, plus a millisecond each for the tasks' clocks and tokio's timer.
        // Without a backlog in the queue nobody compares counts for a rise (room is made only
        // while there is one), so there is nothing to wait for.
        if backlog {
            let quiet_until = aligned.next(now) + took * 2 + Duration::from_millis(2);
            tokio::select! {
                _ = ctx.stop_receiving.cancelled() => {}
                _ = tokio::time::sleep_until(quiet_until) => {}
            }
        }
    } else if backlog {
        // A backlog and nobody on it yet: replicas that start together all read here before
        // any of them has received, so none joins, and each entered at the ceiling into the
        // others' storm (the benchmark's fleets: 1.3-3.8 429s per replica in the start-up).
        // The read after the first receive shows them; the first call waits for it.
        let until = Instant::now() + LOOK_WAIT_MAX;
        for op in Operation::ALL {
            ctx.limiter(op).look(until);
        }
        read.looking = true;
    }
    read
}

/// Maps tokio's clock onto the wall clock every replica shares (Amazon Time Sync keeps ECS
/// tasks within a millisecond), so replicas read the queue at the same instants. Read once, so
/// paused-time tests stay deterministic.
#[derive(Clone, Copy, Debug)]
struct Aligned {
    at: Instant,
    unix: Duration,
}

/// The wall clock, since the Unix epoch.
#[cfg(not(test))]
fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// In unit tests the worker starts at a whole multiple of [`EVERY`], so its aligned reads fall
/// on 5 s, 10 s, ... of the paused clock whatever the machine's clock says (a read at a random
/// instant made the pipeline tests depend on when they ran).
#[cfg(test)]
fn wall_clock() -> Duration {
    Duration::ZERO
}

impl Aligned {
    fn new() -> Self {
        Self::at(Instant::now(), wall_clock())
    }

    fn at(at: Instant, unix: Duration) -> Self {
        Aligned { at, unix }
    }

    /// The next instant after `now` at a whole multiple of [`EVERY`] on the wall clock.
    fn next(&self, now: Instant) -> Instant {
        let unix = self.unix + now.saturating_duration_since(self.at);
        let every = EVERY.as_nanos();
        let next = (unix.as_nanos() / every + 1) * every;
        let ahead = u64::try_from(next - unix.as_nanos()).unwrap_or(0);
        now + Duration::from_nanos(ahead)
    }
}

/// One reading of the jobs queue.
#[derive(Clone, Copy, Debug)]
struct Reading {
    /// The estimate of sharers: all messages in flight over ours.
    sharers: f64,
    /// The others' messages in flight: ours and our own delayed give-backs taken out.
    others: u64,
    /// All messages in flight.
    in_flight: u64,
    /// What this replica held when the request went out.
    held_before: usize,
    /// Whether the queue still shows a backlog (at least [`busy_threshold`] visible): only then
    /// does every replica hold its look-ahead, so that holdings follow rates and the estimate
    /// divides the quota by them. At the end of a backlog a replica holds what is left, and the
    /// ratio says nothing of its share.
    backlog: bool,
}

/// One reading, or `None` if SQS did not answer.
async fn read<Q: MessageQueue, C>(
    ctx: &Context<Q, C>,
    stop: &CancellationToken,
) -> Option<Reading> {
    let before = ctx.inflight.held().await;
    let depth = tokio::select! {
        _ = stop.cancelled() => return None,
        d = ctx.jobs_depth(Duration::ZERO) => d,
    };
    // SQS counts at some instant of the request's round trip, and the receiver goes on
    // receiving meanwhile (fastest in the first seconds, when the first estimate is taken):
    // over what we held before the request, our own new messages would count as a
    // sibling's (a lone replica estimated 1.3-1.6 in the benchmark, which split its burst
    // credit). What we hold at either end, a receive on the wire included (SQS hides its
    // messages before they reach us), bounds what we held when SQS counted.
    let ours = before.max(ctx.inflight.held().await);
    let d = depth?;
    let mine = ours as u64 + ctx.inflight.delayed().await as u64;
    Some(Reading {
        sharers: estimate(d.in_flight, ours),
        others: d.in_flight.saturating_sub(mine),
        in_flight: d.in_flight,
        held_before: before,
        backlog: d.visible as f64 >= threshold(ctx),
    })
}

/// Tells each limiter the estimate `n`. A joining limiter enters at `entry` if given (the
/// estimate of its share), else only takes the estimate; any other makes room if `room` and no
/// 429 has cut it since the last reading (room is made once: by a 429 if one came, else by the
/// announcement). `cuts` holds each limiter's cuts as of the last reading. Returns whether one
/// made room.
fn tell<Q, C>(
    ctx: &Context<Q, C>,
    cuts: &mut [u64; 2],
    n: f64,
    entry: Option<f64>,
    room: bool,
) -> bool {
    let mut made_room = false;
    for (i, op) in Operation::ALL.into_iter().enumerate() {
        let limiter = ctx.limiter(op);
        match entry {
            Some(share) if limiter.is_joining() => limiter.enter(share),
            _ if room && !limiter.is_joining() && limiter.cuts() == cuts[i] => {
                limiter.make_room(n);
                made_room = true;
            }
            _ => limiter.set_sharers(n),
        }
        cuts[i] = limiter.cuts();
    }
    made_room
}

/// Updates the limiters' sharer estimate until `stop`: the first estimate within `LOOK` (100 ms) of the
/// first jobs in flight, then at every aligned instant ([`EVERY`] on the wall clock) while this
/// replica holds jobs (holding none, the counts say nothing and the last estimate stays). At an
/// aligned read a joiner enters once the count shows its messages (the same count its siblings
/// read), and a replica
/// whose others' messages rose by at least [`busy_threshold`] since its last read (a joiner's
/// announcement) makes room for it: both at the same instant, so no 429 makes the room.
pub async fn run<Q: MessageQueue, C>(
    ctx: Arc<Context<Q, C>>,
    stop: CancellationToken,
    first: FirstRead,
) {
    let aligned = first.aligned;
    let rise = threshold(&ctx);
    let mut last_others = first.others;
    // Cuts of each limiter as of the last aligned read (the first read before any call).
    let mut cuts = Operation::ALL.map(|op| ctx.limiter(op).cuts());
    // The first estimate: within [`LOOK`] of the first jobs in flight (the baseline for a joiner's rise).
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOOK) => {}
        }
        if !ctx.inflight.is_empty().await {
            break;
        }
    }
    if let Some(Reading {
        sharers: n, others, ..
    }) = read(&ctx, &stop).await
    {
        // Replicas that started with us read the queue before any of us received, so none of
        // us joined, and their messages show now. A look (no call yet) ends here: started
        // together, each steps to its share of this count; alone, at the ceiling. (Stepping
        // to the fair share here after calls had gone came too late: the storm's 429s came
        // within 0.4 s of the first calls, this read 0.5-0.9 s after the first receive.)
        let together = first.looking && others >= TOGETHER_MIN;
        if first.looking && !together {
            for op in Operation::ALL {
                ctx.limiter(op).alone();
            }
        }
        // At least one other replica started with us. The ratio says how many only if they
        // hold as much as we do; read while they are still receiving it says fewer (the
        // benchmark's fleet3 seed 3: 1.37, 2.07 and 1.70 for three replicas, shares adding up
        // to 18/s of 10), so never fewer than two.
        let entry = n.max(2.0);
        tell(&ctx, &mut cuts, n, together.then_some(entry), false);
        if together {
            tracing::info!(
                sharers = entry,
                others_in_flight = others,
                "started with siblings: first calls at the fair share"
            );
        }
        ctx.metrics.rate_sharers.set(n);
        // The baseline for the rise: replicas that started with us (and read before either of
        // us received) are in it, so we do not make room for them a second time after their
        // 429s made it; a joiner, which started after our first receive, is not. After a look
        // that found them the baseline waits for the first aligned read: their receives were
        // still arriving at this one, and the rise to their full look-ahead made every replica
        // of the benchmark's fleet6 step down for siblings that had already entered (seed 1:
        // shares adding up to 8.5/s for the rest of the run, goodput 0.932).
        last_others = (!together).then_some(others);
    }
    loop {
        let at = aligned.next(Instant::now());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(at) => {}
        }
        let joining = Operation::ALL
            .iter()
            .any(|&op| ctx.limiter(op).is_joining());
        // Holding no job (a receive on the wire is not one yet), the counts say nothing.
        if !joining && ctx.inflight.is_empty().await {
            last_others = None;
            cuts = Operation::ALL.map(|op| ctx.limiter(op).cuts());
            continue;
        }
        let Some(Reading {
            sharers: n,
            others,
            in_flight,
            held_before,
            backlog,
        }) = read(&ctx, &stop).await
        else {
            continue;
        };
        // The count shows our messages (risen over the first read by what the siblings take
        // for a joiner): they read the same count at this instant and make room, each to its
        // own over that count. Ours is what the count shows of us, not what we hold by now
        // (our receives go on): the shares then add up to the quota (the benchmark's staggered
        // seed 1: the siblings saw 26 of a joiner's 45, and the shares added up to 11.8 of 10).
        // Only a complete announcement: the joiner holds its look-ahead at the ceiling (twice
        // the siblings' threshold) before the read goes out, so the count its siblings read at
        // this instant shows it risen by well over their threshold, and they make room. With
        // the announcement still arriving (moto hands out ten messages per receive), the two
        // sides compared counts near the threshold and disagreed both ways in the benchmark's
        // staggered runs: siblings made room for a joiner that did not enter (seed 2, goodput
        // 0.964), or a joiner entered where no room was made (three 429s).
        let complete = (2.0 * rise).min(ctx.settings.max_in_flight as f64) - 1.0;
        // What the siblings held at our first read, at most the quota's look-ahead: more is an
        // announcement still in it, which shrinks as we wait (the benchmark's staggered seed 2:
        // 83 at our first read, a second after the previous joiner entered, 52 at the read that
        // showed us; against 83 we showed 19 and entered only at `JOIN_WAIT_MAX`, after the
        // siblings had made room for us).
        let shown = first
            .others
            .map(|o| in_flight.saturating_sub(o.min(held_at_shares(rise, f64::INFINITY))));
        // Without a backlog there is nothing to share: the siblings make no room (below) and
        // run out of work, and a joiner that waited for a whole announcement it cannot receive
        // held its jobs unstarted until `JOIN_WAIT_MAX` (the benchmark's kill: a restarted
        // replica held 28-39 jobs for 6 s while its siblings ran dry).
        let enter = first.joined_at.is_some()
            && (!backlog
                || held_before as f64 >= complete && shown.is_some_and(|m| m as f64 >= rise));
        let n_entry = match shown {
            Some(m) if m > 0 => estimate(in_flight, m as usize).max(n),
            _ => n,
        };
        // At the end of a backlog holdings no longer follow rates (the kill benchmark: the
        // survivors held 4 messages each of 74 in flight, estimated 9-12 sharers and made room
        // down to 0.6/s for a restarted replica, goodput 0.70): a joiner then takes what is left
        // without room being made.
        // With `REDIS_URL` the shared limiter splits the quota exactly; nothing joins there.
        let joined = ctx.fleet.is_none()
            && backlog
            && last_others.is_some_and(|last| others as f64 >= last as f64 + rise);
        let made_room = tell(&ctx, &mut cuts, n, enter.then_some(n_entry), joined);
        if joining && enter {
            tracing::info!(sharers = n_entry, "entering the quota at the fair share");
        } else if made_room {
            tracing::info!(
                sharers = n,
                others_in_flight = others,
                "a sibling joined: at most the fair share from now on"
            );
        }
        ctx.metrics.rate_sharers.set(n);
        // After a join the holdings shrink: the joiner held its look-ahead at the ceiling and
        // now holds its share's, and every sibling that made room holds less too, within the
        // next period. Compared with this count, a joiner announcing in that period would show
        // a rise less the shrinking (the benchmark's staggered seed 2: 41 more messages of the
        // new joiner, 25 fewer of the previous one, no room made, five 429s). The baseline is
        // what the others hold at their shares: the quota's look-ahead, `2 × rise`, less ours.
        let entered = joining && enter;
        last_others = Some(if entered || made_room {
            let n = if entered { n_entry } else { n };
            others.min(held_at_shares(rise, n))
        } else {
            others
        });
    }
}

/// What the others hold once every replica of `n` works at its fair share: `(n − 1) / n` of the
/// quota's look-ahead (`2 × rise`, see [`busy_threshold`]), rounded down; all of it for a
/// joiner (`n` infinite: every other replica is a sibling).
fn held_at_shares(rise: f64, n: f64) -> u64 {
    let held = 2.0 * rise * (1.0 - 1.0 / n.max(1.0));
    if held.is_finite() { held as u64 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_reads_fall_on_whole_multiples_of_the_period_on_the_wall_clock() {
        let t0 = Instant::now();
        let a = Aligned::at(t0, Duration::from_millis(12_300));
        assert_eq!(a.next(t0), t0 + Duration::from_millis(2_700));
        let on = t0 + Duration::from_millis(2_700);
        assert_eq!(a.next(on), on + EVERY, "strictly after: the next period");
        let b = Aligned::at(t0, Duration::from_secs(1_764_000_000));
        assert_eq!(b.next(t0), t0 + EVERY);
    }

    #[test]
    fn the_estimate_is_the_queues_in_flight_over_ours_and_never_below_one() {
        assert_eq!(estimate(30, 10), 3.0);
        assert_eq!(estimate(5, 10), 1.0, "counts lag: never below one");
        assert_eq!(estimate(0, 0), 1.0);
        assert_eq!(estimate(12, 0), 1.0);
        assert_eq!(estimate(15, 6), 2.5);
    }
}
