//! The adaptive rate controller of one Connect operation: a pure function of (time, outcomes).
//!
//! # Mechanism
//!
//! Connect's rate quota is a token bucket shared by every caller in the account. We cannot see
//! it; we only see `429 TooManyRequests/Throttling` when it is empty. The controller keeps an
//! allowed rate `r` in `[floor, ceiling]` (ceiling = the configured rate):
//!
//! - **Start at the ceiling.** A fresh controller allows the ceiling at once (no slow start):
//!   alone, a worker must use its whole configured rate from the first second.
//! - **Multiplicative cut, once per congestion episode.** A `Throttled` outcome cuts
//!   `r ← r × f` where `f = clamp(p, min_decrease_factor, decrease_factor)` and `p` is the
//!   (Laplace-smoothed) share of calls accepted since the previous cut: a lone 429 after a long
//!   run of successes cuts by `decrease_factor` (0.7); a storm of 429s (many replicas starting
//!   together) cuts down to `min_decrease_factor` (0.5) at once instead of taking many rounds.
//!   After a cut, further 429s are ignored until the calls that were already sent at the old
//!   rate have been answered (the limiter reports sends with [`RateController::on_send`];
//!   responses come back roughly in send order) and at least `min_hold` has passed, or
//!   `max_hold` has passed (a send whose answer never comes must not stretch the episode).
//!   Without `on_send` reports the episode is simply `min_hold` long.
//! - **The first cut is our share.** When the configured burst is known (it is the account's,
//!   like the ceiling), the first 429 ever means the bucket, full when we started, is empty:
//!   what it gave out since our first call (burst + ceiling × elapsed) went to us and the other
//!   callers in proportion to how fast each called. The first cut goes to our part of it
//!   (if that is deeper than the usual cut), plateau included, so replicas that start together
//!   land near equal shares after one 429 each instead of several rounds.
//! - **CUBIC-like recovery.** The rate where the 429 happened is remembered as `w_max`. After a
//!   cut the rate climbs back along a concave cubic, fast at first and flattening to a plateau at
//!   `w_max` after `recovery_time`; beyond it a slow quadratic probe creeps above `w_max` toward
//!   the ceiling (the neighbour may have left). Concavity matters: Connect's bucket (capacity =
//!   burst) integrates our excess, so the time spent just under `w_max` refills it and the slow
//!   probe drains it again; a cycle averages to the available rate with one 429 per cycle.
//!   The probe runs `√(ceiling / w_max)` times slower than that (`probe_crowd_exponent`): the
//!   ceiling is the account's quota, so a plateau at a fraction of it means others share it, and
//!   K replicas each probing at a lone worker's speed would make K times its 429s.
//!   If a 429 comes too soon after the previous cut to measure a share (the rate still climbing
//!   back, or sitting on the flat plateau a first cut leaves), that cut was not deep enough
//!   (another replica or caller joined): `w_max` is set a bit lower than the rate of the 429
//!   ("fast convergence", here not only below the old `w_max`), which lets replicas converge to
//!   equal shares.
//! - **`Accepted` and `Neutral`** never lower the rate. `Neutral` covers everything that says
//!   nothing about the rate quota: `LimitExceededException` (active-chat capacity), other 4xx,
//!   5xx, transport errors.
//!
//! Time enters only through the `now` arguments, so tests drive it with explicit instants.

use std::time::Duration;

use tokio::time::Instant;

use super::RateFeedback;

