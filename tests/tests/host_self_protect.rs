//! Host layer: self-protection as this kernel allows it (docs/self-protection.md).
//!
//! Whether BPF LSM works is decided by an independent probe (a raw `BPF_PROG_LOAD` of an LSM
//! program), never by what the agent prints. Where it is refused (this CI host), the agent must say that self-protection is
//! unavailable, and what holds is only the kernel's pid namespace isolation: a process in a pid
//! namespace of its own cannot name the agent (`ESRCH`) or signal it through a leaked pidfd
//! (`EINVAL`), while a "container" sharing the host's pid namespace reaches it (signal 0
//! succeeds): the documented limit, not a guarantee. Where BPF LSM works, the same probe from the
//! shared-pid container gets `EPERM`. The VM layer (`vm_lsm`, scenario `self-protect`) covers
//! the LSM backend in full.

use std::process::Command;

use guard_tests::harness::{
    Agent, TestCgroup, agent_lock, can_run, guard_bin, is_root, raw_lsm_load,
};

const PIN_DIR: &str = "/sys/fs/bpf/guard-selfprot-test";

fn probe(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_guard-testkit"))
        .args(args)
        .output()
        .expect("running guard-testkit");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn self_protection_reports_its_backend_and_containers_reach_the_agent_only_as_it_says() {
    if !can_run(
        is_root(),
        "needs root to load eBPF programs and make namespaces",
    ) {
        return;
    }
    let _lock = agent_lock();
    let agent = Agent::run(&["--no-audit", "--pin-dir", PIN_DIR, "--metrics-addr", "off"]);
    let pid = agent.pid().to_string();
    let cg = TestCgroup::new("selfprot");
    let cg_dir = cg.path.to_str().expect("utf8");
    let testkit = env!("CARGO_BIN_EXE_guard-testkit");

    // Docker's default: a pid namespace of its own (plus a leaked pidfd for the agent as fd 3).
    let newpid = |args: &[&str]| {
        let mut full = vec![
            "container-run",
            "--newpid",
            "--pidfd",
            &pid,
            cg_dir,
            "--",
            testkit,
        ];
        full.extend_from_slice(args);
        probe(&full)
    };
    let invisible = newpid(&["try-kill", &pid, "9"]);
    let pidfd_signal = newpid(&["try-pidfd-signal", "3", "0"]);
    // `--pid=host`: only a mount namespace of its own. Signal 0 checks permission and sends
    // nothing, so the agent survives whatever the outcome.
    let shared = probe(&[
        "container-run",
        cg_dir,
        "--",
        testkit,
        "try-kill",
        &pid,
        "0",
    ]);
    let (_, stderr) = agent.stop_with_stderr();
    let _ = Command::new(guard_bin())
        .args(["run", "--cleanup", "--pin-dir", PIN_DIR])
        .output();
    drop(cg);

    assert!(
        invisible.starts_with("errno=3 ESRCH"),
        "kill from a pid namespace of its own: {invisible}"
    );
    assert!(
        pidfd_signal.starts_with("errno=22 EINVAL"),
        "pidfd signal across pid namespaces: {pidfd_signal}"
    );
    // What the kernel allows decides the expectations, never the agent's own account.
    let unavailable = stderr
        .iter()
        .find(|l| l.contains("self-protection unavailable"));
    match raw_lsm_load() {
        Err(errno) => {
            let line = unavailable.unwrap_or_else(|| {
                panic!(
                    "the kernel refuses LSM programs (errno {errno}), yet the agent does not say \
                     self-protection is unavailable; stderr: {stderr:?}"
                )
            });
            // Honest labelling, and the limit it names: nothing stops the shared-pid container.
            assert!(line.contains("docs/self-protection.md"), "{line}");
            assert_eq!(
                shared, "ok",
                "without BPF LSM the shared-pid container reaches the agent"
            );
        }
        Ok(()) => {
            assert!(
                unavailable.is_none(),
                "the kernel loads LSM programs, yet the agent reports: {unavailable:?}"
            );
            assert!(
                shared.starts_with("errno=1 EPERM"),
                "BPF LSM works here, so self-protection must deny the shared-pid container: {shared}; stderr: {stderr:?}"
            );
        }
    }
}
