//! Requests per second per API key, and failed authentications per source
//! address, applied where every authenticated surface authenticates
//! ([`crate::http::auth::Authed`]), so each one inherits it.
//!
//! - A key gets `COUNTERSIGN_RATE_LIMIT` requests per second (default 100)
//!   with a burst of `COUNTERSIGN_RATE_BURST` (default 1,000): far above
//!   what an agent that creates requests and long-polls them needs, low
//!   enough that one runaway key cannot take the service for itself.
//! - Failed authentications (missing, malformed, unknown or revoked keys)
//!   count against the source address: [`FAILURE_RATE`] per second with a
//!   burst of [`FAILURE_BURST`]. Once over, *every* request from that
//!   address that presents a key is answered 429 before the key is looked
//!   up, until the next attempt is due: so a guesser learns nothing from a
//!   429 and gets [`FAILURE_RATE`] guesses a second at most.
//! - Over the limit: 429 problem+json with `Retry-After` in seconds.
//! - `COUNTERSIGN_RATE_LIMIT=0` turns both off.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::config::NetworkSettings;

/// Failed authentications a source address may make per second...
pub const FAILURE_RATE: u32 = 5;
/// ...and at once.
pub const FAILURE_BURST: u32 = 50;

/// How often (in checks) the limiters forget keys that are back to full.
const SWEEP_EVERY: u64 = 4096;

pub struct RateLimits {
    inner: Option<Limiters>,
}

struct Limiters {
    keys: DefaultKeyedRateLimiter<Uuid>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses over their failure limit, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// `blocked.len()`, read without the lock on every request.
    blocked_count: AtomicUsize,
    checks: AtomicU64,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(settings: &NetworkSettings) -> Self {
        let inner = NonZeroU32::new(settings.rate_limit).map(|rate| {
            let burst = NonZeroU32::new(settings.rate_burst).unwrap_or(rate);
            let nz = |n: u32| NonZeroU32::new(n).expect("a non-zero constant");
            Limiters {
                keys: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                failures: RateLimiter::keyed(
                    Quota::per_second(nz(FAILURE_RATE)).allow_burst(nz(FAILURE_BURST)),
                ),
                blocked: Mutex::default(),
                blocked_count: AtomicUsize::new(0),
                checks: AtomicU64::new(0),
                clock: DefaultClock::default(),
            }
        });
        Self { inner }
    }

    /// One request by `key`; `Err(wait)` when it is over its rate.
    pub fn check_key(&self, key: Uuid) -> Result<(), Duration> {
        let Some(l) = &self.inner else { return Ok(()) };
        l.sweep();
        l.keys
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(l.clock.now()))
    }

    /// Whether `ip` is barred for failing authentication too often.
    pub fn barred(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(l) = &self.inner else { return Ok(()) };
        if l.blocked_count.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let mut blocked = l.blocked.lock().expect("rate limit lock");
        let now = Instant::now();
        let result = match blocked.get(&ip) {
            Some(until) if *until > now => Err(*until - now),
            _ => Ok(()),
        };
        blocked.retain(|_, until| *until > now);
        l.blocked_count.store(blocked.len(), Ordering::Relaxed);
        result
    }

    /// Counts a failed authentication from `ip`; `Err(wait)` when that was
    /// one too many, and `ip` is then barred for `wait`.
    pub fn failed(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(l) = &self.inner else { return Ok(()) };
        l.sweep();
        let wait = match l.failures.check_key(&ip) {
            Ok(()) => return Ok(()),
            Err(not_until) => not_until.wait_time_from(l.clock.now()),
        };
        let mut blocked = l.blocked.lock().expect("rate limit lock");
        blocked.insert(ip, Instant::now() + wait);
        l.blocked_count.store(blocked.len(), Ordering::Relaxed);
        Err(wait)
    }
}

impl Limiters {
    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.keys.retain_recent();
            self.failures.retain_recent();
        }
    }
}

/// `Retry-After` in whole seconds, never 0 (0 would invite an instant retry).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, burst: u32) -> NetworkSettings {
        NetworkSettings {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: None,
            rate_limit: rate,
            rate_burst: burst,
        }
    }

    #[test]
    fn a_key_over_its_burst_waits_and_other_keys_do_not() {
        let l = RateLimits::new(&settings(1, 3));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            assert!(l.check_key(a).is_ok());
        }
        let wait = l.check_key(a).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(l.check_key(b).is_ok());
    }

    #[test]
    fn zero_turns_limits_off() {
        let l = RateLimits::new(&settings(0, 0));
        let a = Uuid::now_v7();
        for _ in 0..10_000 {
            assert!(l.check_key(a).is_ok());
        }
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1000 {
            assert!(l.failed(ip).is_ok());
        }
        assert!(l.barred(ip).is_ok());
    }

    #[test]
    fn an_address_that_fails_too_often_is_barred_for_a_while() {
        let l = RateLimits::new(&settings(100, 1000));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..FAILURE_BURST {
            assert!(l.failed(ip).is_ok());
        }
        assert!(l.failed(ip).is_err());
        assert!(l.barred(ip).is_err());
        assert!(l.barred(other).is_ok());
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }
}
