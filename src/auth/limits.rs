//! The limits that go with a key: the server's settings ([`Limits`], which a tenant key's
//! own quotas replace), and the two in-memory limiters in front of the API: failed key
//! checks per client address (so guessing is loud and throttled for the guesser, never for
//! a caller with a good key), and requests per second per key (so one tenant cannot take
//! the server for itself).
//!
//! Both keep one small entry per address or key in a table with a hard size bound; entries
//! that no longer hold anything (a window that has passed, a bucket that has refilled) are
//! dropped first when the table is full, so memory stays bounded whatever the traffic.
//! Time is the application's clock in milliseconds, so tests can move it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::store::KeyQuotas;

/// Where a request came from, as far as the limiters care. IPv6 is grouped by /64: one
/// host usually holds the whole prefix, and counting its 2^64 addresses apart would let it
/// both escape the throttle and fill the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAddr {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
    /// No peer address was recorded (a router served without connection info): every such
    /// request shares this one entry.
    Unknown,
}

impl ClientAddr {
    pub fn of(ip: Option<IpAddr>) -> Self {
        match ip {
            None => Self::Unknown,
            Some(IpAddr::V4(v4)) => Self::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Self::V6Prefix(prefix)
                }
            },
        }
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            Self::V6Prefix(p) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
            Self::Unknown => f.write_str("an unknown address"),
        }
    }
}

/// The server-wide limits; a tenant key's [`KeyQuotas`] replace them for its requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Sessions one user may hold at once; `None`: no limit.
    pub max_sessions_per_user: Option<u32>,
    /// Requests per second per key; `None`: off.
    pub rate: Option<Rate>,
    /// Failed key checks one client address may make in a minute; beyond, 429.
    pub key_failures_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions_per_user: Some(100),
            rate: None,
            key_failures_per_minute: 20,
        }
    }
}

impl Limits {
    /// The session quota for requests made with a key of these quotas; `None`: unlimited.
    pub fn sessions(&self, quotas: &KeyQuotas) -> Option<u32> {
        match quotas.max_sessions {
            Some(0) => None,
            Some(n) => Some(n),
            None => self.max_sessions_per_user,
        }
    }

    /// The rate for requests made with a key of these quotas; `None`: not limited. A key's
    /// own rate without a burst gets the default burst of that rate.
    pub fn rate(&self, quotas: &KeyQuotas) -> Option<Rate> {
        let rate = match quotas.rate_limit {
            Some(per_second) => Some(Rate {
                per_second,
                burst: Rate::default_burst(per_second),
            }),
            None => self.rate,
        }?;
        Some(Rate {
            burst: quotas.rate_limit_burst.unwrap_or(rate.burst),
            ..rate
        })
    }
}

/// The session quota that applies to one request, put there by the key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimit(pub Option<u32>);

/// A table that never holds more than `capacity` entries.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The entry of `key`, made room for first: entries `idle` says hold nothing go, and if
    /// that is not enough, the one `age` ranks oldest.
    fn entry(
        &mut self,
        key: K,
        idle: impl Fn(&V) -> bool,
        age: impl Fn(&V) -> i64,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            self.map.retain(|_, v| !idle(v));
            if self.map.len() >= self.capacity
                && let Some(oldest) = self.map.iter().min_by_key(|(_, v)| age(v)).map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.entry(key).or_insert_with(make)
    }
}

/// What the throttle says about one more failed key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Still within the allowance: answer 401 as usual.
    Counted,
    /// Over it: answer 429. `newly` is true for the first refusal of a streak, so the log
    /// tells once, not once per guess.
    Throttled { retry_after_secs: u64, newly: bool },
}

struct Failures {
    /// Times of the latest failures within the window, oldest first; never more than the
    /// allowance.
    times: VecDeque<i64>,
    told: bool,
}

/// At most `allowance` failed key checks per address in any `window_ms`; the failures
/// beyond are refused without being counted, so the window frees as the counted ones age.
pub struct FailureThrottle {
    allowance: usize,
    window_ms: i64,
    table: Mutex<Bounded<ClientAddr, Failures>>,
}

/// Addresses tracked at once. Under a flood from more addresses than this within a minute
/// the oldest are forgotten (each then gets a fresh allowance).
pub const FAILURE_TABLE_CAPACITY: usize = 10_000;

impl FailureThrottle {
    pub fn new(allowance: u32, window_ms: i64, capacity: usize) -> Self {
        Self {
            allowance: allowance.max(1) as usize,
            window_ms: window_ms.max(1),
            table: Mutex::new(Bounded::new(capacity)),
        }
    }

