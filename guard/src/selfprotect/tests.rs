use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::*;
use crate::events::{
    Captured, CgroupId, Common, DecisionEvent, Hook, Reason, SelfProtectDetail, Verdict,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "guard-selfprot-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("test fixture");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn kernel_dev_is_mkdev_of_the_stat_encoding() {
    // st_dev 8:1 (sda1) is 0x801 in both encodings' low bits; the kernel keeps major << 20.
    assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
    // Minors above 255 are split in the userspace encoding and whole in the kernel's.
    assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    assert_eq!(kernel_dev(libc::makedev(0, 4)), 4);
}

#[test]
fn inode_keys_follow_stat() {
    let t = TempDir::new("key");
    let f = t.0.join("f");
    fs::write(&f, "x").expect("test fixture");
    let md = fs::metadata(&f).expect("test fixture");
    let k = inode_key(&md);
    assert_eq!(k.ino, md.ino());
    assert_eq!(k.dev, kernel_dev(md.dev()));
}

#[test]
fn collect_walks_roots_by_class_without_following_inner_symlinks() {
    let t = TempDir::new("walk");
    let cfg = t.0.join("etc-guard");
    let audit = t.0.join("audit");
    let outside = t.0.join("outside");
    fs::create_dir_all(cfg.join("policies/sub")).expect("test fixture");
    fs::create_dir_all(&audit).expect("test fixture");
    fs::create_dir_all(&outside).expect("test fixture");
    fs::write(cfg.join("policies/web.yaml"), "- policy: x").expect("test fixture");
    fs::write(cfg.join("policies/sub/deep.yaml"), "").expect("test fixture");
    fs::write(audit.join("audit-1.jsonl"), "{}").expect("test fixture");
    fs::write(outside.join("secret"), "not guard's").expect("test fixture");
    std::os::unix::fs::symlink(&outside, cfg.join("link-out")).expect("test fixture");
    let roots = Roots {
        config: vec![cfg.clone(), t.0.join("missing.yaml")],
        audit: vec![audit.clone()],
        pins: vec![],
        cgroup: vec![],
    };
    let (got, cut) = collect(&roots, 100);
    assert!(!cut);
    let paths: Vec<&Path> = got.values().map(|p| p.path.as_path()).collect();
    for want in [
        cfg.clone(),
        cfg.join("policies"),
        cfg.join("policies/web.yaml"),
        cfg.join("policies/sub"),
        cfg.join("policies/sub/deep.yaml"),
        audit.clone(),
        audit.join("audit-1.jsonl"),
    ] {
        assert!(
            paths.contains(&want.as_path()),
            "{} missing: {paths:?}",
            want.display()
        );
    }
    // The symlink below the root is not followed: the directory it names stays unprotected.
    assert!(!paths.iter().any(|p| p.starts_with(&outside)), "{paths:?}");
    assert!(!paths.contains(&cfg.join("link-out").as_path()));
    let counts = class_counts(&got);
    assert_eq!(counts.get(&protected_class::CONFIG), Some(&5));
    assert_eq!(counts.get(&protected_class::AUDIT), Some(&2));
    // Keys are the kernel's view of each file.
    let md = fs::metadata(cfg.join("policies/web.yaml")).expect("test fixture");
    assert_eq!(
        got.get(&inode_key(&md)).map(|p| p.class),
        Some(protected_class::CONFIG)
    );
}

#[test]
fn collect_is_bounded_by_depth_and_count() {
    let t = TempDir::new("bound");
    let mut deep = t.0.clone();
    for i in 0..6 {
        deep = deep.join(format!("d{i}"));
    }
    fs::create_dir_all(&deep).expect("test fixture");
    let roots = Roots {
        config: vec![t.0.clone()],
        ..Roots::default()
    };
    let (got, cut) = collect(&roots, 100);
    assert!(!cut);
    // The root and MAX_DEPTH levels below it.
    assert_eq!(got.len(), MAX_DEPTH + 1);
    for i in 0..20 {
        fs::write(t.0.join(format!("f{i}")), "").expect("test fixture");
    }
    let (got, cut) = collect(&roots, 10);
    assert!(cut);
    assert_eq!(got.len(), 10);
}

#[test]
fn fdinfo_ids_name_maps_programs_and_links() {
    let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t1\nkey_size:\t8\nvalue_size:\t8\nmax_entries:\t16384\nmap_flags:\t0x1\nmap_extra:\t0x0\nmemlock:\t1\nmap_id:\t42\nfrozen:\t0\n";
    assert_eq!(fdinfo_ids(map), vec![bpf_id_key(bpf_obj_kind::MAP, 42)]);
    let link = "pos:\t0\nflags:\t02000000\nmnt_id:\t15\nino:\t1057\nlink_type:\ttracing\nlink_id:\t7\nprog_tag:\t0123456789abcdef\nprog_id:\t99\nattach_type:\t27\n";
    assert_eq!(
        fdinfo_ids(link),
        vec![
            bpf_id_key(bpf_obj_kind::LINK, 7),
            bpf_id_key(bpf_obj_kind::PROG, 99)
        ]
    );
    // Regular files and garbage name nothing.
    assert!(fdinfo_ids("pos:\t0\nflags:\t0100002\nmnt_id:\t29\nino:\t12\n").is_empty());
    assert!(fdinfo_ids("map_id: x\nprog_id:\t0\n\u{0}:::").is_empty());
}

