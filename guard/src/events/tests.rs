use guard_ebpf::{
    DecisionBody, EventHeader, ExecBody, FLAG_FAULT0, FLAG_FAULT1, SyscallBody, decision_op, hook,
    reason, syscalls as sc, verdict,
};

use super::*;

fn as_bytes<T>(v: &T) -> &[u8] {
    // SAFETY: viewing a repr(C) value as bytes.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

fn header(kind: EventKind, body_len: usize, len0: usize, len1: usize) -> EventHeader {
    // SAFETY: all-zero is a valid header.
    let mut h: EventHeader = unsafe { std::mem::zeroed() };
    h.kind = kind as u16;
    h.pid = 42;
    h.tid = 42;
    h.cgroup_id = 7;
    h.boot_ns = 1_000;
    h.loginuid = u32::MAX;
    h.comm[..2].copy_from_slice(b"sh");
    h.body_len = body_len as u32;
    h.len0 = len0 as u16;
    h.len1 = len1 as u16;
    h
}

fn record<B>(kind: EventKind, body: &B, p0: &[u8], p1: &[u8]) -> Vec<u8> {
    let h = header(kind, size_of::<B>(), p0.len(), p1.len());
    let mut v = as_bytes(&h).to_vec();
    v.extend_from_slice(as_bytes(body));
    v.extend_from_slice(p0);
    v.extend_from_slice(p1);
    v
}

fn syscall(nr: u32, args: [u64; 6], p0: &[u8], p1: &[u8]) -> Vec<u8> {
    record(
        EventKind::Syscall,
        &SyscallBody { nr, _pad: 0, args },
        p0,
        p1,
    )
}

fn clock() -> Clock {
    Clock::with_offset(5)
}

#[test]
fn decodes_exec_with_argv() {
    let rec = record(
        EventKind::Exec,
        &ExecBody {
            args_total: 12,
            ..ExecBody::default()
        },
        b"/bin/sh",
        b"sh\0-c\0\0echo\0",
    );
    let ev = decode(&rec, &clock()).expect("decode");
    let Event::Exec(e) = ev else {
        panic!("wrong kind: {ev:?}")
    };
    assert_eq!(e.filename.text, "/bin/sh");
    assert_eq!(e.argv, ["sh", "-c", "", "echo"]);
    assert!(!e.argv_truncated);
    assert_eq!(e.common.pid, 42);
    assert_eq!(e.common.cgroup_id, CgroupId(7));
    assert_eq!(e.common.time_ns, 1_005);
    assert_eq!(e.common.comm, "sh");
    assert_eq!(e.common.loginuid, None);
}

#[test]
fn decodes_openat_and_creat() {
    let rec = syscall(
        sc::OPENAT,
        [AT_FDCWD as u32 as u64, 0, 0o2001, 0o644, 0, 0],
        b"shadow",
        b"",
    );
    let Ok(Event::Open(o)) = decode(&rec, &clock()) else {
        panic!("not an open")
    };
    assert_eq!(
        (o.syscall, o.dirfd, o.flags, o.mode),
        ("openat", AT_FDCWD, 0o2001, 0o644)
    );
    assert_eq!(o.path.text, "shadow");
    let rec = syscall(sc::CREAT, [0, 0o600, 0, 0, 0, 0], b"/tmp/x", b"");
    let Ok(Event::Open(o)) = decode(&rec, &clock()) else {
        panic!("not an open")
    };
    assert_eq!(o.flags, 0o1101);
}

#[test]
fn decodes_connect_families() {
    let mut v4 = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
    v4.extend_from_slice(&[0; 8]);
    let Ok(Event::Connect(c)) = decode(
        &syscall(sc::CONNECT, [3, 0, 16, 0, 0, 0], &v4, b""),
        &clock(),
    ) else {
        panic!("not a connect")
    };
    assert_eq!(
        c.addr,
        SockAddr::Inet {
            addr: Ipv4Addr::LOCALHOST,
            port: 8080
        }
    );
    let mut v6 = vec![10u8, 0, 0, 80, 0, 0, 0, 0];
    v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&[0; 4]);
    let Ok(Event::Connect(c)) = decode(
        &syscall(sc::CONNECT, [3, 0, 28, 0, 0, 0], &v6, b""),
        &clock(),
    ) else {
        panic!("not a connect")
    };
    assert_eq!(
        c.addr,
        SockAddr::Inet6 {
            addr: Ipv6Addr::LOCALHOST,
            port: 80
        }
    );
    let un = b"\x01\x00/run/x.sock\0";
    let Ok(Event::Connect(c)) = decode(
        &syscall(sc::CONNECT, [3, 0, 14, 0, 0, 0], un, b""),
        &clock(),
    ) else {
        panic!("not a connect")
    };
    assert_eq!(
        c.addr,
        SockAddr::Unix {
            path: "/run/x.sock".into(),
            abstract_ns: false
        }
    );
    let Ok(Event::Connect(c)) = decode(
        &syscall(sc::CONNECT, [3, 0, 1, 0, 0, 0], b"\x02", b""),
        &clock(),
    ) else {
        panic!("not a connect")
    };
    assert_eq!(c.addr, SockAddr::Invalid);
}

