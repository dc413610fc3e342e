//! Fault test (issue 9): the agent SIGKILLed under load and restarted. The pinned policy
//! programs keep enforcing while it is dead, the restarted agent adopts the pinned maps, and no
//! program ends up attached twice.

use std::{
    collections::BTreeMap,
    ffi::CString,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use guard_tests::harness::{
    Scratch, TestCgroup, agent_lock, can_run, cgroup2_mount, exec_in, is_root,
};

/// The kernel id of a map pinned under `pins`.
fn pinned_map_id(pins: &str, name: &str) -> u32 {
    let md = aya::maps::MapData::from_pin(Path::new(pins).join(name))
        .unwrap_or_else(|e| panic!("pinned map {name}: {e}"));
    md.info().expect("map info").id()
}

/// Attached links whose program uses the map `map_id`, counted by program name.
fn links_using(map_id: u32) -> BTreeMap<String, usize> {
    let progs: BTreeMap<u32, (String, Vec<u32>)> = aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .map(|p| {
            (
                p.id(),
                (
                    p.name_as_str().unwrap_or("?").to_owned(),
                    p.map_ids().ok().flatten().unwrap_or_default(),
                ),
            )
        })
        .collect();
    let mut out = BTreeMap::new();
    for l in aya::programs::loaded_links().filter_map(|l| l.ok()) {
        if let Some((name, maps)) = progs.get(&l.program_id())
            && maps.contains(&map_id)
        {
            *out.entry(name.clone()).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn sigkilled_agent_keeps_enforcing_and_a_restart_adopts_its_pins() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let cg = TestCgroup::new("restart");
    let rel = format!(
        "/{}",
        cg.path
            .strip_prefix(cgroup2_mount())
            .expect("test cgroup under the cgroup2 mount")
            .display()
    );
    let s = Scratch::new("restart");
    let policy = s.policy(&format!(
        "- policy: restart-test\n  workload: {{cgroup: \"{rel}\"}}\n  mode: enforce\n  enforce:\n    exec: {{deny: [/bin/touch]}}\n"
    ));
    let agent = s.agent(&policy, &["--metrics-addr", "off"]);
    let cgroups_map = pinned_map_id(&s.pins, guard_ebpf::names::POLICY_CGROUPS);
    let before = links_using(cgroups_map);
    let policy_progs: Vec<String> = before
        .keys()
        .filter(|n| n.starts_with("policy_"))
        .cloned()
        .collect();
    assert!(
        policy_progs.len() >= 2,
        "policy programs (exec fallback, cgroup_mkdir) not found among the links: {before:?}"
    );

    // Load, and the proof of enforcement: denied execs back to back, each followed by an allowed
    // control exec in the same cgroup that must run (killing every exec would prove nothing),
    // plus an open flood.
    let marks = s.dir.join("out");
    let stop = Arc::new(AtomicBool::new(false));
    let (killed, ran) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (allowed, allowed_failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let looper = {
        let (stop, killed, ran, marks) = (stop.clone(), killed.clone(), ran.clone(), marks.clone());
        let (allowed, allowed_failed) = (allowed.clone(), allowed_failed.clone());
        let path = cg.path.clone();
        std::thread::spawn(move || {
            let cg = TestCgroup { path };
            let control = [CString::new("/bin/true").expect("cstr")];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let argv = [
                    CString::new("/bin/touch").expect("cstr"),
                    CString::new(marks.join(format!("ran-{n}")).display().to_string())
                        .expect("cstr"),
                ];
                if exec_in(&cg, &argv) == Err(libc::SIGKILL) {
                    killed.fetch_add(1, Ordering::Relaxed);
                } else {
                    ran.fetch_add(1, Ordering::Relaxed);
                }
                if exec_in(&cg, &control) == Ok(0) {
                    allowed.fetch_add(1, Ordering::Relaxed);
                } else {
                    allowed_failed.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            std::mem::forget(cg);
        })
    };
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 5_000_000 {
                let _ = std::fs::File::open("/etc/hostname");
                n += 1;
            }
            n
        })
    };
    let wait_killed = |more: u64, what: &str| {
        let (k, a) = (
            killed.load(Ordering::Relaxed),
            allowed.load(Ordering::Relaxed),
        );
        let done = || {
            killed.load(Ordering::Relaxed) >= k + more
                && allowed.load(Ordering::Relaxed) >= a + more
        };
        let t = Instant::now();
        while !done() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            killed.load(Ordering::Relaxed) >= k + more,
            "fewer than {more} denied execs killed {what}"
        );
        assert!(
            allowed.load(Ordering::Relaxed) >= a + more,
            "fewer than {more} allowed control execs ran {what}"
        );
        eprintln!(
            "{more} denied execs killed and {more} allowed ran {what} in {:?}",
            t.elapsed()
        );
    };
    wait_killed(20, "with the agent running");

    agent.signal(libc::SIGKILL);
    let (_, _) = agent.stop_with_stderr();
    // Dead agent: the pinned programs still kill, and only they are left attached.
    wait_killed(20, "while the agent was dead");
    let dead = links_using(cgroups_map);
    for p in &policy_progs {
        assert_eq!(
            dead.get(p),
            Some(&1),
            "{p} while the agent was dead: {dead:?}"
        );
    }

    let agent = s.agent(&policy, &["--metrics-addr", "off"]);
    wait_killed(20, "after the restart");
    stop.store(true, Ordering::Relaxed);
    looper.join().expect("exec loop");
    let opens = flood.join().expect("open flood");

    assert_eq!(
        pinned_map_id(&s.pins, guard_ebpf::names::POLICY_CGROUPS),
        cgroups_map,
        "the restarted agent made a new POLICY_CGROUPS instead of adopting the pinned one"
    );
    let after = links_using(cgroups_map);
    assert_eq!(
        after, before,
        "attached programs after the restart differ from before (duplicates or missing)"
    );
    let (killed, ran) = (killed.load(Ordering::Relaxed), ran.load(Ordering::Relaxed));
    let (allowed, allowed_failed) = (
        allowed.load(Ordering::Relaxed),
        allowed_failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "{killed} denied execs killed, {ran} ran; {allowed} allowed execs ran, {allowed_failed} \
         did not; {opens} opens of load"
    );
    assert_eq!(
        ran, 0,
        "{ran} denied exec(s) ran across the kill and restart"
    );
    assert_eq!(
        allowed_failed, 0,
        "{allowed_failed} allowed control exec(s) failed: enforcement hit more than /bin/touch"
    );
    let leaked: Vec<_> = std::fs::read_dir(&marks)
        .expect("marks")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leaked.is_empty(), "denied binaries ran: {leaked:?}");
    let (_, stderr) = agent.stop_with_stderr();
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "agent panicked: {stderr:?}"
    );
    // The audit log survived the kill: the restart recovered it and the chain verifies.
    let out = std::process::Command::new(guard_tests::harness::guard_bin())
        .args(["audit", "verify", &s.audit_dir()])
        .output()
        .expect("guard audit verify");
    assert!(
        out.status.success(),
        "audit log broken after SIGKILL + restart: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.cleanup();
}
