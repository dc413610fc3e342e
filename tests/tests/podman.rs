//! Host layer: container metadata and start-time policy for Podman, against a real
//! `podman system service` (Debian's package, private store, socket and events log:
//! `integration/podman.sh`), read through guard's Docker API client.
//!
//! Run: `flock /run/guard-priv.lock cargo test -p guard-tests --test podman -- --test-threads=1`

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use guard_tests::harness::{
    Scratch, agent_lock, can_run, cgroup2_mount, free_metrics_addr, guard_bin, http_get, is_root,
    metric, repo_root, tracked_containers_settled,
};

const IMAGE: &str = "localhost/guard-test-busybox:latest";

/// The fixture's socket and events log, after `integration/podman.sh up` (None, after saying
/// why, when it cannot run outside CI).
fn podman() -> Option<(String, String)> {
    let script = repo_root().join("integration/podman.sh");
    let out = Command::new("bash").arg(&script).arg("up").output();
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    if !can_run(
        ok,
        &format!(
            "integration/podman.sh up failed: {}",
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_else(|e| e.to_string())
        ),
    ) {
        return None;
    }
    let sock = Command::new("bash")
        .arg(&script)
        .arg("socket")
        .output()
        .expect("podman.sh socket");
    let sock = String::from_utf8_lossy(&sock.stdout).trim().to_owned();
    let events = Path::new(&sock)
        .with_file_name("events.log")
        .to_string_lossy()
        .into_owned();
    Some((sock, events))
}

fn fixture(cmd: &str) {
    let st = Command::new("bash")
        .arg(repo_root().join("integration/podman.sh"))
        .arg(cmd)
        .status()
        .expect("podman.sh");
    assert!(st.success(), "podman.sh {cmd} failed");
}

/// `podman --remote` against the private service: exit code, stdout, stderr.
fn remote(sock: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new("podman")
        .args(["--remote", "--url", &format!("unix://{sock}")])
        .args(args)
        .output()
        .expect("podman --remote");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One request on the Docker-compatible API: (status code, body).
fn api(sock: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(sock).expect("podman socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "{method} /v1.41{path} HTTP/1.0\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

/// Removes every container of the private store when the test ends, also on a failure.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = remote(&self.0, &["rm", "-af", "-t", "0"]);
    }
}

/// A bounded exec flood on the host: `loops` shells running /bin/true up to `n` times each,
/// stopped by pid.
struct ExecFlood(Vec<std::process::Child>);

impl ExecFlood {
    fn start(loops: usize, n: u32) -> Self {
        let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
        Self(
            (0..loops)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", &script])
                        .spawn()
                        .expect("exec flood")
                })
                .collect(),
        )
    }
}

