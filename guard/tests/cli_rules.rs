//! The offline subcommands as a user runs them: exit codes, stdout data, stderr summaries.

use std::process::Command;

fn guard() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_guard"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c.env_remove("GUARD_RULES");
    c
}

fn tmp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn validate_lists_all_errors_and_fails() {
    let bad = tmp(
        "bad.yaml",
        "- rule: a\n  desc: d\n  condition: proc.nmae = x\n  output: o\n  priority: INFO\n- rule: b\n  desc: d\n  condition: proc.pid = x\n  output: o\n  priority: INFO\n",
    );
    let out = guard().arg("validate").arg(&bad).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("bad.yaml:3:14: error: unknown field 'proc.nmae'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bad.yaml:8:25: error: type mismatch"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 error(s)"));
}

#[test]
fn validate_accepts_policies_and_falco() {
    let out = guard()
        .args([
            "validate",
            "../shared/falco-rules/falco_rules.yaml",
            "policies",
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("42 rules (42 active, 0 partial, 0 disabled"),
        "{stderr}"
    );
    assert!(!stderr.contains("partial: rule"), "{stderr}");
    // The note on the host name the K8S rule compares fd.sip.name with.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "warning: 'fd.sip.name' compares with host name 'kubernetes.default.svc.cluster.local'"
        ) && stdout.contains("while it does not resolve, the check is false"),
        "{stdout}"
    );
}

#[test]
fn rules_list_json() {
    let out = guard()
        .args(["rules", "list", "--json", "--rules", "policies"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = v.as_array().expect("array");
    assert!(
        rows.iter()
            .any(|r| r["name"] == "Shell spawned in container"
                && r["priority"] == "Warning"
                && r["status"] == "active")
    );
}

/// `rules list` says the same of every rule in its table and in `--json`; a rule whose JSON
/// lists unavailable fields is `partial` in both, and only such a rule is.
#[test]
fn rules_list_text_and_json_agree() {
    let run = |json: bool| {
        let mut c = guard();
        c.args([
            "rules",
            "list",
            "--rules",
            "policies",
            "--rules",
            "../shared/falco-rules",
        ]);
        if json {
            c.arg("--json");
        }
        let out = c.output().expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let v: serde_json::Value = serde_json::from_str(&run(true)).expect("json");
    let rows = v.as_array().expect("array");
    let text = run(false);
    for r in rows {
        let name = r["name"].as_str().expect("name");
        let status = r["status"].as_str().expect("status is a word");
        let unavailable = r["unavailable_fields"].as_array().expect("array");
        match status {
            "partial" => assert!(!unavailable.is_empty(), "{name}: {r}"),
            "active" => assert!(unavailable.is_empty(), "{name}: {r}"),
            _ => {}
        }
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with("  "))
            .unwrap_or_else(|| panic!("{name} missing from the table"));
        let cols: Vec<&str> = line[name.len()..].split_whitespace().collect();
        assert_eq!(cols.get(1).copied(), Some(status), "{line}");
    }
    assert_eq!(
        text.lines().count(),
        rows.len() + 1,
        "header + one line per rule"
    );
    // The K8S API server rule (fd.sip.name) is evaluated in full.
    let k8s = rows
        .iter()
        .find(|r| r["name"] == "Contact K8S API Server From Container")
        .expect("K8S rule listed");
    assert_eq!(k8s["status"], "active", "{k8s}");
    assert_eq!(k8s["unavailable_fields"], serde_json::json!([]), "{k8s}");
}

#[test]
fn replay_prints_alert_json_lines_and_reports_bad_lines() {
    let out = guard()
        .args([
            "replay",
            "--rules",
            "policies",
            "--hostname",
            "h1",
            "tests/corpus/policies/netcat.pos.jsonl",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = parse_alerts(&out.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["rule"], "Netcat or socat remote shell");
    assert_eq!(lines[0]["hostname"], "h1");
    let bad = tmp(
        "bad.jsonl",
        "{\"v\":1,\"time\":1,\"type\":\"execve\",\"proc\":{\"pid\":1,\"name\":\"a\"}}\n{\"v\":1,\"bogus\":2}\n",
    );
    let out = guard()
        .args(["replay", "--rules", "policies"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = guard()
        .args([
            "replay",
            "--rules",
            "policies",
            "--format",
            "text",
            "tests/corpus/policies/kmod.pos.jsonl",
        ])
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("Critical Kernel module loaded (process=insmod")
    );
}

/// One run over a rules file, a policy file and a response file, each with errors: every error
/// of every file is listed, in one form, and the exit code is 1.
#[test]
fn validate_lists_errors_of_every_file_kind() {
    let rules = tmp(
        "mixed-rules.yaml",
        "- rule: a\n  desc: d\n  condition: proc.nmae = x\n  output: o\n  priority: INFO\n",
    );
    let policy = tmp(
        "mixed-policy.yaml",
        "- policy: p\n  workload: {}\n  mode: detect\n  bogus_key: 1\n",
    );
    let response = tmp(
        "mixed-response.yaml",
        "- response: r\n  desc: d\n  actions:\n    - explode: {}\n",
    );
    let out = guard()
        .arg("validate")
        .args([&rules, &policy, &response])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = stdout.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 3, "{stdout}");
    assert!(
        stdout.contains("mixed-rules.yaml:3:14: error: unknown field 'proc.nmae'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mixed-policy.yaml:4:3: error: unknown key 'bogus_key'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mixed-response.yaml:4:7: error: ") && stdout.contains("explode"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 error(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The table form of `rules list`: one row per rule with priority, status and location; Falco
/// rules that use a field guard cannot provide show as `partial`.
#[test]
fn rules_list_text() {
    let out = guard()
        .args([
            "rules",
            "list",
            "--rules",
            "../shared/falco-rules/falco_rules.yaml",
            "--rules",
            "policies",
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("RULE") && lines[0].contains("PRIORITY"),
        "{stdout}"
    );
    assert_eq!(lines.len(), 1 + 42, "{stdout}");
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"))
    };
    let shell = row("Shell spawned in container");
    assert_eq!(shell[shell.len() - 3..][..2], ["Warning", "active"]);
    assert!(shell[shell.len() - 1].starts_with("policies/guard_rules.yaml:"));
    let k8s = row("Contact K8S API Server From Container");
    assert_eq!(k8s[k8s.len() - 2], "active", "{k8s:?}");
    let partial = lines.iter().filter(|l| l.contains(" partial ")).count();
    // None: fd.sip.name (K8S API server), proc.exe_ino.* (drop-and-execute), proc.sname,
    // proc.is_vpgid_leader, fd.connected and fd.name_changed are provided.
    assert_eq!(partial, 0, "{stdout}");
    let drop = row("Drop and execute new binary in container");
    assert_eq!(drop[drop.len() - 2], "active", "{drop:?}");
}

/// `replay` needs no privileges: run as root, the test drops to uid/gid 65534 (nobody) first.
#[test]
fn replay_runs_without_root() {
    use std::os::unix::process::CommandExt;
    let mut cmd = guard();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // std clears the supplementary groups when root sets a uid.
        cmd.uid(65534).gid(65534);
    }
    let out = cmd
        .args([
            "replay",
            "--rules",
            "policies",
            "tests/corpus/policies/kmod.pos.jsonl",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = parse_alerts(&out.stdout);
    assert!(
        alerts.iter().any(|a| a["rule"] == "Kernel module loaded"),
        "{alerts:?}"
    );
}

/// `replay`'s stdout: one alert per line.
fn parse_alerts(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert json"))
        .collect()
}
