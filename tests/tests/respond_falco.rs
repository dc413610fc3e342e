//! Falco intake.
//!
//! - Authentication, tried as a local attacker would (uid `nobody`, curl): plain HTTP on the
//!   TLS port, TLS without a client certificate, and a certificate from another CA are refused
//!   with 400/401/403, the named root process lives, and each refusal is audited; an
//!   authenticated post naming a matching process kills it. A unix socket (0660 root) cannot be
//!   opened by `nobody` and serves root.
//! - Binding: an authenticated post naming a PID with another start time (`proc.pid.ts`), an
//!   event time before the process started, or another container than the PID's is refused
//!   (recorded), and the process lives.
//! - `--insecure-intake` (Listen::Insecure): malformed, oversized and wrong-typed bodies get
//!   4xx and the server stays up; a valid alert kills.

use std::{
    path::Path,
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use guard::respond::{
    Options, Responder,
    falco::{FalcoIntake, IntakeOptions, Listen, start},
    intake_tls::{IntakeTls, TlsFiles},
};
use guard_tests::{harness::*, respond_util::*};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Dedupe off: several posts name the same process and each must reach the identity check.
const KILL_SHELL: &str = "- settings: {dedupe_window: 0s}\n- response: kill-shell\n  match: {priority: '>= Critical', rules: ['Terminal shell*']}\n  actions: [kill_process]\n";

/// Sends raw bytes, returns the status code (0 when the server closed without answering).
async fn raw(port: u16, req: Vec<u8>) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    let _ = s.write_all(&req).await;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn post(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// What Falco's http_output sends (falco.yaml json_output: true) about `pid`.
fn falco_alert(pid: u32, extra: serde_json::Value) -> serde_json::Value {
    let mut fields =
        serde_json::json!({"proc.pid": pid, "proc.name": "sleep", "container.id": "host"});
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            f.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "hostname": "node-1",
        "output": "Critical A shell was spawned in a container (user=root shell=sh)",
        "priority": "Critical",
        "rule": "Terminal shell in container",
        "source": "syscall",
        "tags": ["container", "mitre_execution", "shell"],
        "time": guard::rfc3339::now(),
        "output_fields": fields,
    })
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("120")
        .spawn()
        .expect("spawn sleep")
}

