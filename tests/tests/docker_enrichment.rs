//! Container identity and Docker enrichment against a real dockerd.
//!
//! Needs a running dockerd on /var/run/docker.sock (the Docker fixture, `integration/`) and the
//! `guard-test-busybox:latest` image (built here from busybox-static when absent). With
//! `CI=true` a missing daemon fails the test; elsewhere it prints why and returns.

use std::{
    os::unix::fs::MetadataExt,
    process::Command,
    time::{Duration, Instant},
};

use guard::{
    events::CgroupId,
    state::{
        Pid, State, StateConfig,
        container::{ContainerId, MetaStatus},
        procfs::ProcFs,
    },
};

const IMAGE: &str = "guard-test-busybox:latest";

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Ok(()) when the test can run; Err(reason) otherwise.
fn docker_ready() -> Result<(), String> {
    docker(&["info", "--format", "{{.ServerVersion}}"])?;
    if docker(&["image", "inspect", IMAGE]).is_err() {
        build_image()?;
    }
    Ok(())
}

/// The fixture's image recipe: a rootfs of busybox-static, imported.
fn build_image() -> Result<(), String> {
    let root = std::env::temp_dir().join(format!("guard-state-rootfs-{}", std::process::id()));
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::fs::copy("/bin/busybox", bin.join("busybox")).map_err(|e| format!("busybox: {e}"))?;
    for tool in ["sh", "sleep", "cat", "id", "ls"] {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(tool));
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import - {IMAGE}",
            root.display()
        ))
        .status()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&root);
    status
        .success()
        .then_some(())
        .ok_or_else(|| "docker import failed".into())
}

/// Removes the containers this test created, also on failure.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker(&["rm", "-f", name]);
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn container_identity_and_enrichment() {
    if let Err(why) = docker_ready() {
        if guard_tests::harness::in_ci() {
            panic!("Docker-backed test cannot run in CI: {why}");
        }
        eprintln!("skipping: {why}");
        return;
    }
    let tag = std::process::id();
    let name = format!("guard-state-enrich-{tag}");
    let created = format!("guard-state-created-{tag}");
    let mut cleanup = Cleanup(vec![name.clone()]);

    let full_id = docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        "--label",
        "io.kubernetes.pod.name=web-0",
        "--label",
        "io.kubernetes.pod.namespace=prod",
        "--label",
        "app=web",
        IMAGE,
        "sleep",
        "300",
    ])
    .expect("docker run");
    let id = ContainerId::parse(&full_id).expect("docker prints a 64-hex id");
    let pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &name])
        .expect("inspect")
        .parse()
        .expect("pid");
    let pid = Pid(pid);

    // Where runc put the container in the cgroup v2 hierarchy, checked independently of
    // guard's code: the `0::` line, under the cgroup2 mount, and its inode.
    let fs = ProcFs::host();
    let mount = fs.cgroup2.clone().expect("a cgroup2 mount");
    let (path, cgid) = fs.cgroup(pid).expect("/proc/PID/cgroup");
    eprintln!(
        "container cgroup v2 path {path} under {}",
        mount.mount_point.display()
    );
    assert!(
        path.contains(id.as_str()),
        "cgroup path {path} names the container"
    );
    let dir = mount.dir_of(&path).expect("under the mount");
    let ino = std::fs::metadata(&dir).expect("cgroup dir").ino();
    assert_eq!(cgid, Some(CgroupId(ino)));
    let cgid = CgroupId(ino);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut st, enricher) = State::new(StateConfig::default());
    rt.spawn(enricher.run());

    // cgroup id → container id, through the event's pid.
    assert_eq!(st.container_of(cgid, Some(pid)), Some(id.clone()));
    // ... and without a pid (process gone): by walking the cgroup2 mount.
    let (mut st2, _e2) = State::new(StateConfig::default());
    assert_eq!(st2.container_of(cgid, None), Some(id.clone()));

    // Metadata from the daemon.
    wait_until("metadata", || {
        st.container_meta(&id).status == MetaStatus::Ready
    });
    let m = st.container_meta(&id);
    assert_eq!(m.name, name);
    assert_eq!(m.image, IMAGE);
    assert_eq!(m.image_repository, "guard-test-busybox");
    assert_eq!(m.image_tag, "latest");
    assert!(m.image_id.starts_with("sha256:"), "{}", m.image_id);
    assert_eq!(m.label("app"), "web");
    assert_eq!(m.k8s_pod_name, "web-0");
    assert_eq!(m.k8s_ns_name, "prod");
    assert_eq!(m.privileged, Some(false));
    assert!(!m.exited);

    // Seeding from /proc puts the container process in the table with its container.
    st.seed();
    let p = st.process(pid).expect("container process seeded");
    assert_eq!(p.comm, "sleep");
    assert_eq!(p.cmdline, "sleep 300");
    assert_eq!(p.cgroup_id, Some(cgid));
    assert_eq!(p.container_id.as_ref(), Some(&id));

    // The event stream: `create` is learned without any lookup, `destroy` forgets.
    assert!(st.containers.daemon_up());
    cleanup.0.push(created.clone());
    let created_id = docker(&[
        "create",
        "--network",
        "none",
        "--name",
        &created,
        IMAGE,
        "true",
    ])
    .expect("docker create");
    let created_id = ContainerId::parse(&created_id).expect("id");
    wait_until("create event", || {
        st.containers
            .peek(&created_id)
            .is_some_and(|m| m.status == MetaStatus::Ready && m.name == created)
    });
    docker(&["rm", &created]).expect("docker rm");
    wait_until("destroy event", || {
        st.containers.peek(&created_id).is_none()
    });

    // `die` keeps the metadata, marked exited.
    docker(&["kill", &name]).expect("docker kill");
    wait_until("die event", || {
        st.containers.peek(&id).is_some_and(|m| m.exited)
    });
    assert_eq!(st.container_meta(&id).name, name);

    drop(cleanup);
    drop(st);
    rt.shutdown_timeout(Duration::from_secs(2));
}
