//! [`FreedSlots`]: admission of starts on a full instance from its chats' ends, as Amazon
//! Connect's contact events report them.
//!
//! Blind to chat ends, [`super::capacity::InstanceCapacity`] paces starts by a rate it steers
//! with refusals: every start on a full instance is a guess, and its refusal budget is the
//! price (docs/capacity-control.md). Connect does publish chat ends: an EventBridge rule on
//! `aws.connect` / `Amazon Connect Contact Event` with `eventType` `DISCONNECTED` and `channel`
//! `CHAT`, targeting an SQS queue, delivers one event per ended chat of the instance — ours and
//! other callers' — about a second after it ended (best effort). When the worker reads that
//! queue (`CONTACT_EVENTS_QUEUE_URL`), each event is a slot known to be free, and a full
//! instance admits one start per event instead of a paced guess.
//!
//! # Protocol
//!
//! - **A token per freed slot**, kept with the time the chat ended. A start on a full instance
//!   goes only on a token (oldest first).
//! - **Stale ends are void.** A refusal says the instance was full when that call reached it,
//!   which is after the call was admitted: every slot freed before that instant had been taken
//!   again (by us or another caller). So a refusal drops the tokens of chats that ended before
//!   the refused call's admission, and later events for such chats are ignored (EventBridge
//!   delivers about a second late, so events of chats that ended while the instance was still
//!   open arrive after it was found full).
//! - **A refusal on a token** means another caller took that slot first: it costs that token
//!   and nothing else. Refusals are bounded by other callers' starts; none are guesses.
//! - **Insurance probes.** Delivery is best effort and a rule can be misconfigured, so a lost
//!   event must not leave a slot idle for ever: with no token, one start goes every probe gap,
//!   which starts at `probe_min` at each refusal of a fill and doubles per probe up to
//!   `probe_max`. A probe that starts a chat took a slot whose end is either still on its way
//!   as an event (the next event of a chat that ended before the probe is then that slot's,
//!   and starts nothing) or was not reported (no such event within `probe_min`: lost, or sent
//!   to a sibling replica; the next probe goes at once). If no event at all came since that
//!   probe, the stream is silent and [`FreedSlots::take_silent`] tells the machine to pace
//!   blind until an event comes. While the instance stays full this costs
//!   `log₂(probe_max / probe_min)` refusals and then one per `probe_max`, the blind machine's
//!   floor.
//! - **Inconclusive** answers (throttled, 5xx, not sent) give a token back; a probe's is
//!   retried at the next admit.
//! - **Open again** when tokens pile up to `burst` (as many slots free as our starts filled, and
//!   no job needed them): the instance is not the limit.
//!
//! Answers are matched to admissions in order (Connect answers about in send order; a swap
//! only swaps which admission a probe's outcome is charged to). Pure: time only through the
//! `now` arguments.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Most admissions remembered unanswered: beyond it the oldest are forgotten (lost reports).
const MAX_IN_FLIGHT: usize = 10_000;
/// Most tokens kept: far above any instance's quota of active chats (keeps memory bounded
/// against a flood of events).
const MAX_TOKENS: usize = 100_000;
/// Event arrivals over which the rate of chat ends is measured (for holding jobs).
const RATE_WINDOW: usize = 20;

/// What a start on a full instance went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A freed slot's token (the chat's end time).
    Token(Instant),
    /// An insurance probe.
    Probe,
    /// Admitted while open (or before the instance was found full).
    Open,
}

/// The event-driven half of one instance's capacity machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct FreedSlots {
    probe_min: Duration,
    probe_max: Duration,
    /// Ends of chats whose slots no start has taken yet, oldest first.
    tokens: VecDeque<Instant>,
    /// Chats that ended before this were found replaced (a refused call admitted then).
    full_since: Option<Instant>,
    probe_gap: Duration,
    next_probe: Option<Instant>,
    /// Admissions of probes that started a chat, each waiting for the event of the end whose
    /// slot it took (for at most `probe_min`).
    prepaid: VecDeque<Instant>,
    /// A probe found a slot and no event at all came for `probe_min` after it.
    silent: bool,
    in_flight: VecDeque<(Source, Instant)>,
    /// When the last events arrived (for the rate of chat ends).
    arrivals: VecDeque<Instant>,
}

impl FreedSlots {
    pub fn new(probe_min: Duration, probe_max: Duration) -> Self {
        let probe_min = probe_min.max(Duration::from_millis(1));
        FreedSlots {
            probe_min,
            probe_max: probe_max.max(probe_min),
            tokens: VecDeque::new(),
            full_since: None,
            probe_gap: probe_min,
            next_probe: None,
            prepaid: VecDeque::new(),
            silent: false,
            in_flight: VecDeque::new(),
            arrivals: VecDeque::new(),
        }
    }

    /// The instance was found full by a call admitted at `admitted` (answered at `now`): slots
    /// freed before that are taken. The first time since it was open, the probe schedule
    /// starts over.
    pub fn found_full(&mut self, admitted: Instant, now: Instant) {
        if self.full_since.is_none() {
            self.probe_gap = self.probe_min;
            self.next_probe = Some(now + self.probe_gap);
        }
        self.full_since = Some(self.full_since.map_or(admitted, |f| f.max(admitted)));
        self.tokens.retain(|&ended| ended >= admitted);
    }

