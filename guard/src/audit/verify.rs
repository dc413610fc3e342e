//! `guard audit verify`: checks the hash chain across files and the tail against the checkpoint.
//! Audit files are untrusted input: every problem is a finding with file and line, never a panic.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::record::GENESIS_PREV;
use super::writer::{CHECKPOINT_FILE, Checkpoint, log_files};
use super::{AuditError, sha256_hex};

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Checkpoint to check the tail against. Default: `audit.checkpoint` next to the log.
    pub checkpoint: Option<PathBuf>,
    /// Do not look for a checkpoint (then a truncated tail cannot be detected).
    pub no_checkpoint: bool,
    /// Accept a chain that starts after seq 1 (verifying a subset of files).
    pub allow_partial: bool,
}

/// Where a record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub at: Location,
    /// The broken record's seq, when it could be read.
    pub seq: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(s) => write!(f, "{}: record seq {s}: {}", self.at, self.reason),
            None => write!(f, "{}: {}", self.at, self.reason),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub files: Vec<PathBuf>,
    /// Records read before the first failure (all of them when ok).
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub head_hash: Option<String>,
    pub checkpoint: Option<PathBuf>,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

struct Entry {
    at: Location,
    seq: u64,
    prev: String,
    hash: String,
}

#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    prev: String,
    #[allow(dead_code)]
    time: String,
    #[allow(dead_code)]
    kind: String,
}

/// Expands directories into their log files (ordered by first seq); files are taken in the
/// order given. Returns the files and the default checkpoint location.
pub fn expand_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Option<PathBuf>), AuditError> {
    expand(paths).map(|(files, cp, _)| (files, cp))
}

/// [`expand_paths`], and whether the checkpoint location comes from a directory argument (the
/// agent's own directory, where the checkpoint must exist) rather than from loose files.
fn expand(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Option<PathBuf>, bool), AuditError> {
    let mut from_dir = false;
    let mut files = Vec::new();
    let mut checkpoint = None;
    for p in paths {
        if p.is_dir() {
            files.extend(log_files(p)?.into_iter().map(|(_, f)| f));
            checkpoint = Some(p.join(CHECKPOINT_FILE));
            from_dir = true;
        } else {
            files.push(p.clone());
            if let Some(parent) = p.parent() {
                let dir = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                checkpoint = Some(dir.join(CHECKPOINT_FILE));
                from_dir = false;
            }
        }
    }
    Ok((files, checkpoint, from_dir))
}

