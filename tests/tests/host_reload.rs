//! Host layer for hot reload (issue 9), on this kernel's `sigkill-fallback` backend: policies
//! reload on a file change and on SIGHUP with no moment without enforcement, a broken file
//! keeps the policy in force and is reported with its position, and a real change takes
//! effect.

use std::{
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

/// A policy for the test cgroup denying `deny`; `decoys` unrelated policies come first, so
/// the test policy's index (and kernel policy id) moves from one version to the next.
fn policy_yaml(cgroup: &str, deny: &[&str], decoys: usize) -> String {
    let mut y = String::new();
    for i in 0..decoys {
        y.push_str(&format!(
            "- policy: decoy-{i}\n  workload: {{cgroup: \"/guard-no-such-cgroup-{i}\"}}\n  mode: enforce\n  enforce:\n    exec: {{deny: [/bin/decoy{i}]}}\n"
        ));
    }
    y.push_str(&format!(
        "- policy: reload-test\n  workload: {{cgroup: \"{cgroup}\"}}\n  mode: enforce\n  enforce:\n    exec: {{deny: [{}]}}\n",
        deny.join(", ")
    ));
    y
}

/// Replaces `path` atomically (write aside, rename), as editors and ConfigMaps do.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write policy");
    std::fs::rename(&tmp, path).expect("rename policy");
}

/// Entries of the pinned `POLICY_PATHS` map.
fn pinned_path_rules(pins: &str) -> usize {
    let md = aya::maps::MapData::from_pin(Path::new(pins).join(guard_ebpf::names::POLICY_PATHS))
        .expect("pinned POLICY_PATHS");
    let trie: aya::maps::lpm_trie::LpmTrie<_, guard_ebpf::PathKeyData, u32> =
        aya::maps::lpm_trie::LpmTrie::try_from(aya::maps::Map::LpmTrie(md)).expect("an LPM trie");
    trie.keys().filter(|k| k.is_ok()).count()
}

