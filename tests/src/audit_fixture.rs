//! A known audit sequence, written through the agent's audit path ([`AuditLog`]), with the
//! counts every report must state. Shared by the report and browser tests.

use std::{collections::BTreeMap, path::Path, time::Duration};

use guard::{
    alert::{Alert, GuardInfo, Priority, rfc3339_ns},
    audit::{
        AgentInfo, AuditConfig, AuditLog, Decision, DecisionKind, DropSummary, FileHash, LoadInfo,
        LoadedItem, Operation, Outcome, Payload, ProcessInfo, ResponseOutcome, Workload,
    },
};

/// A container name that tries to run script in the HTML report.
pub const HOSTILE_NAME: &str =
    "<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script>";

/// A command line that tries the same, with an attribute-breaking quote (shown in the rollout
/// examples of every would-deny decision).
pub const HOSTILE_CMDLINE: &str = "sh -c \"<img/src=x onerror=document.body.setAttribute('data-pwned-cmd','1')><script>document.body.setAttribute('data-pwned-cmd','1')</script>\"";

pub mod expect {
    pub const ALERTS: u64 = 7;
    pub const SHELL_ALERTS: u64 = 4;
    pub const DENIED: u64 = 5;
    pub const DENIED_EXEC: u64 = 3;
    pub const KILLED: u64 = 3;
    pub const PAUSED: u64 = 1;
    pub const FAILED: u64 = 2;
    pub const REFUSED: u64 = 1;
    pub const DROPS: u64 = 15;
    pub const API_WOULD_DENY: u64 = 3;
    pub const API_WOULD_KILL: u64 = 2;
}

fn wl(name: &str) -> Workload {
    Workload {
        container_id: Some(format!("{:0<64}", name.len())),
        container_name: Some(name.into()),
        image: Some("busybox:local".into()),
        ..Default::default()
    }
}

fn alert(rule: &str, p: Priority, container: &str) -> Payload {
    let mut f = BTreeMap::new();
    f.insert("container.name".into(), serde_json::json!(container));
    f.insert("proc.cmdline".into(), serde_json::json!("sh -c id"));
    Payload::Alert {
        alert: Box::new(Alert {
            time: rfc3339_ns(0),
            rule: rule.into(),
            priority: p,
            source: "syscall".into(),
            hostname: "node-1".into(),
            output: format!("{rule} in {container}"),
            tags: vec!["container".into()],
            output_fields: f,
            guard: GuardInfo::default(),
        }),
    }
}

fn decision(kind: DecisionKind, op: Operation, policy: &str, target: &str, w: &str) -> Payload {
    Payload::Decision(Decision {
        decision: kind,
        op,
        policy: policy.into(),
        backend: "bpf-lsm".into(),
        target: target.into(),
        access: (op == Operation::Open).then(|| "write".to_string()),
        hook: None,
        kill_error: None,
        workload: wl(w),
        process: ProcessInfo {
            pid: Some(4242),
            exe: Some("/bin/busybox".into()),
            cmdline: Some(HOSTILE_CMDLINE.into()),
        },
    })
}

fn response(action: &str, outcome: Outcome, w: &str, error: Option<&str>, detect: bool) -> Payload {
    Payload::Response(ResponseOutcome {
        response: "kill-on-critical".into(),
        action: action.into(),
        outcome,
        rule: Some("Terminal shell in container".into()),
        policy: Some(if detect { "api" } else { "web" }.into()),
        mode: Some(if detect { "detect" } else { "enforce" }.into()),
        workload: wl(w),
        process: ProcessInfo::default(),
        error: error.map(str::to_string),
        detail: None,
        latency_us: Some(1200),
    })
}

