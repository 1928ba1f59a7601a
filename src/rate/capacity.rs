//! [`InstanceCapacity`]: the active-chat capacity of one Connect instance, as a pure machine.
//!
//! `LimitExceededException` from StartChatContact means the instance holds its maximum of
//! concurrent active chats (a quota per instance, default 100). Chats live seconds to hours and
//! vary widely; other callers start chats on the same instance; and the worker never sees a chat
//! end. All it sees is whether each start it sends comes back `Started` or `LimitExceeded`.
//!
//! # Mechanism
//!
//! While the instance has room the machine is **open**: every start goes (the rate limiter
//! alone paces them). The first `LimitExceeded` makes it **limited**: starts are paced by a
//! token bucket whose rate `r` estimates the rate at which capacity frees. In saturation a start
//! succeeds exactly when a chat has ended since the last one, so the successful starts *are* the
//! departures, and `r` is steered by them:
//!
//! - **Equilibrium.** Each `Started` raises `log r` by `a` (`step`); each `LimitExceeded` lowers
//!   it by `a·k`. The drift is zero when `LimitExceeded` is `1/(1+k)` of the answers, whatever
//!   the lifetimes: `k` comes from the refusal budget, not from a fit. A pace a little
//!   above the departure rate is what that share costs; a pace below it leaves freed capacity
//!   idle. Every mechanism below keeps this accounting: each refused call keeps its `a·k`, each
//!   start its `a`, and what they cut or raise beyond that is partly given back.
//! - **One piece of evidence per refusal.** A `LimitExceeded` for a call that was already in
//!   flight when a refusal came back (answers come back roughly in send order: the next
//!   `in_flight` answers) says the same thing again: it neither escalates nor empties the bucket
//!   again. It keeps its `a·k` (the budget is of calls), but all of them together cut at most
//!   by `max_cut` (a burst of calls in flight must not crash the pace).
//! - **Consecutive refusals back off faster.** The n-th counted `LimitExceeded` without a
//!   `Started` between cuts `a·k·escalation^(n−1)`, at most halving `r` (`max_cut`): while the
//!   instance stays full (others hold it, or none of our long chats has ended yet) the gap
//!   between probes doubles, so finding the first free slot after a time `T` costs `O(log T)`
//!   refused calls. This is the old gate's probe cooldown, merged into the pacer.
//! - **Bisection back.** The `Started` that ends such a run gives back half of what the run
//!   cut beyond the `a·k` of each of its refusals (half way between the rate the run began at,
//!   known too high, and the one at which a slot was found). But after a long run (the pace
//!   fell to a quarter or less) with none of the instance's chats ours (no start of ours since
//!   the machine last opened), the slot that freed is another caller's and how many more did
//!   is unknown, perhaps all: the machine opens, and the next refusal is a first one. With chats
//!   of ours on it, after a long run the pace may still be far below the rate they end at now
//!   (the search for the first end after a fill): it climbs back toward the run's top, halving
//!   the distance per turnover of our chats (`burst` starts), until the next refusal, whose
//!   give-back (below) lands it between the two (BIC-TCP's binary increase).
//! - **Long runs of starts climb faster.** The n-th consecutive `Started` raises `log r` by
//!   `a·escalation^((n − 2k)/k)` once `n > 2k`: in equilibrium a run averages `k`, so a much
//!   longer one means capacity freed (another caller left). The refusal that ends such a run
//!   gives back half of the climb beyond the `a` of each start. A start raises the pace only if
//!   the pace held it back (less than one start saved up in the bucket): a start that did not
//!   wait says nothing about a faster pace.
//! - **The first cut.** At the first `LimitExceeded` after an open period `r` starts from our
//!   own start rate just before it (the last `rate_window` starts): that is what filled the
//!   instance, far above the departure rate when chats are long; the backoff brings it down.
//! - **Retry at once after a first refusal, while that works.** When the last start fitted and
//!   this one did not, the pace is about right and this call came a little before a chat
//!   ended. If chat ends follow our own starts (lifetimes alike), that end comes within the
//!   jitter of the call: the refused call's token goes back, so one start goes as soon as the
//!   answer is in, and its answer is the same evidence as the refusal. Without it every later
//!   start would stay one pace gap behind the chat ends it replaces (a slot idle all the time:
//!   5 % of a 20-chat instance). When lifetimes vary the retry mostly finds the instance still
//!   full, so retries go on only while at least half of the recent ones (`retry_memory`)
//!   started a chat, and one in `retry_memory` otherwise. The same observation picks the
//!   budget: the issue allows 5 % refusals with fixed lifetimes and 10 % with varied ones
//!   (`limit_exceeded_share`, `varied_limit_exceeded_share`).
//! - **Burst.** Tokens not used (no job to start) accumulate up to `burst`: capacity that freed
//!   during an idle period stays free, so the starts it allows may go at once. A counted refusal
//!   empties the bucket (the instance is full now). `burst` is the count of our starts the
//!   instance took in the open period before it was found full: more of our chats than that
//!   cannot have ended, which is all the machine can know.
//! - **Back to open.** The machine cannot see chats end, but it can see its pace stop binding:
//!   when the bucket overflows by a whole `burst` (tokens offered and never used, with no
//!   refusal), as many of our chats as it held have had time to end and the caller did not even
//!   need the pace, so the instance is no longer the limit and every start may go again.
//! - **Inconclusive** answers (throttled, 5xx, transport, not sent) say nothing about capacity:
//!   their token is given back.
//!
//! - **Contact events.** When the worker reads Connect's chat ends (`contact_events`), the
//!   pace stands aside while the instance is full: one start goes per reported end, plus rare
//!   insurance probes ([`super::freed::FreedSlots`]); the rest of the machine (open, the first
//!   refusal, the burst it measures) is the same.
//!
//! Time enters only through the `now` arguments (no clock reads, no I/O); one machine per
//! Connect instance. Design notes and the scenario family: `docs/capacity-control.md` and
//! `tests/data/capacity-scenarios/`.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::freed::FreedSlots;

/// Rounding tolerance of the bucket, in starts (not a tuning constant).
const TOKEN_EPSILON: f64 = 1e-6;

