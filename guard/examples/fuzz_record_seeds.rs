//! Writes seed records for the `record_decode` fuzz target (fuzz/seed.sh runs it): valid
//! ring-buffer records of every kind, built from guard-ebpf's shared layouts, one file per
//! record, plus a few multi-record streams (fork, exec, open, connect, exit of one process).
//! Every record is decoded before it is written, so a seed that stops decoding fails here.
//!
//! Run: cargo run -p guard --example fuzz_record_seeds -- DIR

use guard::events::{Clock, decode};
use guard_ebpf::{
    DecisionBody, EventHeader, EventKind, ExecBody, ExecDeniedBody, ExitBody, ForkBody,
    SyscallBody, decision_op, hook, reason, syscalls as sc, verdict,
};

fn as_bytes<T>(v: &T) -> &[u8] {
    // SAFETY: viewing a plain repr(C) value as bytes.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

fn record<B>(kind: EventKind, pid: u32, ret: i64, body: &B, p0: &[u8], p1: &[u8]) -> Vec<u8> {
    // SAFETY: all-zero is a valid header.
    let mut h: EventHeader = unsafe { std::mem::zeroed() };
    h.kind = kind as u16;
    h.pid = pid;
    h.tid = pid;
    h.ppid = 1;
    h.cgroup_id = 4242;
    h.boot_ns = 5_000_000_000;
    h.loginuid = u32::MAX;
    h.ret = ret;
    h.comm[..4].copy_from_slice(b"bash");
    h.body_len = size_of::<B>() as u32;
    h.len0 = p0.len() as u16;
    h.len1 = p1.len() as u16;
    let mut v = as_bytes(&h).to_vec();
    v.extend_from_slice(as_bytes(body));
    v.extend_from_slice(p0);
    v.extend_from_slice(p1);
    v
}

fn syscall(nr: u32, args: [u64; 6], ret: i64, p0: &[u8], p1: &[u8]) -> Vec<u8> {
    let body = SyscallBody { nr, _pad: 0, args };
    record(EventKind::Syscall, 100, ret, &body, p0, p1)
}

fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut v = 2u16.to_ne_bytes().to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&ip);
    v.resize(16, 0);
    v
}

