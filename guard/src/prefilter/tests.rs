//! The derivation on small rules, and the differential test: a large, varied trace replayed
//! with and without the prefilter gives the same alerts, for guard's rules alone and with
//! Falco's stable ruleset.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use super::*;
use crate::{
    model::{ArgValue, Container, Event, Fd, FdType},
    rules::{Engine, Loader, Matcher},
};

fn ruleset(yaml: &str) -> RuleSet {
    let mut l = Loader::new();
    l.add_str("t.yaml", yaml);
    let (set, diags) = l.finish();
    assert!(
        diags.iter().all(|d| !d.is_error()),
        "{:?}",
        diags.iter().map(|d| d.to_string()).collect::<Vec<_>>()
    );
    set
}

fn rule(cond: &str) -> RuleSet {
    ruleset(&format!(
        "- rule: r\n  desc: d\n  condition: {cond}\n  output: o\n  priority: WARNING\n"
    ))
}

fn prefixes(p: &Prefilter) -> Vec<(&str, u8)> {
    p.open_prefixes
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

const ANY: u8 = open_prefix_bits::ANY;
const WRITE: u8 = open_prefix_bits::WRITE;

#[test]
fn prefixes_and_access_come_from_the_conditions() {
    let p = Prefilter::derive(
        &rule("evt.type = openat and evt.is_open_write = true and fd.name startswith /etc"),
        &Needs::default(),
    );
    assert_eq!(prefixes(&p), [("/etc", WRITE)]);
    assert_eq!(
        p.syscalls.get(&syscalls::OPENAT),
        Some(&(syscall_filter::TRACE | syscall_filter::OPEN_PATHS | syscall_filter::KPATH_DECIDES))
    );
    // Only the rules' syscalls and the state's are traced.
    assert!(!p.traces(syscalls::CONNECT));
    assert!(p.traces(syscalls::CHDIR));

    let p = Prefilter::derive(
        &rule(
            "evt.type in (open, openat) and (fd.directory in (/bin, /sbin) or fd.name = /etc/shadow or fd.name pmatch (/root/.ssh))",
        ),
        &Needs::default(),
    );
    assert_eq!(
        prefixes(&p),
        [
            ("/bin/", ANY),
            ("/etc/shadow", ANY),
            ("/root/.ssh", ANY),
            ("/sbin/", ANY)
        ]
    );
    // A conjunction keeps the narrower prefix; a glob its literal start.
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.name startswith /var and fd.name glob '/var/log/*.log'"),
        &Needs::default(),
    );
    assert_eq!(prefixes(&p), [("/var/log/", ANY)]);
}

#[test]
fn what_cannot_be_bounded_passes_everything() {
    for cond in [
        "evt.type = openat and not fd.name startswith /etc",
        "evt.type = openat and fd.name != /etc/shadow",
        "evt.type = openat and tolower(fd.name) startswith /etc",
        "evt.type = openat and fd.name contains shadow",
        "evt.type = openat and proc.name = cat",
    ] {
        let p = Prefilter::derive(&rule(cond), &Needs::default());
        assert!(p.open_prefixes.is_empty(), "{cond}: {:?}", p.open_prefixes);
        assert_eq!(
            p.syscalls.get(&syscalls::OPENAT),
            Some(&syscall_filter::TRACE),
            "{cond}"
        );
        assert!(p.passes_open(syscalls::OPENAT, b"/home/a", false), "{cond}");
    }
    // A rule with no event type (every event): every syscall is traced but the data ones
    // (read, write, ...), which only a rule naming them traces (`data_syscalls_...`).
    let every = syscalls::TRACED.len() - syscalls::DATA_SYSCALLS.len();
    let p = Prefilter::derive(&rule("proc.name = cat"), &Needs::default());
    assert_eq!(p.syscalls.len(), every);
    assert!(Prefilter::none().open_prefixes.is_empty());
    assert_eq!(Prefilter::none().syscalls.len(), every);
}

