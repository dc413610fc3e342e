//! Host layer: `guard doctor` tells the truth about this kernel. Its BPF LSM verdict is checked
//! against an independent probe, a raw `BPF_PROG_LOAD` of a two-instruction LSM program.

use std::process::Command;

use guard_tests::harness::{can_run, guard_bin, is_root, raw_lsm_load};

struct Line {
    status: String,
    name: String,
    detail: String,
    hint: Option<String>,
}

fn parse(out: &str) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for l in out.lines() {
        if let Some(h) = l.trim_start().strip_prefix("hint: ") {
            let last = lines.last_mut().expect("a hint follows a check line");
            last.hint = Some(h.to_owned());
            continue;
        }
        let mut it = l.splitn(2, "  ");
        let status = it.next().unwrap_or_default().to_owned();
        let rest = it.next().unwrap_or_default().trim_start();
        let (name, detail) = rest.split_once(' ').unwrap_or((rest, ""));
        lines.push(Line {
            status,
            name: name.to_owned(),
            detail: detail.trim().to_owned(),
            hint: None,
        });
    }
    lines
}

#[test]
fn doctor_reports_bpf_lsm_as_the_kernel_actually_behaves() {
    if !can_run(is_root(), "needs root to load BPF programs") {
        return;
    }
    let out = Command::new(guard_bin())
        .arg("doctor")
        .output()
        .expect("running guard doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = parse(&text);
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    for want in [
        "kernel",
        "btf",
        "tracepoints",
        "bpf-lsm",
        "policy",
        "cgroup-v2",
        "bpffs",
        "capabilities",
        "docker",
    ] {
        assert!(names.contains(&want), "no `{want}` line in:\n{text}");
    }
    for l in &lines {
        assert!(
            ["PASS", "WARN", "FAIL"].contains(&l.status.as_str()),
            "bad status in line for {}:\n{text}",
            l.name
        );
        if l.status != "PASS" {
            assert!(
                l.hint.as_deref().is_some_and(|h| !h.is_empty()),
                "{} {} has no hint:\n{text}",
                l.status,
                l.name
            );
        }
    }
    let any_fail = lines.iter().any(|l| l.status == "FAIL");
    assert_eq!(out.status.code(), Some(i32::from(any_fail)), "{text}");

    let get = |n: &str| lines.iter().find(|l| l.name == n).expect("line present");
    // bpffs, against the mount table (mount point is field 5, fs type follows " - ").
    let bpffs_mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("reading mountinfo")
        .lines()
        .any(|l| {
            let point = l.split(' ').nth(4);
            let fstype = l.split(" - ").nth(1).and_then(|t| t.split(' ').next());
            point == Some("/sys/fs/bpf") && fstype == Some("bpf")
        });
    let want = if bpffs_mounted { "PASS" } else { "WARN" };
    assert_eq!(get("bpffs").status, want, "{text}");
    let (lsm, policy) = (get("bpf-lsm"), get("policy"));
    // Read after doctor, which mounts securityfs when it is missing.
    let listed = std::fs::read_to_string("/sys/kernel/security/lsm")
        .expect("reading the active LSM list")
        .trim()
        .split(',')
        .any(|m| m == "bpf");
    match raw_lsm_load() {
        Ok(()) => {
            assert_eq!(lsm.status, "PASS", "the kernel loads LSM programs:\n{text}");
            assert!(policy.detail.starts_with("backend bpf-lsm"), "{text}");
        }
        Err(errno) => {
            eprintln!("this kernel refuses LSM programs with errno {errno}; bpf listed: {listed}");
            assert_eq!(lsm.status, "WARN", "{text}");
            let expect = if listed {
                "bpf is listed"
            } else {
                "bpf is not an active LSM"
            };
            assert!(lsm.detail.contains(expect), "{text}");
            assert!(
                lsm.detail.contains(&format!("(os error {errno})")),
                "doctor does not name the kernel's errno {errno}:\n{text}"
            );
            // What it means for enforcement: the backend without LSM (fanotify where
            // permission events work, as here), in the detail and the hint.
            assert!(policy.detail.starts_with("backend fanotify"), "{text}");
            // Connect is refused before any packet on every backend (sock_addr programs);
            // link and rename into sealed directories (fanotify backend).
            assert!(
                policy.detail.contains(
                    "denied: exec, open read, open write, link, rename, connect, sendmsg"
                ),
                "{text}"
            );
            assert!(
                lsm.hint
                    .as_deref()
                    .unwrap_or("")
                    .contains("policies use the fanotify backend"),
                "{text}"
            );
        }
    }
}
