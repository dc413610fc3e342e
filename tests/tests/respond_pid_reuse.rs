//! kill_process never hits a reused PID. The reuse is real: the test sets
//! `/proc/sys/kernel/ns_last_pid` (root) so that the next fork gets the old process's PID.

use std::{
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use guard::{
    alert::Priority,
    audit::Outcome,
    respond::{AlertContext, Options, Responder},
};
use guard_tests::{harness::*, respond_util::*};

/// Starts `sleep 60` with exactly `pid`, by steering the kernel's next pid. Other processes on
/// the host may take the pid first, so it retries.
fn spawn_with_pid(pid: u32) -> Option<Child> {
    for _ in 0..200 {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).is_err() {
            return None;
        }
        let c = Command::new("sleep").arg("60").spawn().ok()?;
        if c.id() == pid {
            return Some(c);
        }
        let mut c = c;
        let _ = c.kill();
        let _ = c.wait();
    }
    None
}

/// The two tests both steer the next pid: one at a time.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn kill_alert(pid: u32) -> Arc<guard::alert::Alert> {
    Arc::new(alert(
        "Terminal shell in container",
        Priority::Critical,
        serde_json::json!({"proc.pid": pid}),
    ))
}

fn engine() -> Responder {
    Responder::new(
        responses("- settings: {dedupe_window: 0s}\n- response: k\n  actions: [kill_process]\n"),
        Options::default(),
        None,
    )
}

/// The alert's process exited and its PID went to a new process before guard handled the
/// alert: the start-time identity check refuses, and the new process lives.
#[tokio::test]
async fn stale_identity_is_refused() {
    if !can_run(is_root(), "PID reuse needs root (ns_last_pid)") {
        return;
    }
    let _l = LOCK.lock().await;
    let r = engine();
    let mut old = Command::new("sleep").arg("60").spawn().expect("spawn");
    let pid = old.id();
    let old_start = start_boot_ns(pid);
    let _ = old.kill();
    let _ = old.wait();
    // Start times are in clock ticks: make sure the new process starts in a later one.
    std::thread::sleep(Duration::from_millis(150));
    let mut new = spawn_with_pid(pid).expect("could not get the pid reused");
    assert_eq!(new.id(), pid, "the PID is reused");
    let rep = r
        .handle(
            kill_alert(pid),
            AlertContext {
                pid: Some(pid),
                process_start_boot_ns: Some(old_start),
                event_time: Some(Instant::now()),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(rep[0].outcome, Outcome::Refused, "{rep:?}");
    assert!(
        rep[0].error.as_deref().unwrap_or("").contains("reused"),
        "{rep:?}"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        alive(pid),
        "the process that reused the PID must not be killed"
    );
    let _ = new.kill();
    let _ = new.wait();
}

/// The pidfd was opened when the alert was handled; the process then exited and its PID was
/// reused before the kill ran: the kill goes to the old (gone) process only.
#[tokio::test]
async fn pidfd_taken_early_never_hits_the_new_process() {
    if !can_run(is_root(), "PID reuse needs root (ns_last_pid)") {
        return;
    }
    let _l = LOCK.lock().await;
    let r = engine();
    let mut old = Command::new("sleep").arg("60").spawn().expect("spawn");
    let pid = old.id();
    // No start time known: identity rests on the pidfd alone.
    let prepared = r
        .prepare(
            kill_alert(pid),
            AlertContext {
                pid: Some(pid),
                ..Default::default()
            },
        )
        .expect("matches");
    let _ = old.kill();
    let _ = old.wait();
    let mut new = spawn_with_pid(pid).expect("could not get the pid reused");
    let rep = r.execute(prepared).await;
    assert_eq!(rep[0].outcome, Outcome::Failed, "{rep:?}");
    assert!(
        rep[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("exited before the kill"),
        "{rep:?}"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(alive(pid), "the new process with the same PID must live");
    let _ = new.kill();
    let _ = new.wait();
}