#[test]
fn decodes_rename_and_setid() {
    let rec = syscall(
        sc::RENAMEAT2,
        [AT_FDCWD as u32 as u64, 0, 5, 0, 1, 0],
        b"a",
        b"b",
    );
    let Ok(Event::Rename(r)) = decode(&rec, &clock()) else {
        panic!("not a rename")
    };
    assert_eq!(
        (
            r.old_path.text.as_str(),
            r.new_path.text.as_str(),
            r.new_dirfd,
            r.flags
        ),
        ("a", "b", 5, 1)
    );
    let rec = syscall(sc::SETRESUID, [0, u32::MAX as u64, 1000, 0, 0, 0], b"", b"");
    let Ok(Event::SetId(s)) = decode(&rec, &clock()) else {
        panic!("not setid")
    };
    assert_eq!(s.ids, vec![Some(0), None, Some(1000)]);
}

#[test]
fn malformed_records_are_errors_not_panics() {
    let rec = syscall(sc::OPENAT, [0; 6], b"/etc/passwd", b"");
    for cut in 0..rec.len() {
        assert!(decode(&rec[..cut], &clock()).is_err(), "cut at {cut}");
    }
    // Unknown kind.
    let mut bad = rec.clone();
    bad[0] = 0xff;
    bad[1] = 0x7f;
    assert_eq!(
        decode(&bad, &clock()),
        Err(DecodeError::UnknownKind(0x7fff))
    );
    // Payload length beyond the maximum.
    let mut bad = rec.clone();
    let off = std::mem::offset_of!(EventHeader, len0);
    bad[off..off + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(
        decode(&bad, &clock()),
        Err(DecodeError::PayloadLen(u16::MAX))
    );
    // Body length that does not match the kind.
    let mut bad = rec.clone();
    let off = std::mem::offset_of!(EventHeader, body_len);
    bad[off..off + 4].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(
        decode(&bad, &clock()),
        Err(DecodeError::BodyLen { .. })
    ));
    // Untraced syscall number.
    let rec = syscall(9999, [0; 6], b"", b"");
    assert_eq!(
        decode(&rec, &clock()),
        Err(DecodeError::UnknownSyscall(9999))
    );
    // Random bytes never panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..600 {
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = decode(&buf, &clock());
    }
}

fn decision(body: &DecisionBody, path: &[u8]) -> Vec<u8> {
    record(EventKind::Decision, body, path, b"")
}

fn exec_deny() -> DecisionBody {
    DecisionBody {
        policy_id: 3,
        op: decision_op::EXEC,
        verdict: verdict::DENY,
        reason: reason::DENY_LIST,
        hook: hook::BPRM_CHECK_SECURITY,
        ino: 99,
        dev: 8,
        ..DecisionBody::default()
    }
}