/// Every constant of [`InstanceCapacity`], each with where its value comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacitySettings {
    /// Share of StartChatContact answers that may be `LimitExceeded` while the instance is
    /// full and chat ends follow our starts (the retries after a first refusal mostly start a
    /// chat: lifetimes alike): `k = 1/share − 1`. 0.04, from the issue's ≤ 5 % for fixed
    /// lifetimes, less one point for the refusals the equilibrium does not steer (the search for
    /// the first chat end after a fill).
    pub limit_exceeded_share: f64,
    /// The same while chat ends do not follow our starts (the retries after a first refusal
    /// mostly fail: lifetimes vary): 0.07, from the issue's ≤ 10 % for varied lifetimes, less
    /// the refusals the equilibrium does not count (calls in flight, backoff runs while nothing
    /// ends, the occasional retry), which the scenarios measure at one to three points.
    pub varied_limit_exceeded_share: f64,
    /// `a`: rise of `log r` per `Started` (a refusal lowers it by `a·k`). 0.004: a refusal
    /// cuts ≈ 10 % (5 % with the varied budget's `k`). Over the scenario family, 0.002 gains
    /// 0–6 points of goodput but puts three scenarios over the refusal budget (the pace follows
    /// with smaller steps, so it overshoots longer); 0.008 loses 1–5 points of goodput
    /// (`docs/capacity-control.md`).
    pub step: f64,
    /// Growth of the cut per consecutive refusal, and of the rise per `k` successes beyond
    /// `2k` in a row. 2: doubling, the usual exponential backoff; finding capacity after a time
    /// `T` costs `log₂(T·r)` refusals and comes at most `T` late.
    pub escalation: f64,
    /// Deepest single cut of `log r`: ln 2, halve the rate (the gap between probes at most
    /// doubles per refusal, as in the old gate's cooldown).
    pub max_cut: f64,
    /// Starts over which the open period's start rate is measured for the first cut. 20: the
    /// smallest instance of the scenario family holds 20 chats; 20 intervals give the rate within
    /// about ±25 % (Poisson) and remember only the last fill, not hours of trickle.
    pub rate_window: usize,
    /// Start rate assumed when the very first answer is a refusal (nothing measured): 1/s, the
    /// probe cadence of the old gate; the backoff halves it per refusal.
    pub unknown_rate: f64,
    /// Lowest pace: one start per 5 minutes. It must stay below the slowest departure rate to
    /// serve, 20 chats of an hour (one per 3 minutes), or the pace could not settle there;
    /// capacity that frees while everything is held by others is found at most that late, and
    /// the cost is 12 refused calls an hour.
    pub min_rate: f64,
    /// Highest pace: 1,000/s, far above any StartChatContact quota (keeps `r` finite; in
    /// practice the pace stops binding and the machine opens long before).
    pub max_rate: f64,
    /// Smallest bucket: one start.
    pub min_burst: f64,
    /// Retries after a first refusal over which their success is averaged, and the period of
    /// the retry that still goes while they mostly fail (to notice when they work again): 8, a
    /// handful of cycles, so the machine switches within a minute of 5 s chats.
    pub retry_memory: f64,
    /// Whether chat ends are reported ([`InstanceCapacity::freed`]): the worker reads Connect's
    /// contact events (`CONTACT_EVENTS_QUEUE_URL` set). Off by default: nothing reports them.
    pub contact_events: bool,
    /// With contact events, the first insurance probe on a full instance comes this long after
    /// the refusal (then doubling up to `1 / min_rate`). 5 s: an event is taken as lost only
    /// well after EventBridge's delivery of about a second, so a probe does not race the event
    /// it waits for; what it costs while an instance stays full is `log₂(300 / 5)` ≈ 6 refusals,
    /// then the floor's 12 an hour.
    pub event_probe_min: Duration,
}

impl Default for CapacitySettings {
    fn default() -> Self {
        CapacitySettings {
            limit_exceeded_share: 0.04,
            varied_limit_exceeded_share: 0.07,
            step: 0.004,
            escalation: 2.0,
            max_cut: std::f64::consts::LN_2,
            rate_window: 20,
            unknown_rate: 1.0,
            min_rate: 1.0 / 300.0,
            max_rate: 1_000.0,
            min_burst: 1.0,
            retry_memory: 8.0,
            contact_events: false,
            event_probe_min: Duration::from_secs(5),
        }
    }
}

/// `k` for a share of refusals: the cut of a refusal in units of the rise of a start.
fn k_for(share: f64) -> f64 {
    1.0 / share.clamp(1e-4, 0.5) - 1.0
}

/// What a StartChatContact said about capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityOutcome {
    /// The chat started (capacity was free).
    Started,
    /// `LimitExceededException`: the instance is full.
    LimitExceeded,
    /// Anything else (throttled, 5xx, transport error, not sent): says nothing about capacity.
    Inconclusive,
}

/// May a start go now?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityAdmit {
    /// Send one StartChatContact, then [`InstanceCapacity::report`] its outcome exactly once.
    Go,
    /// Do not ask again before this instant (unless another report changes things).
    NotBefore(Instant),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// No refusal since the machine began or last opened: every start goes.
    Open,
    /// Starts paced by the bucket.
    Limited,
}

/// One instance's capacity machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct InstanceCapacity {
    settings: CapacitySettings,
    phase: Phase,
    /// `log r`, once a refusal was seen.
    log_rate: Option<f64>,
    /// Bucket level (starts), at `refilled`.
    level: f64,
    refilled: Instant,
    /// Bucket size.
    burst: f64,
    /// Tokens that overflowed the bucket since the last refusal.
    unused: f64,
    /// Starts admitted and not yet reported.
    in_flight: u32,
    /// Answers still to come for calls that were in flight at the last counted refusal.
    stale: u32,
    /// How much more the `stale` refusals may cut, together.
    stale_cut_left: f64,
    /// The retry after a first refusal is the last of the `stale` answers.
    retry_pending: bool,
    /// Running share of such retries that started a chat, and first refusals since the last.
    retry_score: f64,
    retries_skipped: f64,
    /// Consecutive counted refusals, and `log r` before the first of them.
    fail_run: u32,
    run_top: f64,
    /// After a long run of refusals ended in a bisection: the `log r` to climb back toward.
    search_top: Option<f64>,
    /// No start has fitted since the open period ended.
    discovering: bool,
    /// `log r` before the first `Started` of the current run of them.
    run_bottom: f64,
    /// Consecutive `Started` since the last counted refusal.
    success_run: u32,
    /// Times of the last starts of the open period (for the first cut), and the count of
    /// starts since the machine last opened (in the open period and after).
    open_starts: VecDeque<Instant>,
    open_count: u32,
    /// With contact events: the slots their chat ends freed (the pace stands aside).
    events: Option<FreedSlots>,
    /// The events were found silent: the blind pace runs until the next event.
    blind_until_event: bool,
}

