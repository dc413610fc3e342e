use super::*;
use crate::rules::Loader;

fn load(text: &str) -> (Vec<Policy>, Vec<Diagnostic>) {
    let mut l = Loader::new();
    let sink = register(&mut l);
    l.add_str("p.yaml", text);
    let (_, mut diags) = l.finish();
    let v = sink.lock().map(|v| v.clone()).unwrap_or_default();
    diags.extend(overlap_warnings(&v));
    (v, diags)
}

/// The one policy `text` defines (panics on diagnostics: test input only).
pub(super) fn parse_one(text: &str) -> Policy {
    let (v, d) = load(text);
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    v.into_iter().next().expect("one policy")
}

const FULL: &str = r#"
- rule: r
  desc: d
  condition: evt.type = execve
  output: o
  priority: WARNING
- policy: web
  desc: nginx in prod
  workload:
    image: "nginx:*"
    name: "web-*"
    labels: {app: web}
    k8s_namespace: prod
  mode: enforce
  rules: {tags: [container], exclude_names: ["Noisy*"]}
  enforce:
    exec: {deny: [/bin/sh, "/usr/local/bin/**"], deny_new_binaries: true}
    open: {deny_write: ["/etc/**"], deny_read: [/etc/shadow]}
    connect: {deny: ["0.0.0.0/0:22", "[::1]:25", "10.0.0.0/8"], allow: ["10.1.0.0/16"]}
"#;

#[test]
fn full_policy_parses_next_to_rules() {
    let (v, d) = load(FULL);
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    let p = &v[0];
    assert_eq!(p.name, "web");
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(workload::specificity(&p.workload), 4);
    assert_eq!(p.exec.deny[1], PathRule::Below("/usr/local/bin/".into()));
    assert!(p.exec.deny_new_binaries);
    assert_eq!(p.connect.deny[0].port, Some(22));
    assert_eq!(p.connect.deny[1].to_string(), "[::1/128]:25");
    assert!(p.rules.applies("Shell", &["container".into()]));
    assert!(!p.rules.applies("Noisy rule", &["container".into()]));
    assert!(!p.rules.applies("Other", &["host".into()]));
}

#[test]
fn unknown_keys_are_errors_with_positions() {
    let (_, d) = load(
        "- policy: x\n  workload: {}\n  mode: enforce\n  enforce:\n    exec: {deny: [/bin/sh], denny: [/x]}\n",
    );
    let e = d.iter().find(|d| d.is_error()).expect("an error");
    let s = e.to_string();
    assert!(s.contains("unknown key 'denny' in 'enforce.exec'"), "{s}");
    // At the key itself, inside the flow mapping.
    assert!(s.starts_with("p.yaml:5:29: "), "{s}");
    let (_, d) = load("- policy: x\n  workload: {imag: a}\n");
    assert!(
        d.iter().any(|d| d.is_error()
            && d.to_string().contains("unknown field `imag`")
            && d.to_string().starts_with("p.yaml:2:14: ")),
        "{d:?}"
    );
    let (_, d) = load("- policy: x\n  workload: {}\n  mode: block\n");
    assert!(
        d.iter()
            .any(|d| d.is_error() && d.to_string().contains("'detect' or 'enforce'"))
    );
}

#[test]
fn bad_values_are_errors_not_panics() {
    for bad in [
        "- policy: x\n  workload: {}\n  enforce: {open: {deny_read: [etc/shadow]}}\n",
        "- policy: x\n  workload: {}\n  enforce: {open: {deny_read: [\"/etc/*.conf\"]}}\n",
        "- policy: x\n  workload: {}\n  enforce: {open: {deny_read: [/etc/../shadow]}}\n",
        "- policy: x\n  workload: {}\n  enforce: {connect: {deny: [\"300.1.1.1\"]}}\n",
        "- policy: x\n  workload: {}\n  enforce: {connect: {deny: [\"1.2.3.4:0\"]}}\n",
        "- policy: x\n  workload: {}\n  enforce: {connect: {deny: [\"[::1\"]}}\n",
        "- policy: x\n  workload: {}\n  enforce: {exec: {deny: [/a], allow: [/b]}}\n",
        "- policy: x\n  workload: {}\n  enforce: {exec: {deny_new_binaries: yes please}}\n",
        "- policy: x\n  workload: [a]\n",
        "- policy: x\n",
        "- policy: [x]\n  workload: {}\n",
        "- policy: x\n  workload: {}\n- policy: x\n  workload: {}\n",
    ] {
        let (_, d) = load(bad);
        assert!(d.iter().any(|d| d.is_error()), "no error for {bad:?}");
    }
    let long = format!("/{}", "a".repeat(300));
    assert!(parse_path_rule(&long).is_err());
}

