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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut l = loader();
    for p in &args.paths {
        l.add_path(p);
    }
    let defs = l.definitions();
    let (macros, lists) = (defs.macros.len(), defs.lists.len());
    let (set, diags) = l.finish();
    let mut errors = 0;
    for d in &diags {
        if d.is_error() {
            errors += 1;
        }
        println!("{d}");
    }
    let count = |s: fn(&RuleStatus) -> bool| set.rules.iter().filter(|r| s(&r.status)).count();
    eprintln!(
        "{} rules ({} active, {} disabled, {} skipped, {} invalid), {macros} macros, {lists} lists; {errors} error(s), {} warning(s)",
        set.rules.len(),
        count(|s| *s == RuleStatus::Active),
        count(|s| *s == RuleStatus::Disabled),
        count(|s| matches!(s, RuleStatus::Skipped(_))),
        count(|s| *s == RuleStatus::Invalid),
        diags.len() - errors,
    );
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
