use super::*;
use crate::state::container::{ContainerChange, ContainerTableConfig, MetaStatus};
use std::sync::{Arc, Mutex};

const A: &str = "3f1c2e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";
const SB: &str = "aa1c2e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";

fn record(
    id: &str,
    image: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> Container {
    let ann: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    Container {
        id: id.into(),
        image: image.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
    .with_spec(
        serde_json::to_vec(&serde_json::json!({"ociVersion": "1.0.2", "annotations": ann}))
            .expect("json"),
    )
}

trait WithSpec {
    fn with_spec(self, value: Vec<u8>) -> Self;
}

impl WithSpec for Container {
    /// A spec `Any` holding `value` (the crate does not re-export prost's `Any`: built from one).
    fn with_spec(mut self, value: Vec<u8>) -> Self {
        let mut a = containerd_client::to_any(&ContainerDelete::default());
        a.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Spec".into();
        a.value = value;
        self.spec = Some(a);
        self
    }
}

#[test]
fn namespaces_are_validated() {
    for ok in ["default", "k8s.io", "guardtest", "a", "n-1_x.y"] {
        assert!(valid_namespace(ok), "{ok}");
    }
    let long = "a".repeat(77);
    for bad in ["", "-x", ".x", "a/b", "a b", "ns\n", long.as_str(), "é"] {
        assert!(!valid_namespace(bad), "{bad:?}");
    }
}

/// A container started on containerd: image, labels, the namespace as a label guard sets
/// (a label of that name from the container is replaced), nerdctl's name, no `k8s.*`.
#[test]
fn plain_containers_are_described() {
    let c = record(
        A,
        "docker.io/library/busybox:1.36",
        &[
            ("guard.test", "x"),
            (LABEL_NERDCTL_NAME, "web"),
            (LABEL_NAMESPACE, "k8s.io"),
            ("io.kubernetes.pod.namespace", "prod"),
        ],
        &[],
    );
    let Record::Plain(m) = classify("guardtest", &c, 1 << 20) else {
        panic!("not plain: {:?}", classify("guardtest", &c, 1 << 20));
    };
    assert_eq!(m.source, MetaSource::Containerd);
    assert_eq!(m.status, MetaStatus::Ready);
    assert_eq!(m.image, "docker.io/library/busybox:1.36");
    assert_eq!(
        (m.image_repository.as_str(), m.image_tag.as_str()),
        ("docker.io/library/busybox", "1.36")
    );
    assert_eq!(m.label("guard.test"), "x");
    assert_eq!(m.label(LABEL_NAMESPACE), "guardtest");
    assert_eq!(m.name, "web");
    assert_eq!(m.k8s_ns_name, NA, "no kubelet outside k8s.io");
    // No nerdctl name: <NA>.
    let c = record(A, "busybox", &[], &[]);
    let Record::Plain(m) = classify("default", &c, 1 << 20) else {
        panic!("not plain");
    };
    assert_eq!(m.name, NA);
    // Docker's namespace, and ids that are not container ids, are not ours.
    assert_eq!(classify(DOCKER_NAMESPACE, &c, 1 << 20), Record::Ignored);
    let named = record("mybox", "busybox", &[], &[]);
    assert_eq!(classify("default", &named, 1 << 20), Record::Ignored);
}

/// In k8s.io: a sandbox record gives its pod (labels without the CRI plugin's own), a
/// container record its kubelet labels and its sandbox (from the spec annotation).
#[test]
fn cri_records_are_classified() {
    let sb = record(
        SB,
        "docker.io/guard-test/pause:1",
        &[("app", "web"), (LABEL_CRI_KIND, "sandbox")],
        &[
            (ANN_SANDBOX_NAME, "web-0"),
            (ANN_SANDBOX_NAMESPACE, "prod"),
            (ANN_SANDBOX_UID, "u-1"),
        ],
    );
    let Record::Sandbox(pod) = classify(CRI_NAMESPACE, &sb, 1 << 20) else {
        panic!("not a sandbox");
    };
    assert_eq!(
        (pod.name.as_str(), pod.namespace.as_str(), pod.uid.as_str()),
        ("web-0", "prod", "u-1")
    );
    assert_eq!(pod.labels, BTreeMap::from([("app".into(), "web".into())]));

    let c = record(
        A,
        "docker.io/guard-test/busybox:1",
        &[
            (LABEL_CRI_KIND, "container"),
            ("io.kubernetes.pod.namespace", "prod"),
            (LABEL_CONTAINER_NAME, "app"),
        ],
        &[(ANN_SANDBOX_ID, SB)],
    );
    let Record::Cri { container, sandbox } = classify(CRI_NAMESPACE, &c, 1 << 20) else {
        panic!("not a CRI container");
    };
    assert_eq!(sandbox.as_deref(), Some(SB));
    assert_eq!(container.name, "app");
    assert!(!container.labels.contains_key(LABEL_CRI_KIND));
    let m = meta_of(ContainerId::parse(A).expect("id"), &container, Some(&pod));
    assert_eq!(m.source, MetaSource::Cri);
    assert_eq!(m.k8s_ns_name, "prod");
    assert_eq!(m.pod_labels.get("app").map(String::as_str), Some("web"));

    // Without kubelet's labels the pod's namespace comes from the sandbox (meta_of).
    let bare = record(
        A,
        "busybox",
        &[(LABEL_CRI_KIND, "container")],
        &[(ANN_SANDBOX_ID, SB)],
    );
    let Record::Cri { container, .. } = classify(CRI_NAMESPACE, &bare, 1 << 20) else {
        panic!("not a CRI container");
    };
    assert_eq!(
        meta_of(ContainerId::parse(A).expect("id"), &container, Some(&pod)).k8s_ns_name,
        "prod"
    );
    // A record of unknown kind, or none, is not acted on.
    let odd = record(A, "busybox", &[(LABEL_CRI_KIND, "other")], &[]);
    assert_eq!(classify(CRI_NAMESPACE, &odd, 1 << 20), Record::Ignored);
}

/// A spec over the bound, or not JSON, gives no annotations (and no sandbox), never a panic.
#[test]
fn spec_annotations_are_bounded() {
    let c = record(A, "busybox", &[], &[(ANN_SANDBOX_ID, SB)]);
    assert_eq!(
        spec_annotations(&c, 1 << 20)
            .get(ANN_SANDBOX_ID)
            .map(String::as_str),
        Some(SB)
    );
    let len = c.spec.as_ref().map_or(0, |a| a.value.len());
    assert!(spec_annotations(&c, len - 1).is_empty());
    let mut junk = c.clone().with_spec(b"{\"annotations\": [1,2".to_vec());
    assert!(spec_annotations(&junk, 1 << 20).is_empty());
    junk.spec = None;
    assert!(spec_annotations(&junk, 1 << 20).is_empty());
}

/// One source owns each container: the containerd client does not replace Docker's or the
/// CRI's metadata; the CRI client replaces the create-time entry; the Ready hook fires on
/// each store (what puts the policy into POLICY_PENDING).
#[test]
fn store_unowned_respects_owners_and_fires_the_hook() {
    let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f = fired.clone();
    table.set_hook(Arc::new(move |c: ContainerChange<'_>| {
        if let ContainerChange::Ready(m) = c {
            f.lock().expect("lock").push((m.source, m.name.clone()));
        }
    }));
    let id = ContainerId::parse(A).expect("id");
    let meta = |source, name: &str| {
        let mut m = ContainerMeta::from_parts(
            id.clone(),
            Some(name),
            Some("busybox"),
            None,
            Vec::new(),
            None,
        );
        m.source = source;
        m
    };
    // Create time (CRI container): stored, hook fired.
    assert!(table.store_unowned(meta(MetaSource::Cri, "early"), true));
    // A second create-time store does not replace it.
    assert!(!table.store_unowned(meta(MetaSource::Cri, "again"), true));
    // The CRI client's description replaces it.
    table.store(meta(MetaSource::Cri, "cri"));
    assert_eq!(table.peek(&id).expect("entry").name, "cri");
    // containerd's own metadata never replaces another source's.
    assert!(!table.store_unowned(meta(MetaSource::Containerd, "ctrd"), false));
    assert_eq!(table.peek(&id).expect("entry").name, "cri");
    // A pending entry (a lookup before anyone answered) is replaced.
    let other = ContainerId::parse(SB).expect("id");
    let _ = table.lookup(&other);
    let mut m = meta(MetaSource::Containerd, "mine");
    m.id = other.clone();
    assert!(table.store_unowned(m.clone(), false));
    // Its own source may update it.
    m.name = "renamed".into();
    assert!(table.store_unowned(m, false));
    assert_eq!(table.peek(&other).expect("entry").name, "renamed");
    assert_eq!(
        *fired.lock().expect("lock"),
        vec![
            (MetaSource::Cri, "early".to_owned()),
            (MetaSource::Cri, "cri".to_owned()),
            (MetaSource::Containerd, "mine".to_owned()),
            (MetaSource::Containerd, "renamed".to_owned()),
        ]
    );
}

/// No containerd at the socket: the table says down, not subscribed, and the task ends
/// with the table.
#[tokio::test]
async fn unreachable_containerd_is_down() {
    let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
    let sock = std::env::temp_dir().join(format!("guard-ctrd-none-{}.sock", std::process::id()));
    let e = ContainerdEnricher::new(
        &table,
        ContainerdConfig {
            socket: Some(sock.clone()),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let health = e.health();
    let task = tokio::spawn(e.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!table.containerd_up());
    assert!(!table.containerd_events());
    let h = health.get();
    assert_eq!(h.socket.as_deref(), Some(sock.as_path()));
    assert!(!h.up && !h.subscribed);
    drop(table);
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the task ends with the table")
        .expect("no panic");
}

/// A connection that is never used (every record the test gives is resolved from the cache);
/// a call would fail, which the test would see as an error.
fn unused_conn() -> Conn {
    Conn {
        channel: tonic::transport::Endpoint::from_static("http://[::]:1").connect_lazy(),
        max: 1 << 20,
        timeout: Duration::from_millis(100),
    }
}

/// The event path without a server: a sandbox's create caches its pod; its container's create
/// stores the container with kubelet's and the pod's labels and fires the Ready hook (what
/// binds the policy before the cgroup exists); the delete removes it. A ctr container is
/// stored with its namespace and removed at its delete; a Docker one is left alone.
#[tokio::test]
async fn create_and_delete_records() {
    let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let h = hooked.clone();
    table.set_hook(Arc::new(move |c: ContainerChange<'_>| match c {
        ContainerChange::Ready(m) => {
            h.lock()
                .expect("lock")
                .push(format!("ready {} ns={}", m.id.short(), m.k8s_ns_name))
        }
        ContainerChange::Removed(id) => h
            .lock()
            .expect("lock")
            .push(format!("removed {}", id.short())),
    }));
    let mut e = ContainerdEnricher::new(&table, ContainerdConfig::default());
    let conn = unused_conn();
    let sb = record(
        SB,
        "docker.io/guard-test/pause:1",
        &[("app", "web"), (LABEL_CRI_KIND, "sandbox")],
        &[(ANN_SANDBOX_NAMESPACE, "prod"), (ANN_SANDBOX_NAME, "web-0")],
    );
    e.record(&conn, CRI_NAMESPACE, &sb, true)
        .await
        .expect("sandbox");
    assert!(table.is_empty(), "a sandbox is not a container entry");
    let c = record(
        A,
        "docker.io/guard-test/busybox:1",
        &[(LABEL_CRI_KIND, "container"), (LABEL_CONTAINER_NAME, "app")],
        &[(ANN_SANDBOX_ID, SB)],
    );
    e.record(&conn, CRI_NAMESPACE, &c, true)
        .await
        .expect("container");
    let id = ContainerId::parse(A).expect("id");
    let m = table.peek(&id).expect("stored at create");
    assert_eq!((m.name.as_str(), m.k8s_ns_name.as_str()), ("app", "prod"));
    assert_eq!(m.k8s_pod_name, "web-0");
    assert_eq!(m.pod_labels.get("app").map(String::as_str), Some("web"));
    e.forget(A);
    assert!(table.peek(&id).is_none(), "removed at its delete");

    // A ctr container in a plain namespace, and one in Docker's.
    let plain = record(A, "busybox:1", &[("guard.test", "x")], &[]);
    e.record(&conn, "guardtest", &plain, false)
        .await
        .expect("plain");
    let m = table.peek(&id).expect("stored");
    assert_eq!(m.source, MetaSource::Containerd);
    assert_eq!(m.label(LABEL_NAMESPACE), "guardtest");
    let docker = record(SB, "nginx", &[], &[]);
    e.record(&conn, DOCKER_NAMESPACE, &docker, true)
        .await
        .expect("docker");
    assert!(table.peek(&ContainerId::parse(SB).expect("id")).is_none());
    e.forget(A);
    assert!(table.is_empty());
    assert_eq!(
        *hooked.lock().expect("lock"),
        vec![
            format!("ready {} ns=prod", &A[..12]),
            format!("removed {}", &A[..12]),
            format!("ready {} ns={NA}", &A[..12]),
            format!("removed {}", &A[..12]),
        ]
    );
}
