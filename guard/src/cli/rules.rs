//! `guard rules list`: the loaded rules, as a table or JSON.

use std::{path::PathBuf, process::ExitCode};

use serde::Serialize;

use crate::rules::RuleStatus;

/// `guard rules ...`
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// List the loaded rules with priority, status and source location.
    List(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rules files or directories; default: see `guard replay --help`.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// One JSON array on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    priority: &'a str,
    /// The same word the table shows.
    status: &'static str,
    /// Why a skipped rule is not evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_reason: Option<&'a str>,
    source: &'a str,
    tags: &'a [String],
    desc: &'a str,
    file: &'a str,
    line: u32,
    unavailable_fields: &'a [&'static str],
    condition: &'a str,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(&args.rules, None)?;
    let rows: Vec<Row> = engine
        .rules
        .rules
        .iter()
        .map(|r| Row {
            name: &r.name,
            priority: r.priority.as_str(),
            status: r.status_label(),
            skip_reason: match &r.status {
                RuleStatus::Skipped(why) => Some(why),
                _ => None,
            },
            source: &r.source,
            tags: &r.tags,
            desc: &r.desc,
            file: &r.file,
            line: r.pos.line,
            unavailable_fields: &r.unavailable,
            condition: &r.condition,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!("{:w$}  {:13}  {:9}  LOCATION", "RULE", "PRIORITY", "STATUS");
    for r in &rows {
        println!(
            "{:w$}  {:13}  {:9}  {}:{}",
            r.name, r.priority, r.status, r.file, r.line
        );
    }
    eprintln!(
        "{} rules; 'partial' = uses fields guard cannot provide (checks on them are false)",
        rows.len()
    );
    Ok(ExitCode::SUCCESS)
}