/// Issue 18: the data syscalls (read, write, pread64, pwrite64, sendto, recvfrom) cost a
/// program on the busiest syscalls, so they are attached only for a rule that names them:
/// not for guard's rules, not for Falco's but sendto and sendmsg (its `outbound` macro), not for a rule
/// without an event type nor for `everything`; a rule on `write` traces write alone.
#[test]
fn data_syscalls_are_traced_only_for_rules_that_name_them() {
    let data = |p: &Prefilter| -> Vec<&'static str> {
        syscalls::TRACED
            .iter()
            .filter(|s| syscalls::DATA_SYSCALLS.contains(&s.nr) && p.traces(s.nr))
            .map(|s| s.name)
            .collect()
    };
    let guard = Prefilter::derive(&engine(false).rules, &Needs::default());
    assert_eq!(data(&guard), Vec::<&str>::new());
    // The control: the same rules do trace other syscalls.
    assert!(guard.traces(syscalls::OPENAT) && guard.traces(syscalls::CONNECT));
    let falco = Prefilter::derive(&engine(true).rules, &Needs::default());
    assert_eq!(data(&falco), ["sendto", "sendmsg"]);
    assert_eq!(
        data(&Prefilter::derive(
            &rule("proc.name = cat"),
            &Needs::default()
        )),
        Vec::<&str>::new()
    );
    assert_eq!(data(&Prefilter::none()), Vec::<&str>::new());
    let p = Prefilter::derive(
        &rule("evt.type = write and evt.buffer contains GUARD"),
        &Needs::default(),
    );
    assert_eq!(data(&p), ["write"]);
    assert_eq!(
        p.syscalls.get(&syscalls::WRITE),
        Some(&syscall_filter::TRACE)
    );
    let p = Prefilter::derive(
        &rule("evt.type in (read, pread, sendto, recvfrom) and evt.buflen > 0"),
        &Needs::default(),
    );
    assert_eq!(data(&p), ["read", "pread64", "sendto", "recvfrom"]);
    // The reload window's wide filter keeps what the next rules trace.
    let wide = Prefilter::none().with_syscalls_of(&p);
    assert_eq!(data(&wide), ["read", "pread64", "sendto", "recvfrom"]);
    assert!(wide.traces(syscalls::OPENAT));
}

#[test]
fn the_kernel_check_passes_what_it_cannot_judge() {
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.name startswith /etc and evt.is_open_write = true"),
        &Needs {
            policy_open_paths: vec!["/srv/secret".into()],
            ..Needs::default()
        },
    );
    let at = syscalls::OPENAT;
    assert!(p.passes_open(at, b"/etc/passwd", true));
    assert!(!p.passes_open(at, b"/etc/passwd", false), "reads of /etc");
    assert!(!p.passes_open(at, b"/home/u/notes", true));
    assert!(p.passes_open(at, b"/srv/secret", false), "policy path");
    // Relative, `..`, `.`, `//`, trailing `/.` and over-long paths: the agent resolves these.
    for path in [
        &b"etc/passwd"[..],
        b"../etc/passwd",
        b"/tmp/../etc/passwd",
        b"/./etc/passwd",
        b"//etc/passwd",
        b"/home/.",
    ] {
        assert!(
            p.passes_open(at, path, true),
            "{}",
            String::from_utf8_lossy(path)
        );
    }
    let long = format!("/home/{}", "x".repeat(OPEN_PREFIX_BYTES));
    assert!(p.passes_open(at, long.as_bytes(), false));
    // Not traced at all.
    assert!(!p.passes_open(syscalls::CONNECT, b"/x", false));
}

#[test]
fn a_prefix_holding_a_nul_is_cut_there() {
    let p = Prefilter::derive(
        &ruleset(
            // YAML decodes `\0` in a double-quoted scalar to a NUL.
            "- rule: a\n  desc: d\n  condition: \"evt.type = openat and fd.name startswith /etc/x\\0y\"\n  output: o\n  priority: WARNING\n",
        ),
        &Needs::default(),
    );
    assert_eq!(prefixes(&p), [("/etc/x", open_prefix_bits::ANY)]);
}

#[test]
fn longer_entries_carry_the_bits_of_covering_ones() {
    let p = Prefilter::derive(
        &ruleset(
            "- rule: a\n  desc: d\n  condition: evt.type = openat and evt.is_open_write = true and fd.name startswith /etc\n  output: o\n  priority: WARNING\n- rule: b\n  desc: d\n  condition: evt.type = openat and fd.name = /etc/shadow\n  output: o\n  priority: WARNING\n",
        ),
        &Needs::default(),
    );
    assert_eq!(
        prefixes(&p),
        [("/etc", WRITE), ("/etc/shadow", ANY | WRITE)]
    );
    assert!(p.passes_open(syscalls::OPENAT, b"/etc/shadow", false));
    assert!(p.passes_open(syscalls::OPENAT, b"/etc/shadow", true));
    assert!(!p.passes_open(syscalls::OPENAT, b"/etc/hosts", false));
}