/// Tuning of [`RateController`]; the defaults are tuned by the scenario files in
/// `tests/data/rate-scenarios/`.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerSettings {
    /// Cut factor for an isolated 429 (after mostly successful calls).
    pub decrease_factor: f64,
    /// Deepest single cut, used when most recent calls were throttled.
    pub min_decrease_factor: f64,
    /// Time to climb back from a cut to the rate of the last 429 (`w_max`).
    pub recovery_time: Duration,
    /// Probe above `w_max` after the plateau: `w_max × (1 + probe_gain × s²)`, `s` in seconds
    /// past `recovery_time`.
    pub probe_gain: f64,
    /// Shrink of `w_max` when a 429 comes before the previous `w_max` was reached.
    pub fast_convergence_factor: f64,
    /// Floor as a fraction of the ceiling ...
    pub floor_fraction: f64,
    /// ... but never below this many calls/s (unless the ceiling itself is lower).
    pub min_floor: f64,
    /// Shortest congestion episode.
    pub min_hold: Duration,
    /// Longest congestion episode (lost answers must not stretch it).
    pub max_hold: Duration,
    /// Weight of the prior in the accepted share that sizes a cut: (accepted + prior) /
    /// (answers + prior); small = trust few answers.
    pub prior: f64,
    /// Shortest time between cuts over which the accepted rate is trusted as our share.
    pub min_cycle: Duration,
    /// Plateau at the accepted rate of the last cycle (else at the rate of the 429).
    pub use_share_estimate: bool,
    /// The recovery after a cut spans at least this many calls (see [`time_scale`]).
    pub recovery_calls: f64,
    /// Sends over a cycle, as a fraction of the allowed rate, that make it a busy cycle.
    pub busy_fraction: f64,
    /// The recovery clock never runs slower than that of a controller at this fraction of the
    /// ceiling (see [`time_scale`]).
    pub slow_clock_fraction: f64,
    /// Size the first cut by our share of what the quota's bucket gave out since our first call
    /// (see [`RateController::set_server_burst`]).
    pub first_cut_from_consumption: bool,
    /// The probe above `w_max` runs `(ceiling / w_max) ^ probe_crowd_exponent` times slower: a
    /// replica at a fraction of the quota shares it with others that probe too.
    pub probe_crowd_exponent: f64,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            decrease_factor: 0.7,
            min_decrease_factor: 0.3,
            recovery_time: Duration::from_secs(3),
            probe_gain: 0.004,
            fast_convergence_factor: 0.9,
            floor_fraction: 0.05,
            min_floor: 0.1,
            min_hold: Duration::from_millis(50),
            max_hold: Duration::from_secs(2),
            prior: 0.5,
            min_cycle: Duration::from_secs(1),
            busy_fraction: 0.75,
            recovery_calls: 40.0,
            use_share_estimate: true,
            slow_clock_fraction: 0.2,
            first_cut_from_consumption: true,
            probe_crowd_exponent: 0.5,
        }
    }
}

impl ControllerSettings {
    /// Tuning for the active-chats capacity pacer (fed `LimitExceededException` as its throttle).
    /// Chat capacity frees as chats end, on the timescale of chat lifetimes (seconds in tests,
    /// minutes in production), so once the pacer has found the rate at which chats end it should
    /// stay there: slow recovery and slow probing, and cycles long enough to measure that rate.
    pub fn for_capacity() -> Self {
        ControllerSettings {
            decrease_factor: 0.85,
            // Never cut by more than a third at once: a burst of refusals right after start-up
            // says little about how fast chats end.
            min_decrease_factor: 0.7,
            recovery_time: Duration::from_secs(10),
            probe_gain: 0.002,
            max_hold: Duration::from_secs(5),
            // The plateau is the rate at which the limit was hit: our own accepted rate would
            // fulfil itself, as nothing else limits the starts between two refusals.
            use_share_estimate: false,
            first_cut_from_consumption: false,
            // Its ceiling is not shared with anyone: a plateau below it is the rate at which chats
            // end, not a crowd.
            probe_crowd_exponent: 0.0,
            ..ControllerSettings::default()
        }
    }
}

/// The episode that started with the last cut.
#[derive(Clone, Copy, Debug)]
struct Episode {
    /// When the rate was cut.
    at: Instant,
    /// Sends counted when the cut happened: the episode lasts until as many answers came back.
    sends_at_cut: u64,
}