/// Waits up to `t` for the child to exit.
async fn dies(child: &mut Child, t: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < t {
        if child.try_wait().expect("try_wait").is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Makes a CA, server and client set with the shipped script; readable by `nobody`.
fn certs(dir: &Path) {
    let out = Command::new("bash")
        .arg(repo_root().join("integration/intake-certs.sh"))
        .arg(dir)
        .output()
        .expect("integration/intake-certs.sh");
    assert!(
        out.status.success(),
        "intake-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["client.key", "server.key", "ca.key"] {
        let _ = Command::new("chmod").arg("0644").arg(dir.join(f)).status();
    }
    let _ = Command::new("chmod").arg("0755").arg(dir).status();
}

/// curl as uid/gid 65534 (`nobody`) or as root: (HTTP status, body). Status 0: no answer.
fn curl(as_nobody: bool, args: &[&str], body: &str) -> (u16, String) {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "curl",
        ]);
        c
    } else {
        Command::new("curl")
    };
    let out = cmd
        .args([
            "-s",
            "-m",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .args(args)
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn tools_present() -> bool {
    ["curl", "openssl", "setpriv"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

struct Bed {
    dir: TempDir,
    intake: FalcoIntake,
    url: String,
}

async fn tls_bed(tag: &str, yaml: &str) -> Bed {
    let dir = TempDir::new(tag);
    certs(&dir.0.join("pki"));
    certs(&dir.0.join("other"));
    let audit = dir.0.join("audit");
    std::fs::create_dir_all(&audit).expect("audit dir");
    let tls = IntakeTls::load(&TlsFiles {
        cert: dir.0.join("pki/server.pem"),
        key: dir.0.join("pki/server.key"),
        client_ca: dir.0.join("pki/ca.pem"),
    })
    .expect("load TLS");
    let r = responder_with_audit(responses(yaml), Options::default(), &audit);
    let intake = start(
        Listen::Tls {
            addr: "127.0.0.1:0".parse().expect("addr"),
            tls: Arc::new(tls),
        },
        r,
        IntakeOptions::default(),
    )
    .await
    .expect("start intake");
    let port = intake.local_addr.expect("tcp").port();
    Bed {
        url: format!("https://127.0.0.1:{port}/falco"),
        dir,
        intake,
    }
}

impl Bed {
    fn pki(&self, f: &str) -> String {
        self.dir.0.join("pki").join(f).display().to_string()
    }
    fn other(&self, f: &str) -> String {
        self.dir.0.join("other").join(f).display().to_string()
    }
    fn audit(&self) -> std::path::PathBuf {
        self.dir.0.join("audit")
    }
    /// An authenticated post (root; the client certificate of the configured CA).
    fn post_ok(&self, alert: &serde_json::Value) -> u16 {
        curl(
            false,
            &[
                "--cacert",
                &self.pki("ca.pem"),
                "--cert",
                &self.pki("client.pem"),
                "--key",
                &self.pki("client.key"),
                &self.url,
            ],
            &alert.to_string(),
        )
        .0
    }
}

fn refusal_with(audit: &Path, needle: &str) -> Option<serde_json::Value> {
    wait_audit(audit, Duration::from_secs(5), |r| {
        r["kind"] == "response"
            && r["outcome"] == "refused"
            && r["error"].as_str().is_some_and(|e| e.contains(needle))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_senders_are_refused_and_audited() {
    if !can_run(is_root(), "setpriv to nobody needs root")
        || !can_run(tools_present(), "curl, openssl and setpriv")
    {
        return;
    }
    let bed = tls_bed("falco-auth", KILL_SHELL).await;
    let mut victim = sleeper();
    let pid = victim.id();
    let alert = falco_alert(pid, serde_json::json!({})).to_string();
    let http_url = bed.url.replace("https://", "http://");
    let (ca, other_cert, other_key) = (
        bed.pki("ca.pem"),
        bed.other("client.pem"),
        bed.other("client.key"),
    );
    let cases: [(&str, Vec<&str>, u16, &str); 3] = [
        ("plain HTTP", vec![http_url.as_str()], 400, "plain HTTP"),
        (
            "TLS without a client certificate",
            vec!["--cacert", &ca, &bed.url],
            401,
            "client certificate required",
        ),
        (
            "a certificate from another CA",
            vec![
                "--cacert",
                &ca,
                "--cert",
                &other_cert,
                "--key",
                &other_key,
                &bed.url,
            ],
            403,
            "client certificate not accepted",
        ),
    ];
    for (what, args, want, needle) in &cases {
        let (code, body) = curl(true, args, &alert);
        assert_eq!(code, *want, "{what}: nobody got {code} {body}");
        assert!(body.contains(needle), "{what}: reply says why: {body}");
        let rec = refusal_with(&bed.audit(), needle)
            .unwrap_or_else(|| panic!("{what}: no audited refusal"));
        assert_eq!(rec["response"], "falco-intake", "{rec}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(alive(pid), "{what}: the root process survived");
    }
    assert_eq!(
        bed.intake
            .stats
            .unauthenticated
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    // No kill was attempted for any of them.
    assert!(
        !audit_records(&bed.audit())
            .iter()
            .any(|r| r["action"] == "kill_process"),
        "a refused sender reached the response engine"
    );
    // Control: the same alert from an authenticated sender kills.
    let t0 = Instant::now();
    assert_eq!(bed.post_ok(&falco_alert(pid, serde_json::json!({}))), 202);
    assert!(
        dies(&mut victim, Duration::from_secs(5)).await,
        "authenticated post kills"
    );
    eprintln!("mTLS POST -> process dead: {:?}", t0.elapsed());
    let done = wait_audit(&bed.audit(), Duration::from_secs(5), |r| {
        r["action"] == "kill_process" && r["outcome"] == "done"
    })
    .expect("kill recorded");
    let detail = done["detail"].as_str().unwrap_or("");
    for c in ["event time", "container", "proc.name"] {
        assert!(
            detail.contains(c),
            "kill detail names the {c} check: {detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_posts_for_another_process_are_refused() {
    if !can_run(is_root(), "curl as root against the intake")
        || !can_run(tools_present(), "curl, openssl and setpriv")
    {
        return;
    }
    let bed = tls_bed("falco-bind", KILL_SHELL).await;
    let mut victim = sleeper();
    let pid = victim.id();
    let started_epoch_ns = {
        let boot = start_boot_ns(pid) as i128;
        let now_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as i128;
        (now_epoch - guard::respond::process::boot_ns_now() as i128 + boot) as u64
    };
    let cases = [
        (
            "proc.pid.ts 10 s before the live process started",
            falco_alert(
                pid,
                serde_json::json!({"proc.pid.ts": started_epoch_ns - 10_000_000_000}),
            ),
            "proc.pid.ts",
        ),
        (
            "an event an hour before the live process started",
            {
                let mut a = falco_alert(pid, serde_json::json!({}));
                a["time"] = guard::rfc3339::format(started_epoch_ns - 3_600_000_000_000).into();
                a
            },
            "started after the alert's event",
        ),
        (
            "a container the process is not in",
            falco_alert(pid, serde_json::json!({"container.id": "0123456789ab"})),
            "never acting outside it",
        ),
        (
            "another proc.vpid",
            falco_alert(pid, serde_json::json!({"proc.vpid": pid + 1})),
            "proc.vpid",
        ),
    ];
    for (what, alert, needle) in &cases {
        assert_eq!(bed.post_ok(alert), 202, "{what}");
        let rec = refusal_with(&bed.audit(), needle)
            .unwrap_or_else(|| panic!("{what}: no refusal recorded"));
        assert_eq!(rec["action"], "kill_process", "{rec}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(alive(pid), "{what}: the process lives");
    }
    // Control: the right start time, event time and container kill it.
    let good = falco_alert(
        pid,
        serde_json::json!({"proc.pid.ts": started_epoch_ns, "proc.vpid": pid}),
    );
    assert_eq!(bed.post_ok(&good), 202);
    assert!(
        dies(&mut victim, Duration::from_secs(5)).await,
        "the matching alert kills"
    );
}

/// A PID inside a container, named by an alert with another container's id: refused, and the
/// container's process lives; named with its own container, it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_in_another_container_is_refused() {
    let Some(d) = Docker::get() else { return };
    if !can_run(tools_present(), "curl, openssl and setpriv") {
        return;
    }
    let bed = tls_bed("falco-ctr", KILL_SHELL).await;
    let a = d.run(&[], &["sleep", "600"]);
    let b = d.run(&[], &["sleep", "600"]);
    let pid = a.pid();
    let named_b = falco_alert(pid, serde_json::json!({"container.id": &b.id[..12]}));
    assert_eq!(bed.post_ok(&named_b), 202);
    let rec = refusal_with(&bed.audit(), "never acting outside it").expect("refusal recorded");
    assert!(
        rec["error"].as_str().unwrap_or("").contains(&a.id[..12]),
        "names the container the pid is in: {rec}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(alive(pid), "the process in container A lives");
    let named_host = falco_alert(pid, serde_json::json!({"container.id": "host"}));
    assert_eq!(bed.post_ok(&named_host), 202);
    refusal_with(&bed.audit(), "the alert names the host").expect("host claim refused");
    assert!(alive(pid));
    // Control: its own container, its own vpid (1: the container's init).
    let named_a = falco_alert(
        pid,
        serde_json::json!({"container.id": &a.id[..12], "proc.vpid": 1}),
    );
    let fd = pidfd_open(pid);
    assert_eq!(bed.post_ok(&named_a), 202);
    assert!(
        pidfd_wait(fd, Duration::from_secs(5)),
        "killed when the alert names its container"
    );
    close(fd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_serves_root_only() {
    if !can_run(is_root(), "a root-owned socket")
        || !can_run(tools_present(), "curl, openssl and setpriv")
    {
        return;
    }
    let dir = TempDir::new("falco-unix");
    let _ = Command::new("chmod").arg("0755").arg(&dir.0).status();
    let sock = dir.0.join("falco.sock");
    let r = Responder::new(responses(KILL_SHELL), Options::default(), None);
    let intake = start(
        Listen::Unix {
            path: sock.clone(),
            group: None,
        },
        r,
        IntakeOptions::default(),
    )
    .await
    .expect("unix intake");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(&sock).expect("socket");
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!((m.uid(), m.gid()), (0, 0));
    let mut victim = sleeper();
    let pid = victim.id();
    let alert = falco_alert(pid, serde_json::json!({})).to_string();
    let s = sock.display().to_string();
    let (code, _) = curl(true, &["--unix-socket", &s, "http://x/falco"], &alert);
    assert_eq!(code, 0, "nobody cannot even connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(alive(pid));
    let (code, body) = curl(false, &["--unix-socket", &s, "http://x/falco"], &alert);
    assert_eq!(code, 202, "{body}");
    assert!(
        dies(&mut victim, Duration::from_secs(5)).await,
        "root's post kills"
    );
    intake.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_intake_bad_bodies_get_4xx_and_a_valid_alert_kills() {
    let r = Responder::new(responses(KILL_SHELL), Options::default(), None);
    let intake = start(
        Listen::Insecure {
            addr: "127.0.0.1:0".parse().expect("addr"),
        },
        r,
        IntakeOptions {
            max_body: 4096,
            ..Default::default()
        },
    )
    .await
    .expect("start intake");
    let addr = intake.local_addr.expect("tcp");
    let port = addr.port();
    assert!(addr.ip().is_loopback());

    let mut child = sleeper();
    let pid = child.id();
    let falco = falco_alert(pid, serde_json::json!({"evt.time": 1767268800000000000u64}));
    let bad: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "malformed",
            post("POST", "/falco", b"{\"rule\": \"x\", "),
            400,
        ),
        ("not json", post("POST", "/falco", b"hello"), 400),
        (
            "wrong types",
            post(
                "POST",
                "/falco",
                br#"{"rule": 12, "priority": ["Critical"]}"#,
            ),
            422,
        ),
        (
            "unknown priority",
            post("POST", "/falco", br#"{"rule": "r", "priority": "Loud"}"#),
            422,
        ),
        (
            "oversized (declared)",
            post("POST", "/falco", &vec![b' '; 10_000]),
            413,
        ),
        (
            "oversized (chunked)",
            {
                let mut r = b"POST /falco HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
                for _ in 0..8 {
                    r.extend_from_slice(b"400\r\n");
                    r.extend_from_slice(&[b' '; 0x400]);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            },
            413,
        ),
        ("wrong method", post("GET", "/falco", b""), 405),
        ("wrong path", post("POST", "/other", b"{}"), 404),
    ];
    for (what, req, want) in bad {
        assert_eq!(raw(port, req).await, want, "{what}");
    }
    // Garbage that is not HTTP: the connection is dropped, the server lives on.
    let _ = raw(port, b"\x00\x01\x02 not http\r\n\r\n".to_vec()).await;
    assert!(alive(pid), "no bad body reached an action");

    let t0 = Instant::now();
    assert_eq!(
        raw(port, post("POST", "/falco", falco.to_string().as_bytes())).await,
        202,
        "valid alert accepted after the bad ones"
    );
    assert!(
        dies(&mut child, Duration::from_secs(5)).await,
        "the posted Falco alert killed the process"
    );
    eprintln!("falco POST -> process dead: {:?}", t0.elapsed());
    assert!(
        intake
            .stats
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 8
    );
    intake.stop();
}