#[test]
fn connect_destinations_no_rule_can_match_are_excluded() {
    let at = |s: &str| Some(s.parse::<std::net::SocketAddr>().expect("addr"));
    let p = Prefilter::derive(
        &rule(
            "evt.type = connect and not fd.snet in (\"127.0.0.0/8\", \"::1/128\") and not fd.sport in (80, 443) and proc.name != curl",
        ),
        &Needs::default(),
    );
    assert_eq!(p.connect_ports, BTreeSet::from([80, 443]));
    assert_eq!(p.connect_nets.len(), 2);
    assert_eq!(
        p.syscalls.get(&syscalls::CONNECT),
        Some(&(syscall_filter::TRACE | syscall_filter::CONNECT_DEST))
    );
    assert!(!p.passes_connect(at("127.0.0.1:4444")));
    assert!(!p.passes_connect(at("[::1]:4444")));
    assert!(!p.passes_connect(at("10.0.0.1:443")));
    assert!(p.passes_connect(at("10.0.0.1:4444")));
    // An IPv4-mapped address is an IPv6 address to the rules: not excluded.
    assert!(p.passes_connect(at("[::ffff:127.0.0.1]:4444")));
    // Not a whole inet sockaddr (unix, short, unreadable): always passes.
    assert!(p.passes_connect(None));

    // `or`: only what both sides exclude; `!=` excludes its value.
    let p = Prefilter::derive(
        &rule(
            "evt.type = connect and ((not fd.sport in (80, 443) and proc.name = a) or (fd.sport != 80 and proc.name = b))",
        ),
        &Needs::default(),
    );
    assert_eq!(p.connect_ports, BTreeSet::from([80]));
    // A rule bounding nothing turns the filter off.
    let p = Prefilter::derive(
        &rule("evt.type = connect and fd.sport = 4444"),
        &Needs::default(),
    );
    assert!(p.connect_ports.is_empty() && p.connect_nets.is_empty());
    assert_eq!(
        p.syscalls.get(&syscalls::CONNECT),
        Some(&syscall_filter::TRACE)
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn engine(with_falco: bool) -> Engine {
    let mut l = Loader::new();
    if with_falco {
        l.add_path(&repo().join("../shared/falco-rules/falco_rules.yaml"));
    }
    l.add_path(&repo().join("policies"));
    let (set, diags) = l.finish();
    assert!(diags.iter().all(|d| !d.is_error()));
    Engine::new(set, "test")
}

/// The rules corpus (events written to trigger and not trigger each rule).
fn corpus() -> Vec<Event> {
    let mut out = Vec::new();
    for dir in ["falco", "policies"] {
        let d = repo().join("tests/corpus").join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).expect("corpus file");
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                out.push(Event::from_json_line(line).expect("corpus event"));
            }
        }
    }
    assert!(out.len() > 100, "corpus too small: {}", out.len());
    out
}

/// A deterministic pseudo-random sequence (no external crate, reproducible).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.next() % v.len()]
    }
}