/// Allowed rate of one operation, driven by outcomes. See the module documentation.
#[derive(Clone, Debug)]
pub struct RateController {
    settings: ControllerSettings,
    ceiling: f64,
    floor: f64,
    /// Rate at the last 429 (after fast convergence): the plateau of the recovery curve.
    w_max: f64,
    /// Rate right after the last cut and when it happened: the start of the recovery curve.
    cut_rate: f64,
    epoch: Instant,
    /// Stretch of the recovery curve's time for low rates (≥ 1), see [`time_scale`].
    scale: f64,
    /// Start of the current cycle (creation or last cut), for the accepted rate.
    cycle_start: Instant,
    episode: Option<Episode>,
    sends: u64,
    answers: u64,
    /// Outcomes since the last cut, for the depth of the next cut.
    accepted_since_cut: u64,
    throttled_since_cut: u64,
    sends_since_cut: u64,
    cuts: u64,
    /// The server bucket's burst, if known (the configured burst is the account's).
    server_burst: Option<f64>,
    first_send: Option<Instant>,
}

impl RateController {
    /// A controller allowing `ceiling` calls/s from `now` on. A non-finite or non-positive
    /// ceiling (configuration validates it first) is treated as 0.001 calls/s.
    pub fn new(settings: ControllerSettings, ceiling: f64, now: Instant) -> Self {
        let ceiling = sanitize_rate(ceiling);
        let floor = (ceiling * settings.floor_fraction)
            .max(settings.min_floor)
            .min(ceiling);
        RateController {
            ceiling,
            floor,
            w_max: ceiling,
            cut_rate: ceiling,
            // As if the last cut were long ago: the curve is past its plateau, at the ceiling.
            epoch: now.checked_sub(settings.recovery_time).unwrap_or(now),
            cycle_start: now,
            scale: 1.0,
            episode: None,
            sends: 0,
            answers: 0,
            accepted_since_cut: 0,
            throttled_since_cut: 0,
            sends_since_cut: 0,
            cuts: 0,
            server_burst: None,
            first_send: None,
            settings,
        }
    }

    /// The burst of the quota's bucket (the configured burst: like the ceiling, it is the
    /// account's). With it the first cut is sized by our share of what the bucket gave out.
    pub fn set_server_burst(&mut self, burst: f64) {
        self.server_burst = (burst.is_finite() && burst > 0.0).then_some(burst);
    }

    /// The configured ceiling (calls/s).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The lowest rate the controller will go to (calls/s).
    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// How many times the rate was cut.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// A call was sent at `now` (lets the controller tell answers to calls sent before a cut
    /// from answers to calls sent after it).
    pub fn on_send(&mut self, now: Instant) {
        self.first_send.get_or_insert(now);
        self.sends = self.sends.saturating_add(1);
        self.sends_since_cut = self.sends_since_cut.saturating_add(1);
    }

    /// One call's outcome arrived at `now`.
    pub fn on_feedback(&mut self, now: Instant, feedback: RateFeedback) {
        self.answers = self.answers.saturating_add(1);
        match feedback {
            RateFeedback::Neutral => {}
            RateFeedback::Accepted => {
                self.accepted_since_cut = self.accepted_since_cut.saturating_add(1);
            }
            RateFeedback::Throttled => {
                self.throttled_since_cut = self.throttled_since_cut.saturating_add(1);
                if !self.in_episode(now) {
                    self.cut(now);
                }
            }
        }
    }

    /// Allowed calls/s at `now`.
    pub fn rate(&self, now: Instant) -> f64 {
        // Time runs `1 / scale` as fast for a slow controller: it sees fewer answers per second.
        let k = self.settings.recovery_time.as_secs_f64();
        let s = now.saturating_duration_since(self.epoch).as_secs_f64() / self.scale;
        let r = if k > 0.0 && s < k {
            // Concave climb from cut_rate to w_max: fast at first, flat near w_max.
            let x = 1.0 - s / k;
            self.w_max - (self.w_max - self.cut_rate) * x * x * x
        } else {
            let p = (s - k) / self.crowd_slowdown();
            self.w_max * (1.0 + self.settings.probe_gain * p * p)
        };
        clamp(r, self.floor, self.ceiling)
    }

