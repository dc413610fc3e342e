//! guard's own ruleset against its corpus: every rule in `policies/` has a positive and a
//! negative trace, each trace yields exactly the alerts listed, and a mutation of each rule's
//! condition makes its positive trace fail (so the traces really exercise the conditions).

use std::collections::BTreeSet;

use guard::rules::{
    RuleStatus,
    lexer::{Tok, lex},
};
use guard_tests::corpus::{self, Case, rule_names, run_trace};

fn policy_cases() -> Vec<Case> {
    corpus::cases()
        .into_iter()
        .filter(|c| c.ruleset == "policies")
        .collect()
}

#[test]
fn every_policy_rule_has_positive_and_negative_traces() {
    let (engine, _) = corpus::engine(&[corpus::policies_path()], &[]);
    let cases = policy_cases();
    let mut missing = Vec::new();
    for r in &engine.rules.rules {
        assert_eq!(r.status, RuleStatus::Active, "{}", r.name);
        assert!(!r.desc.is_empty(), "{} has no desc", r.name);
        assert!(
            r.tags.iter().any(|t| t.starts_with("mitre_")),
            "{} has no MITRE tactic tag",
            r.name
        );
        assert!(
            r.tags
                .iter()
                .any(|t| t.starts_with('T')
                    && t[1..].chars().next().is_some_and(|c| c.is_ascii_digit())),
            "{} has no MITRE technique tag",
            r.name
        );
        for want in [true, false] {
            if !cases.iter().any(|c| c.rule == r.name && c.fires == want) {
                missing.push(format!(
                    "{} ({})",
                    r.name,
                    if want { "positive" } else { "negative" }
                ));
            }
        }
    }
    assert!(missing.is_empty(), "rules without traces: {missing:?}");
    assert!(
        engine.rules.rules.len() >= 17,
        "{}",
        engine.rules.rules.len()
    );
}

#[test]
fn policy_traces_give_exactly_the_expected_alerts() {
    let (engine, _) = corpus::engine(&[corpus::policies_path()], &[]);
    for c in policy_cases() {
        let got = rule_names(&run_trace(&engine, &c.path()));
        if let Some(want) = &c.alerts {
            assert_eq!(&got, want, "{}", c.trace);
        }
        assert_eq!(got.contains(&c.rule), c.fires, "{}: {got:?}", c.trace);
    }
}

#[test]
fn alerts_carry_falco_keys_and_rendered_fields() {
    let (engine, _) = corpus::engine(&[corpus::policies_path()], &[]);
    let c = policy_cases()
        .into_iter()
        .find(|c| c.trace.ends_with("shell_in_container.pos.jsonl"))
        .expect("case");
    let alerts = run_trace(&engine, &c.path());
    let v = serde_json::to_value(&alerts[0]).expect("json");
    assert_eq!(v["rule"], "Shell spawned in container");
    assert_eq!(v["priority"], "Warning");
    assert_eq!(v["source"], "syscall");
    assert_eq!(v["hostname"], "corpus-host");
    assert_eq!(v["time"], "2026-01-01T00:00:00.000000000Z");
    assert_eq!(v["output_fields"]["container.id"], "3f2a9c1b7d4e");
    assert_eq!(v["output_fields"]["k8s.ns.name"], "prod");
    assert_eq!(v["output_fields"]["proc.tty"], 0);
    let out = v["output"].as_str().expect("output");
    assert!(out.starts_with("00:00:00.000000000: Warning Shell spawned in container (shell=bash cmdline=bash -i parent=nginx"), "{out}");
}

/// Flips the first operator of a condition to its complement: `=`<->`!=`, `<`<->`>=`,
/// `>`<->`<=`; a word operator (`in`, `startswith`, ...) becomes `not <check>`.
fn mutate(cond: &str) -> Option<String> {
    let toks = lex(cond).ok()?;
    for (i, t) in toks.iter().enumerate() {
        let (s, e) = (t.span.start, t.span.end);
        match &t.tok {
            Tok::Sym(sym) => {
                let flipped = match *sym {
                    "=" | "==" => "!=",
                    "!=" => "=",
                    "<" => ">=",
                    ">=" => "<",
                    ">" => "<=",
                    "<=" => ">",
                    _ => continue,
                };
                return Some(format!("{}{flipped}{}", &cond[..s], &cond[e..]));
            }
            Tok::Word(w)
                if matches!(
                    w.as_str(),
                    "in" | "pmatch" | "startswith" | "endswith" | "contains" | "icontains" | "glob"
                ) =>
            {
                let field_start = toks.get(i.checked_sub(1)?)?.span.start;
                return Some(format!(
                    "{}not {}",
                    &cond[..field_start],
                    &cond[field_start..]
                ));
            }
            _ => {}
        }
    }
    None
}

