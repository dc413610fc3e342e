//! notify: a real local HTTP receiver gets the alert JSON; a receiver that hangs delays
//! nothing else (neither later actions nor other deliveries). Detect mode keeps the eyes open:
//! notify delivers and snapshot records while kill_container is only a dry run.

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use guard::{
    alert::Priority,
    audit::Outcome,
    respond::{AlertContext, Options},
    workload::WorkloadInfo,
};
use guard_tests::{harness::Docker, respond_util::*};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

/// Answers 200 to every request and forwards each body.
async fn receiver() -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ = tx.send(body.to_string()).await;
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                                .await;
                            buf.clear();
                        }
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Accepts and then never answers.
async fn hanging_receiver() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_gets_the_alert() {
    let (port, mut rx) = receiver().await;
    let audit = TempDir::new("notify");
    let r = responder_with_audit(
        responses(&format!(
            "- response: n\n  actions: [{{notify: {{url: 'http://127.0.0.1:{port}/hook'}}}}]\n"
        )),
        Options::default(),
        &audit.0,
    );
    let a = Arc::new(alert(
        "Notify me",
        Priority::Warning,
        serde_json::json!({"proc.name": "sh"}),
    ));
    let rep = r.handle(a, AlertContext::default()).await;
    assert_eq!(rep[0].outcome, Outcome::Planned, "queued: {rep:?}");
    let body = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("delivered in time")
        .expect("body");
    let v: serde_json::Value = serde_json::from_str(&body).expect("alert JSON");
    assert_eq!(v["rule"], "Notify me");
    assert_eq!(v["priority"], "Warning");
    assert_eq!(v["output_fields"]["proc.name"], "sh");
    let rec = wait_audit(&audit.0, Duration::from_secs(5), |v| {
        v["action"] == "notify" && v["outcome"] == "done"
    });
    assert!(rec.is_some(), "delivery outcome recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_receiver_delays_nothing() {
    let hang = hanging_receiver().await;
    let (good, mut rx) = receiver().await;
    let audit = TempDir::new("notify-hang");
    let r = responder_with_audit(
        responses(&format!(
            "- settings: {{dedupe_window: 0s}}\n- response: n\n  actions:\n    - notify: {{url: 'http://127.0.0.1:{hang}/', timeout: 2s, retries: 1}}\n    - kill_process\n    - notify: {{url: 'http://127.0.0.1:{good}/'}}\n"
        )),
        Options::default(),
        &audit.0,
    );
    let mut child = Command::new("sleep").arg("60").spawn().expect("spawn");
    let pid = child.id();
    let t0 = Instant::now();
    let rep = r
        .handle(
            Arc::new(alert(
                "x",
                Priority::Critical,
                serde_json::json!({"proc.pid": pid}),
            )),
            AlertContext {
                pid: Some(pid),
                event_time: Some(t0),
                ..Default::default()
            },
        )
        .await;
    let took = t0.elapsed();
    assert_eq!(rep.len(), 3, "{rep:?}");
    assert_eq!(rep[1].outcome, Outcome::Done, "the kill ran: {rep:?}");
    assert!(
        took < Duration::from_millis(500),
        "the hung receiver held up the actions: {took:?}"
    );
    assert!(child.try_wait().expect("wait").is_some(), "process killed");
    // The good receiver gets its copy while the hung one is still pending.
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("other deliveries are not blocked")
        .expect("body");
    // The hung delivery ends as a recorded failure after its timeouts and retry.
    let rec = wait_audit(&audit.0, Duration::from_secs(10), |v| {
        v["action"] == "notify" && v["outcome"] == "failed"
    })
    .expect("failure recorded");
    assert!(
        rec["error"].as_str().unwrap_or("").contains("no response"),
        "{rec}"
    );
}

/// `--detect-only`: in one response, notify reaches the receiver and snapshot writes its record
/// (both recorded with `mode: detect`), while kill_container is a recorded dry run and the
/// container lives. Control: `dry_run: true` on the response dries all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_only_notifies_and_snapshots_but_does_not_kill() {
    let Some(d) = Docker::get() else { return };
    let (port, mut rx) = receiver().await;
    let c = d.run(&[], &["sleep", "600"]);
    let ctx = || AlertContext {
        pid: Some(c.pid()),
        workload: WorkloadInfo {
            container_id: Some(c.id.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let actions = format!(
        "  actions:\n    - notify: {{url: 'http://127.0.0.1:{port}/hook'}}\n    - snapshot: {{}}\n    - kill_container\n"
    );
    let audit = TempDir::new("detect-eyes");
    let r = responder_with_audit(
        responses(&format!("- response: eyes\n{actions}")),
        Options {
            detect_only: true,
            ..Default::default()
        },
        &audit.0,
    );
    let a = Arc::new(alert(
        "Terminal shell in container",
        Priority::Critical,
        serde_json::json!({"proc.name": "sh"}),
    ));
    let rep = r.handle(a.clone(), ctx()).await;
    let outcomes: Vec<(&str, Outcome)> =
        rep.iter().map(|r| (r.action.as_str(), r.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            ("notify", Outcome::Planned),
            ("snapshot", Outcome::Done),
            ("kill_container", Outcome::DryRun)
        ],
        "{rep:?}"
    );
    let body = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the receiver is paged in detect mode")
        .expect("body");
    assert!(body.contains("Terminal shell in container"), "{body}");
    for (action, outcome) in [
        ("notify", "done"),
        ("snapshot", "done"),
        ("kill_container", "dry_run"),
    ] {
        let rec = wait_audit(&audit.0, Duration::from_secs(5), |v| {
            v["kind"] == "response" && v["action"] == action && v["outcome"] == outcome
        })
        .unwrap_or_else(|| panic!("no {action} {outcome} record"));
        assert_eq!(rec["mode"], "detect", "{rec}");
    }
    let snap = wait_audit(&audit.0, Duration::from_secs(5), |v| {
        v["kind"] == "snapshot"
    })
    .expect("snapshot record written");
    assert!(
        snap["processes"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["pid"] == c.pid())),
        "the snapshot lists the container's process: {snap}"
    );
    assert_eq!(
        d.cmd(&["inspect", "-f", "{{.State.Running}}", &c.id]),
        "true",
        "the container lives"
    );
    assert!(alive(c.pid()));

    // Control: dry_run: true dries every action, notify and snapshot included.
    let audit2 = TempDir::new("detect-dry");
    let r = responder_with_audit(
        responses(&format!("- response: dry\n  dry_run: true\n{actions}")),
        Options {
            detect_only: true,
            ..Default::default()
        },
        &audit2.0,
    );
    let rep = r.handle(a, ctx()).await;
    assert!(
        rep.iter().all(|r| r.outcome == Outcome::DryRun),
        "dry_run dries all: {rep:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "a dry-run notify sends nothing"
    );
    assert!(
        !audit_records(&audit2.0)
            .iter()
            .any(|v| v["kind"] == "snapshot"),
        "a dry-run snapshot writes nothing"
    );
    assert!(alive(c.pid()));
}
