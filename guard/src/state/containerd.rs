//! The background task that follows containerd's own API (namespaces, containers, events)
//! over its socket; bindings from the `containerd-client` crate.
//!
//! - **Owned here**: containers started straight on containerd (`ctr run`, nerdctl; cgroup
//!   `/<namespace>/<id>`) in every namespace but [`CRI_NAMESPACE`] (the CRI client's) and
//!   [`DOCKER_NAMESPACE`] (Docker's). Their metadata: the image, the labels, the namespace as
//!   the label [`LABEL_NAMESPACE`] (set by guard, replacing any label of that name), and
//!   nerdctl's [`LABEL_NERDCTL_NAME`] label as `container.name`. The `k8s.*` fields stay
//!   `<NA>`: outside `k8s.io` there is no kubelet, so an `io.kubernetes.*` label there is just
//!   a label and never satisfies a `k8s_namespace` selector.
//! - **CRI start window**: in `k8s.io` the CRI client owns the metadata; this task stores
//!   only what containerd says when CRI's CreateContainer writes the record
//!   (`/containers/create`), which is before StartContainer makes the task and its cgroup:
//!   the container's labels (kubelet's `io.kubernetes.*`) and its pod's (the sandbox's own
//!   record, found through the spec annotation [`ANN_SANDBOX_ID`]). Storing it fires the
//!   container table's Ready hook, so the policy is in `POLICY_PENDING` when the kernel sees
//!   the cgroup's mkdir. It never replaces metadata already stored ([`ContainerTable::store_unowned`]);
//!   the CRI client's later description replaces it.
//! - Events first (`Events.Subscribe`, filtered to [`TOPICS`]), then a list of every
//!   namespace's containers, so nothing between the two is missed; a full list every
//!   `resync_interval` anyway (a missed delete).
//! - Bounds: `max_namespaces` namespaces, `max_containers` containers (listed one message
//!   at a time with `ListStream`), `max_sandboxes` cached pods, gRPC messages of at most
//!   `max_message_bytes`, specs parsed only up to `max_spec_bytes`, a deadline on each call.
//! - While containerd is unreachable its containers' metadata is `<NA>` (with the agent's
//!   `na_when_daemon_down`), a warning is logged once, and the task reconnects with
//!   exponential backoff; on reconnect it subscribes and lists again.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    time::Duration,
};

use containerd_client::types::Envelope;
use containerd_client::{
    events::{ContainerCreate, ContainerDelete, ContainerUpdate},
    services::v1::{
        Container, GetContainerRequest, ListContainersRequest, ListNamespacesRequest,
        SubscribeRequest, containers_client::ContainersClient, events_client::EventsClient,
        namespaces_client::NamespacesClient, version_client::VersionClient,
    },
};
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use super::{
    container::{
        ContainerId, ContainerMeta, ContainerTable, Health, MAX_LABELS, MetaSource, MetaStatus, NA,
        WeakContainerTable, bounded,
    },
    cri::{CriContainer, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID, PodInfo, meta_of},
};

/// containerd's default socket (the CRI client's socket when that is containerd).
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The CRI plugin's namespace: the CRI client owns these containers.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Docker's namespace: the Docker client owns these containers.
pub const DOCKER_NAMESPACE: &str = "moby";
/// The label guard sets to the containerd namespace of a container it describes.
pub const LABEL_NAMESPACE: &str = "io.containerd.namespace";
/// nerdctl's name for the container.
pub const LABEL_NERDCTL_NAME: &str = "nerdctl/name";
/// The CRI plugin's record kind: `sandbox` or `container`.
const LABEL_CRI_KIND: &str = "io.cri-containerd.kind";
/// Labels the CRI plugin adds to its records (not the CRI's labels).
const CRI_PLUGIN_PREFIX: &str = "io.cri-containerd.";
const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The CRI plugin's annotations on a container's spec.
pub const ANN_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
const ANN_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
const ANN_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
const ANN_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
const ANN_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
/// The only events this task asks for (containerd filters them).
pub const TOPICS: [&str; 3] = [
    "/containers/create",
    "/containers/update",
    "/containers/delete",
];

