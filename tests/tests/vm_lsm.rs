//! VM layer: BPF LSM enforcement on real Debian kernels (6.1 and 6.12), booted in qemu with
//! software emulation. See `integration/vm/README.md`.
//!
//! Why here, and how the binaries are found:
//! - `guard-testkit` is a bin of this package, so cargo builds it for this test and hands us
//!   its path (`CARGO_BIN_EXE_guard-testkit`).
//! - `guard` is a bin of another package; cargo gives integration tests only their own package's
//!   bins. The test therefore runs `cargo build -p guard --bin guard` itself (same cargo, same
//!   profile, same target dir; a no-op when up to date) and takes the executable path from
//!   cargo's JSON messages, so a stale binary can never be tested by mistake.
//!
//! When qemu, busybox, cpio or the kernels are unavailable the test fails under `CI=true` and
//! otherwise prints why and returns.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

const KERNELS: [&str; 2] = ["6.1", "6.12"];

/// Checks each kernel must report as PASS (the runner also fails on any FAIL or missing check).
const REQUIRED: &[&str] = &[
    "boot/mounts",
    "boot/loopback",
    "boot/binaries",
    "exec-deny/lsm-listed",
    "exec-deny/doctor-bpf-lsm",
    "exec-deny/control-before-guard",
    "exec-deny/guard-ready-bpf-lsm",
    "exec-deny/exec-denied-eperm",
    "exec-deny/exec-allowed-sibling",
    "exec-deny/exec-allowed-root",
    "exec-deny/exec-event-filename",
    "exec-deny/exec-denied-event",
    "module-load/module-load-event",
    "quarantine-connect/udp-denied",
    "quarantine-connect/tcp-denied",
    "quarantine-connect/host-unaffected",
    "quarantine-connect/survives-agent-stop",
    "quarantine-connect/lifted",
    // Issue 9, "a process inside a container cannot kill or ptrace the agent".
    "self-protect/self-protect-active",
    "self-protect/kill-9-denied",
    "self-protect/kill-stop-denied",
    "self-protect/ptrace-attach-denied",
    "self-protect/ptrace-seize-denied",
    "self-protect/pidfd-getfd-denied",
    "self-protect/proc-mem-denied",
    "self-protect/policy-read-denied",
    "self-protect/audit-read-denied",
    "self-protect/cgroup-kill-denied",
    "self-protect/pin-obj-get-denied",
    "self-protect/map-by-id-denied",
    "self-protect/newpid-pidfd-getfd-denied",
    "self-protect/control-kill-stop",
    "self-protect/control-ptrace",
    "self-protect/control-kill-9",
    "self-protect/agent-alive",
    "self-protect/decision-records",
    "self-protect/decision-alerts",
];

/// Self-protection checks whose probe must have printed exactly EPERM: the agent's denial, not
/// some other failure (the VM runs as root, so without the programs each would print `ok`).
const SELF_PROTECT_EPERM: &[&str] = &[
    "self-protect/kill-9-denied",
    "self-protect/kill-stop-denied",
    "self-protect/ptrace-attach-denied",
    "self-protect/ptrace-seize-denied",
    "self-protect/pidfd-getfd-denied",
    "self-protect/policy-read-denied",
    "self-protect/audit-read-denied",
    "self-protect/cgroup-kill-denied",
    "self-protect/pin-obj-get-denied",
    "self-protect/map-by-id-denied",
    "self-protect/newpid-pidfd-getfd-denied",
];

/// `policy-bypass` checks named `*-eperm` (issue 15, classes 1 to 4 and 6).
const BYPASS_EPERM_CHECKS: usize = 32;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A prerequisite is missing: fail in CI, otherwise say why and skip.
fn unavailable(why: &str) {
    if guard_tests::harness::in_ci() {
        panic!("VM layer cannot run, and CI=true makes it mandatory: {why}");
    }
    // Written to the real stderr, not through eprintln!, so libtest's capture cannot hide it.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP vm_lsm: {why} (set CI=true to make this a failure)"
    );
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Builds the guard binary with the cargo and profile running this test; returns its path.
fn build_guard(testkit: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    // The testkit sits in <target>/<profile-dir>/; build guard with the same profile.
    let profile_dir = testkit
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root())
        .args(["build", "-p", "guard", "--bin", "guard"])
        .args(["--message-format", "json-render-diagnostics"]);
    match profile_dir {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .expect("running cargo build -p guard");
    assert!(out.status.success(), "cargo build -p guard failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "guard")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no executable for the guard bin")
}

