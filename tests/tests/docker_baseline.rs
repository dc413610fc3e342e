//! The benign baseline: guard's default rules plus Falco's stable rules, over an ordinary
//! container workload (20 busybox containers started, exec'd into with everyday commands, a log
//! rotated, stopped and removed) and an image build whose step installs a package with `dpkg`
//! (files under /usr/lib, /usr/bin and /etc), raise
//! no Critical and no Error alert; and with the
//! `kill-container-on-critical` example of `responses/examples.yaml` enabled (enforce mode),
//! no container is killed. Alerts of the containers carry the container fields (Falco's
//! `append_output`).
//!
//! Control: the agent saw the workload (alerts of lower priority name the test's containers,
//! e.g. the shells `docker exec` starts).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use guard_tests::{harness::*, respond_util::*};

const CONTAINERS: usize = 20;
const THREADS: usize = 4;

/// The `kill-container-on-critical` example block of `responses/examples.yaml`, uncommented.
fn kill_on_critical() -> String {
    let text = std::fs::read_to_string(repo_root().join("responses/examples.yaml"))
        .expect("responses/examples.yaml");
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("# - response:") {
            inside = line.contains("kill-container-on-critical");
        } else if !line.starts_with("#   ") {
            if inside && !out.is_empty() {
                break;
            }
            continue;
        }
        if inside && let Some(l) = line.strip_prefix("# ") {
            out.push_str(l);
            out.push('\n');
        }
    }
    assert!(out.contains("kill_container"), "example not found:\n{out}");
    out
}

/// One container's life; returns its id and whether it was running until we stopped it.
fn lifecycle(docker: &Docker, n: usize) -> (String, bool) {
    let c = docker.run(&["--label", "guard-baseline=1"], &["sleep", "600"]);
    let mut alive = true;
    for cmd in [
        &["ls", "/"][..],
        &["cat", "/etc/hostname"],
        &["id"],
        &["sh", "-c", "echo ok; date; ps"],
        &[
            "sh",
            "-c",
            "mkdir -p /tmp/w && echo data > /tmp/w/f && cat /tmp/w/f",
        ],
        // A log rotated the way logrotate's `create` mode does: rename, then a new file.
        &[
            "sh",
            "-c",
            "mkdir -p /var/log/app && echo line >> /var/log/app/app.log && mv /var/log/app/app.log /var/log/app/app.log.1 && touch /var/log/app/app.log && gzip /var/log/app/app.log.1",
        ],
    ] {
        if !c.exec(cmd).0 {
            eprintln!("container {n}: exec {cmd:?} failed");
            alive = false;
        }
    }
    alive &= docker.cmd(&["inspect", "-f", "{{.State.Running}}", &c.id]) == "true";
    let _ = std::process::Command::new("docker")
        .args(["stop", "-t", "1", &c.id])
        .output();
    (c.id.clone(), alive)
    // Dropping `c` removes the container.
}

/// A `docker build` (the classic builder: no registry, no network) whose step installs a
/// Debian package with the image's own `dpkg` (busybox's applet): a tool under /usr/lib, a
/// symlink in /usr/bin, a conffile in /etc; the next step runs what the first installed.
/// The package is made on the host with `dpkg-deb`. Returns the build's output.
fn package_build(dir: &std::path::Path, tag: &str) -> String {
    let root = dir.join("pkg");
    for d in ["DEBIAN", "usr/lib/pkg", "usr/bin", "etc"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let write = |rel: &str, text: &str| std::fs::write(root.join(rel), text).expect("write");
    write(
        "DEBIAN/control",
        "Package: guardpkg\nVersion: 1.0\nArchitecture: all\nMaintainer: guard tests <tests@localhost>\nDescription: benign baseline package\n",
    );
    write("DEBIAN/conffiles", "/etc/pkg.conf\n");
    write("usr/lib/pkg/tool", "#!/bin/sh\necho package-installed\n");
    write("etc/pkg.conf", "conf\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("usr/lib/pkg/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::os::unix::fs::symlink("/usr/lib/pkg/tool", root.join("usr/bin/pkgtool")).expect("ln");
    let ctx = dir.join("context");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    let deb = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-b"])
        .arg(&root)
        .arg(ctx.join("guardpkg.deb"))
        .output()
        .expect("dpkg-deb");
    assert!(deb.status.success(), "dpkg-deb: {deb:?}");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {TEST_IMAGE}\n\
             COPY guardpkg.deb /tmp/\n\
             RUN mkdir -p /var/lib/dpkg/info && touch /var/lib/dpkg/status \
             && dpkg -i /tmp/guardpkg.deb && rm /tmp/guardpkg.deb\n\
             RUN /usr/bin/pkgtool\n"
        ),
    )
    .expect("write Dockerfile");
    let out = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--network", "none", "-t", tag])
        .arg(&ctx)
        .output()
        .expect("docker build");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "docker build failed:\n{text}");
    text
}

