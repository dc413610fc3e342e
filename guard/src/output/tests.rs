use std::{os::unix::net::UnixDatagram, sync::Arc, time::Duration};

use super::*;
use crate::alert::{GuardInfo, rfc3339_ns};
use crate::audit::tests::TempDir;

fn alert(n: u32, p: Priority) -> Arc<Alert> {
    Arc::new(Alert {
        time: rfc3339_ns(1_700_000_000_000_000_000 + u64::from(n)),
        rule: "Terminal shell in container".into(),
        priority: p,
        source: "syscall".into(),
        hostname: "node-1".into(),
        output: format!("shell spawned n={n}"),
        tags: vec!["container".into()],
        output_fields: Default::default(),
        guard: GuardInfo::default(),
    })
}

#[test]
fn file_channel_writes_json_lines_and_rotates() {
    let d = TempDir::new("out-file");
    let path = d.path().join("alerts.jsonl");
    let out = Outputs::start(vec![ChannelConfig {
        name: None,
        min_priority: Priority::Debug,
        queue: 100,
        kind: ChannelKind::File {
            path: path.clone(),
            format: Format::Json,
            max_bytes: 1000,
            keep: 2,
        },
    }])
    .expect("start");
    for n in 0..20 {
        out.emit(&alert(n, Priority::Warning));
    }
    let stats = out.shutdown(Duration::from_secs(5));
    assert_eq!(stats[0].sent, 20);
    assert_eq!(stats[0].name, "file");
    let cur = std::fs::read_to_string(&path).expect("current");
    let one = std::fs::read_to_string(d.path().join("alerts.jsonl.1")).expect("rotated .1");
    assert!(d.path().join("alerts.jsonl.2").exists());
    assert!(!d.path().join("alerts.jsonl.3").exists(), "keep=2");
    for l in cur.lines().chain(one.lines()) {
        let a: Alert = serde_json::from_str(l).expect("each line is an alert");
        assert_eq!(a.rule, "Terminal shell in container");
    }
    assert!(cur.len() <= 1000 && one.len() <= 1000);
    assert!(cur.trim_end().ends_with("\"guard\":{}}"), "{cur}");
    assert!(cur.contains("n=19"), "newest alert in the current file");
}

#[test]
fn min_priority_filters_per_channel() {
    let d = TempDir::new("out-filter");
    let hi = d.path().join("hi.log");
    let all = d.path().join("all.log");
    let mk = |name: &str, path: &std::path::Path, min| ChannelConfig {
        name: Some(name.into()),
        min_priority: min,
        queue: 10,
        kind: ChannelKind::File {
            path: path.to_path_buf(),
            format: Format::Text,
            max_bytes: 0,
            keep: 0,
        },
    };
    let out = Outputs::start(vec![
        mk("hi", &hi, Priority::Critical),
        mk("all", &all, Priority::Debug),
    ])
    .expect("start");
    out.emit(&alert(1, Priority::Warning));
    out.emit(&alert(2, Priority::Critical));
    out.emit(&alert(3, Priority::Emergency));
    let stats = out.shutdown(Duration::from_secs(5));
    assert_eq!((stats[0].sent, stats[0].filtered), (2, 1));
    assert_eq!((stats[1].sent, stats[1].filtered), (3, 0));
    let hi = std::fs::read_to_string(hi).expect("read");
    assert_eq!(hi.lines().count(), 2);
    assert!(hi.lines().all(|l| !l.contains("n=1")));
    assert!(hi.contains(": Critical shell spawned n=2"), "{hi}");
}

#[test]
fn syslog_channel_sends_rfc3164_datagrams() {
    let d = TempDir::new("out-syslog");
    let sock_path = d.path().join("log.sock");
    let server = UnixDatagram::bind(&sock_path).expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let out = Outputs::start(vec![ChannelConfig {
        name: None,
        min_priority: Priority::Debug,
        queue: 10,
        kind: ChannelKind::Syslog {
            socket: sock_path,
            facility: "local0".into(),
            format: Format::Text,
        },
    }])
    .expect("start");
    out.emit(&alert(7, Priority::Critical));
    let mut buf = [0u8; 9000];
    let n = server.recv(&mut buf).expect("datagram");
    let msg = std::str::from_utf8(&buf[..n]).expect("utf8");
    // local0 (16) * 8 + critical (2) = 130
    assert!(msg.starts_with("<130>"), "{msg}");
    assert!(
        msg.contains(&format!(" guard[{}]: ", std::process::id())),
        "{msg}"
    );
    assert!(msg.ends_with("Critical shell spawned n=7"), "{msg}");
    let stats = out.shutdown(Duration::from_secs(5));
    assert_eq!(stats[0].sent, 1);
}

#[test]
fn syslog_format_and_missing_socket_counts_failure() {
    let m = format_syslog(&alert(1, Priority::Debug), 1, Format::Text, 0);
    assert_eq!(
        m,
        format!(
            "<15>Jan  1 00:00:00 guard[{}]: Debug shell spawned n=1",
            std::process::id()
        )
    );
    let d = TempDir::new("out-syslog-missing");
    let out = Outputs::start(vec![ChannelConfig {
        name: Some("sys".into()),
        min_priority: Priority::Debug,
        queue: 10,
        kind: ChannelKind::Syslog {
            socket: d.path().join("absent.sock"),
            facility: "user".into(),
            format: Format::Json,
        },
    }])
    .expect("start");
    out.emit(&alert(1, Priority::Error));
    let stats = out.shutdown(Duration::from_secs(5));
    assert_eq!((stats[0].sent, stats[0].failed), (0, 1));
    assert_eq!(out_drop_counts_after(stats), 1);
}

fn out_drop_counts_after(stats: Vec<ChannelStats>) -> u64 {
    stats.iter().map(|s| s.dropped + s.failed).sum()
}

#[test]
fn bad_config_is_rejected() {
    let http = |url: &str| ChannelConfig {
        name: None,
        min_priority: Priority::Debug,
        queue: 1,
        kind: ChannelKind::Http {
            url: url.into(),
            timeout_ms: 100,
            retries: 0,
        },
    };
    for url in ["https://127.0.0.1/", "ftp://x/", "not a url"] {
        assert!(Outputs::start(vec![http(url)]).is_err(), "{url}");
    }
    let e = Outputs::start(vec![ChannelConfig {
        name: None,
        min_priority: Priority::Debug,
        queue: 1,
        kind: ChannelKind::Syslog {
            socket: "/dev/log".into(),
            facility: "nope".into(),
            format: Format::Text,
        },
    }]);
    assert!(e.is_err());
    let cfg: ChannelConfig = serde_json::from_value(serde_json::json!({
        "type": "http", "url": "http://127.0.0.1:2801/", "min_priority": "Critical", "queue": 8
    }))
    .expect("config parses");
    assert_eq!(cfg.min_priority, Priority::Critical);
    assert_eq!(cfg.queue, 8);
    assert!(matches!(cfg.kind, ChannelKind::Http { retries: 3, .. }));
}
