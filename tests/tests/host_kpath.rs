//! Host layer, issue 17: an open's `fd.name` is the opened file as the kernel resolved it from
//! the new descriptor, `fd.nameraw` the path as written. A symlink, a bind mount, a chroot or
//! `..` no longer hides a sensitive file from "Read sensitive file" (guard's) and "Read
//! sensitive file untrusted" (Falco's); a container's files are named from its own root; a
//! walk past the kernel's bound falls back to the path as written (docs/rules.md, "fd.name").

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use guard_tests::harness::{Agent, Docker, agent_lock, can_run, guard_bin, is_root, repo_root};
use serde_json::Value;

/// Runs `cmd` through `sh -c`; panics with its stderr when it fails.
fn sh(cmd: &str) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory with bind mounts below it; unmounted and removed on drop.
struct Bed {
    dir: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        let dir = PathBuf::from(format!("/tmp/guard-kpath-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Bed {
            dir,
            mounts: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).to_str().expect("utf8").to_owned()
    }

    fn bind(&mut self, src: &str, rel: &str) {
        let at = self.dir.join(rel);
        std::fs::create_dir_all(&at).expect("mount point");
        sh(&format!("mount --bind {src} {}", at.display()));
        self.mounts.push(at);
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        if self.mounts.iter().all(|m| !is_mount_point(m)) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn is_mount_point(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == p.to_str())
}

/// A rule that shows `fd.name` and `fd.nameraw` of every open whose path as written starts
/// with `prefix`.
fn probe_rules(prefix: &str) -> String {
    format!(
        "- rule: kpath probe\n  desc: shows both names\n  condition: evt.type in (open, openat, openat2, creat) and fd.nameraw startswith {prefix}\n  output: probe (name=%fd.name raw=%fd.nameraw)\n  priority: NOTICE\n  source: syscall\n"
    )
}

fn field<'a>(v: &'a Value, f: &str) -> &'a str {
    v["output_fields"][f].as_str().unwrap_or("")
}

/// Alerts until `done` holds for the ones collected, or the timeout.
fn alerts_until(agent: &Agent, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while !done(&all) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        all.extend(agent.collect_until(left.min(Duration::from_millis(500)), |_| false));
    }
    all
}

fn start_agent(extra_rules: &Path) -> Agent {
    start_agent_walking(extra_rules, Walk::Default)
}

/// How the kernel walks an opened file's path (`syscall_links::ExitOne`).
#[derive(Clone, Copy, Debug)]
enum Walk {
    /// Typed loads where the kernel has `bpf_rdonly_cast`, else helper reads.
    Default,
    /// Helper reads (`GUARD_KPATH_WALK=helpers`), as on kernels before 6.2.
    Helpers,
}

fn start_agent_walking(extra_rules: &Path, walk: Walk) -> Agent {
    let policies = repo_root().join("policies");
    let falco = repo_root().join("../shared/falco-rules");
    let mut cmd = std::process::Command::new(guard_bin());
    if let Walk::Helpers = walk {
        cmd.env("GUARD_KPATH_WALK", "helpers");
    }
    cmd.args([
        "run",
        "--format",
        "json",
        "--no-responses",
        "--no-self-protect",
        "--rules",
        policies.to_str().expect("utf8"),
        "--rules",
        falco.to_str().expect("utf8"),
        "--rules",
        extra_rules.to_str().expect("utf8"),
    ]);
    Agent::spawn(cmd)
}

const GUARD_RULE: &str = "Read sensitive file";
const FALCO_RULE: &str = "Read sensitive file untrusted";

fn sensitive(v: &Value, rule: &str, cmdline: &str) -> bool {
    v["rule"] == rule && field(v, "proc.cmdline") == cmdline
}