/// Varied opens: every derived prefix and its neighbours, sensitive and ordinary files,
/// relative paths, `..`, `//`, every access mode, open types, processes in and out of
/// containers.
fn generated(p: &Prefilter, n: usize) -> Vec<Event> {
    let mut dirs: Vec<String> = [
        "/etc",
        "/etc/ssh",
        "/etc/pam.d",
        "/etc/sudoers.d",
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/local/bin",
        "/usr/lib",
        "/root",
        "/root/.ssh",
        "/home/u",
        "/home/u/.ssh",
        "/home/u/.aws",
        "/var/log",
        "/var/lib/app",
        "/proc/self",
        "/proc/1",
        "/sys/kernel",
        "/dev",
        "/dev/shm",
        "/tmp",
        "/boot",
        "/lib/modules",
        "/opt/app",
        "/srv",
        "/run",
        "/var/run/docker.sock",
        "/.",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for k in p.open_prefixes.keys() {
        dirs.push(k.trim_end_matches('/').to_owned());
    }
    let files = [
        "passwd",
        "shadow",
        "sudoers",
        "hosts",
        "authorized_keys",
        "id_rsa",
        "credentials",
        "config",
        "syslog",
        "auth.log",
        "app.conf",
        "x",
        "bash",
        "ld.so.preload",
        "mem",
        "cmdline",
        "environ",
        "a.log",
        "..",
        ".",
        ".bashrc",
        "",
    ];
    let names = [
        "bash", "sh", "cat", "nginx", "python3", "vi", "sshd", "apt", "cron", "sudo", "passwd",
        "java", "node", "runc", "dockerd",
    ];
    const FLAGS: [&str; 7] = [
        "O_RDONLY",
        "O_WRONLY",
        "O_RDWR",
        "O_WRONLY|O_CREAT|O_TRUNC",
        "O_RDWR|O_CREAT",
        "O_RDONLY|O_PATH",
        "O_RDONLY|O_DIRECTORY",
    ];
    let mut r = Lcg(0x5eed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let dir = r.pick(&dirs).clone();
        let file = *r.pick(&files);
        let raw = match r.next() % 10 {
            // Relative, with `..`, with `//`: the agent normalises these.
            0 => format!("{}/{file}", dir.trim_start_matches('/')),
            1 => format!("/tmp/../{}/{file}", dir.trim_start_matches('/')),
            2 => format!("{dir}//{file}"),
            3 => dir.clone(),
            _ => format!("{dir}/{file}"),
        };
        let cwd = *r.pick(&["/", "/etc", "/root", "/tmp"]);
        let mut resolved = crate::state::path::resolve(Some(cwd.as_bytes()), raw.as_bytes()).text();
        // One in eight through a symlink (or a bind mount) in /tmp to another file.
        let link = r.next().is_multiple_of(8);
        let raw = if link {
            let target = format!("{}/{}", r.pick(&dirs), r.pick(&files));
            let lnk = format!("/tmp/lnk{}", r.next() % 4);
            resolved = crate::state::path::resolve(None, target.as_bytes()).text();
            lnk
        } else {
            raw
        };
        let evt_type = *r.pick(&["openat", "openat", "openat", "open", "openat2", "creat"]);
        let flags = if evt_type == "creat" {
            "O_WRONLY|O_CREAT|O_TRUNC"
        } else {
            *r.pick(&FLAGS)
        };
        let mut ev = Event {
            v: 1,
            num: i as u64 + 1,
            time: 1_767_225_600_000_000_000 + i as u64 * 1000,
            evt_type: evt_type.into(),
            res: if r.next().is_multiple_of(5) { -2 } else { 3 },
            ..Default::default()
        };
        // fd.name: the kernel's walk of the opened file (one in ten walks fails: then the
        // path as passed, resolved by the agent); a failed open has no file.
        let from_kernel = ev.res >= 0 && !r.next().is_multiple_of(10);
        if !from_kernel {
            resolved = crate::state::path::resolve(Some(cwd.as_bytes()), raw.as_bytes()).text();
        }
        ev.args
            .insert("name".into(), ArgValue::Str(resolved.clone()));
        ev.args.insert("flags".into(), ArgValue::Str(flags.into()));
        ev.fd = Some(Fd {
            num: if ev.res >= 0 { ev.res } else { -1 },
            fd_type: if flags.contains("O_DIRECTORY") {
                FdType::Directory
            } else {
                FdType::File
            },
            name: resolved,
            nameraw: Some(raw),
            name_from_kernel: (ev.res >= 0).then_some(from_kernel),
            ..Fd::default()
        });
        let name = *r.pick(&names);
        ev.proc.pid = 1000 + (i % 300) as u32;
        ev.proc.ppid = 1;
        ev.proc.name = name.into();
        ev.proc.exe = format!("/usr/bin/{name}");
        ev.proc.exepath = ev.proc.exe.clone();
        ev.proc.cwd = cwd.into();
        ev.proc.uid = if r.next().is_multiple_of(2) { 0 } else { 1000 };
        ev.proc.user = Some(if ev.proc.uid == 0 { "root" } else { "u" }.into());
        ev.proc.start_time = ev.time - 1_000_000_000;
        if r.next().is_multiple_of(2) {
            ev.container = Some(Container {
                id: "3f2a9c1b7d4e".into(),
                name: "web-1".into(),
                image: "docker.io/library/nginx:1.25".into(),
                ..Container::default()
            });
        }
        ev.prepare().expect("prepare");
        out.push(ev);
    }
    out
}

/// Varied connects: excluded and other ports, loopback, private, documentation and IPv6
/// destinations (IPv4-mapped too), results, in and out of containers.
fn generated_connects(n: usize, first_num: u64) -> Vec<Event> {
    let ports: [u16; 10] = [22, 53, 80, 123, 443, 4444, 6667, 8080, 8443, 9999];
    let addrs = [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "192.0.2.10",
        "198.51.100.7",
        "::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:192.0.2.10",
    ];
    let mut r = Lcg(0xc0ff);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ip: IpAddr = r.pick(&addrs).parse().expect("ip");
        let port = *r.pick(&ports);
        let mut ev = Event {
            v: 1,
            num: first_num + i as u64,
            time: 1_767_225_700_000_000_000 + i as u64 * 1000,
            evt_type: "connect".into(),
            res: *r.pick(&[0, -115, -111]),
            ..Default::default()
        };
        ev.fd = Some(Fd {
            num: 3,
            fd_type: fd_type_of(ip),
            sip: Some(ip),
            sport: Some(port),
            l4proto: Some(crate::model::L4Proto::Tcp),
            ..Fd::default()
        });
        let name = *r.pick(&["curl", "nc", "python3", "java", "sh"]);
        let image = (!r.next().is_multiple_of(3))
            .then(|| *r.pick(&["docker.io/library/nginx:1.25", "busybox:latest"]));
        out.push(net_event(ev, name, 2000 + (i % 100) as u32, image));
    }
    out
}

fn fd_type_of(ip: IpAddr) -> FdType {
    if ip.is_ipv4() {
        FdType::Ipv4
    } else {
        FdType::Ipv6
    }
}

/// A generated network event with its process (`name`, `pid`) and, given an image, its
/// container; prepared.
fn net_event(mut ev: Event, name: &str, pid: u32, image: Option<&str>) -> Event {
    ev.proc.pid = pid;
    ev.proc.name = name.into();
    ev.proc.exe = format!("/usr/bin/{name}");
    ev.proc.exepath = ev.proc.exe.clone();
    ev.proc.start_time = ev.time - 1_000_000_000;
    ev.container = image.map(|image| Container {
        id: "3f2a9c1b7d4e".into(),
        name: "web-1".into(),
        image: image.into(),
        ..Container::default()
    });
    ev.prepare().expect("prepare");
    ev
}

