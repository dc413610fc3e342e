//! quarantine_network end to end, with a `--network host` busybox container and a TCP
//! listener on 127.0.0.1 started by the test:
//! - before: the container reaches the listener;
//! - after the quarantine (triggered by a Falco alert posted to `guard respond`): it cannot,
//!   while a host process still can;
//! - SIGKILL of the agent keeps the quarantine (pinned), a restarted agent adopts the pins;
//! - `guard quarantine lift <container>` restores the network.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use guard::respond::quarantine::{PIN_DIR, Quarantine};
use guard_tests::{harness::*, respond_util::*};

/// Accepts connections and counts those that sent "hi".
fn listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let h = h.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let mut buf = [0u8; 16];
                if let Ok(n) = s.read(&mut buf)
                    && buf[..n].starts_with(b"hi")
                {
                    h.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (port, hits)
}

/// The container sends "hi" to the listener; true when the listener got it.
fn container_reaches(c: &Container, port: u16, hits: &AtomicUsize) -> bool {
    let before = hits.load(Ordering::SeqCst);
    let _ = c.exec(&[
        "sh",
        "-c",
        &format!("echo hi | timeout 2 nc 127.0.0.1 {port}"),
    ]);
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if hits.load(Ordering::SeqCst) > before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn host_reaches(port: u16, hits: &AtomicUsize) -> bool {
    let before = hits.load(Ordering::SeqCst);
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = s.write_all(b"hi");
    drop(s);
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if hits.load(Ordering::SeqCst) > before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

struct RespondAgent {
    child: Child,
    port: u16,
}

impl RespondAgent {
    fn start(dir: &Path, port: u16) -> RespondAgent {
        let mut child = Command::new(guard_bin())
            .args(["respond", "--responses"])
            .arg(dir)
            .args(["--serve-falco", &format!("127.0.0.1:{port}")])
            // Loopback plain HTTP: the test posts without certificates (respond_falco covers mTLS).
            .arg("--insecure-intake")
            .env("GUARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn guard respond");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[guard respond] {line}");
                if line.contains("guard: ready")
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("guard respond did not become ready");
        RespondAgent { child, port }
    }

    fn post(&self, body: &str) -> u16 {
        post(self.port, body)
    }

    /// SIGKILL, as a crash.
    fn crash(mut self) {
        // SAFETY: our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for RespondAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 POST; returns the status code (0 when no answer).
pub fn post(port: u16, body: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "POST /falco HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[test]
fn quarantine_network_end_to_end() {
    let Some(d) = Docker::get() else { return };
    let _l = agent_lock();
    let pins = Path::new(PIN_DIR);
    let _ = Quarantine::detach_pins(pins);
    let (port, hits) = listener();
    let c = d.run(&["--network", "host"], &["sleep", "600"]);
    assert!(
        container_reaches(&c, port, &hits),
        "before quarantine the container connects"
    );

    let cfg = TempDir::new("quarantine-cfg");
    std::fs::write(
        cfg.0.join("q.yaml"),
        "- response: isolate\n  match: {priority: '>= Critical'}\n  actions: [quarantine_network]\n",
    )
    .expect("write config");
    let agent_port = free_port();
    let agent = RespondAgent::start(&cfg.0, agent_port);
    let alert = serde_json::json!({
        "time": "2026-01-01T00:00:00.000000000Z",
        "rule": "Outbound connection from db",
        "priority": "Critical",
        "output": "test",
        "output_fields": {"container.id": &c.id[..12], "container.name": c.name()},
    });
    assert_eq!(agent.post(&alert.to_string()), 202);
    let mut cut = false;
    for _ in 0..50 {
        if pins.join("quarantine_map").exists() && !container_reaches(&c, port, &hits) {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cut, "after quarantine the container cannot connect");
    assert!(host_reaches(port, &hits), "a host process still can");

    // Crash the agent: the pinned programs keep the quarantine.
    agent.crash();
    assert!(
        !container_reaches(&c, port, &hits),
        "quarantine survives the agent"
    );
    // A restarted agent adopts the pins (and the quarantine still holds).
    assert_eq!(
        guard::respond::quarantine::loaded_program_count(),
        guard::respond::quarantine::PROGRAM_COUNT
    );
    let agent = RespondAgent::start(&cfg.0, agent_port);
    assert!(
        !container_reaches(&c, port, &hits),
        "still quarantined after restart"
    );
    // A second alert after the restart adopts the pins: no second pair of programs.
    assert_eq!(agent.post(&alert.to_string()), 202);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        guard::respond::quarantine::loaded_program_count(),
        guard::respond::quarantine::PROGRAM_COUNT,
        "the restarted agent adopted the pinned programs instead of attaching again"
    );
    assert!(!container_reaches(&c, port, &hits), "still quarantined");

    // Lift by container name through the CLI.
    let out = Command::new(guard_bin())
        .args(["quarantine", "lift", &c.name()])
        .output()
        .expect("guard quarantine lift");
    assert!(
        out.status.success(),
        "lift failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        container_reaches(&c, port, &hits),
        "lift restores the network"
    );
    // Lifting again says it was not quarantined.
    let again = Command::new(guard_bin())
        .args(["quarantine", "lift", &c.id])
        .output()
        .expect("lift again");
    assert_eq!(again.status.code(), Some(1));
    drop(agent);
    Quarantine::detach_pins(pins).expect("cleanup pins");
    // Programs are freed after an RCU grace period.
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = guard::respond::quarantine::loaded_program_count();
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(left, 0, "removing the pins detaches the programs");
}

/// `duration`: the kernel lets the entry lapse by itself.
#[test]
fn quarantine_with_duration_expires() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(d) = Docker::get() else { return };
    let _l = agent_lock();
    let pins = Path::new(PIN_DIR);
    let _ = Quarantine::detach_pins(pins);
    let (port, hits) = listener();
    let c = d.run(&["--network", "host"], &["sleep", "600"]);
    let _rt_guard = rt.enter();
    let r = guard::respond::Responder::new(
        responses("- response: q\n  actions: [{quarantine_network: {duration: 6s}}]\n"),
        guard::respond::Options::default(),
        None,
    );
    let rep = rt.block_on(r.handle(
        Arc::new(alert(
            "x",
            guard::alert::Priority::Critical,
            serde_json::json!({}),
        )),
        guard::respond::AlertContext {
            workload: guard::workload::WorkloadInfo {
                container_id: Some(c.id.clone()),
                ..Default::default()
            },
            ..Default::default()
        },
    ));
    let added = Instant::now();
    assert_eq!(rep[0].outcome, guard::audit::Outcome::Done, "{rep:?}");
    assert!(!container_reaches(&c, port, &hits), "quarantined");
    assert!(
        added.elapsed() < Duration::from_secs(5),
        "check finished inside the duration"
    );
    std::thread::sleep(Duration::from_millis(6500).saturating_sub(added.elapsed()));
    assert!(
        container_reaches(&c, port, &hits),
        "expired after its duration"
    );
    drop(r);
    Quarantine::detach_pins(pins).expect("cleanup pins");
}
