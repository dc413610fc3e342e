//! Network rules on this host (no BPF LSM): the cgroup sock_addr programs refuse a denied
//! connect or datagram with EPERM before any packet, in a real container (`--network host`,
//! listeners on the host's loopback started here). Every way to reach a denied destination
//! without a plain connect is tried (UDP `sendto` without connect, IPv4 and IPv4-mapped,
//! `connect(0.0.0.0)` against a `127.0.0.0/8` rule, `connect([::])` against a `[::1]` rule,
//! TCP Fast Open); each gets EPERM and the
//! listener receives nothing, while an allowed port works in the same container and a control
//! container without the policy reaches everything. A quarantined container's connect and
//! sendto fail with EPERM up front too.

use std::{
    io::Read,
    net::{TcpListener, UdpSocket},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use guard_tests::harness::{
    Container, Docker, Scratch, agent_lock, can_run, cgroup_v2_dir, is_root,
};

/// What a listener saw: connections accepted (TCP) and bytes received.
#[derive(Clone, Default)]
struct Seen {
    conns: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl Seen {
    fn get(&self) -> (usize, usize) {
        (
            self.conns.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }
}

fn tcp_listener() -> (u16, Seen) {
    tcp_listener_on("127.0.0.1:0")
}

fn tcp_listener_on(addr: &str) -> (u16, Seen) {
    let l = TcpListener::bind(addr).expect("tcp listener");
    let port = l.local_addr().expect("addr").port();
    let seen = Seen::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            s.conns.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    s.bytes.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    (port, seen)
}

fn udp_listener() -> (u16, Seen) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp listener");
    let port = sock.local_addr().expect("addr").port();
    let seen = Seen::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            s.conns.fetch_add(1, Ordering::SeqCst);
            s.bytes.fetch_add(n, Ordering::SeqCst);
        }
    });
    (port, seen)
}

/// guard-testkit and the libraries it links, copied to a directory containers mount at /kit
/// (busybox has neither sendto without connect nor TCP Fast Open).
fn testkit_dir(s: &Scratch) -> PathBuf {
    let dir = s.dir.join("kit");
    std::fs::create_dir_all(&dir).expect("kit dir");
    let kit = env!("CARGO_BIN_EXE_guard-testkit");
    std::fs::copy(kit, dir.join("guard-testkit")).expect("copy testkit");
    let ldd = Command::new("ldd").arg(kit).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            let name = Path::new(p).file_name().expect("lib name");
            std::fs::copy(p, dir.join(name)).expect("copy lib");
        }
    }
    dir
}

