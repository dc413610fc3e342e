//! Capture tests: recycled events, socket state, names.

use super::*;
use crate::{
    events::{CgroupId, Event, ExecEvent, ForkEvent, OpenEvent},
    state::StateConfig,
};

fn common(pid: u32, comm: &str) -> Common {
    Common {
        time_ns: 1_767_225_600_000_000_000,
        cgroup_id: CgroupId(1),
        pid,
        tid: pid,
        ppid: 0,
        uid: 0,
        gid: 0,
        loginuid: None,
        comm: comm.into(),
        ret: 0,
        cpu: 0,
    }
}

fn exec(pid: u32, ppid: u32, argv: &[&str]) -> Event {
    Event::Exec(ExecEvent {
        common: Common {
            ppid,
            ..common(pid, argv[0])
        },
        filename: Captured {
            text: format!("/usr/bin/{}", argv[0]),
            ..Captured::default()
        },
        argv: argv.iter().map(|s| s.to_string()).collect(),
        argv_truncated: false,
        exe_inode: None,
        pidns_start_ns: None,
        env: Vec::new(),
        env_truncated: false,
    })
}

fn open(pid: u32) -> Event {
    Event::Open(OpenEvent {
        common: common(pid, "cat"),
        syscall: "openat",
        dirfd: AT_FDCWD,
        path: Captured {
            text: "/etc/hosts".into(),
            ..Captured::default()
        },
        flags: 0,
        mode: 0,
        resolve: None,
        kernel_path: KernelPath::Absent,
    })
}

fn capture() -> Capture {
    Capture::new(State::new(StateConfig::default()).0)
}

/// A recycled event keeps nothing of the event before it: the model of an unknown
/// process's open, built in the buffers of a long-argv process with ancestors, equals the
/// one a fresh capture builds.
#[test]
fn recycled_events_carry_nothing_over() {
    // Pids far above pid_max, so /proc knows none of them.
    let (parent, child, other) = (4_100_000, 4_100_001, 4_100_002);
    let mut c = capture();
    let long: Vec<String> = (0..50)
        .map(|i| format!("--arg-{i}={}", "x".repeat(40)))
        .collect();
    let mut argv = vec!["server"];
    argv.extend(long.iter().map(String::as_str));
    for ev in [
        exec(parent, 1, &["parent", "--flag"]),
        Event::Fork(ForkEvent {
            common: common(parent, "parent"),
            child_pid: child,
            child_tid: child,
        }),
        exec(child, parent, &argv),
    ] {
        if let Some(m) = c.process(&ev) {
            c.recycle(m);
        }
    }
    let rich = c.process(&open(child)).expect("model");
    assert_eq!(rich.proc.args.len(), 50);
    assert_eq!(
        rich.proc.ancestors.first().map(|a| a.name.as_str()),
        Some("parent")
    );
    // The open's comm is `cat`, but the process exec'd `server` and has not exec'd since:
    // its command line is the exec's (Falco's), not a mix of the two.
    assert!(rich.derived.cmdline.starts_with("server --arg-0="));
    assert_eq!(rich.proc.name, "cat");
    c.recycle(rich);

    let mut reused = c.process(&open(other)).expect("model");
    let mut fresh = capture().process(&open(other)).expect("model");
    reused.num = 0;
    fresh.num = 0;
    assert_eq!(reused, fresh);
    assert!(reused.proc.args.is_empty() && reused.proc.ancestors.is_empty());
    assert_eq!(reused.derived.cmdline, "cat");
    assert_eq!(reused.proc.cmdline_name, None);
}

