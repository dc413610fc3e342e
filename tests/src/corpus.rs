//! The rule corpus: `tests/corpus/cases.yaml` names each JSON-lines trace, the ruleset it runs
//! against, the rule it targets and what must happen.

use std::path::{Path, PathBuf};

use guard::{
    alert::Alert,
    cli::replay::replay,
    rules::{Diagnostic, Engine, Loader},
};
use serde::Deserialize;

/// Repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Falco's stable ruleset, read in place from the shared directory beside the repository.
pub fn falco_rules_path() -> PathBuf {
    repo_root().join("../shared/falco-rules/falco_rules.yaml")
}

pub fn policies_path() -> PathBuf {
    repo_root().join("policies")
}

pub fn seeds_dir() -> PathBuf {
    repo_root().join("../shared/seeds")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub trace: String,
    pub ruleset: String,
    pub rule: String,
    pub fires: bool,
    #[serde(default)]
    pub alerts: Option<Vec<String>>,
}

impl Case {
    pub fn path(&self) -> PathBuf {
        repo_root().join("tests/corpus").join(&self.trace)
    }
}

pub fn cases() -> Vec<Case> {
    let path = repo_root().join("tests/corpus/cases.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads the given files/dirs (then extra YAML snippets); panics on any error diagnostic.
pub fn engine(paths: &[PathBuf], extra: &[(&str, &str)]) -> (Engine, Vec<Diagnostic>) {
    let mut l = Loader::new();
    for p in paths {
        l.add_path(p);
    }
    for (name, text) in extra {
        l.add_str(name, text);
    }
    let (set, diags) = l.finish();
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "rules did not load:\n{}",
        errors.join("\n")
    );
    let engine = Engine::new(set, "corpus-host");
    engine.ctx.dns.store(corpus_dns());
    (engine, diags)
}

/// The corpus host's resolver (`fd.*ip.name`): the Kubernetes API service name at its usual
/// cluster IP, nothing else.
pub fn corpus_dns() -> guard::rules::fields::dns::DnsNames {
    guard::rules::fields::dns::DnsNames::new([(
        "kubernetes.default.svc.cluster.local".into(),
        vec![std::net::IpAddr::from([10, 96, 0, 1])],
    )])
}

/// Replays a trace file and returns the alerts.
pub fn run_trace(engine: &Engine, path: &Path) -> Vec<Alert> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    replay(engine, std::io::BufReader::new(f), |a| out.push(a))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

pub fn rule_names(alerts: &[Alert]) -> Vec<String> {
    alerts.iter().map(|a| a.rule.clone()).collect()
}