/// Runs guard-testkit in the container through the copied dynamic loader.
fn kit(c: &Container, args: &[&str]) -> String {
    let out = Command::new("docker")
        .args([
            "exec",
            &c.id,
            "/kit/ld-linux-x86-64.so.2",
            "--library-path",
            "/kit",
        ])
        .arg("/kit/guard-testkit")
        .args(args)
        .output()
        .expect("docker exec testkit");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        text.starts_with("ok") || text.starts_with("errno="),
        "testkit {args:?} did not run: {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `echo DATA | nc ADDR PORT` with busybox in the container: (exit code, stderr).
fn nc(c: &Container, addr: &str, port: u16, data: &str) -> (Option<i32>, String) {
    let out = Command::new("docker")
        .args(["exec", &c.id, "sh", "-c"])
        .arg(format!("echo {data} | nc {addr} {port}"))
        .output()
        .expect("docker exec nc");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits up to 3 s for a listener to see at least `want` bytes.
fn wait_bytes(seen: &Seen, want: usize) -> usize {
    for _ in 0..30 {
        if seen.get().1 >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen.get().1
}

const EPERM: &str = "errno=1 EPERM";

#[test]
fn denied_destinations_get_eperm_by_every_path_and_receive_nothing() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let s = Scratch::new("netpol");
    let kitdir = testkit_dir(&s);
    let mount = format!("{}:/kit:ro", kitdir.display());
    let (tcp_denied, tcp_seen) = tcp_listener();
    let (tcp_allowed, allowed_seen) = tcp_listener();
    let (udp_denied, udp_seen) = udp_listener();
    // IPv6 loopback: `::` reaches `::1`.
    let (tcp6_denied, tcp6_seen) = tcp_listener_on("[::1]:0");
    let c = docker.run(
        &["--network", "host", "--label", "guard-net=1", "-v", &mount],
        &["sleep", "300"],
    );
    let ctl = docker.run(&["--network", "host", "-v", &mount], &["sleep", "300"]);
    let policy = s.policy(&format!(
        "- policy: net\n  workload: {{labels: {{guard-net: \"1\"}}}}\n  mode: enforce\n  enforce:\n    connect: {{deny: [\"127.0.0.0/8:{tcp_denied}\", \"127.0.0.0/8:{udp_denied}\", \"[::1]:{tcp6_denied}\"]}}\n"
    ));
    let agent = s.agent(&policy, &[]);

    let tcp = |a: &str| format!("{a}:{tcp_denied}");
    let udp = |a: &str| format!("{a}:{udp_denied}");
    // The policed container: every path to a denied destination is refused up front.
    let (code, err) = nc(&c, "127.0.0.1", tcp_denied, "SECRET");
    assert!(
        code == Some(1) && err.contains("Operation not permitted"),
        "denied nc: {code:?} {err:?}"
    );
    let denied: Vec<(&str, String)> = vec![
        (
            "connect 0.0.0.0",
            kit(&c, &["try-connect", &tcp("0.0.0.0")]),
        ),
        (
            "connect [::ffff:127.0.0.1]",
            kit(&c, &["try-connect", &tcp("[::ffff:127.0.0.1]")]),
        ),
        (
            "tcp fast open",
            kit(&c, &["try-tfo", &tcp("127.0.0.1"), "SECRET"]),
        ),
        (
            "udp sendto",
            kit(&c, &["try-sendto", &udp("127.0.0.1"), "SECRET"]),
        ),
        (
            "udp sendto v4-mapped",
            kit(&c, &["try-sendto", &udp("[::ffff:127.0.0.1]"), "SECRET"]),
        ),
        (
            "udp sendto 0.0.0.0",
            kit(&c, &["try-sendto", &udp("0.0.0.0"), "SECRET"]),
        ),
        (
            "udp connect",
            kit(&c, &["try-connect-udp", &udp("127.0.0.1")]),
        ),
        (
            "connect [::]",
            kit(&c, &["try-connect", &format!("[::]:{tcp6_denied}")]),
        ),
    ];
    for (what, out) in &denied {
        assert!(out.starts_with(EPERM), "{what}: {out}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        tcp_seen.get(),
        (0, 0),
        "the denied TCP listener saw a connection or bytes"
    );
    assert_eq!(
        udp_seen.get(),
        (0, 0),
        "the denied UDP listener received datagrams"
    );
    assert_eq!(
        tcp6_seen.get(),
        (0, 0),
        "the denied [::1] listener saw a connection"
    );

    // An allowed port in the same container works.
    let (code, err) = nc(&c, "127.0.0.1", tcp_allowed, "HELLO");
    assert_eq!(code, Some(0), "allowed nc failed: {err}");
    assert_eq!(
        wait_bytes(&allowed_seen, 6),
        6,
        "the allowed listener did not get HELLO"
    );

    // The control container, without the policy, reaches the denied destinations by the same
    // paths: the probes do deliver when nothing refuses them.
    let (code, err) = nc(&ctl, "127.0.0.1", tcp_denied, "CONTROL");
    assert_eq!(code, Some(0), "control nc: {err}");
    assert_eq!(wait_bytes(&tcp_seen, 8), 8, "control nc bytes");
    assert!(kit(&ctl, &["try-tfo", &tcp("127.0.0.1"), "FASTOPEN"]).starts_with("ok"));
    assert_eq!(wait_bytes(&tcp_seen, 16), 16, "control TCP Fast Open bytes");
    assert!(kit(&ctl, &["try-connect", &tcp("0.0.0.0")]).starts_with("ok"));
    assert!(kit(&ctl, &["try-connect", &format!("[::]:{tcp6_denied}")]).starts_with("ok"));
    for _ in 0..30 {
        if tcp6_seen.get().0 == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        tcp6_seen.get().0,
        1,
        "control connect to [::] reached [::1]"
    );
    for (i, a) in ["127.0.0.1", "[::ffff:127.0.0.1]", "0.0.0.0"]
        .iter()
        .enumerate()
    {
        let out = kit(&ctl, &["try-sendto", &udp(a), "DGRAM"]);
        assert!(out.starts_with("ok"), "control sendto {a}: {out}");
        assert_eq!(
            wait_bytes(&udp_seen, 5 * (i + 1)),
            5 * (i + 1),
            "control sendto {a}"
        );
    }

    agent.stop();
    // Decision records name the operation and the program that refused it; the destination
    // is the one the kernel would have reached (0.0.0.0 reaches 127.0.0.1).
    let d = s.decisions();
    let hooks = |op: &str, target: &str| -> Vec<String> {
        let mut v: Vec<String> = d
            .iter()
            .filter(|r| r["op"] == op && r["target"] == target && r["decision"] == "deny")
            .map(|r| {
                assert_eq!(r["policy"], "net");
                assert_eq!(r["workload"]["container_id"], c.id.as_str());
                r["hook"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        hooks("connect", &tcp("127.0.0.1")),
        [
            "cgroup_connect4",
            "cgroup_connect4",
            "cgroup_connect4",
            "cgroup_connect6"
        ],
        "connect decisions (nc, 0.0.0.0, TCP Fast Open; v4-mapped): {d:?}"
    );
    assert_eq!(
        hooks("sendmsg", &udp("127.0.0.1")),
        ["cgroup_sendmsg4", "cgroup_sendmsg4", "cgroup_sendmsg4"],
        "sendmsg decisions (v4, v4-mapped, 0.0.0.0): {d:?}"
    );
    assert_eq!(
        hooks("connect", &udp("127.0.0.1")),
        ["cgroup_connect4"],
        "UDP connect: {d:?}"
    );
    assert_eq!(
        hooks("connect", &format!("[::1]:{tcp6_denied}")),
        ["cgroup_connect6"],
        "connect to [::] is recorded as the [::1] it reaches: {d:?}"
    );
    assert_eq!(
        d.len(),
        9,
        "one decision per refused attempt, none for the control: {d:?}"
    );
    s.cleanup();
    // After cleanup nothing refuses: the same sendto goes through.
    assert!(kit(&c, &["try-sendto", &udp("127.0.0.1"), "AFTER"]).starts_with("ok"));
}

#[test]
fn quarantined_container_connect_and_sendto_fail_with_eperm() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let s = Scratch::new("netq");
    let kitdir = testkit_dir(&s);
    let mount = format!("{}:/kit:ro", kitdir.display());
    let (tcp_port, tcp_seen) = tcp_listener();
    let (udp_port, udp_seen) = udp_listener();
    let q = docker.run(&["--network", "host", "-v", &mount], &["sleep", "300"]);
    let ctl = docker.run(&["--network", "host", "-v", &mount], &["sleep", "300"]);
    let pins = PathBuf::from(format!(
        "/sys/fs/bpf/guard-test-netq-{}",
        std::process::id()
    ));
    use guard::respond::quarantine::{ConnectDeny, Quarantine};
    let root = guard::sockaddr::cgroup2_root().expect("cgroup2 root");
    let mut quar = Quarantine::attach(&pins, &root).expect("attach quarantine");
    assert_eq!(quar.connect_deny, ConnectDeny::SockAddr);
    let cg = std::fs::metadata(cgroup_v2_dir(q.pid()))
        .expect("cgroup dir")
        .ino();
    quar.add(cg, None).expect("quarantine the container");

    let tcp = format!("127.0.0.1:{tcp_port}");
    let udp = format!("127.0.0.1:{udp_port}");
    let connect = kit(&q, &["try-connect", &tcp]);
    let sendto = kit(&q, &["try-sendto", &udp, "LEAK"]);
    let tfo = kit(&q, &["try-tfo", &tcp, "LEAK"]);
    let (code, err) = nc(&q, "127.0.0.1", tcp_port, "LEAK");
    std::thread::sleep(Duration::from_millis(500));
    let quarantined = (tcp_seen.get(), udp_seen.get());
    // The control container is not quarantined.
    let ctl_connect = kit(&ctl, &["try-connect", &tcp]);
    let ctl_sendto = kit(&ctl, &["try-sendto", &udp, "OK"]);
    let ctl_bytes = wait_bytes(&udp_seen, 2);
    drop(quar);
    Quarantine::detach_pins(&pins).expect("detach");
    let _ = std::fs::remove_dir(&pins);

    assert!(connect.starts_with(EPERM), "quarantined connect: {connect}");
    assert!(sendto.starts_with(EPERM), "quarantined sendto: {sendto}");
    assert!(tfo.starts_with(EPERM), "quarantined TCP Fast Open: {tfo}");
    assert!(
        code == Some(1) && err.contains("Operation not permitted"),
        "quarantined nc: {code:?} {err:?}"
    );
    assert_eq!(
        quarantined,
        ((0, 0), (0, 0)),
        "the quarantined container reached a listener"
    );
    assert!(
        ctl_connect.starts_with("ok"),
        "control connect: {ctl_connect}"
    );
    assert!(ctl_sendto.starts_with("ok"), "control sendto: {ctl_sendto}");
    assert_eq!(ctl_bytes, 2, "control datagram");
}
