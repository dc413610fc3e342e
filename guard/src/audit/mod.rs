//! The tamper-evident audit log (docs/audit.md): hash-chained JSON lines, a documented fsync
//! rule, rotation that keeps the chain, a checkpoint for tail truncation, and `verify`.
//!
//! Two ways to write: [`AuditWriter`] (synchronous, returns every error) and [`AuditLog`], a
//! handle to a writer thread behind a bounded queue for the agent's hot path.

pub mod record;
pub mod verify;
pub mod writer;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

pub use record::*;
pub use verify::{Failure, VerifyOptions, VerifyReport, verify_paths};
pub use writer::{Appended, AuditConfig, AuditWriter, CHECKPOINT_FILE, Checkpoint};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("audit log does not match its checkpoint: {0}")]
    CheckpointMismatch(String),
    #[error("audit writer stopped after an earlier failure ({0}); reopen the log")]
    Poisoned(String),
    #[error("encode audit record: {0}")]
    Encode(#[source] serde_json::Error),
}

impl AuditError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        AuditError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True for "no space left on device" (and quota exceeded).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, AuditError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Counters of the writer thread, for drop summaries and `guard doctor`-style status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditStats {
    pub written: u64,
    /// Records not written: queue full (per kind) or write failure (per kind).
    pub dropped: BTreeMap<String, u64>,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    stats: AuditStats,
    /// Drops not yet reported in the log itself.
    unreported: BTreeMap<String, u64>,
}

/// A writer thread fed by a bounded queue. `try_record` never blocks; what it cannot queue is
/// counted and written later as a `drop_summary` record with `audit` counts.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Payload>>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

