//! Container identity and metadata.
//!
//! Identity comes from the cgroup path ([`parse_cgroup_path`]); metadata (name, image, labels)
//! comes from the Docker API through [`super::docker`] or from the Kubernetes CRI through
//! [`super::cri`], and is cached in [`ContainerTable`].
//! Lookups never block: they return what is cached, or `<NA>` fields while enrichment is
//! pending or the daemon is unreachable.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::sync::mpsc;

/// The value of a metadata field guard does not know, as in Falco.
pub const NA: &str = "<NA>";

/// Longest cgroup path we parse; longer ones are not container paths we know.
const MAX_CGROUP_PATH: usize = 4096;

/// A container id: 64 lowercase hex digits (docker, containerd, cri-o, podman all use these).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(Box<str>);

impl ContainerId {
    /// Accepts exactly 64 hex digits, either case; stores lowercase.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(s.to_ascii_lowercase().into_boxed_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit short id, which is what Falco's `container.id` shows.
    pub fn short(&self) -> &str {
        // 64 ASCII bytes by construction, so the slice is on a char boundary.
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContainerId({})", self.short())
    }
}

/// Which runtime's naming the cgroup path used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
    /// A bare 64-hex directory under kubepods (cgroupfs driver): docker or containerd.
    Kubernetes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupContainer {
    /// The outermost container in the path: the one the host's runtime created.
    pub id: ContainerId,
    pub runtime: Runtime,
    /// The innermost container when containers nest (docker-in-docker): the inner daemon's id.
    pub nested: Option<ContainerId>,
    /// The containerd namespace of a container started straight on containerd (`/NS/<id>`).
    pub namespace: Option<Box<str>>,
}

impl Runtime {
    /// Falco's `container.type` for this layout.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd | Runtime::Kubernetes => "containerd",
            Runtime::Crio => "cri-o",
            Runtime::Podman => "podman",
        }
    }
}

/// Finds the container in a cgroup path (as in `/proc/PID/cgroup`, relative to the hierarchy).
///
/// The OUTERMOST matching component wins. A container that can write its own cgroup tree (a
/// privileged one, or any with a delegated cgroup namespace) can create child cgroups with any
/// name, such as `docker-<victim id>.scope`; taking the innermost match would let it pick
/// another container's identity and policy. Components above the container are created by the
/// host, so the outermost match is the identity the host vouches for.
pub fn parse_cgroup_path(path: &str) -> Option<CgroupContainer> {
    if path.len() > MAX_CGROUP_PATH {
        return None;
    }
    let mut found: Option<CgroupContainer> = None;
    let mut prev = "";
    let mut under_kubepods = false;
    // containerd without a cgroup parent (ctr, nerdctl cgroupfs, CRI without kubelet) puts a
    // container at `/<namespace>/<id>`, directly under the root.
    let mut comps = path.strip_prefix('/').unwrap_or(path).split('/');
    if let (Some(ns), Some(id)) = (comps.next(), comps.next())
        && is_containerd_namespace(ns)
        && let Some(id) = ContainerId::parse(id)
    {
        found = Some(CgroupContainer {
            id,
            runtime: Runtime::Containerd,
            nested: None,
            namespace: Some(ns.into()),
        });
    }
    let skip = if found.is_some() { 2 } else { 0 };
    for comp in path.strip_prefix('/').unwrap_or(path).split('/').skip(skip) {
        if comp.starts_with("kubepods") {
            under_kubepods = true;
        }
        if let Some((id, runtime)) = match_component(comp, prev, under_kubepods) {
            match &mut found {
                None => {
                    found = Some(CgroupContainer {
                        id,
                        runtime,
                        nested: None,
                        namespace: None,
                    })
                }
                Some(f) => f.nested = Some(id),
            }
        }
        prev = comp;
    }
    found
}

/// containerd's namespace names: letters, digits, `.`, `_`, `-`, starting with a letter or
/// digit (its `identifiers.Validate`), at most 76 bytes. Docker's own (`docker`, which has its
/// layout) and LXC's payload/monitor trees are not containerd.
fn is_containerd_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 76
        && ns.as_bytes()[0].is_ascii_alphanumeric()
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && !matches!(ns, "docker" | "lxc.payload" | "lxc.monitor" | "kubepods")
        && !ns.ends_with(".slice")
        && !ns.ends_with(".scope")
        && !ns.ends_with(".service")
}

