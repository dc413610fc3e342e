//! The VM runner fails loudly. A timeout, a missing result, a FAIL line, a status other than
//! PASS or FAIL, or a VM that never
//! finishes makes `integration/vm/run.sh` exit non-zero and say why. qemu is replaced by a
//! script that prints a chosen console, and the kernel by a file in a private cache, so this
//! runs anywhere in a second.

use std::{os::unix::fs::PermissionsExt, process::Command};

use guard_tests::harness::{Scratch, repo_root};

const FAKE_QEMU: &str = "#!/bin/sh\n\
if [ \"$FAKE_CONSOLE\" = hang ]; then exec sleep 60; fi\n\
cat \"$FAKE_CONSOLE\"\n";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn setup(s: &Scratch) {
    let bin = s.dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    let qemu = bin.join("qemu-system-x86_64");
    std::fs::write(&qemu, FAKE_QEMU).expect("write fake qemu");
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let k = s.dir.join("cache/kernels/fake");
    std::fs::create_dir_all(&k).expect("mkdir kernel");
    std::fs::write(k.join("vmlinuz"), b"").expect("vmlinuz");
    std::fs::write(
        k.join("config"),
        "CONFIG_BPF_LSM=y\nCONFIG_LSM=\"landlock,bpf\"\n",
    )
    .expect("config");
    std::fs::write(k.join("package-version"), "0-fake\n").expect("package-version");
    std::fs::write(s.dir.join("initrd"), b"").expect("initrd");
}

/// Runs the `boot` scenario (which expects mounts, loopback, binaries) against `console`.
fn run(s: &Scratch, console: &str, timeout: &str) -> Run {
    let console_path = s.dir.join("console");
    let arg = if console == "hang" {
        "hang".to_owned()
    } else {
        std::fs::write(&console_path, console).expect("write console");
        console_path.display().to_string()
    };
    let path = format!(
        "{}:{}",
        s.dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(repo_root().join("integration/vm/run.sh"))
        .args(["--initramfs", &s.dir.join("initrd").display().to_string()])
        .args(["--timeout", timeout, "fake", "boot"])
        .env("PATH", path)
        .env("FAKE_CONSOLE", arg)
        .env("GUARD_VM_CACHE", s.dir.join("cache"))
        .env("GUARD_VM_NO_FETCH", "1")
        .output()
        .expect("running run.sh");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn console(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

const MOUNTS: &str = "GUARD-VM-RESULT boot/mounts PASS all mounted";
const LOOPBACK: &str = "GUARD-VM-RESULT boot/loopback PASS lo up";
const BINARIES: &str = "GUARD-VM-RESULT boot/binaries PASS ok";
const DONE: &str = "GUARD-VM-DONE";

fn assert_fails(r: &Run, why: &str) {
    assert_eq!(
        r.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stdout.contains("status=FAIL"),
        "summary must say FAIL:\n{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(why),
        "stderr must say `{why}`:\n{}",
        r.stderr
    );
}

#[test]
fn run_sh_passes_only_a_complete_console_and_names_every_problem() {
    let s = Scratch::new("vm-runner");
    setup(&s);

    // The control: every expected check passed and the VM finished.
    let ok = run(&s, &console(&[MOUNTS, LOOPBACK, BINARIES, DONE]), "20");
    assert_eq!(
        ok.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        ok.stdout,
        ok.stderr
    );
    assert!(
        ok.stdout.contains("status=PASS pass=3 fail=0"),
        "{}",
        ok.stdout
    );

    let missing = run(&s, &console(&[MOUNTS, BINARIES, DONE]), "20");
    assert_fails(&missing, "missing result boot/loopback");

    let failed = run(
        &s,
        &console(&[
            MOUNTS,
            "GUARD-VM-RESULT boot/loopback FAIL lo down",
            BINARIES,
            DONE,
        ]),
        "20",
    );
    assert_fails(&failed, "1 check(s) FAILed");

    // Only PASS counts as a pass: any other word for a present check fails the run.
    for word in ["SKIP", "pass", "PASSED", "WARN", "ok"] {
        let line = format!("GUARD-VM-RESULT boot/loopback {word} lo state unknown");
        let odd = run(&s, &console(&[MOUNTS, &line, BINARIES, DONE]), "20");
        assert_fails(
            &odd,
            &format!("result boot/loopback has status '{word}' (only PASS or FAIL exist)"),
        );
        assert!(
            odd.stderr
                .contains("expected check boot/loopback did not PASS"),
            "{word}: {}",
            odd.stderr
        );
    }
    // An unexpected extra check with an unknown status fails too.
    let extra = run(
        &s,
        &console(&[
            MOUNTS,
            LOOPBACK,
            BINARIES,
            "GUARD-VM-RESULT boot/extra MAYBE",
            DONE,
        ]),
        "20",
    );
    assert_fails(&extra, "result boot/extra has status 'MAYBE'");

    let unfinished = run(&s, &console(&[MOUNTS, LOOPBACK, BINARIES]), "20");
    assert_fails(&unfinished, "the VM never printed GUARD-VM-DONE");

    let silent = run(&s, &console(&["Linux version 6.1", "Kernel panic"]), "20");
    assert_fails(&silent, "no GUARD-VM-RESULT line on the console");

    let t0 = std::time::Instant::now();
    let hung = run(&s, "hang", "2");
    assert_fails(&hung, "qemu timed out after 2s");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "the timeout did not stop the VM: {:?}",
        t0.elapsed()
    );
}
