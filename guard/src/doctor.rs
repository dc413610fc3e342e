//! `guard doctor`: what this host supports, each line PASS/WARN/FAIL with a one-line fix hint.
//! Exit code 1 when any check FAILs.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::Result;

use crate::{
    policy::backend::{Backend, Kind},
    probes::{self, ProbeConfig},
    sysfs::{cgroup2_mount, lsm_list},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// One line saying how to fix it or what it means (empty on PASS).
    pub hint: String,
}

impl Check {
    fn new(
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            hint: hint.into(),
        }
    }
}

/// Every check; `cri_socket` and `docker_socket` override the runtime sockets looked for.
pub fn all_checks(cri_socket: Option<&Path>, docker_socket: Option<&Path>) -> Vec<Check> {
    let mut v = vec![kernel(), btf()];
    let (tp, lsm, policy, self_protect) = program_support();
    v.push(tp);
    v.push(lsm);
    v.push(policy);
    v.push(self_protect);
    v.push(cgroup_v2());
    v.push(bpffs());
    v.push(capabilities());
    v.push(docker(docker_socket));
    v.push(cri_runtime(cri_socket));
    v.push(containerd_api(cri_socket));
    v.push(falco_intake());
    v
}

/// `guard respond` intakes serving plain HTTP (`--insecure-intake`).
fn falco_intake() -> Check {
    let dir = std::path::Path::new(crate::respond::falco::STATUS_DIR);
    let running = crate::respond::falco::running_intakes(dir);
    let insecure: Vec<String> = running
        .iter()
        .filter(|(_, _, auth)| auth == "insecure")
        .map(|(pid, listen, _)| format!("{listen} (pid {pid})"))
        .collect();
    if insecure.is_empty() {
        return Check::new(
            "falco-intake",
            Status::Pass,
            format!("{} running, none over plain HTTP", running.len()),
            "",
        );
    }
    Check::new(
        "falco-intake",
        Status::Warn,
        format!("plain HTTP (--insecure-intake): {}", insecure.join(", ")),
        "anyone who can connect can trigger responses: use mutual TLS (--tls-cert/--tls-key/--client-ca) or a unix: socket (docs/responses.md)",
    )
}

fn kernel() -> Check {
    match nix::sys::utsname::uname() {
        Ok(u) => {
            let release = u.release().to_string_lossy().into_owned();
            let (maj, min) = parse_version(&release);
            if (maj, min) >= (5, 8) {
                Check::new("kernel", Status::Pass, format!("Linux {release}"), "")
            } else {
                Check::new(
                    "kernel",
                    Status::Fail,
                    format!("Linux {release}"),
                    "guard needs Linux >= 5.8 (BPF ring buffer); upgrade the kernel",
                )
            }
        }
        Err(e) => Check::new(
            "kernel",
            Status::Fail,
            format!("uname failed: {e}"),
            "check /proc",
        ),
    }
}

