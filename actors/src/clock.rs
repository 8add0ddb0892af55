//! Time is passed into messages, never read deep inside; tests move a
//! [`ManualClock`] instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The system clock shifted by an offset that tests can advance.
#[derive(Debug, Default, Clone)]
pub struct ManualClock {
    offset_ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.whole_milliseconds() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// A last-use time that request handlers bump without a message (whole
/// seconds; no write when unchanged; never moves back).
#[derive(Debug, Default)]
pub struct AtomicTime(AtomicI64);

impl AtomicTime {
    pub fn new(at: Option<OffsetDateTime>) -> Self {
        AtomicTime(AtomicI64::new(at.map_or(0, |t| t.unix_timestamp())))
    }

    #[inline]
    pub fn bump(&self, now: OffsetDateTime) {
        let t = now.unix_timestamp();
        if self.0.load(Ordering::Relaxed) < t {
            self.0.fetch_max(t, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> Option<OffsetDateTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            t => OffsetDateTime::from_unix_timestamp(t).ok(),
        }
    }
}
