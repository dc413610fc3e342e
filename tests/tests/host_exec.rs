//! Host layer: real kernel, real dockerd. The exec event of a `docker exec` carries the cgroup id
//! of the container's cgroup v2 directory.

use std::{os::unix::fs::MetadataExt, time::Duration};

use guard_tests::harness::{Agent, Docker, agent_lock, can_run, cgroup_v2_dir, is_root};

#[test]
fn docker_exec_event_carries_the_container_cgroup_id() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let c = docker.run(&[], &["sleep", "300"]);
    let dir = cgroup_v2_dir(c.pid());
    let want = std::fs::metadata(&dir).expect("stat cgroup dir").ino();

    let agent = Agent::start(&[]);
    // Unique markers, so only our own execs match (not any /bin/true of the host).
    let tag = std::process::id();
    let in_container = format!("guard-container-marker-{tag}");
    let (ok, _) = c.exec(&["/bin/sh", "-c", &format!("exec /bin/true {in_container}")]);
    assert!(ok, "docker exec failed");
    let ev = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["kind"] == "exec" && v["argv"] == serde_json::json!(["/bin/true", in_container])
        })
        .unwrap_or_else(|| panic!("no exec event for /bin/true {in_container}"));
    assert_eq!(
        ev["cgroup_id"],
        want,
        "container exec must carry the cgroup id of {}",
        dir.display()
    );
    assert_eq!(ev["filename"]["text"], "/bin/true");
    assert_eq!(ev["comm"], "true");
    assert!(ev["pid"].as_u64().unwrap_or(0) > 1);

    // A host exec this test starts itself carries its own (host) cgroup's id, not the container's.
    let on_host = format!("guard-host-marker-{tag}");
    let mut child = std::process::Command::new("/bin/true")
        .arg(&on_host)
        .spawn()
        .expect("spawn /bin/true");
    let host_pid = child.id();
    assert!(child.wait().expect("wait /bin/true").success());
    let host = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["kind"] == "exec" && v["pid"] == host_pid
        })
        .unwrap_or_else(|| panic!("no exec event for our host /bin/true (pid {host_pid})"));
    assert_eq!(host["argv"], serde_json::json!(["/bin/true", on_host]));
    let own = std::fs::metadata(cgroup_v2_dir(std::process::id()))
        .expect("stat own cgroup dir")
        .ino();
    assert_eq!(
        host["cgroup_id"], own,
        "host exec carries the test's own cgroup id"
    );
    assert_ne!(host["cgroup_id"], want);
}