#[test]
fn benign_container_workload_raises_no_critical_or_error_alert() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let tmp = TempDir::new("baseline");
    std::fs::create_dir_all(tmp.0.join("responses")).expect("mkdir");
    std::fs::write(tmp.0.join("responses/kill.yaml"), kill_on_critical()).expect("write");
    let audit = tmp.0.join("audit");
    let policies = repo_root().join("policies");
    let falco = repo_root().join("../shared/falco-rules");
    let agent = Agent::start_cmd(&[
        "run",
        "--format",
        "json",
        "--rules",
        policies.to_str().expect("utf8"),
        "--rules",
        falco.to_str().expect("utf8"),
        "--responses",
        tmp.0.join("responses").to_str().expect("utf8"),
        "--audit-dir",
        audit.to_str().expect("utf8"),
    ]);
    let t0 = Instant::now();
    let results: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let docker = &docker;
                s.spawn(move || {
                    (t..CONTAINERS)
                        .step_by(THREADS)
                        .map(|n| lifecycle(docker, n))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let tag = format!("guard-baseline-build:{}", std::process::id());
    let build = package_build(&tmp.0.join("build"), &tag);
    let workload = t0.elapsed();
    // Let the last events reach the engine.
    std::thread::sleep(Duration::from_secs(2));
    let alerts = agent.stop();
    let records = audit_records(&audit);
    let ids: BTreeSet<&str> = results.iter().map(|(id, _)| &id[..12]).collect();
    let ours: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| {
            a["output_fields"]["container.id"]
                .as_str()
                .is_some_and(|id| ids.contains(id))
        })
        .collect();
    let summary: BTreeSet<String> = alerts
        .iter()
        .map(|a| format!("{} ({})", a["rule"], a["priority"]))
        .collect();
    eprintln!(
        "baseline: {CONTAINERS} containers in {workload:?}; {} alert(s), {} of the test's containers: {summary:?}",
        alerts.len(),
        ours.len()
    );
    let severe: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| matches!(a["priority"].as_str(), Some("Critical" | "Error")))
        .collect();
    assert!(
        severe.is_empty(),
        "{} Critical/Error alert(s) on a benign workload, e.g.:\n{}",
        severe.len(),
        severe
            .iter()
            .take(3)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let killed: Vec<&(String, bool)> = results.iter().filter(|(_, alive)| !alive).collect();
    assert!(killed.is_empty(), "containers died early: {killed:?}");
    let acted: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "response").collect();
    assert!(acted.is_empty(), "the kill response acted: {acted:?}");
    // Control: the workload was seen, and its alerts carry the container fields.
    assert!(
        !ours.is_empty(),
        "no alert names the test's containers: the agent did not see the workload"
    );
    for a in &ours {
        let f = &a["output_fields"];
        assert!(
            f["container.name"].is_string() && f.get("container.image").is_some(),
            "{a}"
        );
    }
    // The build ran both steps, and the image holds what the first installed.
    assert!(build.contains("package-installed"), "{build}");
    assert_eq!(
        docker.cmd(&["run", "--rm", &tag, "cat", "/etc/pkg.conf"]),
        "conf"
    );
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output();
    assert!(
        workload < Duration::from_secs(90),
        "the baseline took {workload:?}"
    );
}
