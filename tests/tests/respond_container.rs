//! Container actions under a real dockerd with busybox containers: kill (latency over 20+
//! trials), stop, pause through Docker, and pause through the cgroup freezer when Docker is
//! unreachable.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use guard::{
    alert::Priority,
    audit::Outcome,
    respond::{AlertContext, Options, Responder},
    workload::WorkloadInfo,
};
use guard_tests::{harness::*, respond_util::*};

/// Far above the product target: a miss means the kill is broken, not slow.
const SANITY_BOUND: Duration = Duration::from_secs(5);

fn ctx(c: &Container) -> AlertContext {
    AlertContext {
        pid: Some(c.pid()),
        workload: WorkloadInfo {
            container_id: Some(c.id.clone()),
            name: c.name(),
            image: TEST_IMAGE.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn critical() -> Arc<guard::alert::Alert> {
    Arc::new(alert(
        "Terminal shell in container",
        Priority::Critical,
        serde_json::json!({}),
    ))
}

fn state(d: &Docker, id: &str, field: &str) -> String {
    d.cmd(&["inspect", "-f", &format!("{{{{.State.{field}}}}}"), id])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_container_on_critical_latency() {
    let Some(d) = Docker::get() else { return };
    let r = Responder::new(
        responses(
            "- settings: {rate_limit_per_workload: {burst: 5, per_minute: 60}, rate_limit_global: {burst: 100, per_minute: 600}}\n- response: kill-on-critical\n  match: {priority: '>= Critical', workload: {container: true}}\n  actions: [kill_container]\n",
        ),
        Options::default(),
        None,
    );
    let mut lat = Vec::new();
    for _ in 0..20 {
        let c = d.run(&[], &["sleep", "600"]);
        let init = c.pid();
        let fd = pidfd_open(init);
        // Watch for the exit on another thread, so the time is when the init died, not when
        // the action returned (which also waits for Docker's answer).
        let watcher = std::thread::spawn(move || {
            let ok = pidfd_wait(fd, Duration::from_secs(5));
            close(fd);
            ok.then(Instant::now)
        });
        let base = ctx(&c);
        let t0 = Instant::now();
        let rep = r
            .handle(
                critical(),
                AlertContext {
                    event_time: Some(t0),
                    ..base
                },
            )
            .await;
        assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
        assert!(
            rep[0]
                .detail
                .as_deref()
                .unwrap_or("")
                .contains("docker kill"),
            "{rep:?}"
        );
        let exited = watcher
            .join()
            .expect("watcher")
            .expect("container init did not exit");
        lat.push(exited.duration_since(t0));
        // Docker records the exit shortly after the process is gone.
        let mut running = String::new();
        for _ in 0..100 {
            running = state(&d, &c.id, "Running");
            if running == "false" {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(running, "false", "container still running");
    }
    let (p50, p99, max) = percentiles(&lat);
    eprintln!(
        "kill_container alert->container init exited over {} trials: p50 {p50:?} p99 {p99:?} max {max:?} (target p99 < 150 ms)",
        lat.len()
    );
    // The product target (p99 < 150 ms) is a benchmark, integration/bench/latency.sh, which
    // runs this test and judges its line; here only a bound no working kill can miss.
    assert!(
        p99 < SANITY_BOUND,
        "p99 {p99:?}: the kill took longer than the {SANITY_BOUND:?} sanity bound"
    );
}

/// Epoch ns of an RFC 3339 time (Docker's `FinishedAt`, guard's alert `time`).
fn epoch_ns(s: &str) -> i128 {
    i128::from(guard::rfc3339::parse(s).unwrap_or_else(|| panic!("not RFC 3339: {s:?}")))
}

/// The whole agent, measured from the offending syscall: a shell exec'd in a container (a
/// Critical alert, guard's rule raised by an override) until the container has exited, by
/// Docker's `FinishedAt` and by its init's exit (pidfd), 20 trials. The start is the exec
/// event's kernel timestamp (the alert's `time`), so the figure includes capture, rules,
/// the response engine and the kill, and for FinishedAt Docker's own bookkeeping.
#[test]
fn kill_container_latency_from_the_offending_exec() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(d) = Docker::get() else { return };
    let _lock = agent_lock();
    let tmp = TempDir::new("kill-from-exec");
    std::fs::create_dir_all(tmp.0.join("responses")).expect("mkdir");
    std::fs::write(
        tmp.0.join("override.yaml"),
        "- rule: Shell spawned in container\n  priority: CRITICAL\n  override:\n    priority: replace\n",
    )
    .expect("override");
    std::fs::write(
        tmp.0.join("responses/kill.yaml"),
        "- settings: {rate_limit_per_workload: {burst: 5, per_minute: 60}, rate_limit_global: {burst: 100, per_minute: 600}}\n- response: kill-on-critical\n  match: {priority: '>= Critical', rules: ['Shell spawned in container'], workload: {container: true, labels: {guard-kill-latency: \"on\"}}}\n  actions: [kill_container]\n",
    )
    .expect("responses");
    // Only the shell's rule: runc's own mounts at container start are Critical too.
    let audit = tmp.0.join("audit");
    let policies = repo_root().join("policies");
    let agent = Agent::start_cmd(&[
        "run",
        "--format",
        "json",
        "--rules",
        policies.to_str().expect("utf8"),
        "--rules",
        tmp.0.join("override.yaml").to_str().expect("utf8"),
        "--responses",
        tmp.0.join("responses").to_str().expect("utf8"),
        "--audit-dir",
        audit.to_str().expect("utf8"),
    ]);
    let (mut to_finished, mut to_init_exit, mut audit_lat) = (Vec::new(), Vec::new(), Vec::new());
    // Only this test's containers are selected: the other tests of this binary run shells in
    // their own containers meanwhile, which this agent must not kill.
    for _ in 0..20 {
        let c = d.run(&["--label", "guard-kill-latency=on"], &["sleep", "600"]);
        let fd = pidfd_open(c.pid());
        let watcher = std::thread::spawn(move || {
            let ok = pidfd_wait(fd, Duration::from_secs(10));
            close(fd);
            ok.then(std::time::SystemTime::now)
        });
        // The shell dies with its container: its status is not the point.
        let _ = c.exec(&["sh", "-c", "sleep 30"]);
        let alert = agent
            .wait_for(Duration::from_secs(10), |v| {
                v["rule"] == "Shell spawned in container"
                    && v["output_fields"]["container.id"] == c.id[..12]
            })
            .expect("alert for the shell");
        let exec_ns = epoch_ns(alert["time"].as_str().expect("time"));
        let init_exit = watcher
            .join()
            .expect("watcher")
            .expect("the container's init did not exit");
        let init_ns = init_exit
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as i128;
        let mut finished = String::new();
        for _ in 0..250 {
            if state(&d, &c.id, "Running") == "false" {
                finished = state(&d, &c.id, "FinishedAt");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!finished.is_empty(), "container still running");
        let ns = |v: i128| Duration::from_nanos(u64::try_from(v).unwrap_or(0));
        to_finished.push(ns(epoch_ns(&finished) - exec_ns));
        to_init_exit.push(ns(init_ns - exec_ns));
        let rec = wait_audit(&audit, Duration::from_secs(5), |r| {
            r["action"] == "kill_container"
                && r["outcome"] == "done"
                && r["workload"]["container_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(&c.id[..12]))
        })
        .expect("kill recorded");
        audit_lat.push(Duration::from_micros(
            rec["latency_us"].as_u64().unwrap_or(0),
        ));
    }
    drop(agent);
    let line = |what: &str, v: &[Duration]| {
        let (p50, p99, max) = percentiles(v);
        eprintln!(
            "kill_container {what} over {} trials: p50 {p50:?} p99 {p99:?} max {max:?} (target p99 < 150 ms)",
            v.len()
        );
        p99
    };
    let p99 = line("exec->FinishedAt", &to_finished);
    line("exec->container init exited", &to_init_exit);
    line("agent event seen->kill done (audit latency_us)", &audit_lat);
    // The target is judged by integration/bench/latency.sh; here only the sanity bound.
    assert!(p99 < SANITY_BOUND, "p99 {p99:?} over the sanity bound");
}

#[tokio::test]
async fn stop_container_with_timeout() {
    let Some(d) = Docker::get() else { return };
    let r = Responder::new(
        responses("- response: s\n  actions: [{stop_container: {timeout: 1s}}]\n"),
        Options::default(),
        None,
    );
    // `sleep` as PID 1 ignores SIGTERM: the stop must escalate to SIGKILL after 1 s.
    let c = d.run(&[], &["sleep", "600"]);
    let t0 = Instant::now();
    let rep = r.handle(critical(), ctx(&c)).await;
    assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
    assert_eq!(state(&d, &c.id, "Running"), "false");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "grace period honoured"
    );
}

#[tokio::test]
async fn pause_container_through_docker() {
    let Some(d) = Docker::get() else { return };
    let r = Responder::new(
        responses("- response: p\n  actions: [pause_container]\n"),
        Options::default(),
        None,
    );
    let c = d.run(&[], &["sleep", "600"]);
    let rep = r.handle(critical(), ctx(&c)).await;
    assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
    assert!(
        rep[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("docker pause")
    );
    assert_eq!(state(&d, &c.id, "Paused"), "true");
    d.cmd(&["unpause", &c.id]);
}

/// A counter the container bumps every 50 ms, read from the host through /proc/PID/root.
fn counter(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/root/tmp/c"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Docker unreachable (the engine's client points at a socket with no daemon; the shared
/// dockerd keeps running): pause falls back to the cgroup freezer, and the container stops
/// making progress.
#[tokio::test]
async fn pause_falls_back_to_freezer_without_docker() {
    let Some(d) = Docker::get() else { return };
    let audit = TempDir::new("freeze");
    let r = responder_with_audit(
        responses("- response: p\n  actions: [pause_container]\n"),
        Options {
            docker_socket: audit.0.join("no-docker-here.sock"),
            docker_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        &audit.0,
    );
    let c = d.run(
        &[],
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /tmp/c; sleep 0.05; done",
        ],
    );
    let pid = c.pid();
    let mut started = false;
    // Up to 10 s: the container's first writes wait for a CPU on a loaded 2-vCPU host.
    for _ in 0..500 {
        if counter(pid).is_some_and(|n| n > 2) {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started, "counter never ran");
    let rep = r.handle(critical(), ctx(&c)).await;
    assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
    let detail = rep[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("freezer"), "{detail}");
    let a = counter(pid);
    std::thread::sleep(Duration::from_millis(400));
    let b = counter(pid);
    assert_eq!(a, b, "a frozen container makes no progress");
    let rec = wait_audit(&audit.0, Duration::from_secs(5), |v| {
        v["action"] == "pause_container" && v["outcome"] == "done"
    })
    .expect("recorded");
    assert!(rec["detail"].as_str().unwrap_or("").contains("freezer"));
    // Thaw so the container can be removed.
    let method = if detail.contains("v2") {
        guard::respond::container::PauseMethod::FreezerV2(
            guard::respond::container::cgroup_v2_dir(&c.id).expect("v2 dir"),
        )
    } else {
        let dirs = guard::respond::container::container_cgroup_dirs(
            std::path::Path::new("/sys/fs/cgroup/freezer"),
            &c.id,
        );
        guard::respond::container::PauseMethod::FreezerV1(dirs[0].clone())
    };
    eprintln!("paused via {method}");
    guard::respond::container::thaw(&method)
        .await
        .expect("thaw");
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(counter(pid), b, "thawed container runs again");
}

/// kill_container works with Docker unreachable: `cgroup.kill` in the kernel.
#[tokio::test]
async fn kill_container_without_docker() {
    let Some(d) = Docker::get() else { return };
    let audit = TempDir::new("kill-nodocker");
    let r = Responder::new(
        responses("- response: k\n  actions: [kill_container]\n"),
        Options {
            docker_socket: audit.0.join("no-docker-here.sock"),
            docker_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        None,
    );
    let c = d.run(&[], &["sleep", "600"]);
    let fd = pidfd_open(c.pid());
    let rep = r.handle(critical(), ctx(&c)).await;
    assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
    assert!(
        rep[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("cgroup.kill"),
        "{rep:?}"
    );
    assert!(
        pidfd_wait(fd, Duration::from_secs(5)),
        "container init did not exit"
    );
    close(fd);
}

/// The host (no container) is refused for container actions, with the reason recorded.
#[tokio::test]
async fn container_actions_refuse_the_host() {
    let r = Responder::new(
        responses("- response: k\n  actions: [kill_container]\n"),
        Options::default(),
        None,
    );
    let rep = r.handle(critical(), AlertContext::default()).await;
    assert_eq!(rep[0].outcome, Outcome::Refused, "{rep:?}");
    assert!(
        rep[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not from a container")
    );
}

/// The cgroup v1 freezer path (taken on hosts where the container has no cgroup v2
/// directory): a cgroup root that only offers the real v1 freezer hierarchy.
#[tokio::test]
async fn freezer_v1_path() {
    let Some(d) = Docker::get() else { return };
    if !can_run(
        std::path::Path::new("/sys/fs/cgroup/freezer/docker").exists(),
        "no cgroup v1 freezer hierarchy for docker on this host",
    ) {
        return;
    }
    let root = TempDir::new("v1root");
    std::os::unix::fs::symlink("/sys/fs/cgroup/freezer", root.0.join("freezer")).expect("symlink");
    let c = d.run(
        &[],
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /tmp/c; sleep 0.05; done",
        ],
    );
    let pid = c.pid();
    for _ in 0..100 {
        if counter(pid).is_some_and(|n| n > 2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = guard::respond::container::freeze(&root.0, &c.id)
        .await
        .expect("v1 freeze");
    assert!(
        matches!(m, guard::respond::container::PauseMethod::FreezerV1(_)),
        "{m}"
    );
    let a = counter(pid);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(a, counter(pid), "frozen through the v1 freezer");
    guard::respond::container::thaw(&m).await.expect("thaw");
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(a, counter(pid), "thawed");
}