#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// containerd's socket; `None`: [`DEFAULT_SOCKET`] when it exists.
    pub socket: Option<PathBuf>,
    pub resync_interval: Duration,
    pub call_timeout: Duration,
    pub max_message_bytes: usize,
    pub max_namespaces: usize,
    pub max_containers: usize,
    pub max_sandboxes: usize,
    pub max_spec_bytes: usize,
    /// Events received but not handled yet.
    pub event_queue: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        Self {
            socket: None,
            resync_interval: Duration::from_secs(10),
            call_timeout: Duration::from_secs(2),
            max_message_bytes: 4 << 20,
            max_namespaces: 64,
            max_containers: 4096,
            max_sandboxes: 4096,
            max_spec_bytes: 1 << 20,
            event_queue: 1024,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
        }
    }
}

impl ContainerdConfig {
    /// The socket to use now: the configured one, or the default when it exists.
    pub fn pick_socket(&self) -> Option<PathBuf> {
        if let Some(s) = &self.socket {
            return Some(s.clone());
        }
        use std::os::unix::fs::FileTypeExt;
        let p = PathBuf::from(DEFAULT_SOCKET);
        std::fs::metadata(&p)
            .is_ok_and(|m| m.file_type().is_socket())
            .then_some(p)
    }
}

/// What `guard doctor` and `/metrics` show about containerd's API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerdInfo {
    pub socket: Option<PathBuf>,
    /// `containerd 1.6.20~ds1`.
    pub version: String,
    pub up: bool,
    /// Whether the event stream is open.
    pub subscribed: bool,
}

/// Shared view of the task's health.
pub type ContainerdHealth = Health<ContainerdInfo>;