fn event(op: Operation, detail: SelfProtectDetail, inode: Option<(u64, u64)>) -> DecisionEvent {
    let hook = match op {
        Operation::Signal => Hook::TaskKill,
        Operation::Ptrace => Hook::PtraceAccessCheck,
        Operation::ProtectedFile => Hook::InodePermission,
        Operation::BpfObject => Hook::Bpf,
        Operation::Exec
        | Operation::Open
        | Operation::Connect
        | Operation::Sendmsg
        | Operation::Write => {
            panic!("not self-protection")
        }
    };
    DecisionEvent {
        common: Common {
            time_ns: 1_000_000_000,
            cgroup_id: CgroupId(9),
            pid: 4242,
            tid: 4242,
            ppid: 1,
            uid: 0,
            gid: 0,
            loginuid: None,
            comm: "sh".into(),
            ret: -1,
            cpu: 0,
        },
        policy_id: 0,
        op,
        verdict: Verdict::Deny,
        reason: Reason::SelfProtect,
        hook,
        path: Captured::default(),
        access: None,
        dest: None,
        inode,
        self_protect: Some(detail),
        kill_error: None,
    }
}

#[test]
fn denials_become_self_protect_records_and_critical_alerts() {
    let w = WorkloadInfo::host(None);
    let (d, a) = describe(
        &event(
            Operation::Signal,
            SelfProtectDetail {
                arg: 9,
                target: 77,
                class: 0,
            },
            None,
        ),
        &w,
        "h",
        |_, _| None,
    );
    assert_eq!(d.op, record::Operation::SelfProtect);
    assert_eq!(d.hook, Some(Hook::TaskKill));
    assert_eq!(d.decision, DecisionKind::Deny);
    assert_eq!(d.policy, "self-protect");
    assert_eq!(d.target, "guard pid 77");
    assert_eq!(d.access.as_deref(), Some("signal 9"));
    assert_eq!(d.process.pid, Some(4242));
    assert_eq!(a.priority, Priority::Critical);
    assert_eq!(a.source, "guard_self_protect");
    assert_eq!(a.output_fields["guard.op"], "signal");
    assert_eq!(a.output_fields["guard.hook"], "task_kill");

    let (d, _) = describe(
        &event(
            Operation::Ptrace,
            SelfProtectDetail {
                arg: 0x12,
                target: 77,
                class: 0,
            },
            None,
        ),
        &w,
        "h",
        |_, _| None,
    );
    assert_eq!(d.access.as_deref(), Some("ptrace attach+realcreds"));

    let file = event(
        Operation::ProtectedFile,
        SelfProtectDetail {
            arg: 4,
            target: 11,
            class: protected_class::AUDIT as u8,
        },
        Some((3, 11)),
    );
    let (d, a) = describe(&file, &w, "h", |dev, ino| {
        ((dev, ino) == (3, 11)).then(|| PathBuf::from("/var/lib/guard/audit/audit-1.jsonl"))
    });
    assert_eq!(d.target, "/var/lib/guard/audit/audit-1.jsonl");
    assert_eq!(d.access.as_deref(), Some("audit read"));
    assert!(a.output.contains("audit-1.jsonl"), "{}", a.output);
    // An inode guard no longer knows is still named.
    let (d, _) = describe(&file, &w, "h", |_, _| None);
    assert_eq!(d.target, "inode 3:11");

    let (d, _) = describe(
        &event(
            Operation::BpfObject,
            SelfProtectDetail {
                arg: 14,
                target: bpf_id_key(bpf_obj_kind::MAP, 5),
                class: 0,
            },
            None,
        ),
        &w,
        "h",
        |_, _| None,
    );
    assert_eq!(d.target, "guard bpf map id 5");
    assert_eq!(d.access.as_deref(), Some("bpf cmd 14"));
}