impl AuditLog {
    /// Opens the log (errors are returned here, before the thread starts) and starts the thread.
    pub fn start(cfg: AuditConfig, queue: usize) -> Result<Self, AuditError> {
        let writer = AuditWriter::open(cfg.clone())?;
        let (tx, rx) = mpsc::channel(queue.max(1));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("guard-audit".into())
            .spawn(move || writer_thread(writer, cfg, rx, sh))
            .map_err(|e| AuditError::io("spawn audit thread", Path::new("-"), e))?;
        Ok(AuditLog {
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// Queues a record without blocking. Returns false (and counts it) when the queue is full.
    pub fn try_record(&self, p: Payload) -> bool {
        let kind = p.kind();
        let ok = self.tx.as_ref().is_some_and(|tx| tx.try_send(p).is_ok());
        if !ok {
            count_drop(&self.shared, kind);
        }
        ok
    }

    /// Queues a record, waiting for room. For records that must not be dropped (denies, kills).
    pub async fn record(&self, p: Payload) -> bool {
        let kind = p.kind();
        let ok = match &self.tx {
            Some(tx) => tx.send(p).await.is_ok(),
            None => false,
        };
        if !ok {
            count_drop(&self.shared, kind);
        }
        ok
    }

    pub fn stats(&self) -> AuditStats {
        lock(&self.shared).stats.clone()
    }

    /// Drains the queue, syncs, and stops the thread.
    pub fn close(mut self) -> AuditStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn count_drop(shared: &Mutex<Shared>, kind: &str) {
    crate::metrics::METRICS.audit_record_lost();
    let mut s = lock(shared);
    *s.stats.dropped.entry(kind.to_string()).or_default() += 1;
    *s.unreported.entry(kind.to_string()).or_default() += 1;
}

/// How often a persisting write failure is reported again on stderr.
const FAILURE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// A stretch of failing writes: reported once when it starts, then at most every
/// [`FAILURE_REPORT_EVERY`], and closed by an `audit_gap` in the next `drop_summary`.
struct Failing {
    first_error: String,
    errno: Option<&'static str>,
    from: String,
    /// Records that reached the writer and were not written.
    lost: u64,
    errors: u64,
    reported_at: std::time::Instant,
    reported_errors: u64,
    /// No reopen before this (a full disk is not retried for every record).
    retry_at: std::time::Instant,
}

/// The writer thread's error handling: rate-limited stderr, metrics, and the gap record.
struct Health {
    dir: PathBuf,
    failing: Option<Failing>,
    /// A closed gap not yet written into the log.
    gap: Option<AuditGap>,
    retry_every: Duration,
}

fn errno_name(e: &AuditError) -> Option<&'static str> {
    let AuditError::Io { source, .. } = e else {
        return None;
    };
    Some(match source.raw_os_error()? {
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EIO => "EIO",
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        _ => return None,
    })
}

impl Health {
    /// An error. `lost`: a record was not written because of it.
    fn failed(&mut self, e: &AuditError, lost: bool) {
        crate::metrics::METRICS.audit_write_error();
        crate::metrics::METRICS.set_audit_healthy(false);
        let now = std::time::Instant::now();
        let dir = self.dir.display();
        match &mut self.failing {
            None => {
                let errno = errno_name(e);
                tracing::error!(
                    "audit: cannot write the audit log in {dir}: {e}{}; records are lost (counted, and recorded as an audit_gap once writing works again) and the agent keeps enforcing",
                    errno.map(|n| format!(" ({n})")).unwrap_or_default()
                );
                self.failing = Some(Failing {
                    first_error: e.to_string(),
                    errno,
                    from: crate::rfc3339::now(),
                    lost: u64::from(lost),
                    errors: 1,
                    reported_at: now,
                    reported_errors: 1,
                    retry_at: now + self.retry_every,
                });
            }
            Some(f) => {
                f.errors += 1;
                f.lost += u64::from(lost);
                f.retry_at = now + self.retry_every;
                if now.duration_since(f.reported_at) >= FAILURE_REPORT_EVERY {
                    tracing::error!(
                        "audit: still cannot write the audit log in {dir}: {e}{}; {} records lost so far ({} failures since the last report)",
                        errno_name(e).map(|n| format!(" ({n})")).unwrap_or_default(),
                        f.lost,
                        f.errors - f.reported_errors
                    );
                    f.reported_at = now;
                    f.reported_errors = f.errors;
                }
            }
        }
    }

    /// A record reached the writer while it waits to retry: lost without trying.
    fn skipped(&mut self) {
        if let Some(f) = &mut self.failing {
            f.lost += 1;
        }
    }

    fn may_retry(&self) -> bool {
        self.failing
            .as_ref()
            .is_none_or(|f| std::time::Instant::now() >= f.retry_at)
    }

    /// A write succeeded: ends a failing stretch.
    fn ok(&mut self) {
        crate::metrics::METRICS.set_audit_healthy(true);
        if let Some(f) = self.failing.take() {
            tracing::warn!(
                "audit: writing the audit log in {} again; {} records were lost since {} ({})",
                self.dir.display(),
                f.lost,
                f.from,
                f.first_error
            );
            let gap = self.gap.get_or_insert_with(|| AuditGap {
                error: f.first_error.clone(),
                errno: f.errno.map(str::to_owned),
                from: f.from.clone(),
                ..Default::default()
            });
            gap.lost += f.lost;
            gap.to = crate::rfc3339::now();
        }
    }
}

fn writer_thread(
    writer: AuditWriter,
    cfg: AuditConfig,
    mut rx: mpsc::Receiver<Payload>,
    shared: Arc<Mutex<Shared>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("audit: cannot start writer runtime: {e}");
            return;
        }
    };
    let tick = cfg.sync_interval.max(Duration::from_millis(1));
    let mut health = Health {
        dir: cfg.dir.clone(),
        failing: None,
        gap: None,
        retry_every: tick.max(Duration::from_millis(100)),
    };
    crate::metrics::METRICS.set_audit_healthy(true);
    let mut writer = Some(writer);
    rt.block_on(async {
        loop {
            // Wake when the oldest unsynced record is due, not `tick` after the latest one:
            // a steady trickle of records would otherwise stretch the batch to twice the
            // interval.
            let wait = writer
                .as_ref()
                .and_then(AuditWriter::sync_due_in)
                .map_or(tick, |d| d.clamp(Duration::from_millis(1), tick));
            let next = tokio::time::timeout(wait, rx.recv()).await;
            let w = match writer.as_mut() {
                Some(w) => w,
                None if !health.may_retry() => match next {
                    Ok(Some(p)) => {
                        count_drop(&shared, p.kind());
                        health.skipped();
                        continue;
                    }
                    Ok(None) => return,
                    Err(_) => continue,
                },
                None => match AuditWriter::open(AuditConfig {
                    recover: true,
                    ..cfg.clone()
                }) {
                    // Reopen after a failure (e.g. disk was full): re-reads the real tail.
                    Ok(w) => writer.insert(w),
                    Err(e) => {
                        note_error(&shared, &e);
                        let lost = matches!(next, Ok(Some(_)));
                        health.failed(&e, lost);
                        match next {
                            Ok(Some(p)) => count_drop(&shared, p.kind()),
                            Ok(None) => return,
                            Err(_) => {}
                        }
                        continue;
                    }
                },
            };
            match next {
                Ok(Some(p)) => {
                    let kind = p.kind();
                    let before = w.next_seq();
                    let res = w.append(p);
                    // A sync after the write can fail (e.g. the checkpoint on a full disk):
                    // the record is in the log all the same.
                    let written = w.next_seq() > before;
                    if written {
                        lock(&shared).stats.written += 1;
                    }
                    match res {
                        Ok(_) => {
                            health.ok();
                            report_drops(w, &shared, &mut health);
                        }
                        Err(e) => {
                            note_error(&shared, &e);
                            if !written {
                                count_drop(&shared, kind);
                            }
                            health.failed(&e, !written);
                            if matches!(e, AuditError::Poisoned(_)) || e.is_disk_full() {
                                writer = None;
                            }
                        }
                    }
                }
                Ok(None) => {
                    report_drops(w, &shared, &mut health);
                    if let Err(e) = w.sync() {
                        note_error(&shared, &e);
                        health.failed(&e, false);
                    }
                    return;
                }
                Err(_elapsed) => {
                    if let Err(e) = w.sync_if_due() {
                        note_error(&shared, &e);
                        health.failed(&e, false);
                        writer = None;
                    }
                }
            }
        }
    });
}

/// Keeps the error for [`AuditLog::stats`]; stderr is [`Health`]'s job (rate-limited).
fn note_error(shared: &Mutex<Shared>, e: &AuditError) {
    tracing::debug!("audit: {e}");
    lock(shared).stats.last_error = Some(e.to_string());
}

/// Writes counted audit drops (and a closed write-failure gap) into the log itself, so the
/// loss is part of the record.
fn report_drops(w: &mut AuditWriter, shared: &Mutex<Shared>, health: &mut Health) {
    let pending = std::mem::take(&mut lock(shared).unreported);
    if pending.is_empty() && health.gap.is_none() {
        return;
    }
    let gap = health.gap.take();
    let p = Payload::DropSummary(DropSummary {
        audit: pending.clone(),
        audit_gap: gap.clone(),
        ..Default::default()
    });
    let before = w.next_seq();
    let res = w.append(p);
    if w.next_seq() > before {
        lock(shared).stats.written += 1;
    }
    match res {
        Ok(_) => {}
        Err(e) if w.next_seq() > before => {
            note_error(shared, &e);
            health.failed(&e, false);
        }
        Err(e) => {
            note_error(shared, &e);
            health.failed(&e, false);
            health.gap = gap;
            let mut s = lock(shared);
            for (k, v) in pending {
                *s.unreported.entry(k).or_default() += v;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
