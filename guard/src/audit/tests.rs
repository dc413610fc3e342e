use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use super::*;
use crate::alert::{Alert, GuardInfo, Priority, rfc3339_ns};

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "guard-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn alert(rule: &str) -> Payload {
    Payload::Alert {
        alert: Box::new(Alert {
            time: rfc3339_ns(0),
            rule: rule.into(),
            priority: Priority::Warning,
            source: "syscall".into(),
            hostname: "h".into(),
            output: format!("{rule} fired"),
            tags: vec![],
            output_fields: Default::default(),
            guard: GuardInfo::default(),
        }),
    }
}

fn deny(target: &str) -> Payload {
    Payload::Decision(Decision {
        decision: DecisionKind::Deny,
        op: Operation::Exec,
        policy: "web".into(),
        backend: "bpf-lsm".into(),
        target: target.into(),
        access: None,
        hook: None,
        kill_error: None,
        workload: Workload::default(),
        process: ProcessInfo::default(),
    })
}

fn cfg(dir: &Path) -> AuditConfig {
    AuditConfig {
        sync_interval: Duration::from_millis(0),
        ..AuditConfig::new(dir)
    }
}

fn write_n(dir: &Path, n: u64, max_file_bytes: u64) {
    let mut w = AuditWriter::open(AuditConfig {
        max_file_bytes,
        ..cfg(dir)
    })
    .expect("open");
    for i in 0..n {
        let p = if i % 3 == 0 {
            deny(&format!("/bin/x{i}"))
        } else {
            alert(&format!("rule {i}"))
        };
        w.append(p).expect("append");
    }
}

fn verify_dir(dir: &Path) -> VerifyReport {
    verify_paths(&[dir.to_path_buf()], &VerifyOptions::default()).expect("verify io")
}

fn only_file(dir: &Path) -> PathBuf {
    let files = writer::log_files(dir).expect("list");
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].1.clone()
}

fn lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(p: &Path, l: &[String]) {
    let mut s = l.join("\n");
    s.push('\n');
    fs::write(p, s).expect("write");
}

fn failure(r: &VerifyReport) -> &Failure {
    r.failure.as_ref().expect("verify should fail")
}

#[test]
fn untouched_log_verifies_and_chains() {
    let d = TempDir::new("audit-ok");
    write_n(d.path(), 10, u64::MAX);
    let r = verify_dir(d.path());
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.records, 10);
    assert_eq!((r.first_seq, r.last_seq), (Some(1), Some(10)));
    let l = lines(&only_file(d.path()));
    let first: serde_json::Value = serde_json::from_str(&l[0]).expect("json");
    assert_eq!(first["prev"], GENESIS_PREV);
    assert_eq!(first["kind"], "decision");
    let second: serde_json::Value = serde_json::from_str(&l[1]).expect("json");
    assert_eq!(second["prev"], sha256_hex(l[0].as_bytes()));
    assert_eq!(second["seq"], 2);
    // The checkpoint holds the head.
    let cp = Checkpoint::read(&d.path().join(CHECKPOINT_FILE))
        .expect("read")
        .expect("present");
    assert_eq!(cp.seq, 10);
    assert_eq!(cp.hash, sha256_hex(l[9].as_bytes()));
}

#[test]
fn reopen_continues_the_chain() {
    let d = TempDir::new("audit-reopen");
    write_n(d.path(), 3, u64::MAX);
    write_n(d.path(), 3, u64::MAX);
    let r = verify_dir(d.path());
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.last_seq, Some(6));
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    let d = TempDir::new("audit-rot");
    write_n(d.path(), 40, 2000);
    let files = writer::log_files(d.path()).expect("list");
    assert!(files.len() >= 3, "expected rotation, got {}", files.len());
    for pair in files.windows(2) {
        let last = lines(&pair[0].1).pop().expect("line");
        let first: serde_json::Value = serde_json::from_str(&lines(&pair[1].1)[0]).expect("json");
        assert_eq!(first["prev"], sha256_hex(last.as_bytes()));
        assert_eq!(first["seq"], pair[1].0);
    }
    let r = verify_dir(d.path());
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.records, 40);
    // Explicit file list, in order, verifies too.
    let paths: Vec<PathBuf> = files.iter().map(|f| f.1.clone()).collect();
    let r = verify_paths(&paths, &VerifyOptions::default()).expect("io");
    assert!(r.ok(), "{:?}", r.failure);
    // Removing a middle file breaks it, naming the first record after the gap.
    fs::remove_file(&files[1].1).expect("rm");
    let r = verify_dir(d.path());
    let f = failure(&r);
    assert_eq!(f.seq, Some(files[2].0));
    assert!(f.reason.contains("missing"), "{f}");
}