fn match_component(comp: &str, prev: &str, under_kubepods: bool) -> Option<(ContainerId, Runtime)> {
    // cgroupfs driver: the directory is the bare id.
    if let Some(id) = ContainerId::parse(comp) {
        let runtime = if prev == "docker" {
            Runtime::Docker
        } else if under_kubepods {
            Runtime::Kubernetes
        } else {
            // A bare 64-hex directory elsewhere (e.g. `/lxc.payload/<id>`) is not a layout we
            // know; guessing would mislabel host workloads.
            return None;
        };
        return Some((id, runtime));
    }
    // containerd's cgroupfs form for kubelet with the systemd driver outside systemd:
    // `kubepods-burstable-pod<uid>.slice:cri-containerd:<id>`.
    let mut colon = comp.rsplitn(3, ':');
    if let (Some(id), Some(kind), Some(_)) = (colon.next(), colon.next(), colon.next())
        && let Some(id) = ContainerId::parse(id)
    {
        return runtime_of_prefix(kind).map(|r| (id, r));
    }
    // systemd driver: `<prefix>-<id>.scope`; cri-o cgroupfs: `crio-<id>`.
    let stem = comp.strip_suffix(".scope").unwrap_or(comp);
    let (prefix, id) = stem.rsplit_once('-')?;
    let id = ContainerId::parse(id)?;
    runtime_of_prefix(prefix).map(|r| (id, r))
}

fn runtime_of_prefix(prefix: &str) -> Option<Runtime> {
    // `crio-conmon-<id>` and `libpod-conmon-<id>` (and cgroupfs Podman's `/libpod_parent/conmon`)
    // hold conmon, the runtime's monitor: a host process in the host's namespaces, which the
    // runtime starts before the container and which outlives it. It is the host, so a
    // container's policy and rules never apply to it.
    match prefix {
        "docker" => Some(Runtime::Docker),
        "cri-containerd" => Some(Runtime::Containerd),
        "crio" => Some(Runtime::Crio),
        "libpod" => Some(Runtime::Podman),
        // nerdctl with the systemd cgroup driver.
        "nerdctl" => Some(Runtime::Containerd),
        _ => None,
    }
}

/// What answers on the Docker API socket: Docker itself, or Podman's compatible service
/// (`podman system service`), which the same client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiEngine {
    Docker,
    Podman,
}

impl ApiEngine {
    /// The `runtime` label of `guard_container_runtime_up`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiEngine::Docker => "docker",
            ApiEngine::Podman => "podman",
        }
    }

    /// The daemon in messages.
    pub fn daemon(self) -> &'static str {
        match self {
            ApiEngine::Docker => "docker daemon",
            ApiEngine::Podman => "podman service",
        }
    }

    fn from_u8(v: u8) -> Self {
        if v == 1 {
            ApiEngine::Podman
        } else {
            ApiEngine::Docker
        }
    }
}

/// An image reference split as Falco does: repository (with registry and port), tag, digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    /// `latest` when the reference has neither tag nor digest; empty when it has only a digest.
    pub tag: String,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(image: &str) -> Self {
        // An image id (`sha256:<hex>`), as when a container is run by id: no repository.
        if let Some(hex) = image.strip_prefix("sha256:")
            && hex.len() == 64
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Self {
                repository: String::new(),
                tag: String::new(),
                digest: Some(image.to_owned()),
            };
        }
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d.to_owned())),
            None => (image, None),
        };
        // A tag's colon comes after the last slash; a colon before it is a registry port.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
            None => (name, ""),
        };
        let tag = if tag.is_empty() && digest.is_none() {
            "latest"
        } else {
            tag
        };
        Self {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            digest,
        }
    }
}

