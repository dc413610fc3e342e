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
    let mut s = lock(shared);
    *s.stats.dropped.entry(kind.to_string()).or_default() += 1;
    *s.unreported.entry(kind.to_string()).or_default() += 1;
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
    let mut writer = Some(writer);
    rt.block_on(async {
        loop {
            let next = tokio::time::timeout(tick, rx.recv()).await;
            let w = match writer.as_mut() {
                Some(w) => w,
                None => match AuditWriter::open(AuditConfig {
                    recover: true,
                    ..cfg.clone()
                }) {
                    // Reopen after a failure (e.g. disk was full): re-reads the real tail.
                    Ok(w) => writer.insert(w),
                    Err(e) => {
                        note_error(&shared, &e);
                        if let Ok(Some(p)) = next {
                            count_drop(&shared, p.kind());
                        } else if let Ok(None) = next {
                            return;
                        }
                        tokio::time::sleep(tick).await;
                        continue;
                    }
                },
            };
            match next {
                Ok(Some(p)) => {
                    let kind = p.kind();
                    match w.append(p) {
                        Ok(_) => {
                            lock(&shared).stats.written += 1;
                            report_drops(w, &shared);
                        }
                        Err(e) => {
                            note_error(&shared, &e);
                            count_drop(&shared, kind);
                            if matches!(e, AuditError::Poisoned(_)) || e.is_disk_full() {
                                writer = None;
                            }
                        }
                    }
                }
                Ok(None) => {
                    report_drops(w, &shared);
                    if let Err(e) = w.sync() {
                        note_error(&shared, &e);
                    }
                    return;
                }
                Err(_elapsed) => {
                    if let Err(e) = w.sync_if_due() {
                        note_error(&shared, &e);
                        writer = None;
                    }
                }
            }
        }
    });
}

fn note_error(shared: &Mutex<Shared>, e: &AuditError) {
    tracing::error!("audit: {e}");
    lock(shared).stats.last_error = Some(e.to_string());
}

/// Writes counted audit drops into the log itself, so the loss is part of the record.
fn report_drops(w: &mut AuditWriter, shared: &Mutex<Shared>) {
    let pending = std::mem::take(&mut lock(shared).unreported);
    if pending.is_empty() {
        return;
    }
    let p = Payload::DropSummary(DropSummary {
        audit: pending.clone(),
        ..Default::default()
    });
    match w.append(p) {
        Ok(_) => lock(shared).stats.written += 1,
        Err(e) => {
            note_error(shared, &e);
            let mut s = lock(shared);
            for (k, v) in pending {
                *s.unreported.entry(k).or_default() += v;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