#[test]
fn symlink_bind_mount_chroot_and_dotdot_reads_name_the_real_file() {
    if !can_run(is_root(), "needs root to load eBPF programs and mount") {
        return;
    }
    let _lock = agent_lock();
    let mut bed = Bed::new("host");
    let link = bed.path("link");
    std::os::unix::fs::symlink("/etc/shadow", &link).expect("symlink");
    bed.bind("/etc", "bind");
    // A chroot whose `/cfg` is the host's /etc: inside, the path as written is /cfg/shadow.
    std::fs::create_dir_all(bed.dir.join("root/bin")).expect("chroot bin");
    std::fs::copy("/bin/busybox", bed.dir.join("root/bin/cat")).expect("static busybox");
    bed.bind("/etc", "root/cfg");
    // Control: a symlink to a file no rule calls sensitive.
    let hostlink = bed.path("hostlink");
    std::os::unix::fs::symlink("/etc/hostname", &hostlink).expect("symlink");
    // Deeper than the kernel walk's bound (guard_ebpf::KPATH_MAX_STEPS), reached by a link.
    let mut deep = bed.dir.join("deep");
    for _ in 0..guard_ebpf::KPATH_MAX_STEPS {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).expect("deep dir");
    std::fs::write(deep.join("f"), b"x").expect("deep file");
    let deeplink = bed.path("deeplink");
    std::os::unix::fs::symlink(&deep, &deeplink).expect("symlink");
    let rules = bed.dir.join("probe.yaml");
    std::fs::write(&rules, probe_rules(bed.dir.to_str().expect("utf8"))).expect("rules");

    let agent = start_agent(&rules);
    let dotdot = format!("{}/../../etc/./shadow", bed.dir.display());
    let via_bind = bed.path("bind/shadow");
    let chroot_root = bed.path("root");
    let deep_file = format!("{deeplink}/f");
    let reads = [
        format!("cat {link}"),
        format!("cat {via_bind}"),
        format!("chroot {chroot_root} /bin/cat /cfg/shadow"),
        format!("cat {dotdot}"),
        format!("cat {hostlink}"),
        format!("cat {deep_file}"),
    ];
    for r in &reads {
        sh(&format!("{r} > /dev/null"));
    }
    let sensitive_reads = [
        format!("cat {link}"),
        format!("cat {via_bind}"),
        "cat /cfg/shadow".to_owned(),
        format!("cat {dotdot}"),
    ];
    let probe = |v: &Value, raw: &str| v["rule"] == "kpath probe" && field(v, "fd.nameraw") == raw;
    let all = alerts_until(&agent, Duration::from_secs(30), |all| {
        sensitive_reads.iter().all(|c| {
            all.iter().any(|v| sensitive(v, GUARD_RULE, c))
                && all.iter().any(|v| sensitive(v, FALCO_RULE, c))
        }) && all.iter().any(|v| probe(v, &hostlink))
            && all.iter().any(|v| probe(v, &deep_file))
    });
    drop(agent);
    for c in &sensitive_reads {
        for rule in [GUARD_RULE, FALCO_RULE] {
            let hit = all.iter().find(|v| sensitive(v, rule, c));
            let hit = hit.unwrap_or_else(|| panic!("no {rule:?} alert for `{c}`"));
            assert_eq!(field(hit, "fd.name"), "/etc/shadow", "{c}: {hit}");
        }
    }
    // The link and the bind mount as written, and the real file, in the probe.
    let p = all
        .iter()
        .find(|v| probe(v, &link))
        .expect("probe of the link");
    assert_eq!(field(p, "fd.name"), "/etc/shadow", "{p}");
    let p = all
        .iter()
        .find(|v| probe(v, &via_bind))
        .expect("probe: bind");
    assert_eq!(field(p, "fd.name"), "/etc/shadow", "{p}");
    // Control: the link to /etc/hostname is the real file, and no sensitive-file alert.
    let p = all
        .iter()
        .find(|v| probe(v, &hostlink))
        .expect("probe: hostlink");
    assert_eq!(field(p, "fd.name"), "/etc/hostname", "{p}");
    let control = format!("cat {hostlink}");
    assert!(
        !all.iter()
            .any(|v| field(v, "proc.cmdline") == control && v["rule"] != "kpath probe"),
        "an alert for the control read"
    );
    // Past the walk's bound: the path as written (resolved by the agent), never a made-up one.
    let p = all
        .iter()
        .find(|v| probe(v, &deep_file))
        .expect("probe: deep");
    assert_eq!(field(p, "fd.name"), deep_file, "{p}");
}

#[test]
fn a_containers_files_are_named_from_its_own_root() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let bed = Bed::new("ctr");
    let rules = bed.dir.join("probe.yaml");
    std::fs::write(&rules, probe_rules("/tmp/kp-")).expect("rules");
    let c = docker.run(&[], &["sleep", "600"]);
    let agent = start_agent(&rules);
    // /etc/hosts is a file Docker bind-mounts from the host's /var/lib/docker: still named
    // from the container's root.
    assert!(
        c.exec(&[
            "sh",
            "-c",
            "ln -s /etc/shadow /tmp/kp-s && ln -s /etc/hosts /tmp/kp-h && cat /tmp/kp-s /tmp/kp-h > /dev/null"
        ])
        .0
    );
    let short = &c.id[..12];
    let shadow = |v: &Value| {
        v["rule"] == GUARD_RULE
            && field(v, "fd.name") == "/etc/shadow"
            && field(v, "container.id") == short
    };
    let probe = |v: &Value, raw: &str| v["rule"] == "kpath probe" && field(v, "fd.nameraw") == raw;
    let all = alerts_until(&agent, Duration::from_secs(30), |all| {
        all.iter().any(shadow)
            && all.iter().any(|v| probe(v, "/tmp/kp-s"))
            && all.iter().any(|v| probe(v, "/tmp/kp-h"))
    });
    drop(agent);
    assert!(
        all.iter().any(shadow),
        "no Read sensitive file for the container's link"
    );
    let p = all
        .iter()
        .find(|v| probe(v, "/tmp/kp-s"))
        .expect("probe: link");
    assert_eq!(field(p, "fd.name"), "/etc/shadow", "{p}");
    assert_eq!(field(p, "container.id"), short, "{p}");
    let p = all
        .iter()
        .find(|v| probe(v, "/tmp/kp-h"))
        .expect("probe: hosts");
    assert_eq!(field(p, "fd.name"), "/etc/hosts", "{p}");
}

