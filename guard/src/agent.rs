//! `guard run`: load the probes, apply the exec deny set, and stream decoded events as JSON lines.

use std::{
    io::Write,
    os::unix::fs::MetadataExt,
    process::ExitCode,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context, Result};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracing::{info, warn};

use crate::{
    cli::RunArgs,
    events::{self, CgroupId, Clock},
    probes::{ExecEnforcement, ProbeConfig, Probes},
};

/// Records that failed to decode (malformed or unknown kind).
pub static DECODE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Policy id used for cgroups given with `--deny-exec-cgroup`.
const CLI_POLICY_ID: u32 = 1;

/// The cgroup id of a cgroup v2 directory is its inode number.
pub fn cgroup_id_of(dir: &std::path::Path) -> Result<CgroupId> {
    let md = std::fs::metadata(dir)
        .with_context(|| format!("cannot stat cgroup directory {}", dir.display()))?;
    anyhow::ensure!(md.is_dir(), "{} is not a directory", dir.display());
    Ok(CgroupId(md.ino()))
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> Result<ExitCode> {
    let mut probes = Probes::load(&ProbeConfig {
        ring_bytes: args.ring_bytes,
    })?;
    let backend = match &probes.exec_enforcement {
        ExecEnforcement::Lsm => "bpf-lsm",
        ExecEnforcement::Unavailable(_) => "none",
    };
    info!(
        mode = if args.detect_only {
            "detect-only"
        } else {
            "enforce"
        },
        exec_backend = backend,
        "guard starting"
    );

    for dir in &args.deny_exec_cgroup {
        let id = cgroup_id_of(dir)?;
        if args.detect_only {
            warn!(cgroup = %dir.display(), "detect-only: exec deny not applied");
            continue;
        }
        if !matches!(probes.exec_enforcement, ExecEnforcement::Lsm) {
            warn!(cgroup = %dir.display(), "no BPF LSM: exec deny cannot be enforced on this kernel");
        }
        probes
            .exec_deny_map()?
            .insert(id.0, CLI_POLICY_ID, 0)
            .with_context(|| format!("adding cgroup {} to the exec deny map", dir.display()))?;
        info!(cgroup = %dir.display(), cgroup_id = id.0, "exec denied in cgroup");
    }

    let ring = probes.ring_buf()?;
    // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd holds it.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    let clock = Clock::now();
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    // Tests and scripts wait for this line before generating activity.
    eprintln!("guard: ready");

    let stdout = std::io::stdout();
    let mut seen: u64 = 0;
    'outer: loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let rb = guard.get_inner_mut();
                let mut out = stdout.lock();
                while let Some(item) = rb.next() {
                    match events::decode(&item, &clock) {
                        Ok(ev) => {
                            serde_json::to_writer(&mut out, &ev)?;
                            out.write_all(b"\n")?;
                            seen += 1;
                        }
                        Err(e) => {
                            DECODE_ERRORS.fetch_add(1, Ordering::Relaxed);
                            warn!("skipping malformed record: {e}");
                        }
                    }
                    if args.max_events.is_some_and(|m| seen >= m) {
                        out.flush()?;
                        break 'outer;
                    }
                }
                out.flush()?;
                guard.clear_ready();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    for (kind, n) in probes.drops()? {
        if n > 0 {
            warn!(?kind, dropped = n, "ring buffer was full; records lost");
        }
    }
    info!(
        events = seen,
        decode_errors = DECODE_ERRORS.load(Ordering::Relaxed),
        "guard stopping"
    );
    Ok(ExitCode::SUCCESS)
}
