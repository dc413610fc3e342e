//! `guard audit verify` and `guard report` as an operator runs them: exit codes and messages.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use guard::alert::{Alert, GuardInfo, Priority, rfc3339_ns};
use guard::audit::{AuditConfig, AuditWriter, Payload};

fn guard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_guard"))
}

fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("guard-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("mkdir");
    p
}

fn write_log(dir: &PathBuf, n: usize) {
    let mut w = AuditWriter::open(AuditConfig {
        max_file_bytes: 1500,
        ..AuditConfig::new(dir)
    })
    .expect("open");
    for i in 0..n {
        w.append(Payload::Alert {
            alert: Box::new(Alert {
                time: rfc3339_ns(0),
                rule: format!("rule {i}"),
                priority: Priority::Error,
                source: "syscall".into(),
                hostname: "h".into(),
                output: "o".into(),
                tags: vec![],
                output_fields: Default::default(),
                guard: GuardInfo::default(),
            }),
        })
        .expect("append");
    }
}

fn run(c: &mut Command) -> (i32, String, String) {
    let o = c.output().expect("run guard");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn verify_exit_codes() {
    let dir = tmp("verify");
    write_log(&dir, 20);
    let (code, _, err) = run(guard().args(["audit", "verify"]).arg(&dir));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("OK: 20 records"), "{err}");
    assert!(err.contains("tail matches checkpoint"), "{err}");

    // Explicit files (as a shell glob would list them) verify too.
    let files = log_files(&dir);
    assert!(files.len() > 1, "rotated");
    let (code, out, err) = run(guard().args(["audit", "verify", "--json"]).args(&files));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["records"], 20);
    assert!(v["failure"].is_null());

    // Cut the last record off: truncated tail, exit 1, the record named.
    let last = files.last().expect("file");
    let body = std::fs::read_to_string(last).expect("read");
    let mut lines: Vec<&str> = body.lines().collect();
    lines.pop();
    std::fs::write(last, lines.join("\n") + "\n").expect("write");
    let (code, _, err) = run(guard().args(["audit", "verify"]).arg(&dir));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("FAILED:") && err.contains("record seq 19") && err.contains("truncated tail"),
        "{err}"
    );

    // Unreadable input: exit 3.
    let (code, _, err) = run(guard().args(["audit", "verify", "/nonexistent/guard/audit-1.jsonl"]));
    assert_eq!(code, 3, "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn report_writes_each_format() {
    let dir = tmp("report");
    write_log(&dir, 5);
    for (fmt, needle) in [
        ("text", "Alerts: 5\n"),
        ("md", "## Alerts: 5\n"),
        ("json", "\"total\": 5"),
        ("html", "<h2>Alerts: 5</h2>"),
    ] {
        let (code, out, err) = run(guard().args(["report", "--format", fmt]).arg(&dir));
        assert_eq!(code, 0, "{fmt}: {err}");
        assert!(out.contains(needle), "{fmt}: {out}");
    }
    let html = dir.join("r.html");
    let (code, _, err) = run(guard()
        .args(["report", "--format", "html", "--from", "1d", "-o"])
        .arg(&html)
        .arg("--audit-dir")
        .arg(&dir));
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read_to_string(&html)
            .expect("html")
            .starts_with("<!DOCTYPE html>")
    );
    // Bad --from is a clear error, exit 1.
    let (code, _, err) = run(guard()
        .args(["report", "--from", "yesterday-ish"])
        .arg(&dir));
    assert_eq!(code, 1);
    assert!(err.contains("--from"), "{err}");
    // Unknown format: usage error, exit 2.
    let (code, _, _) = run(guard().args(["report", "--format", "pdf"]).arg(&dir));
    assert_eq!(code, 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn report_from_to_and_workload_flags_select_records() {
    let dir = tmp("report-window");
    write_log(&dir, 6);
    // Record times as written, from the log itself.
    let mut times = Vec::new();
    let files = log_files(&dir);
    for f in &files {
        for l in std::fs::read_to_string(f).expect("read").lines() {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            times.push(v["time"].as_str().expect("time").to_string());
        }
    }
    assert_eq!(times.len(), 6);
    let total = |extra: &[&str]| -> serde_json::Value {
        let (code, out, err) = run(guard()
            .args(["report", "--format", "json"])
            .args(extra)
            .arg(&dir));
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
        v["alerts"]["total"].clone()
    };
    // --from is inclusive, --to exclusive: records 3, 4 and 5.
    assert_eq!(total(&["--from", &times[2], "--to", &times[5]]), 3);
    assert_eq!(total(&["--from", &times[5]]), 1);
    assert_eq!(total(&["--to", &times[0]]), 0);
    // These alerts have no container: their workload is `host`.
    assert_eq!(total(&["--workload", "host"]), 6);
    assert_eq!(total(&["--workload", "web-*"]), 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// The log files in `dir`, in order.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
}
