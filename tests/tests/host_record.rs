//! Host layer, capture end to end: `guard record` on real containers gives enriched events
//! (container id, name and image, argv, parent, absolute paths, flags, errno, addresses).

use std::{net::TcpListener, time::Duration};

use guard_tests::harness::{Agent, Docker, agent_lock, can_run, cgroup_v2_dir, is_root};
use serde_json::Value;

fn record_container(c: &guard_tests::harness::Container) -> Agent {
    let dir = cgroup_v2_dir(c.pid());
    Agent::start_cmd(&["record", "--only-cgroup", dir.to_str().expect("utf8")])
}

#[test]
fn exec_open_and_connect_in_a_container_are_enriched() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let c = docker.run(
        &["--network=host", "--label", "app=guard-e2e"],
        &["sleep", "600"],
    );
    let name = c.name();
    let agent = record_container(&c);
    let short = &c.id[..12];

    // Exec: full argv, the container's identity, and the right parent. (busybox's shell runs
    // bare applet names in-process; a path makes it fork and exec.)
    const CMD: &str = "/bin/busybox id -u; true";
    let is_id = |v: &Value| {
        v["type"] == "execve"
            && v["proc"]["exe"] == "/bin/busybox"
            && v["proc"]["args"] == serde_json::json!(["id", "-u"])
    };
    assert!(c.exec(&["sh", "-c", CMD]).0);
    let id = agent
        .wait_for(Duration::from_secs(20), is_id)
        .expect("exec event for busybox id");
    assert_eq!(id["container"]["id"], short);
    // Metadata comes from the Docker API asynchronously; the first event may be <NA>.
    let id = if id["container"]["name"] == name {
        id
    } else {
        assert!(c.exec(&["sh", "-c", CMD]).0);
        agent
            .wait_for(Duration::from_secs(20), |v| {
                is_id(v) && v["container"]["name"] == name.as_str()
            })
            .expect("enriched exec event")
    };
    assert_eq!(id["container"]["image"], "guard-test-busybox:latest");
    assert_eq!(id["container"]["labels"]["app"], "guard-e2e");
    assert_eq!(id["proc"]["exepath"], "/bin/busybox");
    assert_eq!(id["proc"]["name"], "busybox");
    assert_eq!(id["proc"]["ancestors"][0]["name"], "sh");
    assert_eq!(
        id["proc"]["ancestors"][0]["args"],
        serde_json::json!(["-c", CMD])
    );
    assert_eq!(id["proc"]["ppid"], id["proc"]["ancestors"][0]["pid"]);

    // Open: relative after cd, append for write, and a failure with its errno.
    assert!(c.exec(&["sh", "-c", "cd /etc && cat shadow"]).0);
    let sh = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["fd"]["name"] == "/etc/shadow"
        })
        .expect("open of /etc/shadow");
    assert_eq!(sh["fd"]["nameraw"], "shadow");
    assert_eq!(sh["args"]["flags"], "O_RDONLY");
    assert_eq!(sh["proc"]["cwd"], "/etc");
    assert!(sh["res"].as_i64().unwrap_or(-1) >= 0);
    assert!(c.exec(&["sh", "-c", "echo x >> /etc/passwd"]).0);
    let pw = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["fd"]["name"] == "/etc/passwd" && v["proc"]["name"] == "sh"
        })
        .expect("open of /etc/passwd");
    let flags = pw["args"]["flags"].as_str().unwrap_or_default().to_owned();
    for f in ["O_WRONLY", "O_CREAT", "O_APPEND"] {
        assert!(flags.split('|').any(|x| x == f), "{f} missing from {flags}");
    }
    let (ok, _) = c.exec(&["cat", "/nonexistent/guard"]);
    assert!(!ok);
    let miss = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["fd"]["name"] == "/nonexistent/guard"
        })
        .expect("failed open");
    assert_eq!(miss["res"], -2);

    // Connect: to a listener this test owns on loopback (the container shares the host network).
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    // Accept and close at once, so the client in the container finishes.
    std::thread::spawn(move || {
        if let Ok((s, _)) = listener.accept() {
            drop(s);
        }
    });
    let _ = c.exec(&[
        "sh",
        "-c",
        &format!("echo hi | timeout 5 nc 127.0.0.1 {port}"),
    ]);
    let conn = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["type"] == "connect" && v["fd"]["sport"] == port
        })
        .expect("connect event");
    assert_eq!(conn["fd"]["sip"], "127.0.0.1");
    assert_eq!(conn["fd"]["type"], "ipv4");
    assert_eq!(conn["fd"]["l4proto"], "tcp");
    assert_eq!(conn["res"], 0);
    assert_eq!(conn["container"]["id"], short);
}

