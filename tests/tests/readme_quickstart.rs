//! The README's two commands stay true. The first (set up, then run guard detect-only with the
//! default rules) is run exactly as written and must print an alert for a sensitive read; the
//! second must be what `.ci/run` runs.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    sync::mpsc::channel,
    time::{Duration, Instant},
};

use guard_tests::harness::{agent_lock, can_run, is_root, repo_root};

/// The commands of the README's first ```sh block, without their comments.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README has a ```sh block");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let cmds = readme_commands();
    assert_eq!(
        cmds.len(),
        2,
        "the README starts with two commands: {cmds:?}"
    );
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).expect(".ci/run");
    let last = ci
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("non-empty .ci/run");
    assert_eq!(
        last.trim().strip_prefix("exec ").unwrap_or(last.trim()),
        cmds[1],
        ".ci/run must run the README's test command"
    );
}

/// Kills the command's whole process group if the test ends before it exits.
struct Group(i32, bool);
impl Drop for Group {
    fn drop(&mut self) {
        if self.1 {
            // SAFETY: kill has no memory preconditions; the group is the one we started.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
        }
    }
}

#[test]
fn readme_run_command_starts_guard_detect_only_and_prints_alerts() {
    if !can_run(is_root(), "the README's run command needs root") {
        return;
    }
    let _lock = agent_lock();
    let cmds = readme_commands();
    let run = &cmds[0];
    assert!(
        run.contains("--detect-only"),
        "the README's first command must run detect-only: {run}"
    );
    let mut child = Command::new("bash")
        .args(["-c", run])
        .current_dir(repo_root())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the README command");
    let mut group = Group(child.id() as i32, true);
    let (tx, rx) = channel::<(bool, String)>();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((true, l));
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send((false, l));
        }
    });

    // Setup and a release build come first: allow for a cold build.
    let mut stderr = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !stderr.iter().any(|l: &String| l == "guard: ready") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((false, l)) => stderr.push(l),
            Ok((true, l)) => panic!("output before ready: {l}"),
            Err(_) => panic!("no `guard: ready`; stderr:\n{}", stderr.join("\n")),
        }
    }
    assert!(
        stderr.iter().any(|l| l.contains("mode=\"detect-only\"")),
        "guard must say it runs detect-only:\n{}",
        stderr.join("\n")
    );

    let marker = Command::new("head")
        .args(["-c", "1", "/etc/shadow"])
        .stdout(Stdio::null())
        .status()
        .expect("head /etc/shadow");
    assert!(marker.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, l)) => {
                let v: serde_json::Value = serde_json::from_str(&l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"));
                if v["output_fields"]["proc.cmdline"] == "head -c 1 /etc/shadow" {
                    break v;
                }
            }
            Ok((false, l)) => stderr.push(l),
            Err(_) => panic!(
                "no alert for the sensitive read; stderr:\n{}",
                stderr.join("\n")
            ),
        }
    };
    assert_eq!(alert["rule"], "Read sensitive file", "{alert}");
    assert_eq!(alert["output_fields"]["fd.name"], "/etc/shadow", "{alert}");

    // SIGINT stops it cleanly.
    // SAFETY: signalling the process group we started.
    unsafe { libc::kill(-group.0, libc::SIGINT) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            group.1 = false;
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "guard did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok((false, l)) = rx.recv_timeout(Duration::from_secs(2)) {
        stderr.push(l);
    }
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        stderr.join("\n")
    );
    assert!(
        stderr.iter().any(|l| l.contains("guard stopping")),
        "{}",
        stderr.join("\n")
    );
}
