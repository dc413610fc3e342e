//! The http output against in-test receivers on 127.0.0.1: Falcosidekick's payload field by
//! field, keep-alive, retries, and a hung receiver that must not stall the caller.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use guard::{
    alert::{Alert, GuardInfo, Priority, rfc3339_ns},
    output::{ChannelConfig, ChannelKind, Outputs},
};

#[derive(Debug, Clone)]
struct Request {
    conn: usize,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request; None at EOF.
fn read_request(rd: &mut BufReader<TcpStream>, conn: usize) -> Option<Request> {
    let mut line = String::new();
    if rd.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        rd.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).ok()?;
    Some(Request {
        conn,
        method,
        path,
        headers,
        body,
    })
}

/// A receiver that answers each request with the next status from `statuses` (then 200).
fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<Request>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", l.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let statuses = Arc::new(Mutex::new(statuses));
    std::thread::spawn(move || {
        let conns = AtomicUsize::new(0);
        for stream in l.incoming() {
            let Ok(stream) = stream else { return };
            let conn = conns.fetch_add(1, Ordering::Relaxed);
            let s = s.clone();
            let statuses = statuses.clone();
            std::thread::spawn(move || {
                let mut w = stream.try_clone().expect("clone");
                let mut rd = BufReader::new(stream);
                while let Some(req) = read_request(&mut rd, conn) {
                    s.lock().expect("lock").push(req);
                    let code = {
                        let mut st = statuses.lock().expect("lock");
                        if st.is_empty() { 200 } else { st.remove(0) }
                    };
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{{}}"
                    );
                    if w.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn http_channel(url: &str, queue: usize, timeout_ms: u64, retries: u32) -> ChannelConfig {
    ChannelConfig {
        name: Some("sidekick".into()),
        min_priority: Priority::Debug,
        queue,
        kind: ChannelKind::Http {
            url: url.into(),
            timeout_ms,
            retries,
        },
    }
}

fn sample_alert(n: u64) -> Arc<Alert> {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("proc.name".into(), serde_json::json!("bash"));
    fields.insert("proc.pid".into(), serde_json::json!(4242 + n));
    fields.insert("container.name".into(), serde_json::json!("web-1"));
    fields.insert("fd.name".into(), serde_json::Value::Null);
    Arc::new(Alert {
        time: rfc3339_ns(1_795_838_559_052_667_406 + n),
        rule: "Terminal shell in container".into(),
        priority: Priority::Notice,
        source: "syscall".into(),
        hostname: "node-1".into(),
        output: format!("A shell was spawned in a container (n={n})"),
        tags: vec!["container".into(), "mitre_execution".into()],
        output_fields: fields,
        guard: GuardInfo {
            policy: Some("web".into()),
            mode: Some("enforce".into()),
            ..Default::default()
        },
    })
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Checks `s` is RFC 3339 as Go's time.RFC3339Nano parses it (Falcosidekick's `time` field).
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (s.ends_with('Z') || s[19..].contains('+') || s[19..].contains('-'))
        && (b[19] != b'.' || digits(20..s.len() - 1))
}

#[test]
fn falcosidekick_receives_falco_payload_field_by_field() {
    let (url, seen) = receiver(vec![]);
    let out = Outputs::start(vec![http_channel(&url, 16, 5000, 0)]).expect("start");
    for n in 0..3 {
        out.emit(&sample_alert(n));
    }
    assert!(
        wait_for(|| seen.lock().expect("lock").len() == 3),
        "3 POSTs"
    );
    let stats = out.shutdown(Duration::from_secs(5));
    assert_eq!(
        (stats[0].sent, stats[0].failed, stats[0].dropped),
        (3, 0, 0)
    );

    let reqs = seen.lock().expect("lock").clone();
    // Keep-alive: one connection carried all three.
    assert!(
        reqs.iter().all(|r| r.conn == 0),
        "{:?}",
        reqs.iter().map(|r| r.conn).collect::<Vec<_>>()
    );
    for (n, r) in reqs.iter().enumerate() {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/");
        let ct = r
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        assert_eq!(ct, Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
        let time = v["time"].as_str().expect("time is a string");
        assert!(is_rfc3339(time), "{time}");
        assert_eq!(time, rfc3339_ns(1_795_838_559_052_667_406 + n as u64));
        assert_eq!(v["rule"], "Terminal shell in container");
        assert_eq!(v["priority"], "Notice", "Falco's capitalised priority");
        assert_eq!(
            v["output"],
            format!("A shell was spawned in a container (n={n})")
        );
        assert_eq!(v["source"], "syscall");
        assert_eq!(v["hostname"], "node-1");
        assert_eq!(
            v["tags"],
            serde_json::json!(["container", "mitre_execution"])
        );
        let of = v["output_fields"]
            .as_object()
            .expect("output_fields object");
        assert_eq!(of["proc.name"], "bash");
        assert_eq!(of["proc.pid"], 4242 + n as u64);
        assert_eq!(of["container.name"], "web-1");
        assert!(of["fd.name"].is_null());
        // Extra keys live under `guard`, which Falcosidekick's decoder ignores.
        assert_eq!(v["guard"]["policy"], "web");
        let falco_keys = [
            "time",
            "rule",
            "priority",
            "output",
            "output_fields",
            "source",
            "tags",
            "hostname",
            "guard",
        ];
        for k in v.as_object().expect("object").keys() {
            assert!(
                falco_keys.contains(&k.as_str()),
                "unexpected top-level key {k}"
            );
        }
    }
}

#[test]
fn retries_are_bounded() {
    // 503 then 200: delivered on the second attempt.
    let (url, seen) = receiver(vec![503]);
    let out = Outputs::start(vec![http_channel(&url, 4, 2000, 2)]).expect("start");
    out.emit(&sample_alert(0));
    assert!(wait_for(|| seen.lock().expect("lock").len() == 2));
    let s = out.shutdown(Duration::from_secs(5));
    assert_eq!((s[0].sent, s[0].failed), (1, 0));

    // Always 500: 1 + 2 retries, then counted as failed.
    let (url, seen) = receiver(vec![500; 10]);
    let out = Outputs::start(vec![http_channel(&url, 4, 2000, 2)]).expect("start");
    let start = Instant::now();
    out.emit(&sample_alert(0));
    assert!(wait_for(|| out.stats()[0].failed == 1));
    let gave_up = start.elapsed();
    eprintln!("retries_are_bounded: 3 attempts against HTTP 500, failed after {gave_up:?}");
    assert_eq!(seen.lock().expect("lock").len(), 3);
    assert!(
        gave_up >= Duration::from_millis(300),
        "the retries did not back off (100 ms, then 200 ms): {gave_up:?}"
    );
    assert_eq!(out.take_drop_counts().get("sidekick"), Some(&1));
    assert!(
        out.take_drop_counts().is_empty(),
        "counts are handed out once"
    );
    out.shutdown(Duration::from_secs(5));

    // 400: the payload was rejected, no retry.
    let (url, seen) = receiver(vec![400, 400]);
    let out = Outputs::start(vec![http_channel(&url, 4, 2000, 2)]).expect("start");
    out.emit(&sample_alert(0));
    assert!(wait_for(|| out.stats()[0].failed == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(seen.lock().expect("lock").len(), 1);
    out.shutdown(Duration::from_secs(5));
}

#[test]
fn hung_receiver_does_not_block_the_caller_and_overflow_is_counted() {
    // Accepts connections, reads, never answers.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", l.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let acc = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            acc.fetch_add(1, Ordering::Relaxed);
            held.push(s);
        }
    });
    const QUEUE: usize = 8;
    const N: u64 = 500;
    let mut out = Outputs::start(vec![http_channel(&url, QUEUE, 60_000, 0)]).expect("start");
    out.emit(&sample_alert(0));
    // Wait until the worker is stuck inside the first request.
    assert!(wait_for(|| accepted.load(Ordering::Relaxed) == 1));
    let start = Instant::now();
    for n in 1..N {
        out.emit(&sample_alert(n));
    }
    let took = start.elapsed();
    // 499 emits against a receiver that never answers: each is a try_send. A blocking
    // implementation would wait 60 s on the first full queue.
    assert!(took < Duration::from_secs(2), "emit blocked for {took:?}");
    let s = out.stats();
    assert_eq!(s[0].dropped, N - 1 - QUEUE as u64, "{s:?}");
    assert_eq!(s[0].sent, 0);
    assert_eq!(
        out.take_drop_counts().get("sidekick"),
        Some(&(N - 1 - QUEUE as u64))
    );
    // Shutdown is bounded too, even though the worker is still waiting; the alert in flight
    // and the queued ones are lost then, and counted: every alert is sent or dropped.
    let start = Instant::now();
    let s = out.close(Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!((s[0].sent, s[0].failed, s[0].dropped), (0, 0, N), "{s:?}");
    assert_eq!(
        out.take_drop_counts().get("sidekick"),
        Some(&(QUEUE as u64 + 1)),
        "the final drop summary gets what shutdown abandoned"
    );
}
