//! Host layer: container and pod metadata from the Kubernetes CRI, against a real containerd
//! (Debian's package, CRI plugin on, private state and socket: `integration/containerd.sh`).
//! The test is the CRI client kubelet would be: host-network pod sandboxes with a namespace,
//! name and labels, and a busybox container in each.
//!
//! Run: `flock /run/guard-priv.lock cargo test -p guard-tests --test cri_containerd -- --test-threads=1`

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use guard_tests::harness::{
    Scratch, agent_lock, can_run, cgroup2_mount, free_metrics_addr, guard_bin, http_get, is_root,
    metric, repo_root, tracked_containers_settled,
};
use k8s_cri::v1::{self as cri, runtime_service_client::RuntimeServiceClient};

type Client = RuntimeServiceClient<tonic::transport::Channel>;

const BUSYBOX: &str = "docker.io/guard-test/busybox:1";
/// Pods' cgroups go under this parent (kubelet's cgroupfs layout: `kubepods…/pod<uid>/<id>`).
const CGROUP_PARENT: &str = "/kubepods-guardtest";

/// The fixture's socket, after `integration/containerd.sh up` (None, after saying why, when
/// it cannot run outside CI).
fn containerd() -> Option<String> {
    let script = repo_root().join("integration/containerd.sh");
    let out = Command::new("bash").arg(&script).arg("up").output();
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    if !can_run(
        ok,
        &format!(
            "integration/containerd.sh up failed: {}",
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
        .expect("containerd.sh socket");
    Some(String::from_utf8_lossy(&sock.stdout).trim().to_owned())
}

fn fixture(cmd: &str) {
    let st = Command::new("bash")
        .arg(repo_root().join("integration/containerd.sh"))
        .arg(cmd)
        .status()
        .expect("containerd.sh");
    assert!(st.success(), "containerd.sh {cmd} failed");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn client(sock: &str) -> Client {
    guard::state::cri::connect(Path::new(sock), 16 << 20)
        .await
        .expect("CRI client")
}

fn host_network() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

struct Pod {
    sandbox: String,
    container: String,
    uid: String,
}

fn sandbox_config(
    ns: &str,
    name: &str,
    uid: &str,
    labels: &BTreeMap<&str, &str>,
) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: ns.into(),
            attempt: 0,
        }),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{CGROUP_PARENT}/pod{uid}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(host_network()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// RunPodSandbox + CreateContainer + StartContainer: a host-network pod running `sleep`.
async fn run_pod(c: &mut Client, ns: &str, name: &str, labels: &BTreeMap<&str, &str>) -> Pod {
    run_pod_cmd(c, ns, name, labels, &["/bin/sleep", "3600"]).await
}

/// Where a pod's container log goes ([`POD_LOGS`]/<uid>/app.log).
const POD_LOGS: &str = "/tmp/guard-cri-logs";

/// A pod whose container runs `command`, with the labels kubelet puts on every container
/// (`io.kubernetes.pod.*`, `io.kubernetes.container.name`) and its log in [`POD_LOGS`].
/// StartContainer may fail (an entrypoint killed at its exec): the pod is returned anyway.
async fn run_pod_cmd(
    c: &mut Client,
    ns: &str,
    name: &str,
    labels: &BTreeMap<&str, &str>,
    command: &[&str],
) -> Pod {
    let uid = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        rand_u64() & 0xffff_ffff_ffff
    );
    let mut config = sandbox_config(ns, name, &uid, labels);
    config.log_directory = format!("{POD_LOGS}/{uid}");
    std::fs::create_dir_all(&config.log_directory).expect("pod log directory");
    let sandbox = c
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let container = c
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: command.iter().map(|s| s.to_string()).collect(),
                log_path: "app.log".into(),
                labels: [
                    ("tier", "front"),
                    ("io.kubernetes.pod.name", name),
                    ("io.kubernetes.pod.namespace", ns),
                    ("io.kubernetes.pod.uid", uid.as_str()),
                    ("io.kubernetes.container.name", "app"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(host_network()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    let started = c
        .start_container(cri::StartContainerRequest {
            container_id: container.clone(),
        })
        .await;
    if command[0] == "/bin/sleep" {
        started.expect("StartContainer");
    }
    Pod {
        sandbox,
        container,
        uid,
    }
}

async fn remove_pod(c: &mut Client, p: &Pod) {
    let _ = c
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: p.sandbox.clone(),
        })
        .await;
    c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: p.sandbox.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    remove_cgroup(&format!("{CGROUP_PARENT}/pod{}", p.uid));
    let _ = std::fs::remove_dir_all(format!("{POD_LOGS}/{}", p.uid));
}

/// Waits (at most 10 s) for the pod's container to exit: its exit code and its log.
async fn exited(c: &mut Client, p: &Pod) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = c
            .container_status(cri::ContainerStatusRequest {
                container_id: p.container.clone(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status");
        if st.state == cri::ContainerState::ContainerExited as i32 || Instant::now() > deadline {
            let log = std::fs::read_to_string(format!("{POD_LOGS}/{}/app.log", p.uid))
                .unwrap_or_default();
            return (st.exit_code, log);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bounded exec loop on the host (at most `secs` seconds): the event flood the start-window
/// binding must not depend on. Killed by its pid when dropped.
struct Flood(std::process::Child);

impl Flood {
    fn start(secs: u32) -> Self {
        Self(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do /bin/true; done"
                ))
                .spawn()
                .expect("flood loop"),
        )
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The plain containerd namespace of `integration/containerd.sh` (busybox imported there).
const PLAIN_NS: &str = "guardtest";

/// `ctr` against the fixture, in [`PLAIN_NS`]: (exit code, stdout + stderr).
fn ctr(sock: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("timeout")
        .args(["30", "ctr", "--address", sock, "--namespace", PLAIN_NS])
        .args(args)
        .output()
        .expect("ctr");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A 64-hex container id (what `ctr run` needs for guard to see a container in `/NS/<id>`).
fn hex_id() -> String {
    format!(
        "{:016x}{:016x}{:016x}{:016x}",
        rand_u64(),
        rand_u64(),
        rand_u64(),
        rand_u64()
    )
}

/// Removes the `ctr` containers the test started, also on a failure.
struct CtrCleanup(String, Vec<String>);

impl Drop for CtrCleanup {
    fn drop(&mut self) {
        for id in &self.1 {
            let _ = ctr(&self.0, &["tasks", "kill", "-s", "KILL", id]);
        }
        std::thread::sleep(Duration::from_millis(300));
        for id in &self.1 {
            let _ = ctr(&self.0, &["tasks", "rm", "-f", id]);
            let _ = ctr(&self.0, &["containers", "rm", id]);
            remove_cgroup(&format!("/{PLAIN_NS}/{id}"));
        }
    }
}

/// Removes what is left under [`CGROUP_PARENT`] when the test ends, also on a failure (pods
/// still running keep their directories; `integration/containerd.sh down` stops them).
struct CgroupCleanup;

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        for _ in 0..3 {
            let mut roots = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
            if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
                roots.extend(rd.flatten().map(|e| e.path()));
            }
            for r in roots {
                let top = r.join(CGROUP_PARENT.trim_start_matches('/'));
                let Ok(pods) = std::fs::read_dir(&top) else {
                    continue;
                };
                for p in pods.flatten().filter(|e| e.path().is_dir()) {
                    if let Ok(cs) = std::fs::read_dir(p.path()) {
                        for c in cs.flatten().filter(|e| e.path().is_dir()) {
                            let _ = std::fs::remove_dir(c.path());
                        }
                    }
                    let _ = std::fs::remove_dir(p.path());
                }
                let _ = std::fs::remove_dir(&top);
            }
        }
    }
}

/// runc leaves the pod's parent cgroup: remove it in every hierarchy (v2, and v1 controllers
/// on hybrid hosts).
fn remove_cgroup(rel: &str) {
    let mut roots = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    for r in roots {
        let _ = std::fs::remove_dir(r.join(rel.trim_start_matches('/')));
    }
}

/// ExecSync: exit code and stdout.
async fn exec(c: &mut Client, id: &str, cmd: &[&str]) -> (i32, String) {
    let r = c
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A rule whose output names every CRI field, for the alert assertions.
const RULE: &str = r#"- rule: CRI test shell
  desc: a shell in a CRI pod (test rule)
  condition: evt.type = execve and container.id != host and proc.name = sh
  output: >
    CRI shell (ns=%k8s.ns.name pod=%k8s.pod.name uid=%k8s.pod.uid app=%k8s.pod.label[app]
    podlabels=%k8s.pod.labels tier=%container.label[tier] name=%container.name
    image=%container.image repo=%container.image.repository tag=%container.image.tag
    type=%container.type id=%container.id ctrns=%container.label[io.containerd.namespace]
    gt=%container.label[guard.test])
  priority: WARNING
  tags: [test]
"#;

#[test]
fn cri_pods_are_enriched_enforced_recovered_and_bounded() {
    if !can_run(
        is_root(),
        "needs root to load eBPF programs and run containerd",
    ) {
        return;
    }
    let Some(sock) = containerd() else { return };
    let _lock = agent_lock();
    let _cleanup = CgroupCleanup;
    let started = Instant::now();
    let s = Scratch::new("cri");
    let rules = s.dir.join("cri-rule.yaml");
    std::fs::write(&rules, RULE).expect("rule file");
    let policy = s.policy(
        "- policy: cri-deny-ns\n  workload: {k8s_namespace: guard-cri-deny}\n  mode: enforce\n  enforce:\n    exec: {deny: [/bin/sh]}\n\
         - policy: ctr-deny-label\n  workload: {image: 'docker.io/guard-test/busybox:*', labels: {guard.test: ctr-deny}}\n  mode: enforce\n  enforce:\n    exec: {deny: [/bin/sh]}\n",
    );
    let metrics = free_metrics_addr();
    let agent = s.agent(
        &policy,
        &[
            "--rules",
            rules.to_str().expect("utf8"),
            "--cri-socket",
            &sock,
            "--docker-socket",
            "/nonexistent/docker.sock",
            "--metrics-addr",
            &metrics,
        ],
    );
    let rt = rt();
    let mut c = rt.block_on(client(&sock));

    // 1. Enrichment: a shell in a pod of namespace guard-cri-ok alerts with every field.
    let labels = BTreeMap::from([("app", "web"), ("team", "blue")]);
    let pod = rt.block_on(run_pod(&mut c, "guard-cri-ok", "web-0", &labels));
    let short = &pod.container[..12];
    let mut alert = None;
    for _ in 0..20 {
        let (code, out) = rt.block_on(exec(&mut c, &pod.container, &["/bin/sh", "-c", "echo hi"]));
        assert_eq!(
            (code, out.trim()),
            (0, "hi"),
            "control: a shell runs outside the denied namespace"
        );
        alert = agent.wait_for(Duration::from_millis(500), |v| {
            v["rule"] == "CRI test shell"
                && v["output_fields"]["container.id"] == short
                && v["output_fields"]["k8s.ns.name"] == "guard-cri-ok"
        });
        if alert.is_some() {
            break;
        }
    }
    let alert = alert.expect("no enriched alert for the shell in the CRI pod");
    let f = &alert["output_fields"];
    eprintln!("cri: {:?}: enriched alert {f}", started.elapsed());
    assert_eq!(f["k8s.pod.name"], "web-0");
    assert_eq!(f["k8s.pod.uid"], pod.uid.as_str());
    assert_eq!(f["k8s.pod.label[app]"], "web");
    assert_eq!(f["k8s.pod.labels"], "app:web, team:blue");
    assert_eq!(f["container.label[tier]"], "front");
    assert_eq!(f["container.name"], "app");
    assert_eq!(f["container.image"], BUSYBOX);
    assert_eq!(
        f["container.image.repository"],
        "docker.io/guard-test/busybox"
    );
    assert_eq!(f["container.image.tag"], "1");
    assert_eq!(f["container.type"], "containerd");
    // The default ruleset's shell rule names the pod too.
    let (body_status, body) = http_get(&metrics, "/metrics").expect("/metrics");
    assert!(body_status.contains("200"), "{body_status}");
    assert_eq!(
        metric(&body, "guard_container_runtime_up{runtime=\"cri\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&body, "guard_container_runtime_up{runtime=\"docker\"}"),
        Some(0.0)
    );
    // containerd's own API on the same socket, its event stream open.
    assert_eq!(
        metric(&body, "guard_container_runtime_up{runtime=\"containerd\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&body, "guard_containerd_events_subscribed"),
        Some(1.0)
    );

    // `guard doctor` names the runtime behind the socket.
    let doctor = Command::new(guard_bin())
        .args(["doctor", "--cri-socket", &sock])
        .output()
        .expect("guard doctor");
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("PASS  cri") && l.contains(&sock) && l.contains("containerd")),
        "no PASS cri line naming the socket and containerd:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("PASS  containerd")
            && l.contains(&sock)
            && l.contains(PLAIN_NS)
            && l.contains("events: subscribed")),
        "no PASS containerd line naming the socket, the namespaces and the event stream:\n{text}"
    );

    // 2. Enforcement: a policy selecting the namespace denies the shell from its first exec,
    //    in each of 10 new pods.
    let mut denied = 0;
    for i in 0..10 {
        let p = rt.block_on(run_pod(
            &mut c,
            "guard-cri-deny",
            &format!("deny-{i}"),
            &labels,
        ));
        let (code, out) = rt.block_on(exec(&mut c, &p.container, &["/bin/sh", "-c", "echo ran"]));
        eprintln!("cri: deny pod {i}: exit {code} out {out:?}");
        if code == 137 && !out.contains("ran") {
            denied += 1;
        }
        // The pod's own entrypoint (sleep) is not a shell: the container still runs.
        let (code, _) = rt.block_on(exec(&mut c, &p.container, &["/bin/true"]));
        assert_eq!(code, 0, "pod {i}: a non-denied binary runs");
        rt.block_on(remove_pod(&mut c, &p));
    }
    eprintln!(
        "cri: {:?}: {denied}/10 first shells denied",
        started.elapsed()
    );
    assert_eq!(
        denied, 10,
        "the shell was denied from its first exec in {denied} of 10 pods"
    );

    // 2b. No start window: pods whose ENTRYPOINT is the denied shell are refused from its
    //     first exec (bound at containerd's /containers/create, before the cgroup exists),
    //     under a host exec flood; a control pod in another namespace runs the same entrypoint.
    let entry = ["/bin/sh", "-c", "echo ran"];
    let flood = Flood::start(60);
    let ctl = rt.block_on(run_pod_cmd(
        &mut c,
        "guard-cri-ok",
        "entry-ok",
        &labels,
        &entry,
    ));
    let (code, log) = rt.block_on(exited(&mut c, &ctl));
    assert_eq!(
        code, 0,
        "control: the entrypoint runs outside the denied namespace ({log:?})"
    );
    assert!(
        log.contains("ran"),
        "control: the entrypoint's output is logged: {log:?}"
    );
    rt.block_on(remove_pod(&mut c, &ctl));
    let mut refused = 0;
    for i in 0..10 {
        let p = rt.block_on(run_pod_cmd(
            &mut c,
            "guard-cri-deny",
            &format!("entry-{i}"),
            &labels,
            &entry,
        ));
        let (code, log) = rt.block_on(exited(&mut c, &p));
        eprintln!("cri: entrypoint pod {i}: exit {code} log {log:?}");
        if code == 137 && !log.contains("ran") {
            refused += 1;
        }
        rt.block_on(remove_pod(&mut c, &p));
    }
    drop(flood);
    eprintln!(
        "cri: {:?}: {refused}/10 shell entrypoints refused under a flood",
        started.elapsed()
    );
    assert_eq!(
        refused, 10,
        "the shell entrypoint was refused from its first exec in {refused} of 10 pods"
    );

    // 2c. A container started straight on containerd (`ctr -n guardtest run`): alerts carry
    //     its image, its label, its namespace and (nerdctl's label) its name; a policy selecting its image and label
    //     denies its shell, from the entrypoint on; another container's shell runs (control).
    let ids = (hex_id(), hex_id());
    let _ctr_cleanup = CtrCleanup(sock.clone(), vec![ids.0.clone(), ids.1.clone()]);
    let (code, out) = ctr(
        &sock,
        &[
            "run",
            "-d",
            "--label",
            "guard.test=ctr-alert",
            "--label",
            "nerdctl/name=guard-ctr",
            BUSYBOX,
            &ids.0,
            "/bin/sleep",
            "3600",
        ],
    );
    assert_eq!(code, 0, "ctr run: {out}");
    let ctr_short = &ids.0[..12];
    let mut ctr_alert = None;
    for i in 0..20 {
        let (code, out) = ctr(
            &sock,
            &[
                "tasks",
                "exec",
                "--exec-id",
                &format!("sh{i}"),
                &ids.0,
                "/bin/sh",
                "-c",
                "echo hi",
            ],
        );
        assert_eq!(
            (code, out.trim()),
            (0, "hi"),
            "control: a shell runs in the ctr container"
        );
        ctr_alert = agent.wait_for(Duration::from_millis(500), |v| {
            v["rule"] == "CRI test shell"
                && v["output_fields"]["container.id"] == ctr_short
                && v["output_fields"]["container.image"] == BUSYBOX
        });
        if ctr_alert.is_some() {
            break;
        }
    }
    let ctr_alert = ctr_alert.expect("no enriched alert for the shell in the ctr container");
    let f = &ctr_alert["output_fields"];
    eprintln!("cri: {:?}: ctr alert {f}", started.elapsed());
    assert_eq!(f["container.label[io.containerd.namespace]"], PLAIN_NS);
    assert_eq!(f["container.label[guard.test]"], "ctr-alert");
    assert_eq!(f["container.name"], "guard-ctr", "nerdctl's name label");
    assert_eq!(
        f["container.image.repository"],
        "docker.io/guard-test/busybox"
    );
    assert_eq!(f["container.type"], "containerd");
    assert!(f["k8s.ns.name"].is_null(), "no kubelet outside k8s.io: {f}");
    let (code, out) = ctr(
        &sock,
        &[
            "run",
            "--rm",
            "--label",
            "guard.test=ctr-deny",
            BUSYBOX,
            &ids.1,
            "/bin/sh",
            "-c",
            "echo ran",
        ],
    );
    eprintln!("cri: ctr deny container: exit {code} out {out:?}");
    assert!(
        code == 137 && !out.contains("ran"),
        "the selected ctr container's shell entrypoint ran (exit {code}): {out}"
    );

    // 3. containerd stops: metadata is <NA> (with a warning), alerts go on; it restarts:
    //    metadata comes back for the same, still running, container.
    let from = agent.stderr_len();
    fixture("stop");
    assert!(
        agent
            .wait_stderr(from, Duration::from_secs(10), |l| l
                .contains("CRI runtime unreachable"))
            .is_some(),
        "no warning about the CRI runtime going away"
    );
    assert!(
        agent
            .wait_stderr(from, Duration::from_secs(10), |l| l
                .contains("containerd unreachable"))
            .is_some(),
        "no warning about containerd's API going away"
    );
    // A process moved into the container's cgroup stands in for an exec (no CRI to ask).
    let cg = format!(
        "{}{CGROUP_PARENT}/pod{}/{}",
        cgroup2_mount().display(),
        pod.uid,
        pod.container
    );
    let ctr_cg = format!("{}/{PLAIN_NS}/{}", cgroup2_mount().display(), ids.0);
    let shell_in = |cg: &str| {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {cg}/cgroup.procs && exec /bin/sh -c true"
            ))
            .status()
            .expect("sh in the container's cgroup");
        assert!(st.success(), "moving a shell into {cg}");
    };
    let shell_in_cgroup = || shell_in(&cg);
    let ctr_alert_when = |ok: &dyn Fn(&serde_json::Value) -> bool, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            shell_in(&ctr_cg);
            let a = agent.wait_for(Duration::from_millis(500), |v| {
                v["rule"] == "CRI test shell"
                    && v["output_fields"]["container.id"] == ctr_short
                    && ok(v)
            });
            if a.is_some() {
                return a;
            }
        }
        None
    };
    let mut na = None;
    for _ in 0..20 {
        shell_in_cgroup();
        na = agent.wait_for(Duration::from_millis(500), |v| {
            v["rule"] == "CRI test shell" && v["output_fields"]["container.id"] == short
        });
        if na.is_some() {
            break;
        }
    }
    let na = na.expect("no alert from the container while containerd was down");
    // JSON renders an unknown field as null (as Falco does), the text output as <NA>.
    assert!(na["output_fields"]["k8s.ns.name"].is_null(), "{na}");
    assert!(
        na["output"].as_str().is_some_and(|o| o.contains("ns=<NA>")),
        "{na}"
    );
    assert_eq!(na["output_fields"]["container.name"], "<NA>", "{na}");
    let (_, body) = http_get(&metrics, "/metrics").expect("/metrics");
    assert_eq!(
        metric(&body, "guard_container_runtime_up{runtime=\"cri\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&body, "guard_container_runtime_up{runtime=\"containerd\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&body, "guard_containerd_events_subscribed"),
        Some(0.0)
    );
    let na = ctr_alert_when(&|_| true, 10).expect("no alert from the ctr container while down");
    assert_eq!(na["output_fields"]["container.image"], "<NA>", "{na}");
    fixture("start");
    let mut back = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while back.is_none() && Instant::now() < deadline {
        shell_in_cgroup();
        back = agent.wait_for(Duration::from_millis(500), |v| {
            v["rule"] == "CRI test shell"
                && v["output_fields"]["container.id"] == short
                && v["output_fields"]["k8s.ns.name"] == "guard-cri-ok"
        });
    }
    assert!(
        back.is_some(),
        "metadata did not come back after containerd restarted"
    );
    let ctr_back = ctr_alert_when(
        &|v| {
            v["output_fields"]["container.image"] == BUSYBOX
                && v["output_fields"]["container.label[guard.test]"] == "ctr-alert"
        },
        20,
    );
    assert!(
        ctr_back.is_some(),
        "the ctr container's metadata did not come back after containerd restarted"
    );
    // The gauges are copied in once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let subscribed = loop {
        let (_, body) = http_get(&metrics, "/metrics").expect("/metrics");
        let v = metric(&body, "guard_containerd_events_subscribed");
        if v == Some(1.0) || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        subscribed,
        Some(1.0),
        "containerd's events not subscribed again"
    );
    eprintln!("cri: {:?}: recovered after restart", started.elapsed());
    let mut c = rt.block_on(client(&sock));
    rt.block_on(remove_pod(&mut c, &pod));

    // 4. No leak: 200 pod create/delete cycles leave the container table where it was.
    let (_, body) = http_get(&metrics, "/metrics").expect("/metrics");
    let before = metric(&body, "guard_tracked_containers").expect("tracked containers");
    for i in 0..200 {
        let p = rt.block_on(run_pod(
            &mut c,
            "guard-cri-churn",
            &format!("churn-{i}"),
            &labels,
        ));
        rt.block_on(remove_pod(&mut c, &p));
    }
    // Removal is seen at the next poll, cgroups at the next prune (5 s).
    let after = tracked_containers_settled(&metrics, before);
    eprintln!(
        "cri: {:?}: tracked containers {before} before, {after} after 200 cycles",
        started.elapsed()
    );
    assert!(
        after <= before,
        "container table grew from {before} to {after} over 200 pod cycles"
    );
    let (_, stderr) = agent.stop_with_stderr();
    assert!(
        stderr.iter().all(|l| !l.contains("panicked")),
        "the agent panicked"
    );
    remove_cgroup(CGROUP_PARENT);
    s.cleanup();
    eprintln!("cri: total {:?}", started.elapsed());
}