#[test]
fn decodes_decisions_into_typed_kinds() {
    let Ok(Event::Decision(d)) = decode(&decision(&exec_deny(), b"/usr/bin/nc"), &clock()) else {
        panic!("not a decision")
    };
    assert_eq!(
        (d.op, d.verdict, d.reason, d.hook),
        (
            Operation::Exec,
            Verdict::Deny,
            Reason::DenyList,
            Hook::BprmCheckSecurity
        )
    );
    assert_eq!(
        (d.path.text.as_str(), d.access, d.inode),
        ("/usr/bin/nc", None, Some((8, 99)))
    );
    let json = serde_json::to_value(&d).expect("serializes");
    assert_eq!(json["op"], "exec");
    assert_eq!(json["verdict"], "deny");
    assert_eq!(json["reason"], "deny_list");
    assert_eq!(json["hook"], "bprm_check_security");

    let open = DecisionBody {
        op: decision_op::OPEN,
        verdict: verdict::WOULD_DENY,
        hook: hook::FILE_OPEN,
        access: 3,
        ..exec_deny()
    };
    let Ok(Event::Decision(d)) = decode(&decision(&open, b"/etc/shadow"), &clock()) else {
        panic!("not a decision")
    };
    assert_eq!(
        (d.access, d.hook),
        (Some(Access::ReadWrite), Hook::FileOpen)
    );
    assert_eq!(
        serde_json::to_value(&d).expect("json")["access"],
        "read_write"
    );

    // Network decisions carry the destination the kernel would have reached, no inode.
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    let sendmsg = DecisionBody {
        op: decision_op::SENDMSG,
        hook: hook::CGROUP_SENDMSG4,
        family: 4,
        port: 7002,
        addr,
        ..exec_deny()
    };
    let Ok(Event::Decision(d)) = decode(&decision(&sendmsg, b""), &clock()) else {
        panic!("not a decision")
    };
    assert_eq!((d.op, d.hook), (Operation::Sendmsg, Hook::CgroupSendmsg4));
    assert_eq!(d.dest, Some("127.0.0.1:7002".parse().expect("addr")));
    assert_eq!(d.inode, None);
    let connect6 = DecisionBody {
        op: decision_op::CONNECT,
        hook: hook::CGROUP_CONNECT6,
        family: 6,
        port: 443,
        addr: std::net::Ipv6Addr::LOCALHOST.octets(),
        ..exec_deny()
    };
    let Ok(Event::Decision(d)) = decode(&decision(&connect6, b""), &clock()) else {
        panic!("not a decision")
    };
    assert_eq!(d.dest, Some("[::1]:443".parse().expect("addr")));
    assert_eq!(
        serde_json::to_value(&d).expect("json")["hook"],
        "cgroup_connect6"
    );

    let kill = DecisionBody {
        op: decision_op::SIGNAL,
        reason: reason::SELF_PROTECT,
        hook: hook::TASK_KILL,
        access: 9,
        ino: 1234,
        ..exec_deny()
    };
    let Ok(Event::Decision(d)) = decode(&decision(&kill, b""), &clock()) else {
        panic!("not a decision")
    };
    assert_eq!((d.op, d.hook), (Operation::Signal, Hook::TaskKill));
    assert_eq!(
        d.self_protect,
        Some(SelfProtectDetail {
            arg: 9,
            target: 1234,
            class: 0
        })
    );
}

/// The exec backstop's failed `bpf_send_signal`: `kill_failed` with the errno as the reason;
/// a sent signal carries no reason.
#[test]
fn exec_backstop_kill_failed_carries_the_errno() {
    let failed = DecisionBody {
        verdict: verdict::KILL_FAILED,
        hook: hook::SCHED_PROCESS_EXEC,
        access: libc::EPERM as u32,
        ..exec_deny()
    };
    let Ok(Event::Decision(d)) = decode(&decision(&failed, b"/bin/sh\0"), &clock()) else {
        panic!("not a decision")
    };
    assert_eq!(d.verdict, Verdict::KillFailed);
    assert_eq!(d.access, None);
    let why = d.kill_error.expect("a reason");
    assert!(
        why.starts_with("bpf_send_signal: Operation not permitted"),
        "{why}"
    );
    let sent = DecisionBody {
        verdict: verdict::KILL,
        hook: hook::SCHED_PROCESS_EXEC,
        ..exec_deny()
    };
    let Ok(Event::Decision(d)) = decode(&decision(&sent, b"/bin/sh\0"), &clock()) else {
        panic!("not a decision")
    };
    assert_eq!((d.verdict, d.kill_error), (Verdict::Kill, None));
}

