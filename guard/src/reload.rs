//! Configuration loading for `guard run`, at start and on reload (SIGHUP, or a change of the
//! files seen by inotify). A reload reads and validates everything first; only a complete,
//! valid set replaces the one in force (the swap itself is the agent's `apply_config`).

use std::{
    os::fd::{AsFd, AsRawFd, RawFd},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::{debug, warn};

use crate::{
    audit::record::FileHash,
    policy::Policy,
    respond::config::ResponseSet,
    rules::{Engine, Loader},
};

/// Where the configuration comes from (paths already resolved from flags and defaults).
#[derive(Debug, Clone)]
pub struct Sources {
    /// Rules files or directories (which may also hold `- policy:` items).
    pub rules: Vec<PathBuf>,
    /// Policy files or directories (`--policy`).
    pub policies: Vec<PathBuf>,
    /// The response configuration, if any.
    pub responses: Option<PathBuf>,
    pub hostname: String,
    /// `--no-container-fields`: alerts do not get the container fields appended.
    pub no_container_fields: bool,
}

/// A complete, valid configuration.
pub struct Config {
    pub engine: Engine,
    pub policies: Vec<Policy>,
    pub responses: Option<ResponseSet>,
    /// SHA-256 of every rules and policy file read, for the audit log.
    pub files: Vec<FileHash>,
    /// Digest over every file read (rules, policies, responses): equal digests, same input.
    pub digest: String,
}

/// Every error found, one `file:line:col: error: message` text each.
#[derive(Debug)]
pub struct Invalid(pub Vec<String>);

impl Sources {
    /// Reads and validates rules, policies and responses; every error is collected.
    /// Warnings go to the log.
    pub fn load(&self) -> Result<Config, Invalid> {
        let mut errors = Vec::new();
        let mut note = |d: &crate::rules::Diagnostic| {
            if d.is_error() {
                errors.push(d.to_string());
            } else {
                warn!("{d}");
            }
        };
        if self.rules.is_empty() {
            return Err(Invalid(vec![
                "no rules: pass --rules PATH, set GUARD_RULES, or run from a directory with policies/"
                    .into(),
            ]));
        }
        let mut loader = Loader::new();
        let sink = crate::policy::register(&mut loader);
        for p in &self.rules {
            loader.add_path(p);
        }
        let (set, diags) = loader.finish();
        diags.iter().for_each(&mut note);
        let mut policies = sink.lock().map(|v| v.clone()).unwrap_or_default();
        if !self.policies.is_empty() {
            let (more, diags) = crate::policy::load_policies(&self.policies);
            diags.iter().for_each(&mut note);
            for p in more {
                if let Some(prev) = policies.iter().find(|q| q.name == p.name) {
                    errors.push(format!(
                        "{}:{}:{}: error: policy '{}' is defined twice (first at {}:{})",
                        p.file, p.pos.line, p.pos.col, p.name, prev.file, prev.pos.line
                    ));
                    continue;
                }
                policies.push(p);
            }
        }
        for d in crate::policy::overlap_warnings(&policies) {
            warn!("{d}");
        }
        let responses = match &self.responses {
            None => None,
            Some(path) => match crate::respond::config::load(path) {
                Ok(set) => Some(set),
                Err(diags) => {
                    errors.extend(diags.iter().map(|d| d.to_string()));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(Invalid(errors));
        }
        let mut paths = self.rules.clone();
        paths.extend(self.policies.iter().cloned());
        let files = hash_files(&paths);
        let mut all = files
            .iter()
            .map(|f| format!("{} {}\n", f.sha256, f.path))
            .collect::<String>();
        if let Some(r) = &responses {
            for (p, h) in &r.files {
                all.push_str(&format!("{h} {}\n", p.display()));
            }
        }
        let mut engine = Engine::new(set, self.hostname.clone());
        engine.ctx.no_container_fields = self.no_container_fields;
        Ok(Config {
            engine,
            policies,
            responses,
            files,
            digest: crate::audit::sha256_hex(all.as_bytes()),
        })
    }

    /// Directories to watch: each directory given, and the directory of each file given
    /// (editors and ConfigMap updates replace files by renaming into the directory).
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let all = self
            .rules
            .iter()
            .chain(&self.policies)
            .chain(self.responses.iter());
        for p in all {
            let d = if p.is_dir() {
                p.clone()
            } else {
                match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                }
            };
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }
}

/// Where rules come from when no `--rules` is given: `$GUARD_RULES` (colon-separated), else
/// `./policies` or `/etc/guard/policies`, plus Falco's `/etc/falco/falco_rules.yaml` (loaded
/// first, so that guard's files may refine it) when it exists.
pub fn default_rule_paths() -> Vec<PathBuf> {
    if let Some(env) = std::env::var_os("GUARD_RULES") {
        return std::env::split_paths(&env).collect();
    }
    let mut out = Vec::new();
    let falco = Path::new("/etc/falco/falco_rules.yaml");
    if falco.is_file() {
        out.push(falco.to_path_buf());
    }
    for p in ["policies", "/etc/guard/policies"] {
        if Path::new(p).is_dir() {
            out.push(PathBuf::from(p));
            break;
        }
    }
    out
}

/// Expands directories to their YAML files, in name order.
pub fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// SHA-256 of every rules file given (directories expanded as `guard validate` does).
pub fn hash_files(paths: &[PathBuf]) -> Vec<FileHash> {
    expand(paths)
        .into_iter()
        .map(|f| FileHash {
            sha256: std::fs::read(&f)
                .map(|b| crate::audit::sha256_hex(&b))
                .unwrap_or_else(|e| format!("unreadable: {e}")),
            path: f.display().to_string(),
        })
        .collect()
}

/// Changes settle for this long before a reload is asked for: an editor's save or a
/// `cp -r` is several events.
const SETTLE: Duration = Duration::from_millis(300);

/// Watches `dirs` with inotify; each burst of changes becomes one message on the returned
/// channel. Must run inside the tokio runtime.
pub fn watch(dirs: &[PathBuf]) -> Result<mpsc::Receiver<()>> {
    let ino =
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).context("inotify_init")?;
    let mask = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB;
    for d in dirs {
        ino.add_watch(d.as_path(), mask)
            .with_context(|| format!("watching {} for changes", d.display()))?;
        debug!(dir = %d.display(), "watching for configuration changes");
    }
    // SAFETY: the AsyncFd owns the Inotify, which keeps the descriptor open while registered.
    let fd = unsafe { AsyncFd::register_with_interest(Watch(ino), tokio::io::Interest::READABLE) }
        .context("polling inotify")?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            match fd.readable().await {
                Ok(mut g) => g.clear_ready(),
                Err(e) => {
                    warn!("configuration watch stopped: {e}");
                    return;
                }
            }
            if !drain(&fd.get_ref().0) {
                continue;
            }
            // Let the burst finish, then swallow what it left.
            tokio::time::sleep(SETTLE).await;
            drain(&fd.get_ref().0);
            // A reload already queued covers this change too.
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                return;
            }
        }
    });
    Ok(rx)
}

struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Reads every pending inotify event; true if there was one.
fn drain(ino: &Inotify) -> bool {
    let mut any = false;
    while let Ok(evs) = ino.read_events() {
        if evs.is_empty() {
            break;
        }
        any = true;
    }
    any
}

/// The watched directories, for messages.
pub fn describe(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("guard-reload-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    const RULE: &str = "- rule: Shell\n  desc: d\n  condition: evt.type = execve and proc.name = sh\n  output: shell %proc.name\n  priority: WARNING\n";

    fn sources(dir: &std::path::Path) -> Sources {
        Sources {
            rules: vec![dir.to_path_buf()],
            policies: Vec::new(),
            responses: None,
            hostname: "h".into(),
            no_container_fields: false,
        }
    }

    #[test]
    fn a_broken_file_is_reported_with_its_position_and_nothing_loads() {
        let d = tmp("broken");
        std::fs::write(d.join("a.yaml"), RULE).expect("write");
        let ok = sources(&d).load().expect("valid set loads");
        assert_eq!(ok.engine.rules.rules.len(), 1);
        std::fs::write(
            d.join("b.yaml"),
            "- rule: Bad\n  desc: d\n  condition: proc.nme = sh\n  output: x\n  priority: WARNING\n",
        )
        .expect("write");
        let Err(Invalid(errors)) = sources(&d).load() else {
            panic!("a broken file was accepted");
        };
        let b = d.join("b.yaml");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("{}:3:", b.display())) && e.contains("proc.nme")),
            "{errors:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_digest_follows_file_contents() {
        let d = tmp("digest");
        std::fs::write(d.join("a.yaml"), RULE).expect("write");
        let a = sources(&d).load().expect("load").digest;
        let again = sources(&d).load().expect("load").digest;
        assert_eq!(a, again, "same files, same digest");
        std::fs::write(d.join("a.yaml"), RULE.replace("WARNING", "ERROR")).expect("write");
        let b = sources(&d).load().expect("load").digest;
        assert_ne!(a, b, "an edit changes the digest");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_policy_defined_twice_is_an_error_naming_both_places() {
        let d = tmp("twice");
        std::fs::write(d.join("a.yaml"), RULE).expect("write");
        let pol = "- policy: web\n  workload: {name: web}\n  mode: enforce\n  enforce:\n    exec:\n      deny: [/bin/sh]\n";
        let p1 = d.join("p1.yml");
        std::fs::write(&p1, pol).expect("write");
        let extra = tmp("twice-extra");
        let p2 = extra.join("p2.yaml");
        std::fs::write(&p2, pol).expect("write");
        let mut s = sources(&d);
        s.policies = vec![p2.clone()];
        let Err(Invalid(errors)) = s.load() else {
            panic!("duplicate policy accepted");
        };
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("{}:1:", p2.display()))
                    && e.contains(&format!("first at {}:1", p1.display()))),
            "{errors:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&extra);
    }

    #[tokio::test]
    async fn a_change_in_a_watched_directory_asks_for_one_reload() {
        let d = tmp("watch");
        let mut rx = watch(std::slice::from_ref(&d)).expect("watch");
        for i in 0..5 {
            std::fs::write(d.join(format!("{i}.yaml")), RULE).expect("write");
        }
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no reload asked within 5 s")
            .expect("channel open");
        // The burst was one reload: nothing else is queued once it settled.
        tokio::time::sleep(SETTLE * 2).await;
        assert!(rx.try_recv().is_err(), "one burst, several reloads");
        std::fs::rename(d.join("0.yaml"), d.join("0.yml")).expect("rename");
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a rename asked for no reload")
            .expect("channel open");
        let _ = std::fs::remove_dir_all(&d);
    }
}