#[test]
fn overlap_rule_most_specific_wins_and_validate_warns() {
    let (v, d) = load(
        "- policy: all\n  workload: {}\n  enforce: {exec: {deny: [/bin/nc]}}\n- policy: web\n  workload: {image: \"nginx:*\"}\n  enforce: {exec: {deny: [/bin/sh]}}\n- policy: db\n  workload: {image: \"redis:*\"}\n",
    );
    let warns: Vec<String> = d
        .iter()
        .filter(|d| !d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        warns
            .iter()
            .any(|w| w.contains("'web' may select the same workloads as 'all'")),
        "{warns:?}"
    );
    assert!(
        !warns
            .iter()
            .any(|w| w.contains("'db' may select the same workloads as 'web'")),
        "{warns:?}"
    );
    let w = WorkloadInfo {
        container_id: Some("a".repeat(64)),
        image: "nginx:1".into(),
        ..Default::default()
    };
    assert_eq!(choose(&v, &w).map(|(_, p)| p.name.as_str()), Some("web"));
    let w = WorkloadInfo {
        container_id: Some("b".repeat(64)),
        image: "alpine".into(),
        ..Default::default()
    };
    assert_eq!(choose(&v, &w).map(|(_, p)| p.name.as_str()), Some("all"));
}

#[test]
fn kernel_entries_close_over_prefixes() {
    use guard_ebpf::{net_bits, path_bits};
    let (v, _) = load(FULL);
    let e = kernel::path_entries(1, &v[0]);
    let find = |s: &[u8]| {
        e.iter()
            .find(|(_, d, _)| d.path.starts_with(s) && d.path[s.len()] == 0)
            .map(|(plen, _, b)| (*plen, *b))
    };
    // /etc/shadow is below /etc/**: it carries deny_write too.
    let (plen, bits) = find(b"/etc/shadow\0").expect("shadow entry");
    assert_eq!(bits, path_bits::DENY_READ | path_bits::DENY_WRITE);
    assert_eq!(plen, 40 + 8 * 12);
    let (_, bits) = find(b"/etc/").expect("etc entry");
    assert_eq!(bits, path_bits::DENY_WRITE);
    let n = kernel::net_entries(1, &v[0]);
    let allow = n
        .iter()
        .find(|(plen, d, _)| *plen == 64 + 16 && d.addr[..2] == [10, 1])
        .expect("10.1/16");
    assert_eq!(
        allow.2,
        net_bits::ALLOW | net_bits::DENY,
        "inside the denied 10/8: deny wins"
    );
    let f = kernel::policy_flags(&v[0], false);
    assert_ne!(f & guard_ebpf::policy_flags::ENFORCE, 0);
    assert_eq!(
        kernel::policy_flags(&v[0], true) & guard_ebpf::policy_flags::ENFORCE,
        0
    );
}

#[test]
fn path_rules() {
    assert_eq!(parse_path_rule("/**"), Ok(PathRule::Below("/".into())));
    assert_eq!(parse_path_rule("/etc"), Ok(PathRule::Exact("/etc".into())));
    assert!(parse_path_rule("/etc/").is_err());
    assert!(PathRule::Below("/etc/".into()).matches("/etc/passwd"));
    assert!(!PathRule::Below("/etc/".into()).matches("/etcx"));
}