#[test]
fn decoded_kernel_records_carry_the_self_protect_detail() {
    use guard_ebpf::{DecisionBody, EventHeader, EventKind, decision_op, hook, reason, verdict};
    let mut body = DecisionBody {
        op: decision_op::PROTECTED_FILE,
        hook: hook::INODE_PERMISSION,
        verdict: verdict::DENY,
        reason: reason::SELF_PROTECT,
        access: 4,
        dev: 5,
        ino: 1234,
        ..DecisionBody::default()
    };
    body.addr[0] = protected_class::CONFIG as u8;
    let h = EventHeader {
        kind: EventKind::Decision as u16,
        flags: 0,
        cpu: 0,
        boot_ns: 1,
        cgroup_id: 2,
        pid: 10,
        tid: 10,
        ppid: 1,
        uid: 0,
        gid: 0,
        loginuid: u32::MAX,
        ret: -1,
        comm: *b"cat\0\0\0\0\0\0\0\0\0\0\0\0\0",
        len0: 0,
        len1: 0,
        body_len: size_of::<DecisionBody>() as u32,
    };
    let mut raw = Vec::new();
    // SAFETY: both are plain #[repr(C)] integer structs without padding.
    unsafe {
        raw.extend_from_slice(std::slice::from_raw_parts(
            &h as *const _ as *const u8,
            size_of::<EventHeader>(),
        ));
        raw.extend_from_slice(std::slice::from_raw_parts(
            &body as *const _ as *const u8,
            size_of::<DecisionBody>(),
        ));
    }
    let ev = crate::events::decode(&raw, &crate::events::Clock::now()).expect("decodes");
    let crate::events::Event::Decision(d) = ev else {
        panic!("not a decision: {ev:?}");
    };
    assert_eq!(d.op, Operation::ProtectedFile);
    assert_eq!(d.reason, Reason::SelfProtect);
    assert_eq!(d.hook, Hook::InodePermission);
    assert_eq!(d.inode, Some((5, 1234)));
    assert_eq!(
        d.self_protect,
        Some(SelfProtectDetail {
            arg: 4,
            target: 1234,
            class: protected_class::CONFIG as u8
        })
    );
    // A signal record names no inode (its `ino` is the target tgid).
    body.op = decision_op::SIGNAL;
    body.hook = hook::TASK_KILL;
    body.access = 9;
    let n = raw.len();
    raw.truncate(n - size_of::<DecisionBody>());
    // SAFETY: as above.
    raw.extend_from_slice(unsafe {
        std::slice::from_raw_parts(&body as *const _ as *const u8, size_of::<DecisionBody>())
    });
    let crate::events::Event::Decision(d) =
        crate::events::decode(&raw, &crate::events::Clock::now()).expect("decodes")
    else {
        panic!("not a decision");
    };
    assert_eq!((d.op, d.hook), (Operation::Signal, Hook::TaskKill));
    assert_eq!(d.inode, None);
    assert_eq!(d.self_protect.map(|s| (s.arg, s.target)), Some((9, 1234)));
}

#[test]
fn roots_add_etc_guard_and_drop_duplicates() {
    let r = roots_for(
        [
            PathBuf::from("/etc/guard"),
            PathBuf::from("/srv/rules.yaml"),
        ],
        Some(Path::new("/var/lib/guard/audit")),
        [PathBuf::from("/sys/fs/bpf/guard")],
        Some(PathBuf::from("/sys/fs/cgroup/system.slice/guard.service")),
    );
    assert_eq!(
        r.config,
        vec![
            PathBuf::from("/etc/guard"),
            PathBuf::from("/srv/rules.yaml")
        ]
    );
    assert_eq!(r.audit, vec![PathBuf::from("/var/lib/guard/audit")]);
    assert_eq!(r.pins, vec![PathBuf::from("/sys/fs/bpf/guard")]);
    assert_eq!(
        r.cgroup,
        vec![PathBuf::from("/sys/fs/cgroup/system.slice/guard.service")]
    );
    // Relative paths are made absolute (the agent may be started from anywhere).
    let r = roots_for([PathBuf::from("policies")], None, [], None);
    assert!(r.config[0].is_absolute() && r.config[0].ends_with("policies"));
}

#[test]
fn host_namespaces_are_read_from_pid_1() {
    let t = TempDir::new("ns");
    fs::create_dir_all(t.0.join("1/ns")).expect("test fixture");
    fs::write(t.0.join("1/ns/pid"), "").expect("test fixture");
    fs::write(t.0.join("1/ns/mnt"), "").expect("test fixture");
    let pid = fs::metadata(t.0.join("1/ns/pid")).expect("test fixture");
    let mnt = fs::metadata(t.0.join("1/ns/mnt")).expect("test fixture");
    assert_eq!(
        host_namespaces(&t.0).expect("test fixture"),
        (kernel_dev(pid.dev()), pid.ino(), mnt.ino())
    );
    assert!(host_namespaces(&t.0.join("nope")).is_err());
}

#[test]
fn the_agent_cgroup_comes_from_proc_self_cgroup_and_never_is_the_root() {
    let m = Path::new("/sys/fs/cgroup");
    assert_eq!(
        agent_cgroup("0::/system.slice/guard.service\n", m),
        Some(PathBuf::from("/sys/fs/cgroup/system.slice/guard.service"))
    );
    // cgroup v1 lines are ignored; the v2 line wins.
    assert_eq!(
        agent_cgroup("12:pids:/x\n0::/kubepods/pod1/c2\n", m),
        Some(PathBuf::from("/sys/fs/cgroup/kubepods/pod1/c2"))
    );
    assert_eq!(agent_cgroup("0::/\n", m), None);
    assert_eq!(agent_cgroup("0::/a/../..\n", m), None);
    assert_eq!(agent_cgroup("garbage", m), None);
}