/// "6.18.44-fc" -> (6, 18); unparsable parts become 0.
pub fn parse_version(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn btf() -> Check {
    let p = Path::new(crate::btf::VMLINUX);
    if p.exists() {
        match crate::btf::kernel()
            .map_err(|e| e.to_string())
            .and_then(|b| {
                b.member_offset("task_struct", "tgid")
                    .map_err(|e| e.to_string())
            }) {
            Ok(_) => Check::new("btf", Status::Pass, "/sys/kernel/btf/vmlinux readable", ""),
            Err(e) => Check::new(
                "btf",
                Status::Fail,
                format!("kernel BTF unusable: {e}"),
                "guard reads struct offsets from BTF; use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
            ),
        }
    } else {
        Check::new(
            "btf",
            Status::Fail,
            "no /sys/kernel/btf/vmlinux",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        )
    }
}

fn program_support() -> (Check, Check, Check, Check) {
    let listed = lsm_list();
    let bpf_listed = listed
        .as_ref()
        .map(|l| l.split(',').any(|m| m == "bpf"))
        .unwrap_or(false);
    let support = probes::probe_support(&ProbeConfig::default());
    let tp = match &support.tracepoint {
        Ok(()) => Check::new(
            "tracepoints",
            Status::Pass,
            "sched_process_exec attached; ring buffer created",
            "",
        ),
        Err(e) => Check::new(
            "tracepoints",
            Status::Fail,
            format!("cannot load/attach tracepoint programs: {e:#}"),
            "run as root (CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN) on a kernel with BPF ring buffers",
        ),
    };
    let lsm_desc = match &listed {
        Ok(l) => format!("active LSMs: {l}"),
        Err(e) => e.to_string(),
    };
    let lsm = match (&support.lsm, bpf_listed) {
        (Ok(()), _) => Check::new(
            "bpf-lsm",
            Status::Pass,
            format!("LSM program loads and attaches ({lsm_desc})"),
            "",
        ),
        (Err(e), true) => Check::new(
            "bpf-lsm",
            Status::Warn,
            format!("bpf is listed ({lsm_desc}) but the kernel refuses LSM programs: {e:#}"),
            {
                let k = support.policy.kind().unwrap_or(Kind::SigkillFallback);
                format!(
                    "no BPF LSM denial here: policies use the {} backend ({})",
                    k.name(),
                    k.summary()
                )
            },
        ),
        (Err(e), false) => Check::new(
            "bpf-lsm",
            Status::Warn,
            format!("bpf is not an active LSM ({lsm_desc}); loading failed: {e:#}"),
            "boot with lsm=...,bpf (CONFIG_BPF_LSM=y) for in-kernel denial; until then the SIGKILL fallback applies",
        ),
    };
    let policy = policy_check(&support.policy);
    let self_protect = match &support.self_protect {
        Ok(()) => Check::new(
            "self-protect",
            Status::Pass,
            "bpf-lsm: `guard run` denies containers signals and ptrace to the agent and access to its config, policies, audit log and pins (--no-self-protect turns it off)",
            "",
        ),
        Err(e) => Check::new(
            "self-protect",
            Status::Warn,
            format!("unavailable: {e:#}"),
            "without BPF LSM nothing in the kernel stops a container that can reach the agent (shared pid namespace, leaked descriptors, host mounts) from signalling it or reading its files; see docs/self-protection.md",
        ),
    };
    (tp, lsm, policy, self_protect)
}

/// The `policy` line: the backend `guard run --policy` would use and what it declares it
/// enforces (policy::backend).
pub fn policy_check(backend: &Backend) -> Check {
    match backend {
        Backend::Attached(k) => {
            let detail = format!("backend {}: {}", k.name(), k.summary());
            // PASS when nothing is left to a kill after the fact.
            if k.prevents() {
                Check::new("policy", Status::Pass, detail, "")
            } else {
                Check::new("policy", Status::Warn, detail, k.spec().hint)
            }
        }
        Backend::Unavailable(e) => Check::new(
            "policy",
            Status::Fail,
            format!("no policy enforcement backend: {e}"),
            "run as root on a kernel with BPF LSM or bpf_send_signal",
        ),
    }
}

fn cgroup_v2() -> Check {
    match cgroup2_mount() {
        Some(m) if m == "/sys/fs/cgroup" => Check::new(
            "cgroup-v2",
            Status::Pass,
            "unified hierarchy at /sys/fs/cgroup",
            "",
        ),
        Some(m) => Check::new(
            "cgroup-v2",
            Status::Warn,
            format!("hybrid mode: cgroup2 at {m}, v1 controllers at /sys/fs/cgroup"),
            "container identity uses the v2 hierarchy; boot with systemd.unified_cgroup_hierarchy=1 for a pure v2 host",
        ),
        None => Check::new(
            "cgroup-v2",
            Status::Fail,
            "no cgroup2 mount",
            "mount -t cgroup2 none /sys/fs/cgroup (guard identifies workloads by cgroup v2 id)",
        ),
    }
}

/// Policy maps are pinned below /sys/fs/bpf so enforcement outlives the agent.
fn bpffs() -> Check {
    let root = std::path::Path::new(crate::sysfs::BPFFS);
    if crate::sysfs::is_bpffs(root) {
        Check::new("bpffs", Status::Pass, "mounted at /sys/fs/bpf", "")
    } else {
        Check::new(
            "bpffs",
            Status::Warn,
            "not mounted at /sys/fs/bpf",
            "guard run --policy mounts it there itself (mount -t bpf bpf /sys/fs/bpf does the same); policy pins need it",
        )
    }
}

fn capabilities() -> Check {
    use caps::{CapSet, Capability as C};
    match caps::read(None, CapSet::Effective) {
        Ok(set) => {
            let has = |c| set.contains(&c);
            let bpf_ok = has(C::CAP_SYS_ADMIN) || (has(C::CAP_BPF) && has(C::CAP_PERFMON));
            let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
            names.sort();
            let shown = if names.len() > 8 {
                format!("{} capabilities", names.len())
            } else {
                names.join(",")
            };
            if bpf_ok {
                Check::new(
                    "capabilities",
                    Status::Pass,
                    format!("effective: {shown}"),
                    "",
                )
            } else {
                Check::new(
                    "capabilities",
                    Status::Fail,
                    format!("effective: {shown}"),
                    "run as root, or grant CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE and CAP_KILL",
                )
            }
        }
        Err(e) => Check::new(
            "capabilities",
            Status::Fail,
            format!("cannot read: {e}"),
            "check /proc/self/status",
        ),
    }
}

/// Why the Docker API did not answer a ping.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("{sock}: {source}")]
    Io {
        sock: String,
        source: std::io::Error,
    },
    #[error("{0}: unexpected answer to /_ping")]
    Answer(String),
}