    /// An event arrived at `now` (for the rate of chat ends), whatever the instance's state.
    pub fn seen(&mut self, now: Instant) {
        if self.arrivals.len() >= RATE_WINDOW {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
    }

    /// A chat on the full instance ended at `ended` (its event arrived at `now`): a token,
    /// unless the instance was found full after that end.
    pub fn freed(&mut self, ended: Instant, now: Instant) {
        self.seen(now);
        self.expire_prepaid(now);
        if self.full_since.is_some_and(|f| ended < f) {
            return;
        }
        // A probe admitted after this end may have taken its slot: that start was this
        // event's, which must not start another.
        if let Some(k) = self.prepaid.iter().position(|&p| p >= ended) {
            self.prepaid.remove(k);
            return;
        }
        if self.tokens.len() >= MAX_TOKENS {
            return;
        }
        let at = self.tokens.partition_point(|&t| t <= ended);
        self.tokens.insert(at, ended);
    }

    /// Whether a start may go now on a full instance; `Err(t)`: not before `t`.
    pub fn admit(&mut self, now: Instant) -> Result<(), Instant> {
        self.expire_prepaid(now);
        let source = if let Some(ended) = self.tokens.pop_front() {
            Source::Token(ended)
        } else {
            let due = *self.next_probe.get_or_insert(now + self.probe_gap);
            if now < due {
                return Err(due);
            }
            self.probe_gap = (self.probe_gap * 2).min(self.probe_max);
            self.next_probe = Some(now + self.probe_gap);
            Source::Probe
        };
        self.push(source, now);
        Ok(())
    }

    /// A start admitted while the instance was open (its answer will be reported here too).
    pub fn admitted_open(&mut self, now: Instant) {
        self.push(Source::Open, now);
    }

    fn push(&mut self, source: Source, now: Instant) {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((source, now));
    }

    /// The answer of the oldest admission still in flight. Returns when that admission was
    /// made (for [`FreedSlots::found_full`]).
    pub fn answered(&mut self, started: Option<bool>, now: Instant) -> Option<Instant> {
        let (source, admitted) = self.in_flight.pop_front()?;
        match (source, started) {
            // A probe found a slot: one whose event is still on its way (it is matched when
            // it comes), or one the events missed (see `expire_prepaid`).
            (Source::Probe, Some(true)) => self.prepaid.push_back(admitted),
            (Source::Token(ended), None) => {
                let at = self.tokens.partition_point(|&t| t <= ended);
                self.tokens.insert(at, ended);
            }
            (Source::Probe, None) => self.next_probe = Some(now),
            _ => {}
        }
        Some(admitted)
    }

    /// A probe's slot whose event has not come within `probe_min` of the probe: a free slot
    /// the events did not report (lost, or sent to a sibling replica), and there may be more,
    /// so the next probe goes at once. If no event at all came since that probe, the stream is
    /// silent (a broken rule or queue policy delivers nothing while receives succeed): the
    /// machine should pace blind until an event comes ([`FreedSlots::take_silent`]).
    fn expire_prepaid(&mut self, now: Instant) {
        while let Some(&p) = self.prepaid.front() {
            if now.saturating_duration_since(p) <= self.probe_min {
                break;
            }
            self.prepaid.pop_front();
            self.probe_gap = self.probe_min;
            self.next_probe = Some(now);
            if self.arrivals.back().is_none_or(|&last| last < p) {
                self.silent = true;
            }
        }
    }

    /// Whether the stream was found silent since the last call (and clears it).
    pub fn take_silent(&mut self, now: Instant) -> bool {
        self.expire_prepaid(now);
        std::mem::take(&mut self.silent)
    }

    /// Drops the oldest admission in flight, its answer not heard here (the machine paced blind).
    pub fn forget_oldest(&mut self) {
        self.in_flight.pop_front();
    }

    /// Tokens waiting.
    pub fn ready(&self) -> usize {
        self.tokens.len()
    }

    /// Starts that may go at once at `now`: the tokens, or a probe that is due.
    pub fn ready_at(&self, now: Instant) -> usize {
        let probe = self.tokens.is_empty() && self.next_probe.is_some_and(|t| now >= t);
        self.tokens.len() + usize::from(probe)
    }

    /// Chat ends per second over the last events, if two or more arrived.
    pub fn end_rate(&self, now: Instant) -> Option<f64> {
        let first = *self.arrivals.front()?;
        let n = self.arrivals.len();
        if n < 2 {
            return None;
        }
        let span = now.saturating_duration_since(first).as_secs_f64();
        (span > 0.0).then(|| (n - 1) as f64 / span)
    }

    /// Back to the state of an open instance: nothing known about slots.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.prepaid.clear();
        self.silent = false;
        self.full_since = None;
        self.probe_gap = self.probe_min;
        self.next_probe = None;
    }

