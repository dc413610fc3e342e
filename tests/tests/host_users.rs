//! Host layer, `user.name` / `group.name` / `user.loginname` end to end: names come from the
//! container's own `/etc/passwd` and `/etc/group` (read through the root opener), are
//! refreshed when the file changes, never follow a symlink out of the container's root, and
//! come from the host's files for host processes.

use std::time::Duration;

use guard::{
    procroot::{AccountFile, open_account_file},
    state::{
        container::{ContainerId, NA},
        users::{UserDb, UserDbConfig},
    },
};
use guard_tests::harness::{Agent, Docker, agent_lock, can_run, cgroup_v2_dir, is_root};
use serde_json::Value;

/// A uid and gid the host does not name (checked below), named only in the container.
const UID: &str = "4321";

fn host_names(file: &str, id: &str) -> bool {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').nth(2) == Some(id))
}

#[test]
fn user_and_group_names_come_from_the_containers_own_files() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    assert!(
        !host_names("/etc/passwd", UID) && !host_names("/etc/group", UID),
        "the host must not name uid/gid {UID} for this test to mean anything"
    );
    let _lock = agent_lock();
    let vol = format!("/tmp/guard-users-vol-{}", std::process::id());
    std::fs::create_dir_all(&vol).expect("volume dir");
    let bind = format!("{vol}:/data:ro");
    let c = docker.run(&["-v", &bind], &["sleep", "600"]);
    let write = |passwd: &str| {
        let script = format!(
            "mkdir -p /etc && printf '{passwd}' > /etc/passwd.new && mv /etc/passwd.new /etc/passwd && printf 'root:x:0:\\napp:x:{UID}:\\n' > /etc/group"
        );
        assert!(
            c.exec(&["sh", "-c", &script]).0,
            "writing the container's files"
        );
    };
    write(&format!(
        "root:x:0:0::/root:/bin/sh\\nappuser:x:{UID}:{UID}::/:/bin/sh\\n"
    ));
    let agent = Agent::start_cmd(&[
        "record",
        "--only-cgroup",
        cgroup_v2_dir(c.pid()).to_str().expect("utf8"),
    ]);
    let user = format!("{UID}:{UID}");
    let exec_as = |who: &str, tag: &str| {
        let script = format!("/bin/busybox true {tag}");
        let ok = std::process::Command::new("docker")
            .args(["exec", "-u", who, &c.id, "sh", "-c", &script])
            .status()
            .expect("docker exec")
            .success();
        assert!(ok, "docker exec -u {who}");
    };
    let is_exec = |tag: &'static str| {
        move |v: &Value| {
            v["type"] == "execve" && v["proc"]["args"] == serde_json::json!(["true", tag])
        }
    };

    // A uid only the container's passwd names: the container's name, and its group's.
    exec_as(&user, "one");
    let ev = agent
        .wait_for(Duration::from_secs(20), is_exec("one"))
        .expect("exec event as uid 4321");
    assert_eq!(ev["proc"]["uid"], 4321, "{ev}");
    assert_eq!(ev["proc"]["user"], "appuser", "{ev}");
    assert_eq!(ev["proc"]["group"], "app", "{ev}");
    // docker exec sets no login uid: Falco's -1 names nobody.
    assert_eq!(ev["proc"]["loginname"], NA, "{ev}");

    // Root in the container: the container's root entry.
    exec_as("0:0", "two");
    let ev = agent
        .wait_for(Duration::from_secs(20), is_exec("two"))
        .expect("exec event as root");
    assert_eq!(
        (ev["proc"]["user"].as_str(), ev["proc"]["group"].as_str()),
        (Some("root"), Some("root"))
    );

    // The file changes: after the recheck interval the new name shows.
    write(&format!(
        "root:x:0:0::/root:/bin/sh\\nrenamed:x:{UID}:{UID}::/:/bin/sh\\n"
    ));
    std::thread::sleep(Duration::from_millis(2_200));
    exec_as(&user, "three");
    let ev = agent
        .wait_for(Duration::from_secs(20), is_exec("three"))
        .expect("exec event after the change");
    assert_eq!(ev["proc"]["user"], "renamed", "{ev}");
    // The container's mounts (Docker inspect) ride on its events: container.mounts.
    let mounts = ev["container"]["mounts"].as_array().expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["source"] == vol.as_str() && m["dest"] == "/data" && m["rw"] == false),
        "{ev}"
    );
    // The namespace fields, from /proc: a process alive when its event is handled has them
    // (not pid 1 of the container, and not its host pid); `busybox true` above was gone.
    assert!(c.exec(&["sh", "-c", "/bin/busybox sleep 1"]).0);
    let ev = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["type"] == "execve" && v["proc"]["args"] == serde_json::json!(["sleep", "1"])
        })
        .expect("exec event of sleep");
    let vpid = ev["proc"]["vpid"].as_u64().expect("vpid");
    assert!(
        vpid > 1 && vpid != ev["proc"]["pid"].as_u64().expect("pid"),
        "{ev}"
    );
    assert!(ev["proc"]["sname"].is_string(), "{ev}");

    // A uid nobody names: Falco's <NA>.
    exec_as("4999:4999", "four");
    let ev = agent
        .wait_for(Duration::from_secs(20), is_exec("four"))
        .expect("exec event as an unnamed uid");
    assert_eq!(
        (ev["proc"]["user"].as_str(), ev["proc"]["group"].as_str()),
        (Some(NA), Some(NA))
    );
    drop(agent);

    // The container's /etc/group replaced by an absolute symlink to a host file that names
    // the gid: resolved inside the container's root, it names nothing.
    let marker = format!("/tmp/guard-users-marker-{}", std::process::id());
    std::fs::write(&marker, format!("escaped:x:{UID}:\n")).expect("host marker");
    assert!(
        c.exec(&["sh", "-c", &format!("ln -sf {marker} /etc/group")])
            .0
    );
    let id = ContainerId::parse(&c.id).expect("container id");
    let mut db = UserDb::new(UserDbConfig::default(), open_account_file);
    db.refresh(Some(&id), c.pid(), || None, 1);
    assert_eq!(db.user(Some(&id), 4321), "renamed", "passwd still read");
    assert_eq!(
        db.group(Some(&id), 4321),
        NA,
        "the symlink must not reach the host's file"
    );
    assert!(open_account_file(c.pid(), AccountFile::Group).is_err());
    // A FIFO is refused, not opened (an open for reading would block).
    assert!(
        c.exec(&["sh", "-c", "rm /etc/group && mkfifo /etc/group"])
            .0
    );
    assert!(open_account_file(c.pid(), AccountFile::Group).is_err());
    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_dir(&vol);

    // Host processes: the host's files, whatever the pid; root is root.
    db.refresh(None, std::process::id(), || None, 1);
    assert_eq!(db.user(None, 0), "root");
    assert_eq!(db.user(None, 4321), NA, "only the container names 4321");
}
