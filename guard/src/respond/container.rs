//! Container actions through the Docker API (bollard), and the cgroup freezer for pause when
//! the daemon cannot be reached.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bollard::{
    Docker,
    query_parameters::{KillContainerOptionsBuilder, StopContainerOptionsBuilder},
};
use tokio::sync::Mutex;

/// How the container was paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseMethod {
    Docker,
    /// `cgroup.freeze` in the container's cgroup v2 directory.
    FreezerV2(PathBuf),
    /// `freezer.state` in the container's cgroup v1 freezer directory.
    FreezerV1(PathBuf),
}

impl std::fmt::Display for PauseMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PauseMethod::Docker => f.write_str("docker pause"),
            PauseMethod::FreezerV2(p) => write!(f, "cgroup v2 freezer {}", p.display()),
            PauseMethod::FreezerV1(p) => write!(f, "cgroup v1 freezer {}", p.display()),
        }
    }
}

/// A Docker client on a unix socket, connected (and version-negotiated) on first use.
pub struct ContainerControl {
    socket: PathBuf,
    timeout: Duration,
    client: Mutex<Option<Docker>>,
    /// Where cgroup filesystems are mounted (`/sys/fs/cgroup`); tests may point elsewhere.
    pub cgroup_root: PathBuf,
}

/// The daemon answered, or it could not be reached at all.
#[derive(Debug)]
pub enum DockerError {
    /// Not reachable (connection refused, no socket, timeout): fallbacks may apply.
    Unreachable(String),
    /// The daemon refused (404 no such container, 409 not running, ...).
    Api(u16, String),
}

impl std::fmt::Display for DockerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerError::Unreachable(e) => write!(f, "docker daemon unreachable: {e}"),
            DockerError::Api(code, m) => write!(f, "docker: HTTP {code}: {}", m.trim()),
        }
    }
}

fn classify(e: bollard::errors::Error) -> DockerError {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Api(status_code, message),
        other => DockerError::Unreachable(other.to_string()),
    }
}

impl ContainerControl {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self {
            socket,
            timeout,
            client: Mutex::new(None),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }

    async fn client(&self) -> Result<Docker, DockerError> {
        let mut g = self.client.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let d = Docker::connect_with_unix(
            &self.socket.to_string_lossy(),
            self.timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(classify)?;
        let d = tokio::time::timeout(self.timeout, d.negotiate_version())
            .await
            .map_err(|_| DockerError::Unreachable("no answer to /version".into()))?
            .map_err(classify)?;
        *g = Some(d.clone());
        Ok(d)
    }

    async fn call<F, Fut>(&self, extra: Duration, f: F) -> Result<(), DockerError>
    where
        F: FnOnce(Docker) -> Fut,
        Fut: std::future::Future<Output = Result<(), bollard::errors::Error>>,
    {
        let d = self.client().await?;
        let r = tokio::time::timeout(self.timeout + extra, f(d))
            .await
            .map_err(|_| DockerError::Unreachable("request timed out".into()))?
            .map_err(classify);
        if matches!(r, Err(DockerError::Unreachable(_))) {
            // Reconnect next time (the daemon may have restarted on a new API version).
            *self.client.lock().await = None;
        }
        r
    }

    /// `docker kill -s KILL` through the API.
    pub async fn docker_kill(&self, id: &str) -> Result<(), DockerError> {
        let opts = KillContainerOptionsBuilder::new().signal("KILL").build();
        self.call(Duration::ZERO, |d| async move {
            d.kill_container(id, Some(opts)).await
        })
        .await
    }

    /// Kills every process of the container: first in the kernel, by writing `1` to
    /// `cgroup.kill` of its cgroup v2 directory (Linux 5.14+; immediate, and independent of
    /// the daemon), then through Docker so that the daemon records the kill. Succeeds when
    /// either worked; the text says how.
    pub async fn kill(&self, id: &str) -> Result<String, String> {
        let fast = cgroup_kill(id);
        let docker = self.docker_kill(id).await;
        match (fast, docker) {
            (Ok(dir), Ok(())) => Ok(format!("cgroup.kill ({}) and docker kill", dir.display())),
            (Ok(dir), Err(e)) => Ok(format!(
                "cgroup.kill ({}); docker kill afterwards: {e}",
                dir.display()
            )),
            (Err(_), Ok(())) => Ok("docker kill".into()),
            (Err(f), Err(e)) => Err(format!("{e}; cgroup.kill: {f}")),
        }
    }

    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let opts = StopContainerOptionsBuilder::new().t(t).build();
        self.call(
            grace,
            |d| async move { d.stop_container(id, Some(opts)).await },
        )
        .await
    }

    /// `docker pause`; when the daemon is unreachable, freezes the container's cgroup.
    pub async fn pause(&self, id: &str) -> Result<PauseMethod, String> {
        match self
            .call(
                Duration::ZERO,
                |d| async move { d.pause_container(id).await },
            )
            .await
        {
            Ok(()) => Ok(PauseMethod::Docker),
            Err(DockerError::Api(code, m)) => Err(DockerError::Api(code, m).to_string()),
            Err(DockerError::Unreachable(why)) => {
                freeze(&self.cgroup_root, id).await.map_err(|e| {
                    format!("docker daemon unreachable ({why}); freezer fallback failed: {e}")
                })
            }
        }
    }
}