/// sendto / sendmsg on UDP and TCP sockets, with and without a destination, to public and
/// private addresses, as capture fills them: a send with a destination has an `addr`
/// argument and `fd.name_changed` from the socket's last name; one without keeps the
/// socket's name (`fd.name_changed` false, or `<NA>` for a socket not seen created).
fn generated_sends(n: usize) -> Vec<Event> {
    let addrs = [
        "127.0.0.1",
        "10.1.2.3",
        "192.0.2.10",
        "198.51.100.7",
        "2001:db8::1",
    ];
    let ports: [u16; 6] = [22, 53, 80, 443, 4444, 8080];
    let mut r = Lcg(0x5e4d);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ip: IpAddr = r.pick(&addrs).parse().expect("ip");
        let port = *r.pick(&ports);
        let with_dest = r.next().is_multiple_of(2);
        let udp = !r.next().is_multiple_of(3);
        let mut ev = Event {
            v: 1,
            num: i as u64,
            time: 1_767_225_800_000_000_000 + i as u64 * 1000,
            evt_type: (*r.pick(&["sendto", "sendmsg"])).into(),
            res: *r.pick(&[0, 64, -11, -111]),
            ..Default::default()
        };
        ev.args.insert("fd".into(), ArgValue::Int(3));
        if with_dest {
            ev.args
                .insert("addr".into(), ArgValue::Str(format!("{ip}:{port}")));
        }
        let known = !r.next().is_multiple_of(4);
        ev.fd = Some(Fd {
            num: 3,
            fd_type: fd_type_of(ip),
            sip: with_dest.then_some(ip),
            sport: with_dest.then_some(port),
            l4proto: Some(if udp {
                crate::model::L4Proto::Udp
            } else {
                crate::model::L4Proto::Tcp
            }),
            connected: known.then(|| !with_dest || r.next().is_multiple_of(5)),
            name_changed: known.then(|| with_dest && !r.next().is_multiple_of(3)),
            ..Fd::default()
        });
        let name = *r.pick(&["curl", "nc", "dig", "sh"]);
        let image = r.next().is_multiple_of(2).then_some("busybox:latest");
        out.push(net_event(ev, name, 3000 + (i % 100) as u32, image));
    }
    out
}

fn syscall_nr(evt_type: &str) -> Option<u32> {
    syscalls::TRACED
        .iter()
        .find(|s| s.name == evt_type)
        .map(|s| s.nr)
}

/// Whether the kernel would have produced the event's record.
fn kernel_keeps(p: &Prefilter, ev: &Event) -> bool {
    let Some(nr) = syscall_nr(&ev.evt_type) else {
        // exec, fork, exit and events the prefilter never touches.
        return true;
    };
    if nr == syscalls::SENDTO || nr == syscalls::SENDMSG {
        return p.passes_send(nr, ev.args.contains_key("addr"));
    }
    if nr == syscalls::CONNECT {
        let dest = ev
            .fd
            .as_ref()
            .and_then(|f| Some(SocketAddr::new(f.sip?, f.sport?)));
        return p.passes_connect(dest);
    }
    if !OPEN_TYPES.contains(&ev.evt_type.as_str()) {
        return p.traces(nr);
    }
    let Some(f) = ev.fd.as_ref() else {
        return p.passes_open(nr, b"", false);
    };
    let raw = f.nameraw.as_ref().unwrap_or(&f.name);
    // The kernel path is `fd.name` when it came from the kernel's walk.
    let kernel = (f.name_from_kernel == Some(true)).then_some(f.name.as_bytes());
    let write = ev.derived.open_write || ev.evt_type == "creat";
    let flags = if write {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    p.passes_open_resolved(nr, raw.as_bytes(), kernel, flags, ev.res)
}

fn alerts(e: &Engine, events: &[&Event]) -> Vec<(u64, String)> {
    let mut m = Matcher::default();
    let mut out = Vec::new();
    for ev in events {
        for &i in e.matches(ev, &mut m) {
            out.push((ev.num, e.rules.rules[i as usize].name.clone()));
        }
    }
    out
}

fn differential(with_falco: bool) {
    let e = engine(with_falco);
    let p = Prefilter::derive(&e.rules, &Needs::default());
    let mut events = corpus();
    let base = events.len() as u64;
    events.extend(generated(&p, 60_000).into_iter().map(|mut ev| {
        ev.num += base;
        ev
    }));
    events.extend(generated_connects(20_000, 0));
    events.extend(generated_sends(20_000));
    for (i, ev) in events.iter_mut().enumerate() {
        ev.num = i as u64 + 1;
    }
    let all: Vec<&Event> = events.iter().collect();
    let kept: Vec<&Event> = events.iter().filter(|ev| kernel_keeps(&p, ev)).collect();
    let (a, b) = (alerts(&e, &all), alerts(&e, &kept));
    assert!(
        a.len() > 100,
        "the trace should trigger many alerts: {}",
        a.len()
    );
    let opens = all
        .iter()
        .filter(|ev| OPEN_TYPES.contains(&ev.evt_type.as_str()))
        .count();
    let dropped = all.len() - kept.len();
    let connects_dropped = all
        .iter()
        .filter(|ev| ev.evt_type == "connect" && !kernel_keeps(&p, ev))
        .count();
    let sends_dropped = all
        .iter()
        .filter(|ev| ev.evt_type.starts_with("send") && !kernel_keeps(&p, ev))
        .count();
    // Falco's `outbound` names sendto/sendmsg, and only with `fd.name_changed=true`.
    if with_falco {
        assert!(
            p.traces(syscalls::SENDTO) && sends_dropped > 0,
            "the send filter dropped nothing ({})",
            p.summary()
        );
    }
    assert!(
        connects_dropped > 0 || p.connect_ports.is_empty(),
        "the connect filter dropped nothing ({})",
        p.summary()
    );
    assert!(
        dropped > opens / 10,
        "the prefilter should drop a fair share of the opens: {dropped} of {opens} ({})",
        p.summary()
    );
    if a != b {
        let missing: Vec<_> = a.iter().filter(|x| !b.contains(x)).take(10).collect();
        let extra: Vec<_> = b.iter().filter(|x| !a.contains(x)).take(10).collect();
        let show = |v: &[&(u64, String)]| {
            v.iter()
                .map(|(n, r)| {
                    let ev = &events[*n as usize - 1];
                    format!(
                        "{r} on #{n} {} {:?} raw={:?} write={}",
                        ev.evt_type,
                        ev.fd.as_ref().map(|f| &f.name),
                        ev.fd.as_ref().and_then(|f| f.nameraw.as_ref()),
                        ev.derived.open_write
                    )
                })
                .collect::<Vec<_>>()
        };
        panic!(
            "alerts differ with the prefilter ({}):\nmissing: {:#?}\nextra: {:#?}",
            p.summary(),
            show(&missing),
            show(&extra)
        );
    }
    eprintln!(
        "differential (falco={with_falco}): {} events, {} dropped by the prefilter ({connects_dropped} connects, {sends_dropped} sends), {} alerts identical; {}",
        all.len(),
        dropped,
        a.len(),
        p.summary()
    );
}

#[test]
fn same_alerts_with_and_without_the_prefilter_guard_rules() {
    differential(false);
}

#[test]
fn same_alerts_with_and_without_the_prefilter_with_falco_rules() {
    differential(true);
}

#[test]
fn write_paths_pass_every_write_and_no_more() {
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.name startswith /etc and evt.is_open_write = true"),
        &Needs {
            write_paths: vec!["/".into()],
            ..Needs::default()
        },
    );
    let at = syscalls::OPENAT;
    assert!(p.passes_open(at, b"/tmp/x", true), "every write");
    assert!(!p.passes_open(at, b"/tmp/x", false), "reads stay filtered");
}

