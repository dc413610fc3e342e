//! `guard validate PATH…`: loads every file together (in the order given, as the agent would),
//! prints every problem, and exits non-zero if any is an error.
//!
//! Item kinds other than Falco's (`- policy:`, `- response:`) are validated by handlers that
//! their modules register on the [`Loader`] in [`loader`].

use std::{path::PathBuf, process::ExitCode};

use crate::rules::{Loader, RuleStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rules files or directories (every *.yaml / *.yml inside, in name order).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// The loader `validate` uses; the place to register further item kinds.
pub fn loader() -> Loader {
    Loader::new()
}

/// Response files (`- response:` / `- settings:` items) have their own loader.
fn is_response_file(path: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with("- "))
        .is_some_and(|l| l.starts_with("- response:") || l.starts_with("- settings:"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut l = loader();
    let policies = crate::policy::register(&mut l);
    let mut response_errors = 0;
    let mut rule_files = 0;
    for p in crate::reload::expand(&args.paths) {
        if is_response_file(&p) {
            let diags = crate::respond::config::validate_responses(&p);
            // Every response diagnostic is an error.
            response_errors += diags.len();
            for d in &diags {
                println!("{d}");
            }
            eprintln!(
                "{}: response configuration, {} problem(s)",
                p.display(),
                diags.len()
            );
        } else {
            rule_files += 1;
            l.add_path(&p);
        }
    }
    if rule_files == 0 {
        return Ok(if response_errors > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let defs = l.definitions();
    let (macros, lists) = (defs.macros.len(), defs.lists.len());
    let (set, mut diags) = l.finish();
    let policies = policies.lock().map(|v| v.clone()).unwrap_or_default();
    diags.extend(crate::policy::overlap_warnings(&policies));
    let mut errors = response_errors;
    for d in &diags {
        if d.is_error() {
            errors += 1;
        }
        println!("{d}");
    }
    let count = |s: fn(&RuleStatus) -> bool| set.rules.iter().filter(|r| s(&r.status)).count();
    // Rules that are evaluated without some of their checks, named with the fields they miss.
    let partial: Vec<_> = set
        .rules
        .iter()
        .filter(|r| r.status_label() == "partial")
        .collect();
    for r in &partial {
        eprintln!(
            "partial: rule '{}' uses fields guard cannot provide: {}",
            r.name,
            r.unavailable.join(", ")
        );
    }
    eprintln!(
        "{} rules ({} active, {} partial, {} disabled, {} skipped, {} invalid), {macros} macros, {lists} lists, {} policies; {errors} error(s), {} warning(s)",
        set.rules.len(),
        count(|s| *s == RuleStatus::Active) - partial.len(),
        partial.len(),
        count(|s| *s == RuleStatus::Disabled),
        count(|s| matches!(s, RuleStatus::Skipped(_))),
        count(|s| *s == RuleStatus::Invalid),
        policies.len(),
        diags.len() + response_errors - errors,
    );
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