/// Pings the Docker API on its Unix socket.
pub fn docker_ping(sock: &str) -> Result<(), PingError> {
    let io = |source| PingError::Io {
        sock: sock.to_owned(),
        source,
    };
    let mut s = UnixStream::connect(sock).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    s.set_write_timeout(Some(Duration::from_secs(2))).ok();
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(io)?;
    let mut buf = Vec::new();
    s.take(4096).read_to_end(&mut buf).map_err(io)?;
    let text = String::from_utf8_lossy(&buf);
    if text.starts_with("HTTP/1.") && text.contains(" 200 ") {
        Ok(())
    } else {
        Err(PingError::Answer(sock.to_owned()))
    }
}

/// `GET /version` on a Docker API socket: `Some("Podman Engine 4.3.1")` when Podman answers
/// there (its compatible service), `None` for Docker or no answer.
pub fn podman_version(sock: &str) -> Option<String> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    s.set_write_timeout(Some(Duration::from_secs(2))).ok();
    s.write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
        .ok()?;
    let mut buf = Vec::new();
    s.take(256 * 1024).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["Components"].as_array()?.iter().find_map(|c| {
        let name = c["Name"].as_str()?;
        name.to_ascii_lowercase()
            .contains("podman")
            .then(|| format!("{name} {}", c["Version"].as_str().unwrap_or("?")))
    })
}

/// The Docker API socket (Docker's, or Podman's compatible service), as `guard run` picks it.
fn docker(socket: Option<&Path>) -> Check {
    let sock = crate::state::docker::DockerConfig {
        socket: socket.map(Path::to_path_buf),
        ..Default::default()
    }
    .pick_socket();
    let sock = sock.to_string_lossy();
    match docker_ping(&sock) {
        Ok(()) => match podman_version(&sock) {
            Some(v) => Check::new(
                "podman",
                Status::Pass,
                format!("{sock} answers: {v} (Docker-compatible API)"),
                "",
            ),
            None => Check::new("docker", Status::Pass, format!("{sock} answers"), ""),
        },
        Err(e) => Check::new(
            "docker",
            Status::Warn,
            format!("Docker API unreachable: {e}"),
            "start dockerd (or `podman system service`, or pass --docker-socket) for container names/images/labels; without it container fields are <NA>",
        ),
    }
}

