use super::*;

#[test]
fn capability_lists_are_valid_and_the_runtime_set_is_part_of_the_start_set() {
    for n in START_CAPS.iter().chain(RUNTIME_CAPS) {
        assert!(cap_index(n).is_some(), "{n} is not a capability name");
    }
    assert!(set(RUNTIME_CAPS).is_subset(&set(START_CAPS)));
    let m = mask_of(RUNTIME_CAPS);
    assert_eq!(m.count_ones() as usize, RUNTIME_CAPS.len());
    assert_eq!(
        names_of(m),
        set(RUNTIME_CAPS).into_iter().collect::<Vec<_>>()
    );
    assert_eq!(mask_of(&["CAP_KILL"]), 1 << 5);
    // Loading needs more than running: the drop must remove something.
    for gone in [
        "CAP_SYS_ADMIN",
        "CAP_PERFMON",
        "CAP_NET_ADMIN",
        "CAP_SETPCAP",
    ] {
        assert!(!RUNTIME_CAPS.contains(&gone), "{gone}");
    }
    let low = runtime_mask(Some(80));
    assert!(low & mask_of(&["CAP_NET_BIND_SERVICE"]) != 0);
    assert_eq!(
        runtime_mask(Some(9464)) & mask_of(&["CAP_NET_BIND_SERVICE"]),
        0
    );
}

#[test]
fn status_lines_parse() {
    let text = "Name:\tguard\nCapInh:\t0000000000000000\nCapPrm:\t00000000000000a0\nCapEff:\t00000000000000a0\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
    let c = parse_status(7, text).expect("parse");
    assert_eq!(c.prm, 0xa0);
    assert_eq!(c.bnd, 0x1ff_ffff_ffff);
    assert!(c.no_new_privs);
    assert!(parse_status(7, "Name: x\n").is_none());
}

fn sample() -> (Grants, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("guard-harden-{}", std::process::id()));
    for d in ["rules", "audit", "out", "scripts", "script-out", "pins"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    std::fs::write(dir.join("rules/a.yaml"), "[]").expect("write");
    let inputs = Inputs {
        config_file: Some("/etc/guard/guard.yaml".into()),
        rules: vec![dir.join("rules/a.yaml")],
        policies: vec![],
        responses: Some("/etc/guard/responses".into()),
        outputs_file: None,
        output_files: vec![dir.join("out/alerts.jsonl")],
        audit_dir: Some(dir.join("audit")),
        pin_dirs: vec![dir.join("pins"), dir.join("missing-pins")],
        docker_socket: Some("/var/run/docker.sock".into()),
        podman_events: Some("/run/libpod/events/events.log".into()),
        cgroup_root: "/sys/fs/cgroup".into(),
        scripts: vec![dir.join("scripts/r.sh")],
        script_writes: vec![dir.join("script-out")],
    };
    let (handled, g) = agent_grants(&agent_paths(&inputs));
    assert_eq!(handled, AccessFs::from_all(ABI_WANTED));
    (g, dir)
}

#[test]
fn the_agent_ruleset_grants_what_it_uses_and_nothing_else() {
    let (g, dir) = sample();
    let r = AccessFs::ReadFile;
    let w = AccessFs::WriteFile;
    let mk = AccessFs::MakeReg;
    let x = AccessFs::Execute;
    // In: what the agent reads.
    for p in [
        "/proc/1/status",
        "/sys/kernel/btf/vmlinux",
        "/sys/fs/cgroup/system.slice/cgroup.procs",
        "/etc/guard/guard.yaml",
        "/etc/guard/policies/x.yaml",
        "/etc/resolv.conf",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ] {
        assert!(allows(&g, Path::new(p), r), "read {p}");
    }
    assert!(allows(&g, &dir.join("rules/a.yaml"), r));
    // A rules file replaced by a rename stays readable: its directory is granted.
    assert!(allows(&g, &dir.join("rules/b.yaml"), r));
    // Writes: audit, output channel directory, pins, script directories, cgroup files.
    for p in [
        dir.join("audit/segment-1.jsonl"),
        dir.join("out/alerts.jsonl.1"),
        dir.join("script-out/x"),
        dir.join("pins/quarantine_map"),
    ] {
        assert!(
            allows(&g, &p, w) && allows(&g, &p, mk),
            "write {}",
            p.display()
        );
    }
    assert!(allows(
        &g,
        Path::new("/sys/fs/cgroup/docker/abc/cgroup.kill"),
        w
    ));
    assert!(!allows(
        &g,
        Path::new("/sys/fs/cgroup/docker/abc"),
        AccessFs::MakeDir
    ));
    assert!(allows(&g, &dir.join("scripts/r.sh"), x));
    assert!(allows(&g, Path::new("/bin/sh"), x));
    // Out: secrets, homes, container filesystems, other writable places.
    for p in [
        "/etc/shadow",
        "/root/.ssh/id_ed25519",
        "/home/user/notes",
        "/var/lib/docker/overlay2/x/merged/etc/passwd",
        "/tmp/anything",
        "/var/tmp/x",
        "/run/secrets/token",
    ] {
        assert!(!allows(&g, Path::new(p), r), "read {p}");
        assert!(!allows(&g, Path::new(p), w), "write {p}");
    }
    for p in ["/etc/guard/guard.yaml", "/usr/bin/x", "/proc/1/environ"] {
        assert!(!allows(&g, Path::new(p), w), "write {p}");
    }
    assert!(!allows(&g, &dir.join("rules/a.yaml"), w));
    assert!(!allows(&g, &dir.join("audit/x"), x));
    // A pin directory that does not exist grants nothing (not its parent).
    assert!(!allows(&g, &dir.join("missing-pins/x"), w));
    assert!(!allows(&g, &dir.join("x"), w));
    // Nothing grants `/` itself.
    assert!(!g.contains_key(Path::new("/")));
}
