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

use std::sync::Arc;

use super::fake::{Fake, container, pod as fake_pod};
use k8s_cri::v1 as cri;

const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn fake_sock(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("guard-fake-cri-{tag}-{}.sock", std::process::id()))
}

/// Against a runtime with `GetContainerEvents`: listed containers are stored with their pod's
/// fields, a CREATED event stores a new container before it starts, DELETED removes it, and
/// the runtime going away marks CRI down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_container_events() {
    let fake = Arc::new(Fake::default());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    *fake.events.lock().expect("lock") = Some(rx);
    fake.pods
        .lock()
        .expect("lock")
        .insert("sb1".into(), fake_pod("sb1", "prod", "web-0"));
    fake.containers.lock().expect("lock").push(container(
        A,
        "sb1",
        "app",
        cri::ContainerState::ContainerRunning,
    ));
    let sock = fake_sock("events");
    let server = Fake::serve(fake.clone(), &sock);
    let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
    let cri = CriEnricher::new(
        &table,
        CriConfig {
            socket: Some(sock.clone()),
            // Long: only events (and the first sync) can store B.
            poll_interval: Duration::from_secs(60),
            resync_interval: Duration::from_secs(60),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let health = cri.health();
    let task = tokio::spawn(cri.run());
    let a = ContainerId::parse(A).expect("id");
    until("A stored", || table.peek(&a).is_some_and(|m| is_cri(&m))).await;
    let m = table.peek(&a).expect("A");
    assert_eq!(
        (
            m.name.as_str(),
            m.k8s_ns_name.as_str(),
            m.k8s_pod_name.as_str()
        ),
        ("app", "prod", "web-0")
    );
    assert_eq!(m.label(LABEL_POD_UID), "uid-web-0");
    assert_eq!(m.image_tag, "2");
    assert_eq!(m.pod_ip, "10.0.0.7");
    assert!(table.cri_up());
    let h = health.get();
    assert!(h.up && h.events, "{h:?}");
    assert_eq!(h.runtime, "fake 1.0");

    let b = ContainerId::parse(B).expect("id");
    fake.containers.lock().expect("lock").push(container(
        B,
        "sb1",
        "side",
        cri::ContainerState::ContainerCreated,
    ));
    tx.send(cri::ContainerEventResponse {
        container_id: B.into(),
        container_event_type: cri::ContainerEventType::ContainerCreatedEvent as i32,
        ..Default::default()
    })
    .await
    .expect("send");
    until("B stored from its CREATED event", || {
        table.peek(&b).is_some_and(|m| m.name == "side")
    })
    .await;

    fake.containers.lock().expect("lock").retain(|c| c.id != B);
    tx.send(cri::ContainerEventResponse {
        container_id: B.into(),
        container_event_type: cri::ContainerEventType::ContainerDeletedEvent as i32,
        ..Default::default()
    })
    .await
    .expect("send");
    until("B removed at its DELETED event", || {
        table.peek(&b).is_none()
    })
    .await;

    // Junk ids and unknown event kinds are ignored.
    for (id, kind) in [("not-an-id", 0), (B, 99)] {
        tx.send(cri::ContainerEventResponse {
            container_id: id.into(),
            container_event_type: kind,
            ..Default::default()
        })
        .await
        .expect("send");
    }
    server.abort();
    drop(tx);
    until("CRI down after the runtime went away", || !table.cri_up()).await;
    assert!(!health.get().up);
    assert!(
        table.peek(&a).is_some(),
        "cached metadata stays (shown <NA> by the agent's option)"
    );
    drop(table);
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    let _ = std::fs::remove_file(&sock);
}

/// Without `GetContainerEvents` the client polls; it tracks at most `max_containers`, and a
/// container gone from the list leaves the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_without_events_and_is_bounded() {
    let fake = Arc::new(Fake::default());
    fake.pods
        .lock()
        .expect("lock")
        .insert("sb".into(), fake_pod("sb", "ns1", "p"));
    let ids: Vec<String> = (0..10).map(|i| format!("{i:064x}")).collect();
    for id in &ids {
        fake.containers.lock().expect("lock").push(container(
            id,
            "sb",
            "c",
            cri::ContainerState::ContainerRunning,
        ));
    }
    let sock = fake_sock("poll");
    let server = Fake::serve(fake.clone(), &sock);
    let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
    let cri = CriEnricher::new(
        &table,
        CriConfig {
            socket: Some(sock.clone()),
            poll_interval: Duration::from_millis(20),
            max_containers: 3,
            ..Default::default()
        },
    );
    let health = cri.health();
    let task = tokio::spawn(cri.run());
    until("3 containers stored", || table.len() == 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(table.len(), 3, "more than max_containers tracked");
    assert!(!health.get().events);
    // The first three listed are the tracked ones; drop one from the runtime.
    let first = ContainerId::parse(&ids[0]).expect("id");
    assert!(table.peek(&first).is_some());
    fake.containers.lock().expect("lock").remove(0);
    until("a container gone from the list is removed", || {
        table.peek(&first).is_none()
    })
    .await;
    server.abort();
    drop(table);
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    let _ = std::fs::remove_file(&sock);
}
