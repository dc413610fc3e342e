//! `guard quarantine lift|list`: the network quarantines responses put in place.
//!
//! Exit codes: 0 success; 1 error, or the cgroup was not in quarantine; 2 usage.

use std::{os::unix::fs::MetadataExt, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::respond::runtime;
use crate::respond::{
    self,
    container::cgroup_v2_dir,
    quarantine::{PIN_DIR, Quarantine},
};

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Lift the network quarantine of a container (name, id or id prefix).
    Lift(LiftArgs),
    /// List the cgroups in quarantine.
    List,
}

#[derive(Debug, Args)]
pub struct LiftArgs {
    /// Container name, full id, or an id prefix of at least 12 hex digits.
    pub container: Option<String>,
    /// Lift by cgroup v2 id instead (as `guard quarantine list` shows).
    #[arg(long, conflicts_with = "container")]
    pub cgroup_id: Option<u64>,
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
}

/// The cgroup v2 id of a container given by name, id or id prefix.
async fn container_cgroup_id(container: &str, socket: &std::path::Path) -> Result<u64> {
    let dir = match cgroup_v2_dir(container) {
        Some(d) => d,
        None => {
            // A name: ask Docker for the id.
            let docker = bollard::Docker::connect_with_unix(
                &socket.to_string_lossy(),
                5,
                bollard::API_DEFAULT_VERSION,
            )?
            .negotiate_version()
            .await
            .context("docker daemon unreachable: give the container id, or --cgroup-id")?;
            let info = docker
                .inspect_container(
                    container,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .with_context(|| format!("no container {container:?}"))?;
            let id = info.id.context("docker returned no container id")?;
            cgroup_v2_dir(&id)
                .with_context(|| format!("no cgroup v2 directory for container {id}"))?
        }
    };
    Ok(std::fs::metadata(&dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .ino())
}

pub fn quarantine(cmd: QuarantineCommand) -> Result<ExitCode> {
    let pin = PathBuf::from(PIN_DIR);
    match cmd {
        QuarantineCommand::List => {
            if !pin.join(respond::quarantine::MAP_PIN).exists() {
                eprintln!("guard: nothing quarantined (no pinned quarantine map)");
                return Ok(ExitCode::SUCCESS);
            }
            let mut q = Quarantine::open_pinned(&pin)?;
            for (cg, until) in q.list()? {
                let until = if until == 0 {
                    "until lifted".to_string()
                } else {
                    let left = until.saturating_sub(respond::process::boot_ns_now());
                    format!("{} s left", left / 1_000_000_000)
                };
                println!("{cg}\t{until}");
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Lift(a) => {
            let cg = match (a.cgroup_id, &a.container) {
                (Some(id), _) => id,
                (None, Some(c)) => runtime()?.block_on(container_cgroup_id(c, &a.docker_socket))?,
                (None, None) => bail!("give a container or --cgroup-id"),
            };
            let mut q = Quarantine::open_pinned(&pin)
                .context("no quarantine state pinned (nothing was ever quarantined?)")?;
            if q.remove(cg)? {
                eprintln!("guard: quarantine lifted (cgroup {cg})");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("guard: cgroup {cg} was not in quarantine");
                Ok(ExitCode::from(1))
            }
        }
    }
}