impl InstanceCapacity {
    /// An open machine.
    pub fn new(settings: CapacitySettings, now: Instant) -> Self {
        let mut m = InstanceCapacity {
            burst: settings.min_burst.max(1.0),
            settings,
            phase: Phase::Open,
            log_rate: None,
            level: 0.0,
            refilled: now,
            unused: 0.0,
            in_flight: 0,
            stale: 0,
            stale_cut_left: 0.0,
            retry_pending: false,
            retry_score: 1.0,
            retries_skipped: 0.0,
            fail_run: 0,
            run_top: 0.0,
            run_bottom: 0.0,
            discovering: false,
            search_top: None,
            success_run: 0,
            open_starts: VecDeque::new(),
            open_count: 0,
            events: None,
            blind_until_event: false,
        };
        m.set_contact_events(m.settings.contact_events);
        m
    }

    /// Whether chat ends are reported from now on (the worker's contact-events reader is
    /// healthy). Off: the blind pace takes over where the machine's state is.
    pub fn set_contact_events(&mut self, on: bool) {
        match (on, self.events.is_some()) {
            (true, false) => {
                let max = Duration::from_secs_f64((1.0 / self.settings.min_rate).min(1e6));
                let mut ev = FreedSlots::new(self.settings.event_probe_min, max);
                if self.phase == Phase::Limited {
                    // Nothing known about which slots freed: probe from now.
                    ev.found_full(self.refilled, self.refilled);
                }
                self.events = Some(ev);
                self.blind_until_event = false;
            }
            (false, true) => {
                self.events = None;
                self.blind_until_event = false;
            }
            _ => {}
        }
    }

    /// A chat on this instance ended at `ended` (a contact event, received at `now`): ours or
    /// another caller's. Without contact events on, ignored.
    pub fn freed(&mut self, ended: Instant, now: Instant) {
        let limited = self.phase == Phase::Limited;
        if self.blind_until_event
            && let Some(ev) = self.events.as_mut()
        {
            // Events again: back to them, knowing nothing of the slots yet (probes from now).
            self.blind_until_event = false;
            ev.reset();
            if limited {
                ev.found_full(ended.min(now), now);
            }
        }
        if let Some(ev) = self.events.as_mut() {
            if limited {
                ev.freed(ended, now);
            } else {
                ev.seen(now);
            }
        }
    }

    /// Ask to start one chat now. `Go`: send one StartChatContact and later call
    /// [`InstanceCapacity::report`] exactly once with its outcome. `NotBefore(t)`: do not ask
    /// again before `t`.
    pub fn admit(&mut self, now: Instant) -> CapacityAdmit {
        if let Some(ev) = self.events.as_mut()
            && !self.blind_until_event
        {
            if !ev.take_silent(now) {
                return self.admit_on_events(now);
            }
            // Probes find slots and no event comes: pace blind from here, as at a refusal
            // (the pace's own state is from the first fill).
            self.blind_until_event = true;
            if self.phase == Phase::Limited {
                self.refilled = now;
                self.level = self.level.clamp(0.0, 1.0);
            }
        }
        if self.phase == Phase::Limited {
            self.refill(now);
        }
        if self.phase == Phase::Limited {
            // A hair of tolerance: a caller that sleeps until `NotBefore(t)` must get `Go` at
            // `t` although `t` was rounded to nanoseconds.
            if self.level < 1.0 - TOKEN_EPSILON {
                let wait = (1.0 - self.level) / self.rate();
                return CapacityAdmit::NotBefore(now + Duration::from_secs_f64(wait.min(1e6)));
            }
            self.level = (self.level - 1.0).max(-TOKEN_EPSILON);
        }
        self.in_flight = self.in_flight.saturating_add(1);
        CapacityAdmit::Go
    }

    /// The events' state while the machine runs on them.
    fn live_events(&self) -> Option<&FreedSlots> {
        self.events.as_ref().filter(|_| !self.blind_until_event)
    }

    /// `admit` with contact events: open as without; full, a start per freed slot.
    fn admit_on_events(&mut self, now: Instant) -> CapacityAdmit {
        if self.would_open(now) {
            self.open(now);
        }
        let limited = self.phase == Phase::Limited;
        let Some(ev) = self.events.as_mut() else {
            return CapacityAdmit::Go;
        };
        if limited {
            if let Err(probe) = ev.admit(now) {
                // A report wakes the caller at each chat end; until one, the next end is
                // expected one mean gap of the ends away (what a caller sizes its wait by).
                let gap = ev
                    .end_rate(now)
                    .map(|r| Duration::from_secs_f64((1.0 / r).min(1e6)));
                return CapacityAdmit::NotBefore(gap.map_or(probe, |g| probe.min(now + g)));
            }
        } else {
            ev.admitted_open(now);
        }
        self.in_flight = self.in_flight.saturating_add(1);
        CapacityAdmit::Go
    }

    /// `report` with contact events: the open period and the first refusal as without; while
    /// full, an answer only voids stale slots (a refusal) or counts our chats (a start).
    fn report_on_events(&mut self, outcome: CapacityOutcome, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let started = match outcome {
            CapacityOutcome::Started => Some(true),
            CapacityOutcome::LimitExceeded => Some(false),
            CapacityOutcome::Inconclusive => None,
        };
        let phase = self.phase;
        let Some(ev) = self.events.as_mut() else {
            return;
        };
        let admitted = ev.answered(started, now).unwrap_or(now);
        if outcome == CapacityOutcome::LimitExceeded {
            ev.found_full(admitted, now);
        }
        match (phase, outcome) {
            (Phase::Open, CapacityOutcome::Started) => self.report_open_start(now),
            (Phase::Open, CapacityOutcome::LimitExceeded) => self.limit_found(now),
            (Phase::Limited, CapacityOutcome::Started) => {
                self.open_count = self.open_count.saturating_add(1);
            }
            _ => {}
        }
    }

