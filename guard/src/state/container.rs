//! Container identity and metadata.
//!
//! Identity comes from the cgroup path ([`parse_cgroup_path`]); metadata (name, image, labels)
//! comes from the Docker API through [`super::docker`], and is cached in [`ContainerTable`].
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
    for comp in path.split('/') {
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
                    })
                }
                Some(f) => f.nested = Some(id),
            }
        }
        prev = comp;
    }
    found
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
    // `crio-conmon-<id>` and `libpod-conmon-<id>` hold the monitor, not the container.
    match prefix {
        "docker" => Some(Runtime::Docker),
        "cri-containerd" => Some(Runtime::Containerd),
        "crio" => Some(Runtime::Crio),
        "libpod" => Some(Runtime::Podman),
        _ => None,
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
    /// The container has died; kept for late events until it is destroyed or evicted.
    pub exited: bool,
    /// Docker inspect's `Mounts`, at most [`MAX_MOUNTS`].
    pub mounts: Vec<crate::model::Mount>,
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
            exited: false,
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

pub(super) fn bounded(s: &str) -> String {
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
    tx: mpsc::Sender<Request>,
    daemon_up: AtomicBool,
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
                tx,
                daemon_up: AtomicBool::new(false),
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
                    && !self.daemon_up()
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
        // Miss or stale: insert a placeholder and ask, under the write lock so only one
        // caller asks.
        let mut map = write(&self.inner.map);
        if !map.contains_key(id) {
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
        }
        e.meta.clone()
    }

    /// Learns a container early (Docker `create`, /proc seeding, first event from its cgroup)
    /// and asks for its metadata once; a known container is left alone.
    pub fn learn(&self, id: &ContainerId) {
        if read(&self.inner.map).contains_key(id) {
            return;
        }
        let mut map = write(&self.inner.map);
        if map.contains_key(id) {
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

    /// Stores the daemon's answer (or `Unavailable`).
    pub fn store(&self, meta: ContainerMeta) {
        let mut map = write(&self.inner.map);
        let exited = map.get(&meta.id).is_some_and(|e| e.meta.exited);
        if !map.contains_key(&meta.id) {
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
        }
    }

    /// Docker `die`: keep the metadata for late events, mark it exited.
    pub fn mark_exited(&self, id: &ContainerId) {
        if let Some(e) = write(&self.inner.map).get_mut(id) {
            let mut m = (*e.meta).clone();
            m.exited = true;
            e.meta = Arc::new(m);
        }
    }

    /// Docker `destroy`, or a cache invalidation.
    pub fn remove(&self, id: &ContainerId) {
        write(&self.inner.map).remove(id);
        self.notify(ContainerChange::Removed(id));
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3f1c2e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";
    const B: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn id(s: &str) -> ContainerId {
        ContainerId::parse(s).expect("valid id")
    }

    #[test]
    fn container_id_validation() {
        assert!(ContainerId::parse(A).is_some());
        assert_eq!(
            ContainerId::parse(&A.to_uppercase()).map(|i| i.to_string()),
            Some(A.to_owned())
        );
        assert!(ContainerId::parse(&A[..63]).is_none());
        assert!(ContainerId::parse(&format!("{A}0")).is_none());
        assert!(ContainerId::parse(&format!("{}g", &A[..63])).is_none());
        // Multi-byte characters must not slip through a byte-length check.
        assert!(ContainerId::parse(&"é".repeat(32)).is_none());
        assert_eq!(id(A).short(), "3f1c2e9a7b6d");
    }

    #[test]
    fn cgroup_path_table() {
        use Runtime::*;
        let pod = "pod0f3c2a1b-7e6d-4c5b-9a8f-1e2d3c4b5a69";
        let pod_us = "pod0f3c2a1b_7e6d_4c5b_9a8f_1e2d3c4b5a69";
        type Want<'a> = Option<(&'a str, Runtime, Option<&'a str>)>;
        let cases: Vec<(String, Want)> = vec![
            // docker, cgroupfs driver (this host).
            (format!("/docker/{A}"), Some((A, Docker, None))),
            // docker, systemd driver.
            (
                format!("/system.slice/docker-{A}.scope"),
                Some((A, Docker, None)),
            ),
            // kubelet + containerd or docker, cgroupfs driver.
            (
                format!("/kubepods/burstable/{pod}/{A}"),
                Some((A, Kubernetes, None)),
            ),
            (format!("/kubepods/{pod}/{A}"), Some((A, Kubernetes, None))),
            (
                format!("/kubepods/besteffort/{pod}/{A}"),
                Some((A, Kubernetes, None)),
            ),
            // kubelet + containerd, systemd driver.
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{pod_us}.slice/cri-containerd-{A}.scope"
                ),
                Some((A, Containerd, None)),
            ),
            // containerd's own form when systemd does not create the scope.
            (
                format!(
                    "/system.slice/containerd.service/kubepods-burstable-{pod_us}.slice:cri-containerd:{A}"
                ),
                Some((A, Containerd, None)),
            ),
            // kubelet + cri-o, systemd and cgroupfs drivers.
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-{pod_us}.slice/crio-{A}.scope"
                ),
                Some((A, Crio, None)),
            ),
            (
                format!("/kubepods/burstable/{pod}/crio-{A}"),
                Some((A, Crio, None)),
            ),
            // kubelet + dockershim, systemd driver.
            (
                format!("/kubepods.slice/kubepods-{pod_us}.slice/docker-{A}.scope"),
                Some((A, Docker, None)),
            ),
            // podman.
            (
                format!("/machine.slice/libpod-{A}.scope"),
                Some((A, Podman, None)),
            ),
            (
                format!("/machine.slice/libpod-{A}.scope/container"),
                Some((A, Podman, None)),
            ),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope"
                ),
                Some((A, Podman, None)),
            ),
            // docker-in-docker: the host's container is the identity; the inner one is noted.
            (
                format!("/docker/{A}/docker/{B}"),
                Some((A, Docker, Some(B))),
            ),
            (
                format!("/system.slice/docker-{A}.scope/docker/{B}"),
                Some((A, Docker, Some(B))),
            ),
            // A container that names a child cgroup after another container cannot take its
            // identity.
            (
                format!("/docker/{A}/docker-{B}.scope"),
                Some((A, Docker, Some(B))),
            ),
            // Monitors and host cgroups are not containers.
            (format!("/machine.slice/libpod-conmon-{A}.scope"), None),
            (format!("/system.slice/crio-conmon-{A}.scope"), None),
            ("/".into(), None),
            ("".into(), None),
            ("/system.slice/sshd.service".into(), None),
            ("/user.slice/user-0.slice/session-1.scope".into(), None),
            (format!("/kubepods/burstable/{pod}"), None),
            (format!("/lxc.payload/{A}"), None),
            (format!("/docker/{}", &A[..63]), None),
            (format!("/system.slice/docker-{A}.scope.extra"), None),
            (format!("/system.slice/foo-{A}.scope"), None),
            (format!("/docker/{A}x"), None),
            ("/docker/\u{fffd}/x:y:z".into(), None),
            (format!("/{}", "a/".repeat(5000)), None),
        ];
        for (path, want) in cases {
            let got = parse_cgroup_path(&path);
            let want = want.map(|(i, r, n)| CgroupContainer {
                id: id(i),
                runtime: r,
                nested: n.map(id),
            });
            assert_eq!(got, want, "path {path}");
        }
    }

    #[test]
    fn image_ref_table() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases: Vec<(String, &str, &str, Option<&str>)> = vec![
            ("nginx".into(), "nginx", "latest", None),
            ("nginx:1.25".into(), "nginx", "1.25", None),
            (
                "library/nginx:1.25-alpine".into(),
                "library/nginx",
                "1.25-alpine",
                None,
            ),
            (
                "docker.io/library/nginx".into(),
                "docker.io/library/nginx",
                "latest",
                None,
            ),
            (
                "localhost:5000/foo/bar:1.2".into(),
                "localhost:5000/foo/bar",
                "1.2",
                None,
            ),
            (
                "localhost:5000/foo/bar".into(),
                "localhost:5000/foo/bar",
                "latest",
                None,
            ),
            (
                "registry.example.com:443/a/b/c:v1".into(),
                "registry.example.com:443/a/b/c",
                "v1",
                None,
            ),
            (format!("img@{d}"), "img", "", Some(d)),
            (format!("img:1.0@{d}"), "img", "1.0", Some(d)),
            (
                format!("localhost:5000/img@{d}"),
                "localhost:5000/img",
                "",
                Some(d),
            ),
            (d.into(), "", "", Some(d)),
            (
                "guard-test-busybox:latest".into(),
                "guard-test-busybox",
                "latest",
                None,
            ),
            // Malformed input still splits without panicking.
            (":".into(), "", "latest", None),
            ("a:".into(), "a", "latest", None),
            ("@".into(), "", "", Some("")),
            ("/:/@:".into(), "/:/", "", Some(":")),
            ("é:ü".into(), "é", "ü", None),
        ];
        for (s, repo, tag, digest) in cases {
            let got = ImageRef::parse(&s);
            assert_eq!(
                (
                    got.repository.as_str(),
                    got.tag.as_str(),
                    got.digest.as_deref()
                ),
                (repo, tag, digest),
                "image {s}"
            );
        }
    }

    #[test]
    fn meta_from_parts() {
        let labels = [
            ("io.kubernetes.pod.name".to_owned(), "web-0".to_owned()),
            ("io.kubernetes.pod.namespace".to_owned(), "prod".to_owned()),
            ("big".to_owned(), "x".repeat(MAX_FIELD_BYTES * 2)),
        ];
        let m = ContainerMeta::from_parts(
            id(A),
            Some("/web"),
            Some("localhost:5000/web:2"),
            Some("sha256:abc"),
            labels,
            Some(true),
        );
        assert_eq!(m.name, "web");
        assert_eq!(m.image_repository, "localhost:5000/web");
        assert_eq!(m.image_tag, "2");
        assert_eq!(m.k8s_pod_name, "web-0");
        assert_eq!(m.k8s_ns_name, "prod");
        assert_eq!(m.label("big").len(), MAX_FIELD_BYTES);
        assert_eq!(m.label("absent"), NA);
        assert_eq!(m.privileged, Some(true));

        let many = (0..MAX_LABELS * 2).map(|i| (format!("k{i}"), String::new()));
        let m = ContainerMeta::from_parts(id(A), None, None, None, many, None);
        assert_eq!(m.labels.len(), MAX_LABELS);
        assert_eq!(
            (m.name.as_str(), m.image.as_str(), m.k8s_pod_name.as_str()),
            (NA, NA, NA)
        );
    }

    #[test]
    fn lookup_is_non_blocking_and_queues_once() {
        let (t, mut rx) = ContainerTable::new(ContainerTableConfig::default());
        let m = t.lookup(&id(A));
        assert_eq!(m.status, MetaStatus::Pending);
        assert_eq!(m.name, NA);
        let _ = t.lookup(&id(A));
        assert_eq!(rx.try_recv().ok(), Some(Request::Inspect(id(A))));
        assert!(
            rx.try_recv().is_err(),
            "second lookup within retry_after must not re-ask"
        );

        t.store(ContainerMeta::from_parts(
            id(A),
            Some("/c"),
            Some("i"),
            None,
            [],
            None,
        ));
        assert_eq!(t.lookup(&id(A)).name, "c");
        t.mark_exited(&id(A));
        assert!(t.lookup(&id(A)).exited);
        t.remove(&id(A));
        assert!(t.peek(&id(A)).is_none());

        // learn() asks once per container, however many processes it has.
        for _ in 0..10 {
            t.learn(&id(B));
        }
        assert_eq!(rx.try_recv().ok(), Some(Request::Inspect(id(B))));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn na_when_daemon_down_option() {
        let ready = || ContainerMeta::from_parts(id(A), Some("/c"), Some("i"), None, [], None);
        let (t, _rx) = ContainerTable::new(ContainerTableConfig::default());
        t.store(ready());
        assert_eq!(
            t.lookup(&id(A)).name,
            "c",
            "default: cached metadata survives an outage"
        );
        let (t, _rx) = ContainerTable::new(ContainerTableConfig {
            na_when_daemon_down: true,
            ..Default::default()
        });
        t.store(ready());
        assert_eq!(t.lookup(&id(A)).name, NA);
        t.set_daemon_up(true);
        assert_eq!(t.lookup(&id(A)).name, "c");
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let (t, _rx) = ContainerTable::new(ContainerTableConfig {
            queue: 1,
            ..Default::default()
        });
        t.lookup(&id(A));
        t.lookup(&id(B));
        assert_eq!(t.stats().requests_sent.load(Ordering::Relaxed), 1);
        assert_eq!(t.stats().requests_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn forget_unresolved_keeps_daemon_metadata() {
        let (t, _rx) = ContainerTable::new(ContainerTableConfig::default());
        let (a, b) = (id(&format!("{:064x}", 1)), id(&format!("{:064x}", 2)));
        t.store(ContainerMeta::from_parts(
            a.clone(),
            Some("x"),
            None,
            None,
            [],
            None,
        ));
        t.store(ContainerMeta::unknown(b.clone(), MetaStatus::Unavailable));
        assert!(!t.forget_unresolved(&a), "Docker metadata is kept");
        assert!(t.forget_unresolved(&b));
        assert!(t.peek(&a).is_some() && t.peek(&b).is_none());
        assert!(!t.forget_unresolved(&b), "already gone");
    }

    #[test]
    fn table_is_bounded_and_evicts_exited_first() {
        let (t, _rx) = ContainerTable::new(ContainerTableConfig {
            max_containers: 8,
            queue: 1,
            ..Default::default()
        });
        let ids: Vec<ContainerId> = (0..100).map(|i| id(&format!("{i:064x}"))).collect();
        for i in &ids[..8] {
            t.store(ContainerMeta::from_parts(
                i.clone(),
                Some("x"),
                None,
                None,
                [],
                None,
            ));
        }
        t.mark_exited(&ids[5]);
        t.lookup(&ids[8]);
        assert!(t.peek(&ids[5]).is_none(), "the exited container goes first");
        assert!(t.peek(&ids[0]).is_some());
        for i in &ids[9..] {
            t.lookup(i);
        }
        assert_eq!(t.len(), 8);
    }
}
