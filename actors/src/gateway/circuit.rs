//! A per-provider circuit breaker, shared lock-free by every worker: after
//! `failures` consecutive failures the provider is skipped for `cooldown`;
//! then one request goes through as a probe — success closes the circuit,
//! failure opens it for another cooldown.

use super::CircuitConfig;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

#[derive(Debug)]
pub struct Circuit {
    config: CircuitConfig,
    failures: AtomicU32,
    /// Unix milliseconds until which the circuit is open; 0 when closed.
    open_until: AtomicI64,
    /// A probe is in flight (half-open).
    probing: AtomicBool,
}

/// What a caller may do with a provider now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Closed,
    /// The circuit was open and this request is the one probe.
    Probe,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open { until_ms: i64 },
    HalfOpen,
}

impl Circuit {
    pub fn new(config: CircuitConfig) -> Self {
        Circuit {
            config,
            failures: AtomicU32::new(0),
            open_until: AtomicI64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    pub fn admit(&self, now_ms: i64) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Closed;
        }
        if now_ms < until {
            return Admit::Open;
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admit::Probe,
            Err(_) => Admit::Open,
        }
    }

    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
        }
    }

    pub fn failure(&self, now_ms: i64) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let probe_failed = self.probing.swap(false, Ordering::AcqRel);
        if probe_failed || n >= self.config.failures.max(1) {
            let until = now_ms.saturating_add(self.config.cooldown.as_millis() as i64);
            self.open_until.store(until.max(1), Ordering::Release);
        }
    }

    /// A probe that ended without a verdict (e.g. the client left): let another try.
    pub fn abandon_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    pub fn state(&self, now_ms: i64) -> CircuitState {
        match self.open_until.load(Ordering::Acquire) {
            0 => CircuitState::Closed,
            until if now_ms < until => CircuitState::Open { until_ms: until },
            _ => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn circuit() -> Circuit {
        Circuit::new(CircuitConfig {
            failures: 3,
            cooldown: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_lets_one_probe_through_later() {
        let c = circuit();
        c.failure(0);
        c.failure(0);
        assert_eq!(c.admit(0), Admit::Closed);
        c.failure(0);
        assert_eq!(c.admit(1), Admit::Open);
        assert_eq!(c.state(1), CircuitState::Open { until_ms: 10_000 });
        assert_eq!(c.admit(10_000), Admit::Probe);
        assert_eq!(c.admit(10_001), Admit::Open, "one probe at a time");
        c.success();
        assert_eq!(c.admit(10_002), Admit::Closed);
        assert_eq!(c.state(10_002), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_a_success_resets_the_count() {
        let c = circuit();
        for _ in 0..3 {
            c.failure(0);
        }
        assert_eq!(c.admit(10_000), Admit::Probe);
        c.failure(10_000);
        assert_eq!(c.admit(10_001), Admit::Open);
        assert_eq!(c.admit(20_000), Admit::Probe);
        c.abandon_probe();
        assert_eq!(c.admit(20_000), Admit::Probe);
        c.success();
        c.failure(20_000);
        c.failure(20_000);
        assert_eq!(c.admit(20_000), Admit::Closed, "the count restarted");
    }
}