impl Drop for ExecFlood {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A rule whose output names the container fields, for the alert assertions.
const RULE: &str = r#"- rule: Podman test shell
  desc: a shell in a Podman container (test rule)
  condition: evt.type = execve and container.id != host and proc.name = sh
  output: >
    Podman shell (name=%container.name image=%container.image repo=%container.image.repository
    tag=%container.image.tag tier=%container.label[tier] type=%container.type id=%container.id)
  priority: WARNING
  tags: [test]
"#;

#[test]
fn podman_containers_are_enriched_enforced_recovered_and_bounded() {
    if !can_run(is_root(), "needs root to load eBPF programs and run podman") {
        return;
    }
    let Some((sock, events)) = podman() else {
        return;
    };
    let _lock = agent_lock();
    let _cleanup = Cleanup(sock.clone());
    let started = Instant::now();
    let s = Scratch::new("podman");
    let rules = s.dir.join("podman-rule.yaml");
    std::fs::write(&rules, RULE).expect("rule file");
    let policy = s.policy(&format!(
        "- policy: podman-deny\n  workload: {{image: \"{IMAGE}\", labels: {{guard-podman: deny}}}}\n  mode: enforce\n  enforce:\n    exec: {{deny: [/bin/touch]}}\n"
    ));
    let metrics = free_metrics_addr();
    let agent = s.agent(
        &policy,
        &[
            "--rules",
            rules.to_str().expect("utf8"),
            "--docker-socket",
            &sock,
            "--podman-events-file",
            &events,
            "--cri-socket",
            "off",
            "--metrics-addr",
            &metrics,
        ],
    );

    eprintln!("podman: {:?}: agent ready", started.elapsed());

    // 1. Enrichment: a shell in a Podman container alerts with its id, name, image and label.
    let (code, out, err) = remote(
        &sock,
        &[
            "run",
            "-d",
            "--name",
            "guard-podman-web",
            "--label",
            "tier=front",
            IMAGE,
            "sleep",
            "600",
        ],
    );
    assert_eq!(code, Some(0), "podman run -d: {err}");
    let id = out.trim().to_owned();
    assert_eq!(id.len(), 64, "container id: {out:?}");
    let short = &id[..12];
    let mut alert = None;
    for _ in 0..20 {
        let (code, out, err) = remote(&sock, &["exec", "guard-podman-web", "sh", "-c", "echo hi"]);
        assert_eq!(
            (code, out.trim()),
            (Some(0), "hi"),
            "control: a shell runs in an unselected container: {err}"
        );
        alert = agent.wait_for(Duration::from_millis(500), |v| {
            v["rule"] == "Podman test shell"
                && v["output_fields"]["container.id"] == short
                && v["output_fields"]["container.name"] == "guard-podman-web"
        });
        if alert.is_some() {
            break;
        }
    }
    let alert = alert.expect("no enriched alert for the shell in the Podman container");
    let f = &alert["output_fields"];
    eprintln!("podman: {:?}: enriched alert {f}", started.elapsed());
    assert_eq!(f["container.image"], IMAGE);
    assert_eq!(
        f["container.image.repository"],
        "localhost/guard-test-busybox"
    );
    assert_eq!(f["container.image.tag"], "latest");
    assert_eq!(f["container.label[tier]"], "front");
    assert_eq!(f["container.type"], "podman");
    // The gauges are copied from the runtime clients every second.
    let mut body = String::new();
    for _ in 0..50 {
        let (status, b) = http_get(&metrics, "/metrics").expect("/metrics");
        assert!(status.contains("200"), "{status}");
        body = b;
        if metric(&body, "guard_container_runtime_up{runtime=\"podman\"}") == Some(1.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(&body, "guard_container_runtime_up{runtime=\"podman\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "guard_container_runtime_up{runtime=\"docker\"}"),
        None,
        "the Docker API gauge is labelled podman"
    );

    // `guard doctor` names Podman behind the socket.
    let doctor = Command::new(guard_bin())
        .args([
            "doctor",
            "--docker-socket",
            &sock,
            "--cri-socket",
            "/nonexistent",
        ])
        .output()
        .expect("guard doctor");
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("PASS  podman")
            && l.contains(&sock)
            && l.contains("Podman Engine")),
        "no PASS podman line naming the socket:\n{text}"
    );

    // 2. Enforcement from the first instruction: 10 `podman run`s and 10 API create+starts
    //    whose ENTRYPOINT is the denied binary are killed before it writes its file, under a
    //    host exec flood; the same run without the selecting label runs it.
    let out_dir = s.dir.join("out");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let mount = format!("{}:/out", out_dir.display());
    let flood = ExecFlood::start(2, 1_000_000);
    let mut denied = 0;
    for i in 0..10 {
        let file = format!("/out/ran-{i}");
        let (code, _, err) = remote(
            &sock,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                &mount,
                "--label",
                "guard-podman=deny",
                IMAGE,
                "/bin/touch",
                &file,
            ],
        );
        let wrote = out_dir.join(format!("ran-{i}")).exists();
        eprintln!(
            "podman: deny run {i}: exit {code:?} wrote {wrote} {}",
            err.trim()
        );
        if code == Some(137) && !wrote {
            denied += 1;
        }
    }
    // The tightest start: the API's create, then start at once (no attach in between, as
    // `podman --remote run` has). Podman's API delivers its create event 100-250 ms late here;
    // only guard's own read of the events log binds these in time.
    let mut api_denied = 0;
    for i in 0..10 {
        let create = format!(
            r#"{{"Image":"{IMAGE}","Cmd":["/bin/touch","/out/api-{i}"],"Labels":{{"guard-podman":"deny"}},"HostConfig":{{"NetworkMode":"none","Binds":["{}:/out"]}}}}"#,
            out_dir.display()
        );
        let (code, body) = api(&sock, "POST", "/containers/create", &create);
        assert_eq!(code, 201, "create {i}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("create answer");
        let cid = v["Id"].as_str().expect("Id").to_owned();
        let (code, body) = api(&sock, "POST", &format!("/containers/{cid}/start"), "");
        assert_eq!(code, 204, "start {i}: {body}");
        let (_, body) = api(&sock, "POST", &format!("/containers/{cid}/wait"), "");
        let status = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["StatusCode"].as_i64());
        let _ = api(
            &sock,
            "DELETE",
            &format!("/containers/{cid}?force=true"),
            "",
        );
        let wrote = out_dir.join(format!("api-{i}")).exists();
        eprintln!("podman: deny API create+start {i}: exit {status:?} wrote {wrote}");
        if status == Some(137) && !wrote {
            api_denied += 1;
        }
    }
    let (code, _, err) = remote(
        &sock,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &mount,
            IMAGE,
            "/bin/touch",
            "/out/control",
        ],
    );
    drop(flood);
    assert_eq!(code, Some(0), "control run failed: {err}");
    assert!(
        out_dir.join("control").exists(),
        "control entrypoint did not run"
    );
    eprintln!(
        "podman: {:?}: denied entrypoints killed: {denied}/10 podman run, {api_denied}/10 API create+start",
        started.elapsed()
    );
    assert_eq!(
        denied, 10,
        "the denied entrypoint was killed before writing in {denied} of 10 runs"
    );
    assert_eq!(
        api_denied, 10,
        "the denied entrypoint was killed before writing in {api_denied} of 10 API starts"
    );
    let alerts = agent.collect_until(Duration::from_secs(3), |_| false);
    let n = alerts
        .iter()
        .filter(|v| v["source"] == "guard_policy" && v["guard"]["policy"] == "podman-deny")
        .count();
    assert_eq!(n, 20, "one policy alert per killed entrypoint");

    // 3. The service stops: metadata is <NA> (with one warning), alerts go on; it restarts:
    //    metadata comes back for the same, still running, container (conmon keeps it).
    let from = agent.stderr_len();
    fixture("stop");
    assert!(
        agent
            .wait_stderr(from, Duration::from_secs(10), |l| l
                .contains("podman service connection lost"))
            .is_some(),
        "no warning about the podman service going away"
    );
    let cg = PathBuf::from(format!(
        "{}/libpod_parent/libpod-{id}",
        cgroup2_mount().display()
    ));
    assert!(cg.is_dir(), "container cgroup {} missing", cg.display());
    // A process moved into the container's cgroup stands in for an exec (no API to ask).
    let shell_in_cgroup = || {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec /bin/sh -c true",
                cg.display()
            ))
            .status()
            .expect("sh in the container's cgroup");
        assert!(st.success(), "moving a shell into {}", cg.display());
    };
    let mut na = None;
    for _ in 0..20 {
        shell_in_cgroup();
        na = agent.wait_for(Duration::from_millis(500), |v| {
            v["rule"] == "Podman test shell" && v["output_fields"]["container.id"] == short
        });
        if na.is_some() {
            break;
        }
    }
    let na = na.expect("no alert from the container while podman was down");
    assert_eq!(na["output_fields"]["container.name"], "<NA>", "{na}");
    assert!(
        na["output"]
            .as_str()
            .is_some_and(|o| o.contains("tier=<NA>")),
        "{na}"
    );
    let (_, body) = http_get(&metrics, "/metrics").expect("/metrics");
    assert_eq!(
        metric(&body, "guard_container_runtime_up{runtime=\"podman\"}"),
        Some(0.0)
    );
    fixture("start");
    let mut back = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while back.is_none() && Instant::now() < deadline {
        shell_in_cgroup();
        back = agent.wait_for(Duration::from_millis(500), |v| {
            v["rule"] == "Podman test shell"
                && v["output_fields"]["container.id"] == short
                && v["output_fields"]["container.name"] == "guard-podman-web"
        });
    }
    assert!(
        back.is_some(),
        "metadata did not come back after the podman service restarted"
    );
    let warnings = agent
        .stderr_so_far()
        .iter()
        .skip(from)
        .filter(|l| l.contains("podman service") && l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "one warning for the outage");
    eprintln!("podman: {:?}: recovered after restart", started.elapsed());
    let (code, _, err) = remote(&sock, &["rm", "-f", "-t", "0", "guard-podman-web"]);
    assert_eq!(code, Some(0), "rm: {err}");

    // 4. No leak: 200 create/remove cycles on the API (every 4th also started, so it has a
    //    cgroup) leave the container table where it was.
    let (_, body) = http_get(&metrics, "/metrics").expect("/metrics");
    let before = metric(&body, "guard_tracked_containers").expect("tracked containers");
    let create = format!(
        r#"{{"Image":"{IMAGE}","Cmd":["/bin/true"],"Labels":{{"tier":"churn"}},"HostConfig":{{"NetworkMode":"none"}}}}"#
    );
    for i in 0..200 {
        let (code, body) = api(&sock, "POST", "/containers/create", &create);
        assert_eq!(code, 201, "create {i}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("create answer");
        let cid = v["Id"].as_str().expect("Id").to_owned();
        if i % 4 == 0 {
            let (code, body) = api(&sock, "POST", &format!("/containers/{cid}/start"), "");
            assert_eq!(code, 204, "start {i}: {body}");
        }
        // Podman 4.3 may refuse a forced remove racing the container's own exit ("container
        // state improper"): asked again, it succeeds.
        let mut removed = (0, String::new());
        for _ in 0..5 {
            removed = api(
                &sock,
                "DELETE",
                &format!("/containers/{cid}?force=true"),
                "",
            );
            if removed.0 == 204 || removed.0 == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            removed.0 == 204 || removed.0 == 200,
            "remove {i}: {} {}",
            removed.0,
            removed.1
        );
    }
    // Removal comes with the API's event stream (up to 250 ms late), cgroups at the next
    // prune (5 s).
    let after = tracked_containers_settled(&metrics, before);
    eprintln!(
        "podman: {:?}: tracked containers {before} before, {after} after 200 cycles",
        started.elapsed()
    );
    assert!(
        after <= before,
        "container table grew from {before} to {after} over 200 cycles"
    );
    let (_, stderr) = agent.stop_with_stderr();
    assert!(
        stderr.iter().all(|l| !l.contains("panicked")),
        "the agent panicked"
    );
    s.cleanup();
    eprintln!("podman: total {:?}", started.elapsed());
}
