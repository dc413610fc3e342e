//! The background task that fills [`ContainerTable`] from the Kubernetes CRI (containerd,
//! CRI-O): gRPC over the runtime's unix socket, bindings from the `k8s-cri` crate.
//!
//! - The socket is the configured one, else the first of [`DEFAULT_SOCKETS`] that exists.
//! - `Version` checks the runtime; then `GetContainerEvents` is followed where the runtime has
//!   it (containerd 1.7+, CRI-O 1.26+), else `ListContainers` is polled every `poll_interval`
//!   (and at once when the table meets an unknown container).
//! - A new container's metadata comes from `ContainerStatus` (image name) and its pod's
//!   `PodSandboxStatus` (namespace, name, uid, labels, IP); the pod fields are also set as the
//!   `io.kubernetes.pod.*` container labels kubelet would set, so `k8s.*` fields, responses and
//!   policy selectors read them as they do Docker's.
//! - Bounds: at most `max_containers` containers and `max_sandboxes` pods are tracked, gRPC
//!   messages are capped at `max_message_bytes`, every unary call has `call_timeout`.
//! - While the runtime is unreachable the table marks CRI metadata down (`<NA>` with the
//!   agent's `na_when_daemon_down`), a warning is logged once, and the task reconnects with
//!   exponential backoff; on reconnect the next sync refreshes everything.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerEventType, ContainerState, ContainerStatusRequest, ListContainersRequest,
    PodSandboxStatusRequest, VersionRequest, runtime_service_client::RuntimeServiceClient,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::{debug, info, warn};

use super::container::{
    ContainerId, ContainerMeta, ContainerTable, Health, MAX_LABELS, MetaSource, MetaStatus,
    WeakContainerTable, bounded,
};

/// Sockets tried, in order, when none is configured.
pub const DEFAULT_SOCKETS: [&str; 2] = ["/run/containerd/containerd.sock", "/run/crio/crio.sock"];

/// Labels kubelet puts on every container; set from the pod when the runtime lacks them.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";

#[derive(Debug, Clone)]
pub struct CriConfig {
    /// The runtime's socket; `None`: the first of [`DEFAULT_SOCKETS`] that exists.
    pub socket: Option<PathBuf>,
    pub poll_interval: Duration,
    /// With the event stream: a full `ListContainers` this often anyway (missed events).
    pub resync_interval: Duration,
    pub call_timeout: Duration,
    pub max_message_bytes: usize,
    pub max_containers: usize,
    pub max_sandboxes: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for CriConfig {
    fn default() -> Self {
        Self {
            socket: None,
            poll_interval: Duration::from_millis(200),
            resync_interval: Duration::from_secs(10),
            call_timeout: Duration::from_secs(2),
            max_message_bytes: 4 << 20,
            max_containers: 4096,
            max_sandboxes: 4096,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
        }
    }
}

impl CriConfig {
    /// The socket to use now: the configured one, or the first default that exists.
    pub fn pick_socket(&self) -> Option<PathBuf> {
        if let Some(s) = &self.socket {
            return Some(s.clone());
        }
        DEFAULT_SOCKETS
            .iter()
            .map(PathBuf::from)
            .find(|p| is_socket(p))
    }
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// What `guard doctor` and `/metrics` show about the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeInfo {
    pub socket: Option<PathBuf>,
    /// `containerd 1.6.20~ds1` (runtime name and version from `Version`).
    pub runtime: String,
    pub up: bool,
    /// Whether changes come from `GetContainerEvents` (else polling).
    pub events: bool,
}

/// Shared view of the CRI task's health.
pub type CriHealth = Health<RuntimeInfo>;

/// Why a CRI call failed.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("no CRI socket (tried {})", DEFAULT_SOCKETS.join(", "))]
    NoSocket,
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("{0}: timed out")]
    Timeout(&'static str),
    #[error("{0}: {1}")]
    Status(&'static str, tonic::Status),
}

impl CriError {
    /// The runtime answered but does not serve the CRI (containerd with its CRI plugin off).
    pub fn is_unimplemented(&self) -> bool {
        matches!(self, CriError::Status(_, s) if s.code() == tonic::Code::Unimplemented)
    }
}

type Client = RuntimeServiceClient<Channel>;

/// Connects a CRI client to `socket` (messages capped at `max_message_bytes`).
pub async fn connect(socket: &Path, max_message_bytes: usize) -> Result<Client, CriError> {
    let channel = unix_channel(socket)
        .await
        .map_err(|e| CriError::Connect(socket.display().to_string(), e))?;
    Ok(RuntimeServiceClient::new(channel)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes))
}

