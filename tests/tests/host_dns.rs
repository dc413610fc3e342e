//! Host layer, `fd.sip.name` (issue #17): the agent runs in a private mount namespace whose
//! `/etc/hosts` (a bind mount, the host's file is untouched) maps the Kubernetes API service
//! name to 127.0.0.5, with Falco's stable rules and guard's own. A busybox container on the
//! host network connects to 127.0.0.5 → "Contact K8S API Server From Container"; the same
//! connect to 127.0.0.6 (control) → no such alert. An extra rule prints `%fd.sip.name`; a
//! reload that brings a new name in makes it resolve and match.

use std::{
    io::Read,
    net::TcpListener,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use guard_tests::harness::{
    Agent, Container, Docker, agent_lock, can_run, free_metrics_addr, guard_bin, http_get, is_root,
    metric, repo_root,
};

const K8S_RULE: &str = "Contact K8S API Server From Container";
const K8S_NAME: &str = "kubernetes.default.svc.cluster.local";
/// Compared with only by the probe rule loaded at reload.
const RELOAD_NAME: &str = "api.reload.test";

/// A TCP listener on every address (so 127.0.0.5 and 127.0.0.6 alike); counts connections.
fn listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("0.0.0.0:0").expect("listener");
    let port = l.local_addr().expect("addr").port();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 256];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (port, conns)
}

/// `echo x | nc ADDR PORT` in the container; the exit code.
fn nc(c: &Container, addr: &str, port: u16) -> Option<i32> {
    Command::new("docker")
        .args(["exec", &c.id, "sh", "-c"])
        .arg(format!("echo x | nc {addr} {port}"))
        .output()
        .expect("docker exec nc")
        .status
        .code()
}