/// Issue 18: a syscall this kernel only has as an ENOSYS stub (init_module without module
/// support) is traced only when some rule can match a failed attempt; guard's own module rule
/// needs a success, so with guard's rules it costs no program (on this host, the
/// `raw_syscalls` program).
#[test]
fn enosys_stubs_are_traced_only_for_rules_that_match_failures() {
    let stubs = Needs {
        enosys_stubs: [syscalls::INIT_MODULE, syscalls::FINIT_MODULE].into(),
        ..Needs::default()
    };
    let traced = |cond: &str, needs: &Needs| {
        let p = Prefilter::derive(&rule(cond), needs);
        (
            p.traces(syscalls::INIT_MODULE),
            p.traces(syscalls::FINIT_MODULE),
        )
    };
    let cases = [
        (
            "evt.type in (init_module, finit_module) and evt.res = SUCCESS",
            (false, false),
        ),
        ("evt.type = init_module and evt.rawres >= 0", (false, false)),
        (
            "evt.type = init_module and evt.failed = false and proc.name = x",
            (false, false),
        ),
        (
            "evt.type = init_module and not evt.res != SUCCESS",
            (false, false),
        ),
        (
            "evt.type = init_module and (evt.res = SUCCESS or evt.res = EPERM)",
            (false, false),
        ),
        // Matches failures, or may: traced.
        ("evt.type = init_module and evt.res = ENOSYS", (true, false)),
        ("evt.type = init_module and evt.rawres < 0", (true, false)),
        (
            "evt.type = finit_module and evt.res != SUCCESS",
            (false, true),
        ),
        (
            "evt.type in (init_module, finit_module) and proc.name = insmod",
            (true, true),
        ),
        (
            "evt.type = init_module and (evt.res = SUCCESS or proc.name = x)",
            (true, false),
        ),
        (
            "evt.type = init_module and not evt.res = SUCCESS",
            (true, false),
        ),
    ];
    for (cond, want) in cases {
        assert_eq!(traced(cond, &stubs), want, "{cond}");
    }
    // Control: on a kernel with the syscalls, a rule on successes traces them.
    assert_eq!(
        traced(
            "evt.type in (init_module, finit_module) and evt.res = SUCCESS",
            &Needs::default()
        ),
        (true, true)
    );
    // guard's rules: no rule needs a failed module load; with Falco's, one does.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut l = Loader::new();
    l.add_path(&root.join("policies"));
    let guard_rules = l.finish().0;
    let p = Prefilter::derive(&guard_rules, &stubs);
    assert!(!p.traces(syscalls::INIT_MODULE) && !p.traces(syscalls::FINIT_MODULE));
    let p = Prefilter::derive(&guard_rules, &Needs::default());
    assert!(p.traces(syscalls::INIT_MODULE) && p.traces(syscalls::FINIT_MODULE));
}

