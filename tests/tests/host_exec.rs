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
    // A marker argv so we match exactly our exec.
    let (ok, _) = c.exec(&["/bin/sh", "-c", "exec /bin/true guard-marker"]);
    assert!(ok, "docker exec failed");
    let ev = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["kind"] == "exec" && v["filename"]["text"] == "/bin/true" && v["cgroup_id"] == want
        })
        .unwrap_or_else(|| {
            panic!(
                "no exec event for /bin/true with cgroup_id {want} ({})",
                dir.display()
            )
        });
    assert_eq!(ev["comm"], "true");
    assert!(ev["pid"].as_u64().unwrap_or(0) > 1);
    // And a host exec does not carry the container's id.
    std::process::Command::new("/bin/true")
        .status()
        .expect("true");
    let host = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["kind"] == "exec" && v["filename"]["text"] == "/bin/true" && v["cgroup_id"] != want
        })
        .expect("host exec event");
    assert_ne!(host["cgroup_id"], want);
}