#[test]
fn unknown_decision_bytes_are_decode_errors() {
    let cases = [
        (
            DecisionBody {
                op: 0,
                ..exec_deny()
            },
            DecodeError::UnknownOp(UnknownOperation(0)),
        ),
        (
            DecisionBody {
                op: 200,
                ..exec_deny()
            },
            DecodeError::UnknownOp(UnknownOperation(200)),
        ),
        (
            DecisionBody {
                verdict: 9,
                ..exec_deny()
            },
            DecodeError::UnknownVerdict(UnknownVerdict(9)),
        ),
        (
            DecisionBody {
                reason: 0,
                ..exec_deny()
            },
            DecodeError::UnknownReason(UnknownReason(0)),
        ),
        (
            DecisionBody {
                hook: 0,
                ..exec_deny()
            },
            DecodeError::UnknownHook(UnknownHook(0)),
        ),
        (
            DecisionBody {
                hook: 77,
                ..exec_deny()
            },
            DecodeError::UnknownHook(UnknownHook(77)),
        ),
        (
            DecisionBody {
                op: decision_op::OPEN,
                access: 4,
                ..exec_deny()
            },
            DecodeError::UnknownAccess(UnknownAccess(4)),
        ),
        (
            DecisionBody {
                reason: reason::SELF_PROTECT,
                ..exec_deny()
            },
            DecodeError::OpReasonMismatch {
                op: Operation::Exec,
                reason: Reason::SelfProtect,
            },
        ),
        (
            DecisionBody {
                op: decision_op::PTRACE,
                ..exec_deny()
            },
            DecodeError::OpReasonMismatch {
                op: Operation::Ptrace,
                reason: Reason::DenyList,
            },
        ),
    ];
    for (body, want) in cases {
        assert_eq!(decode(&decision(&body, b"/x"), &clock()), Err(want));
    }
}

#[test]
fn the_agents_decode_error_count_counts_unknown_decision_bytes() {
    // The path the agent's record handler takes (`decode_counted`); the counter is what
    // `/metrics` and the drop reports show as decode errors. No other test calls it.
    let before = DECODE_ERRORS.load(Ordering::Relaxed);
    let good = decision(&exec_deny(), b"/usr/bin/nc");
    assert!(decode_counted(&good, &clock()).is_ok());
    assert_eq!(DECODE_ERRORS.load(Ordering::Relaxed), before);
    let bad = [
        DecisionBody {
            op: 99,
            ..exec_deny()
        },
        DecisionBody {
            verdict: 99,
            ..exec_deny()
        },
        DecisionBody {
            reason: 99,
            ..exec_deny()
        },
        DecisionBody {
            hook: 99,
            ..exec_deny()
        },
    ];
    for (i, body) in bad.iter().enumerate() {
        assert!(decode_counted(&decision(body, b"/x"), &clock()).is_err());
        assert_eq!(DECODE_ERRORS.load(Ordering::Relaxed), before + i as u64 + 1);
    }
}

/// An open record with flags `flags` in its header (the kernel path bits).
fn open_with(nr: u32, p0: &[u8], p1: &[u8], flags: u16) -> Vec<u8> {
    let mut rec = syscall(nr, [AT_FDCWD as u32 as u64, 0, 0, 0, 0, 0], p0, p1);
    let off = std::mem::offset_of!(EventHeader, flags);
    rec[off..off + 2].copy_from_slice(&flags.to_ne_bytes());
    rec
}

fn kernel_path_of(rec: &[u8]) -> Result<KernelPath, DecodeError> {
    match decode(rec, &clock())? {
        Event::Open(o) => Ok(o.kernel_path),
        other => panic!("wrong kind: {other:?}"),
    }
}

#[test]
fn decodes_the_kernel_path_of_an_open() {
    use guard_ebpf::{FLAG_KPATH, FLAG_KPATH_CUT};
    let ok = open_with(sc::OPENAT, b"/tmp/s", b"/etc/shadow", FLAG_KPATH);
    assert_eq!(
        kernel_path_of(&ok).expect("decode"),
        KernelPath::Resolved("/etc/shadow".into())
    );
    // openat2: the path follows the 24-byte open_how, whose flags still decode.
    let mut p1 = 0o2u64.to_ne_bytes().to_vec();
    p1.extend_from_slice(&[0u8; 16]);
    p1.extend_from_slice(b"/etc/passwd");
    let rec = open_with(sc::OPENAT2, b"/tmp/p", &p1, FLAG_KPATH);
    let Event::Open(o) = decode(&rec, &clock()).expect("decode") else {
        panic!("not an open")
    };
    assert_eq!(o.flags, 0o2);
    assert_eq!(o.kernel_path, KernelPath::Resolved("/etc/passwd".into()));
    // A cut walk, a failed open, and no flag at all.
    let cut = open_with(sc::OPENAT, b"/tmp/s", b"", FLAG_KPATH_CUT);
    assert_eq!(
        kernel_path_of(&cut).expect("decode"),
        KernelPath::Unresolved
    );
    let none = open_with(sc::OPENAT, b"/tmp/s", b"", 0);
    assert_eq!(kernel_path_of(&none).expect("decode"), KernelPath::Absent);
    // Malformed: both flags, a relative or empty path, a NUL inside, openat2 without open_how.
    for (nr, p1, flags) in [
        (sc::OPENAT, &b"/etc/shadow"[..], FLAG_KPATH | FLAG_KPATH_CUT),
        (sc::OPENAT, b"etc/shadow", FLAG_KPATH),
        (sc::OPENAT, b"", FLAG_KPATH),
        (sc::OPENAT, b"/etc\0/shadow", FLAG_KPATH),
        (sc::OPENAT2, b"/etc/shadow", FLAG_KPATH),
    ] {
        assert!(
            matches!(
                kernel_path_of(&open_with(nr, b"/x", p1, flags)),
                Err(DecodeError::KernelPath(_))
            ),
            "{:?}",
            String::from_utf8_lossy(p1)
        );
    }
}

