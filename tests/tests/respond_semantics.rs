//! Response engine semantics on real processes: kill_process (latency, tree), dedupe, rate
//! limits, rails, dry-run and detect mode. Each test would fail without its feature.

use std::{
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use guard::{
    alert::Priority,
    audit::Outcome,
    respond::{AlertContext, Options, Responder},
    workload::WorkloadInfo,
};
use guard_tests::respond_util::*;

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep")
}

fn ctx_for(pid: u32) -> AlertContext {
    AlertContext {
        pid: Some(pid),
        process_start_boot_ns: Some(start_boot_ns(pid)),
        event_time: Some(Instant::now()),
        ..Default::default()
    }
}

fn shell_alert(pid: u32) -> Arc<guard::alert::Alert> {
    Arc::new(alert(
        "Terminal shell in container",
        Priority::Critical,
        serde_json::json!({"proc.pid": pid}),
    ))
}

fn reap(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_process_latency_and_death() {
    let r = Responder::new(
        responses(
            "- settings: {rate_limit_per_workload: {burst: 100, per_minute: 600}}\n- response: k\n  match: {priority: '>= Critical'}\n  actions: [kill_process]\n",
        ),
        Options::default(),
        None,
    );
    let mut lat = Vec::new();
    for _ in 0..30 {
        let mut c = sleeper();
        let pid = c.id();
        let ctx = ctx_for(pid);
        let t0 = Instant::now();
        let rep = r
            .handle(
                shell_alert(pid),
                AlertContext {
                    event_time: Some(t0),
                    ..ctx
                },
            )
            .await;
        let dead_at = t0.elapsed();
        assert_eq!(rep.len(), 1, "{rep:?}");
        assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
        // `Done` is only reported once the pidfd says the process exited.
        let status = c
            .try_wait()
            .expect("try_wait")
            .expect("process must be dead");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        lat.push(dead_at);
    }
    let (p50, p99, max) = percentiles(&lat);
    eprintln!(
        "kill_process alert->process dead over {} trials: p50 {:?} p99 {:?} max {:?} (target p99 < 5 ms)",
        lat.len(),
        p50,
        p99,
        max
    );
    // The product target (p99 < 5 ms) is a benchmark, integration/bench/latency.sh, which runs
    // this test and judges its line; here only a bound no working kill can miss.
    let sanity = Duration::from_secs(5);
    assert!(
        p99 < sanity,
        "p99 {p99:?}: the kill took longer than the {sanity:?} sanity bound"
    );
}

#[tokio::test]
async fn kill_process_tree() {
    let r = Responder::new(
        responses("- response: k\n  actions: [{kill_process: {tree: true}}]\n"),
        Options::default(),
        None,
    );
    let c = Command::new("sh")
        .args(["-c", "sleep 60 & sleep 60 & wait"])
        .spawn()
        .expect("spawn sh");
    let pid = c.id();
    // Wait for both children.
    let mut kids = Vec::new();
    for _ in 0..200 {
        kids = guard::respond::process::descendants(pid);
        if kids.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(kids.len() >= 2, "children not started");
    let rep = r.handle(shell_alert(pid), ctx_for(pid)).await;
    assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
    assert!(
        rep[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("2 descendant"),
        "{rep:?}"
    );
    reap(c);
    for k in kids {
        let mut gone = false;
        for _ in 0..100 {
            if !alive(k) {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(gone, "descendant {k} survived");
    }
}

/// Same rule, workload and process twice within the window: acted on once.
#[tokio::test]
async fn dedupe_acts_once() {
    let r = Responder::new(
        responses(
            "- settings: {dedupe_window: 60s}\n- response: k\n  actions: [kill_process]\n  dry_run: true\n",
        ),
        Options::default(),
        None,
    );
    let c = sleeper();
    let pid = c.id();
    let first = r.handle(shell_alert(pid), ctx_for(pid)).await;
    let second = r.handle(shell_alert(pid), ctx_for(pid)).await;
    assert_eq!(first[0].outcome, Outcome::DryRun, "{first:?}");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].outcome, Outcome::Refused, "{second:?}");
    assert!(
        second[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("duplicate")
    );
    // Another process is not a duplicate.
    let c2 = sleeper();
    let third = r.handle(shell_alert(c2.id()), ctx_for(c2.id())).await;
    assert_eq!(third[0].outcome, Outcome::DryRun, "{third:?}");
    reap(c);
    reap(c2);
}

/// A storm from one workload: only `burst` actions run; the overflow is refused and recorded.
#[tokio::test]
async fn rate_limit_bounds_a_storm() {
    let audit = TempDir::new("rate");
    let r = responder_with_audit(
        responses(
            "- settings:\n    dedupe_window: 0s\n    rate_limit_per_workload: {burst: 3, per_minute: 1}\n    rate_limit_global: {burst: 100, per_minute: 60}\n- response: k\n  actions: [kill_process]\n",
        ),
        Options::default(),
        &audit.0,
    );
    let mut kids: Vec<Child> = (0..10).map(|_| sleeper()).collect();
    let mut done = 0;
    let mut refused = 0;
    for c in &kids {
        let rep = r.handle(shell_alert(c.id()), ctx_for(c.id())).await;
        match rep[0].outcome {
            Outcome::Done => done += 1,
            Outcome::Refused => {
                assert!(rep[0].error.as_deref().unwrap_or("").contains("rate limit"));
                refused += 1;
            }
            o => panic!("unexpected {o:?}: {rep:?}"),
        }
    }
    assert_eq!((done, refused), (3, 7));
    let alive_now = kids.iter().filter(|c| alive(c.id())).count();
    assert_eq!(alive_now, 7, "only 3 of 10 processes may be killed");
    assert!(
        wait_audit(&audit.0, Duration::from_secs(5), |v| v["kind"]
            == "response"
            && v["outcome"] == "refused"
            && v["error"].as_str().unwrap_or("").contains("rate limit"))
        .is_some(),
        "the overflow is recorded in the audit log"
    );
    for c in kids.drain(..) {
        reap(c);
    }
}

/// PID 1, kernel threads, guard itself and protected workloads are refused, with reasons.
#[tokio::test]
async fn rails_refuse_with_reasons() {
    let audit = TempDir::new("rails");
    let r = responder_with_audit(
        responses(
            "- settings:\n    dedupe_window: 0s\n    protected: [{cgroup: '/guard-protected-test*'}]\n- response: k\n  actions: [kill_process]\n",
        ),
        Options::default(),
        &audit.0,
    );
    let refuse = |pid: u32, w: WorkloadInfo| {
        let r = r.clone();
        async move {
            let rep = r
                .handle(
                    shell_alert(pid),
                    AlertContext {
                        pid: Some(pid),
                        workload: w,
                        ..Default::default()
                    },
                )
                .await;
            assert_eq!(rep[0].outcome, Outcome::Refused, "pid {pid}: {rep:?}");
            rep[0].error.clone().unwrap_or_default()
        }
    };
    assert!(refuse(1, WorkloadInfo::default()).await.contains("init"));
    assert!(
        refuse(2, WorkloadInfo::default())
            .await
            .contains("kernel thread")
    );
    // A kworker (child of kthreadd).
    let kworker = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .find(|&p| p > 2 && guard::respond::process::read_stat(p).is_some_and(|s| s.ppid == 2))
        .expect("a kernel thread");
    assert!(
        refuse(kworker, WorkloadInfo::default())
            .await
            .contains("kernel thread")
    );
    assert!(
        refuse(std::process::id(), WorkloadInfo::default())
            .await
            .contains("guard itself")
    );
    let c = sleeper();
    let protected = WorkloadInfo::host(Some("/guard-protected-test/x".into()));
    assert!(
        refuse(c.id(), protected)
            .await
            .contains("protected workload")
    );
    assert!(alive(c.id()), "protected process must live");
    assert!(
        wait_audit(&audit.0, Duration::from_secs(5), |v| v["outcome"]
            == "refused"
            && v["error"].as_str().unwrap_or("").contains("protected"))
        .is_some()
    );
    reap(c);
}

/// `dry_run: true` and `--detect-only` record "would kill" and leave the process alive.
#[tokio::test]
async fn dry_run_and_detect_mode_record_would_kill() {
    let audit = TempDir::new("dry");
    for (yaml, detect) in [
        (
            "- response: k\n  actions: [kill_process]\n  dry_run: true\n",
            false,
        ),
        ("- response: k\n  actions: [kill_process]\n", true),
    ] {
        let r = responder_with_audit(
            responses(yaml),
            Options {
                detect_only: detect,
                ..Default::default()
            },
            &audit.0,
        );
        let c = sleeper();
        let rep = r.handle(shell_alert(c.id()), ctx_for(c.id())).await;
        assert_eq!(rep[0].outcome, Outcome::DryRun, "{rep:?}");
        assert!(
            rep[0]
                .detail
                .as_deref()
                .unwrap_or("")
                .contains("would kill process")
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(alive(c.id()), "dry run must not kill");
        reap(c);
        drop(r);
    }
    let rec = wait_audit(&audit.0, Duration::from_secs(5), |v| {
        v["outcome"] == "dry_run" && v["mode"] == "detect"
    })
    .expect("detect-mode dry run recorded");
    assert!(
        rec["detail"]
            .as_str()
            .unwrap_or("")
            .contains("would kill process")
    );
}

/// A snapshot lists the process and its recent events in the audit log.
#[tokio::test]
async fn snapshot_goes_to_audit() {
    let audit = TempDir::new("snap");
    let r = responder_with_audit(
        responses("- response: s\n  actions: [{snapshot: {events: 2}}]\n"),
        Options::default(),
        &audit.0,
    );
    let c = sleeper();
    for i in 0..5 {
        r.record_recent(c.id(), &format!("open /etc/file{i}"));
    }
    let rep = r.handle(shell_alert(c.id()), ctx_for(c.id())).await;
    assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
    let snap = wait_audit(&audit.0, Duration::from_secs(5), |v| {
        v["kind"] == "snapshot"
    })
    .expect("snapshot record");
    let procs = snap["processes"].as_array().expect("processes");
    assert!(procs.iter().any(|p| p["pid"] == c.id()), "{snap}");
    let ev = snap["recent_events"].as_array().expect("events");
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1]["summary"], "open /etc/file4");
    reap(c);
}