    /// The outcome of a start admitted with `Go`.
    pub fn report(&mut self, outcome: CapacityOutcome, now: Instant) {
        if self.events.is_some() && !self.blind_until_event {
            return self.report_on_events(outcome, now);
        }
        if let Some(ev) = self.events.as_mut() {
            // Keep the events' matching of answers to admissions in step.
            ev.forget_oldest();
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        let stale = self.stale > 0;
        if self.stale == 1 && self.retry_pending {
            self.retry_pending = false;
            let hit = match outcome {
                CapacityOutcome::Started => Some(1.0),
                CapacityOutcome::LimitExceeded => Some(0.0),
                CapacityOutcome::Inconclusive => None,
            };
            if let Some(hit) = hit {
                self.retry_score += (hit - self.retry_score) / self.settings.retry_memory.max(1.0);
            }
        }
        self.stale = self.stale.saturating_sub(1);
        if self.phase == Phase::Limited {
            self.refill(now);
        }
        match (self.phase, outcome) {
            (Phase::Open, CapacityOutcome::Started) => self.report_open_start(now),
            (Phase::Open, CapacityOutcome::LimitExceeded) => self.limit_found(now),
            (Phase::Open, CapacityOutcome::Inconclusive) => {}
            (Phase::Limited, CapacityOutcome::Started) => self.started(now),
            // A refusal of a call already in flight at the last counted one: the same evidence,
            // so it neither escalates nor empties the bucket again, but the budget is of calls,
            // so it keeps its own cut `a·k` in the equilibrium.
            (Phase::Limited, CapacityOutcome::LimitExceeded) if stale => {
                let cut = (self.settings.step * self.k()).min(self.stale_cut_left);
                self.stale_cut_left -= cut;
                if let Some(log) = self.log_rate {
                    self.log_rate = Some(self.clamp_log(log - cut));
                }
            }
            (Phase::Limited, CapacityOutcome::LimitExceeded) => self.refused(),
            (Phase::Limited, CapacityOutcome::Inconclusive) => {
                self.level = (self.level + 1.0).min(self.burst);
            }
        }
    }

    /// Whether the instance has been found full and starts are being paced.
    pub fn is_limited(&self) -> bool {
        self.phase == Phase::Limited
    }

    /// Starts per second the machine expects to allow now while limited (`None` when open, or
    /// when the pace no longer binds and the next admit will open it).
    pub fn start_rate(&self, now: Instant) -> Option<f64> {
        if self.phase != Phase::Limited || self.would_open(now) {
            return None;
        }
        if let Some(ev) = self.live_events() {
            return Some(ev.end_rate(now).unwrap_or_else(|| self.rate()));
        }
        Some(self.rate())
    }

    /// Starts the bucket would allow at once at `now` (0 when open: nothing is paced).
    pub fn ready_starts(&self, now: Instant) -> f64 {
        if self.phase != Phase::Limited {
            return 0.0;
        }
        if let Some(ev) = self.live_events() {
            return ev.ready_at(now) as f64;
        }
        let (level, _) = self.level_at(now);
        level.max(0.0)
    }

    /// Whether dropping this machine loses nothing that matters: open (or about to open) with
    /// no start in flight, so a fresh one behaves the same. The caller keeps one machine per
    /// instance id, and instance ids come from jobs: forget such machines to bound the map.
    pub fn can_forget(&self, now: Instant) -> bool {
        self.in_flight == 0 && (self.phase == Phase::Open || self.would_open(now))
    }

    /// For the gauge: 0 open, 1 limited.
    pub fn state_code(&self) -> i64 {
        match self.phase {
            Phase::Open => 0,
            Phase::Limited => 1,
        }
    }

    /// `k` of the budget that applies: the fixed-lifetime one while retries after a first
    /// refusal mostly start a chat (chat ends follow our starts), else the varied one.
    fn k(&self) -> f64 {
        let s = &self.settings;
        k_for(if self.lifetimes_alike() {
            s.limit_exceeded_share
        } else {
            s.varied_limit_exceeded_share
        })
    }

    /// Whether at least half of the recent retries after a first refusal started a chat.
    fn lifetimes_alike(&self) -> bool {
        self.retry_score >= 0.5
    }

    fn rate(&self) -> f64 {
        self.log_rate
            .map(f64::exp)
            .unwrap_or(self.settings.unknown_rate)
            .clamp(self.settings.min_rate, self.settings.max_rate)
    }

    fn clamp_log(&self, log: f64) -> f64 {
        log.clamp(self.settings.min_rate.ln(), self.settings.max_rate.ln())
    }

    /// The bucket's level at `now` and the tokens that overflowed since `refilled`.
    fn level_at(&self, now: Instant) -> (f64, f64) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        let level = self.level + dt * self.rate();
        if level > self.burst {
            (self.burst, level - self.burst)
        } else {
            (level, 0.0)
        }
    }

    fn would_open(&self, now: Instant) -> bool {
        if let Some(ev) = self.live_events() {
            // As many slots free as our starts filled, and no start needed them.
            return self.phase == Phase::Limited && ev.ready() as f64 >= self.burst;
        }
        let (_, overflow) = self.level_at(now);
        self.unused + overflow >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        if self.would_open(now) {
            self.open(now);
            return;
        }
        let (level, overflow) = self.level_at(now);
        self.level = level;
        self.unused += overflow;
        self.refilled = now;
    }

    /// A start that fitted while open: counted, and timed for the first cut.
    fn report_open_start(&mut self, now: Instant) {
        self.open_count = self.open_count.saturating_add(1);
        self.open_starts.push_back(now);
        while self.open_starts.len() > self.settings.rate_window.max(1) {
            self.open_starts.pop_front();
        }
    }

    fn open(&mut self, now: Instant) {
        if let Some(ev) = self.events.as_mut() {
            ev.reset();
        }
        self.phase = Phase::Open;
        self.open_starts.clear();
        self.open_count = 0;
        self.fail_run = 0;
        self.success_run = 0;
        self.unused = 0.0;
        self.level = 0.0;
        self.refilled = now;
    }

    /// The first refusal after an open period.
    fn limit_found(&mut self, now: Instant) {
        let measured = self.open_starts.front().and_then(|&first| {
            let span = now.saturating_duration_since(first).as_secs_f64();
            (span > 0.0).then(|| self.open_starts.len() as f64 / span)
        });
        let start_rate = match (measured, self.log_rate) {
            (Some(r), _) => r,
            (None, Some(log)) => log.exp(),
            (None, None) => self.settings.unknown_rate,
        };
        self.burst = self
            .burst
            .max(self.open_count as f64)
            .max(self.settings.min_burst);
        self.phase = Phase::Limited;
        self.log_rate = Some(self.clamp_log(start_rate.max(f64::MIN_POSITIVE).ln()));
        self.fail_run = 0;
        self.success_run = 0;
        self.level = 0.0;
        self.refilled = now;
        // Nothing is known yet about when chats end: no retry until a start fits.
        self.discovering = true;
        self.refused();
    }

    /// A refusal says the instance was full when that call reached it: saved-up tokens and the
    /// time since the last start at the pace are both void; the pace starts over from now.
    fn found_full(&mut self) {
        self.level = self.level.min(0.0);
    }

