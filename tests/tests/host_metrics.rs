//! Host layer: `/metrics` during and after a burst of opens in a test cgroup. Scrapes taken
//! under load parse and only grow; once the burst is over, records received + dropped + the
//! opens the prefilter skipped equal the opens generated, exactly.

use std::{
    collections::BTreeMap,
    ffi::CString,
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use guard_tests::harness::{
    Agent, TestCgroup, agent_lock, can_run, fork_in_cgroup, is_root, wait_child,
};

const BURST: u64 = 20_000;

fn scrape(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics address");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: guard\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// Samples by series name (with labels), from the text exposition.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("`series value`");
            (k.to_owned(), v.parse::<f64>().expect("numeric sample"))
        })
        .collect()
}

fn counter(m: &BTreeMap<String, f64>, k: &str) -> u64 {
    *m.get(k).unwrap_or_else(|| panic!("no {k} in the scrape")) as u64
}

#[test]
fn metrics_account_for_every_generated_event() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cg = TestCgroup::new("metrics");
    let agent = Agent::run(&[
        "--only-cgroup",
        cg.path.to_str().expect("utf8"),
        "--ring-bytes",
        "4096",
        "--metrics-addr",
        &addr,
    ]);
    let (status, body) = scrape(&addr, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");

    // Half the opens are plain absolute paths no rule can match (skipped in the kernel), half
    // relative (always delivered).
    let skipped = CString::new("/nonexistent/guard-metrics").expect("cstring");
    let relative = CString::new("nonexistent-guard-metrics").expect("cstring");
    let child = fork_in_cgroup(&cg, || {
        for i in 0..BURST {
            let p = if i % 2 == 0 { &skipped } else { &relative };
            // SAFETY: raw syscall on buffers built before the fork.
            unsafe { libc::openat(libc::AT_FDCWD, p.as_ptr(), libc::O_RDONLY) };
        }
        0
    });
    // Scrapes under load: they parse and never go backwards.
    let mut prev = samples(&scrape(&addr, "/metrics").1);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(50));
        let now = samples(&scrape(&addr, "/metrics").1);
        for (k, v) in &prev {
            if k.ends_with("_total") || k.contains("_total{") {
                assert!(now.get(k).is_some_and(|n| n >= v), "{k} went back");
            }
        }
        prev = now;
    }
    assert_eq!(wait_child(child), 0);

    // Kernel counters are copied every second: wait until two scrapes agree.
    let deadline = Instant::now() + Duration::from_secs(20);
    let settled = loop {
        let a = samples(&scrape(&addr, "/metrics").1);
        std::thread::sleep(Duration::from_millis(1500));
        let b = samples(&scrape(&addr, "/metrics").1);
        if a == b || Instant::now() > deadline {
            break b;
        }
    };
    let received = counter(&settled, "guard_events_received_total{kind=\"syscall\"}");
    let dropped = counter(&settled, "guard_events_dropped_total{kind=\"syscall\"}");
    let prefiltered = counter(&settled, "guard_prefiltered_opens_total");
    agent.stop();
    eprintln!(
        "metrics: {BURST} opens = {received} received + {dropped} dropped + {prefiltered} prefiltered"
    );
    assert_eq!(
        received + dropped + prefiltered,
        BURST,
        "received {received} + dropped {dropped} + prefiltered {prefiltered}"
    );
    assert_eq!(prefiltered, BURST / 2, "every plain absolute open skipped");
    assert!(received > 0, "nothing received");
    let exits = counter(&settled, "guard_events_received_total{kind=\"exit\"}")
        + counter(&settled, "guard_events_dropped_total{kind=\"exit\"}");
    assert_eq!(exits, 1, "the child's exit");
}