/// `fd.connected` / `fd.name_changed` on connect, as Falco: a UDP socket connected, then
/// connected again to the same address (name unchanged), then to another; a socket guard
/// did not see created has no previous name (`<NA>`); events without an fd have neither.
#[test]
fn connect_state_and_no_open_writes() {
    use crate::events::{ConnectEvent, SocketEvent};
    let pid = 4_100_020;
    let mut c = capture();
    let connect = |fd: i32, ip: [u8; 4], ret: i64| {
        Event::Connect(ConnectEvent {
            common: Common {
                ret,
                ..common(pid, "dig")
            },
            fd,
            addr: SockAddr::Inet {
                addr: ip.into(),
                port: 53,
            },
        })
    };
    let _ = c.process(&Event::Socket(SocketEvent {
        common: Common {
            ret: 3,
            ..common(pid, "dig")
        },
        domain: 2,
        sock_type: 2,
        protocol: 0,
    }));
    let state = |m: model::Event| {
        let f = m.fd.expect("fd");
        (f.connected, f.name_changed)
    };
    let first = c.process(&connect(3, [8, 8, 8, 8], 0)).expect("model");
    assert_eq!(state(first), (Some(true), Some(true)));
    let same = c.process(&connect(3, [8, 8, 8, 8], 0)).expect("model");
    assert_eq!(state(same), (Some(true), Some(false)));
    let other = c.process(&connect(3, [1, 1, 1, 1], 0)).expect("model");
    assert_eq!(state(other), (Some(true), Some(true)));
    let failed = c.process(&connect(3, [9, 9, 9, 9], -111)).expect("model");
    assert_eq!(state(failed), (Some(false), Some(true)));
    // fd 4 was never seen created: connected is known from the result, the change is not.
    let unknown = c.process(&connect(4, [8, 8, 8, 8], 0)).expect("model");
    assert_eq!(state(unknown), (Some(true), None));
    let exec = c.process(&exec(pid, 1, &["dig"])).expect("model");
    assert!(exec.fd.is_none());
}

/// A forked child that did not exec (busybox runs `cp` in a forked shell, renamed `cp`):
/// `proc.cmdline` is the command line it inherited, the parent's real one; `proc.name` is
/// its current comm. Once it execs, both are the new image's.
#[test]
fn forked_child_without_exec_keeps_the_parents_cmdline() {
    let (parent, child) = (4_100_010, 4_100_011);
    let mut c = capture();
    for ev in [
        exec(parent, 1, &["sh", "-c", "cp /bin/busybox /bin/newtool"]),
        Event::Fork(ForkEvent {
            common: common(parent, "sh"),
            child_pid: child,
            child_tid: child,
        }),
    ] {
        let _ = c.process(&ev);
    }
    let mut o = open(child);
    if let Event::Open(e) = &mut o {
        e.common.comm = "cp".into();
    }
    let m = c.process(&o).expect("model");
    assert_eq!(m.proc.name, "cp");
    assert_eq!(m.derived.cmdline, "sh -c cp /bin/busybox /bin/newtool");
    let m = c
        .process(&exec(child, parent, &["cp", "-a", "x", "y"]))
        .expect("model");
    assert_eq!(m.derived.cmdline, "cp -a x y");
    assert_eq!(m.proc.cmdline_name, None);
}
/// fd.name of an open: the kernel's path when it sent one (the path as written in
/// fd.nameraw), the path as written when the walk failed, saying which.
#[test]
fn open_names_come_from_the_kernel_path_or_fall_back() {
    let mut c = capture();
    let name = |c: &mut Capture, k: KernelPath| {
        let mut o = open(4_100_030);
        if let Event::Open(e) = &mut o {
            (e.path.text, e.kernel_path) = ("/tmp/s".into(), k);
        }
        let f = c.process(&o).expect("model").fd.expect("fd");
        (f.name, f.nameraw, f.name_from_kernel)
    };
    let shadow = KernelPath::Resolved("/etc/shadow".into());
    let raw = Some("/tmp/s".to_owned());
    assert_eq!(
        name(&mut c, shadow),
        ("/etc/shadow".into(), raw, Some(true))
    );
    let cut = name(&mut c, KernelPath::Unresolved);
    assert_eq!(cut, ("/tmp/s".into(), None, Some(false)));
    assert_eq!(name(&mut c, KernelPath::Absent).2, None);
}
