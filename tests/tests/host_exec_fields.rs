//! Host layer, issue 17: what the kernel captures at exec. `proc.exe_ino`, `proc.exe_ino.ctime`,
//! `proc.exe_ino.mtime` are the executed file's inode number and times (`mm->exe_file`);
//! `proc.env` is the new image's environment, bounded. A process whose exec guard did not see
//! (it predates the agent) has neither (`<NA>`).

use std::{
    io::Write,
    os::unix::fs::MetadataExt,
    process::{Command, Stdio},
    time::Duration,
};

use guard_tests::harness::{Agent, agent_lock, can_run, is_root};
use serde_json::Value;

/// A child killed and reaped when the test ends, also on a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ns(sec: i64, nsec: i64) -> u64 {
    (sec * 1_000_000_000 + nsec) as u64
}

#[test]
fn a_freshly_copied_binary_has_its_inode_times_and_env_and_an_older_process_has_none() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let dir = std::path::PathBuf::from(format!("/tmp/guard-exe-ino-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // A process started before the agent: it opens a file only when told to (the fifo).
    let fifo = dir.join("go");
    let fifo_c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstring");
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0, "mkfifo");
    let marker = dir.join("old-marker");
    std::fs::write(&marker, b"x").expect("marker");
    let old = Command::new("/bin/busybox")
        .args([
            "sh",
            "-c",
            &format!("read x < {}; read y < {}", fifo.display(), marker.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("older process");
    let mut old = KillOnDrop(old);

    let agent = Agent::start_cmd(&["record"]);
    // Named `true`: busybox runs the applet its name says.
    let tool = dir.join("true");
    std::fs::copy("/bin/busybox", &tool).expect("copy busybox");
    let meta = std::fs::metadata(&tool).expect("stat");
    let ran = Command::new(&tool)
        .arg("exe-ino-marker")
        .env_clear()
        .env("GUARD_TEST_VAR", "value with spaces")
        .env("LONG", "x".repeat(5000))
        .env("AFTER", "1")
        .status()
        .expect("run the copy");
    assert!(ran.success());
    let ev = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["type"] == "execve" && v["proc"]["args"] == serde_json::json!(["exe-ino-marker"])
        })
        .expect("exec event of the copied binary");
    assert_eq!(ev["proc"]["exe_ino"], meta.ino(), "{ev}");
    assert_eq!(
        ev["proc"]["exe_ino_ctime"],
        ns(meta.ctime(), meta.ctime_nsec()),
        "{ev}"
    );
    assert_eq!(
        ev["proc"]["exe_ino_mtime"],
        ns(meta.mtime(), meta.mtime_nsec()),
        "{ev}"
    );
    // The copy was made before the process started: a duration, in the process's start.
    let start = ev["proc"]["start_time"].as_u64().expect("start_time");
    assert!(start >= ns(meta.ctime(), meta.ctime_nsec()), "{ev}");
    // The environment (Command passes it sorted by name), up to the 4,096-byte bound: LONG
    // (5,000 bytes) is cut by it, so it is not there at all (never a half value).
    assert_eq!(
        ev["proc"]["env"],
        serde_json::json!(["AFTER=1", "GUARD_TEST_VAR=value with spaces"]),
        "{ev}"
    );

    // The older process opens its marker: no exec seen, no inode.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| f.write_all(b"go\n"))
        .expect("fifo");
    let marker_s = marker.to_str().expect("utf8").to_owned();
    let open = agent
        .wait_for(Duration::from_secs(20), |v: &Value| {
            v["fd"]["name"] == marker_s.as_str() && v["proc"]["pid"] == old.0.id()
        })
        .expect("open by the older process");
    assert!(open["proc"].get("exe_ino").is_none(), "{open}");
    assert!(open["proc"].get("exe_ino_ctime").is_none(), "{open}");
    assert!(open["proc"].get("env").is_none(), "{open}");
    let _ = old.0.wait();
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