/// Why a call to containerd failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("no containerd socket ({DEFAULT_SOCKET})")]
    NoSocket,
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("{0}: timed out")]
    Timeout(&'static str),
    #[error("{0}: {1}")]
    Status(&'static str, tonic::Status),
}

impl ContainerdError {
    /// The socket answers but is not containerd (CRI-O's).
    pub fn is_unimplemented(&self) -> bool {
        matches!(self, ContainerdError::Status(_, s) if s.code() == tonic::Code::Unimplemented)
    }
}

/// A valid containerd namespace (its `identifiers.Validate`: letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, at most 76 bytes); anything else is refused, never sent.
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 76
        && ns.as_bytes()[0].is_ascii_alphanumeric()
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A request in namespace `ns` (which [`valid_namespace`] accepted).
fn in_ns<T>(ns: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = ns.parse() {
        r.metadata_mut().insert("containerd-namespace", v);
    }
    r
}

async fn call<T>(
    what: &'static str,
    timeout: Duration,
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ContainerdError> {
    match tokio::time::timeout(timeout, f).await {
        Err(_) => Err(ContainerdError::Timeout(what)),
        Ok(Err(s)) => Err(ContainerdError::Status(what, s)),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

/// A connection: the channel and the message cap.
#[derive(Clone)]
pub struct Conn {
    channel: Channel,
    max: usize,
    timeout: Duration,
}

impl Conn {
    pub async fn open(socket: &Path, cfg: &ContainerdConfig) -> Result<Self, ContainerdError> {
        let channel = super::cri::unix_channel(socket)
            .await
            .map_err(|e| ContainerdError::Connect(socket.display().to_string(), e))?;
        Ok(Self {
            channel,
            max: cfg.max_message_bytes,
            timeout: cfg.call_timeout,
        })
    }

    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
            .max_decoding_message_size(self.max)
            .max_encoding_message_size(self.max)
    }

    /// `containerd <version>`.
    pub async fn version(&self) -> Result<String, ContainerdError> {
        let v = call(
            "Version",
            self.timeout,
            VersionClient::new(self.channel.clone())
                .max_decoding_message_size(self.max)
                .version(()),
        )
        .await?;
        Ok(bounded(&format!("containerd {}", v.version)))
    }

    /// Every valid namespace, at most `max`; the second value says whether more were listed.
    pub async fn namespaces(&self, max: usize) -> Result<(Vec<String>, bool), ContainerdError> {
        let r = call(
            "Namespaces.List",
            self.timeout,
            NamespacesClient::new(self.channel.clone())
                .max_decoding_message_size(self.max)
                .list(ListNamespacesRequest::default()),
        )
        .await?;
        let more = r.namespaces.len() > max;
        let names = r
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .filter(|n| valid_namespace(n))
            .take(max)
            .collect();
        Ok((names, more))
    }

    /// The event stream, filtered to [`TOPICS`]. No deadline: containerd sends the response
    /// headers only with the first event.
    async fn subscribe(&self) -> Result<tonic::Streaming<Envelope>, tonic::Status> {
        EventsClient::new(self.channel.clone())
            .max_decoding_message_size(self.max)
            .subscribe(SubscribeRequest {
                filters: TOPICS.iter().map(|t| format!("topic=={t:?}")).collect(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Subscribes in a task of its own, which forwards the events into a queue of `cap`
    /// (when the queue is full the task waits: the stream is flow-controlled); the task ends
    /// with the first error, which it forwards, or when the receiver is dropped.
    fn spawn_events(
        &self,
        cap: usize,
    ) -> (EventTask, mpsc::Receiver<Result<Envelope, tonic::Status>>) {
        let (tx, rx) = mpsc::channel(cap.max(1));
        let conn = self.clone();
        let task = tokio::spawn(async move {
            let mut stream = match conn.subscribe().await {
                Ok(s) => s,
                Err(s) => {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            };
            loop {
                let next = match stream.message().await {
                    Ok(Some(env)) => Ok(env),
                    Ok(None) => Err(tonic::Status::unavailable("stream ended")),
                    Err(s) => Err(s),
                };
                let end = next.is_err();
                if tx.send(next).await.is_err() || end {
                    return;
                }
            }
        });
        (EventTask(task), rx)
    }

    /// One container record; `None` when it is gone.
    async fn get(&self, ns: &str, id: &str) -> Result<Option<Container>, ContainerdError> {
        match call(
            "Containers.Get",
            self.timeout,
            self.containers()
                .get(in_ns(ns, GetContainerRequest { id: id.to_owned() })),
        )
        .await
        {
            Ok(r) => Ok(r.container),
            Err(ContainerdError::Status(_, s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A namespace's containers, one message each, at most `max`.
    async fn list(&self, ns: &str, max: usize) -> Result<Vec<Container>, ContainerdError> {
        let mut stream = call(
            "Containers.ListStream",
            self.timeout,
            self.containers()
                .list_stream(in_ns(ns, ListContainersRequest::default())),
        )
        .await?;
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(self.timeout, stream.message()).await;
            match next {
                Err(_) => return Err(ContainerdError::Timeout("Containers.ListStream")),
                Ok(Err(s)) => return Err(ContainerdError::Status("Containers.ListStream", s)),
                Ok(Ok(None)) => return Ok(out),
                Ok(Ok(Some(m))) => {
                    if out.len() >= max {
                        return Ok(out);
                    }
                    out.extend(m.container);
                }
            }
        }
    }
}

/// The event-forwarding task, aborted when the session that started it ends.
struct EventTask(tokio::task::JoinHandle<()>);

impl Drop for EventTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The spec's annotations, from the record's JSON spec (at most `max_bytes` of it).
pub fn spec_annotations(c: &Container, max_bytes: usize) -> BTreeMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    c.spec
        .as_ref()
        .filter(|a| a.value.len() <= max_bytes)
        .and_then(|a| serde_json::from_slice::<Spec>(&a.value).ok())
        .map(|s| s.annotations)
        .unwrap_or_default()
}

/// What one containerd record is to guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Outside `k8s.io` and `moby`: metadata owned by this task.
    Plain(ContainerMeta),
    /// A CRI container: its labels and its sandbox's id, for the start-window binding.
    Cri {
        container: CriContainer,
        sandbox: Option<String>,
    },
    /// A CRI pod sandbox: its pod, for the containers created in it.
    Sandbox(PodInfo),
    /// Docker's, an id that is not a container id, or a CRI record of another kind.
    Ignored,
}

/// Labels without the CRI plugin's own, bounded in number.
fn cri_labels(c: &Container) -> BTreeMap<String, String> {
    c.labels
        .iter()
        .filter(|(k, _)| !k.starts_with(CRI_PLUGIN_PREFIX))
        .take(MAX_LABELS)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Classifies a record of namespace `ns`.
pub fn classify(ns: &str, c: &Container, max_spec_bytes: usize) -> Record {
    if ns == DOCKER_NAMESPACE {
        return Record::Ignored;
    }
    if ns != CRI_NAMESPACE {
        return match ContainerId::parse(&c.id) {
            Some(id) => Record::Plain(plain_meta(id, ns, c)),
            None => Record::Ignored,
        };
    }
    let ann = spec_annotations(c, max_spec_bytes);
    let labels = cri_labels(c);
    let first = |label: &str, annotation: &str| {
        labels
            .get(label)
            .or_else(|| ann.get(annotation))
            .cloned()
            .unwrap_or_default()
    };
    match c.labels.get(LABEL_CRI_KIND).map(String::as_str) {
        Some("sandbox") => Record::Sandbox(PodInfo {
            name: first(LABEL_POD_NAME, ANN_SANDBOX_NAME),
            namespace: first(LABEL_POD_NAMESPACE, ANN_SANDBOX_NAMESPACE),
            uid: first(LABEL_POD_UID, ANN_SANDBOX_UID),
            labels,
            ip: String::new(),
        }),
        Some("container") if ContainerId::parse(&c.id).is_some() => Record::Cri {
            container: CriContainer {
                id: c.id.clone(),
                sandbox: ann.get(ANN_SANDBOX_ID).cloned().unwrap_or_default(),
                name: first(LABEL_CONTAINER_NAME, ANN_CONTAINER_NAME),
                image: c.image.clone(),
                image_ref: String::new(),
                labels,
                exited: false,
            },
            sandbox: ann.get(ANN_SANDBOX_ID).filter(|s| !s.is_empty()).cloned(),
        },
        _ => Record::Ignored,
    }
}

/// The metadata of a container started straight on containerd.
pub fn plain_meta(id: ContainerId, ns: &str, c: &Container) -> ContainerMeta {
    let labels = c
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != LABEL_NAMESPACE)
        .take(MAX_LABELS - 1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain([(LABEL_NAMESPACE.to_owned(), ns.to_owned())]);
    let name = c
        .labels
        .get(LABEL_NERDCTL_NAME)
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let image = Some(c.image.as_str()).filter(|s| !s.is_empty());
    let mut m = ContainerMeta::from_parts(id, name, image, None, labels, None);
    // No kubelet outside k8s.io: these are plain labels, not the pod's identity.
    m.k8s_ns_name = NA.into();
    m.k8s_pod_name = NA.into();
    m.source = MetaSource::Containerd;
    m
}

pub struct ContainerdEnricher {
    table: WeakContainerTable,
    cfg: ContainerdConfig,
    health: ContainerdHealth,
    /// Containers this task owns and stored.
    known: HashSet<ContainerId>,
    /// CRI containers stored at create time (removed at their delete event).
    /// With when: one whose delete was missed (containerd restarting) is checked at a resync.
    early: HashMap<ContainerId, std::time::Instant>,
    /// CRI pod sandboxes by id.
    pods: HashMap<String, PodInfo>,
}

impl ContainerdEnricher {
    pub fn new(table: &ContainerTable, cfg: ContainerdConfig) -> Self {
        Self {
            table: table.downgrade(),
            cfg,
            health: ContainerdHealth::default(),
            known: HashSet::new(),
            early: HashMap::new(),
            pods: HashMap::new(),
        }
    }

    pub fn health(&self) -> ContainerdHealth {
        self.health.clone()
    }

    fn set_up(&self, up: bool, subscribed: bool) {
        if let Some(t) = self.table.upgrade() {
            t.set_containerd_up(up, subscribed);
        }
        self.health.update(|h| {
            h.up = up;
            h.subscribed = subscribed;
        });
    }

    /// Runs until every [`ContainerTable`] handle is dropped. With no socket configured and
    /// none present, or a socket that is not containerd, it looks again every `backoff_max`,
    /// quietly.
    pub async fn run(mut self) {
        let mut backoff = self.cfg.backoff_min;
        let mut warned = false;
        loop {
            if self.table.upgrade().is_none() {
                return;
            }
            let r = self.session().await;
            let was_up = self.health.get().up;
            self.set_up(false, false);
            match r {
                Ok(()) => return,
                Err(ContainerdError::NoSocket) => {
                    debug!("no containerd socket found");
                    backoff = self.cfg.backoff_max;
                }
                Err(e) if e.is_unimplemented() => {
                    debug!(error = %e, "the socket does not serve containerd's API");
                    backoff = self.cfg.backoff_max;
                }
                Err(e) => {
                    if was_up {
                        backoff = self.cfg.backoff_min;
                        warned = false;
                    }
                    if warned {
                        debug!(error = %e, "containerd still unreachable");
                    } else {
                        warn!(error = %e, "containerd unreachable; metadata of containers started on it is <NA> until it returns");
                        warned = true;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    /// One connection. `Ok(())` when the table is gone (shut down).
    async fn session(&mut self) -> Result<(), ContainerdError> {
        let socket = self.cfg.pick_socket().ok_or(ContainerdError::NoSocket)?;
        self.health.update(|h| h.socket = Some(socket.clone()));
        let conn = Conn::open(&socket, &self.cfg).await?;
        let version = conn.version().await?;
        // Subscribed before the list: a container created in between is in one or the other
        // (the resync catches one created while the subscription is on its way).
        let (_task, mut events) = conn.spawn_events(self.cfg.event_queue);
        info!(socket = %socket.display(), %version, "containerd API connected, events subscribed");
        self.health.update(|h| h.version = version);
        self.set_up(true, true);
        self.sync(&conn).await?;
        let mut resync = tokio::time::interval(self.cfg.resync_interval);
        resync.tick().await;
        loop {
            if self.table.upgrade().is_none() {
                return Ok(());
            }
            tokio::select! {
                _ = resync.tick() => self.sync(&conn).await?,
                msg = events.recv() => match msg {
                    Some(Ok(env)) => self.on_event(&conn, env).await?,
                    Some(Err(s)) => return Err(ContainerdError::Status("Events.Subscribe", s)),
                    None => return Err(ContainerdError::Status("Events.Subscribe", tonic::Status::unavailable("stream ended"))),
                },
            }
        }
    }

    async fn on_event(&mut self, conn: &Conn, env: Envelope) -> Result<(), ContainerdError> {
        let ns = env.namespace.as_str();
        let Some(payload) = env.event.as_ref().map(|a| a.value.as_slice()) else {
            return Ok(());
        };
        if !valid_namespace(ns) {
            debug!(namespace = %bounded(ns), "event from an invalid namespace");
            return Ok(());
        }
        let id = match env.topic.as_str() {
            "/containers/create" => ContainerCreate::decode(payload).map(|e| e.id),
            "/containers/update" => ContainerUpdate::decode(payload).map(|e| e.id),
            "/containers/delete" => {
                let id = ContainerDelete::decode(payload).map(|e| e.id);
                if let Ok(id) = id {
                    self.forget(&id);
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let Ok(id) = id else {
            debug!(topic = %bounded(&env.topic), "undecodable containerd event");
            return Ok(());
        };
        // Docker's containers are Docker's; updates in k8s.io are the CRI client's to follow.
        if ns == DOCKER_NAMESPACE || (ns == CRI_NAMESPACE && env.topic != "/containers/create") {
            return Ok(());
        }
        if let Some(c) = conn.get(ns, &id).await? {
            self.record(conn, ns, &c, true).await?;
        }
        Ok(())
    }

    /// A container or sandbox is gone.
    fn forget(&mut self, id: &str) {
        self.pods.remove(id);
        let Some(id) = ContainerId::parse(id) else {
            return;
        };
        let ours = self.known.remove(&id) | self.early.remove(&id).is_some();
        if ours && let Some(t) = self.table.upgrade() {
            t.remove(&id);
        }
    }

    /// Acts on one record: stores it (`changed`: even when already known), or remembers its pod.
    async fn record(
        &mut self,
        conn: &Conn,
        ns: &str,
        c: &Container,
        changed: bool,
    ) -> Result<(), ContainerdError> {
        match classify(ns, c, self.cfg.max_spec_bytes) {
            Record::Ignored => {}
            Record::Sandbox(pod) => self.remember_pod(c.id.clone(), pod),
            Record::Plain(meta) => {
                let Some(t) = self.table.upgrade() else {
                    return Ok(());
                };
                let new = !self.known.contains(&meta.id);
                // Stored again when the table lost it (evicted) or a miss replaced it.
                let lost = t
                    .peek(&meta.id)
                    .is_none_or(|m| m.status != MetaStatus::Ready);
                if (new || changed || lost) && (!new || self.known.len() < self.cfg.max_containers)
                {
                    let id = meta.id.clone();
                    debug!(container = %id.short(), namespace = ns, image = %meta.image, "containerd container");
                    if t.store_unowned(meta, false) {
                        self.known.insert(id);
                    }
                }
            }
            Record::Cri { container, sandbox } => {
                let Some(id) = ContainerId::parse(&container.id) else {
                    return Ok(());
                };
                if let Some(sb) = sandbox.as_deref()
                    && !self.pods.contains_key(sb)
                    && let Some(s) = conn.get(CRI_NAMESPACE, sb).await?
                    && let Record::Sandbox(pod) =
                        classify(CRI_NAMESPACE, &s, self.cfg.max_spec_bytes)
                {
                    self.remember_pod(sb.to_owned(), pod);
                }
                let pod = sandbox.as_deref().and_then(|sb| self.pods.get(sb));
                let meta = meta_of(id.clone(), &container, pod);
                let Some(t) = self.table.upgrade() else {
                    return Ok(());
                };
                debug!(container = %id.short(), ns = %meta.k8s_ns_name, "CRI container at create");
                if t.store_unowned(meta, true) && self.early.len() < self.cfg.max_containers {
                    self.early.insert(id, std::time::Instant::now());
                }
            }
        }
        Ok(())
    }

    fn remember_pod(&mut self, id: String, pod: PodInfo) {
        if self.pods.len() >= self.cfg.max_sandboxes && !self.pods.contains_key(&id) {
            // Sandboxes whose delete was missed: start over (a miss costs one Get).
            self.pods.clear();
        }
        self.pods.insert(id, pod);
    }

    /// Lists every namespace's containers (but the CRI's and Docker's): stores new ones,
    /// removes the ones gone.
    async fn sync(&mut self, conn: &Conn) -> Result<(), ContainerdError> {
        let (namespaces, more) = conn.namespaces(self.cfg.max_namespaces).await?;
        if more {
            warn!(
                cap = self.cfg.max_namespaces,
                "more containerd namespaces than guard follows; containers in the rest have <NA> metadata"
            );
        }
        let mut seen = HashSet::new();
        for ns in namespaces
            .iter()
            .filter(|n| *n != CRI_NAMESPACE && *n != DOCKER_NAMESPACE)
        {
            let left = self.cfg.max_containers.saturating_sub(seen.len());
            for c in conn.list(ns, left).await? {
                if let Some(id) = ContainerId::parse(&c.id) {
                    seen.insert(id);
                }
                self.record(conn, ns, &c, false).await?;
            }
        }
        let gone: Vec<ContainerId> = self
            .known
            .iter()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        let Some(t) = self.table.upgrade() else {
            return Ok(());
        };
        for id in gone {
            self.known.remove(&id);
            t.remove(&id);
        }
        drop(t);
        // Create-time entries the CRI client has had a resync's time to take over: one whose
        // record is gone (its delete missed) is removed; the rest are the CRI client's now.
        let old: Vec<ContainerId> = self
            .early
            .iter()
            .filter(|(_, at)| at.elapsed() >= self.cfg.resync_interval)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            self.early.remove(&id);
            if conn.get(CRI_NAMESPACE, id.as_str()).await?.is_none()
                && let Some(t) = self.table.upgrade()
            {
                t.remove(&id);
            }
        }
        Ok(())
    }
}

/// For `guard doctor`: the version, the namespaces, and whether events can be subscribed.
pub async fn probe(socket: &Path, cfg: &ContainerdConfig) -> Result<String, ContainerdError> {
    let conn = Conn::open(socket, cfg).await?;
    let version = conn.version().await?;
    let (namespaces, _) = conn.namespaces(cfg.max_namespaces).await?;
    // containerd answers a subscription only with its first event: an error within a short
    // wait is a refusal, no answer is an open subscription.
    let (_task, mut rx) = conn.spawn_events(1);
    let events = match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        Ok(Some(Err(s))) => format!("events: not subscribed ({s})"),
        _ => "events: subscribed".to_owned(),
    };
    Ok(format!(
        "{version}, namespaces [{}], {events}",
        namespaces.join(", ")
    ))
}

#[cfg(test)]
mod tests;