fn sockaddr_in6(port: u16) -> Vec<u8> {
    let mut v = 10u16.to_ne_bytes().to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v.extend_from_slice(&[0; 4]);
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: fuzz_record_seeds DIR")?;
    std::fs::create_dir_all(&dir)?;
    const AT_FDCWD: u64 = (-100i64) as u64;
    let exec = record(
        EventKind::Exec,
        100,
        0,
        &ExecBody {
            args_total: 27,
            ..ExecBody::default()
        },
        b"/usr/bin/curl\0",
        b"curl\0-s\0http://10.0.0.1/x\0",
    );
    let decision = |op, v, r, path: &[u8]| {
        let body = DecisionBody {
            policy_id: 3,
            op,
            verdict: v,
            reason: r,
            family: if op == decision_op::CONNECT { 4 } else { 0 },
            access: 2,
            port: 443,
            hook: match op {
                decision_op::EXEC => hook::BPRM_CHECK_SECURITY,
                decision_op::OPEN => hook::FILE_OPEN,
                _ => hook::SOCKET_CONNECT,
            },
            _pad: 0,
            addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dev: 8,
            ino: 1234,
        };
        record(EventKind::Decision, 100, -1, &body, path, b"")
    };
    let singles: Vec<(&str, Vec<u8>)> = vec![
        ("exec", exec.clone()),
        (
            "exec_denied",
            record(
                EventKind::ExecDenied,
                100,
                -1,
                &ExecDeniedBody {
                    policy_id: 2,
                    _pad: 0,
                },
                b"",
                b"",
            ),
        ),
        (
            "fork",
            record(
                EventKind::Fork,
                100,
                0,
                &ForkBody {
                    child_pid: 101,
                    child_tid: 101,
                },
                b"",
                b"",
            ),
        ),
        (
            "exit",
            record(
                EventKind::Exit,
                100,
                0,
                &ExitBody {
                    exit_code: 256,
                    _pad: 0,
                },
                b"",
                b"",
            ),
        ),
        (
            "decision_exec",
            decision(
                decision_op::EXEC,
                verdict::DENY,
                reason::DENY_LIST,
                b"/usr/bin/nc\0",
            ),
        ),
        (
            "decision_open",
            decision(
                decision_op::OPEN,
                verdict::WOULD_DENY,
                reason::NOT_ALLOWED,
                b"/etc/shadow\0",
            ),
        ),
        (
            "decision_connect",
            decision(
                decision_op::CONNECT,
                verdict::KILL,
                reason::NOT_ALLOWED,
                b"",
            ),
        ),
        (
            "openat",
            syscall(
                sc::OPENAT,
                [AT_FDCWD, 0, 0o2101, 0o644, 0, 0],
                3,
                b"etc/shadow\0",
                b"",
            ),
        ),
        (
            "openat_dirfd",
            syscall(sc::OPENAT, [5, 0, 0, 0, 0, 0], 3, b"../x\0", b"/var/lib\0"),
        ),
        (
            "openat2",
            syscall(
                sc::OPENAT2,
                [AT_FDCWD, 0, 0, 24, 0, 0],
                3,
                b"/root/.ssh/id_rsa\0",
                &[0; 24],
            ),
        ),
        (
            "creat",
            syscall(sc::CREAT, [0, 0o600, 0, 0, 0, 0], 3, b"/tmp/x\0", b""),
        ),
        (
            "connect4",
            syscall(
                sc::CONNECT,
                [3, 0, 16, 0, 0, 0],
                0,
                &sockaddr_in([10, 0, 0, 1], 443),
                b"",
            ),
        ),
        (
            "connect6",
            syscall(
                sc::CONNECT,
                [3, 0, 28, 0, 0, 0],
                -111,
                &sockaddr_in6(8080),
                b"",
            ),
        ),
        (
            "connect_unix",
            syscall(
                sc::CONNECT,
                [3, 0, 22, 0, 0, 0],
                0,
                b"\x01\x00/run/docker.sock\0",
                b"",
            ),
        ),
        (
            "socket",
            syscall(sc::SOCKET, [2, 1, 6, 0, 0, 0], 3, b"", b""),
        ),
        ("dup2", syscall(sc::DUP2, [3, 1, 0, 0, 0, 0], 1, b"", b"")),
        ("chdir", syscall(sc::CHDIR, [0; 6], 0, b"/etc\0", b"")),
        (
            "fchdir",
            syscall(sc::FCHDIR, [4, 0, 0, 0, 0, 0], 0, b"", b""),
        ),
        (
            "renameat2",
            syscall(
                sc::RENAMEAT2,
                [AT_FDCWD, 0, AT_FDCWD, 0, 0, 0],
                0,
                b"/tmp/a\0",
                b"/usr/bin/a\0",
            ),
        ),
        (
            "symlink",
            syscall(sc::SYMLINK, [0; 6], 0, b"/etc/shadow\0", b"/tmp/s\0"),
        ),
        (
            "linkat",
            syscall(
                sc::LINKAT,
                [AT_FDCWD, 0, AT_FDCWD, 0, 0, 0],
                0,
                b"/etc/passwd\0",
                b"p\0",
            ),
        ),
        (
            "unlinkat",
            syscall(
                sc::UNLINKAT,
                [AT_FDCWD, 0, 0, 0, 0, 0],
                0,
                b"/var/log/syslog\0",
                b"",
            ),
        ),
        (
            "fchmodat",
            syscall(
                sc::FCHMODAT,
                [AT_FDCWD, 0, 0o4755, 0, 0, 0],
                0,
                b"/tmp/x\0",
                b"",
            ),
        ),
        (
            "setresuid",
            syscall(
                sc::SETRESUID,
                [0, u32::MAX as u64, 1000, 0, 0, 0],
                0,
                b"",
                b"",
            ),
        ),
        ("setuid", syscall(sc::SETUID, [0; 6], 0, b"", b"")),
        (
            "ptrace",
            syscall(sc::PTRACE, [16, 1, 0, 0, 0, 0], 0, b"", b""),
        ),
        (
            "mount",
            syscall(sc::MOUNT, [0; 6], 0, b"/dev/sda1\0", b"/mnt\0"),
        ),
        (
            "memfd_create",
            syscall(sc::MEMFD_CREATE, [0, 1, 0, 0, 0, 0], 3, b"x\0", b""),
        ),
        (
            "finit_module",
            syscall(sc::FINIT_MODULE, [3, 0, 0, 0, 0, 0], 0, b"", b""),
        ),
        ("bpf", syscall(sc::BPF, [5, 0, 0, 0, 0, 0], 3, b"", b"")),
    ];
    let clock = Clock::with_offset(0);
    for (name, rec) in &singles {
        decode(rec, &clock).map_err(|e| format!("seed {name} does not decode: {e}"))?;
        std::fs::write(format!("{dir}/{name}.bin"), rec)?;
    }
    // Streams: one process's life, records back to back as the ring buffer hands them over.
    let get = |n: &str| {
        singles
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    let streams: [(&str, &[&str]); 3] = [
        ("stream_shell", &["fork", "exec", "chdir", "openat", "exit"]),
        (
            "stream_net",
            &["exec", "socket", "connect4", "dup2", "connect6", "exit"],
        ),
        (
            "stream_files",
            &[
                "exec",
                "openat_dirfd",
                "renameat2",
                "symlink",
                "unlinkat",
                "decision_open",
            ],
        ),
    ];
    for (name, parts) in streams {
        let v: Vec<u8> = parts.iter().flat_map(|p| get(p)).collect();
        std::fs::write(format!("{dir}/{name}.bin"), v)?;
    }
    println!("{} record seeds in {dir}", singles.len() + streams.len());
    Ok(())
}