/// `n` bytes cycling through letters and digits from offset `o`, so a byte out of place shows.
fn name_of(n: usize, o: usize) -> String {
    const S: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n).map(|i| S[(i + o) % S.len()] as char).collect()
}

/// Names are copied two ways in the kernel walk: a short one out of the dentry's own bytes
/// (read with its parent and length), a long one, or one whose copy would start within
/// `INLINE_MAX` bytes of the buffer's floor, by a read of its own. Every length around the
/// word size and the inline limits (31 before Linux 6.14, 39 since), and paths whose top
/// component lands on either side of that floor, must come out byte for byte; one byte past
/// `KPATH_MAX_BYTES` falls back to the path as written. Both walks: typed loads (this kernel,
/// if it has `bpf_rdonly_cast`) and helper reads.
#[test]
fn names_of_every_length_and_paths_at_the_walks_byte_bound() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let bed = Bed::new("len");
    let base = std::fs::canonicalize(&bed.dir).expect("canonical scratch dir");
    let base = base.to_str().expect("utf8").to_owned();
    let mut cases: Vec<(String, String)> = Vec::new(); // (path as written, real path)
    let lens = [
        1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 39, 40, 41, 64, 255,
    ];
    let mut dir = format!("{base}/n");
    for (i, n) in lens.iter().enumerate() {
        dir = format!("{dir}/{}", name_of(*n, i));
    }
    std::fs::create_dir_all(&dir).expect("chain of names");
    for (i, n) in lens.iter().enumerate() {
        let real = format!("{dir}/{}", name_of(*n, 7 * i + 3));
        std::fs::write(&real, b"x").expect("leaf");
        let link = format!("{base}/ln{i}");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        cases.push((link, real));
    }
    // The whole kernel path `total` bytes long, 200-byte directories then the leaf.
    let bound = guard_ebpf::KPATH_MAX_BYTES;
    let long = |total: usize| -> (String, String) {
        let mut d = format!("{base}/b{total}");
        while total - d.len() > 256 {
            d = format!("{d}/{}", name_of(200, d.len()));
        }
        std::fs::create_dir_all(&d).expect("long chain");
        let real = format!("{d}/{}", name_of(total - d.len() - 1, total));
        assert_eq!(real.len(), total);
        std::fs::write(&real, b"x").expect("long leaf");
        let link = format!("{base}/lb{total}");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        (link, real)
    };
    // The top component's copy starts `4096 - total` bytes into the buffer (see kpath.rs).
    for total in [4096 - 40, 4096 - 39, bound] {
        cases.push(long(total));
    }
    let (past_link, _) = long(bound + 1);
    let rules = bed.dir.join("probe.yaml");
    std::fs::write(&rules, probe_rules(&base)).expect("rules");

    for walk in [Walk::Default, Walk::Helpers] {
        names_come_out_whole(&rules, walk, &cases, &past_link);
    }
}

/// Reads every link of `cases` and `past_link` under an agent walking as `walk`, and checks
/// the names its probe rule reports.
fn names_come_out_whole(rules: &Path, walk: Walk, cases: &[(String, String)], past_link: &str) {
    let agent = start_agent_walking(rules, walk);
    for (link, _) in cases.iter().chain([&(past_link.to_owned(), String::new())]) {
        std::fs::read(link).unwrap_or_else(|e| panic!("reading {link}: {e}"));
    }
    let probe = |v: &Value, raw: &str| v["rule"] == "kpath probe" && field(v, "fd.nameraw") == raw;
    let all = alerts_until(&agent, Duration::from_secs(30), |all| {
        cases
            .iter()
            .map(|(l, _)| l.as_str())
            .chain([past_link])
            .all(|l| all.iter().any(|v| probe(v, l)))
    });
    drop(agent);
    for (link, real) in cases {
        let p = all
            .iter()
            .find(|v| probe(v, link))
            .unwrap_or_else(|| panic!("{walk:?} walk: no probe of {link}"));
        assert_eq!(
            field(p, "fd.name"),
            real,
            "{walk:?} walk: {link} ({} bytes)",
            real.len()
        );
    }
    // Past the bound: the path as written, resolved by the agent.
    let p = all
        .iter()
        .find(|v| probe(v, past_link))
        .expect("probe past the bound");
    assert_eq!(field(p, "fd.name"), past_link, "{walk:?} walk: {p}");
}
