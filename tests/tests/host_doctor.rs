//! Host layer: `guard doctor` tells the truth about this kernel. Its BPF LSM verdict is checked
//! against an independent probe, a raw `BPF_PROG_LOAD` of a two-instruction LSM program.

use std::process::Command;

use guard_tests::harness::{can_run, guard_bin, is_root};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_LSM: u32 = 29;
const BPF_LSM_MAC: u32 = 27;

/// Loads `r0 = 0; exit` as an LSM program for `bprm_check_security`; the errno on refusal.
fn raw_lsm_load() -> Result<(), i32> {
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let btf_id = btf
        .id_by_type_name_kind("bpf_lsm_bprm_check_security", aya_obj::btf::BtfKind::Func)
        .expect("bpf_lsm_bprm_check_security in BTF");
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    // union bpf_attr, BPF_PROG_LOAD part (offsets from include/uapi/linux/bpf.h).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_LSM.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[68..72].copy_from_slice(&BPF_LSM_MAC.to_ne_bytes());
    attr[108..112].copy_from_slice(&btf_id.to_ne_bytes());
    // SAFETY: attr is a valid, zero-padded bpf_attr whose pointers outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: fd is the program descriptor just returned to us.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

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
            // What it means for enforcement: the fallback, in the detail and the hint.
            assert!(
                policy.detail.starts_with("backend sigkill-fallback"),
                "{text}"
            );
            assert!(policy.detail.contains("killed"), "{text}");
            assert!(
                lsm.hint.as_deref().unwrap_or("").contains("SIGKILL"),
                "{text}"
            );
        }
    }
}