#[test]
fn decodes_the_executed_files_inode() {
    use guard_ebpf::exec_flags;
    let body = ExecBody {
        args_total: 3,
        flags: exec_flags::EXE_INODE,
        exe_ino: 77,
        exe_ctime_sec: 2,
        exe_ctime_nsec: 5,
        exe_mtime_sec: 1,
        exe_mtime_nsec: 999_999_999,
        ..ExecBody::default()
    };
    let exec = |b: &ExecBody| match decode(&record(EventKind::Exec, b, b"/x", b"x\0"), &clock()) {
        Ok(Event::Exec(e)) => Ok(e.exe_inode),
        Ok(other) => panic!("wrong kind: {other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(
        exec(&body).expect("decode"),
        Some(ExeInode {
            ino: 77,
            ctime_ns: Some(2_000_000_005),
            mtime_ns: Some(1_999_999_999),
        })
    );
    // Not read by the kernel: no inode. Before the epoch: no time.
    let none = ExecBody { flags: 0, ..body };
    assert_eq!(exec(&none).expect("decode"), None);
    let old = ExecBody {
        exe_mtime_sec: -1,
        ..body
    };
    assert_eq!(exec(&old).expect("decode").and_then(|i| i.mtime_ns), None);
    // Unknown flags and out-of-range nanoseconds are malformed records.
    for bad in [
        ExecBody { flags: 8, ..body },
        ExecBody {
            exe_ctime_nsec: 1_000_000_000,
            ..body
        },
    ] {
        assert!(matches!(exec(&bad), Err(DecodeError::ExecFlags(_))));
    }
}

/// The pid namespace's start: a boot-clock time turned into wall time like every record time;
/// absent without its flag.
#[test]
fn decodes_the_pid_namespace_start() {
    use guard_ebpf::exec_flags;
    let body = ExecBody {
        args_total: 2,
        flags: exec_flags::PIDNS_START,
        pidns_start_boot_ns: 3_000_000_000,
        ..ExecBody::default()
    };
    let exec = |b: &ExecBody| match decode(&record(EventKind::Exec, b, b"/x", b"x\0"), &clock()) {
        Ok(Event::Exec(e)) => e.pidns_start_ns,
        other => panic!("{other:?}"),
    };
    assert_eq!(exec(&body), Some(clock().wall_ns(3_000_000_000)));
    assert_ne!(exec(&body), Some(3_000_000_000), "converted to wall time");
    // The initial namespace: boot itself.
    let init = ExecBody {
        pidns_start_boot_ns: 0,
        ..body
    };
    assert_eq!(exec(&init), Some(clock().wall_ns(0)));
    let unread = ExecBody { flags: 0, ..body };
    assert_eq!(exec(&unread), None);
}

#[test]
fn decodes_the_environment_after_argv() {
    use guard_ebpf::exec_flags;
    let exec = |env: &[u8], total: u32, flags: u32| {
        let body = ExecBody {
            args_total: 3,
            flags,
            env_total: total,
            env_len: env.len() as u32,
            ..ExecBody::default()
        };
        let mut rec = record(EventKind::Exec, &body, b"/x", b"x\0");
        rec.extend_from_slice(env);
        match decode(&rec, &clock()) {
            Ok(Event::Exec(e)) => Ok((e.env, e.env_truncated)),
            Ok(other) => panic!("wrong kind: {other:?}"),
            Err(e) => Err(e),
        }
    };
    assert_eq!(
        exec(b"A=1\0HOME=/root\0", 15, 0).expect("decode"),
        (vec!["A=1".to_string(), "HOME=/root".to_string()], false)
    );
    // Cut by the kernel's bound inside an entry: that entry is dropped, never half-kept.
    assert_eq!(
        exec(b"A=1\0HOME=/ro", 15, 0).expect("decode"),
        (vec!["A=1".to_string()], true)
    );
    // Cut right after a NUL: every entry is whole.
    assert_eq!(
        exec(b"A=1\0", 15, 0).expect("decode"),
        (vec!["A=1".to_string()], true)
    );
    // Unreadable: none, and said so.
    assert_eq!(
        exec(b"", 15, exec_flags::ENV_FAULT).expect("decode"),
        (vec![], true)
    );
    // A length beyond what the record holds, or beyond the total, is malformed.
    let body = ExecBody {
        env_total: 100,
        env_len: 50,
        ..ExecBody::default()
    };
    let short = record(EventKind::Exec, &body, b"/x", b"x\0");
    assert!(matches!(
        decode(&short, &clock()),
        Err(DecodeError::Short { .. })
    ));
    assert!(matches!(
        exec(b"A=1\0", 2, 0),
        Err(DecodeError::ExecFlags(_))
    ));
}

/// A data syscall's record with result `ret` and header flags `flags`.
fn io_record(nr: u32, args: [u64; 6], ret: i64, p0: &[u8], p1: &[u8], flags: u16) -> Vec<u8> {
    let mut h = header(
        EventKind::Syscall,
        size_of::<SyscallBody>(),
        p0.len(),
        p1.len(),
    );
    h.ret = ret;
    h.flags = flags;
    let mut v = as_bytes(&h).to_vec();
    v.extend_from_slice(as_bytes(&SyscallBody { nr, _pad: 0, args }));
    v.extend_from_slice(p0);
    v.extend_from_slice(p1);
    v
}

fn io_of(rec: &[u8]) -> Result<IoEvent, DecodeError> {
    match decode(rec, &clock())? {
        Event::Io(e) => Ok(e),
        other => panic!("wrong kind: {other:?}"),
    }
}

/// The data payload is exactly min(result, 80) bytes: a write of 5, a read of 300 (80 kept,
/// the result the full count), a failed read (no buffer, whatever the pointer held), a read
/// whose buffer was unreadable; any other length is a malformed record.
#[test]
fn decodes_data_syscalls_by_their_result() {
    let w = io_of(&io_record(
        sc::WRITE,
        [1, 0x1000, 5, 0, 0, 0],
        5,
        b"hello",
        b"",
        0,
    ))
    .expect("write");
    assert_eq!(
        (w.syscall, w.fd, w.size, w.data.as_deref()),
        ("write", 1, Some(5), Some(&b"hello"[..]))
    );
    assert_eq!((w.offset, w.dest.clone()), (None, None));
    let big = [b'x'; 80];
    let r = io_of(&io_record(
        sc::READ,
        [3, 0x1000, 4096, 0, 0, 0],
        300,
        &big,
        b"",
        0,
    ))
    .expect("read");
    assert_eq!((r.common.ret, r.data.as_deref()), (300, Some(&big[..])));
    let failed = io_of(&io_record(
        sc::READ,
        [3, 0x1000, 4096, 0, 0, 0],
        -14,
        b"",
        b"",
        0,
    ))
    .expect("failed read");
    assert_eq!(failed.data, None);
    let fault = io_of(&io_record(
        sc::READ,
        [3, 0, 9, 0, 0, 0],
        9,
        b"",
        b"",
        FLAG_FAULT0,
    ))
    .expect("fault");
    assert_eq!(fault.data, None);
    let p = io_of(&io_record(
        sc::PREAD64,
        [3, 0x1000, 9, 512, 0, 0],
        2,
        b"ab",
        b"",
        0,
    ))
    .expect("pread");
    assert_eq!((p.syscall, p.offset), ("pread", Some(512)));
    for (ret, p0) in [
        (300, &big[..79]),
        (5, &b"hell"[..]),
        (5, &b"hello!"[..]),
        (-1, &b"x"[..]),
    ] {
        let err = io_of(&io_record(
            sc::WRITE,
            [1, 0x1000, 5, 0, 0, 0],
            ret,
            p0,
            b"",
            0,
        ))
        .expect_err("malformed");
        assert_eq!(err, DecodeError::BufferLen { got: p0.len(), ret });
    }
}

/// sendto's destination (payload 1) when it passed one; none with a null address or length
/// 0 (a connected socket); unreadable: `Invalid`.
#[test]
fn decodes_sendto_destinations() {
    let mut v4 = vec![2u8, 0];
    v4.extend_from_slice(&4444u16.to_be_bytes());
    v4.extend_from_slice(&[203, 0, 113, 7]);
    v4.extend_from_slice(&[0; 8]);
    let s = io_of(&io_record(
        sc::SENDTO,
        [4, 0x1000, 2, 0, 0x2000, 16],
        2,
        b"hi",
        &v4,
        0,
    ))
    .expect("sendto");
    assert_eq!(
        s.dest,
        Some(SockAddr::Inet {
            addr: Ipv4Addr::new(203, 0, 113, 7),
            port: 4444
        })
    );
    assert_eq!(s.data.as_deref(), Some(&b"hi"[..]));
    let none = io_of(&io_record(
        sc::SENDTO,
        [4, 0x1000, 2, 0, 0, 0],
        2,
        b"hi",
        b"",
        0,
    ))
    .expect("no addr");
    assert_eq!(none.dest, None);
    let bad = io_of(&io_record(
        sc::SENDTO,
        [4, 0x1000, 2, 0, 0x2000, 16],
        2,
        b"hi",
        b"",
        FLAG_FAULT1,
    ))
    .expect("fault");
    assert_eq!(bad.dest, Some(SockAddr::Invalid));
}

/// sendmsg: the first iovec's bytes (payload 0) and `msg_name` (payload 1) when it had one
/// (a null `msg_name` or length 0: none);
/// no size (the iovecs are not copied); without a name no destination; an unreadable name
/// `Invalid`.
#[test]
fn decodes_sendmsg() {
    let mut v4 = vec![2u8, 0];
    v4.extend_from_slice(&53u16.to_be_bytes());
    v4.extend_from_slice(&[8, 8, 4, 4]);
    v4.extend_from_slice(&[0; 8]);
    // Arguments as sendmsg's entry leaves them: 2 the first iovec, 3 and 4 `msg_name`.
    let m = io_of(&io_record(
        sc::SENDMSG,
        [5, 0x1000, 0x3000, 0x2000, 16, 3],
        3,
        b"dns",
        &v4,
        0,
    ))
    .expect("sendmsg");
    assert_eq!(
        (m.syscall, m.fd, m.size, m.data.as_deref()),
        ("sendmsg", 5, None, Some(&b"dns"[..]))
    );
    assert_eq!(
        m.dest,
        Some(SockAddr::Inet {
            addr: Ipv4Addr::new(8, 8, 4, 4),
            port: 53
        })
    );
    // A null `msg_name` (or length 0): no destination.
    let none = io_of(&io_record(
        sc::SENDMSG,
        [5, 0x1000, 0x3000, 0, 16, 3],
        3,
        b"dns",
        b"",
        0,
    ))
    .expect("none");
    assert_eq!(none.dest, None);
    let bad = io_of(&io_record(
        sc::SENDMSG,
        [5, 0x1000, 0x3000, 0x2000, 16, 3],
        3,
        b"dns",
        b"",
        FLAG_FAULT1,
    ))
    .expect("fault");
    assert_eq!(bad.dest, Some(SockAddr::Invalid));
    // The first iovec (3 bytes) shorter than the result: its bytes; never more than the result.
    let short = io_of(&io_record(
        sc::SENDMSG,
        [5, 0x1000, 0x3000, 0, 0, 3],
        9,
        b"dns",
        b"",
        0,
    ))
    .expect("short first iovec");
    assert_eq!(short.data.as_deref(), Some(&b"dns"[..]));
    let err = io_of(&io_record(
        sc::SENDMSG,
        [5, 0x1000, 0x3000, 0, 0, 3],
        2,
        b"dns",
        b"",
        0,
    ))
    .expect_err("more than the result");
    assert_eq!(err, DecodeError::BufferLen { got: 3, ret: 2 });
}