/// Where a container's metadata stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaStatus {
    /// Asked for, not answered yet.
    Pending,
    /// From the daemon.
    Ready,
    /// The daemon was unreachable or does not know the container; fields are `<NA>`.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMeta {
    pub id: ContainerId,
    pub status: MetaStatus,
    /// Which client filled it (decides which runtime's health `<NA>` follows).
    pub source: MetaSource,
    /// Without Docker's leading `/`.
    pub name: String,
    /// The image as the container was created with (`Config.Image`).
    pub image: String,
    pub image_repository: String,
    pub image_tag: String,
    pub image_digest: Option<String>,
    /// The image's content id (`sha256:...`).
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub privileged: Option<bool>,
    pub k8s_pod_name: String,
    pub k8s_ns_name: String,
    /// The pod sandbox's labels (CRI; empty from Docker).
    pub pod_labels: BTreeMap<String, String>,
    /// The pod's IP when the runtime reports one (CRI); `<NA>` otherwise.
    pub pod_ip: String,
    /// The container has died; kept for late events until it is destroyed or evicted.
    pub exited: bool,
    /// Docker inspect's `Mounts`, at most [`MAX_MOUNTS`].
    pub mounts: Vec<crate::model::Mount>,
}

/// Where a container's metadata came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaSource {
    /// The Docker API (bollard).
    Docker,
    /// The Kubernetes CRI (containerd, CRI-O).
    Cri,
    /// containerd's own API, for containers started straight on containerd (`ctr`, nerdctl).
    Containerd,
}

/// Bounds on what one container's metadata may hold; labels come from image authors.
pub const MAX_LABELS: usize = 256;
pub const MAX_FIELD_BYTES: usize = 4096;
pub const MAX_MOUNTS: usize = 64;

impl ContainerMeta {
    pub fn unknown(id: ContainerId, status: MetaStatus) -> Self {
        Self {
            id,
            status,
            name: NA.into(),
            image: NA.into(),
            image_repository: NA.into(),
            image_tag: NA.into(),
            image_digest: None,
            image_id: NA.into(),
            labels: BTreeMap::new(),
            privileged: None,
            k8s_pod_name: NA.into(),
            k8s_ns_name: NA.into(),
            pod_labels: BTreeMap::new(),
            pod_ip: NA.into(),
            exited: false,
            source: MetaSource::Docker,
            mounts: Vec::new(),
        }
    }

    /// Builds metadata from the daemon's answer. Missing fields become `<NA>`.
    pub fn from_parts(
        id: ContainerId,
        name: Option<&str>,
        image: Option<&str>,
        image_id: Option<&str>,
        labels: impl IntoIterator<Item = (String, String)>,
        privileged: Option<bool>,
    ) -> Self {
        let mut m = Self::unknown(id, MetaStatus::Ready);
        if let Some(n) = name {
            m.name = bounded(n.strip_prefix('/').unwrap_or(n));
        }
        if let Some(image) = image.filter(|s| !s.is_empty()) {
            let r = ImageRef::parse(image);
            m.image = bounded(image);
            m.image_repository = bounded(&r.repository);
            m.image_tag = bounded(&r.tag);
            m.image_digest = r.digest.map(|d| bounded(&d));
        }
        if let Some(i) = image_id {
            m.image_id = bounded(i);
        }
        for (k, v) in labels.into_iter().take(MAX_LABELS) {
            m.labels.insert(bounded(&k), bounded(&v));
        }
        if let Some(v) = m.labels.get("io.kubernetes.pod.name") {
            m.k8s_pod_name = v.clone();
        }
        if let Some(v) = m.labels.get("io.kubernetes.pod.namespace") {
            m.k8s_ns_name = v.clone();
        }
        m.privileged = privileged;
        m
    }

    /// `container.label[key]`: `<NA>` when absent, as Falco does.
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or(NA, String::as_str)
    }
}

pub(crate) fn bounded(s: &str) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A request to the enrichment task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Inspect(ContainerId),
}

