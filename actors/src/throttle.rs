//! Sliding-window counts of failed sign-ins, per username and per client
//! address. Bounded: each key keeps at most `max` times and the number of
//! keys is capped, so a flood of random usernames cannot grow memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use time::{Duration, OffsetDateTime};

const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct FailureWindow<K> {
    max: usize,
    window: Duration,
    failures: HashMap<K, VecDeque<OffsetDateTime>>,
}

impl<K: Eq + Hash + Clone> FailureWindow<K> {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1) as usize,
            window,
            failures: HashMap::new(),
        }
    }

    /// How long until `key` may try again, when it is throttled now.
    pub fn retry_after(&self, key: &K, now: OffsetDateTime) -> Option<Duration> {
        let times = self.failures.get(key)?;
        let horizon = now - self.window;
        // A key keeps at most `max` times: throttled when all are recent,
        // until the oldest of them leaves the window.
        if times.len() < self.max || times.iter().any(|t| *t <= horizon) {
            return None;
        }
        let oldest = *times.iter().min()?;
        Some((oldest + self.window - now).max(Duration::SECOND))
    }

    pub fn record(&mut self, key: K, now: OffsetDateTime) {
        if self.failures.len() >= MAX_KEYS && !self.failures.contains_key(&key) {
            self.prune(now);
            if self.failures.len() >= MAX_KEYS {
                // Still full of live keys: forget an arbitrary one.
                if let Some(k) = self.failures.keys().next().cloned() {
                    self.failures.remove(&k);
                }
            }
        }
        let times = self.failures.entry(key).or_default();
        times.push_back(now);
        while times.len() > self.max {
            times.pop_front();
        }
    }

    pub fn clear(&mut self, key: &K) {
        self.failures.remove(key);
    }

    pub fn prune(&mut self, now: OffsetDateTime) {
        let horizon = now - self.window;
        self.failures.retain(|_, times| {
            while times.front().is_some_and(|t| *t <= horizon) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.failures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_max_and_slides() {
        let t0 = OffsetDateTime::now_utc();
        let mut w = FailureWindow::new(3, Duration::minutes(15));
        for i in 0..3 {
            assert!(w.retry_after(&"a", t0).is_none());
            w.record("a", t0 + Duration::minutes(i));
        }
        let now = t0 + Duration::minutes(3);
        assert_eq!(w.retry_after(&"a", now), Some(Duration::minutes(12)));
        assert!(w.retry_after(&"b", now).is_none());
        // The first failure leaves the window at t0+15m.
        assert!(w.retry_after(&"a", t0 + Duration::minutes(15)).is_none());
        w.prune(t0 + Duration::minutes(30));
        assert!(w.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let now = OffsetDateTime::now_utc();
        let mut w = FailureWindow::new(5, Duration::minutes(15));
        for i in 0..(MAX_KEYS + 10) {
            w.record(i, now);
        }
        assert!(w.len() <= MAX_KEYS);
    }
}