/// An open whose path as written no rule can match (a symlink, a bind mount) still produces a
/// record when the file it opened, as the kernel resolved it, is one a rule names.
#[test]
fn the_kernel_path_of_the_opened_file_also_passes() {
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.name startswith /etc/shadow"),
        &Needs::default(),
    );
    let at = syscalls::OPENAT;
    assert!(
        !p.passes_open(at, b"/tmp/s", false),
        "control: the link alone"
    );
    let opened = |path: &[u8]| p.passes_open_resolved(at, b"/tmp/s", Some(path), 0, 3);
    assert!(opened(b"/etc/shadow"));
    assert!(!opened(b"/tmp/other"));
    assert!(!p.passes_open_resolved(at, b"/tmp/s", None, 0, -i64::from(libc::ENOENT)));
    // A kernel path too long for a key passes, as in the kernel.
    let long = format!("/{}", "d/".repeat(200));
    assert!(opened(long.as_bytes()));
    // No rule reads the path as passed: the resolved kernel path decides alone (it is
    // `fd.name`), and the path as passed only when the walk failed.
    assert!(!p.passes_open_resolved(at, b"/etc/shadow", Some(b"/tmp/x"), 0, 3));
    assert!(p.passes_open_resolved(at, b"/etc/shadow", None, 0, 3));
    // A rule on the path as passed: then it passes alone too.
    let p = Prefilter::derive(
        &rule(
            "evt.type = openat and (fd.name startswith /etc/shadow or fd.nameraw startswith /srv)",
        ),
        &Needs::default(),
    );
    assert_eq!(
        p.syscalls.get(&at),
        Some(&syscall_filter::TRACE),
        "`fd.nameraw startswith` bounds nothing"
    );
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.name startswith /etc/shadow and fd.nameraw contains '../'"),
        &Needs::default(),
    );
    assert_eq!(
        p.syscalls.get(&at),
        Some(&(syscall_filter::TRACE | syscall_filter::OPEN_PATHS)),
        "no KPATH_DECIDES"
    );
    assert!(p.passes_open_resolved(at, b"/tmp/../etc/shadow", Some(b"/etc/shadow"), 0, 3));
    assert!(p.passes_open_resolved(at, b"../etc/shadow", Some(b"/tmp/x"), 0, 3));
    assert!(!p.passes_open_resolved(at, b"/tmp/x", Some(b"/tmp/x"), 0, 3));
    // openat2's flags are in user memory: its path as passed is always read.
    let p = Prefilter::derive(
        &rule("evt.type in (openat, openat2) and fd.name startswith /etc/shadow"),
        &Needs::default(),
    );
    assert_eq!(
        p.syscalls.get(&syscalls::OPENAT2),
        Some(&(syscall_filter::TRACE | syscall_filter::OPEN_PATHS))
    );
}

/// A path that is not plain passes whichever name it is: a dot file's kernel path holds `/.`,
/// which a rule's `contains` may look for, and `..` may sit inside a name (`/a..b`).
#[test]
fn paths_that_are_not_plain_pass_as_passed_and_as_resolved() {
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.name contains '/.ssh/' and fd.name glob '/home/*'"),
        &Needs::default(),
    );
    assert!(p.open_prefixes.is_empty() || !p.passes_open(syscalls::OPENAT, b"/home/u/x", false));
    let at = syscalls::OPENAT;
    let opened = |raw: &[u8], k: &[u8]| p.passes_open_resolved(at, raw, Some(k), 0, 3);
    // A symlink in /tmp to a key: only the kernel path names it.
    assert!(opened(b"/tmp/lnk", b"/home/u/.ssh/id_rsa"));
    assert!(!opened(b"/tmp/lnk", b"/home/u/notes"), "control");
    // `..` inside a name is plain in a kernel path (its walk has no `..` component), so a
    // rule looking for it gets its prefixes; a path as passed holding `..` anywhere passes.
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.name contains '..x' and fd.name startswith /srv"),
        &Needs::default(),
    );
    assert_eq!(prefixes(&p), [("/srv", ANY)]);
    assert!(p.passes_open_resolved(at, b"/tmp/lnk", Some(b"/srv/a..x"), 0, 3));
    assert!(
        !p.passes_open_resolved(at, b"/tmp/lnk", Some(b"/tmp/a..x"), 0, 3),
        "control"
    );
    // On the path as passed, a `..` inside a name (`/tmp/a../b`) is not a traversal but
    // passes: a rule on the path as passed looking for `../` need not be a prefix.
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.nameraw contains '../' and fd.name startswith /etc"),
        &Needs::default(),
    );
    assert!(p.passes_open(at, b"/tmp/a../b", false));
    assert!(!p.passes_open(at, b"/tmp/a./b", false), "control");
    // A glob whose literal may be a class or an alternation bounds nothing by itself.
    assert!(glob_only_in_unfiltered_raw("*../*"));
    assert!(!glob_only_in_unfiltered_raw("*[/.].*"));
    assert!(!glob_only_in_unfiltered_raw("{/.x,y}"));
}

