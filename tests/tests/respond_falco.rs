//! Falco intake: a Falco alert posted to `/falco` triggers the configured action; malformed,
//! oversized and wrong-typed bodies get 4xx and the server stays up.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use guard::respond::{
    Options, Responder,
    falco::{IntakeOptions, start},
};
use guard_tests::respond_util::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_post_triggers_and_bad_bodies_get_4xx() {
    let r = Responder::new(
        responses(
            "- response: kill-shell\n  match: {priority: '>= Critical', rules: ['Terminal shell*']}\n  actions: [kill_process]\n",
        ),
        Options::default(),
        None,
    );
    let intake = start(
        "127.0.0.1:0".parse().expect("addr"),
        r,
        IntakeOptions {
            max_body: 4096,
            ..Default::default()
        },
    )
    .await
    .expect("start intake");
    let port = intake.local_addr.port();
    assert!(intake.local_addr.ip().is_loopback());

    let mut child = Command::new("sleep").arg("60").spawn().expect("spawn");
    let pid = child.id();
    // What Falco's http_output sends (falco.yaml json_output: true).
    let falco = serde_json::json!({
        "hostname": "node-1",
        "output": "12:00:00.000000000: Critical A shell was spawned in a container (user=root shell=sh)",
        "priority": "Critical",
        "rule": "Terminal shell in container",
        "source": "syscall",
        "tags": ["container", "mitre_execution", "shell"],
        "time": "2026-01-01T12:00:00.000000000Z",
        "output_fields": {"proc.pid": pid, "proc.name": "sh", "container.id": "host", "evt.time": 1767268800000000000u64}
    });
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

    let t0 = Instant::now();
    assert_eq!(
        raw(port, post("POST", "/falco", falco.to_string().as_bytes())).await,
        202,
        "valid alert accepted after the bad ones"
    );
    let mut dead = false;
    while t0.elapsed() < Duration::from_secs(5) {
        if child.try_wait().expect("try_wait").is_some() {
            dead = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(dead, "the posted Falco alert killed the process");
    eprintln!("falco POST -> process dead: {:?}", t0.elapsed());
    assert!(
        intake
            .stats
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 8
    );
    intake.stop();
    let _ = child.wait();
}