/// A dockerd owned by this test (own socket, data root and exec root, live-restore so its
/// containers outlive it), so stopping it never touches a daemon someone else runs.
struct OwnDockerd {
    root: std::path::PathBuf,
    sock: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnDockerd {
    fn new() -> Self {
        let root = std::path::PathBuf::from(format!(
            "/var/lib/guard-test-dockerd-{}",
            std::process::id()
        ));
        let sock = root.join("docker.sock");
        std::fs::create_dir_all(&root).expect("dockerd root");
        let mut d = OwnDockerd {
            root,
            sock,
            child: None,
        };
        d.start();
        d
    }

    fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.root.join("dockerd.log")).expect("log");
        let child = std::process::Command::new("dockerd")
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--live-restore",
            ])
            .arg("-H")
            .arg(self.host())
            .arg("--data-root")
            .arg(self.root.join("data"))
            .arg("--exec-root")
            .arg(self.root.join("exec"))
            .arg("--pidfile")
            .arg(self.root.join("dockerd.pid"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawning dockerd");
        self.child = Some(child);
        for _ in 0..120 {
            if self.docker(&["info"]).0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "test dockerd did not come up; see {}",
            self.root.join("dockerd.log").display()
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own, not yet reaped, child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn docker(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .output()
            .expect("docker");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    }
}

impl Drop for OwnDockerd {
    fn drop(&mut self) {
        if self.child.is_none() {
            self.start();
        }
        let (_, ids) = self.docker(&["ps", "-aq"]);
        for id in ids.split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        self.stop();
        let _ = std::process::Command::new("umount")
            .arg("-R")
            .arg(self.root.join("exec"))
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn capture_survives_the_docker_daemon_going_away_and_recovers() {
    if !can_run(
        is_root(),
        "needs root to load eBPF programs and run dockerd",
    ) {
        return;
    }
    // The shared fixture makes sure dockerd and the image tooling exist.
    let Some(_docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let mut d = OwnDockerd::new();
    let image = Docker.cmd(&["image", "save", guard_tests::harness::TEST_IMAGE]);
    drop(image);
    // Load the test image into our daemon through a pipe of `docker save`.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker image save {} | docker -H {} image load",
            guard_tests::harness::TEST_IMAGE,
            d.host()
        ))
        .status()
        .expect("image copy");
    assert!(status.success());
    let (ok, id) = d.docker(&[
        "run",
        "-d",
        "--network=none",
        "--name",
        "guard-daemon-down",
        guard_tests::harness::TEST_IMAGE,
        "sh",
        "-c",
        "while true; do cat /etc/hostname >/dev/null; sleep 0.2; done",
    ]);
    assert!(ok, "container start on the test daemon");
    let (_, pid) = d.docker(&["inspect", "-f", "{{.State.Pid}}", &id]);
    let dir = cgroup_v2_dir(pid.parse().expect("pid"));
    let agent = Agent::start_cmd(&[
        "record",
        "--only-cgroup",
        dir.to_str().expect("utf8"),
        "--docker-socket",
        d.sock.to_str().expect("utf8"),
    ]);
    let is_open = |v: &Value| v["type"] == "openat" && v["fd"]["name"] == "/etc/hostname";
    agent
        .wait_for(Duration::from_secs(30), |v| {
            is_open(v) && v["container"]["name"] == "guard-daemon-down"
        })
        .expect("enriched events while the daemon is up");

    d.stop();
    let down = agent
        .wait_for(Duration::from_secs(30), |v| {
            is_open(v) && v["container"]["name"] == "<NA>"
        })
        .expect("capture continues with <NA> metadata while the daemon is down");
    assert_eq!(
        down["container"]["id"],
        &id[..12],
        "the id comes from the cgroup, not the daemon"
    );
    assert_eq!(down["container"]["image"], "<NA>");

    d.start();
    agent
        .wait_for(Duration::from_secs(60), |v| {
            is_open(v) && v["container"]["name"] == "guard-daemon-down"
        })
        .expect("metadata recovers when the daemon is back");
}