/// The sequence: agent start, policy load, 7 alerts, 5 denies, 3 would-denies, responses
/// (3 kills done, 1 pause, 2 failures, 1 refusal, 2 would-kills), a drop summary of 15, stop.
pub fn sequence() -> Vec<Payload> {
    use DecisionKind::*;
    use Operation::*;
    let mut v = vec![
        Payload::AgentStart(AgentInfo {
            version: "0.1.0".into(),
            config_hash: "ab".repeat(32),
            ..Default::default()
        }),
        Payload::PolicyLoad(LoadInfo {
            files: vec![FileHash {
                path: "/etc/guard/policies.yaml".into(),
                sha256: "cd".repeat(32),
            }],
            items: vec![
                LoadedItem {
                    name: "web".into(),
                    mode: "enforce".into(),
                    learned_to: None,
                },
                LoadedItem {
                    name: "api".into(),
                    mode: "detect".into(),
                    learned_to: None,
                },
                LoadedItem {
                    name: "db".into(),
                    mode: "detect".into(),
                    learned_to: None,
                },
            ],
            reload: false,
        }),
    ];
    for _ in 0..4 {
        v.push(alert(
            "Terminal shell in container",
            Priority::Critical,
            "web-1",
        ));
    }
    for _ in 0..2 {
        v.push(alert(
            "Read sensitive file untrusted",
            Priority::Warning,
            "api-1",
        ));
    }
    v.push(alert("Outbound connection", Priority::Notice, HOSTILE_NAME));
    for _ in 0..3 {
        v.push(decision(Deny, Exec, "web", "/bin/sh", "web-1"));
    }
    for _ in 0..2 {
        v.push(decision(Deny, Open, "web", "/etc/passwd", "web-1"));
    }
    for _ in 0..2 {
        v.push(decision(WouldDeny, Exec, "api", "/usr/bin/curl", "api-1"));
    }
    v.push(decision(WouldDeny, Connect, "api", "10.0.0.5:22", "api-1"));
    v.push(response(
        "kill_container",
        Outcome::Planned,
        "web-1",
        None,
        false,
    ));
    v.push(response(
        "kill_container",
        Outcome::Done,
        "web-1",
        None,
        false,
    ));
    v.push(response(
        "kill_container",
        Outcome::Done,
        "web-1",
        None,
        false,
    ));
    v.push(response(
        "kill_process",
        Outcome::Done,
        "web-1",
        None,
        false,
    ));
    v.push(response(
        "pause_container",
        Outcome::Done,
        "web-1",
        None,
        false,
    ));
    v.push(response(
        "kill_container",
        Outcome::Failed,
        "web-1",
        Some("docker: connection refused"),
        false,
    ));
    v.push(response(
        "notify",
        Outcome::Failed,
        "web-1",
        Some("http 503"),
        false,
    ));
    v.push(response(
        "kill_process",
        Outcome::Refused,
        "web-1",
        Some("protected: host PID 1"),
        false,
    ));
    v.push(response(
        "kill_container",
        Outcome::DryRun,
        "api-1",
        None,
        true,
    ));
    v.push(response(
        "kill_container",
        Outcome::DryRun,
        "api-1",
        None,
        true,
    ));
    let mut ringbuf = BTreeMap::new();
    ringbuf.insert("exec".to_string(), 5);
    ringbuf.insert("open".to_string(), 7);
    let mut outputs = BTreeMap::new();
    outputs.insert("http".to_string(), 3);
    v.push(Payload::DropSummary(DropSummary {
        ringbuf,
        outputs,
        audit: BTreeMap::new(),
        audit_gap: None,
    }));
    v.push(Payload::AgentStop(AgentInfo {
        version: "0.1.0".into(),
        config_hash: "ab".repeat(32),
        reason: Some("SIGTERM".into()),
        ..Default::default()
    }));
    v
}

/// Writes [`sequence`] into `dir` through the agent's queued writer; small files force rotation.
pub fn write_sequence(dir: &Path) {
    let cfg = AuditConfig {
        max_file_bytes: 4096,
        sync_interval: Duration::from_millis(50),
        ..AuditConfig::new(dir)
    };
    let log = AuditLog::start(cfg, 1024).expect("start audit log");
    for p in sequence() {
        assert!(log.try_record(p), "queue of 1024 must take the fixture");
    }
    let stats = log.close();
    assert!(stats.dropped.is_empty(), "{stats:?}");
    assert!(stats.last_error.is_none(), "{stats:?}");
}