/// Verifies the given files and directories as one chain. `Err` only when a file cannot be read;
/// any integrity problem is a `failure` in the report.
pub fn verify_paths(paths: &[PathBuf], opts: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let (files, default_cp, cp_from_dir) = expand(paths)?;
    let cp_path = if opts.no_checkpoint {
        None
    } else {
        opts.checkpoint.clone().or(default_cp)
    };
    let checkpoint = match &cp_path {
        Some(p) => Checkpoint::read(p)?,
        None => None,
    };
    let mut report = VerifyReport {
        files: files.clone(),
        records: 0,
        first_seq: None,
        last_seq: None,
        head_hash: None,
        checkpoint: checkpoint.as_ref().and(cp_path.clone()),
        failure: None,
        warnings: Vec::new(),
    };
    // The writer keeps the checkpoint in its directory from the first sync on: a log directory
    // without one has lost it, and with it the only way to see a truncated tail.
    let dir_lost_checkpoint =
        cp_from_dir && !opts.no_checkpoint && opts.checkpoint.is_none() && checkpoint.is_none();
    if dir_lost_checkpoint && !files.is_empty() {
        report.failure = Some(Failure {
            at: Location {
                file: cp_path.clone().unwrap_or_default(),
                line: 0,
            },
            seq: None,
            reason: "checkpoint file missing: the agent writes it with every sync, so without it a truncated tail cannot be ruled out (deleted along with the tail?); use --no-checkpoint to check the chain alone".into(),
        });
        return Ok(report);
    }
    if opts.checkpoint.is_some() && checkpoint.is_none() {
        report.failure = Some(Failure {
            at: Location {
                file: cp_path.clone().unwrap_or_default(),
                line: 1,
            },
            seq: None,
            reason: "checkpoint file not found".into(),
        });
        return Ok(report);
    }
    if files.is_empty() {
        report.failure = Some(Failure {
            at: Location {
                file: paths.first().cloned().unwrap_or_default(),
                line: 0,
            },
            seq: None,
            reason: "no audit files found".into(),
        });
        return Ok(report);
    }

    // Phase 1: read every line's envelope and hash; stop at the first unreadable line.
    let mut entries: Vec<Entry> = Vec::new();
    let mut parse_failure: Option<Failure> = None;
    'files: for path in &files {
        let f = File::open(path).map_err(|e| AuditError::io("open audit file", path, e))?;
        let mut rd = BufReader::new(f);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = rd
                .read_until(b'\n', &mut buf)
                .map_err(|e| AuditError::io("read audit file", path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let at = Location {
                file: path.clone(),
                line: line_no,
            };
            if buf.last() != Some(&b'\n') {
                parse_failure = Some(Failure {
                    at,
                    seq: None,
                    reason:
                        "incomplete last line (torn write, or the file was cut inside a record)"
                            .into(),
                });
                break 'files;
            }
            let line = &buf[..buf.len() - 1];
            match serde_json::from_slice::<Envelope>(line) {
                Ok(env) if env.prev.len() == 64 => entries.push(Entry {
                    at,
                    seq: env.seq,
                    prev: env.prev,
                    hash: sha256_hex(line),
                }),
                Ok(env) => {
                    parse_failure = Some(Failure {
                        at,
                        seq: Some(env.seq),
                        reason: "prev is not a SHA-256 hex digest".into(),
                    });
                    break 'files;
                }
                Err(e) => {
                    parse_failure = Some(Failure {
                        at,
                        seq: None,
                        reason: format!("not a valid audit record: {e}"),
                    });
                    break 'files;
                }
            }
        }
    }

    // Phase 2: the chain.
    let anchor = checkpoint
        .as_ref()
        .and_then(|c| Some((c.anchor_seq?, c.anchor_prev.clone()?)));
    let mut failure = None;
    for (i, e) in entries.iter().enumerate() {
        if i == 0 {
            let ok_genesis = e.seq == 1 && e.prev == GENESIS_PREV;
            let ok_anchor = anchor
                .as_ref()
                .is_some_and(|(s, p)| *s == e.seq && *p == e.prev);
            if e.seq == 1 && !ok_genesis {
                failure = Some(Failure {
                    at: e.at.clone(),
                    seq: Some(e.seq),
                    reason: "first record's prev is not the genesis hash".into(),
                });
                break;
            }
            if !ok_genesis && !ok_anchor {
                if opts.allow_partial {
                    report.warnings.push(format!(
                        "chain starts at seq {}; earlier records were not checked",
                        e.seq
                    ));
                } else {
                    failure = Some(Failure {
                        at: e.at.clone(),
                        seq: Some(e.seq),
                        reason: format!(
                            "log starts at seq {} instead of 1 (or the checkpoint anchor): earlier records or files are missing",
                            e.seq
                        ),
                    });
                    break;
                }
            }
            continue;
        }
        let before = &entries[i - 1];
        let expected = before.seq.saturating_add(1);
        if e.seq != expected {
            let later = entries[i + 1..].iter().find(|x| x.seq == expected);
            let reason = match later {
                Some(x) => format!(
                    "out of order: expected seq {expected} here, found seq {}; seq {expected} is at {}",
                    e.seq, x.at
                ),
                None if e.seq < expected => format!(
                    "out of order or duplicated: seq {} follows seq {}",
                    e.seq, before.seq
                ),
                None => format!(
                    "records missing: expected seq {expected}, found seq {} (seq {expected}..{} deleted)",
                    e.seq,
                    e.seq - 1
                ),
            };
            failure = Some(Failure {
                at: e.at.clone(),
                seq: Some(e.seq),
                reason,
            });
            break;
        }
        if e.prev != before.hash {
            // Either `before` was edited (its hash changed), or `e` was (its stored prev
            // changed): then `e`'s own hash no longer matches what the record after it (or the
            // checkpoint) says.
            let e_changed = match entries.get(i + 1) {
                Some(next) => next.prev != e.hash,
                None => checkpoint
                    .as_ref()
                    .is_some_and(|cp| cp.seq == e.seq && cp.hash != e.hash),
            };
            failure = Some(if e_changed {
                Failure {
                    at: e.at.clone(),
                    seq: Some(e.seq),
                    reason: format!(
                        "modified: its prev does not match the hash of seq {} at {}, and its own hash no longer matches what follows it",
                        before.seq, before.at
                    ),
                }
            } else {
                Failure {
                    at: before.at.clone(),
                    seq: Some(before.seq),
                    reason: format!(
                        "modified: its hash does not match the prev stored in the next record (seq {} at {})",
                        e.seq, e.at
                    ),
                }
            });
            break;
        }
    }

    let good = match &failure {
        Some(f) => entries
            .iter()
            .position(|e| e.at == f.at)
            .unwrap_or(entries.len()),
        None => entries.len(),
    };
    report.records = good as u64;
    report.first_seq = entries.first().map(|e| e.seq);
    if let Some(last) = entries[..good].last() {
        report.last_seq = Some(last.seq);
        report.head_hash = Some(last.hash.clone());
    }
    if failure.is_none() {
        failure = parse_failure;
    }
    if failure.is_none() {
        match &checkpoint {
            Some(cp) => failure = check_checkpoint(cp, &entries, cp_path.as_deref()),
            None => report.warnings.push(
                "no checkpoint: a truncated tail (whole records cut off the end) cannot be detected"
                    .into(),
            ),
        }
    }
    report.failure = failure;
    Ok(report)
}

fn check_checkpoint(cp: &Checkpoint, entries: &[Entry], cp_path: Option<&Path>) -> Option<Failure> {
    let last = entries.last()?;
    if let Some(e) = entries.iter().find(|e| e.seq == cp.seq) {
        if e.hash != cp.hash {
            return Some(Failure {
                at: e.at.clone(),
                seq: Some(e.seq),
                reason: "does not match the checkpoint hash: modified after it was synced, or the chain was rewritten".into(),
            });
        }
        return None;
    }
    if last.seq < cp.seq {
        return Some(Failure {
            at: last.at.clone(),
            seq: Some(last.seq),
            reason: format!(
                "truncated tail: the log ends here but the checkpoint ({}) says it reached seq {} (hash {})",
                cp_path.map(|p| p.display().to_string()).unwrap_or_default(),
                cp.seq,
                cp.hash
            ),
        });
    }
    // Checkpoint older than the first record checked: nothing to compare.
    None
}