/// A gRPC channel over the unix socket (also containerd's own API, [`super::containerd`]).
pub(crate) async fn unix_channel(socket: &Path) -> Result<Channel, String> {
    let path = socket.to_path_buf();
    // The URI is not used: every connection goes to the unix socket.
    Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| causes(&e))
}

/// `runtime version` from the runtime at `socket` (for `guard doctor`).
pub async fn runtime_version(socket: &Path, cfg: &CriConfig) -> Result<String, CriError> {
    let mut client = connect(socket, cfg.max_message_bytes).await?;
    let v = call(
        "Version",
        cfg.call_timeout,
        client.version(VersionRequest {
            version: "v1".into(),
        }),
    )
    .await?;
    Ok(bounded(&format!(
        "{} {}",
        v.runtime_name, v.runtime_version
    )))
}

/// An error and its sources on one line (tonic's transport error says only "transport error").
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// One unary call with a deadline.
async fn call<T>(
    what: &'static str,
    timeout: Duration,
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CriError> {
    match tokio::time::timeout(timeout, f).await {
        Err(_) => Err(CriError::Timeout(what)),
        Ok(Err(s)) => Err(CriError::Status(what, s)),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

/// The pod fields a container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub ip: String,
}

/// A container as listed, before its pod is joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriContainer {
    pub id: String,
    pub sandbox: String,
    pub name: String,
    pub image: String,
    pub image_ref: String,
    pub labels: BTreeMap<String, String>,
    pub exited: bool,
}

/// Builds the table's metadata from a container and its pod. Untrusted strings are bounded
/// by [`ContainerMeta::from_parts`]; the pod's fields become kubelet's labels when absent.
pub fn meta_of(id: ContainerId, c: &CriContainer, pod: Option<&PodInfo>) -> ContainerMeta {
    let mut labels: BTreeMap<String, String> = c
        .labels
        .iter()
        .take(MAX_LABELS)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(p) = pod {
        for (k, v) in [
            (LABEL_POD_NAME, &p.name),
            (LABEL_POD_NAMESPACE, &p.namespace),
            (LABEL_POD_UID, &p.uid),
        ] {
            if !v.is_empty() && labels.len() < MAX_LABELS {
                labels.entry(k.to_owned()).or_insert_with(|| v.clone());
            }
        }
    }
    let image = Some(c.image.as_str()).filter(|s| !s.is_empty());
    let image_id = Some(c.image_ref.as_str()).filter(|s| !s.is_empty());
    let name = Some(c.name.as_str()).filter(|s| !s.is_empty());
    let mut m = ContainerMeta::from_parts(id, name, image, image_id, labels, None);
    m.source = MetaSource::Cri;
    m.exited = c.exited;
    if let Some(p) = pod {
        m.pod_labels = p
            .labels
            .iter()
            .take(MAX_LABELS)
            .map(|(k, v)| (bounded(k), bounded(v)))
            .collect();
        if !p.ip.is_empty() {
            m.pod_ip = bounded(&p.ip);
        }
    }
    m
}

pub struct CriEnricher {
    table: WeakContainerTable,
    cfg: CriConfig,
    health: CriHealth,
    /// Containers this task stored, with whether it saw them exited.
    known: HashMap<ContainerId, bool>,
    pods: HashMap<String, PodInfo>,
}

impl CriEnricher {
    pub fn new(table: &ContainerTable, cfg: CriConfig) -> Self {
        Self {
            table: table.downgrade(),
            cfg,
            health: CriHealth::default(),
            known: HashMap::new(),
            pods: HashMap::new(),
        }
    }

    pub fn health(&self) -> CriHealth {
        self.health.clone()
    }

    fn set_up(&self, up: bool) {
        if let Some(t) = self.table.upgrade() {
            t.set_cri_up(up);
        }
        self.health.update(|h| h.up = up);
    }

    /// Runs until every [`ContainerTable`] handle is dropped. With no socket configured and
    /// none present it looks again every `backoff_max`, quietly (a runtime may start later).
    pub async fn run(mut self) {
        let mut backoff = self.cfg.backoff_min;
        let mut warned = false;
        loop {
            if self.table.upgrade().is_none() {
                return;
            }
            let r = self.session().await;
            let was_up = self.health.get().up;
            self.set_up(false);
            match r {
                Ok(()) => return,
                Err(CriError::NoSocket) if self.cfg.socket.is_none() => {
                    debug!("no CRI socket found");
                    backoff = self.cfg.backoff_max;
                }
                // A containerd found by default without its CRI plugin (Docker's): not a
                // CRI runtime, nothing to warn about.
                Err(e) if self.cfg.socket.is_none() && e.is_unimplemented() => {
                    debug!(error = %e, "the runtime at the default socket does not serve the CRI");
                    backoff = self.cfg.backoff_max;
                }
                Err(e) => {
                    if was_up {
                        backoff = self.cfg.backoff_min;
                        warned = false;
                    }
                    if warned {
                        debug!(error = %e, "CRI runtime still unreachable");
                    } else {
                        warn!(error = %e, "CRI runtime unreachable; its containers' metadata is <NA> until it returns");
                        warned = true;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    /// One connection. `Ok(())` when the table is gone (shut down).
    async fn session(&mut self) -> Result<(), CriError> {
        let socket = self.cfg.pick_socket().ok_or(CriError::NoSocket)?;
        self.health.update(|h| h.socket = Some(socket.clone()));
        let mut client = connect(&socket, self.cfg.max_message_bytes).await?;
        let v = call(
            "Version",
            self.cfg.call_timeout,
            client.version(VersionRequest {
                version: "v1".into(),
            }),
        )
        .await?;
        let runtime = bounded(&format!("{} {}", v.runtime_name, v.runtime_version));
        info!(socket = %socket.display(), %runtime, "CRI runtime connected");
        self.health.update(|h| h.runtime = runtime);
        self.set_up(true);
        let events = tokio::time::timeout(
            self.cfg.call_timeout,
            client.get_container_events(k8s_cri::v1::GetEventsRequest {}),
        )
        .await;
        match events {
            Ok(Ok(stream)) => {
                self.health.update(|h| h.events = true);
                self.follow(&mut client, stream.into_inner()).await
            }
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                info!("CRI runtime has no GetContainerEvents; polling ListContainers");
                self.health.update(|h| h.events = false);
                self.poll(&mut client).await
            }
            Ok(Err(s)) => Err(CriError::Status("GetContainerEvents", s)),
            Err(_) => Err(CriError::Timeout("GetContainerEvents")),
        }
    }

    async fn poll(&mut self, client: &mut Client) -> Result<(), CriError> {
        loop {
            self.sync(client).await?;
            let Some(table) = self.table.upgrade() else {
                return Ok(());
            };
            tokio::select! {
                () = tokio::time::sleep(self.cfg.poll_interval) => {}
                () = table.cri_nudged() => {}
            }
        }
    }

    async fn follow(
        &mut self,
        client: &mut Client,
        mut stream: tonic::Streaming<k8s_cri::v1::ContainerEventResponse>,
    ) -> Result<(), CriError> {
        self.sync(client).await?;
        let mut resync = tokio::time::interval(self.cfg.resync_interval);
        resync.tick().await;
        loop {
            let Some(table) = self.table.upgrade() else {
                return Ok(());
            };
            tokio::select! {
                _ = resync.tick() => self.sync(client).await?,
                () = table.cri_nudged() => self.sync(client).await?,
                msg = stream.message() => match msg {
                    Ok(Some(ev)) => self.on_event(client, ev).await?,
                    Ok(None) => return Err(CriError::Status("GetContainerEvents", tonic::Status::unavailable("stream ended"))),
                    Err(s) => return Err(CriError::Status("GetContainerEvents", s)),
                },
            }
        }
    }

    async fn on_event(
        &mut self,
        client: &mut Client,
        ev: k8s_cri::v1::ContainerEventResponse,
    ) -> Result<(), CriError> {
        let Some(id) = ContainerId::parse(&ev.container_id) else {
            return Ok(());
        };
        let Some(table) = self.table.upgrade() else {
            return Ok(());
        };
        match ContainerEventType::try_from(ev.container_event_type) {
            Ok(ContainerEventType::ContainerDeletedEvent) => {
                if self.known.remove(&id).is_some() {
                    table.remove(&id);
                }
            }
            Ok(ContainerEventType::ContainerStoppedEvent) => {
                table.mark_exited(&id);
                if let Some(e) = self.known.get_mut(&id) {
                    *e = true;
                }
            }
            Ok(_) => {
                drop(table);
                if let Some(s) = ev.pod_sandbox_status {
                    self.remember_pod(&s);
                }
                self.describe(client, &id, None).await?;
            }
            Err(_) => debug!(kind = ev.container_event_type, "unknown CRI event type"),
        }
        Ok(())
    }

    /// Lists containers: stores new ones, marks exited ones, removes gone ones.
    async fn sync(&mut self, client: &mut Client) -> Result<(), CriError> {
        let list = call(
            "ListContainers",
            self.cfg.call_timeout,
            client.list_containers(ListContainersRequest { filter: None }),
        )
        .await?;
        let Some(table) = self.table.upgrade() else {
            return Ok(());
        };
        if list.containers.len() > self.cfg.max_containers {
            warn!(
                listed = list.containers.len(),
                cap = self.cfg.max_containers,
                "more CRI containers than guard tracks; the rest have <NA> metadata"
            );
        }
        let mut seen = HashSet::new();
        let mut new = Vec::new();
        for c in list.containers.iter().take(self.cfg.max_containers) {
            let Some(id) = ContainerId::parse(&c.id) else {
                continue;
            };
            let exited = c.state == ContainerState::ContainerExited as i32;
            seen.insert(id.clone());
            match self.known.get(&id) {
                Some(&was) if was == exited => {}
                Some(_) => {
                    table.mark_exited(&id);
                    self.known.insert(id, exited);
                }
                None => new.push((id, c.pod_sandbox_id.clone())),
            }
        }
        let gone: Vec<ContainerId> = self
            .known
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for id in gone {
            self.known.remove(&id);
            table.remove(&id);
        }
        drop(table);
        // Pods no listed container refers to any more.
        let live: HashSet<&str> = list
            .containers
            .iter()
            .map(|c| c.pod_sandbox_id.as_str())
            .collect();
        self.pods.retain(|k, _| live.contains(k.as_str()));
        for (id, sandbox) in new {
            self.describe(client, &id, Some(sandbox)).await?;
        }
        Ok(())
    }

    fn remember_pod(&mut self, s: &k8s_cri::v1::PodSandboxStatus) {
        if self.pods.len() >= self.cfg.max_sandboxes && !self.pods.contains_key(&s.id) {
            return;
        }
        self.pods.insert(s.id.clone(), pod_info(s));
    }

    /// `ContainerStatus` + (cached) `PodSandboxStatus` → the table.
    async fn describe(
        &mut self,
        client: &mut Client,
        id: &ContainerId,
        sandbox: Option<String>,
    ) -> Result<(), CriError> {
        let st = match call(
            "ContainerStatus",
            self.cfg.call_timeout,
            client.container_status(ContainerStatusRequest {
                container_id: id.as_str().into(),
                verbose: false,
            }),
        )
        .await
        {
            Ok(r) => r,
            // Removed between the list and now.
            Err(CriError::Status(_, s)) if s.code() == tonic::Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(status) = st.status else {
            return Ok(());
        };
        // `ContainerStatus` has no sandbox id; the list's, or the kubelet label.
        let sandbox = sandbox.or_else(|| {
            status
                .labels
                .get("io.kubernetes.sandbox.id")
                .map(|s| s.to_owned())
        });
        let c = CriContainer {
            id: status.id.clone(),
            sandbox: sandbox.clone().unwrap_or_default(),
            name: status
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            image: status
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_ref: status.image_ref.clone(),
            labels: status.labels.into_iter().collect(),
            exited: status.state == ContainerState::ContainerExited as i32,
        };
        if let Some(sb) = sandbox.filter(|s| !s.is_empty() && !self.pods.contains_key(s)) {
            match call(
                "PodSandboxStatus",
                self.cfg.call_timeout,
                client.pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: sb,
                    verbose: false,
                }),
            )
            .await
            {
                Ok(r) => {
                    if let Some(s) = r.status {
                        self.remember_pod(&s);
                    }
                }
                Err(CriError::Status(_, s)) if s.code() == tonic::Code::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if self.known.len() >= self.cfg.max_containers && !self.known.contains_key(id) {
            return Ok(());
        }
        let meta = meta_of(id.clone(), &c, self.pods.get(&c.sandbox));
        debug!(container = %id.short(), name = %meta.name, ns = %meta.k8s_ns_name, "CRI container");
        let Some(table) = self.table.upgrade() else {
            return Ok(());
        };
        self.known.insert(id.clone(), c.exited);
        table.store(meta);
        Ok(())
    }
}

fn pod_info(s: &k8s_cri::v1::PodSandboxStatus) -> PodInfo {
    let md = s.metadata.clone().unwrap_or_default();
    PodInfo {
        name: md.name,
        namespace: md.namespace,
        uid: md.uid,
        labels: s
            .labels
            .iter()
            .take(MAX_LABELS)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ip: s.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default(),
    }
}

/// Whether the metadata is the CRI runtime's (for tests and the doctor).
pub fn is_cri(m: &ContainerMeta) -> bool {
    m.source == MetaSource::Cri && m.status == MetaStatus::Ready
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