    /// Admissions not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn slots() -> FreedSlots {
        FreedSlots::new(s(5), s(300))
    }

    #[test]
    fn one_start_per_freed_slot_then_probes_doubling_apart() {
        let t0 = Instant::now();
        let mut f = slots();
        f.found_full(t0, t0);
        assert_eq!(f.admit(t0), Err(t0 + s(5)));
        f.freed(t0 + s(1), t0 + s(2));
        assert_eq!(f.admit(t0 + s(2)), Ok(()));
        assert_eq!(f.admit(t0 + s(2)), Err(t0 + s(5)));
        // The probe at 5 s, then 10 s and 20 s apart while nothing frees.
        assert_eq!(f.admit(t0 + s(5)), Ok(()));
        assert_eq!(f.admit(t0 + s(5)), Err(t0 + s(15)));
        assert_eq!(f.admit(t0 + s(15)), Ok(()));
        assert_eq!(f.admit(t0 + s(15)), Err(t0 + s(35)));
    }

    #[test]
    fn a_refusal_voids_the_slots_that_freed_before_the_refused_call() {
        let t0 = Instant::now();
        let mut f = slots();
        f.freed(t0, t0 + s(1));
        f.freed(t0 + s(3), t0 + s(4));
        assert_eq!(f.ready(), 2);
        // A call admitted at 2 s was refused: the end at 0 s had been taken again, the one
        // at 3 s not.
        f.found_full(t0 + s(2), t0 + s(4));
        assert_eq!(f.ready(), 1);
        // A late event of a chat that ended at 1 s: void.
        f.freed(t0 + s(1), t0 + s(5));
        assert_eq!(f.ready(), 1);
    }

    #[test]
    fn a_probe_that_fits_is_matched_with_the_event_of_the_slot_it_took() {
        let t0 = Instant::now();
        let mut f = slots();
        f.found_full(t0, t0);
        // The probe at 5 s fits: a chat ended at 4.8 s and its event is on its way.
        assert_eq!(f.admit(t0 + s(5)), Ok(()));
        f.answered(Some(true), t0 + s(5));
        // That event starts nothing (the probe took its slot); a later end is a token.
        f.freed(t0 + ms(4_800), t0 + ms(5_300));
        assert_eq!(f.ready(), 0);
        f.freed(t0 + ms(5_200), t0 + ms(5_600));
        assert_eq!(f.ready(), 1);
        // The gap went on doubling: the probe was no sign of a lost event.
        assert_eq!(f.admit(t0 + s(6)), Ok(()));
        assert_eq!(f.admit(t0 + s(6)), Err(t0 + s(15)));
    }

    #[test]
    fn a_probe_whose_slot_no_event_explains_probes_soon_again() {
        let t0 = Instant::now();
        let mut f = slots();
        f.found_full(t0, t0);
        assert_eq!(f.admit(t0 + s(5)), Ok(()));
        assert_eq!(f.admit(t0 + s(15)), Ok(()));
        f.answered(Some(false), t0 + s(5));
        f.answered(Some(true), t0 + s(15));
        // Next probe due at 35 s; no event for the slot the 15 s probe found by 20 s: a slot
        // the events did not report, so the next probe goes at once, and with no event at all
        // since the probe the stream is silent.
        assert!(f.take_silent(t0 + ms(20_001)));
        assert!(!f.take_silent(t0 + ms(20_001)), "reported once");
        assert_eq!(f.admit(t0 + ms(20_001)), Ok(()));
    }

    #[test]
    fn an_unreported_slot_while_events_flow_is_not_silence() {
        let t0 = Instant::now();
        let mut f = slots();
        f.found_full(t0, t0);
        assert_eq!(f.admit(t0 + s(5)), Ok(()));
        f.answered(Some(true), t0 + s(5));
        // An event of a later end (not the probe's slot) comes; the probe's never does.
        f.freed(t0 + s(6), t0 + s(7));
        assert_eq!(f.ready(), 1);
        assert!(!f.take_silent(t0 + s(11)));
    }

    #[test]
    fn an_inconclusive_answer_gives_the_token_back_and_a_probe_goes_again() {
        let t0 = Instant::now();
        let mut f = slots();
        f.found_full(t0, t0);
        f.freed(t0 + s(1), t0 + s(2));
        assert_eq!(f.admit(t0 + s(2)), Ok(()));
        assert_eq!(f.ready(), 0);
        f.answered(None, t0 + s(2));
        assert_eq!(f.ready(), 1);
        assert_eq!(f.admit(t0 + s(2)), Ok(()));
        f.answered(Some(true), t0 + s(2));
        assert_eq!(f.admit(t0 + s(5)), Ok(()));
        f.answered(None, t0 + s(5));
        assert_eq!(f.admit(t0 + s(5)), Ok(()));
        assert_eq!(f.in_flight(), 1);
    }

    #[test]
    fn the_rate_of_chat_ends_comes_from_the_events() {
        let t0 = Instant::now();
        let mut f = slots();
        assert_eq!(f.end_rate(t0), None);
        for k in 0..5 {
            f.freed(t0 + s(k), t0 + s(k));
        }
        let r = f.end_rate(t0 + s(4)).unwrap();
        assert!((r - 1.0).abs() < 1e-9, "{r}");
    }
}
