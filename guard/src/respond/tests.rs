use super::*;
use crate::alert::Priority;

fn alert(fields: serde_json::Value) -> Alert {
    Alert {
        time: String::new(),
        rule: "r".into(),
        priority: Priority::Critical,
        source: "syscall".into(),
        hostname: "h".into(),
        output: String::new(),
        tags: vec![],
        output_fields: serde_json::from_value(fields).expect("fields"),
        guard: Default::default(),
    }
}

#[test]
fn context_from_falco_fields() {
    let c = AlertContext::from_alert(&alert(serde_json::json!({
        "proc.pid": 42, "container.id": "0123456789ab", "container.name": "web"
    })));
    assert_eq!(c.pid, Some(42));
    assert_eq!(c.workload.container_id.as_deref(), Some("0123456789ab"));
    let c = AlertContext::from_alert(&alert(serde_json::json!({"proc.pid": "7"})));
    assert_eq!(c.pid, Some(7));
    assert!(!c.workload.is_container());
    // Hostile values never panic and never become a pid.
    for v in [
        serde_json::json!(-1),
        serde_json::json!(1e30),
        serde_json::json!("x"),
        serde_json::json!(u64::MAX),
    ] {
        let c = AlertContext::from_alert(&alert(serde_json::json!({ "proc.pid": v })));
        assert_eq!(c.pid, None);
    }
}

/// Rails hold even in detect mode: PID 1 is refused, not reported as "would kill".
#[tokio::test]
async fn rails_before_dry_run() {
    let mut set = ResponseSet::default();
    config::parse_str(
        std::path::Path::new("t.yaml"),
        "- response: k\n  actions: [kill_process]\n",
        &mut set,
    );
    let r = Responder::new(
        set,
        Options {
            detect_only: true,
            ..Default::default()
        },
        None,
    );
    let a = Arc::new(alert(serde_json::json!({"proc.pid": 1})));
    let rep = r
        .handle(
            a,
            AlertContext::from_alert(&alert(serde_json::json!({"proc.pid": 1}))),
        )
        .await;
    assert_eq!(rep.len(), 1);
    assert_eq!(rep[0].outcome, Outcome::Refused, "{rep:?}");
    assert!(rep[0].error.as_deref().unwrap_or("").contains("init"));
}

/// A container id from an untrusted alert never reaches Docker unless it is plain hex.
#[tokio::test]
async fn hostile_container_ids_are_refused() {
    let mut set = ResponseSet::default();
    config::parse_str(
        std::path::Path::new("t.yaml"),
        "- settings: {dedupe_window: 0s}\n- response: k\n  actions: [kill_container, quarantine_network]\n  ignore_errors: true\n",
        &mut set,
    );
    let r = Responder::new(set, Options::default(), None);
    for id in [
        "../../images/x",
        "abc",
        "0123456789ab?force=1",
        &"a".repeat(65),
    ] {
        let a = alert(serde_json::json!({"container.id": id}));
        let ctx = AlertContext::from_alert(&a);
        let rep = r.handle(Arc::new(a), ctx).await;
        assert_eq!(rep.len(), 2);
        for x in &rep {
            assert_eq!(x.outcome, Outcome::Refused, "{id}: {rep:?}");
            assert!(
                x.error
                    .as_deref()
                    .unwrap_or("")
                    .contains("invalid container id")
            );
        }
    }
    assert!(valid_container_id("0123456789ab"));
}
