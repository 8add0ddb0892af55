//! Per-address token buckets: `per_minute` requests a minute, in bursts of
//! at most `per_minute`. Sharded maps with a bounded number of keys; a full
//! bucket is the same as none, so those go first when a shard is full.

use super::SHARDS;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

/// Addresses kept at most (over all shards).
const MAX_KEYS: usize = 65_536;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: OffsetDateTime,
}

pub struct RateLimiter {
    per_minute: u32,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, Bucket>>]>,
}

impl RateLimiter {
    /// `per_minute = 0`: no limit.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes one request from `ip`'s bucket, or answers how long until one
    /// is there (a refused request takes nothing).
    pub fn check(&self, ip: IpAddr, now: OffsetDateTime) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let key = bucket_key(ip);
        let cap = f64::from(self.per_minute);
        let per_second = cap / 60.0;
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS / SHARDS && !map.contains_key(&key) {
            evict(&mut map, now, cap, per_second);
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let elapsed = (now - b.at).as_seconds_f64().max(0.0);
        b.tokens = (b.tokens + elapsed * per_second).min(cap);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / per_second).ceil().max(1.0);
            Err(Duration::from_secs(wait as u64))
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops the buckets that have filled up again; if the shard is still full
/// (a flood of live addresses), an eighth of it, arbitrarily.
fn evict(map: &mut HashMap<IpAddr, Bucket>, now: OffsetDateTime, cap: f64, per_second: f64) {
    map.retain(|_, b| b.tokens + (now - b.at).as_seconds_f64().max(0.0) * per_second < cap);
    if map.len() >= MAX_KEYS / SHARDS {
        let drop: Vec<IpAddr> = map.keys().take(map.len() / 8 + 1).copied().collect();
        for k in drop {
            map.remove(&k);
        }
    }
}

/// IPv4 as it is; IPv6 by its /64 (one host usually holds a whole /64).
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let t0 = OffsetDateTime::now_utc();
        let r = RateLimiter::new(6);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..6 {
            assert!(r.check(ip, t0).is_ok());
        }
        assert_eq!(r.check(ip, t0), Err(Duration::from_secs(10)));
        // Another address has its own bucket.
        assert!(r.check("203.0.113.8".parse().unwrap(), t0).is_ok());
        // One request comes back every 10 s.
        let t1 = t0 + time::Duration::seconds(10);
        assert!(r.check(ip, t1).is_ok());
        assert!(r.check(ip, t1).is_err());
    }

    #[test]
    fn ipv6_counts_by_prefix_and_zero_is_no_limit() {
        let t0 = OffsetDateTime::now_utc();
        let r = RateLimiter::new(1);
        assert!(r.check("2001:db8::1".parse().unwrap(), t0).is_ok());
        assert!(r.check("2001:db8::2".parse().unwrap(), t0).is_err());
        let off = RateLimiter::new(0);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..1000 {
            assert!(off.check(ip, t0).is_ok());
        }
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = OffsetDateTime::now_utc();
        let r = RateLimiter::new(60);
        for i in 0..(MAX_KEYS as u32 * 2) {
            let _ = r.check(IpAddr::V4(i.into()), t0);
        }
        assert!(r.len() <= MAX_KEYS, "{}", r.len());
    }
}
