//! `guard doctor`: prints the host checks of `crate::doctor`, each PASS/WARN/FAIL with its
//! fix hint. Exit code 1 when any check FAILs.

use std::process::ExitCode;

use anyhow::Result;

use crate::doctor::{Status, all_checks};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// CRI runtime socket to check (default: the first of /run/containerd/containerd.sock,
    /// /run/crio/crio.sock that exists, as `guard run` picks it).
    #[arg(long, value_name = "SOCKET")]
    pub cri_socket: Option<std::path::PathBuf>,
    /// Docker API socket to check: Docker's, or Podman's (`podman system service`). Default:
    /// the first of /var/run/docker.sock, /run/podman/podman.sock that exists.
    #[arg(long, value_name = "SOCKET")]
    pub docker_socket: Option<std::path::PathBuf>,
}

pub fn run(a: &DoctorArgs) -> Result<ExitCode> {
    let checks = all_checks(a.cri_socket.as_deref(), a.docker_socket.as_deref());
    let mut failed = false;
    for c in &checks {
        let tag = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => {
                failed = true;
                "FAIL"
            }
        };
        println!("{tag}  {:<12} {}", c.name, c.detail);
        if !c.hint.is_empty() {
            println!("      {:<12} hint: {}", "", c.hint);
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
