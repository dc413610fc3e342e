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
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope"),
            Some((A, Podman, None)),
        ),
        // podman, cgroupfs manager (the private service of integration/podman.sh).
        (
            format!("/libpod_parent/libpod-{A}"),
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
        // conmon with the cgroupfs manager: one cgroup for every container's monitor.
        ("/libpod_parent/conmon".into(), None),
        (format!("/libpod_parent/libpod-conmon-{A}"), None),
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
            namespace: None,
        });
        assert_eq!(got, want, "path {path}");
    }
}

/// Containers started straight on containerd (`ctr`, nerdctl, CRI without kubelet) are
/// containers with their namespace, not the host; other top-level trees are not.
#[test]
fn containerd_namespace_layouts() {
    let got = |p: &str| parse_cgroup_path(p).map(|c| (c.id, c.runtime, c.namespace, c.nested));
    for ns in ["k8s.io", "default", "moby", "buildkit", "my_ns-2"] {
        assert_eq!(
            got(&format!("/{ns}/{A}")),
            Some((id(A), Runtime::Containerd, Some(ns.into()), None)),
            "namespace {ns}"
        );
    }
    // A child cgroup of the container is still the container (outermost wins).
    assert_eq!(
        got(&format!("/k8s.io/{A}/docker-{B}.scope")),
        Some((
            id(A),
            Runtime::Containerd,
            Some("k8s.io".into()),
            Some(id(B))
        ))
    );
    assert_eq!(
        got(&format!("/system.slice/nerdctl-{A}.scope")),
        Some((id(A), Runtime::Containerd, None, None))
    );
    for p in [
        format!("/lxc.payload/{A}"),
        format!("/system.slice/{A}"),
        format!("/user.slice/{A}"),
        format!("/Upper/{A}"),
        format!("/.hidden/{A}"),
        format!("/{}/{A}", "n".repeat(77)),
        format!("/k8s.io/{}", &A[..63]),
        "/k8s.io".into(),
    ] {
        assert_eq!(got(&p), None, "path {p}");
    }
    // Docker's own layout keeps its runtime.
    assert_eq!(
        got(&format!("/docker/{A}")).map(|c| c.1),
        Some(Runtime::Docker)
    );
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

/// A removed container stays out of the table: a late event's lookup answers with what it
/// had (marked exited) without asking, a learn or a second-hand store does not bring it back,
/// and only the runtime reporting it again with metadata does. The memory of removals is
/// bounded.
#[test]
fn removed_containers_do_not_come_back() {
    let (t, mut rx) = ContainerTable::new(ContainerTableConfig::default());
    let ready = |s| ContainerMeta::from_parts(id(s), Some("/c"), Some("i"), None, [], None);
    t.store(ready(A));
    t.remove(&id(A));
    assert!(t.is_empty());
    let late = t.lookup(&id(A));
    assert_eq!((late.name.as_str(), late.exited), ("c", true));
    // Removed again (Podman's API stream after its events log): what it had is kept.
    t.remove(&id(A));
    assert_eq!(t.lookup(&id(A)).name, "c");
    t.learn(&id(A));
    assert!(t.is_empty(), "a lookup or learn brought it back");
    assert!(
        rx.try_recv().is_err(),
        "a removed container is not inspected"
    );
    // Removed before any metadata: a late lookup is <NA>, and an inspect failure does not
    // bring it back either.
    t.remove(&id(B));
    assert_eq!(t.lookup(&id(B)).name, NA);
    t.store(ContainerMeta::unknown(id(B), MetaStatus::Unavailable));
    assert!(!t.store_unless_removed(ready(B)));
    assert!(t.is_empty());
    // The runtime reports it again (a reused id): live again.
    t.store(ready(A));
    assert_eq!(t.len(), 1);
    assert!(!t.lookup(&id(A)).exited);
    // Bounded: the oldest removals are forgotten.
    for i in 0..removed::MAX_REMOVED + 10 {
        t.remove(&id(&format!("{i:064x}")));
    }
    assert_eq!(t.removed_len(), removed::MAX_REMOVED);
}
