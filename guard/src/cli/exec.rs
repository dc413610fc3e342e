//! `guard exec --policy FILE [--name P] -- CMD`: runs CMD under a Landlock ruleset derived
//! from the policy's `enforce.open` and `enforce.exec` rules (`policy::landlock`).

use std::{os::unix::process::CommandExt, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use landlock::RulesetStatus;

use crate::policy::landlock::{ABI_WANTED, create_ruleset, ruleset_for};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file or directory (rules files with `- policy:` items).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Which policy of the file to apply (needed when it holds several).
    #[arg(long)]
    pub name: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<std::ffi::OsString>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (policies, diags) = crate::policy::load_policies(std::slice::from_ref(&args.policy));
    for d in diags.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    if diags.iter().any(|d| d.is_error()) {
        bail!("{} has errors", args.policy.display());
    }
    let policy = match (&args.name, policies.as_slice()) {
        (Some(n), ps) => ps
            .iter()
            .find(|p| &p.name == n)
            .with_context(|| format!("no policy named {n:?} in {}", args.policy.display()))?,
        (None, [one]) => one,
        (None, ps) => bail!(
            "{} holds {} policies; choose one with --name",
            args.policy.display(),
            ps.len()
        ),
    };
    if policy.exec.deny_new_binaries
        || !policy.connect.deny.is_empty()
        || policy.connect.allow.is_some()
    {
        eprintln!(
            "guard exec: note: Landlock covers enforce.open and enforce.exec lists only; deny_new_binaries and connect rules need the BPF LSM backend (guard run)"
        );
    }
    let (handled, grants) = ruleset_for(policy)?;
    let rs = create_ruleset(handled, &grants, ABI_WANTED)?;
    let status = rs
        .restrict_self()
        .context("enforcing the Landlock ruleset")?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => {}
        RulesetStatus::PartiallyEnforced => {
            eprintln!("guard exec: Landlock is only partially enforced on this kernel (older ABI)")
        }
        RulesetStatus::NotEnforced => {
            bail!("Landlock is not available on this kernel; refusing to run unconfined")
        }
    }
    eprintln!(
        "guard exec: policy '{}' applied with Landlock ({} rules)",
        policy.name,
        grants.len()
    );
    let (cmd, rest) = args.command.split_first().context("no command given")?;
    let err = std::process::Command::new(cmd).args(rest).exec();
    bail!("exec {}: {err}", cmd.to_string_lossy())
}
