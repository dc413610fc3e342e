//! The background task that fills [`ContainerTable`] from the Docker API (bollard).
//!
//! - Serves inspect requests from the table's bounded queue, one at a time.
//! - Follows the event stream: `create` learns a container before its first process runs,
//!   `start` refreshes it, `die` marks it exited, `destroy` drops it.
//! - When the daemon is unreachable, requests are answered `Unavailable` (`<NA>` fields), the
//!   task reconnects with exponential backoff, and on reconnect re-asks every container whose
//!   metadata is not from the daemon.
//! - Podman's Docker-compatible service (`podman system service`) is read the same way; it is
//!   recognised by its `/version` answer, and its differences are handled here: `remove`
//!   instead of `destroy`, and its own keys (`podId`, `containerExitCode`) beside the labels
//!   of a create event.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use bollard::{
    Docker,
    query_parameters::{EventsOptionsBuilder, InspectContainerOptions},
};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::container::{
    ApiEngine, ContainerId, ContainerMeta, ContainerTable, MetaStatus, Request, WeakContainerTable,
};

/// Looked for in this order when no socket is configured: Docker's, then rootful Podman's.
pub const DEFAULT_SOCKETS: [&str; 2] = ["/var/run/docker.sock", "/run/podman/podman.sock"];

#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The daemon's unix socket; `None`: the first of [`DEFAULT_SOCKETS`] that exists, looked
    /// for again at each connection attempt.
    pub socket: Option<PathBuf>,
    /// Per-request timeout, in whole seconds (bollard's unit).
    pub request_timeout_secs: u64,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            socket: None,
            request_timeout_secs: 5,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl DockerConfig {
    /// The socket to connect to now: the configured one, else the first default that exists
    /// (Docker's when neither does, for messages).
    pub fn pick_socket(&self) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        DEFAULT_SOCKETS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKETS[0]))
    }
}

/// Podman names itself in `/version`'s components (`Podman Engine`) and platform; Docker never.
pub fn engine_of(v: &bollard::models::SystemVersion) -> ApiEngine {
    let podman = |s: &str| s.to_ascii_lowercase().contains("podman");
    let in_components = v.components.iter().flatten().any(|c| podman(&c.name));
    let in_platform = v.platform.as_ref().is_some_and(|p| podman(&p.name));
    if in_components || in_platform {
        ApiEngine::Podman
    } else {
        ApiEngine::Docker
    }
}

pub struct DockerEnricher {
    // Weak, so that dropping the last ContainerTable closes the queue and stops the task.
    table: WeakContainerTable,
    rx: mpsc::Receiver<Request>,
    cfg: DockerConfig,
}

