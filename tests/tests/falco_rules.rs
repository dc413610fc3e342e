//! Falco's stable ruleset (read in place from ../shared): it loads, every rule compiles, and each
//! rule whose fields guard provides fires on its positive trace and not on its negative one.

use std::collections::BTreeSet;

use guard::rules::{RuleStatus, Severity};
use guard_tests::corpus::{self, rule_names, run_trace};

/// Stable rules that cannot fire on guard's events, and why (also in docs/rules.md).
/// Empty since fd.sip.name is provided (the corpus engine resolves the K8S API name).
const UNSUPPORTED: &[(&str, &str)] = &[];

#[test]
fn falco_stable_ruleset_loads_completely() {
    let path = corpus::falco_rules_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let declared = text.lines().filter(|l| l.starts_with("- rule:")).count();
    assert_eq!(declared, 25, "the issue counts 25 stable rules");
    let (engine, diags) = corpus::engine(&[path], &[]);
    assert_eq!(engine.rules.rules.len(), declared);
    for r in &engine.rules.rules {
        assert_eq!(r.status, RuleStatus::Active, "{}", r.name);
    }
    // The only warnings: the plugin requirement, each unavailable field once by name, and
    // the note on each host name that fd.*ip.name checks compare with.
    let mut fields = BTreeSet::new();
    let mut hosts = Vec::new();
    for d in diags.iter().filter(|d| d.severity == Severity::Warning) {
        if d.msg.starts_with("'fd.sip.name' compares with host name ") {
            hosts.push(d.msg.clone());
        } else if let Some(f) = d
            .msg
            .strip_prefix("field '")
            .and_then(|m| m.split('\'').next())
        {
            assert!(fields.insert(f.to_string()), "field {f} reported twice");
        } else {
            assert!(
                d.msg.contains("plugin requirement 'container'"),
                "unexpected warning: {d}"
            );
        }
    }
    assert!(!fields.contains("fd.sip.name"), "{fields:?}");
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert!(
        hosts[0].contains("'kubernetes.default.svc.cluster.local'")
            && hosts[0].contains("while it does not resolve, the check is false"),
        "{}",
        hosts[0]
    );
    let k8s = engine
        .rules
        .get("Contact K8S API Server From Container")
        .expect("rule");
    assert!(k8s.unavailable.is_empty(), "{:?}", k8s.unavailable);
    assert_eq!(k8s.status_label(), "active");
    assert_eq!(
        engine.rules.dns_names,
        [Box::<str>::from("kubernetes.default.svc.cluster.local")]
    );
}

#[test]
fn each_supported_stable_rule_has_positive_and_negative_traces() {
    let (engine, _) = corpus::engine(&[corpus::falco_rules_path()], &[]);
    let cases: Vec<_> = corpus::cases()
        .into_iter()
        .filter(|c| c.ruleset == "falco")
        .collect();
    for r in &engine.rules.rules {
        let unsupported = UNSUPPORTED.iter().any(|(n, _)| *n == r.name);
        let pos = cases.iter().filter(|c| c.rule == r.name && c.fires).count();
        let neg = cases
            .iter()
            .filter(|c| c.rule == r.name && !c.fires)
            .count();
        assert!(neg >= 1, "{}: no negative trace", r.name);
        if unsupported {
            assert_eq!(
                pos, 0,
                "{} is listed unsupported but has a positive trace",
                r.name
            );
            assert!(
                !r.unavailable.is_empty(),
                "{} is listed unsupported but uses only provided fields",
                r.name
            );
        } else {
            assert!(pos >= 1, "{}: no positive trace", r.name);
        }
    }
    for c in &cases {
        let got = rule_names(&run_trace(&engine, &c.path()));
        assert_eq!(got.contains(&c.rule), c.fires, "{}: {got:?}", c.trace);
    }
}

#[test]
fn falco_outputs_render_without_unknown_fields() {
    let (engine, _) = corpus::engine(&[corpus::falco_rules_path()], &[]);
    let case = corpus::cases()
        .into_iter()
        .find(|c| c.trace.ends_with("falco/terminal_shell.pos.jsonl"))
        .expect("case");
    let alerts = run_trace(&engine, &case.path());
    let a = alerts
        .iter()
        .find(|a| a.rule == "Terminal shell in container")
        .expect("alert");
    assert!(a.output.contains("A shell was spawned in a container with an attached terminal | evt_type=execve user=root"), "{}", a.output);
    assert_eq!(a.output_fields["proc.tty"], 34816);
    assert_eq!(a.output_fields["user.loginuid"], -1);
    assert!(a.tags.contains(&"maturity_stable".to_string()));
}

/// The engine evaluates per-event-type programs derived from the rules (folded type tests,
/// inlined macros, merged same-field tests). On every corpus event, re-typed to each event type
/// guard knows, they match exactly what the conditions as written match.
#[test]
fn per_type_programs_match_the_written_conditions() {
    let (engine, _) = corpus::engine(&[corpus::falco_rules_path(), corpus::policies_path()], &[]);
    let (mut fast, mut slow) = (
        guard::rules::Matcher::default(),
        guard::rules::Matcher::default(),
    );
    let (mut events, mut fired) = (0, 0);
    for c in corpus::cases() {
        let text = std::fs::read_to_string(c.path()).expect("trace");
        for line in text.lines() {
            let ev = guard::model::Event::from_json_line(line).expect("event");
            for t in guard::rules::fields::EVENT_TYPES
                .iter()
                .chain(&["no_such_call"])
            {
                let mut e = ev.clone();
                e.evt_type = (*t).into();
                e.derived = Default::default();
                e.prepare().expect("prepare");
                let want = engine.matches_unindexed(&e, &mut slow);
                assert_eq!(engine.matches(&e, &mut fast), want, "{t}: {line}");
                fired += want.len();
                events += 1;
            }
        }
    }
    assert!(
        events > 1000 && fired > 100,
        "{events} events, {fired} matches"
    );
}
