//! Placeholder of the per-instance capacity machine (replaced by the real machine on merge).

use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub struct CapacitySettings {
    pub initial_cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for CapacitySettings {
    fn default() -> Self {
        CapacitySettings {
            initial_cooldown: Duration::from_millis(500),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityOutcome {
    Started,
    LimitExceeded,
    Inconclusive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityAdmit {
    Go,
    NotBefore(Instant),
}

#[derive(Clone, Debug)]
pub struct InstanceCapacity {
    settings: CapacitySettings,
    limited: bool,
    cooldown: Duration,
    next: Instant,
    probing: bool,
}

impl InstanceCapacity {
    pub fn new(settings: CapacitySettings, now: Instant) -> Self {
        InstanceCapacity {
            cooldown: settings.initial_cooldown,
            settings,
            limited: false,
            next: now,
            probing: false,
        }
    }

    pub fn admit(&mut self, now: Instant) -> CapacityAdmit {
        if !self.limited {
            return CapacityAdmit::Go;
        }
        if self.probing || now < self.next {
            return CapacityAdmit::NotBefore(self.next.max(now));
        }
        self.probing = true;
        self.next = now + self.cooldown;
        CapacityAdmit::Go
    }

    pub fn report(&mut self, outcome: CapacityOutcome, now: Instant) {
        match outcome {
            CapacityOutcome::Started => {
                self.limited = false;
                self.probing = false;
                self.cooldown = self.settings.initial_cooldown;
            }
            CapacityOutcome::LimitExceeded => {
                if self.limited && self.probing {
                    self.cooldown = (self.cooldown * 3 / 2).min(self.settings.max_cooldown);
                }
                self.limited = true;
                self.probing = false;
                self.next = now + self.cooldown;
            }
            CapacityOutcome::Inconclusive => {
                if self.probing {
                    self.probing = false;
                    self.next = now;
                }
            }
        }
    }

    pub fn is_limited(&self) -> bool {
        self.limited
    }

    pub fn start_rate(&self, _now: Instant) -> Option<f64> {
        self.limited
            .then(|| 1.0 / self.cooldown.as_secs_f64().max(0.001))
    }

    pub fn state_code(&self) -> i64 {
        i64::from(self.limited)
    }
}