fn wait_conns(conns: &AtomicUsize, want: usize) -> usize {
    for _ in 0..50 {
        if conns.load(Ordering::SeqCst) >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    conns.load(Ordering::SeqCst)
}

#[test]
fn k8s_api_server_rule_fires_on_the_resolved_address_only() {
    if !can_run(is_root(), "needs root to load eBPF programs and mount") {
        return;
    }
    if !can_run(
        Command::new("unshare")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "needs unshare(1) for the agent's private /etc/hosts",
    ) {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let tmp = std::env::temp_dir().join(format!("guard-dns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp");
    let hosts = tmp.join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1 localhost\n::1 localhost\n127.0.0.5 {K8S_NAME}\n127.0.0.7 {RELOAD_NAME}\n"
        ),
    )
    .expect("hosts");
    // Prints the name fd.sip.name resolves to; `unresolvable.invalid` never resolves.
    let probe = tmp.join("probe.yaml");
    std::fs::write(
        &probe,
        format!(
            "- rule: DNS name probe\n  desc: d\n  condition: evt.type = connect and container and fd.sip.name in ({K8S_NAME}, unresolvable.invalid)\n  output: probe sip=%fd.sip.name rip=%fd.rip.name lip=%fd.lip.name\n  priority: INFO\n"
        ),
    )
    .expect("probe rule");
    let (port, conns) = listener();
    let c = docker.run(&["--network", "host"], &["sleep", "300"]);
    let metrics = free_metrics_addr();
    let falco = repo_root().join("../shared/falco-rules/falco_rules.yaml");
    let policies = repo_root().join("policies");
    // unshare without --fork execs sh, which execs guard: the agent keeps the child's pid.
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(&hosts)
        .arg(guard_bin())
        .args(["run", "--format", "json", "--no-responses", "--no-audit"])
        .args(["--metrics-addr", &metrics, "--rules"])
        .arg(&falco)
        .arg("--rules")
        .arg(&policies)
        .arg("--rules")
        .arg(&probe);
    let agent = Agent::spawn(cmd);
    // The host's /etc/hosts is not the agent's.
    let host_hosts = std::fs::read_to_string("/etc/hosts").expect("/etc/hosts");
    assert!(
        !host_hosts.contains(K8S_NAME),
        "the host's /etc/hosts was changed"
    );
    let agent_hosts = std::fs::read_to_string(format!("/proc/{}/root/etc/hosts", agent.pid()))
        .expect("agent /etc/hosts");
    assert!(agent_hosts.contains(&format!("127.0.0.5 {K8S_NAME}")));

    // Control first: 127.0.0.6 reaches the same listener, but is not the name's address.
    assert_eq!(nc(&c, "127.0.0.6", port), Some(0), "control nc");
    assert_eq!(
        wait_conns(&conns, 1),
        1,
        "the control connect reached the listener"
    );
    assert_eq!(nc(&c, "127.0.0.5", port), Some(0), "nc to the K8S address");
    assert_eq!(wait_conns(&conns, 2), 2);
    let mut got = agent.collect_until(Duration::from_secs(20), |v| {
        v["rule"] == K8S_RULE
            && v["output"]
                .as_str()
                .is_some_and(|o| o.contains("127.0.0.5"))
    });
    // Anything the control could still raise arrives within a moment more.
    got.extend(agent.collect_until(Duration::from_secs(2), |_| false));
    let k8s: Vec<&serde_json::Value> = got.iter().filter(|v| v["rule"] == K8S_RULE).collect();
    assert_eq!(
        k8s.len(),
        1,
        "exactly one K8S alert (none for 127.0.0.6): {k8s:#?}"
    );
    let a = k8s[0];
    let f = &a["output_fields"];
    assert_eq!(a["priority"], "Notice");
    assert!(
        a["output"]
            .as_str()
            .is_some_and(|o| o.contains("Unexpected connection to K8s API Server from container")),
        "{a}"
    );
    assert_eq!(f["evt.type"], "connect");
    assert_eq!(f["fd.type"], "ipv4");
    assert_eq!(f["fd.l4proto"], "tcp");
    assert_eq!(f["fd.rport"], port);
    assert_eq!(f["proc.name"], "nc");
    assert!(
        f["fd.name"]
            .as_str()
            .is_some_and(|n| n.ends_with(&format!("->127.0.0.5:{port}"))),
        "{f}"
    );
    assert_eq!(f["container.id"], &c.id[..12]);
    // The probe rule: the name for 127.0.0.5, <NA> for the (unnamed) local address; none
    // for the control.
    let probes: Vec<&serde_json::Value> = got
        .iter()
        .filter(|v| v["rule"] == "DNS name probe")
        .collect();
    assert_eq!(probes.len(), 1, "{probes:#?}");
    assert_eq!(probes[0]["output_fields"]["fd.sip.name"], K8S_NAME);
    assert_eq!(probes[0]["output_fields"]["fd.rip.name"], K8S_NAME);
    assert!(probes[0]["output_fields"]["fd.lip.name"].is_null());
    assert!(
        probes[0]["output"]
            .as_str()
            .is_some_and(|o| o.contains(&format!("probe sip={K8S_NAME} rip={K8S_NAME} lip=<NA>"))),
        "{}",
        probes[0]["output"]
    );
    // Before the reload, RELOAD_NAME is no rule's name: 127.0.0.7 raises nothing.
    assert_eq!(nc(&c, "127.0.0.7", port), Some(0));
    // Its event is handled under the rules in force before the file changes.
    std::thread::sleep(Duration::from_secs(1));
    // A reload (file change) whose probe compares with RELOAD_NAME: collected and resolved.
    let from = agent.stderr_len();
    let next = tmp.join("probe.yaml.next");
    std::fs::write(
        &next,
        format!(
            "- rule: DNS name probe\n  desc: d\n  condition: evt.type = connect and container and fd.sip.name = {RELOAD_NAME}\n  output: reloaded sip=%fd.sip.name\n  priority: INFO\n"
        ),
    )
    .expect("next probe");
    std::fs::rename(&next, &probe).expect("replace probe");
    agent
        .wait_stderr(from, Duration::from_secs(20), |l| {
            l.contains("guard: reloaded (file change): generation 2")
        })
        .expect("reloaded");
    let before: Vec<serde_json::Value> = agent.collect_until(Duration::from_secs(1), |_| false);
    assert!(
        !before.iter().any(|v| v["rule"] == "DNS name probe"),
        "an alert for 127.0.0.7 before the reload: {before:#?}"
    );
    let mut reloaded = None;
    for _ in 0..10 {
        assert_eq!(nc(&c, "127.0.0.7", port), Some(0));
        reloaded = agent.wait_for(Duration::from_secs(2), |v| v["rule"] == "DNS name probe");
        if reloaded.is_some() {
            break;
        }
    }
    let reloaded = reloaded.expect("probe alert for the name loaded at reload");
    assert_eq!(reloaded["output_fields"]["fd.sip.name"], RELOAD_NAME);
    // The K8S name, still in the rules, still resolves after the reload.
    assert_eq!(nc(&c, "127.0.0.5", port), Some(0));
    let again = agent.wait_for(Duration::from_secs(10), |v| v["rule"] == K8S_RULE);
    assert!(again.is_some(), "no K8S alert after the reload");

    // The name that does not resolve: counted, and logged once.
    let (_, body) = http_get(&metrics, "/metrics").expect("/metrics");
    let failures = metric(&body, "guard_dns_lookup_failures_total").expect("dns metric");
    assert!(failures >= 1.0, "{failures}");
    let (_, stderr) = agent.stop_with_stderr();
    let logged = stderr
        .iter()
        .filter(|l| l.contains("host name does not resolve") && l.contains("unresolvable.invalid"))
        .count();
    assert_eq!(logged, 1, "{stderr:#?}");
    assert!(
        !stderr
            .iter()
            .any(|l| l.contains("host name does not resolve") && l.contains(K8S_NAME)),
        "{stderr:#?}"
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&tmp);
}