fn decision_event(
    verdict: crate::events::Verdict,
    op: crate::events::Operation,
    target: &str,
) -> crate::events::DecisionEvent {
    use crate::events::{Access, Hook, Operation};
    let hook = match op {
        Operation::Exec => Hook::SchedProcessExec,
        Operation::Open => Hook::FileOpen,
        _ => Hook::SocketConnect,
    };
    crate::events::DecisionEvent {
        common: crate::events::Common {
            time_ns: 1_000_000_000,
            cgroup_id: crate::events::CgroupId(7),
            pid: 42,
            tid: 42,
            ppid: 1,
            uid: 0,
            gid: 0,
            loginuid: None,
            comm: "sh".into(),
            ret: -1,
            cpu: 0,
        },
        policy_id: 1,
        op,
        verdict,
        reason: crate::events::Reason::DenyList,
        hook,
        path: crate::events::Captured {
            text: target.into(),
            truncated: false,
            fault: false,
        },
        access: (op == Operation::Open).then_some(Access::Read),
        dest: None,
        inode: None,
        self_protect: None,
        kill_error: None,
    }
}

#[test]
fn kernel_decisions_become_alerts_and_audit_records() {
    use crate::audit::record::{DecisionKind, Operation};
    use crate::events::{self, Hook, Verdict};
    let (v, _) = load(FULL);
    let e = kernel::Enforcer::new(
        v,
        false,
        crate::policy::backend::Backend::Attached(crate::policy::backend::Kind::SigkillFallback),
    )
    .expect("enforcer");
    let w = WorkloadInfo {
        container_id: Some("c".repeat(64)),
        name: "web-1".into(),
        image: "nginx:1.27".into(),
        ..Default::default()
    };
    let (d, a) = e.decision(
        &decision_event(Verdict::Kill, events::Operation::Exec, "/bin/sh"),
        &w,
        "host1",
    );
    assert_eq!(d.decision, DecisionKind::Deny);
    assert_eq!(d.op, Operation::Exec);
    assert_eq!(d.hook, Some(Hook::SchedProcessExec));
    assert_eq!(d.policy, "web");
    assert_eq!(d.backend, "sigkill-fallback");
    assert_eq!(d.target, "/bin/sh");
    assert_eq!(d.workload.container_name.as_deref(), Some("web-1"));
    assert_eq!(d.workload.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(d.process.pid, Some(42));
    assert_eq!(a.source, "guard_policy");
    assert_eq!(a.hostname, "host1");
    assert_eq!(a.priority, crate::alert::Priority::Critical);
    assert_eq!(a.guard.decision.as_deref(), Some("kill"));
    assert_eq!(a.guard.mode.as_deref(), Some("enforce"));
    assert_eq!(a.output_fields["container.id"], "cccccccccccc");
    assert_eq!(a.output_fields["guard.target"], "/bin/sh");
    assert_eq!(a.output_fields["guard.hook"], "sched_process_exec");
    // The report reads the alert's workload from these fields.
    let rw = crate::audit::record::Workload::from_alert(&a);
    assert_eq!(rw.container_name.as_deref(), Some("web-1"));
    assert_eq!(d.kill_error, None);
    assert!(!a.output_fields.contains_key("guard.kill_error"));

    // A kill that did not happen says so, with the reason, in the alert and the record.
    let mut failed = decision_event(Verdict::KillFailed, events::Operation::Open, "/etc/shadow");
    failed.kill_error = Some("exited before the signal".into());
    let (d, a) = e.decision(&failed, &w, "host1");
    assert_eq!(d.decision, DecisionKind::Deny);
    assert_eq!(d.kill_error.as_deref(), Some("exited before the signal"));
    assert_eq!(a.guard.decision.as_deref(), Some("kill-failed"));
    assert_eq!(
        a.output_fields["guard.kill_error"],
        "exited before the signal"
    );

    let (d, a) = e.decision(
        &decision_event(Verdict::WouldDeny, events::Operation::Open, "/etc/shadow"),
        &WorkloadInfo::host(Some("/user.slice".into())),
        "host1",
    );
    assert_eq!(d.decision, DecisionKind::WouldDeny);
    assert_eq!(d.access.as_deref(), Some("read"));
    assert_eq!(d.workload.container_id, None);
    assert_eq!(a.guard.decision.as_deref(), Some("would-deny"));
    assert_eq!(a.guard.mode.as_deref(), Some("detect"));
    assert_eq!(a.priority, crate::alert::Priority::Warning);
    assert_eq!(a.output_fields["container.id"], "host");
}

#[test]
fn bindings_follow_selectors_and_detect_only() {
    use guard_ebpf::policy_flags as pf;
    let (v, d) = load(
        "- policy: web\n  workload: {image: \"nginx:*\", labels: {app: web}}\n  mode: enforce\n  enforce: {exec: {deny: [/bin/sh]}}\n- policy: rules-only\n  workload: {name: \"db-*\"}\n  rules: {tags: [db]}\n",
    );
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    let mut w = WorkloadInfo {
        container_id: Some("a".repeat(64)),
        image: "nginx:1".into(),
        ..Default::default()
    };
    assert_eq!(kernel::binding_for(&v, false, 0, &w), None, "label missing");
    w.labels.insert("app".into(), "web".into());
    let b = kernel::binding_for(&v, false, 0, &w).expect("bound");
    assert_eq!(b.policy_id, 1);
    assert_eq!(b.flags & pf::ENFORCE, pf::ENFORCE);
    assert_eq!(b.flags & pf::EXEC_DENY, pf::EXEC_DENY);
    let b = kernel::binding_for(&v, true, 0, &w).expect("bound");
    assert_eq!(b.flags & pf::ENFORCE, 0, "--detect-only clears ENFORCE");
    // Unknown metadata never matches an image selector.
    w.image = crate::state::container::NA.into();
    assert_eq!(kernel::binding_for(&v, false, 0, &w), None);
    // A policy without kernel rules binds nothing.
    let db = WorkloadInfo {
        container_id: Some("b".repeat(64)),
        name: "db-1".into(),
        ..Default::default()
    };
    assert_eq!(kernel::binding_for(&v, false, 0, &db), None);
}

#[test]
fn glob_selected_parents_bind_their_new_children() {
    let (v, d) = load(
        "- policy: glob\n  workload: {cgroup: \"/x/*\"}\n  mode: enforce\n  enforce: {exec: {deny: [/bin/sh]}}\n- policy: exact\n  workload: {cgroup: /y}\n  mode: enforce\n  enforce: {exec: {deny: [/bin/sh]}}\n",
    );
    assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
    let b = kernel::child_binding(&v, false, 0, "/x").expect("a child of /x is selected");
    assert_eq!(b.policy_id, 1);
    assert_eq!(
        kernel::child_binding(&v, false, 0, "/x/").map(|b| b.policy_id),
        Some(1)
    );
    // An exact selector names only that cgroup; its children inherit instead (in the walk and
    // at cgroup_mkdir), they are not selected.
    assert_eq!(kernel::child_binding(&v, false, 0, "/y"), None);
    assert_eq!(kernel::child_binding(&v, false, 0, "/"), None);
    assert_eq!(kernel::child_binding(&v, false, 0, "/z"), None);
}

/// The example of issue 21: an unknown key under `enforce:` is reported at its own line and
/// column (9:5), not at `enforce:` (6:3); so is one two levels deeper, and a bad value at the
/// value.
#[test]
fn nested_errors_point_at_the_key_or_value_itself() {
    let text = "\
- policy: web
  workload:
    image: \"nginx:*\"
  mode: enforce
  rules: {tags: [container]}
  enforce:
    exec:
      deny: [/bin/sh, bin/ls]
    bogus: 1
    open:
      deny_read:
        - /etc/shadow
      deny_rite: [/x]
  labels: {}
";
    let (v, d) = load(text);
    assert!(v.is_empty());
    let errors: Vec<String> = d
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    let at = |pos: &str, words: &str| {
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("p.yaml:{pos}: error: ")) && e.contains(words)),
            "{pos} {words}: {errors:#?}"
        );
    };
    at("9:5", "unknown key 'bogus' in 'enforce'");
    at("13:7", "unknown key 'deny_rite' in 'enforce.open'");
    at("14:3", "unknown key 'labels' in policy");
    at(
        "8:23",
        "'enforce.exec.deny': \"bin/ls\": paths must be absolute",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    let hint = d
        .iter()
        .find(|d| d.msg.contains("deny_rite"))
        .expect("deny_rite");
    assert_eq!(hint.hint.as_deref(), Some("deny_write"));

    let (_, d) = load("- policy: x\n  workload: {}\n  mode:   block\n");
    assert!(
        d[0].to_string()
            .starts_with("p.yaml:3:11: error: 'mode' must be 'detect' or 'enforce'"),
        "{d:?}"
    );
}
