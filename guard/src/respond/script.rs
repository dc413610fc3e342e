//! `exec`: run a response script with the alert JSON on stdin, under a Landlock ruleset
//! (whole filesystem read-only and executable; writes only below `allow_write` directories)
//! and with every capability dropped, killed at its timeout.
//!
//! Landlock domains, `no_new_privs` and capability sets belong to a thread and are inherited
//! by the processes it starts. So the sandbox is built on a fresh thread that restricts
//! itself and then spawns the script; guard's other threads keep their privileges, and
//! nothing runs between fork and exec except the standard library's spawn.

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use caps::CapSet;
use landlock::{
    ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};

/// Bytes of stdout and of stderr kept for the audit record.
pub const OUTPUT_KEEP: usize = 2048;

#[derive(Debug, Clone)]
pub struct ScriptSpec {
    pub script: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
    pub allow_write: Vec<PathBuf>,
    pub stdin: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    /// Exit code; `None` when killed by a signal (incl. the timeout).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// `fully` or `partially` (older kernel ABI).
    pub landlock: String,
}

impl ScriptResult {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// One line for the audit record.
    pub fn summary(&self) -> String {
        let status = match (self.timed_out, self.code) {
            (true, _) => "killed at timeout".to_string(),
            (false, Some(c)) => format!("exit {c}"),
            (false, None) => "killed by a signal".to_string(),
        };
        let mut s = format!("{status}; landlock {}", self.landlock);
        if !self.stderr.trim().is_empty() {
            s.push_str("; stderr: ");
            s.push_str(self.stderr.trim());
        }
        s
    }
}

/// Runs the script (blocking; call from `spawn_blocking`).
pub fn run(spec: ScriptSpec) -> Result<ScriptResult, String> {
    std::thread::Builder::new()
        .name("guard-script".into())
        .spawn(move || sandboxed(spec))
        .map_err(|e| format!("spawn sandbox thread: {e}"))?
        .join()
        .map_err(|_| "sandbox thread panicked".to_string())?
}

fn drop_capabilities() -> Result<(), String> {
    // Bounding set first (needs CAP_SETPCAP), so that exec as uid 0 cannot regain anything;
    // then ambient, inheritable, and this thread's own sets. `guard run` drops CAP_SETPCAP
    // after start (docs/hardening.md): then the bounding set stays as the agent left it, and
    // `no_new_privs` (set by `landlock_self`, which runs first) keeps the exec from gaining
    // any capability the (cleared) permitted set does not hold.
    if caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false) {
        caps::clear(None, CapSet::Bounding)
            .map_err(|e| format!("drop Bounding capabilities: {e}"))?;
    }
    for set in [CapSet::Ambient, CapSet::Inheritable] {
        caps::clear(None, set).map_err(|e| format!("drop {set:?} capabilities: {e}"))?;
    }
    for set in [CapSet::Effective, CapSet::Permitted] {
        caps::clear(None, set).map_err(|e| format!("drop {set:?} capabilities: {e}"))?;
    }
    Ok(())
}

fn landlock_self(allow_write: &[PathBuf]) -> Result<String, String> {
    let abi = ABI::V5;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(allow_write, AccessFs::from_all(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(["/dev/null"], AccessFs::from_file(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok("fully enforced".into()),
        RulesetStatus::PartiallyEnforced => Ok("partially enforced (older Landlock ABI)".into()),
        RulesetStatus::NotEnforced => Err(
            "Landlock is not available on this kernel: refusing to run the script unsandboxed"
                .into(),
        ),
    }
}

fn read_capped(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = OUTPUT_KEEP.saturating_sub(keep.len());
                    keep.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        String::from_utf8_lossy(&keep).into_owned()
    })
}

fn sandboxed(spec: ScriptSpec) -> Result<ScriptResult, String> {
    let landlock = landlock_self(&spec.allow_write)?;
    drop_capabilities()?;
    let mut child = Command::new(&spec.script)
        .args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .current_dir("/")
        .spawn()
        .map_err(|e| format!("starting {}: {e}", spec.script.display()))?;
    let out = child.stdout.take().map(read_capped);
    let err = child.stderr.take().map(read_capped);
    if let Some(mut stdin) = child.stdin.take() {
        // A script that does not read stdin gets EPIPE here; that is its business.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&spec.stdin);
        });
    }
    let deadline = Instant::now() + spec.timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                // Our own unreaped child: the pid cannot have been reused.
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for the script: {e}")),
        }
    };
    // Readers end when every holder of the pipes has exited; a background process the
    // script left behind could hold them, so do not wait for them past a short grace.
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| {
            let t = Instant::now();
            while !h.is_finished() && t.elapsed() < Duration::from_millis(500) {
                std::thread::sleep(Duration::from_millis(5));
            }
            h.is_finished().then(|| h.join().ok()).flatten()
        })
        .unwrap_or_default()
    };
    Ok(ScriptResult {
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout: join(out),
        stderr: join(err),
        landlock,
    })
}