/// The CRI runtime (containerd, CRI-O): the socket, and whether `Version` answers.
fn cri_runtime(socket: Option<&Path>) -> Check {
    use crate::state::cri::{CriConfig, DEFAULT_SOCKETS, runtime_version};
    let cfg = CriConfig {
        socket: socket.map(Path::to_path_buf),
        ..Default::default()
    };
    let Some(sock) = cfg.pick_socket() else {
        return Check::new(
            "cri",
            Status::Pass,
            format!("no CRI runtime socket ({})", DEFAULT_SOCKETS.join(", ")),
            "",
        );
    };
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| match rt.block_on(runtime_version(&sock, &cfg)) {
            // Found by default, but the CRI plugin is off (Docker's containerd).
            Err(e) if socket.is_none() && e.is_unimplemented() => {
                Ok(format!("no CRI plugin ({e})"))
            }
            r => r.map_err(|e| e.to_string()),
        });
    match answer {
        Ok(v) => Check::new(
            "cri",
            Status::Pass,
            format!("{} answers: {v}", sock.display()),
            "",
        ),
        Err(e) => Check::new(
            "cri",
            Status::Warn,
            format!("CRI runtime unreachable: {e}"),
            "start the runtime (or pass --cri-socket); without it its containers' names, images, labels and k8s.* fields are <NA>",
        ),
    }
}

/// containerd's own API on the CRI socket (or the default one): version, namespaces, and
/// whether its event stream can be subscribed.
fn containerd_api(socket: Option<&Path>) -> Check {
    use crate::state::containerd::{ContainerdConfig, DEFAULT_SOCKET, probe};
    let cfg = ContainerdConfig {
        socket: socket.map(Path::to_path_buf),
        ..Default::default()
    };
    let Some(sock) = cfg.pick_socket() else {
        return Check::new(
            "containerd",
            Status::Pass,
            format!("no containerd socket ({DEFAULT_SOCKET})"),
            "",
        );
    };
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| match rt.block_on(probe(&sock, &cfg)) {
            Err(e) if e.is_unimplemented() => Ok(format!("not containerd ({e})")),
            r => r.map_err(|e| e.to_string()),
        });
    match answer {
        Ok(v) => Check::new(
            "containerd",
            Status::Pass,
            format!("{} answers: {v}", sock.display()),
            "",
        ),
        Err(e) => Check::new(
            "containerd",
            Status::Warn,
            format!("containerd API unreachable: {e}"),
            "start containerd (or pass --cri-socket); without it containers started on it (ctr, nerdctl) have <NA> metadata and CRI containers are bound to their policy only when the CRI client sees them",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_line_reads_the_backend_declarations() {
        let fb = policy_check(&Backend::Attached(Kind::SigkillFallback));
        assert_eq!(fb.status, Status::Warn);
        assert_eq!(
            fb.detail,
            format!(
                "backend sigkill-fallback: {}",
                Kind::SigkillFallback.summary()
            )
        );
        assert_eq!(fb.hint, Kind::SigkillFallback.spec().hint);
        let lsm = policy_check(&Backend::Attached(Kind::BpfLsm));
        assert_eq!(lsm.status, Status::Pass);
        assert!(
            lsm.detail.starts_with("backend bpf-lsm: denied: exec,"),
            "{}",
            lsm.detail
        );
        let fa = policy_check(&Backend::Attached(Kind::Fanotify));
        assert!(
            fa.detail
                .starts_with("backend fanotify: denied: exec, open read, open write,"),
            "{}",
            fa.detail
        );
        let none = policy_check(&Backend::Unavailable("no bpf".into()));
        assert_eq!(none.status, Status::Fail);
        assert!(none.detail.ends_with("no bpf"));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("6.18.44-fc-v782"), (6, 18));
        assert_eq!(parse_version("5.4.0"), (5, 4));
        assert_eq!(parse_version("garbage"), (0, 0));
    }
}
