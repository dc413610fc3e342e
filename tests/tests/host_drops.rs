//! Host layer: drop accounting is exact. With a one-page ring buffer and the agent stopped
//! during a bounded burst, events received plus drops counted equal the events generated.

use std::{ffi::CString, time::Duration};

use guard_tests::harness::{
    Agent, TestCgroup, agent_lock, can_run, fork_in_cgroup, is_root, wait_child,
};

const BURST: u64 = 20_000;

#[test]
fn received_plus_dropped_equals_generated() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let cg = TestCgroup::new("drops");
    let path = CString::new("/nonexistent/guard-drop-burst").expect("cstring");
    let agent = Agent::start(&[
        "--only-cgroup",
        cg.path.to_str().expect("utf8"),
        "--ring-bytes",
        "4096",
        "--drop-report-secs",
        "3600",
    ]);
    // Freeze the agent so the burst overflows the ring deterministically.
    agent.signal(libc::SIGSTOP);
    let child = fork_in_cgroup(&cg, || {
        for _ in 0..BURST {
            // SAFETY: raw syscall on a buffer built before the fork.
            unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
        }
        0
    });
    assert_eq!(wait_child(child), 0);
    agent.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(500));
    let lines = agent.stop();

    let opens = lines
        .iter()
        .filter(|v| {
            v["kind"] == "open"
                && v["pid"] == child
                && v["path"]["text"] == "/nonexistent/guard-drop-burst"
        })
        .count() as u64;
    let exits = lines
        .iter()
        .filter(|v| v["kind"] == "exit" && v["pid"] == child)
        .count() as u64;
    let others = lines
        .iter()
        .filter(|v| {
            v["kind"] != "drops"
                && !(v["kind"] == "open" && v["pid"] == child)
                && !(v["kind"] == "exit" && v["pid"] == child)
        })
        .count();
    assert_eq!(
        others, 0,
        "only the burst child's events are traced in its cgroup"
    );
    let report = lines
        .iter()
        .rev()
        .find(|v| v["kind"] == "drops")
        .expect("the agent reports drops when it stops");
    let dropped_syscalls = report["by_kind"]["syscall"]
        .as_u64()
        .expect("syscall drops");
    let dropped_exits = report["by_kind"]["exit"].as_u64().expect("exit drops");
    assert_eq!(report["decode_errors"], 0);
    assert!(
        dropped_syscalls > 0,
        "a one-page ring must overflow during the burst"
    );
    assert_eq!(
        opens + dropped_syscalls,
        BURST,
        "opens received {opens} + dropped {dropped_syscalls}"
    );
    assert_eq!(exits + dropped_exits, 1, "the child's one exit");
    assert_eq!(
        report["total"].as_u64(),
        Some(dropped_syscalls + dropped_exits)
    );
}
