//! The example rules of the two seed articles load. They are extracted from the article text
//! at test time. The articles print YAML without its indentation (and seed one has an unquoted
//! `: ` in a plain scalar), so the extraction re-indents the keys and quotes such values; the
//! rule text itself is unchanged.

use guard::{
    model::Event,
    rules::{Matcher, Severity},
};
use guard_tests::corpus;

const KEYS: [&str; 7] = [
    "desc",
    "condition",
    "output",
    "priority",
    "source",
    "tags",
    "enabled",
];

/// The `- rule:` block of an article, as loadable YAML.
fn extract_rule(article: &str) -> String {
    let mut out = String::new();
    let mut in_rule = false;
    let mut block = false;
    for line in article.lines() {
        let t = line.trim();
        if t.starts_with("- rule:") {
            in_rule = true;
            out.push_str(t);
            out.push('\n');
            continue;
        }
        if !in_rule {
            continue;
        }
        let key = KEYS.iter().find(|k| t.starts_with(&format!("{k}:")));
        match key {
            Some(k) => {
                let value = t[k.len() + 1..].trim();
                block = value == ">" || value == "|";
                let value = if !block && value.contains(": ") {
                    format!("'{}'", value.replace('\'', "''"))
                } else {
                    value.to_string()
                };
                out.push_str(&format!("  {k}: {value}\n"));
            }
            None if block && !t.is_empty() => out.push_str(&format!("    {t}\n")),
            None => break,
        }
    }
    out
}

fn seed(prefix: &str) -> String {
    let dir = corpus::seeds_dir();
    let entry = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no seed {prefix}*"));
    std::fs::read_to_string(entry.path()).expect("seed text")
}

fn event(line: &str) -> Event {
    Event::from_json_line(line).expect("event")
}

#[test]
fn seed_one_loads_with_documented_aliases() {
    let yaml = extract_rule(&seed("000_"));
    assert!(yaml.contains("container.runtime = 'docker'"), "{yaml}");
    let (engine, diags) = corpus::engine(&[], &[("seed1.yaml", &yaml)]);
    let rule = engine
        .rules
        .get("Detect shell spawned in container")
        .expect("loaded");
    assert_eq!(rule.priority.as_str(), "Critical");
    let warns: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.msg.clone())
        .collect();
    assert!(
        warns
            .iter()
            .any(|w| w.contains("container.runtime") && w.contains("container.type")),
        "{warns:?}"
    );
    assert!(
        warns
            .iter()
            .any(|w| w.starts_with("comm is not a Falco field") && w.contains("proc.name")),
        "{warns:?}"
    );
    // `or` binds looser than `and`, exactly as in Falco: any docker event matches, a cri event
    // needs an open by sh. evt.dir is always '<' (guard sees completed syscalls).
    let docker = r#"{"v":1,"time":1,"type":"execve","proc":{"pid":1,"name":"nginx"},"container":{"id":"c1","name":"web","type":"docker"}}"#;
    let cri_open = r#"{"v":1,"time":1,"type":"open","proc":{"pid":1,"name":"sh"},"fd":{"num":3,"name":"/x"},"container":{"id":"c2","name":"pod","type":"cri"}}"#;
    let cri_exec = r#"{"v":1,"time":1,"type":"execve","proc":{"pid":1,"name":"sh"},"container":{"id":"c2","name":"pod","type":"cri"}}"#;
    let mut m = Matcher::default();
    assert_eq!(engine.matches(&event(docker), &mut m).len(), 1);
    assert_eq!(engine.matches(&event(cri_open), &mut m).len(), 1);
    assert_eq!(engine.matches(&event(cri_exec), &mut m).len(), 0);
    let alert = engine.alerts(&event(cri_open), &mut m).remove(0);
    // The rule's message, then the container fields it lacks (Falco's append_output;
    // container.name is in the message already, the image is unknown).
    assert!(
        alert.output.ends_with(
            "Critical Shell spawned in container. Container name: pod container_id=c2 container_image=<NA>"
        ),
        "{}",
        alert.output
    );
}

#[test]
fn seed_two_loads_after_falco_rules() {
    let yaml = extract_rule(&seed("003_"));
    assert!(yaml.contains("proc.name in (shell_binaries)"), "{yaml}");
    // `shell_binaries` comes from Falco's ruleset, as in the article's /etc/falco setup.
    let (engine, _) = corpus::engine(
        &[corpus::falco_rules_path()],
        &[("falco_rules.local.yaml", &yaml)],
    );
    let rule = engine
        .rules
        .get("Terminal shell in container")
        .expect("loaded");
    assert_eq!(rule.priority.as_str(), "Warning");
    assert!(
        rule.condition.contains("trusted/admin-tools"),
        "the local file replaced Falco's rule"
    );
    let ev = |image: &str| {
        event(&format!(
            r#"{{"v":1,"time":1,"type":"execve","proc":{{"pid":1,"name":"sh","user":"root"}},"container":{{"id":"c1","name":"x","image":"{image}"}}}}"#
        ))
    };
    let mut m = Matcher::default();
    let names = |ev: &Event, m: &mut Matcher| -> Vec<String> {
        engine.alerts(ev, m).into_iter().map(|a| a.rule).collect()
    };
    assert!(names(&ev("nginx:1"), &mut m).contains(&"Terminal shell in container".to_string()));
    assert!(
        !names(&ev("trusted/admin-tools:2"), &mut m)
            .contains(&"Terminal shell in container".to_string())
    );
    let a = engine
        .alerts(&ev("nginx:1"), &mut m)
        .into_iter()
        .find(|a| a.rule == "Terminal shell in container")
        .expect("alert");
    assert!(a.output.contains("Unauthorized shell spawned (user=root container_id=c1 image=nginx shell=sh parent=<NA> cmdline=sh)"), "{}", a.output);
}