    /// How much slower than a lone worker's the probe above `w_max` runs: `(ceiling / w_max) ^
    /// probe_crowd_exponent`. The ceiling is the account's quota, so a plateau at a fraction of it
    /// means we share it with others, and the replicas of a fleet each probing at a lone
    /// worker's speed would add up to K times its 429s.
    fn crowd_slowdown(&self) -> f64 {
        let crowd = (self.ceiling / self.w_max.max(self.floor)).max(1.0);
        crowd.powf(self.settings.probe_crowd_exponent)
    }

    /// Whether a 429 at `now` belongs to the episode of the last cut (and is ignored).
    fn in_episode(&mut self, now: Instant) -> bool {
        let Some(ep) = self.episode else {
            return false;
        };
        let age = now.saturating_duration_since(ep.at);
        if age >= self.settings.max_hold {
            // Answers to some sends never came (cancelled calls): forget them.
            self.answers = self.answers.max(ep.sends_at_cut);
            self.episode = None;
            return false;
        }
        if age < self.settings.min_hold || self.answers <= ep.sends_at_cut {
            return true;
        }
        self.episode = None;
        false
    }

    fn cut(&mut self, now: Instant) {
        let current = self.rate(now);
        let accepted = self.accepted_since_cut as f64;
        let total = accepted + self.throttled_since_cut as f64;
        // Laplace-smoothed accepted share: one 429 among few answers says little.
        let prior = self.settings.prior;
        let accepted_share = (accepted + prior) / (total + prior);
        let factor = clamp(
            accepted_share,
            self.settings.min_decrease_factor,
            self.settings.decrease_factor,
        );
        // Between two 429s (both at an empty Connect bucket) the tokens we got are exactly our
        // share of the refill: the accepted rate over the cycle estimates the rate we can
        // sustain. It is only meaningful if we were sending at about the allowed rate (not
        // short of jobs) over a cycle long enough to average out.
        let cycle = now
            .saturating_duration_since(self.cycle_start)
            .as_secs_f64();
        let busy = self.sends_since_cut as f64 >= self.settings.busy_fraction * current * cycle;
        let share = (self.settings.use_share_estimate
            && cycle >= self.settings.min_cycle.as_secs_f64() * self.scale
            && busy
            && self.accepted_since_cut >= 3)
            .then(|| {
                // Calls still in flight are counted as accepted: most are, and leaving them out
                // would bias a short cycle low by one round trip's worth of calls.
                let got = (self
                    .sends_since_cut
                    .saturating_sub(self.throttled_since_cut) as f64)
                    .max(accepted);
                got / cycle
            });
        self.w_max = match share {
            Some(share) => current.min(share),
            // A 429 soon after the previous cut (too soon to measure a share) says that cut did
            // not go deep enough, whether the rate was still climbing back or already at the
            // plateau (a first cut to our share is flat): the plateau goes below the rate of
            // the 429 instead of back to it.
            None if self.cuts > 0 => current * self.settings.fast_convergence_factor,
            None => current,
        };
        self.w_max = clamp(self.w_max, self.floor, self.ceiling);
        self.cut_rate = clamp(current * factor, self.floor, self.ceiling);
        if let Some(share) = self.first_share(now) {
            // The first 429 ever: the bucket, full when we started, is empty. What it gave out
            // since (its burst plus its refill) went to us and to the others in proportion to
            // how fast each called, so our part of it is our share, and replicas that started
            // together land near equal shares at once instead of after several rounds of 429s.
            if share < self.cut_rate {
                self.cut_rate = clamp(share, self.floor, self.ceiling);
                self.w_max = self.cut_rate;
            }
        }
        self.w_max = self.w_max.max(self.cut_rate);
        // A replica pushed far below its ceiling (its share of a fleet, after a start-up storm)
        // keeps the clock of a controller at `slow_clock_fraction` of the ceiling: on its own
        // clock it would recover so slowly that it stays starved while another replica hogs.
        let clock_rate = self
            .w_max
            .max(self.ceiling * self.settings.slow_clock_fraction);
        self.scale = time_scale(&self.settings, clock_rate);
        self.epoch = now;
        self.cycle_start = now;
        self.episode = Some(Episode {
            at: now,
            // The answer to the call that triggered this cut is already counted.
            sends_at_cut: self.sends.max(self.answers),
        });
        self.accepted_since_cut = 0;
        self.throttled_since_cut = 0;
        self.sends_since_cut = 0;
        self.cuts = self.cuts.saturating_add(1);
    }
}