    pub fn allowance(&self) -> usize {
        self.allowance
    }

    pub fn window_secs(&self) -> i64 {
        self.window_ms / 1000
    }

    pub fn record_failure(&self, addr: ClientAddr, now_ms: i64) -> FailureVerdict {
        let window = self.window_ms;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let entry = table.entry(
            addr,
            |f| f.times.back().is_none_or(|t| now_ms - t >= window),
            |f| f.times.back().copied().unwrap_or(i64::MIN),
            || Failures {
                times: VecDeque::with_capacity(self.allowance.min(64)),
                told: false,
            },
        );
        while entry.times.front().is_some_and(|t| now_ms - t >= window) {
            entry.times.pop_front();
        }
        if entry.times.len() < self.allowance {
            entry.times.push_back(now_ms);
            entry.told = false;
            return FailureVerdict::Counted;
        }
        let frees_at = entry.times.front().map_or(now_ms, |t| t + window);
        let newly = !std::mem::replace(&mut entry.told, true);
        FailureVerdict::Throttled {
            retry_after_secs: ceil_secs(frees_at - now_ms),
            newly,
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().map(|t| t.map.len()).unwrap_or(0)
    }
}

/// Requests per second with a burst: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// The burst when none is given: two seconds' worth, at least one request.
    pub fn default_burst(per_second: f64) -> u32 {
        (per_second * 2.0).ceil().clamp(1.0, u32::MAX as f64) as u32
    }
}

/// Whose bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketKey {
    Admin,
    Tenant(i64),
    /// Keyless mode: callers without a key are told apart by address.
    Address(ClientAddr),
}

struct Bucket {
    tokens: f64,
    last_ms: i64,
    rate: Rate,
}

impl Bucket {
    fn refill(&mut self, now_ms: i64, rate: Rate) {
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst as f64);
        self.last_ms = self.last_ms.max(now_ms);
        self.rate = rate;
    }

    fn full_at(&self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens + elapsed * self.rate.per_second >= self.rate.burst as f64
    }
}

pub struct RateLimiter {
    table: Mutex<Bounded<BucketKey, Bucket>>,
}

/// Buckets kept at once; a bucket that has refilled is the same as none and goes first.
pub const RATE_TABLE_CAPACITY: usize = 100_000;

impl RateLimiter {
    pub fn new(capacity: usize) -> Self {
        Self {
            table: Mutex::new(Bounded::new(capacity)),
        }
    }

    /// Takes one request from the bucket; `Err(seconds)` until the next one may come.
    pub fn take(&self, key: BucketKey, rate: Rate, now_ms: i64) -> Result<(), u64> {
        if !(rate.per_second.is_finite() && rate.per_second > 0.0) {
            return Ok(());
        }
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = table.entry(
            key,
            |b| b.full_at(now_ms),
            |b| b.last_ms,
            || Bucket {
                tokens: rate.burst as f64,
                last_ms: now_ms,
                rate,
            },
        );
        bucket.refill(now_ms, rate);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait_ms = ((1.0 - bucket.tokens) / rate.per_second * 1000.0).ceil() as i64;
        Err(ceil_secs(wait_ms))
    }
}

