//! What was lost: the kernel's drop counters and decode failures, reported on a timer.

use std::{io::Write, sync::atomic::Ordering};

use anyhow::Result;
use tracing::warn;

use super::{DECODE_ERRORS, Pipeline};
use crate::{
    audit::record::{DropSummary, Payload},
    config::PrintEvents,
    probes::Probes,
};

/// Kernel drop counters plus userspace decode failures, reported as a `drops` JSON line.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DropReport {
    /// Records the kernel could not deliver (ring buffer full), by record kind.
    pub by_kind: std::collections::BTreeMap<String, u64>,
    /// Records received but malformed.
    pub decode_errors: u64,
    /// Program runs the kernel skipped (recursion protection), by program: each a lost event.
    pub kernel_missed: std::collections::BTreeMap<String, u64>,
}

/// The `drop_summary` for the audit log. The kernel's counters are cumulative; a summary states
/// what was lost since the previous one (`last`), so that a report can add summaries up. `None`
/// when nothing was lost, unless `always` (the final summary at stop is always written).
fn drop_summary(
    now: &DropReport,
    last: &DropReport,
    outputs: std::collections::BTreeMap<String, u64>,
    always: bool,
) -> Option<DropSummary> {
    let before = last.kernel_counts();
    let ringbuf: std::collections::BTreeMap<String, u64> = now
        .kernel_counts()
        .into_iter()
        .filter_map(|(k, n)| {
            let d = n.saturating_sub(before.get(&k).copied().unwrap_or(0));
            (d > 0).then_some((k, d))
        })
        .collect();
    if ringbuf.is_empty() && outputs.is_empty() && !always {
        return None;
    }
    Some(DropSummary {
        ringbuf,
        outputs,
        ..Default::default()
    })
}

impl DropReport {
    pub fn read(probes: &Probes) -> Result<Self> {
        Ok(Self {
            by_kind: probes
                .drops()?
                .into_iter()
                .map(|(k, n)| (k.name().to_owned(), n))
                .collect(),
            decode_errors: DECODE_ERRORS.load(Ordering::Relaxed),
            kernel_missed: probes
                .missed_runs()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
        })
    }

    /// Every kernel-side loss by cause: ring buffer full per kind and skipped program runs.
    pub fn kernel_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = self.by_kind.clone();
        for (prog, n) in &self.kernel_missed {
            m.insert(format!("missed_run:{prog}"), *n);
        }
        m
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum::<u64>()
            + self.decode_errors
            + self.kernel_missed.values().sum::<u64>()
    }

    fn print(&self, out: &mut impl Write) -> Result<()> {
        serde_json::to_writer(
            &mut *out,
            &serde_json::json!({"kind": "drops", "by_kind": self.by_kind, "decode_errors": self.decode_errors, "kernel_missed": self.kernel_missed, "total": self.total()}),
        )?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }
}

impl Pipeline {
    pub(super) fn report_drops(&self, last: &mut DropReport, always: bool) -> Result<()> {
        let now = DropReport::read(&self.probes)?;
        let outputs = self
            .outputs
            .as_ref()
            .map(|o| o.take_drop_counts())
            .unwrap_or_default();
        if now == *last && outputs.is_empty() && !always {
            return Ok(());
        }
        if self.print != PrintEvents::None && (now != *last || always) {
            now.print(&mut std::io::stdout().lock())?;
        }
        if now.total() > last.total() {
            warn!(total = now.total(), "events lost: {:?}", now.by_kind);
        }
        if !outputs.is_empty() {
            warn!("alerts lost by outputs since the last report: {outputs:?}");
        }
        if let Some(a) = &self.audit
            && let Some(summary) = drop_summary(&now, last, outputs, always)
        {
            a.try_record(Payload::DropSummary(summary));
        }
        *last = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(exec: u64, missed: u64) -> DropReport {
        DropReport {
            by_kind: [("exec".to_string(), exec)].into(),
            kernel_missed: [("sys_exit_one".to_string(), missed)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn drop_summaries_state_what_was_lost_since_the_previous_one() {
        // Cumulative kernel counters 5, then 12, then still 12: the summaries say 5, then 7,
        // then nothing (so a report adding them up states 12, not 29).
        let first = drop_summary(
            &report(5, 0),
            &DropReport::default(),
            Default::default(),
            false,
        )
        .expect("a loss");
        assert_eq!(first.ringbuf, [("exec".to_string(), 5)].into());
        let second =
            drop_summary(&report(12, 2), &report(5, 0), Default::default(), false).expect("loss");
        assert_eq!(
            second.ringbuf,
            [
                ("exec".to_string(), 7),
                ("missed_run:sys_exit_one".to_string(), 2)
            ]
            .into()
        );
        assert_eq!(
            drop_summary(&report(12, 2), &report(12, 2), Default::default(), false),
            None
        );
        // An output that lost alerts is reported even when the kernel lost nothing new.
        let out = drop_summary(
            &report(12, 2),
            &report(12, 2),
            [("http".to_string(), 3)].into(),
            false,
        )
        .expect("output loss");
        assert!(out.ringbuf.is_empty());
        assert_eq!(out.outputs, [("http".to_string(), 3)].into());
        assert_eq!(out.total(), 3);
        // The final summary is written even when it is empty.
        let fin =
            drop_summary(&report(12, 2), &report(12, 2), Default::default(), true).expect("final");
        assert_eq!(fin.total(), 0);
    }
}
