//! `guard run` and `guard record`: the agent (`crate::agent`) on its async runtime.

use std::process::ExitCode;

use anyhow::Result;

use crate::config::{RecordArgs, RunArgs};

pub fn run(args: RunArgs) -> Result<ExitCode> {
    crate::agent::runtime()?.block_on(crate::agent::run(args))
}

pub fn record(args: RecordArgs) -> Result<ExitCode> {
    crate::agent::runtime()?.block_on(crate::agent::record(args))
}