#[test]
fn mutating_each_rule_breaks_its_positive_trace() {
    let (engine, _) = corpus::engine(&[corpus::policies_path()], &[]);
    let cases = policy_cases();
    let mut mutated = BTreeSet::new();
    for r in &engine.rules.rules {
        let cond = r.condition.replace('\n', " ");
        let Some(m) = mutate(&cond) else {
            panic!("{}: no operator to mutate in {cond}", r.name)
        };
        assert_ne!(m, cond);
        let patch = format!(
            "- rule: {}\n  condition: {}\n  override:\n    condition: replace\n",
            serde_json::to_string(&r.name).expect("name"),
            serde_json::to_string(&m).expect("cond"),
        );
        let (mutant, _) = corpus::engine(&[corpus::policies_path()], &[("mutation.yaml", &patch)]);
        assert_eq!(
            mutant.rules.get(&r.name).map(|x| x.condition.clone()),
            Some(m.clone())
        );
        for c in cases.iter().filter(|c| c.rule == r.name && c.fires) {
            let count = |e| {
                rule_names(&run_trace(e, &c.path()))
                    .iter()
                    .filter(|n| **n == r.name)
                    .count()
            };
            let (before, after) = (count(&engine), count(&mutant));
            assert!(before > 0, "{}: positive trace does not fire", c.trace);
            assert!(
                after < before,
                "{}: mutation `{m}` survived ({before} -> {after} alerts)",
                c.trace
            );
            mutated.insert(r.name.clone());
        }
    }
    assert_eq!(mutated.len(), engine.rules.rules.len());
}

#[test]
fn policies_load_next_to_falco_without_clobbering_it() {
    let (alone, _) = corpus::engine(&[corpus::falco_rules_path()], &[]);
    let (both, _) = corpus::engine(&[corpus::falco_rules_path(), corpus::policies_path()], &[]);
    let (mine, _) = corpus::engine(&[corpus::policies_path()], &[]);
    assert_eq!(
        both.rules.rules.len(),
        alone.rules.rules.len() + mine.rules.rules.len()
    );
    for r in &alone.rules.rules {
        assert_eq!(
            both.rules.get(&r.name).map(|x| &x.condition),
            Some(&r.condition),
            "{}",
            r.name
        );
    }
}

/// Seed two's advice, as shipped: the rules that say `not guard_trusted_image` go quiet for an
/// image once a later file appends it to `guard_trusted_images`; the other rules do not change.
#[test]
fn trusted_images_list_silences_the_rules_that_use_it() {
    let (engine, _) = corpus::engine(&[corpus::policies_path()], &[]);
    let tuning = "- list: guard_trusted_images\n  items: [docker.io/library/nginx]\n  override:\n    items: append\n";
    let (tuned, _) = corpus::engine(&[corpus::policies_path()], &[("local.yaml", tuning)]);
    let mut silenced = BTreeSet::new();
    for c in policy_cases().iter().filter(|c| c.fires) {
        let count = |e| {
            rule_names(&run_trace(e, &c.path()))
                .iter()
                .filter(|n| **n == c.rule)
                .count()
        };
        let (before, after) = (count(&engine), count(&tuned));
        let uses_macro = engine
            .rules
            .get(&c.rule)
            .is_some_and(|r| r.condition.contains("not guard_trusted_image"));
        if uses_macro {
            // Every positive event of these traces runs in the nginx image.
            assert!(before > 0 && after == 0, "{}: {before} -> {after}", c.trace);
            silenced.insert(c.rule.clone());
        } else {
            assert_eq!(before, after, "{}", c.trace);
        }
    }
    assert!(silenced.len() >= 7, "{silenced:?}");
    assert!(silenced.contains("Shell spawned in container"));
}
