//! Dedupe window and token-bucket rate limits. Both are bounded maps: a storm over many keys
//! evicts the stalest entries instead of growing.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

use super::config::RateLimit;

/// Most keys either structure keeps.
pub const MAX_KEYS: usize = 16_384;

/// Remembers keys for a window; `check` says whether a key is new in it.
pub struct Dedupe<K> {
    window: Duration,
    seen: HashMap<K, Instant>,
}

impl<K: Eq + Hash + Clone> Dedupe<K> {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: HashMap::new(),
        }
    }

    /// True the first time `key` is seen within the window (and then remembers it).
    pub fn first(&mut self, key: &K, now: Instant) -> bool {
        if self.window.is_zero() {
            return true;
        }
        if let Some(t) = self.seen.get(key)
            && now.saturating_duration_since(*t) < self.window
        {
            return false;
        }
        if self.seen.len() >= MAX_KEYS {
            let w = self.window;
            self.seen
                .retain(|_, t| now.saturating_duration_since(*t) < w);
            if self.seen.len() >= MAX_KEYS {
                evict_oldest(&mut self.seen, |t| *t);
            }
        }
        self.seen.insert(key.clone(), now);
        true
    }
}

fn evict_oldest<K: Eq + Hash + Clone, V>(m: &mut HashMap<K, V>, at: impl Fn(&V) -> Instant) {
    if let Some(k) = m.iter().min_by_key(|(_, v)| at(v)).map(|(k, _)| k.clone()) {
        m.remove(&k);
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per key plus one global bucket.
pub struct RateLimiter<K> {
    per_key: RateLimit,
    global: RateLimit,
    buckets: HashMap<K, Bucket>,
    global_bucket: Bucket,
}

/// Why the limiter said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Workload,
    Global,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(per_key: RateLimit, global: RateLimit, now: Instant) -> Self {
        Self {
            per_key,
            global,
            buckets: HashMap::new(),
            global_bucket: Bucket {
                tokens: f64::from(global.burst),
                at: now,
            },
        }
    }

    fn refill(b: &mut Bucket, shape: RateLimit, now: Instant) {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * shape.per_minute / 60.0).min(f64::from(shape.burst));
        b.at = now;
    }

    /// Takes one token from the key's bucket and from the global bucket, or neither.
    pub fn take(&mut self, key: &K, now: Instant) -> Result<(), Limited> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= MAX_KEYS {
            evict_oldest(&mut self.buckets, |b| b.at);
        }
        let shape = self.per_key;
        let b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: f64::from(shape.burst),
            at: now,
        });
        Self::refill(b, shape, now);
        Self::refill(&mut self.global_bucket, self.global, now);
        if b.tokens < 1.0 {
            return Err(Limited::Workload);
        }
        if self.global_bucket.tokens < 1.0 {
            return Err(Limited::Global);
        }
        b.tokens -= 1.0;
        self.global_bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_window() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(Duration::from_secs(10));
        assert!(d.first(&"a", t0));
        assert!(!d.first(&"a", t0 + Duration::from_secs(5)));
        assert!(d.first(&"b", t0 + Duration::from_secs(5)));
        assert!(d.first(&"a", t0 + Duration::from_secs(11)));
    }

    #[test]
    fn dedupe_is_bounded() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(Duration::from_secs(3600));
        for i in 0..(MAX_KEYS + 100) {
            d.first(&i, t0 + Duration::from_millis(i as u64));
        }
        assert!(d.seen.len() <= MAX_KEYS);
    }

    #[test]
    fn buckets() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(
            RateLimit {
                burst: 2,
                per_minute: 60.0,
            },
            RateLimit {
                burst: 3,
                per_minute: 60.0,
            },
            t0,
        );
        assert_eq!(r.take(&"a", t0), Ok(()));
        assert_eq!(r.take(&"a", t0), Ok(()));
        assert_eq!(r.take(&"a", t0), Err(Limited::Workload));
        assert_eq!(r.take(&"b", t0), Ok(()));
        assert_eq!(r.take(&"c", t0), Err(Limited::Global));
        // One token per second comes back.
        let t1 = t0 + Duration::from_millis(1100);
        assert_eq!(r.take(&"a", t1), Ok(()));
        assert_eq!(r.take(&"a", t1), Err(Limited::Workload));
    }
}