    /// A counted refusal while limited.
    fn refused(&mut self) {
        let s = &self.settings;
        let mut log = self.log_rate.unwrap_or(s.unknown_rate.ln());
        if self.fail_run == 0 {
            if self.success_run > 0 {
                // The same accounting for a run of starts that climbed faster: each start keeps
                // its own rise `a`; of the climb beyond that, half is given back.
                let climb = log - self.run_bottom;
                let kept = f64::from(self.success_run) * s.step;
                log -= (climb / 2.0).min(climb - kept).max(0.0);
            }
            self.run_top = log;
        }
        let cut =
            (s.step * self.k() * s.escalation.powi(self.fail_run.min(64) as i32)).min(s.max_cut);
        self.log_rate = Some(self.clamp_log(log - cut));
        self.fail_run = self.fail_run.saturating_add(1);
        self.success_run = 0;
        self.search_top = None;

        self.unused = 0.0;
        self.found_full();
        self.stale = self.in_flight;
        // However many were in flight, together they cut at most by `max_cut` more.
        self.stale_cut_left = self.settings.max_cut;
        self.retry_pending = false;
        if self.fail_run == 1 && !self.discovering {
            // The first refusal after starts that fitted: the pace is about right and this call
            // came a little before a chat ended. When chat ends follow our starts (lifetimes
            // alike), that end comes within the jitter of the call: its token goes back, so one
            // start goes as soon as the answer is in (a round trip after the refused one), and
            // its answer is the same evidence as this one. When lifetimes vary, such retries
            // mostly find the instance still full: they go on only while at least half of them
            // start a chat (and one in `retry_memory` to notice when that changes).
            let s = &self.settings;
            if self.lifetimes_alike() || self.retries_skipped + 1.0 >= s.retry_memory {
                self.retries_skipped = 0.0;
                self.level = 1.0;
                self.stale = self.stale.saturating_add(1);
                self.retry_pending = true;
            } else {
                self.retries_skipped += 1.0;
            }
        }
    }