impl DockerEnricher {
    pub fn new(table: ContainerTable, rx: mpsc::Receiver<Request>, cfg: DockerConfig) -> Self {
        // Until an answer says which, a Podman socket's name tells (for the metrics label).
        if cfg
            .pick_socket()
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("podman"))
        {
            table.set_engine(ApiEngine::Podman);
        }
        Self {
            table: table.downgrade(),
            rx,
            cfg,
        }
    }

    fn set_up(&self, up: bool) {
        if let Some(t) = self.table.upgrade() {
            t.set_daemon_up(up);
        }
    }

    /// Runs until every [`ContainerTable`] handle (the request senders) is dropped.
    /// Spawn it: `tokio::spawn(enricher.run())`.
    pub async fn run(mut self) {
        let mut backoff = self.cfg.backoff_min;
        let mut was_up = true; // log the first failure
        loop {
            let socket = self.cfg.pick_socket();
            let engine = self.engine();
            match self.connect(&socket).await {
                Ok((docker, engine)) => {
                    if let Some(t) = self.table.upgrade() {
                        t.set_engine(engine);
                    }
                    info!(socket = %socket.display(), runtime = engine.as_str(), "{} connected", engine.daemon());
                    self.set_up(true);
                    backoff = self.cfg.backoff_min;
                    let closed = self.session(&docker, engine).await;
                    self.set_up(false);
                    if closed {
                        return;
                    }
                    warn!(
                        runtime = engine.as_str(),
                        "{} connection lost; container metadata is <NA> until it returns",
                        engine.daemon()
                    );
                    // One warning per outage: the failed reconnects that follow are debug.
                    was_up = false;
                }
                Err(e) => {
                    self.set_up(false);
                    if was_up {
                        warn!(socket = %socket.display(), runtime = engine.as_str(), error = %e, "{} unreachable; container metadata is <NA>", engine.daemon());
                        was_up = false;
                    } else {
                        debug!(error = %e, "{} still unreachable", engine.daemon());
                    }
                }
            }
            // While down: answer requests at once with <NA>, and wait out the backoff.
            let deadline = tokio::time::sleep(backoff);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    req = self.rx.recv() => match req {
                        Some(Request::Inspect(id)) => {
                            if let Some(t) = self.table.upgrade() {
                                unavailable(&t, id);
                            }
                        }
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    /// The engine last seen on the socket (Docker before any answer).
    fn engine(&self) -> ApiEngine {
        self.table
            .upgrade()
            .map_or(ApiEngine::Docker, |t| t.engine())
    }

    async fn connect(
        &self,
        socket: &std::path::Path,
    ) -> Result<(Docker, ApiEngine), bollard::errors::Error> {
        let path = socket.to_string_lossy();
        let docker = Docker::connect_with_unix(
            &path,
            self.cfg.request_timeout_secs,
            bollard::API_DEFAULT_VERSION,
        )?;
        // Speak the daemon's API version; Debian's dockerd is older than bollard's default.
        let docker = docker.negotiate_version().await?;
        let engine = engine_of(&docker.version().await?);
        Ok((docker, engine))
    }

    /// Serves one connection. Returns true when the request queue closed (shut down).
    async fn session(&mut self, docker: &Docker, engine: ApiEngine) -> bool {
        // Podman says `remove` where Docker says `destroy` (its `died` is `die` on this API).
        let gone = match engine {
            ApiEngine::Docker => "destroy",
            ApiEngine::Podman => "remove",
        };
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["create", "start", "die", gone]),
        ]);
        // Subscribe before re-enriching so that nothing between the two is missed.
        let mut events = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
        let not_ready = match self.table.upgrade() {
            Some(t) => t.not_ready(),
            None => return true,
        };
        for id in not_ready {
            self.inspect(docker, id).await;
        }
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        let id = ev.actor.as_ref().and_then(|a| a.id.as_deref()).and_then(ContainerId::parse);
                        let (Some(id), Some(action)) = (id, ev.action.as_deref()) else { continue };
                        debug!(container = %id.short(), action, "docker event");
                        let Some(table) = self.table.upgrade() else { return true };
                        match action {
                            // The create event carries name, image and labels: store them at
                            // once (the policy binding at cgroup_mkdir races the container's
                            // start), then inspect for the rest.
                            "create" => {
                                let attrs = ev.actor.as_ref().and_then(|a| a.attributes.as_ref());
                                if let Some(meta) = attrs.map(|a| meta_from_create_event(id.clone(), a, engine)) {
                                    table.store(meta);
                                }
                                drop(table);
                                self.inspect(docker, id).await;
                            }
                            // Inspect right away: a lookup from the first exec should find it.
                            "start" => {
                                drop(table);
                                self.inspect(docker, id).await;
                            }
                            "die" => table.mark_exited(&id),
                            "destroy" | "remove" => table.remove(&id),
                            _ => {}
                        }
                    }
                    Some(Err(e)) => {
                        debug!(error = %e, "docker event stream error");
                        return false;
                    }
                    None => return false,
                },
                req = self.rx.recv() => match req {
                    Some(Request::Inspect(id)) => self.inspect(docker, id).await,
                    None => return true,
                },
            }
        }
    }

    async fn inspect(&self, docker: &Docker, id: ContainerId) {
        let res = docker
            .inspect_container(id.as_str(), None::<InspectContainerOptions>)
            .await;
        let Some(table) = self.table.upgrade() else {
            return;
        };
        match res {
            Ok(r) => {
                let config = r.config.as_ref();
                let labels = config
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default()
                    .into_iter();
                let mut meta = ContainerMeta::from_parts(
                    id,
                    r.name.as_deref(),
                    config.and_then(|c| c.image.as_deref()),
                    r.image.as_deref(),
                    labels,
                    r.host_config.as_ref().and_then(|h| h.privileged),
                );
                // Falco's container.mounts, bounded in number and size.
                let text = |v: &Option<String>| {
                    super::container::bounded(v.as_deref().unwrap_or_default())
                };
                meta.mounts = r
                    .mounts
                    .iter()
                    .flatten()
                    .filter(|m| m.destination.as_deref().is_some_and(|d| !d.is_empty()))
                    .take(super::container::MAX_MOUNTS)
                    .map(|m| crate::model::Mount {
                        source: text(&m.source),
                        dest: text(&m.destination),
                        mode: text(&m.mode),
                        rw: m.rw.unwrap_or(false),
                        propagation: text(&m.propagation),
                    })
                    .collect();
                meta.exited = r
                    .state
                    .as_ref()
                    .and_then(|s| s.running)
                    .is_some_and(|running| !running)
                    && r.state
                        .as_ref()
                        .and_then(|s| s.finished_at.as_deref())
                        .is_some_and(|f| !f.starts_with("0001-"));
                table.store(meta);
            }
            Err(e) => {
                // 404: not a Docker container (another runtime, or gone). Others: daemon trouble;
                // the event stream notices a dead daemon and reconnects.
                debug!(container = %id.short(), error = %e, "inspect failed");
                unavailable(&table, id);
            }
        }
    }
}

