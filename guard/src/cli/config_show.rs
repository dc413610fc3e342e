//! `guard config show`: the effective configuration of `guard run` as YAML, each value's
//! source as a comment (`crate::config`).

use std::{io::Write, process::ExitCode};

use super::Parsed;
use crate::config::RunArgs;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (YAML; each value's source as a comment):
    /// `guard config show [--config PATH] [run flags...]`.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

/// `guard config show`.
pub fn show(p: &Parsed) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(crate::config::render(p).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