#[derive(Debug, Clone, Copy)]
pub struct ContainerTableConfig {
    pub max_containers: usize,
    /// Capacity of the queue to the enrichment task. A full queue drops the request (counted);
    /// the next lookup of that container asks again.
    pub queue: usize,
    /// How long a Pending or Unavailable entry waits before a lookup asks again.
    pub retry_after: std::time::Duration,
    /// While the daemon is unreachable, answer `<NA>` even for containers with cached
    /// metadata. Off by default: an outage does not change what a running container is, and
    /// keeping the cache keeps policy matching stable; on for a strict "no daemon, no
    /// metadata" reading.
    pub na_when_daemon_down: bool,
}

impl Default for ContainerTableConfig {
    fn default() -> Self {
        Self {
            max_containers: 4096,
            queue: 256,
            retry_after: std::time::Duration::from_secs(5),
            na_when_daemon_down: false,
        }
    }
}

struct Entry {
    meta: Arc<ContainerMeta>,
    requested_at: Option<Instant>,
    /// Milliseconds since the table was made; atomic so that hits under the read lock count.
    last_used: AtomicU64,
}

/// Counters for the metrics endpoint and tests.
#[derive(Debug, Default)]
pub struct ContainerStats {
    pub lookups: AtomicU64,
    pub requests_sent: AtomicU64,
    pub requests_dropped: AtomicU64,
    pub evictions: AtomicU64,
}

/// The container metadata cache, shared by the event path (lookups) and the enrichment task
/// (updates). Cheap to clone.
#[derive(Clone)]
pub struct ContainerTable {
    inner: Arc<Inner>,
}