impl RateController {
    /// Our share of the quota judged from the first 429: `ceiling × ours / (burst + ceiling × T)`,
    /// `T` the time since our first call. `None` unless this is the first cut and the burst is
    /// known.
    fn first_share(&self, now: Instant) -> Option<f64> {
        if self.cuts > 0 || !self.settings.first_cut_from_consumption {
            return None;
        }
        let burst = self.server_burst?;
        let t = now
            .saturating_duration_since(self.first_send?)
            .as_secs_f64();
        let ours = (self
            .sends_since_cut
            .saturating_sub(self.throttled_since_cut) as f64)
            .max(self.accepted_since_cut as f64);
        let given_out = burst + self.ceiling * t;
        (given_out > 0.0).then(|| self.ceiling * ours / given_out)
    }
}

/// How much slower than nominal the recovery curve runs at rate `w_max`: the climb back must
/// span at least `recovery_calls` calls, or a slow controller (0.5 calls/s, or one replica of
/// many) would be back at `w_max` before a single answer could tell it whether that was right.
fn time_scale(settings: &ControllerSettings, w_max: f64) -> f64 {
    let k = settings.recovery_time.as_secs_f64();
    if k <= 0.0 || w_max <= 0.0 {
        return 1.0;
    }
    (settings.recovery_calls / w_max / k).clamp(1.0, 1000.0)
}

/// A usable rate from configuration input: finite and positive, else 0.001 calls/s.
pub(crate) fn sanitize_rate(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate.clamp(0.001, 1_000_000.0)
    } else {
        0.001
    }
}