#[test]
fn reload_swaps_policies_with_no_gap_and_keeps_the_old_set_on_a_broken_file() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let cg = TestCgroup::new("reload");
    let rel = format!(
        "/{}",
        cg.path
            .strip_prefix(cgroup2_mount())
            .expect("test cgroup under the cgroup2 mount")
            .display()
    );
    let s = Scratch::new("reload");
    let pdir = s.dir.join("policies");
    std::fs::create_dir_all(&pdir).expect("policy dir");
    let pfile = pdir.join("policy.yaml");
    replace_file(&pfile, &policy_yaml(&rel, &["/bin/touch"], 0));
    let pdir_s = pdir.display().to_string();
    let agent = s.agent(&pdir_s, &["--metrics-addr", "off"]);

    // Execs of the denied binary, back to back, for the whole reload sequence: every one
    // must be killed before it runs (it would create its marker file).
    let marks = s.dir.join("out");
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicU64::new(0));
    let ran = Arc::new(AtomicU64::new(0));
    let looper = {
        let (stop, killed, ran) = (stop.clone(), killed.clone(), ran.clone());
        let marks = marks.clone();
        let cg_path = cg.path.clone();
        std::thread::spawn(move || {
            let cg = TestCgroup { path: cg_path };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 200_000 {
                let mark = marks.join(format!("ran-{n}"));
                let argv = [
                    CString::new("/bin/touch").expect("cstr"),
                    CString::new(mark.display().to_string()).expect("cstr"),
                ];
                match exec_in(&cg, &argv) {
                    Err(libc::SIGKILL) => killed.fetch_add(1, Ordering::Relaxed),
                    _ => ran.fetch_add(1, Ordering::Relaxed),
                };
                n += 1;
            }
            // The cgroup is the test's: do not remove it from this thread.
            std::mem::forget(cg);
        })
    };
    // The loop must be under enforcement before the reloads start.
    let t0 = Instant::now();
    while killed.load(Ordering::Relaxed) < 20 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        killed.load(Ordering::Relaxed) >= 20,
        "the denied exec was not killed before any reload"
    );

    let mut generation = 1;
    let mut wait_reloaded = |how: &str, from: usize| {
        generation += 1;
        let want = format!("guard: reloaded ({how}): generation {generation}");
        agent
            .wait_stderr(from, Duration::from_secs(20), |l| l.contains(&want))
            .unwrap_or_else(|| panic!("no '{want}' on stderr"));
    };
    // File changes: the test policy moves between ids, the deny list changes around it.
    for i in 0..6 {
        let from = agent.stderr_len();
        let deny: &[&str] = if i % 2 == 0 {
            &["/bin/mkdir", "/bin/touch"]
        } else {
            &["/bin/touch"]
        };
        replace_file(&pfile, &policy_yaml(&rel, deny, i % 3 + 1));
        wait_reloaded("file change", from);
    }
    // SIGHUP reloads the same files again, each time into the other generation.
    for _ in 0..6 {
        let from = agent.stderr_len();
        agent.signal(libc::SIGHUP);
        wait_reloaded("SIGHUP", from);
    }
    // A broken file: refused with its position; the policy in force stays.
    let from = agent.stderr_len();
    let broken = format!("{}  bogus_key: 1\n", policy_yaml(&rel, &["/bin/true"], 0));
    replace_file(&pfile, &broken);
    agent
        .wait_stderr(from, Duration::from_secs(20), |l| {
            l.contains("guard: reload (file change) refused")
        })
        .expect("the broken file was not refused");
    let line = broken.lines().count();
    let at = format!("{}:{line}:", pfile.display());
    agent
        .wait_stderr(from, Duration::from_secs(5), |l| {
            l.starts_with(&at) && l.contains("bogus_key")
        })
        .unwrap_or_else(|| panic!("no error at {at} naming bogus_key"));
    // Let the loop run on under the old set for a moment after the refusal.
    let k = killed.load(Ordering::Relaxed);
    let t1 = Instant::now();
    while killed.load(Ordering::Relaxed) < k + 20 && t1.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    looper.join().expect("exec loop");

    let (killed, ran) = (killed.load(Ordering::Relaxed), ran.load(Ordering::Relaxed));
    eprintln!("exec loop: {killed} killed, {ran} ran, over 12 reloads and 1 refusal");
    assert_eq!(
        ran, 0,
        "{ran} denied exec(s) ran during the reloads (an enforcement gap)"
    );
    let leaked: Vec<_> = std::fs::read_dir(&marks)
        .expect("marks dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leaked.is_empty(), "denied binaries ran: {leaked:?}");
    assert!(killed >= 60, "only {killed} execs overlapped the reloads");

    // A real change takes effect: touch is allowed now, true is denied.
    let from = agent.stderr_len();
    replace_file(&pfile, &policy_yaml(&rel, &["/bin/true"], 0));
    wait_reloaded("file change", from);
    let touch = [
        CString::new("/bin/touch").expect("cstr"),
        CString::new(marks.join("after").display().to_string()).expect("cstr"),
    ];
    assert_eq!(
        exec_in(&cg, &touch),
        Ok(0),
        "touch still denied after the reload"
    );
    let t = [CString::new("/bin/true").expect("cstr")];
    assert_eq!(
        exec_in(&cg, &t),
        Err(libc::SIGKILL),
        "the newly denied binary was not killed"
    );

    // A second after the last reload, the old generation's rules are gone from the kernel:
    // the maps hold the set in force (one path rule), not every set ever loaded.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pinned_path_rules(&s.pins),
        1,
        "POLICY_PATHS entries after the reloads (the set in force denies /bin/true only)"
    );
    let (_, stderr) = agent.stop_with_stderr();
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "agent panicked: {stderr:?}"
    );
    // The audit log has every reload and the refusal.
    let mut loads = 0;
    let mut refused = 0;
    for e in std::fs::read_dir(s.audit_dir()).expect("audit").flatten() {
        for line in std::fs::read_to_string(e.path())
            .unwrap_or_default()
            .lines()
        {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["kind"] == "policy_load" && v["reload"] == true {
                loads += 1;
            }
            if v["kind"] == "reload_failed" {
                refused += 1;
                assert!(
                    v["errors"].to_string().contains("bogus_key"),
                    "refusal record without the error: {v}"
                );
            }
        }
    }
    assert_eq!(loads, 13, "policy_load records with reload: true");
    assert_eq!(refused, 1, "reload_failed records");
    s.cleanup();
}