/// What the table tells a [`ContainerHook`] about.
pub enum ContainerChange<'a> {
    /// Metadata from the daemon was stored (Docker create/start, or a lookup's inspect).
    Ready(&'a ContainerMeta),
    /// Docker destroy.
    Removed(&'a ContainerId),
}

/// Called, outside the table's lock, on every [`ContainerChange`]; used by policy enforcement
/// to bind a container's cgroup in the kernel before the container starts.
pub type ContainerHook = Arc<dyn Fn(ContainerChange<'_>) + Send + Sync>;

struct Inner {
    cfg: ContainerTableConfig,
    hook: RwLock<Option<ContainerHook>>,
    epoch: Instant,
    map: RwLock<HashMap<ContainerId, Entry>>,
    /// Taken after `map` when both are held.
    removed: std::sync::Mutex<removed::Removed>,
    tx: mpsc::Sender<Request>,
    daemon_up: AtomicBool,
    /// [`ApiEngine`] behind the Docker API socket, as last seen (0 Docker, 1 Podman).
    engine: std::sync::atomic::AtomicU8,
    cri_up: AtomicBool,
    containerd_up: AtomicBool,
    containerd_events: AtomicBool,
    /// Wakes the CRI task's poll early when an unknown container shows up.
    cri_nudge: tokio::sync::Notify,
    /// Wakes the policy binder when metadata is stored (a running container can be bound
    /// now rather than at the next periodic walk).
    ready: tokio::sync::Notify,
    stats: ContainerStats,
}

impl ContainerTable {
    /// Returns the table and the receiving end that [`super::docker::DockerEnricher`] consumes.
    pub fn new(cfg: ContainerTableConfig) -> (Self, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let t = Self {
            inner: Arc::new(Inner {
                cfg,
                hook: RwLock::new(None),
                epoch: Instant::now(),
                map: RwLock::new(HashMap::new()),
                removed: std::sync::Mutex::new(removed::Removed::default()),
                tx,
                daemon_up: AtomicBool::new(false),
                engine: std::sync::atomic::AtomicU8::new(0),
                cri_up: AtomicBool::new(false),
                containerd_up: AtomicBool::new(false),
                containerd_events: AtomicBool::new(false),
                cri_nudge: tokio::sync::Notify::new(),
                ready: tokio::sync::Notify::new(),
                stats: ContainerStats::default(),
            }),
        };
        (t, rx)
    }

    /// A handle that does not keep the request queue open, for the enrichment task.
    pub(crate) fn downgrade(&self) -> WeakContainerTable {
        WeakContainerTable(Arc::downgrade(&self.inner))
    }

    pub fn stats(&self) -> &ContainerStats {
        &self.inner.stats
    }

    pub fn daemon_up(&self) -> bool {
        self.inner.daemon_up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_daemon_up(&self, up: bool) {
        self.inner.daemon_up.store(up, Ordering::Relaxed);
    }

    /// What answers on the Docker API socket (Docker until Podman is seen there).
    pub fn engine(&self) -> ApiEngine {
        ApiEngine::from_u8(self.inner.engine.load(Ordering::Relaxed))
    }

    pub(crate) fn set_engine(&self, e: ApiEngine) {
        self.inner.engine.store(e as u8, Ordering::Relaxed);
    }

    /// Whether the CRI runtime answered its last call.
    pub fn cri_up(&self) -> bool {
        self.inner.cri_up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_cri_up(&self, up: bool) {
        self.inner.cri_up.store(up, Ordering::Relaxed);
    }

    /// Whether containerd's own API answered its last call.
    pub fn containerd_up(&self) -> bool {
        self.inner.containerd_up.load(Ordering::Relaxed)
    }

    /// Whether containerd's event stream is open.
    pub fn containerd_events(&self) -> bool {
        self.inner.containerd_events.load(Ordering::Relaxed)
    }

    pub(crate) fn set_containerd_up(&self, up: bool, subscribed: bool) {
        self.inner.containerd_up.store(up, Ordering::Relaxed);
        self.inner
            .containerd_events
            .store(subscribed, Ordering::Relaxed);
    }

    pub(crate) fn cri_nudged(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.cri_nudge.notified()
    }

    /// Completes after metadata was stored (a permit is kept if nobody waits).
    pub fn ready_stored(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.ready.notified()
    }

    fn source_up(&self, source: MetaSource) -> bool {
        match source {
            MetaSource::Docker => self.daemon_up(),
            MetaSource::Cri => self.cri_up(),
            MetaSource::Containerd => self.containerd_up(),
        }
    }

    /// The metadata for `id`, never blocking. A miss (or a stale Pending/Unavailable entry)
    /// queues an inspect request and returns `<NA>` fields.
    pub fn lookup(&self, id: &ContainerId) -> Arc<ContainerMeta> {
        self.inner.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        {
            let map = read(&self.inner.map);
            if let Some(e) = map.get(id) {
                e.last_used.store(self.tick(now), Ordering::Relaxed);
                if e.meta.status == MetaStatus::Ready
                    && self.inner.cfg.na_when_daemon_down
                    && !self.source_up(e.meta.source)
                {
                    return Arc::new(ContainerMeta::unknown(id.clone(), MetaStatus::Unavailable));
                }
                let fresh = e.meta.status == MetaStatus::Ready
                    || e.requested_at
                        .is_some_and(|t| now.duration_since(t) < self.inner.cfg.retry_after);
                if fresh {
                    return e.meta.clone();
                }
            }
        }
        // A container removed lately answers with what it had, and is not asked for again.
        if let Some(gone) = self.removed().get(id) {
            return gone.clone().unwrap_or_else(|| {
                Arc::new(ContainerMeta::unknown(id.clone(), MetaStatus::Unavailable))
            });
        }
        // Miss or stale: insert a placeholder and ask, under the write lock so only one
        // caller asks.
        let mut map = write(&self.inner.map);
        if !map.contains_key(id) {
            // Removed while we waited for the lock.
            if self.removed().get(id).is_some() {
                return Arc::new(ContainerMeta::unknown(id.clone(), MetaStatus::Unavailable));
            }
            self.make_room(&mut map);
        }
        let e = map.entry(id.clone()).or_insert_with(|| Entry {
            meta: Arc::new(ContainerMeta::unknown(id.clone(), MetaStatus::Pending)),
            requested_at: None,
            last_used: AtomicU64::new(0),
        });
        e.last_used.store(self.tick(now), Ordering::Relaxed);
        let due = e.meta.status != MetaStatus::Ready
            && e.requested_at
                .is_none_or(|t| now.duration_since(t) >= self.inner.cfg.retry_after);
        if due {
            e.requested_at = Some(now);
            self.send(Request::Inspect(id.clone()));
            self.inner.cri_nudge.notify_one();
        }
        e.meta.clone()
    }

    /// Learns a container early (Docker `create`, /proc seeding, first event from its cgroup)
    /// and asks for its metadata once; a known container is left alone.
    pub fn learn(&self, id: &ContainerId) {
        if read(&self.inner.map).contains_key(id) || self.removed().get(id).is_some() {
            return;
        }
        let mut map = write(&self.inner.map);
        if map.contains_key(id) || self.removed().get(id).is_some() {
            return;
        }
        self.make_room(&mut map);
        let now = Instant::now();
        map.insert(
            id.clone(),
            Entry {
                meta: Arc::new(ContainerMeta::unknown(id.clone(), MetaStatus::Pending)),
                requested_at: Some(now),
                last_used: AtomicU64::new(self.tick(now)),
            },
        );
        drop(map);
        self.send(Request::Inspect(id.clone()));
        self.inner.cri_nudge.notify_one();
    }

    /// Installs the hook told about every container change (replacing any earlier one).
    pub fn set_hook(&self, hook: ContainerHook) {
        *write(&self.inner.hook) = Some(hook);
    }

    fn notify(&self, change: ContainerChange<'_>) {
        let hook = read(&self.inner.hook).clone();
        if let Some(h) = hook {
            h(change);
        }
    }

    /// The cached metadata, without queueing anything.
    pub fn peek(&self, id: &ContainerId) -> Option<Arc<ContainerMeta>> {
        read(&self.inner.map).get(id).map(|e| e.meta.clone())
    }

    /// Stores the runtime's answer (or `Unavailable`). The runtime reporting the container
    /// makes a removed one live again.
    pub fn store(&self, meta: ContainerMeta) {
        self.store_if(meta, |_| true, true);
    }

    /// Stores metadata read second-hand (Podman's events log), unless the container was
    /// removed meanwhile: a log read behind the API stream must not bring it back.
    pub fn store_unless_removed(&self, meta: ContainerMeta) -> bool {
        self.store_if(meta, |_| true, false)
    }

    /// Stores `meta` when `may_replace` says the current entry (if any) may be replaced; one
    /// write lock, so no other client's store slips in between the check and the insert.
    /// A removed container comes back only with metadata (`Ready`) and when `revive`.
    fn store_if(
        &self,
        meta: ContainerMeta,
        may_replace: impl Fn(&ContainerMeta) -> bool,
        revive: bool,
    ) -> bool {
        let mut map = write(&self.inner.map);
        if map.get(&meta.id).is_some_and(|e| !may_replace(&e.meta)) {
            return false;
        }
        let exited = map.get(&meta.id).is_some_and(|e| e.meta.exited);
        if !map.contains_key(&meta.id) {
            let mut removed = self.removed();
            if removed.get(&meta.id).is_some() {
                if !revive || meta.status != MetaStatus::Ready {
                    return false;
                }
                removed.revive(&meta.id);
            }
            drop(removed);
            self.make_room(&mut map);
        }
        let now = Instant::now();
        let id = meta.id.clone();
        let meta = ContainerMeta {
            exited: meta.exited || exited,
            ..meta
        };
        let requested_at = (meta.status != MetaStatus::Ready).then_some(now);
        let meta = Arc::new(meta);
        map.insert(
            id,
            Entry {
                meta: meta.clone(),
                requested_at,
                last_used: AtomicU64::new(self.tick(now)),
            },
        );
        drop(map);
        if meta.status == MetaStatus::Ready {
            self.notify(ContainerChange::Ready(&meta));
            self.inner.ready.notify_one();
        }
        true
    }

    /// Stores `meta` unless another client owns the container: an entry with metadata from a
    /// different source, or (`only_new`) any entry with metadata. The containerd client uses
    /// it so it never overwrites what Docker or the CRI said. Returns whether it stored.
    pub fn store_unowned(&self, meta: ContainerMeta, only_new: bool) -> bool {
        let source = meta.source;
        self.store_if(
            meta,
            |old| old.status != MetaStatus::Ready || (!only_new && old.source == source),
            true,
        )
    }

    /// Docker `die`: keep the metadata for late events, mark it exited.
    pub fn mark_exited(&self, id: &ContainerId) {
        if let Some(e) = write(&self.inner.map).get_mut(id) {
            let mut m = (*e.meta).clone();
            m.exited = true;
            e.meta = Arc::new(m);
        }
    }

    /// The runtime removed the container (Docker `destroy`, Podman `remove`, a CRI or
    /// containerd delete). It is remembered as removed, with its metadata marked exited.
    pub fn remove(&self, id: &ContainerId) {
        let mut map = write(&self.inner.map);
        let meta = map
            .remove(id)
            .filter(|e| e.meta.status == MetaStatus::Ready)
            .map(|e| {
                let mut m = (*e.meta).clone();
                m.exited = true;
                Arc::new(m)
            });
        self.removed().insert(id.clone(), meta);
        drop(map);
        self.notify(ContainerChange::Removed(id));
    }

    /// How many removed containers are remembered (bounded by [`removed::MAX_REMOVED`]).
    #[cfg(test)]
    fn removed_len(&self) -> usize {
        self.removed().len()
    }

    fn removed(&self) -> std::sync::MutexGuard<'_, removed::Removed> {
        self.inner.removed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a container whose cgroups are all gone, unless its metadata is from the daemon
    /// (a Docker container keeps it, and its start-time policy binding, until `destroy` or
    /// eviction: it may be started again). For runtimes the daemon does not know (containerd,
    /// CRI-O under Kubernetes), this is what keeps short-lived containers from filling the
    /// table. No hook: an entry that was never Ready has no binding. Returns whether it was
    /// removed.
    pub fn forget_unresolved(&self, id: &ContainerId) -> bool {
        let mut map = write(&self.inner.map);
        if map
            .get(id)
            .is_some_and(|e| e.meta.status != MetaStatus::Ready)
        {
            map.remove(id);
            return true;
        }
        false
    }

    /// Ids whose metadata is not from the daemon: re-asked when the daemon comes back.
    pub fn not_ready(&self) -> Vec<ContainerId> {
        read(&self.inner.map)
            .iter()
            .filter(|(_, e)| e.meta.status != MetaStatus::Ready)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        read(&self.inner.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn tick(&self, now: Instant) -> u64 {
        now.duration_since(self.inner.epoch).as_millis() as u64
    }

    fn send(&self, req: Request) {
        match self.inner.tx.try_send(req) {
            Ok(()) => self
                .inner
                .stats
                .requests_sent
                .fetch_add(1, Ordering::Relaxed),
            Err(_) => self
                .inner
                .stats
                .requests_dropped
                .fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Evicts one entry when full: exited containers first, then the least recently used.
    /// O(n) over at most `max_containers`, and only when a new container arrives at capacity.
    fn make_room(&self, map: &mut HashMap<ContainerId, Entry>) {
        if map.len() < self.inner.cfg.max_containers.max(1) {
            return;
        }
        let victim = map
            .iter()
            .min_by_key(|(_, e)| (!e.meta.exited, e.last_used.load(Ordering::Relaxed)))
            .map(|(id, _)| id.clone());
        if let Some(v) = victim {
            map.remove(&v);
            self.inner.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The enrichment task's handle: when every [`ContainerTable`] is gone, the queue closes and
/// the task ends.
#[derive(Clone)]
pub(crate) struct WeakContainerTable(Weak<Inner>);

impl WeakContainerTable {
    pub(crate) fn upgrade(&self) -> Option<ContainerTable> {
        self.0.upgrade().map(|inner| ContainerTable { inner })
    }
}

// A poisoned lock only means another thread panicked mid-update; the map is still usable.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// A runtime client task's health, shared with `guard doctor` and `/metrics` (the CRI and
/// containerd clients).
#[derive(Debug, Default)]
pub struct Health<T>(std::sync::Arc<std::sync::Mutex<T>>);

impl<T> Clone for Health<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Clone + Default> Health<T> {
    pub fn get(&self) -> T {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut T)) {
        if let Ok(mut g) = self.0.lock() {
            f(&mut g);
        }
    }
}

mod removed;
#[cfg(test)]
mod tests;
