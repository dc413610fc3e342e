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
    let only_cgroup = match &args.only_cgroup {
        Some(dir) => Some(cgroup_id_of(dir)?.0),
        None => None,
    };
    let mut probes = Probes::load(&ProbeConfig {
        ring_bytes: args.ring_bytes,
        only_cgroup,
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
    let mut reported = DropReport::default();
    let mut drop_tick =
        tokio::time::interval(std::time::Duration::from_secs(args.drop_report_secs.max(1)));
    'outer: loop {
        tokio::select! {
            _ = drop_tick.tick() => {
                let now = DropReport::read(&probes)?;
                if now != reported {
                    now.print(&mut stdout.lock())?;
                    reported = now;
                }
            }
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
    // Drain what is still buffered so the final report accounts for everything.
    {
        let rb = ring.get_mut();
        let mut out = stdout.lock();
        while let Some(item) = rb.next() {
            match events::decode(&item, &clock) {
                Ok(ev) => {
                    serde_json::to_writer(&mut out, &ev)?;
                    out.write_all(b"\n")?;
                    seen += 1;
                }
                Err(_) => {
                    DECODE_ERRORS.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    let last = DropReport::read(&probes)?;
    last.print(&mut stdout.lock())?;
    for (kind, n) in &last.by_kind {
        if *n > 0 {
            warn!(kind = kind.as_str(), dropped = n, "ring buffer was full; records lost");
        }
    }
    info!(
        events = seen,
        decode_errors = DECODE_ERRORS.load(Ordering::Relaxed),
        "guard stopping"
    );
    Ok(ExitCode::SUCCESS)
}

/// Kernel drop counters plus userspace decode failures, reported as a `drops` JSON line.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropReport {
    /// Records the kernel could not deliver (ring buffer full), by record kind.
    pub by_kind: std::collections::BTreeMap<String, u64>,
    /// Records received but malformed.
    pub decode_errors: u64,
}

impl DropReport {
    pub fn read(probes: &Probes) -> Result<Self> {
        Ok(Self {
            by_kind: probes
                .drops()?
                .into_iter()
                .map(|(k, n)| (k.name().to_owned(), n))
                .collect(),
            decode_errors: DECODE_ERRORS.load(Ordering::Relaxed),
        })
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum::<u64>() + self.decode_errors
    }

    fn print(&self, out: &mut impl Write) -> Result<()> {
        serde_json::to_writer(&mut *out, &serde_json::json!({"kind": "drops", "by_kind": self.by_kind, "decode_errors": self.decode_errors, "total": self.total()}))?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }
}
