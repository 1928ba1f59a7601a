//! A neighbour that comes and goes: the background caller's rate over time.
//!
//! `--background-schedule FROM:TO:RATE` (repeatable, or comma-separated) adds RATE calls/s to the
//! background caller from FROM to TO seconds after the start (or the last reset); the constant
//! `--background-rate` applies all the time. Overlapping segments add up. `rate_at` is the pure
//! rule the background task follows; `next_change` tells it how long it may sleep while idle.

use std::str::FromStr;

/// One segment of the schedule, seconds since the start or last reset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub from: f64,
    pub to: f64,
    pub rate: f64,
}

impl FromStr for Segment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let nums: Vec<f64> = s
            .split(':')
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .map_err(|e| format!("{p:?} is not a number: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let [from, to, rate] = nums.as_slice() else {
            return Err(format!("expected FROM:TO:RATE, got {s:?}"));
        };
        if !(from.is_finite() && to.is_finite() && rate.is_finite()) {
            return Err(format!("values must be finite, got {s:?}"));
        }
        if *from < 0.0 || to <= from || *rate < 0.0 {
            return Err(format!("expected 0 <= FROM < TO and RATE >= 0, got {s:?}"));
        }
        Ok(Segment {
            from: *from,
            to: *to,
            rate: *rate,
        })
    }
}

/// Calls/s of the background caller at `t` seconds: `base` plus every segment covering
/// `t` (a segment covers [from, to)).
pub fn rate_at(base: f64, schedule: &[Segment], t: f64) -> f64 {
    base + schedule
        .iter()
        .filter(|s| s.from <= t && t < s.to)
        .map(|s| s.rate)
        .sum::<f64>()
}

/// The first segment boundary strictly after `t`, if any.
pub fn next_change(schedule: &[Segment], t: f64) -> Option<f64> {
    schedule
        .iter()
        .flat_map(|s| [s.from, s.to])
        .filter(|&b| b > t)
        .min_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_and_bad_ones_are_rejected() {
        let s: Segment = "8:20:4".parse().expect("valid");
        assert_eq!(
            s,
            Segment {
                from: 8.0,
                to: 20.0,
                rate: 4.0
            }
        );
        for bad in [
            "8:20", "20:8:4", "8:8:1", "-1:5:1", "1:5:-2", "a:5:1", "1:inf:1",
        ] {
            assert!(bad.parse::<Segment>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rate_follows_the_schedule() {
        let sched = [
            "8:20:4".parse().expect("valid"),
            "15:30:1".parse().expect("valid"),
        ];
        assert_eq!(rate_at(0.0, &sched, 7.99), 0.0);
        assert_eq!(rate_at(0.0, &sched, 8.0), 4.0);
        assert_eq!(rate_at(0.0, &sched, 16.0), 5.0);
        assert_eq!(rate_at(0.0, &sched, 20.0), 1.0);
        assert_eq!(rate_at(0.5, &sched, 40.0), 0.5);
        assert_eq!(next_change(&sched, 0.0), Some(8.0));
        assert_eq!(next_change(&sched, 8.0), Some(15.0));
        assert_eq!(next_change(&sched, 30.0), None);
    }
}
