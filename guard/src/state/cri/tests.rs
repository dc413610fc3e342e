use super::*;
use crate::state::container::{ContainerTableConfig, NA};

const A: &str = "3f1c2e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";

fn pod() -> PodInfo {
    PodInfo {
        name: "web-0".into(),
        namespace: "prod".into(),
        uid: "0f3c2a1b-7e6d-4c5b-9a8f-1e2d3c4b5a69".into(),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        ip: "10.1.2.3".into(),
    }
}

/// The pod's namespace, name and uid become kubelet's labels (which the `k8s.*` fields and
/// the `k8s_namespace` selector read); the container's own labels win; strings are bounded.
#[test]
fn meta_joins_container_and_pod() {
    let c = CriContainer {
        id: A.into(),
        sandbox: "sb".into(),
        name: "shell".into(),
        image: "docker.io/library/busybox:1.36".into(),
        image_ref: "sha256:abc".into(),
        labels: [
            ("tier".to_owned(), "front".to_owned()),
            (LABEL_POD_NAME.to_owned(), "from-kubelet".to_owned()),
            ("big".to_owned(), "x".repeat(10_000)),
        ]
        .into(),
        exited: false,
    };
    let id = ContainerId::parse(A).expect("id");
    let m = meta_of(id.clone(), &c, Some(&pod()));
    assert_eq!(m.source, MetaSource::Cri);
    assert_eq!(m.status, MetaStatus::Ready);
    assert_eq!(m.name, "shell");
    assert_eq!(m.image, "docker.io/library/busybox:1.36");
    assert_eq!(
        (m.image_repository.as_str(), m.image_tag.as_str()),
        ("docker.io/library/busybox", "1.36")
    );
    assert_eq!(m.image_id, "sha256:abc");
    assert_eq!(m.k8s_ns_name, "prod");
    assert_eq!(
        m.k8s_pod_name, "from-kubelet",
        "the container's own label wins"
    );
    assert_eq!(
        m.label(LABEL_POD_UID),
        "0f3c2a1b-7e6d-4c5b-9a8f-1e2d3c4b5a69"
    );
    assert_eq!(m.label("tier"), "front");
    assert_eq!(
        m.label("big").len(),
        crate::state::container::MAX_FIELD_BYTES
    );
    assert_eq!(m.pod_labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(m.pod_ip, "10.1.2.3");

    // No pod known: the pod fields stay <NA>, and no label is invented.
    let m = meta_of(id.clone(), &CriContainer::default(), None);
    assert_eq!((m.name.as_str(), m.image.as_str()), (NA, NA));
    assert_eq!((m.k8s_ns_name.as_str(), m.pod_ip.as_str()), (NA, NA));
    assert!(m.labels.is_empty() && m.pod_labels.is_empty());

    // A pod with thousands of labels is capped.
    let mut big = pod();
    big.labels = (0..MAX_LABELS * 3)
        .map(|i| (format!("k{i}"), String::new()))
        .collect();
    let m = meta_of(id, &c, Some(&big));
    assert_eq!(m.pod_labels.len(), MAX_LABELS);
    assert!(m.labels.len() <= MAX_LABELS);
}

/// A configured socket is used as given; without one, only an existing socket is picked.
#[test]
fn socket_choice() {
    let cfg = CriConfig {
        socket: Some("/x/y.sock".into()),
        ..Default::default()
    };
    assert_eq!(cfg.pick_socket(), Some(PathBuf::from("/x/y.sock")));
    let auto = CriConfig::default().pick_socket();
    assert!(auto.as_deref().is_none_or(is_socket));
    assert!(!is_socket(Path::new("/etc/hostname")));
}

/// No runtime at the socket: the table says CRI is down, the health names the socket, and
/// the task ends when the table is dropped.
#[tokio::test]
async fn unreachable_runtime_is_down() {
    let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
    let sock = std::env::temp_dir().join(format!("guard-no-cri-{}.sock", std::process::id()));
    let cri = CriEnricher::new(
        &table,
        CriConfig {
            socket: Some(sock.clone()),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let health = cri.health();
    let task = tokio::spawn(cri.run());
    let mut named = false;
    for _ in 0..200 {
        if health.get().socket.as_deref() == Some(sock.as_path()) {
            named = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(named, "health names the socket tried");
    assert!(!health.get().up);
    assert!(!table.cri_up());
    assert!(!task.is_finished());
    drop(table);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .is_ok(),
        "the task ends with the table"
    );
}