    /// A `Started` while limited.
    fn started(&mut self, now: Instant) {
        let k = self.k();
        let s = &self.settings;
        let mut log = self.log_rate.unwrap_or(s.unknown_rate.ln());
        if self.fail_run >= 2 {
            // The run's refusals each keep their own cut (`a·k`), so the share of refusals the
            // pace settles at stays `1/(1+k)`; the escalation beyond that is given back.
            let cut = self.run_top - log;
            let kept = f64::from(self.fail_run) * s.step * k;
            if cut >= 2.0 * s.max_cut && self.open_count == 0 {
                // A long run, and none of the instance's chats is ours (nothing of ours started
                // since the machine last opened): the slot that freed is another caller's, and
                // how many more are free is unknown, perhaps all. Open: every start goes until
                // the instance is full again, and that refusal is a first one, measured like
                // the first fill. (With chats of ours on it, slots free as ours end, at about
                // the pace we started them: the bisection below.)
                self.open(now);
                self.report_open_start(now);
                return;
            }
            // Half of it (a bisection between the run's top, known too high, and the rate at
            // which a slot was found).
            log += (cut / 2.0).min(cut - kept).max(0.0);
            if cut >= 2.0 * s.max_cut {
                // After a long run the pace may be far below the rate chats now end at: climb
                // back toward the run's top, halving the distance per turnover of our chats
                // (as many starts as the instance took when it was found full), until a refusal.
                self.search_top = Some(self.run_top - kept);
            }
        }
        if self.success_run == 0 {
            self.run_bottom = log;
        }
        self.discovering = false;
        self.open_count = self.open_count.saturating_add(1);
        self.fail_run = 0;
        self.success_run = self.success_run.saturating_add(1);
        // Only while the pace is what holds starts back: with a whole start saved up in the
        // bucket the caller did not need the pace, and a start says nothing about a faster one.
        if self.level < 1.0 {
            let beyond = (f64::from(self.success_run) - 2.0 * k).max(0.0) / k;
            let mut rise = (s.step * s.escalation.powf(beyond)).min(s.max_cut);
            if let Some(top) = self.search_top {
                rise = rise.max((top - log) * std::f64::consts::LN_2 / self.burst.max(1.0));
            }
            log += rise;
        }
        self.log_rate = Some(self.clamp_log(log));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    /// `k` (of the fixed-lifetime budget) and `a` of the defaults.
    fn ka() -> (f64, f64) {
        let s = CapacitySettings::default();
        (k_for(s.limit_exceeded_share), s.step)
    }

    fn rate(m: &InstanceCapacity, now: Instant) -> f64 {
        m.start_rate(now).expect("limited")
    }

    /// Twenty chats started 50 ms apart (20/s), then a refusal at 1.05 s, nothing in flight.
    fn limited(t0: Instant) -> InstanceCapacity {
        let mut m = InstanceCapacity::new(CapacitySettings::default(), t0);
        for i in 1..=20 {
            assert_eq!(m.admit(t0 + ms(50 * i)), CapacityAdmit::Go);
            m.report(CapacityOutcome::Started, t0 + ms(50 * i));
        }
        assert_eq!(m.admit(t0 + ms(1_000)), CapacityAdmit::Go);
        m.report(CapacityOutcome::LimitExceeded, t0 + ms(1_050));
        m
    }

    /// The next start the pace allows from `now` on: its time (the admit said `Go`).
    fn next(m: &mut InstanceCapacity, now: Instant) -> Instant {
        match m.admit(now) {
            CapacityAdmit::Go => now,
            CapacityAdmit::NotBefore(t) => {
                assert!(t > now);
                assert_eq!(m.admit(t), CapacityAdmit::Go, "at the promised instant");
                t
            }
        }
    }

    /// [`limited`], then one start that fits at the pace: the first free slot was found.
    fn paced(t0: Instant) -> (InstanceCapacity, Instant) {
        let mut m = limited(t0);
        let now = next(&mut m, t0 + ms(1_050));
        m.report(CapacityOutcome::Started, now);
        (m, now)
    }

    #[test]
    fn open_until_a_refusal() {
        let t0 = Instant::now();
        let mut m = InstanceCapacity::new(CapacitySettings::default(), t0);
        for i in 0..100 {
            assert_eq!(m.admit(t0 + ms(i)), CapacityAdmit::Go);
        }
        for i in 0..50 {
            m.report(CapacityOutcome::Started, t0 + ms(100 + i));
            m.report(CapacityOutcome::Inconclusive, t0 + ms(100 + i));
        }
        assert!(!m.is_limited());
        assert_eq!(m.state_code(), 0);
        assert_eq!(m.start_rate(t0 + ms(300)), None);
        assert_eq!(m.ready_starts(t0 + ms(300)), 0.0);
    }

    #[test]
    fn the_first_refusal_paces_from_our_start_rate() {
        let t0 = Instant::now();
        let mut m = limited(t0);
        let (k, a) = ka();
        assert!(m.is_limited());
        assert_eq!(m.state_code(), 1);
        // 20 starts over the second before the refusal: 20/s, cut once.
        let now = t0 + ms(1_050);
        let r = rate(&m, now);
        assert!(close(r, 20.0 * (-a * k).exp()), "{r}");
        // No retry: nothing is known yet about when chats end. The next start at the pace.
        let gap = Duration::from_secs_f64(1.0 / r);
        assert_eq!(m.admit(now), CapacityAdmit::NotBefore(now + gap));
        assert_eq!(m.admit(now + gap), CapacityAdmit::Go);
        // A start that fits raises the rate by a.
        m.report(CapacityOutcome::Started, now + gap);
        assert!(close(rate(&m, now + gap), r * a.exp()));
    }

    #[test]
    fn a_first_refusal_after_starts_fitted_retries_once_at_once() {
        let t0 = Instant::now();
        let (mut m, now) = paced(t0);
        let (k, a) = ka();
        let now = next(&mut m, now);
        let r = rate(&m, now);
        m.report(CapacityOutcome::LimitExceeded, now);
        let cut = r * (-a * k).exp();
        assert!(close(rate(&m, now), cut));
        // The refused call's token goes back: one start at once, then the pace again.
        assert_eq!(m.admit(now), CapacityAdmit::Go);
        let gap = Duration::from_secs_f64(1.0 / cut);
        assert_eq!(m.admit(now), CapacityAdmit::NotBefore(now + gap));
        // The retry's refusal is the same evidence: it does not escalate, but it is a refused
        // call and keeps its own a·k.
        m.report(CapacityOutcome::LimitExceeded, now + ms(100));
        let cut = cut * (-a * k).exp();
        assert!(close(rate(&m, now + ms(100)), cut));
        // The next refusal counts, the second in a row: twice the cut.
        let now = next(&mut m, now + ms(100));
        m.report(CapacityOutcome::LimitExceeded, now);
        assert!(close(rate(&m, now), cut * (-2.0 * a * k).exp()));
    }

    #[test]
    fn refusals_of_calls_already_in_flight_are_one_piece_of_evidence() {
        let t0 = Instant::now();
        let (mut m, now) = paced(t0);
        let (k, a) = ka();
        // Four starts saved up, all sent at once.
        let r = rate(&m, now);
        let now = now + Duration::from_secs_f64(4.0 / r);
        for _ in 0..4 {
            assert_eq!(m.admit(now), CapacityAdmit::Go);
        }
        m.report(CapacityOutcome::LimitExceeded, now + ms(50));
        let cut = r * (-a * k).exp();
        assert!(close(rate(&m, now + ms(50)), cut));
        // They do not escalate (each keeps its own a·k) nor take the retry's token.
        for i in 0..3 {
            m.report(CapacityOutcome::LimitExceeded, now + ms(60 + i));
        }
        let cut = cut * (-3.0 * a * k).exp();
        assert!(close(rate(&m, now + ms(70)), cut));
        // The retry is covered too.
        assert_eq!(m.admit(now + ms(70)), CapacityAdmit::Go);
        m.report(CapacityOutcome::LimitExceeded, now + ms(150));
        let cut = cut * (-a * k).exp();
        assert!(close(rate(&m, now + ms(150)), cut));
        // Then a refusal counts again: the second of a run.
        let now = next(&mut m, now + ms(150));
        m.report(CapacityOutcome::LimitExceeded, now);
        assert!(close(rate(&m, now), cut * (-2.0 * a * k).exp()));
    }

    #[test]
    fn many_refusals_in_flight_cut_at_most_by_half_together() {
        let t0 = Instant::now();
        let (mut m, now) = paced(t0);
        let (k, a) = ka();
        // Twenty starts saved up, all sent at once, all refused.
        let r = rate(&m, now);
        let now = now + Duration::from_secs_f64(20.0 / r);
        for _ in 0..20 {
            assert_eq!(m.admit(now), CapacityAdmit::Go);
        }
        for i in 0..20 {
            m.report(CapacityOutcome::LimitExceeded, now + ms(50 + i));
        }
        let expected = r * (-a * k).exp() / 2.0;
        assert!(close(rate(&m, now + ms(70)), expected));
        assert_eq!(m.state_code(), 1);
    }

    #[test]
    fn starts_that_did_not_wait_for_the_pace_do_not_raise_it() {
        let t0 = Instant::now();
        let (mut m, now) = paced(t0);
        let r = rate(&m, now);
        // Ten starts' worth saved up; five go and fit.
        let now = now + Duration::from_secs_f64(10.0 / r);
        for _ in 0..5 {
            assert_eq!(m.admit(now), CapacityAdmit::Go);
            m.report(CapacityOutcome::Started, now);
        }
        assert!(close(rate(&m, now), r));
    }

    #[test]
    fn consecutive_refusals_back_off_faster_then_a_start_bisects_back() {
        let t0 = Instant::now();
        let mut m = limited(t0);
        let (k, a) = ka();
        let top = 20f64.ln();
        let mut now = t0 + ms(1_050);
        let mut expected = top - a * k;
        for n in 1..8 {
            now = next(&mut m, now);
            m.report(CapacityOutcome::LimitExceeded, now);
            expected -= (a * k * 2f64.powi(n)).min(std::f64::consts::LN_2);
            assert!(close(rate(&m, now).ln(), expected), "refusal {n}");
        }
        // Halving at most: the gap between probes at most doubles.
        let before = now;
        let now = next(&mut m, now);
        let gap = (now - before).as_secs_f64();
        assert!(close(gap, 1.0 / expected.exp()));
        m.report(CapacityOutcome::Started, now);
        // Each of the 8 refusals keeps its a·k; of the rest of the cut half comes back.
        let cut = top - expected;
        let back = (cut / 2.0).min(cut - 8.0 * a * k);
        assert!(back > 0.0);
        // And the start's own rise: the climb back toward the top (a long run), at least `a`.
        let mid = expected + back;
        let climb = ((top - 8.0 * a * k - mid) * std::f64::consts::LN_2 / 20.0).max(a);
        assert!(close(rate(&m, now).ln(), mid + climb));
    }

    #[test]
    fn k_starts_and_one_refusal_leave_the_rate_where_it_was() {
        let t0 = Instant::now();
        let (mut m, mut now) = paced(t0);
        let (k, a) = ka();
        let r0 = rate(&m, now);
        for _ in 0..3 {
            for _ in 0..(k.round() as usize) {
                now = next(&mut m, now);
                m.report(CapacityOutcome::Started, now);
            }
            now = next(&mut m, now);
            m.report(CapacityOutcome::LimitExceeded, now);
            // The retry fits.
            now = next(&mut m, now);
            m.report(CapacityOutcome::Started, now);
        }
        // Three cycles of k starts, a refusal and its retry's start: up by the three retries.
        assert!(close(rate(&m, now), r0 * (3.0 * a).exp()));
    }

    #[test]
    fn a_long_run_of_starts_climbs_faster_and_gives_half_back() {
        let t0 = Instant::now();
        let (mut m, mut now) = paced(t0);
        let (k, a) = ka();
        let bottom = rate(&m, now).ln() - a;
        let mut last = rate(&m, now);
        for n in 2..=(4 * k as u32) {
            now = next(&mut m, now);
            m.report(CapacityOutcome::Started, now);
            let r = rate(&m, now);
            let beyond = (f64::from(n) - 2.0 * k).max(0.0) / k;
            assert!(close((r / last).ln(), a * 2f64.powf(beyond)), "start {n}");
            last = r;
        }
        // The escalation more than half again what the 4k starts' steps gave.
        let climb = last.ln() - bottom;
        let kept = 4.0 * k * a;
        assert!(climb > 1.5 * kept);
        now = next(&mut m, now);
        m.report(CapacityOutcome::LimitExceeded, now);
        // Each start keeps its a, half the rest goes back, then the refusal's own cut.
        let back = (climb / 2.0).min(climb - kept);
        assert!(close(rate(&m, now).ln(), last.ln() - back - a * k));
    }

    #[test]
    fn an_inconclusive_answer_gives_its_token_back() {
        let t0 = Instant::now();
        let (mut m, now) = paced(t0);
        let now = next(&mut m, now);
        let r = rate(&m, now);
        m.report(CapacityOutcome::Inconclusive, now);
        assert!(close(rate(&m, now), r));
        assert_eq!(m.admit(now), CapacityAdmit::Go);
        assert!(matches!(m.admit(now), CapacityAdmit::NotBefore(_)));
    }

    #[test]
    fn unused_capacity_is_saved_up_to_the_burst() {
        let t0 = Instant::now();
        let (mut m, now) = paced(t0);
        let r = rate(&m, now);
        // Nobody asks for 5 starts' time: five may go at once.
        let later = now + Duration::from_secs_f64(5.0 / r);
        assert!((m.ready_starts(later) - 5.0).abs() < 1e-6);
        for _ in 0..5 {
            assert_eq!(m.admit(later), CapacityAdmit::Go);
        }
        assert!(matches!(m.admit(later), CapacityAdmit::NotBefore(_)));
        for _ in 0..4 {
            m.report(CapacityOutcome::Started, later);
        }
        // No more than the 20 starts that filled the instance are saved.
        let much_later = later + Duration::from_secs_f64(25.0 / r);
        assert!((m.ready_starts(much_later) - 20.0).abs() < 1e-6);
        // A refusal says the instance is full: the savings go (all but the retry's token).
        assert_eq!(m.admit(much_later), CapacityAdmit::Go);
        m.report(CapacityOutcome::LimitExceeded, much_later);
        assert!((m.ready_starts(much_later) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_machine_opens_when_the_pace_stops_binding() {
        let t0 = Instant::now();
        let (mut m, now) = paced(t0);
        let r = rate(&m, now);
        // The bucket fills (20 starts) and overflows by another 20 unused: open.
        assert!(
            m.start_rate(now + Duration::from_secs_f64(39.0 / r))
                .is_some()
        );
        let then = now + Duration::from_secs_f64(40.5 / r);
        assert_eq!(m.start_rate(then), None);
        assert_eq!(m.admit(then), CapacityAdmit::Go);
        assert!(!m.is_limited());
        assert_eq!(m.state_code(), 0);
        for _ in 0..10 {
            assert_eq!(m.admit(then), CapacityAdmit::Go);
        }
        // Found full again, no start measured: the first cut starts from the last pace.
        m.report(CapacityOutcome::LimitExceeded, then + ms(100));
        assert!(m.is_limited());
        let (k, a) = ka();
        assert!(close(rate(&m, then + ms(100)), r * (-a * k).exp()));
        // The nine other calls' refusals are the same evidence: together at most half again.
        for _ in 0..9 {
            m.report(CapacityOutcome::LimitExceeded, then + ms(110));
        }
        assert!(close(rate(&m, then + ms(110)), r * (-a * k).exp() / 2.0));
    }

    #[test]
    fn retries_stop_while_they_mostly_fail_and_the_varied_budget_applies() {
        let t0 = Instant::now();
        let (mut m, mut now) = paced(t0);
        let mut retries = 0;
        for _cycle in 0..40 {
            // The retry, if any, goes at once and finds the limit.
            if m.admit(now) == CapacityAdmit::Go {
                retries += 1;
                m.report(CapacityOutcome::LimitExceeded, now);
            }
            // Then one start fits and the next is refused: a first refusal each time.
            for outcome in [CapacityOutcome::Started, CapacityOutcome::LimitExceeded] {
                now = next(&mut m, now + ms(1));
                m.report(outcome, now);
            }
        }
        // Optimistic at first (6 misses bring the score below ½), then one in eight.
        assert!((9..=12).contains(&retries), "{retries}");
        // The cut of a first refusal is now the varied budget's a·k.
        let s = CapacitySettings::default();
        if m.admit(now) == CapacityAdmit::Go {
            m.report(CapacityOutcome::LimitExceeded, now);
        }
        now = next(&mut m, now + ms(1));
        m.report(CapacityOutcome::Started, now);
        let r = rate(&m, now);
        now = next(&mut m, now);
        m.report(CapacityOutcome::LimitExceeded, now);
        let k = k_for(s.varied_limit_exceeded_share);
        assert!(close(rate(&m, now), r * (-s.step * k).exp()));
    }

    #[test]
    fn a_slot_found_after_a_long_full_time_with_none_of_ours_reopens() {
        let t0 = Instant::now();
        let mut m = InstanceCapacity::new(CapacitySettings::default(), t0);
        // Another caller holds the instance: the very first answer is a refusal.
        assert_eq!(m.admit(t0), CapacityAdmit::Go);
        m.report(CapacityOutcome::LimitExceeded, t0 + ms(50));
        let mut now = t0 + ms(50);
        for _ in 0..6 {
            now = next(&mut m, now);
            m.report(CapacityOutcome::LimitExceeded, now);
        }
        assert!(m.is_limited());
        now = next(&mut m, now);
        m.report(CapacityOutcome::Started, now);
        // Its chats end, maybe all of them: every start goes until the next refusal.
        assert!(!m.is_limited());
        for _ in 0..50 {
            assert_eq!(m.admit(now), CapacityAdmit::Go);
        }
        // With a chat of ours on it, the same run ends in a bisection instead.
        let mut m = limited(t0);
        let mut now = t0 + ms(1_050);
        for _ in 0..6 {
            now = next(&mut m, now);
            m.report(CapacityOutcome::LimitExceeded, now);
        }
        now = next(&mut m, now);
        m.report(CapacityOutcome::Started, now);
        assert!(m.is_limited());
    }

    #[test]
    fn only_an_open_machine_with_nothing_in_flight_can_be_forgotten() {
        let t0 = Instant::now();
        let mut m = InstanceCapacity::new(CapacitySettings::default(), t0);
        assert!(m.can_forget(t0));
        assert_eq!(m.admit(t0), CapacityAdmit::Go);
        assert!(!m.can_forget(t0));
        m.report(CapacityOutcome::Started, t0);
        assert!(m.can_forget(t0));
        let (m, now) = paced(t0);
        assert!(!m.can_forget(now));
        // Unused for long enough, it would open: nothing left to remember.
        let r = rate(&m, now);
        assert!(m.can_forget(now + Duration::from_secs_f64(41.0 / r)));
    }

    #[test]
    fn after_a_long_run_the_pace_climbs_back_toward_its_top() {
        let t0 = Instant::now();
        let mut m = limited(t0);
        let (k, a) = ka();
        let top = 20f64.ln();
        let mut now = t0 + ms(1_050);
        for _ in 0..7 {
            now = next(&mut m, now);
            m.report(CapacityOutcome::LimitExceeded, now);
        }
        now = next(&mut m, now);
        m.report(CapacityOutcome::Started, now);
        let target = top - 8.0 * a * k;
        // Each start that waited for the pace halves the distance to the top in `burst` (20).
        for _ in 0..5 {
            let before = rate(&m, now).ln();
            now = next(&mut m, now);
            m.report(CapacityOutcome::Started, now);
            let rise = rate(&m, now).ln() - before;
            assert!(close(
                rise,
                (target - before) * std::f64::consts::LN_2 / 20.0
            ));
        }
        // A refusal ends the climb: from then on the usual steps.
        now = next(&mut m, now);
        m.report(CapacityOutcome::LimitExceeded, now);
        // (The retry.)
        now = next(&mut m, now);
        m.report(CapacityOutcome::Started, now);
        let before = rate(&m, now).ln();
        now = next(&mut m, now);
        m.report(CapacityOutcome::Started, now);
        assert!(close(rate(&m, now).ln() - before, a));
    }

    #[test]
    fn the_pace_never_drops_below_the_floor() {
        let t0 = Instant::now();
        let mut m = limited(t0);
        let mut now = t0 + ms(1_050);
        for _ in 0..200 {
            let before = now;
            now = next(&mut m, now);
            assert!(now - before <= Duration::from_secs(300) + ms(1));
            m.report(CapacityOutcome::LimitExceeded, now);
        }
        assert!(close(rate(&m, now), 1.0 / 300.0));
    }

    #[test]
    fn odd_call_sequences_do_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut m = InstanceCapacity::new(CapacitySettings::default(), t0);
        // Reports without admits, a refusal before the start it follows, time going backwards.
        m.report(CapacityOutcome::Started, t0);
        m.report(CapacityOutcome::LimitExceeded, t0 - Duration::from_secs(5));
        assert!(m.is_limited());
        // No usable span measured: the unknown rate, cut once.
        let (k, a) = ka();
        let r = rate(&m, t0 - Duration::from_secs(5));
        assert!(close(r, (-a * k).exp()), "{r}");
        for outcome in [
            CapacityOutcome::Inconclusive,
            CapacityOutcome::Started,
            CapacityOutcome::LimitExceeded,
        ] {
            m.report(outcome, t0 - Duration::from_secs(100));
            let _ = m.admit(t0 - Duration::from_secs(100));
            let _ = m.start_rate(t0 - Duration::from_secs(100));
        }
        let far = t0 + Duration::from_secs(10_000_000);
        let _ = m.admit(far);
        let _ = m.start_rate(far);
        let _ = m.ready_starts(far);
    }

    #[test]
    fn with_contact_events_a_silent_stream_falls_back_to_the_pace_until_an_event() {
        let t0 = Instant::now();
        let settings = CapacitySettings {
            contact_events: true,
            ..CapacitySettings::default()
        };
        let mut m = InstanceCapacity::new(settings, t0);
        // The fill: three starts fit, the next is refused.
        for k in 0..3u64 {
            assert_eq!(m.admit(t0 + ms(10 * k)), CapacityAdmit::Go);
            m.report(CapacityOutcome::Started, t0 + ms(10 * k + 5));
        }
        assert_eq!(m.admit(t0 + ms(50)), CapacityAdmit::Go);
        m.report(CapacityOutcome::LimitExceeded, t0 + ms(100));
        // No event, no start until the first insurance probe, 5 s after the refusal.
        assert_eq!(
            m.admit(t0 + ms(1_000)),
            CapacityAdmit::NotBefore(t0 + ms(5_100))
        );
        assert_eq!(m.admit(t0 + ms(5_100)), CapacityAdmit::Go);
        m.report(CapacityOutcome::Started, t0 + ms(5_150));
        // The probe found a slot and no event came in 5 s: silent, so the blind pace guesses.
        let went = (0..100u64).any(|k| m.admit(t0 + ms(10_200 + 100 * k)) == CapacityAdmit::Go);
        assert!(went, "the blind pace starts again");
        m.report(CapacityOutcome::LimitExceeded, t0 + ms(20_000));
        // An event: back on events, its end is a token, and nothing more goes until a probe.
        m.freed(t0 + ms(21_000), t0 + ms(21_300));
        assert_eq!(m.admit(t0 + ms(21_300)), CapacityAdmit::Go);
        assert!(matches!(
            m.admit(t0 + ms(21_300)),
            CapacityAdmit::NotBefore(_)
        ));
    }
}
