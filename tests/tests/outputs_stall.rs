//! Host layer, the whole agent (root): a stdout output nobody reads must not stall event
//! processing. The agent's stdout is a FIFO whose reader never reads, so the stdout channel
//! blocks once the pipe is full; every kernel decision must still reach the audit log, and
//! what the channel could not deliver must be counted in the log's drop summaries, exactly.

use std::{
    ffi::CString,
    io::Read,
    os::{fd::FromRawFd, unix::ffi::OsStrExt},
    process::Command,
    time::{Duration, Instant},
};

use guard_tests::harness::{
    Agent, TestCgroup, agent_lock, can_run, cgroup2_mount, exec_in, guard_bin, is_root, repo_root,
};
use guard_tests::respond_util::audit_records;

fn count_kind(recs: &[serde_json::Value], kind: &str) -> u64 {
    recs.iter().filter(|r| r["kind"] == kind).count() as u64
}

#[test]
fn unread_stdout_output_does_not_stall_decisions_and_drops_add_up() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let dir = std::env::temp_dir().join(format!("guard-out-stall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let pins = format!("/sys/fs/bpf/guard-test-out-stall-{}", std::process::id());
    let _cleanup = Cleanup {
        pins: pins.clone(),
        dir: dir.clone(),
    };
    let cg = TestCgroup::new("out-stall");
    let rel = cg
        .path
        .strip_prefix(cgroup2_mount())
        .expect("test cgroup under the cgroup2 mount");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "- policy: stall\n  workload: {{cgroup: \"/{}\"}}\n  mode: detect\n  enforce:\n    exec: {{deny: [/bin/true]}}\n",
            rel.display()
        ),
    )
    .expect("policy");
    // One small queue, so that the channel overflows early.
    let outputs = dir.join("outputs.yaml");
    std::fs::write(&outputs, "- {type: stdout, format: json, queue: 4}\n").expect("outputs");

    // The FIFO's reader is opened first (non-blocking) and never read.
    let fifo = dir.join("stdout.fifo");
    let c = CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: mkfifo and open on a NUL-terminated path we own.
    let reader = unsafe {
        assert_eq!(libc::mkfifo(c.as_ptr(), 0o600), 0, "mkfifo");
        let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK);
        assert!(fd >= 0, "open fifo for reading");
        std::fs::File::from_raw_fd(fd)
    };
    let audit = dir.join("audit");
    let rules = repo_root().join("policies");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec \"$0\" \"$@\" > \"$FIFO\"")
        .env("FIFO", &fifo)
        .arg(guard_bin())
        .args(["run", "--no-responses", "--rules"])
        .arg(&rules)
        .arg("--only-cgroup")
        .arg(&cg.path)
        .arg("--policy")
        .arg(&policy)
        .args(["--pin-dir", &pins])
        .arg("--audit-dir")
        .arg(&audit)
        .arg("--outputs")
        .arg(&outputs);
    let agent = Agent::spawn(cmd);

    // Each would-deny exec is one decision record and one alert for the stdout channel: far
    // more than the 64 KiB pipe and the queue of 4 hold.
    const EXECS: u64 = 400;
    let argv = [CString::new("/bin/true").expect("argv")];
    let start = Instant::now();
    for _ in 0..EXECS {
        assert_eq!(exec_in(&cg, &argv), Ok(0), "detect mode: /bin/true runs");
    }
    let fired = start.elapsed();
    // Every decision reaches the audit log while stdout is blocked.
    let deadline = Instant::now() + Duration::from_secs(20);
    let decisions = loop {
        let n = count_kind(&audit_records(&audit), "decision");
        if n >= EXECS || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let caught_up = start.elapsed();
    assert_eq!(
        decisions, EXECS,
        "only {decisions} of {EXECS} decisions reached the audit log within 20 s: the blocked \
         stdout output stalled event processing"
    );
    eprintln!(
        "outputs_stall: {EXECS} execs in {fired:?}; all decisions in the audit log after {caught_up:?}"
    );

    let stop = Instant::now();
    let (_, stderr) = agent.stop_with_stderr();
    let stop_took = stop.elapsed();
    eprintln!("outputs_stall: agent stopped in {stop_took:?}");
    assert!(
        stop_took < Duration::from_secs(10),
        "stop took {stop_took:?}"
    );

    // What the channel delivered is in the FIFO; what it lost is in the drop summaries.
    let mut reader = reader;
    let mut buf = Vec::new();
    let _ = reader.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let delivered = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count() as u64;
    let recs = audit_records(&audit);
    let emitted = count_kind(&recs, "decision") + count_kind(&recs, "alert");
    let dropped: u64 = recs
        .iter()
        .filter(|r| r["kind"] == "drop_summary")
        .filter_map(|r| r["outputs"]["stdout"].as_u64())
        .sum();
    eprintln!(
        "outputs_stall: emitted {emitted}, delivered {delivered}, counted as dropped {dropped}"
    );
    assert!(delivered > 0, "the pipe took some alerts");
    assert!(delivered < emitted, "the pipe cannot hold {emitted} alerts");
    assert_eq!(
        delivered + dropped,
        emitted,
        "every alert is delivered or counted as dropped; stderr: {stderr:#?}"
    );
    assert!(
        audit_records(&audit)
            .last()
            .is_some_and(|r| r["kind"] == "agent_stop"),
        "clean stop"
    );
    let st = Command::new(guard_bin())
        .args(["audit", "verify"])
        .arg(&audit)
        .status()
        .expect("guard audit verify");
    assert!(st.success(), "audit log verifies");

    // `guard report` on what the real agent wrote: every format states the exact counts.
    let report = |format: &str| -> String {
        let o = Command::new(guard_bin())
            .args(["report", "--format", format])
            .arg(&audit)
            .output()
            .expect("guard report");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).expect("utf8 report")
    };
    let j: serde_json::Value = serde_json::from_str(&report("json")).expect("json report");
    assert_eq!(j["rollout"][0]["policy"], "stall");
    assert_eq!(j["rollout"][0]["would_deny"], EXECS);
    assert_eq!(
        j["rollout"][0]["binaries"],
        serde_json::json!(["/bin/true"])
    );
    assert_eq!(j["denied"]["total"], 0);
    let stdout_drops = j["drops"]["outputs"]
        .as_array()
        .expect("drops.outputs")
        .iter()
        .find(|c| c["key"] == "stdout")
        .map(|c| c["count"].clone());
    assert_eq!(stdout_drops, Some(serde_json::json!(dropped)));
    assert!(
        j["integrity"]["verified"].as_bool().unwrap_or(false),
        "{}",
        j["integrity"]
    );
    let verdict = format!("would break: exec /bin/true in host ({EXECS}x)");
    for (format, want) in [
        (
            "text",
            format!("Policy stall: would deny {EXECS}, would kill 0"),
        ),
        ("text", verdict.clone()),
        ("md", format!("- Would deny: {EXECS}")),
        ("html", format!("Would deny: <b>{EXECS}</b>")),
    ] {
        let r = report(format);
        assert!(r.contains(&want), "{format} report lacks {want:?}:\n{r}");
    }
}

/// Removes the pins and the scratch directory, also when the test fails.
struct Cleanup {
    pins: String,
    dir: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(guard_bin())
            .args(["run", "--cleanup", "--pin-dir", &self.pins])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