#[test]
fn edited_record_is_named() {
    let d = TempDir::new("audit-edit");
    write_n(d.path(), 10, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    l[4] = l[4].replace("rule 4", "rule X");
    assert_ne!(lines(&p)[4], l[4]);
    write_lines(&p, &l);
    let r = verify_dir(d.path());
    let f = failure(&r);
    assert_eq!(f.seq, Some(5));
    assert_eq!(f.at.line, 5);
    assert!(f.reason.contains("modified"), "{f}");
    assert_eq!(r.records, 4);
}

#[test]
fn edited_last_record_is_caught_by_the_checkpoint() {
    let d = TempDir::new("audit-edit-last");
    write_n(d.path(), 5, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    l[4] = l[4].replace("rule 4", "rule Y");
    write_lines(&p, &l);
    let f = failure(&verify_dir(d.path())).clone();
    assert_eq!(f.seq, Some(5));
    assert!(f.reason.contains("checkpoint"), "{f}");
}

/// Writes `n` records and replaces the stored prev of record 5 by `fill` repeated.
fn log_with_edited_prev(tag: &str, n: u64, fill: &str) -> TempDir {
    let d = TempDir::new(tag);
    write_n(d.path(), n, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    let rec: serde_json::Value = serde_json::from_str(&l[4]).expect("json");
    let prev = rec["prev"].as_str().expect("prev").to_string();
    l[4] = l[4].replace(&prev, &fill.repeat(64));
    write_lines(&p, &l);
    d
}

#[test]
fn edited_prev_field_names_the_edited_record() {
    // An edit of a record's stored prev (rather than its payload) breaks the link to the record
    // before it; the record named must be the edited one, not its innocent predecessor.
    let d = log_with_edited_prev("audit-edit-prev", 10, "f");
    let r = verify_dir(d.path());
    let f = failure(&r);
    assert_eq!((f.seq, f.at.line), (Some(5), 5), "{f}");
    assert!(f.reason.contains("modified"), "{f}");
    assert_eq!(r.records, 4);

    // The same edit on the last record: the checkpoint says which one changed.
    let d = log_with_edited_prev("audit-edit-prev-last", 5, "e");
    let f = failure(&verify_dir(d.path())).clone();
    assert_eq!(f.seq, Some(5), "{f}");
}

#[test]
fn truncation_with_the_checkpoint_deleted_still_fails() {
    let d = TempDir::new("audit-trunc-nocp");
    write_n(d.path(), 10, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    l.truncate(7);
    write_lines(&p, &l);
    fs::remove_file(d.path().join(CHECKPOINT_FILE)).expect("rm checkpoint");
    let r = verify_dir(d.path());
    let f = failure(&r);
    assert!(f.reason.contains("checkpoint file missing"), "{f}");
    assert!(f.at.file.ends_with(CHECKPOINT_FILE), "{f}");
    // Asked for explicitly, the chain alone still verifies (with a warning).
    let r = verify_paths(
        &[d.path().to_path_buf()],
        &VerifyOptions {
            no_checkpoint: true,
            ..Default::default()
        },
    )
    .expect("io");
    assert!(r.ok() && !r.warnings.is_empty());
}

/// Not a check, a measurement for docs/audit.md: the cost of an fsynced record (fdatasync +
/// checkpoint rename + directory fsync) against a batched one, on this machine's temp dir.
/// `cargo test -p guard --lib audit::tests::measure_sync_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_sync_cost() {
    let d = TempDir::new("audit-measure");
    let mut w = AuditWriter::open(AuditConfig {
        sync_interval: Duration::from_millis(200),
        ..AuditConfig::new(d.path())
    })
    .expect("open");
    const N: u32 = 200;
    let t = std::time::Instant::now();
    for i in 0..N {
        w.append(deny(&format!("/bin/x{i}"))).expect("append");
    }
    let synced = t.elapsed() / N;
    let t = std::time::Instant::now();
    for i in 0..N * 10 {
        w.append(alert(&format!("r{i}"))).expect("append");
    }
    let batched = t.elapsed() / (N * 10);
    eprintln!(
        "audit append in {}: synced (deny) {synced:?}/record, batched (alert) {batched:?}/record",
        std::env::temp_dir().display()
    );
}

#[test]
fn deleted_record_is_named() {
    let d = TempDir::new("audit-del");
    write_n(d.path(), 10, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    l.remove(6); // seq 7
    write_lines(&p, &l);
    let r = verify_dir(d.path());
    let f = failure(&r);
    assert_eq!(f.seq, Some(8));
    assert_eq!(f.at.line, 7);
    assert!(f.reason.contains("expected seq 7"), "{f}");
    assert!(f.reason.contains("deleted"), "{f}");
}

#[test]
fn reordered_records_are_named() {
    let d = TempDir::new("audit-reorder");
    write_n(d.path(), 10, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    l.swap(2, 3); // seq 3 and 4
    write_lines(&p, &l);
    let r = verify_dir(d.path());
    let f = failure(&r);
    assert_eq!(f.seq, Some(4));
    assert_eq!(f.at.line, 3);
    assert!(f.reason.contains("out of order"), "{f}");
    assert!(f.reason.contains(":4"), "names where seq 3 went: {f}");
}

#[test]
fn truncated_tail_is_detected() {
    let d = TempDir::new("audit-trunc");
    write_n(d.path(), 10, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    l.truncate(7);
    write_lines(&p, &l);
    let r = verify_dir(d.path());
    let f = failure(&r);
    assert_eq!(f.seq, Some(7));
    assert!(f.reason.contains("truncated tail"), "{f}");
    assert!(f.reason.contains("seq 10"), "{f}");
    // Without the checkpoint the chain itself looks fine: that is why the checkpoint exists.
    let r = verify_paths(
        &[d.path().to_path_buf()],
        &VerifyOptions {
            no_checkpoint: true,
            ..Default::default()
        },
    )
    .expect("io");
    assert!(r.ok());
    assert!(!r.warnings.is_empty());
}

#[test]
fn malformed_and_torn_lines_are_errors_with_line_numbers() {
    let d = TempDir::new("audit-malformed");
    write_n(d.path(), 4, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    l[2] = "{not json".into();
    write_lines(&p, &l);
    let f = failure(&verify_dir(d.path())).clone();
    assert_eq!(f.at.line, 3);
    assert!(f.reason.contains("not a valid audit record"), "{f}");

    let d = TempDir::new("audit-torn");
    write_n(d.path(), 4, u64::MAX);
    let p = only_file(d.path());
    let mut body = fs::read(&p).expect("read");
    body.extend_from_slice(b"{\"seq\":5,");
    fs::write(&p, &body).expect("write");
    let f = failure(&verify_dir(d.path())).clone();
    assert_eq!(f.at.line, 5);
    assert!(f.reason.contains("incomplete"), "{f}");
    // Reopening cuts the torn bytes, says so, and continues the chain.
    let w = AuditWriter::open(cfg(d.path())).expect("open");
    assert_eq!(w.recovery().len(), 1, "{:?}", w.recovery());
    assert_eq!(w.next_seq(), 5);
    drop(w);
    assert!(verify_dir(d.path()).ok());
}

#[test]
fn open_refuses_a_log_that_lost_its_tail_unless_recovering() {
    let d = TempDir::new("audit-open-trunc");
    write_n(d.path(), 6, u64::MAX);
    let p = only_file(d.path());
    let mut l = lines(&p);
    l.truncate(4);
    write_lines(&p, &l);
    match AuditWriter::open(cfg(d.path())) {
        Err(AuditError::CheckpointMismatch(m)) => assert!(m.contains("seq 6"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("open should refuse"),
    }
    let w = AuditWriter::open(AuditConfig {
        recover: true,
        ..cfg(d.path())
    })
    .expect("recover");
    assert_eq!(w.next_seq(), 5);
    assert!(w.recovery()[0].contains("records were lost"));
}

#[test]
fn disk_full_returns_an_error_and_keeps_the_log_valid() {
    let d = TempDir::new("audit-full");
    let mut w = AuditWriter::open(cfg(d.path())).expect("open");
    w.append(alert("a")).expect("first");
    w.space_left = Some(10);
    let e = w.append(deny("/bin/sh")).expect_err("must fail");
    assert!(e.is_disk_full(), "{e}");
    // The partial line was cut; the chain continues from seq 2 once space is back.
    w.space_left = None;
    let a = w.append(deny("/bin/sh")).expect("after space is back");
    assert_eq!(a.seq, 2);
    drop(w);
    let r = verify_dir(d.path());
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!(r.records, 2);
}

#[test]
fn retention_moves_the_anchor() {
    let d = TempDir::new("audit-retain");
    let mut w = AuditWriter::open(AuditConfig {
        max_file_bytes: 1500,
        max_files: 2,
        ..cfg(d.path())
    })
    .expect("open");
    for i in 0..40 {
        w.append(alert(&format!("r{i}"))).expect("append");
    }
    drop(w);
    let files = writer::log_files(d.path()).expect("list");
    assert_eq!(files.len(), 2);
    assert!(files[0].0 > 1);
    let r = verify_dir(d.path());
    assert!(r.ok(), "{:?}", r.failure);
    // Without the anchor (no checkpoint), a log that starts late is not accepted silently.
    let r = verify_paths(
        &[d.path().to_path_buf()],
        &VerifyOptions {
            no_checkpoint: true,
            ..Default::default()
        },
    )
    .expect("io");
    assert!(failure(&r).reason.contains("starts at seq"));
}

#[test]
fn sync_rule_is_applied() {
    let d = TempDir::new("audit-sync");
    let mut w = AuditWriter::open(AuditConfig {
        sync_interval: Duration::from_secs(3600),
        ..AuditConfig::new(d.path())
    })
    .expect("open");
    let a = w.append(alert("batched")).expect("append");
    assert!(!a.synced, "alerts are batched");
    let b = w.append(deny("/bin/sh")).expect("append");
    assert!(b.synced, "denies are synced at once");
    let cp = Checkpoint::read(&d.path().join(CHECKPOINT_FILE))
        .expect("read")
        .expect("present");
    assert_eq!(cp.seq, 2);
}

#[test]
fn batched_records_are_synced_within_the_interval_even_under_a_trickle() {
    let d = TempDir::new("audit-trickle");
    let w = AuditWriter::open(AuditConfig {
        sync_interval: Duration::from_secs(3600),
        ..AuditConfig::new(d.path())
    })
    .expect("open");
    assert_eq!(w.sync_due_in(), None, "nothing unsynced");
    drop(w);

    // The thread: a synced deny at T, a batched alert A at T, another alert B at T+700 ms.
    // A must be on disk by T+1 s (the interval), not 1 s after B (T+1.7 s).
    let interval = Duration::from_secs(1);
    let log = AuditLog::start(
        AuditConfig {
            sync_interval: interval,
            ..AuditConfig::new(d.path())
        },
        16,
    )
    .expect("start");
    let cp = || {
        Checkpoint::read(&d.path().join(CHECKPOINT_FILE))
            .expect("read")
            .map_or(0, |c| c.seq)
    };
    let t = std::time::Instant::now();
    assert!(log.try_record(deny("/bin/sh")));
    assert!(log.try_record(alert("A")));
    std::thread::sleep(Duration::from_millis(700));
    assert!(log.try_record(alert("B")));
    while cp() < 2 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let synced_after = t.elapsed();
    assert!(cp() >= 2, "alert A never synced");
    assert!(
        synced_after < Duration::from_millis(1350),
        "alert A was synced after {synced_after:?}, beyond the {interval:?} interval"
    );
    log.close();
    assert_eq!(cp(), 3);
}

#[test]
fn audit_log_thread_counts_drops_and_records_them() {
    let d = TempDir::new("audit-thread");
    let log = AuditLog::start(cfg(d.path()), 4).expect("start");
    let mut accepted = 0u64;
    for i in 0..2000 {
        if log.try_record(alert(&format!("r{i}"))) {
            accepted += 1;
        }
    }
    let stats = log.close();
    let dropped = stats.dropped.get("alert").copied().unwrap_or(0);
    assert_eq!(accepted + dropped, 2000);
    let r = verify_dir(d.path());
    assert!(r.ok(), "{:?}", r.failure);
    // Every accepted record is in the log, plus drop summaries that add up to the drops.
    let mut alerts = 0;
    let mut summarised = 0;
    for f in writer::log_files(d.path()).expect("list") {
        for l in lines(&f.1) {
            let rec: Record = serde_json::from_str(&l).expect("record");
            match rec.payload {
                Payload::Alert { .. } => alerts += 1,
                Payload::DropSummary(s) => summarised += s.audit.get("alert").copied().unwrap_or(0),
                _ => {}
            }
        }
    }
    assert_eq!(alerts, accepted);
    assert_eq!(summarised, dropped);
}

/// A stretch of write failures becomes one gap: every record that reached the writer and was
/// not written is counted (failed writes and those skipped while waiting to retry; not a
/// failed sync after a write), with the first error, its errno and the time span.
#[test]
fn write_failures_become_one_gap_with_the_count() {
    let mut h = Health {
        dir: PathBuf::from("/x"),
        failing: None,
        gap: None,
        retry_every: Duration::from_secs(60),
    };
    let enospc = AuditError::io(
        "write audit record",
        Path::new("/x/audit-1.jsonl"),
        std::io::Error::from_raw_os_error(libc::ENOSPC),
    );
    assert!(h.may_retry());
    h.failed(&enospc, true);
    assert!(!h.may_retry(), "no retry right after a failure");
    h.skipped();
    h.skipped();
    h.failed(&enospc, false);
    h.ok();
    assert!(h.may_retry());
    let gap = h.gap.take().expect("a gap after recovery");
    assert_eq!(gap.lost, 3);
    assert_eq!(gap.errno.as_deref(), Some("ENOSPC"));
    assert!(gap.error.contains("/x/audit-1.jsonl"), "{}", gap.error);
    assert!(!gap.from.is_empty() && gap.to >= gap.from);
    h.ok();
    assert!(h.gap.is_none(), "no failure, no gap");
}
