//! Chat lifetimes: how long each chat the simulator creates stays active.
//!
//! Real chats last minutes to hours and vary widely; a capacity controller that only ever sees
//! one fixed lifetime can overfit it. `--chat-lifetime` draws each chat's lifetime from a
//! seeded distribution instead of the fixed `--chat-seconds`:
//! - `fixed:S`: every chat lives S seconds (the same as `--chat-seconds S`);
//! - `uniform:MIN:MAX`: uniform in [MIN, MAX];
//! - `lognormal:MEAN:MIN:MAX[:SIGMA]`: a lognormal whose mean (before clamping) is MEAN, with
//!   shape SIGMA (the standard deviation of the underlying normal, default 1), clamped to
//!   [MIN, MAX] — a long right tail, as chat durations have.
//!
//! Draws come from their own RNG (seeded from `--seed`, re-seeded on reset), in the order chats
//! are created, so the n-th chat of a run gets the same lifetime whatever the timing or the
//! fault draws were; `/_sim/stats` records every created chat's lifetime (`chats`), which lets a
//! benchmark compute what an ideal starter could have done with the same draws.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A lifetime distribution (parsed from `--chat-lifetime`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lifetime {
    Fixed(f64),
    Uniform {
        min: f64,
        max: f64,
    },
    LogNormal {
        mean: f64,
        min: f64,
        max: f64,
        sigma: f64,
    },
}

/// Default shape of the lognormal: σ = 1 gives a coefficient of variation of about 1.3
/// (before clamping), the order of real contact-centre handling times.
pub const DEFAULT_SIGMA: f64 = 1.0;

impl Lifetime {
    /// One lifetime in seconds, drawn with `rng`.
    pub fn draw_seconds(&self, rng: &mut StdRng) -> f64 {
        match *self {
            Lifetime::Fixed(s) => s,
            Lifetime::Uniform { min, max } => {
                if max > min {
                    rng.random_range(min..=max)
                } else {
                    min
                }
            }
            Lifetime::LogNormal {
                mean,
                min,
                max,
                sigma,
            } => {
                // E[exp(mu + sigma Z)] = exp(mu + sigma^2 / 2) = mean.
                let mu = mean.ln() - sigma * sigma / 2.0;
                (mu + sigma * standard_normal(rng)).exp().clamp(min, max)
            }
        }
    }
}

/// Box–Muller: one standard normal sample from two uniforms (no extra dependency).
fn standard_normal(rng: &mut StdRng) -> f64 {
    // u1 in (0, 1]: ln(0) would be infinite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

impl FromStr for Lifetime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let kind = parts.next().unwrap_or_default();
        let nums: Vec<f64> = parts
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .map_err(|e| format!("{p:?} is not a number: {e}"))
            })
            .collect::<Result<_, _>>()?;
        if let Some(bad) = nums.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(format!(
                "every value must be a finite number > 0, got {bad}"
            ));
        }
        let lifetime = match (kind, nums.as_slice()) {
            ("fixed", [s]) => Lifetime::Fixed(*s),
            ("uniform", [min, max]) => Lifetime::Uniform {
                min: *min,
                max: *max,
            },
            ("lognormal", [mean, min, max]) => Lifetime::LogNormal {
                mean: *mean,
                min: *min,
                max: *max,
                sigma: DEFAULT_SIGMA,
            },
            ("lognormal", [mean, min, max, sigma]) => Lifetime::LogNormal {
                mean: *mean,
                min: *min,
                max: *max,
                sigma: *sigma,
            },
            _ => {
                return Err(format!(
                    "expected fixed:S, uniform:MIN:MAX or lognormal:MEAN:MIN:MAX[:SIGMA], got {s:?}"
                ));
            }
        };
        match lifetime {
            Lifetime::Uniform { min, max } | Lifetime::LogNormal { min, max, .. } if min > max => {
                Err(format!("MIN ({min}) must not exceed MAX ({max})"))
            }
            l => Ok(l),
        }
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lifetime::Fixed(s) => write!(f, "fixed:{s}"),
            Lifetime::Uniform { min, max } => write!(f, "uniform:{min}:{max}"),
            Lifetime::LogNormal {
                mean,
                min,
                max,
                sigma,
            } => write!(f, "lognormal:{mean}:{min}:{max}:{sigma}"),
        }
    }
}

/// The lifetimes of one run: the distribution and its own RNG.
pub struct Lifetimes {
    dist: Lifetime,
    rng: StdRng,
}

/// Mixed into the seed so the lifetime draws are not the fault draws' sequence.
const SEED_SALT: u64 = 0x6c69_6665_7469_6d65;

impl Lifetimes {
    /// `seed` None: a random sequence.
    pub fn new(dist: Lifetime, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed ^ SEED_SALT),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Lifetimes { dist, rng }
    }

    /// The next chat's lifetime.
    pub fn draw(&mut self) -> Duration {
        Duration::from_secs_f64(self.dist.draw_seconds(&mut self.rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(spec: &str, n: usize, seed: u64) -> Vec<f64> {
        let mut l = Lifetimes::new(spec.parse().expect("valid spec"), Some(seed));
        (0..n).map(|_| l.draw().as_secs_f64()).collect()
    }

    #[test]
    fn specs_parse_and_bad_ones_are_rejected() {
        assert_eq!("fixed:5".parse::<Lifetime>(), Ok(Lifetime::Fixed(5.0)));
        assert_eq!(
            "lognormal:5:1:15".parse::<Lifetime>(),
            Ok(Lifetime::LogNormal {
                mean: 5.0,
                min: 1.0,
                max: 15.0,
                sigma: 1.0
            })
        );
        for bad in [
            "",
            "fixed",
            "fixed:0",
            "uniform:3",
            "uniform:5:1",
            "lognormal:5:x:9",
            "gamma:1:2",
            "fixed:inf",
        ] {
            assert!(bad.parse::<Lifetime>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn uniform_and_lognormal_stay_in_range_and_vary() {
        for spec in ["uniform:1:15", "lognormal:5:1:15"] {
            let d = draws(spec, 2000, 3);
            assert!(d.iter().all(|v| (1.0..=15.0).contains(v)), "{spec}");
            let distinct = d.windows(2).filter(|w| w[0] != w[1]).count();
            assert!(distinct > 1900, "{spec}: draws should vary");
        }
    }

    #[test]
    fn lognormal_mean_is_the_requested_one_before_clamping() {
        let d = draws("lognormal:5:0.001:100000:0.5", 20_000, 11);
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        assert!((mean - 5.0).abs() < 0.15, "mean {mean}");
        // The median of a lognormal is below its mean: the right tail.
        let mut s = d.clone();
        s.sort_by(f64::total_cmp);
        assert!(s[s.len() / 2] < mean);
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        assert_eq!(
            draws("lognormal:5:1:15", 50, 9),
            draws("lognormal:5:1:15", 50, 9)
        );
        assert_ne!(
            draws("lognormal:5:1:15", 50, 9),
            draws("lognormal:5:1:15", 50, 10)
        );
    }
}