/// Writes `1` to `cgroup.kill` of the container's cgroup v2 directory.
pub fn cgroup_kill(id: &str) -> Result<PathBuf, String> {
    let dir = cgroup_v2_dir(id).ok_or_else(|| format!("no unique cgroup v2 directory for {id}"))?;
    std::fs::write(dir.join("cgroup.kill"), b"1")
        .map_err(|e| format!("write {}/cgroup.kill: {e}", dir.display()))?;
    Ok(dir)
}

/// Candidate cgroup directories of a container (full id, or a unique prefix of at least 12
/// hex digits as Falco's `container.id` gives), for the docker, systemd and cri layouts.
pub fn container_cgroup_dirs(base: &Path, id: &str) -> Vec<PathBuf> {
    if id.len() < 12 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Vec::new();
    }
    let id = id.to_ascii_lowercase();
    let mut out = Vec::new();
    for parent in ["docker", "system.slice"] {
        let dir = base.join(parent);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten().take(100_000) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let bare = name
                .strip_prefix("docker-")
                .and_then(|n| n.strip_suffix(".scope"))
                .unwrap_or(name);
            if bare.len() == 64 && bare.starts_with(&id) {
                out.push(e.path());
            }
        }
    }
    out
}

/// The container's cgroup v2 directory under the cgroup2 mount.
pub fn cgroup_v2_dir(id: &str) -> Option<PathBuf> {
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|m| crate::state::procfs::parse_cgroup2_mount(&m))?;
    let mut dirs = container_cgroup_dirs(&mount.mount_point, id);
    (dirs.len() == 1).then(|| dirs.remove(0))
}

async fn wait_file(path: &Path, want: impl Fn(&str) -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = tokio::fs::read_to_string(path).await
            && want(&s)
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Freezes the container's cgroup: v2 `cgroup.freeze` where the container has a v2 directory
/// with one, else the v1 freezer. Waits (bounded) until the kernel reports it frozen.
pub async fn freeze(cgroup_root: &Path, id: &str) -> Result<PauseMethod, String> {
    let unified = [cgroup_root.join("unified"), cgroup_root.to_path_buf()];
    for base in &unified {
        let dirs = container_cgroup_dirs(base, id);
        if dirs.len() > 1 {
            return Err(format!("container id prefix {id} is ambiguous"));
        }
        if let Some(dir) = dirs.into_iter().next()
            && dir.join("cgroup.freeze").exists()
        {
            tokio::fs::write(dir.join("cgroup.freeze"), b"1")
                .await
                .map_err(|e| format!("write {}/cgroup.freeze: {e}", dir.display()))?;
            let events = dir.join("cgroup.events");
            if !wait_file(
                &events,
                |s| s.lines().any(|l| l.trim() == "frozen 1"),
                Duration::from_secs(2),
            )
            .await
            {
                return Err(format!("{} did not report frozen", dir.display()));
            }
            return Ok(PauseMethod::FreezerV2(dir));
        }
    }
    let v1 = cgroup_root.join("freezer");
    let dirs = container_cgroup_dirs(&v1, id);
    let dir = match dirs.len() {
        1 => dirs.into_iter().next().ok_or("no freezer directory")?,
        0 => {
            return Err(format!(
                "no cgroup freezer directory found for container {id}"
            ));
        }
        _ => return Err(format!("container id prefix {id} is ambiguous")),
    };
    tokio::fs::write(dir.join("freezer.state"), b"FROZEN")
        .await
        .map_err(|e| format!("write {}/freezer.state: {e}", dir.display()))?;
    if !wait_file(
        &dir.join("freezer.state"),
        |s| s.trim() == "FROZEN",
        Duration::from_secs(2),
    )
    .await
    {
        return Err(format!("{} did not reach FROZEN", dir.display()));
    }
    Ok(PauseMethod::FreezerV1(dir))
}

/// Undoes [`freeze`].
pub async fn thaw(method: &PauseMethod) -> Result<(), String> {
    match method {
        PauseMethod::Docker => Err("paused through docker: use docker unpause".into()),
        PauseMethod::FreezerV2(d) => tokio::fs::write(d.join("cgroup.freeze"), b"0")
            .await
            .map_err(|e| e.to_string()),
        PauseMethod::FreezerV1(d) => tokio::fs::write(d.join("freezer.state"), b"THAWED")
            .await
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_container_dirs_by_prefix() {
        let base = std::env::temp_dir().join(format!("guard-cg-{}", std::process::id()));
        let id = "ab".repeat(32);
        std::fs::create_dir_all(base.join("docker").join(&id)).expect("mkdir");
        std::fs::create_dir_all(
            base.join("system.slice")
                .join(format!("docker-{}.scope", "cd".repeat(32))),
        )
        .expect("mkdir");
        assert_eq!(container_cgroup_dirs(&base, &id).len(), 1);
        assert_eq!(container_cgroup_dirs(&base, &id[..12]).len(), 1);
        assert_eq!(container_cgroup_dirs(&base, &"cd".repeat(6)).len(), 1);
        assert!(container_cgroup_dirs(&base, "abab").is_empty(), "too short");
        assert!(container_cgroup_dirs(&base, "../../etc/xx").is_empty());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[tokio::test]
    async fn unreachable_daemon_is_classified() {
        let c = ContainerControl::new(
            std::env::temp_dir().join("guard-no-such-docker.sock"),
            Duration::from_secs(1),
        );
        match c.docker_kill(&"ab".repeat(32)).await {
            Err(DockerError::Unreachable(_)) => {}
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
