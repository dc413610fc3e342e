//! Offline subcommands of the CLI, one module each. They need no root and no kernel.

pub mod replay;
pub mod rules_list;
pub mod validate;

use std::path::{Path, PathBuf};

use crate::rules::{Diagnostic, Engine, Loader};

/// `guard rules ...`
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// List the loaded rules with priority, status and source location.
    List(rules_list::Args),
}

/// Where rules come from when no `--rules` is given: `$GUARD_RULES` (colon-separated), else
/// `./policies` or `/etc/guard/policies`, plus Falco's `/etc/falco/falco_rules.yaml` (loaded
/// first, so that guard's files may refine it) when it exists.
pub fn default_rule_paths() -> Vec<PathBuf> {
    if let Some(env) = std::env::var_os("GUARD_RULES") {
        return std::env::split_paths(&env).collect();
    }
    let mut out = Vec::new();
    let falco = Path::new("/etc/falco/falco_rules.yaml");
    if falco.is_file() {
        out.push(falco.to_path_buf());
    }
    for p in ["policies", "/etc/guard/policies"] {
        if Path::new(p).is_dir() {
            out.push(PathBuf::from(p));
            break;
        }
    }
    out
}

/// Loads rules from `paths` (or the defaults); prints diagnostics to stderr.
/// Errors are fatal here: running with a partly loaded rule set would hide detections.
pub fn load_engine(paths: &[PathBuf], hostname: Option<String>) -> anyhow::Result<Engine> {
    load_engine_and_policies(paths, hostname).map(|(e, _)| e)
}

/// [`load_engine`], also returning the `- policy:` items found in the same files.
pub fn load_engine_and_policies(
    paths: &[PathBuf],
    hostname: Option<String>,
) -> anyhow::Result<(Engine, Vec<crate::policy::Policy>)> {
    let paths = if paths.is_empty() {
        default_rule_paths()
    } else {
        paths.to_vec()
    };
    if paths.is_empty() {
        anyhow::bail!(
            "no rules: pass --rules PATH, set GUARD_RULES, or run from a directory with policies/"
        );
    }
    let mut loader = Loader::new();
    let sink = crate::policy::register(&mut loader);
    for p in &paths {
        loader.add_path(p);
    }
    let (set, diags) = loader.finish();
    let errors = report(&diags, false);
    if errors > 0 {
        anyhow::bail!("{errors} error(s) in rules files; run `guard validate` for details");
    }
    let hostname = hostname.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    });
    let policies = sink.lock().map(|v| v.clone()).unwrap_or_default();
    Ok((Engine::new(set, hostname), policies))
}

/// Prints diagnostics to stderr (warnings only if `warnings`); returns the error count.
fn report(diags: &[Diagnostic], warnings: bool) -> usize {
    let mut errors = 0;
    for d in diags {
        if d.is_error() {
            errors += 1;
        }
        if d.is_error() || warnings {
            eprintln!("{d}");
        }
    }
    errors
}