/// `f64::clamp` that cannot panic on `lo > hi` or NaN.
fn clamp(x: f64, lo: f64, hi: f64) -> f64 {
    if x.is_nan() {
        return lo;
    }
    x.max(lo).min(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Settings with round numbers: no time stretch, no share estimate, prior 1, cuts of 0.8
    /// down to 0.5, the probe as fast at any plateau.
    fn plain() -> ControllerSettings {
        ControllerSettings {
            decrease_factor: 0.8,
            recovery_calls: 0.0,
            use_share_estimate: false,
            prior: 1.0,
            min_decrease_factor: 0.5,
            probe_crowd_exponent: 0.0,
            ..ControllerSettings::default()
        }
    }

    fn controller(ceiling: f64) -> (RateController, Instant) {
        let t0 = Instant::now();
        (RateController::new(plain(), ceiling, t0), t0)
    }

    #[test]
    fn plateau_at_the_accepted_rate_of_the_last_cycle() {
        let settings = ControllerSettings {
            use_share_estimate: true,
            ..plain()
        };
        let t0 = Instant::now();
        let mut c = RateController::new(settings, 10.0, t0);
        // Allowed 10/s, busy, but only 8/s went out and got through.
        for k in 0..80u32 {
            let at = t0 + Duration::from_secs(1) * k / 8;
            c.on_send(at);
            c.on_feedback(at, RateFeedback::Accepted);
        }
        let t1 = t0 + Duration::from_secs(10);
        c.on_send(t1);
        c.on_feedback(t1, RateFeedback::Throttled);
        // The share is 80 calls in 10 s: the plateau is 8/s, not the 10/s of the 429...
        let plateau = c.rate(t1 + Duration::from_secs(3));
        assert!((plateau - 8.0).abs() < 0.2, "{plateau}");
        // ... unless we were short of jobs: then the cycle says nothing about the share.
        let mut idle = RateController::new(
            ControllerSettings {
                use_share_estimate: true,
                ..plain()
            },
            10.0,
            t0,
        );
        for k in 0..20u32 {
            let at = t0 + Duration::from_millis(500) * k;
            idle.on_send(at);
            idle.on_feedback(at, RateFeedback::Accepted);
        }
        idle.on_send(t1);
        idle.on_feedback(t1, RateFeedback::Throttled);
        assert!((idle.rate(t1 + Duration::from_secs(3)) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn the_first_cut_is_our_share_of_what_the_bucket_gave_out() {
        let t0 = Instant::now();
        let run = |burst: Option<f64>| {
            let mut c = RateController::new(plain(), 10.0, t0);
            if let Some(b) = burst {
                c.set_server_burst(b);
            }
            // Five calls at the ceiling go through, the sixth (at 0.5 s) is throttled: the bucket
            // (burst 10, full at our first call) gave out 10 + 10 × 0.5 = 15 tokens and we got 5.
            for k in 0..5u32 {
                let at = t0 + ms(100) * k;
                c.on_send(at);
                c.on_feedback(at, RateFeedback::Accepted);
            }
            let at = t0 + ms(500);
            c.on_send(at);
            c.on_feedback(at, RateFeedback::Throttled);
            c
        };
        let c = run(Some(10.0));
        let share = 10.0 * 5.0 / 15.0;
        assert!((c.rate(t0 + ms(500)) - share).abs() < 1e-9);
        // The plateau is that share too (then the slow probe above it).
        assert!((c.rate(t0 + ms(3_500)) - share).abs() < 1e-9);
        // Without the burst, the usual cut (0.8 here).
        let plain_cut = run(None);
        assert!((plain_cut.rate(t0 + ms(500)) - 8.0).abs() < 1e-9);
        // Only the first cut: a later 429 cuts by the accepted share as before.
        let mut c = run(Some(10.0));
        let later = t0 + Duration::from_secs(20);
        accept_n(&mut c, later, 50);
        let before = c.rate(later);
        c.on_send(later);
        c.on_feedback(later, RateFeedback::Throttled);
        assert!((c.rate(later) - before * 0.8).abs() < 1e-9);
    }

    #[test]
    fn a_429_soon_after_the_first_cut_lowers_the_plateau() {
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        // As above: the first cut goes to our share, flat (the plateau is that share).
        first_cut_to_a_third(&mut c, t0);
        let share = c.rate(t0 + ms(500));
        // A replica that started later keeps the bucket empty: a 429 0.3 s later, at that share
        // (too soon to measure a new one). Going back to the share would only find the next 429.
        let t1 = t0 + ms(800);
        c.on_send(t1);
        c.on_feedback(t1, RateFeedback::Throttled);
        assert_eq!(c.cuts(), 2);
        let plateau = c.rate(t1 + Duration::from_secs(3));
        assert!((plateau - share * 0.9).abs() < 1e-9, "{plateau} vs {share}");
    }

    #[test]
    fn a_plateau_at_a_fraction_of_the_ceiling_probes_slower() {
        let t0 = Instant::now();
        let run = |exponent: f64| {
            let settings = ControllerSettings {
                probe_crowd_exponent: exponent,
                ..plain()
            };
            let mut c = RateController::new(settings, 10.0, t0);
            // The first cut goes to our share, 10/3: the plateau is a third of the ceiling.
            first_cut_to_a_third(&mut c, t0);
            c
        };
        let (lone, crowded) = (run(0.0), run(0.5));
        let share = 10.0 / 3.0;
        // 10 s past the plateau (recovery 3 s), the probe has climbed a third as far: its time
        // runs √3 times slower and the climb is quadratic in it.
        let at = t0 + ms(500) + Duration::from_secs(13);
        let (l, c) = (lone.rate(at) - share, crowded.rate(at) - share);
        assert!(l > 0.1, "{l}");
        assert!((c - l / 3.0).abs() < 1e-9, "{c} vs {l}");
    }

    #[test]
    fn slow_controllers_recover_over_more_time() {
        let settings = ControllerSettings {
            recovery_calls: 30.0,
            ..plain()
        };
        let t0 = Instant::now();
        let mut c = RateController::new(settings, 1.0, t0);
        accept_n(&mut c, t0, 50);
        c.on_send(t0);
        c.on_feedback(t0, RateFeedback::Throttled);
        // 30 calls at 1/s: the climb back takes 30 s instead of 3 s.
        assert!(c.rate(t0 + Duration::from_secs(3)) < 0.9);
        assert!((c.rate(t0 + Duration::from_secs(30)) - 1.0).abs() < 1e-9);
    }

    /// With the server's burst (10) known: five calls at 10/s from `t0` go through and the sixth,
    /// at 0.5 s, is throttled, so the first cut goes to our share of the 15 tokens the bucket gave
    /// out: 10 × 5 / 15, a third of a ceiling of 10.
    fn first_cut_to_a_third(c: &mut RateController, t0: Instant) {
        c.set_server_burst(10.0);
        for k in 0..5u32 {
            let at = t0 + ms(100) * k;
            c.on_send(at);
            c.on_feedback(at, RateFeedback::Accepted);
        }
        c.on_send(t0 + ms(500));
        c.on_feedback(t0 + ms(500), RateFeedback::Throttled);
    }

    /// Report `n` accepted calls, each sent and answered at `at`.
    fn accept_n(c: &mut RateController, at: Instant, n: usize) {
        for _ in 0..n {
            c.on_send(at);
            c.on_feedback(at, RateFeedback::Accepted);
        }
    }

    #[test]
    fn starts_at_the_ceiling() {
        let (c, t0) = controller(10.0);
        assert_eq!(c.rate(t0), 10.0);
        assert_eq!(c.rate(t0 + Duration::from_secs(100)), 10.0);
    }

    #[test]
    fn accepted_and_neutral_never_lower_the_rate() {
        let (mut c, t0) = controller(10.0);
        for i in 0..1000 {
            let now = t0 + ms(i * 10);
            c.on_send(now);
            let fb = if i % 2 == 0 {
                RateFeedback::Neutral
            } else {
                RateFeedback::Accepted
            };
            c.on_feedback(now, fb);
            assert_eq!(c.rate(now), 10.0);
        }
        assert_eq!(c.cuts(), 0);
    }

    #[test]
    fn lone_429_cuts_by_decrease_factor_then_recovers() {
        let (mut c, t0) = controller(10.0);
        accept_n(&mut c, t0, 50);
        c.on_send(t0);
        c.on_feedback(t0, RateFeedback::Throttled);
        assert!((c.rate(t0) - 8.0).abs() < 1e-9, "{}", c.rate(t0));
        // Concave: more than half of the way back after a third of the recovery time.
        let third = c.rate(t0 + Duration::from_secs(1));
        assert!(third > 9.0 && third < 10.0, "{third}");
        assert!((c.rate(t0 + Duration::from_secs(3)) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn further_429s_in_the_same_episode_are_ignored() {
        let (mut c, t0) = controller(10.0);
        accept_n(&mut c, t0, 50);
        // Five calls in flight at the old rate when the first 429 arrives.
        for _ in 0..5 {
            c.on_send(t0);
        }
        c.on_feedback(t0, RateFeedback::Throttled);
        let after_cut = c.rate(t0);
        for i in 1..5 {
            c.on_feedback(t0 + ms(60 + i), RateFeedback::Throttled);
        }
        assert_eq!(c.cuts(), 1);
        assert!(c.rate(t0 + ms(70)) >= after_cut);
        // A call sent after the cut and throttled is a new episode.
        c.on_send(t0 + ms(100));
        c.on_feedback(t0 + ms(200), RateFeedback::Throttled);
        assert_eq!(c.cuts(), 2);
        assert!(c.rate(t0 + ms(200)) < after_cut);
    }

    #[test]
    fn without_send_reports_the_episode_is_min_hold() {
        let (mut c, t0) = controller(10.0);
        c.on_feedback(t0, RateFeedback::Throttled);
        c.on_feedback(t0 + ms(10), RateFeedback::Throttled);
        assert_eq!(c.cuts(), 1);
        c.on_feedback(t0 + ms(60), RateFeedback::Throttled);
        assert_eq!(c.cuts(), 2);
    }

    #[test]
    fn lost_answers_end_the_episode_after_max_hold() {
        let (mut c, t0) = controller(10.0);
        for _ in 0..10 {
            c.on_send(t0);
        }
        c.on_feedback(t0, RateFeedback::Throttled);
        c.on_feedback(t0 + ms(1900), RateFeedback::Throttled);
        assert_eq!(c.cuts(), 1);
        c.on_feedback(t0 + ms(2100), RateFeedback::Throttled);
        assert_eq!(c.cuts(), 2);
    }

    #[test]
    fn a_storm_of_429s_cuts_deeper() {
        let (mut c, t0) = controller(10.0);
        // The very first answer is a 429: nothing says the rate was fine, cut deep.
        c.on_send(t0);
        c.on_feedback(t0, RateFeedback::Throttled);
        assert!((c.rate(t0) - 5.0).abs() < 1e-9, "{}", c.rate(t0));
        let mut now = t0 + ms(100);
        let before = c.rate(now);
        for _ in 0..4 {
            c.on_send(now);
            c.on_feedback(now, RateFeedback::Throttled);
        }
        assert_eq!(c.cuts(), 2);
        assert!((c.rate(now) - before * 0.5).abs() < 1e-9, "{}", c.rate(now));
        now += ms(1);
        assert!(c.rate(now) < before * 0.51);
    }

    #[test]
    fn never_below_the_floor_nor_above_the_ceiling() {
        let (mut c, t0) = controller(10.0);
        let mut now = t0;
        for _ in 0..200 {
            now += ms(100);
            c.on_send(now);
            c.on_feedback(now, RateFeedback::Throttled);
            assert!(c.rate(now) >= 0.5 - 1e-12);
        }
        assert!((c.rate(now) - 0.5).abs() < 1e-9);
        assert_eq!(c.rate(now + Duration::from_secs(3600)), 10.0);
    }

    #[test]
    fn fractional_ceiling_and_floor() {
        let (c, t0) = controller(0.5);
        assert_eq!(c.rate(t0), 0.5);
        assert!((c.floor() - 0.1).abs() < 1e-12);
        let (c, _) = controller(0.05);
        assert_eq!(c.floor(), 0.05);
    }

    #[test]
    fn bad_ceilings_do_not_panic() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            let (mut c, t0) = controller(bad);
            c.on_feedback(t0, RateFeedback::Throttled);
            let r = c.rate(t0);
            assert!(r.is_finite() && r > 0.0);
        }
    }

    #[test]
    fn probing_above_w_max_creeps_back_to_the_ceiling() {
        let (mut c, t0) = controller(10.0);
        accept_n(&mut c, t0, 50);
        c.on_send(t0);
        c.on_feedback(t0, RateFeedback::Throttled);
        let t1 = t0 + Duration::from_secs(1);
        c.on_send(t1);
        c.on_feedback(t1, RateFeedback::Throttled);
        // The second 429 came before the plateau: w_max = 0.9 × rate at the 429.
        let at_429 = 8.0 + 2.0 * (1.0 - (1.0f64 - 1.0 / 3.0).powi(3));
        let w_max = at_429 * 0.9;
        let plateau = c.rate(t1 + Duration::from_secs(3));
        assert!((plateau - w_max).abs() < 1e-9, "{plateau} vs {w_max}");
        let later = c.rate(t1 + Duration::from_secs(8));
        assert!(later > plateau && later < 10.0, "{later}");
        assert_eq!(c.rate(t1 + Duration::from_secs(30)), 10.0);
    }
}