/// A seal refuses an open for write in the kernel, by any name: the refusal (EPERM, for write,
/// truncate or create) is kept whatever the names, so the agent can record it; other failures
/// and refused reads of a name no rule needs are not.
#[test]
fn an_open_refused_for_write_passes_whatever_its_name() {
    let p = Prefilter::derive(
        &rule("evt.type = openat and fd.name startswith /etc/shadow"),
        &Needs::default(),
    );
    let at = syscalls::OPENAT;
    let eperm = -i64::from(libc::EPERM);
    let refused = |flags: i32, ret: i64| p.passes_open_resolved(at, b"/tmp/hard", None, flags, ret);
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_RDONLY | libc::O_CREAT,
    ] {
        assert!(refused(flags, eperm), "flags {flags:#o}");
        assert!(
            !refused(flags, -i64::from(libc::EACCES)),
            "flags {flags:#o}"
        );
    }
    assert!(!refused(libc::O_RDONLY, eperm), "a refused read");
    assert!(
        !p.passes_open_resolved(syscalls::CONNECT, b"/tmp/hard", None, libc::O_WRONLY, eperm),
        "an untraced syscall"
    );
}

/// The `fanotify` backend's seal records and truncate enforcement need every syscall that
/// writes without an open; without that need a rule set about opens traces none of them.
#[test]
fn no_open_writes_are_traced_only_when_needed() {
    let r = rule("evt.type = openat and fd.name startswith /etc");
    let without = Prefilter::derive(&r, &Needs::default());
    let with = Prefilter::derive(
        &r,
        &Needs {
            no_open_writes: true,
            ..Needs::default()
        },
    );
    for nr in NO_OPEN_WRITE_SYSCALLS {
        // A type the rule language does not know (fchmodat2) is always traced.
        let name = syscalls::name(nr).expect("traced");
        let known = event_type_id(syscalls::event_type(name)) != crate::rules::fields::OTHER_TYPE;
        assert!(
            !known || !without.traces(nr),
            "{nr} traced without the need"
        );
        assert!(with.traces(nr), "{nr} not traced with the need");
    }
    assert!(with.traces(syscalls::OPENAT));
    assert!(!with.traces(syscalls::MOUNT));
}

/// A send without a destination keeps the socket's name: dropped in the kernel only while
/// every rule that can match the send type requires `fd.name_changed=true`; the alerts on a
/// generated trace of sends are the same with and without the filter.
#[test]
fn sends_without_a_destination_are_dropped_only_when_no_rule_can_match_them() {
    let udp_out = "evt.type in (sendto, sendmsg) and fd.l4proto != tcp and fd.connected=false and fd.name_changed=true and fd.sport = 53";
    let set = rule(udp_out);
    let p = Prefilter::derive(&set, &Needs::default());
    for nr in [syscalls::SENDTO, syscalls::SENDMSG] {
        assert!(
            !p.passes_send(nr, false),
            "{nr}: a send without destination"
        );
        assert!(p.passes_send(nr, true), "{nr}: a send with one");
    }
    let sends = generated_sends(20_000);
    let all: Vec<&Event> = sends.iter().collect();
    let kept: Vec<&Event> = sends.iter().filter(|ev| kernel_keeps(&p, ev)).collect();
    let e = Engine::new(set, "test");
    let (a, b) = (alerts(&e, &all), alerts(&e, &kept));
    assert!(
        a.len() > 100,
        "the trace should trigger the rule: {}",
        a.len()
    );
    assert!(
        kept.len() < all.len() * 2 / 3,
        "{} of {}",
        kept.len(),
        all.len()
    );
    assert_eq!(a, b, "alerts differ with the send filter");
    // Any rule that may match without the name changing keeps every send of its type.
    for cond in [
        "evt.type = sendto and fd.sport = 53",
        "evt.type = sendto and not fd.name_changed=true",
        "evt.type = sendto and fd.name_changed != true",
        "evt.type = sendto and (fd.name_changed=true or proc.name = nc)",
        "evt.type = sendto and fd.name_changed=false",
    ] {
        let p = Prefilter::derive(&rule(cond), &Needs::default());
        assert!(p.passes_send(syscalls::SENDTO, false), "{cond}");
    }
    // With everything needed nothing is filtered.
    let p = Prefilter::derive(
        &rule(udp_out),
        &Needs {
            everything: true,
            ..Needs::default()
        },
    );
    assert!(p.passes_send(syscalls::SENDTO, false));
}
