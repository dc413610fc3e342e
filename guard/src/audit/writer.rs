//! The audit writer: appends hash-chained records to `audit-<first seq>.jsonl` files in one
//! directory, rotates by size without breaking the chain, and keeps `audit.checkpoint` (the last
//! fsynced head) so that a truncated tail is detectable. See docs/audit.md.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::record::{GENESIS_PREV, Payload, Record};
use super::{AuditError, sha256_hex};

pub const CHECKPOINT_FILE: &str = "audit.checkpoint";
const FILE_PREFIX: &str = "audit-";
const FILE_SUFFIX: &str = ".jsonl";

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub dir: PathBuf,
    /// Rotate when the current file would grow past this.
    pub max_file_bytes: u64,
    /// Records that are not synced immediately are synced at most this long after being written
    /// (on the next append or [`AuditWriter::sync_if_due`]).
    pub sync_interval: Duration,
    /// Keep at most this many files (0 = keep all). Deleting old files moves the checkpoint's
    /// anchor so the remaining chain still verifies.
    pub max_files: usize,
    /// Open even if the checkpoint says the log lost records (the loss is reported in
    /// [`AuditWriter::recovery`]); without it, open fails with [`AuditError::CheckpointMismatch`].
    pub recover: bool,
}

impl AuditConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AuditConfig {
            dir: dir.into(),
            max_file_bytes: 64 * 1024 * 1024,
            sync_interval: Duration::from_millis(200),
            max_files: 0,
            recover: false,
        }
    }
}

/// The head of the chain as last made durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    /// SHA-256 hex of record `seq`'s line.
    pub hash: String,
    pub file: String,
    pub time: String,
    /// First retained record after old files were deleted: its seq and `prev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_prev: Option<String>,
}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Option<Checkpoint>, AuditError> {
        match fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| AuditError::Corrupt {
                    path: path.to_path_buf(),
                    line: 1,
                    reason: format!("checkpoint is not valid JSON: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AuditError::io("read checkpoint", path, e)),
        }
    }
}

/// What `append` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: String,
    /// True when the record (and everything before it) is on disk.
    pub synced: bool,
}

pub struct AuditWriter {
    cfg: AuditConfig,
    file: File,
    file_name: String,
    file_len: u64,
    next_seq: u64,
    prev_hash: String,
    dirty: bool,
    last_sync: Instant,
    anchor: Option<(u64, String)>,
    poisoned: Option<String>,
    recovery: Vec<String>,
    /// Test hook: bytes that may still be written before writes fail with ENOSPC.
    #[cfg(test)]
    pub(crate) space_left: Option<u64>,
}

