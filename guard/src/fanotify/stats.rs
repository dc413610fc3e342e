//! The answer thread's counters, read by the log at stop and by the benchmark.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Answers, records, ignore marks and reported changes, counted.
#[derive(Debug, Default)]
pub struct Stats {
    pub answered: AtomicU64,
    pub denied: AtomicU64,
    pub records_lost: AtomicU64,
    pub panics: AtomicU64,
    /// Answer time histogram: bucket i counts answers under 2^i µs (the last: the rest).
    pub buckets: [AtomicU64; 16],
    pub max_ns: AtomicU64,
    /// Ignore marks added, and times they were all dropped (rules or bindings changed).
    pub ignored: AtomicU64,
    pub ignore_flushes: AtomicU64,
    pub ignore_failed: AtomicU64,
    /// Answers that found the opener not yet asleep in its open (its access unreadable), and
    /// how many of those waited past the yields into sleeps.
    pub opener_running: AtomicU64,
    pub opener_slept: AtomicU64,
    /// Changes reported (`modify.rs`), those of a file the writer's policy denies writing
    /// (handed to the pipeline: enforced, to kill the writer; in detect mode, to record), and
    /// reports that could not be read (a queue overflow, a record without a file identity).
    pub modified: AtomicU64,
    pub modified_denied: AtomicU64,
    pub changes_unread: AtomicU64,
    /// Changes whose writer was gone before its cgroup was read (judged by the pipeline from
    /// its process table), and those of them the table did not know either.
    pub writer_gone: AtomicU64,
    pub writer_unknown: AtomicU64,
    /// Detect-mode changes not recorded: that process's writes to that file were already
    /// (its open for write at the open's exit, or an earlier change).
    pub changes_repeated: AtomicU64,
    /// Changes not looked at: the same thread changed the same file within a second, and that
    /// needed no record or only a detect-mode one (`modify::Recent`).
    pub changes_recent: AtomicU64,
}

impl Stats {
    pub(super) fn observe(&self, took: Duration) {
        let us = took.as_micros() as u64;
        let i = (64 - us.leading_zeros() as usize).min(15);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.max_ns
            .fetch_max(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The bucket bound (µs) under which a fraction `q` of answers fell.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(1u64 << i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_time_quantiles_come_from_the_buckets() {
        let s = Stats::default();
        assert_eq!(s.quantile_us(0.5), None);
        for _ in 0..98 {
            s.observe(Duration::from_micros(3));
        }
        s.observe(Duration::from_micros(700));
        s.observe(Duration::from_secs(5));
        assert_eq!(s.quantile_us(0.5), Some(4));
        assert_eq!(s.quantile_us(0.99), Some(1024));
        assert_eq!(s.quantile_us(1.0), Some(1 << 15));
        assert_eq!(s.max_ns.load(Ordering::Relaxed), 5_000_000_000);
    }
}