/// Whole seconds, rounded up, at least one: what `Retry-After` can say.
fn ceil_secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn addr(last: u8) -> ClientAddr {
        ClientAddr::of(Some(IpAddr::from([10, 0, 0, last])))
    }

    #[test]
    fn the_21st_failure_in_a_minute_is_throttled_until_the_window_frees() {
        let t = FailureThrottle::new(20, MIN, 100);
        let t0 = 1_000_000;
        for i in 0..20 {
            assert_eq!(t.record_failure(addr(1), t0 + i), FailureVerdict::Counted);
        }
        assert_eq!(
            t.record_failure(addr(1), t0 + 20),
            FailureVerdict::Throttled {
                retry_after_secs: 60,
                newly: true
            }
        );
        // Told once per streak.
        assert!(matches!(
            t.record_failure(addr(1), t0 + 30_000),
            FailureVerdict::Throttled {
                retry_after_secs: 30,
                newly: false
            }
        ));
        // Another address has its own allowance.
        assert_eq!(
            t.record_failure(addr(2), t0 + 30_000),
            FailureVerdict::Counted
        );
        // The first failure leaves the window: one more is counted, then refused again.
        assert_eq!(t.record_failure(addr(1), t0 + MIN), FailureVerdict::Counted);
        assert!(matches!(
            t.record_failure(addr(1), t0 + MIN),
            FailureVerdict::Throttled { .. }
        ));
        // A minute after the last failure the address starts afresh.
        for i in 0..20 {
            assert_eq!(
                t.record_failure(addr(1), t0 + 2 * MIN + 20 + i),
                FailureVerdict::Counted
            );
        }
    }

    #[test]
    fn the_failure_table_stays_bounded_and_forgets_stale_addresses_first() {
        let t = FailureThrottle::new(2, MIN, 10);
        for i in 0..10u8 {
            t.record_failure(addr(i), 0);
        }
        assert_eq!(t.tracked(), 10);
        for i in 10..200u8 {
            t.record_failure(addr(i), 1);
            assert!(t.tracked() <= 10);
        }
        // A minute later every entry holds nothing: they are swept, not just one evicted.
        t.record_failure(addr(250), 2 * MIN);
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn ipv6_is_counted_by_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientAddr::of(Some(a)), ClientAddr::of(Some(b)));
        assert_ne!(ClientAddr::of(Some(a)), ClientAddr::of(Some(c)));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ClientAddr::of(Some(mapped)), addr(1));
        assert_eq!(ClientAddr::of(None), ClientAddr::Unknown);
        assert_eq!(
            ClientAddr::of(Some(a)).to_string(),
            "2001:db8:1:2::/64".to_string()
        );
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let l = RateLimiter::new(100);
        let rate = Rate {
            per_second: 2.0,
            burst: 3,
        };
        let k = BucketKey::Tenant(1);
        for _ in 0..3 {
            assert_eq!(l.take(k, rate, 0), Ok(()));
        }
        assert_eq!(l.take(k, rate, 0), Err(1));
        // Other keys have their own bucket.
        assert_eq!(l.take(BucketKey::Tenant(2), rate, 0), Ok(()));
        assert_eq!(l.take(BucketKey::Admin, rate, 0), Ok(()));
        // Half a second brings one request back, not more.
        assert_eq!(l.take(k, rate, 500), Ok(()));
        assert!(l.take(k, rate, 500).is_err());
        // A long pause refills to the burst, never beyond.
        for _ in 0..3 {
            assert_eq!(l.take(k, rate, 60_000), Ok(()));
        }
        assert!(l.take(k, rate, 60_000).is_err());
        // A slow rate says how long to wait.
        let slow = Rate {
            per_second: 0.1,
            burst: 1,
        };
        let s = BucketKey::Address(addr(1));
        assert_eq!(l.take(s, slow, 0), Ok(()));
        assert_eq!(l.take(s, slow, 0), Err(10));
        assert_eq!(l.take(s, slow, 4_000), Err(6));
    }

    #[test]
    fn a_keys_quotas_replace_the_servers_each_on_its_own() {
        let server = Limits {
            max_sessions_per_user: Some(100),
            rate: Some(Rate {
                per_second: 5.0,
                burst: 10,
            }),
            key_failures_per_minute: 20,
        };
        let none = KeyQuotas::default();
        assert_eq!(server.sessions(&none), Some(100));
        assert_eq!(server.rate(&none), server.rate);
        let own = KeyQuotas {
            max_sessions: Some(2),
            rate_limit: Some(1.5),
            rate_limit_burst: None,
        };
        assert_eq!(server.sessions(&own), Some(2));
        assert_eq!(
            server.rate(&own),
            Some(Rate {
                per_second: 1.5,
                burst: 3
            })
        );
        let unlimited = KeyQuotas {
            max_sessions: Some(0),
            rate_limit: None,
            rate_limit_burst: Some(1),
        };
        assert_eq!(server.sessions(&unlimited), None);
        assert_eq!(
            server.rate(&unlimited),
            Some(Rate {
                per_second: 5.0,
                burst: 1
            })
        );
        let off = Limits {
            rate: None,
            ..server
        };
        assert_eq!(off.rate(&unlimited), None);
        assert_eq!(off.rate(&own).map(|r| r.per_second), Some(1.5));
    }

    #[test]
    fn the_default_burst_is_twice_the_rate_and_at_least_one() {
        assert_eq!(Rate::default_burst(10.0), 20);
        assert_eq!(Rate::default_burst(0.2), 1);
        assert_eq!(Rate::default_burst(0.75), 2);
    }

    #[test]
    fn the_bucket_table_stays_bounded() {
        let l = RateLimiter::new(8);
        let rate = Rate {
            per_second: 1.0,
            burst: 1,
        };
        for i in 0..100 {
            let _ = l.take(BucketKey::Tenant(i), rate, 0);
        }
        assert!(l.table.lock().unwrap().map.len() <= 8);
    }
}