/// Metadata from a `create` event's attributes: `name`, `image` and the container's labels
/// (the daemon puts labels beside its own keys; a label named like one of those is overridden,
/// and inspect, right after, gives the true set).
fn meta_from_create_event(
    id: ContainerId,
    attrs: &HashMap<String, String>,
    engine: ApiEngine,
) -> ContainerMeta {
    const OWN_KEYS: [&str; 2] = ["name", "image"];
    const PODMAN_KEYS: [&str; 2] = ["podId", "containerExitCode"];
    let own = |k: &str| {
        OWN_KEYS.contains(&k) || (engine == ApiEngine::Podman && PODMAN_KEYS.contains(&k))
    };
    let labels = attrs
        .iter()
        .filter(|(k, _)| !own(k))
        .map(|(k, v)| (k.clone(), v.clone()));
    ContainerMeta::from_parts(
        id,
        attrs.get("name").map(String::as_str),
        attrs.get("image").map(String::as_str),
        None,
        labels,
        None,
    )
}

fn unavailable(table: &ContainerTable, id: ContainerId) {
    // Keep good metadata we already have: a daemon outage does not change a container. And
    // do not bring back an entry that was forgotten (its cgroups are gone) or evicted while
    // the request was queued: a later lookup asks again.
    if table
        .peek(&id)
        .is_none_or(|m| m.status == MetaStatus::Ready)
    {
        return;
    }
    table.store(ContainerMeta::unknown(id, MetaStatus::Unavailable));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::container::{ContainerTableConfig, NA};

    const A: &str = "3f1c2e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";

    #[test]
    fn create_event_attributes_give_name_image_and_labels() {
        let attrs: HashMap<String, String> = [
            ("name", "web-1"),
            ("image", "registry.local/web:2"),
            ("tier", "web"),
            ("io.kubernetes.pod.namespace", "prod"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let m = meta_from_create_event(
            ContainerId::parse(A).expect("id"),
            &attrs,
            ApiEngine::Docker,
        );
        assert_eq!(m.status, MetaStatus::Ready);
        assert_eq!(m.name, "web-1");
        assert_eq!(m.image, "registry.local/web:2");
        assert_eq!(m.label("tier"), "web");
        assert_eq!(m.k8s_ns_name, "prod");
        assert_eq!(m.label("name"), NA, "Docker's own keys are not labels");
        assert_eq!(m.labels.len(), 2);
    }

    /// Podman's create event puts its own keys beside the labels; they are not labels there,
    /// and are (a label of that name) on Docker.
    #[test]
    fn podman_create_event_keys_are_not_labels() {
        let attrs: HashMap<String, String> = [
            ("name", "web-1"),
            ("image", "localhost/guard-test-busybox:latest"),
            ("podId", ""),
            ("containerExitCode", "0"),
            ("tier", "front"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let id = ContainerId::parse(A).expect("id");
        let m = meta_from_create_event(id.clone(), &attrs, ApiEngine::Podman);
        assert_eq!(m.image, "localhost/guard-test-busybox:latest");
        assert_eq!(m.labels.keys().collect::<Vec<_>>(), vec!["tier"]);
        let d = meta_from_create_event(id, &attrs, ApiEngine::Docker);
        assert_eq!(d.label("podId"), "");
        assert_eq!(d.labels.len(), 3);
    }

    /// Podman 4.3.1's `/version` (trimmed) and Docker 20.10's.
    #[test]
    fn the_engine_is_read_from_version() {
        let podman: bollard::models::SystemVersion = serde_json::from_str(
            r#"{"Platform":{"Name":"linux/amd64/debian-12"},"Components":[{"Name":"Podman Engine","Version":"4.3.1","Details":{"APIVersion":"4.3.1"}},{"Name":"Conmon","Version":"conmon version 2.1.6"}],"Version":"4.3.1","ApiVersion":"1.41","MinAPIVersion":"1.24"}"#,
        )
        .expect("podman version");
        assert_eq!(engine_of(&podman), ApiEngine::Podman);
        let docker: bollard::models::SystemVersion = serde_json::from_str(
            r#"{"Platform":{"Name":""},"Components":[{"Name":"Engine","Version":"20.10.24+dfsg1"},{"Name":"containerd","Version":"1.6.20~ds1"}],"Version":"20.10.24+dfsg1","ApiVersion":"1.41"}"#,
        )
        .expect("docker version");
        assert_eq!(engine_of(&docker), ApiEngine::Docker);
        assert_eq!(
            engine_of(&bollard::models::SystemVersion::default()),
            ApiEngine::Docker
        );
    }

    async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// No daemon at the socket: lookups return <NA> at once, the entry becomes Unavailable,
    /// and the task keeps running.
    #[tokio::test]
    async fn unreachable_daemon_gives_na() {
        let (table, rx) = ContainerTable::new(ContainerTableConfig::default());
        let cfg = DockerConfig {
            socket: Some(std::env::temp_dir().join("guard-no-such-docker.sock")),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(40),
            ..Default::default()
        };
        let task = tokio::spawn(DockerEnricher::new(table.clone(), rx, cfg).run());
        let id = ContainerId::parse(A).expect("id");
        let m = table.lookup(&id);
        assert_eq!((m.name.as_str(), m.image.as_str()), (NA, NA));
        assert!(
            wait_for(|| table
                .peek(&id)
                .is_some_and(|m| m.status == MetaStatus::Unavailable))
            .await
        );
        assert!(!table.daemon_up());
        assert!(!task.is_finished());
        drop(table);
        // Dropping every table handle closes the queue and ends the task.
        assert!(
            tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_ok()
        );
    }

    /// A minimal Docker API on a unix socket we control: `/version`, an idle `/events`
    /// stream, and inspect of one container.
    async fn fake_daemon(listener: tokio::net::UnixListener) {
        fake_daemon_as(listener, r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#).await
    }

    async fn fake_daemon_as(listener: tokio::net::UnixListener, version: &'static str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let body = if path.contains("/events") {
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                } else if path.contains("/version") {
                    version.to_owned()
                } else if path.contains(&format!("/containers/{A}/json")) {
                    format!(
                        r#"{{"Id":"{A}","Name":"/fake","Image":"sha256:1","Config":{{"Image":"localhost:5000/fake/img:7","Labels":{{"io.kubernetes.pod.name":"p","io.kubernetes.pod.namespace":"ns"}}}},"HostConfig":{{"Privileged":true}},"State":{{"Running":true}}}}"#
                    )
                } else {
                    String::new()
                };
                let status = if body.is_empty() {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    }

    /// The daemon is absent, then appears: the task reconnects and re-enriches the container
    /// that was `<NA>`.
    #[tokio::test]
    async fn recovers_when_daemon_appears() {
        let dir = std::env::temp_dir().join(format!("guard-fake-docker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let socket = dir.join("docker.sock");
        let (table, rx) = ContainerTable::new(ContainerTableConfig::default());
        let cfg = DockerConfig {
            socket: Some(socket.clone()),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(50),
            ..Default::default()
        };
        let task = tokio::spawn(DockerEnricher::new(table.clone(), rx, cfg).run());
        let id = ContainerId::parse(A).expect("id");
        table.lookup(&id);
        assert!(
            wait_for(|| table
                .peek(&id)
                .is_some_and(|m| m.status == MetaStatus::Unavailable))
            .await,
            "<NA> while the daemon is absent"
        );

        let server = tokio::spawn(fake_daemon(
            tokio::net::UnixListener::bind(&socket).expect("bind"),
        ));
        assert!(
            wait_for(|| table
                .peek(&id)
                .is_some_and(|m| m.status == MetaStatus::Ready))
            .await,
            "re-enriched after reconnect: {:?}",
            table.peek(&id)
        );
        let m = table.lookup(&id);
        assert_eq!(m.name, "fake");
        assert_eq!(m.image_repository, "localhost:5000/fake/img");
        assert_eq!(m.image_tag, "7");
        assert_eq!(
            (m.k8s_pod_name.as_str(), m.k8s_ns_name.as_str()),
            ("p", "ns")
        );
        assert_eq!(m.privileged, Some(true));
        assert!(table.daemon_up());

        // An unknown container (404) is Unavailable, and the connection stays up.
        let other = ContainerId::parse(&"b".repeat(64)).expect("id");
        table.lookup(&other);
        assert!(
            wait_for(|| table
                .peek(&other)
                .is_some_and(|m| m.status == MetaStatus::Unavailable))
            .await
        );
        assert!(table.daemon_up());

        task.abort();
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Podman's service on the socket: the table says so (metrics label, messages).
    #[tokio::test]
    async fn podman_service_is_recognised() {
        let dir = std::env::temp_dir().join(format!("guard-fake-podman-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let socket = dir.join("api.sock");
        let server = tokio::spawn(fake_daemon_as(
            tokio::net::UnixListener::bind(&socket).expect("bind"),
            r#"{"ApiVersion":"1.41","Version":"4.3.1","Components":[{"Name":"Podman Engine","Version":"4.3.1"}]}"#,
        ));
        let (table, rx) = ContainerTable::new(ContainerTableConfig::default());
        assert_eq!(table.engine(), ApiEngine::Docker);
        let cfg = DockerConfig {
            socket: Some(socket.clone()),
            ..Default::default()
        };
        let task = tokio::spawn(DockerEnricher::new(table.clone(), rx, cfg).run());
        assert!(wait_for(|| table.daemon_up()).await, "connected");
        assert_eq!(table.engine(), ApiEngine::Podman);
        let id = ContainerId::parse(A).expect("id");
        table.lookup(&id);
        assert!(
            wait_for(|| table
                .peek(&id)
                .is_some_and(|m| m.status == MetaStatus::Ready && m.name == "fake"))
            .await
        );
        task.abort();
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// No socket configured: Docker's when it exists, else Podman's, else Docker's (named in
    /// messages).
    #[test]
    fn default_socket_order() {
        assert_eq!(DEFAULT_SOCKETS[0], "/var/run/docker.sock");
        let picked = DockerConfig::default().pick_socket();
        let want = DEFAULT_SOCKETS
            .iter()
            .find(|s| std::path::Path::new(s).exists())
            .unwrap_or(&DEFAULT_SOCKETS[0]);
        assert_eq!(picked, PathBuf::from(want));
        let set = DockerConfig {
            socket: Some("/x/y.sock".into()),
            ..Default::default()
        };
        assert_eq!(set.pick_socket(), PathBuf::from("/x/y.sock"));
    }
}
