//! Keyed rate limits held in memory per instance (governor's GCRA), with memory kept bounded:
//! once a limiter holds many keys, keys that have fully recovered are dropped, so a caller that
//! rotates addresses or names cannot grow it without limit.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;

/// Above this many keys a limiter drops the ones that have recovered before checking.
const TIDY_ABOVE: usize = 10_000;

/// `n` events a minute per key (bursts of up to `n`).
#[derive(Clone)]
pub struct Throttle<K: Hash + Eq + Clone> {
    limiter: Arc<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        Throttle {
            limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// `n` events an hour per key (bursts of up to `n`).
    pub fn per_hour(n: u32) -> Self {
        let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        Throttle {
            limiter: Arc::new(RateLimiter::keyed(Quota::per_hour(n))),
        }
    }

    /// Counts one event for `key`; `Err(seconds)` to wait when it is over the limit.
    pub fn check(&self, key: &K) -> Result<(), u32> {
        if self.limiter.len() > TIDY_ABOVE {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|nu| {
            let secs = nu
                .wait_time_from(DefaultClock::default().now())
                .as_secs_f64()
                .ceil();
            (secs as u32).max(1)
        })
    }

    /// How many keys the limiter holds now.
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }
}

/// Per-visitor and per-address message limits of the public chat pages (in memory, per
/// instance). Addresses are bucketed (IPv6 per /64); idle keys are pruned.
#[derive(Clone)]
pub struct VisitorLimits {
    per_visitor: Throttle<String>,
    per_address: Throttle<std::net::IpAddr>,
}

impl VisitorLimits {
    /// `per_minute` messages for one visitor, 3× that for one client address.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_visitor: Throttle::per_minute(per_minute),
            per_address: Throttle::per_minute(per_minute.saturating_mul(3)),
        }
    }

    /// `Err(seconds)` to wait when the visitor (or their address) is over the limit.
    pub fn check(&self, visitor: &str, addr: Option<std::net::IpAddr>) -> Result<(), u32> {
        if let Some(ip) = addr {
            self.per_address.check(&crate::client::bucket(ip))?;
        }
        self.per_visitor.check(&visitor.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_limited_and_rotating_keys_stay_bounded() {
        let t = Throttle::<u32>::per_minute(2);
        assert!(t.check(&1).is_ok() && t.check(&1).is_ok());
        assert!(t.check(&1).unwrap_err() >= 1);
        assert!(t.check(&2).is_ok(), "another key has its own budget");
        // A key used once is not "recovered" for a while, so bound the check loosely: the
        // limiter is tidied when it passes the threshold, never grows far past it.
        let fast = Throttle::<u32>::per_minute(60_000);
        for k in 0..50_000u32 {
            let _ = fast.check(&k);
        }
        assert!(fast.keys() <= TIDY_ABOVE + 1_000, "{} keys", fast.keys());
    }
}