#[test]
fn exec_is_denied_with_eperm_in_a_denied_cgroup_on_both_kernels() {
    for tool in [
        "qemu-system-x86_64",
        "busybox",
        "cpio",
        "gzip",
        "apt-get",
        "dpkg-deb",
    ] {
        if !on_path(tool) {
            return unavailable(&format!(
                "{tool} not found (integration/setup.sh installs qemu-system-x86, busybox-static, cpio)"
            ));
        }
    }
    let vm = repo_root().join("integration/vm");
    let fetched = Command::new(vm.join("fetch-kernels.sh"))
        .args(KERNELS)
        .stderr(Stdio::inherit())
        .output()
        .expect("running integration/vm/fetch-kernels.sh");
    if !fetched.status.success() {
        return unavailable(
            "fetch-kernels.sh could not provide both kernels (see its output above)",
        );
    }

    let testkit = PathBuf::from(env!("CARGO_BIN_EXE_guard-testkit"));
    let guard = build_guard(&testkit);
    let initramfs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guard-vm-initramfs.cpio.gz");
    let built = Command::new(vm.join("build-initramfs.sh"))
        .arg("--guard")
        .arg(&guard)
        .arg("--testkit")
        .arg(&testkit)
        .arg("-o")
        .arg(&initramfs)
        .status()
        .expect("running integration/vm/build-initramfs.sh");
    assert!(built.success(), "build-initramfs.sh failed");

    let mut failures = Vec::new();
    for label in KERNELS {
        let out = Command::new(vm.join("run.sh"))
            // fetch-kernels.sh above resolved and cached both; skip asking apt again.
            .env("GUARD_VM_NO_FETCH", "1")
            .arg("--initramfs")
            .arg(&initramfs)
            // No scenario named: every scenario under integration/vm/scenarios/ runs, and the
            // runner checks each one's `# expect:` list, so new scenarios are covered here.
            .arg(label)
            .stderr(Stdio::inherit())
            .output()
            .expect("running integration/vm/run.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        if !out.status.success() {
            failures.push(format!(
                "{label}: run.sh failed ({}); console tail above",
                out.status
            ));
        }
        for check in REQUIRED {
            let prefix = format!("GUARD-VM-RESULT {check} ");
            match stdout.lines().find(|l| l.starts_with(&prefix)) {
                Some(l) if l[prefix.len()..].starts_with("PASS") => {}
                Some(l) => failures.push(format!("{label}: {l}")),
                None => failures.push(format!("{label}: no result for {check}")),
            }
        }
        // The errno is asserted, not just a failure: the probe must have printed EPERM.
        let eperm = stdout.lines().any(|l| {
            l.starts_with("GUARD-VM-RESULT exec-deny/exec-denied-eperm PASS")
                && l.contains("errno=1 EPERM")
        });
        if !eperm {
            failures.push(format!(
                "{label}: exec in the denied cgroup did not fail with errno=1 EPERM"
            ));
        }
        for check in SELF_PROTECT_EPERM {
            let prefix = format!("GUARD-VM-RESULT {check} PASS");
            if !stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains("errno=1 EPERM"))
            {
                failures.push(format!("{label}: {check} did not fail with errno=1 EPERM"));
            }
        }
        // Issue 15: every bypass attempt named `*-eperm` failed with EPERM, not another error.
        let bypass: Vec<&str> = stdout
            .lines()
            .filter(|l| {
                l.starts_with("GUARD-VM-RESULT policy-bypass/")
                    && l.split_whitespace()
                        .nth(1)
                        .is_some_and(|c| c.ends_with("-eperm"))
            })
            .collect();
        if bypass.len() < BYPASS_EPERM_CHECKS {
            failures.push(format!(
                "{label}: {} policy-bypass EPERM checks reported, want {BYPASS_EPERM_CHECKS}",
                bypass.len()
            ));
        }
        for l in bypass {
            if !(l.contains(" PASS ") && l.contains("errno=1 EPERM")) {
                failures.push(format!("{label}: not EPERM: {l}"));
            }
        }
        if !stdout
            .lines()
            .any(|l| l.starts_with("GUARD-VM-SUMMARY ") && l.contains(" status=PASS "))
        {
            failures.push(format!("{label}: no PASS summary"));
        }
    }
    assert!(
        failures.is_empty(),
        "VM layer failures:\n{}",
        failures.join("\n")
    );
}
