//! exec: the script gets the alert JSON on stdin, runs under Landlock with capabilities
//! dropped; its write outside the allowed directory fails and the failure is recorded.

use std::{os::unix::fs::PermissionsExt, sync::Arc, time::Duration};

use guard::{
    alert::Priority,
    audit::Outcome,
    respond::{AlertContext, Options},
};
use guard_tests::{harness::*, respond_util::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_gets_alert_and_cannot_write_outside() {
    if !can_run(is_root(), "dropping the capability bounding set needs root") {
        return;
    }
    let work = TempDir::new("exec");
    let allowed = work.0.join("allowed");
    let outside = work.0.join("outside");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let script = work.0.join("respond.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat > {a}/alert.json\ngrep CapEff /proc/self/status > {a}/caps\necho escaped > {o}/pwned\necho done\n",
            a = allowed.display(),
            o = outside.display()
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let audit = TempDir::new("exec-audit");
    let r = responder_with_audit(
        responses(&format!(
            "- response: e\n  actions: [{{exec: {{script: '{}', timeout: 5s, allow_write: ['{}']}}}}]\n",
            script.display(),
            allowed.display()
        )),
        Options::default(),
        &audit.0,
    );
    let a = Arc::new(alert(
        "Script me",
        Priority::Error,
        serde_json::json!({"proc.name": "nc"}),
    ));
    let rep = r.handle(a, AlertContext::default()).await;
    assert_eq!(rep.len(), 1);
    // The script ran to the end (exit 0 from `echo done`).
    assert_eq!(rep[0].outcome, Outcome::Done, "{rep:?}");
    let got: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(allowed.join("alert.json")).expect("alert.json"),
    )
    .expect("alert JSON on stdin");
    assert_eq!(got["rule"], "Script me");
    assert!(
        !outside.join("pwned").exists(),
        "Landlock must block writes outside allow_write"
    );
    let caps = std::fs::read_to_string(allowed.join("caps")).expect("caps");
    assert!(
        caps.contains("0000000000000000"),
        "capabilities dropped: {caps}"
    );
    let detail = rep[0].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("Permission denied"),
        "denied write recorded: {detail}"
    );
    let rec = wait_audit(&audit.0, Duration::from_secs(5), |v| v["action"] == "exec")
        .expect("audit record");
    assert!(
        rec["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Permission denied"),
        "{rec}"
    );
    assert!(
        rec["detail"]
            .as_str()
            .unwrap_or("")
            .contains("landlock fully enforced"),
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_timeout_kills_it() {
    if !can_run(is_root(), "dropping the capability bounding set needs root") {
        return;
    }
    let work = TempDir::new("exec-timeout");
    let script = work.0.join("slow.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let r = guard::respond::Responder::new(
        responses(&format!(
            "- response: e\n  actions: [{{exec: {{script: '{}', timeout: 300ms}}}}]\n",
            script.display()
        )),
        Options::default(),
        None,
    );
    let t0 = std::time::Instant::now();
    let rep = r
        .handle(
            Arc::new(alert("x", Priority::Error, serde_json::json!({}))),
            AlertContext::default(),
        )
        .await;
    assert_eq!(rep[0].outcome, Outcome::Failed, "{rep:?}");
    assert!(
        rep[0].error.as_deref().unwrap_or("").contains("timeout"),
        "{rep:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "killed at its timeout"
    );
}