/// Log files in `dir`, ordered by first seq.
pub fn log_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let rd = fs::read_dir(dir).map_err(|e| AuditError::io("list audit dir", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| AuditError::io("list audit dir", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix(FILE_PREFIX)
            .and_then(|s| s.strip_suffix(FILE_SUFFIX))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((n, ent.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn file_name_for(first_seq: u64) -> String {
    format!("{FILE_PREFIX}{first_seq:020}{FILE_SUFFIX}")
}

/// Minimal view of a line, enough to continue the chain.
#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    prev: String,
}

/// Reads the last complete line of `path`. Bytes after the final newline (a torn write) are cut
/// off when `repair` is set. Returns (last line, torn bytes).
fn last_line(path: &Path, repair: bool) -> Result<(Option<Vec<u8>>, u64), AuditError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(repair)
        .open(path)
        .map_err(|e| AuditError::io("open audit file", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| AuditError::io("stat audit file", path, e))?
        .len();
    // Read backwards until two newlines (or the start) bound the last complete line.
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    let chunk = 64 * 1024u64;
    loop {
        let start = pos.saturating_sub(chunk);
        let mut buf = vec![0u8; (pos - start) as usize];
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| AuditError::io("read audit file", path, e))?;
        buf.extend_from_slice(&tail);
        tail = buf;
        pos = start;
        let newlines = tail.iter().filter(|&&b| b == b'\n').count();
        if pos == 0 || newlines >= 2 {
            break;
        }
    }
    let torn = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => (tail.len() - i - 1) as u64,
        None => tail.len() as u64,
    };
    if torn > 0 && repair {
        f.set_len(len - torn)
            .and_then(|_| f.sync_all())
            .map_err(|e| AuditError::io("cut torn tail", path, e))?;
    }
    let complete = &tail[..tail.len() - torn as usize];
    if complete.is_empty() {
        return Ok((None, torn));
    }
    let body = &complete[..complete.len() - 1];
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok((Some(body[start..].to_vec()), torn))
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("fsync audit dir", dir, e))
}

impl AuditWriter {
    /// Opens (or creates) the log in `cfg.dir` and continues its chain.
    pub fn open(cfg: AuditConfig) -> Result<Self, AuditError> {
        fs::create_dir_all(&cfg.dir)
            .map_err(|e| AuditError::io("create audit dir", &cfg.dir, e))?;
        let files = log_files(&cfg.dir)?;
        let checkpoint = Checkpoint::read(&cfg.dir.join(CHECKPOINT_FILE))?;
        let mut recovery = Vec::new();
        let mut head: Option<(u64, String)> = None;
        for (_, path) in files.iter().rev() {
            let (line, torn) = last_line(path, true)?;
            if torn > 0 {
                recovery.push(format!(
                    "cut {torn} bytes of an incomplete last line from {} (crash during write)",
                    path.display()
                ));
            }
            if let Some(line) = line {
                let env: Envelope =
                    serde_json::from_slice(&line).map_err(|e| AuditError::Corrupt {
                        path: path.clone(),
                        line: 0,
                        reason: format!("last record is not a valid audit record: {e}"),
                    })?;
                if env.prev.len() != 64 {
                    return Err(AuditError::Corrupt {
                        path: path.clone(),
                        line: 0,
                        reason: "last record has no valid prev hash".into(),
                    });
                }
                head = Some((env.seq, sha256_hex(&line)));
                break;
            }
        }
        if let Some(cp) = &checkpoint {
            let problem = match &head {
                None => Some(format!(
                    "checkpoint records seq {} but the log has no records",
                    cp.seq
                )),
                Some((seq, _)) if *seq < cp.seq => Some(format!(
                    "checkpoint records seq {} but the log ends at seq {seq}: records were lost",
                    cp.seq
                )),
                Some((seq, hash)) if *seq == cp.seq && *hash != cp.hash => Some(format!(
                    "head record seq {seq} does not match the checkpoint hash: it was modified"
                )),
                _ => None,
            };
            if let Some(p) = problem {
                if !cfg.recover {
                    return Err(AuditError::CheckpointMismatch(p));
                }
                recovery.push(p);
            }
        }
        let (next_seq, prev_hash) = match &head {
            Some((seq, hash)) => (seq.saturating_add(1), hash.clone()),
            None => (1, GENESIS_PREV.to_string()),
        };
        let anchor = checkpoint
            .as_ref()
            .and_then(|c| Some((c.anchor_seq?, c.anchor_prev.clone()?)));
        // Continue in the newest file, or start the first one.
        let (file_name, path) = match files.last() {
            Some((_, p)) => (
                p.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string(),
                p.clone(),
            ),
            None => {
                let n = file_name_for(next_seq);
                let p = cfg.dir.join(&n);
                (n, p)
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::io("open audit file", &path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| AuditError::io("stat audit file", &path, e))?
            .len();
        if files.is_empty() {
            sync_dir(&cfg.dir)?;
        }
        Ok(AuditWriter {
            cfg,
            file,
            file_name,
            file_len,
            next_seq,
            prev_hash,
            dirty: false,
            last_sync: Instant::now(),
            anchor,
            poisoned: None,
            recovery,
            #[cfg(test)]
            space_left: None,
        })
    }

    /// What opening had to repair or noticed; put it in the `agent_start` record.
    pub fn recovery(&self) -> &[String] {
        &self.recovery
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// Appends one record. On a write error (disk full, I/O error) the record is not in the log,
    /// the chain is unchanged, and the error is returned; the caller decides what to do.
    pub fn append(&mut self, payload: Payload) -> Result<Appended, AuditError> {
        if let Some(why) = &self.poisoned {
            return Err(AuditError::Poisoned(why.clone()));
        }
        let sync_now = payload.needs_immediate_sync();
        let rec = Record {
            seq: self.next_seq,
            time: crate::rfc3339::now(),
            payload,
            prev: self.prev_hash.clone(),
        };
        let mut line = serde_json::to_vec(&rec).map_err(AuditError::Encode)?;
        let hash = sha256_hex(&line);
        line.push(b'\n');
        if self.file_len > 0 && self.file_len + line.len() as u64 > self.cfg.max_file_bytes {
            self.rotate()?;
        }
        if let Err(e) = self.write_line(&line) {
            // Undo a partial line so the file still ends on a record boundary.
            if let Err(e2) = self.file.set_len(self.file_len) {
                self.poisoned = Some(format!("could not undo a partial write: {e2}"));
            }
            return Err(AuditError::io(
                "write audit record",
                &self.cfg.dir.join(&self.file_name),
                e,
            ));
        }
        self.file_len += line.len() as u64;
        self.next_seq += 1;
        self.prev_hash = hash.clone();
        self.dirty = true;
        let synced = if sync_now || self.last_sync.elapsed() >= self.cfg.sync_interval {
            self.sync()?;
            true
        } else {
            false
        };
        Ok(Appended {
            seq: rec.seq,
            hash,
            synced,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(left) = self.space_left {
            if (line.len() as u64) > left {
                // Mimic the kernel: a short write, then ENOSPC.
                let _ = self.file.write_all(&line[..left as usize]);
                self.space_left = Some(0);
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.space_left = Some(left - line.len() as u64);
        }
        self.file.write_all(line)
    }

    /// fsyncs the log and then the checkpoint. After an fsync failure the writer refuses further
    /// appends: the kernel may have dropped the dirty pages, so the log must be reopened (which
    /// re-reads the real tail).
    pub fn sync(&mut self) -> Result<(), AuditError> {
        if !self.dirty {
            return Ok(());
        }
        let path = self.cfg.dir.join(&self.file_name);
        if let Err(e) = self.file.sync_data() {
            self.poisoned = Some(format!("fsync failed: {e}"));
            return Err(AuditError::io("fsync audit file", &path, e));
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        self.write_checkpoint()
    }

    /// How long until [`AuditWriter::sync_if_due`] would sync: `None` when nothing is unsynced.
    /// A timer that waits this long keeps every batched record's unsynced time within
    /// `sync_interval`.
    pub fn sync_due_in(&self) -> Option<Duration> {
        self.dirty.then(|| {
            self.cfg
                .sync_interval
                .saturating_sub(self.last_sync.elapsed())
        })
    }

    /// Syncs if unsynced records are older than the sync interval. Call it from a timer.
    pub fn sync_if_due(&mut self) -> Result<(), AuditError> {
        if self.dirty && self.last_sync.elapsed() >= self.cfg.sync_interval {
            self.sync()
        } else {
            Ok(())
        }
    }

    fn write_checkpoint(&mut self) -> Result<(), AuditError> {
        if self.next_seq <= 1 {
            return Ok(());
        }
        let cp = Checkpoint {
            seq: self.next_seq - 1,
            hash: self.prev_hash.clone(),
            file: self.file_name.clone(),
            time: crate::rfc3339::now(),
            anchor_seq: self.anchor.as_ref().map(|a| a.0),
            anchor_prev: self.anchor.as_ref().map(|a| a.1.clone()),
        };
        let body = serde_json::to_vec(&cp).map_err(AuditError::Encode)?;
        let tmp = self.cfg.dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let dst = self.cfg.dir.join(CHECKPOINT_FILE);
        (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            fs::rename(&tmp, &dst)
        })()
        .map_err(|e| AuditError::io("write checkpoint", &dst, e))?;
        sync_dir(&self.cfg.dir)
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        self.dirty = true;
        self.sync()?;
        let name = file_name_for(self.next_seq);
        let path = self.cfg.dir.join(&name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::io("create audit file", &path, e))?;
        sync_dir(&self.cfg.dir)?;
        self.file = file;
        self.file_name = name;
        self.file_len = 0;
        self.enforce_retention()
    }

    fn enforce_retention(&mut self) -> Result<(), AuditError> {
        if self.cfg.max_files == 0 {
            return Ok(());
        }
        let files = log_files(&self.cfg.dir)?;
        if files.len() <= self.cfg.max_files {
            return Ok(());
        }
        let cut = files.len() - self.cfg.max_files;
        let (_, first_kept) = &files[cut];
        let mut first = String::new();
        File::open(first_kept)
            .and_then(|f| std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut first))
            .map_err(|e| AuditError::io("read audit file", first_kept, e))?;
        let env: Envelope =
            serde_json::from_str(first.trim_end()).map_err(|e| AuditError::Corrupt {
                path: first_kept.clone(),
                line: 1,
                reason: format!("first record is not valid: {e}"),
            })?;
        // Move the anchor first: a crash before the deletes leaves a log that still verifies.
        self.anchor = Some((env.seq, env.prev));
        self.write_checkpoint()?;
        for (_, p) in &files[..cut] {
            fs::remove_file(p).map_err(|e| AuditError::io("remove old audit file", p, e))?;
        }
        sync_dir(&self.cfg.dir)
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        if self.poisoned.is_none()
            && let Err(e) = self.sync()
        {
            tracing::error!("audit: final sync failed: {e}");
        }
    }
}
