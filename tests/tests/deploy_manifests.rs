//! deploy/: the DaemonSet manifest, the systemd unit and the Containerfile cannot run on a
//! cluster here; their structure is checked against guard's own definitions instead: the
//! capability set (`guard::harden::START_CAPS`), the config loader and the CLI parser.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
};

use clap::Parser;
use guard::{cli::Cli, harden::START_CAPS};
use guard_tests::harness::{can_run, repo_root};
use serde_yaml::Value;

fn deploy(name: &str) -> String {
    let p = repo_root().join("deploy").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn documents() -> Vec<Value> {
    let text = deploy("guard-daemonset.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// `CAP_BPF` -> `BPF`, as Kubernetes spells capabilities.
fn k8s_caps() -> BTreeSet<String> {
    START_CAPS
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_owned())
        .collect()
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("guard-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// Parses a command line with guard's CLI, config file included (`default` off).
fn parses(args: &[&str]) -> guard::cli::Parsed {
    let argv = std::iter::once("guard")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    guard::cli::parse_from(argv, None).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn daemonset_has_host_pid_the_mounts_and_the_documented_capabilities() {
    let docs = documents();
    let ds = of_kind(&docs, "DaemonSet");
    assert_eq!(ds.len(), 1, "one DaemonSet");
    let spec = &ds[0]["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], Value::Bool(true));
    assert_ne!(spec["hostNetwork"], Value::Bool(true));
    let containers = spec["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_ne!(
        sc["privileged"],
        Value::Bool(true),
        "capabilities, not privileged"
    );
    let add: BTreeSet<String> = sc["capabilities"]["add"]
        .as_sequence()
        .expect("capabilities.add")
        .iter()
        .map(|v| str_of(v).to_owned())
        .collect();
    assert_eq!(
        add,
        k8s_caps(),
        "capabilities.add must equal guard::harden::START_CAPS"
    );
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_yaml::from_str::<Value>("[ALL]").expect("yaml")
    );
    assert!(
        c["resources"]["limits"]["memory"].is_string()
            && c["resources"]["limits"]["cpu"].is_string(),
        "resource limits"
    );

    // Every mount: (host path, mount path, read-only, propagation).
    let volumes: BTreeMap<&str, &Value> = spec["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(|v| (str_of(&v["name"]), v))
        .collect();
    let mounts: BTreeMap<&str, &Value> = c["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .map(|m| (str_of(&m["name"]), m))
        .collect();
    let required: &[(&str, &str, bool, Option<&str>)] = &[
        ("/sys/kernel/btf", "/sys/kernel/btf", true, None),
        ("/sys/fs/bpf", "/sys/fs/bpf", false, Some("Bidirectional")),
        ("/sys/kernel/tracing", "/sys/kernel/tracing", true, None),
        ("/sys/fs/cgroup", "/sys/fs/cgroup", false, None),
        ("/var/run/docker.sock", "/var/run/docker.sock", true, None),
        ("/run/containerd", "/run/containerd", true, None),
        ("/run/crio", "/run/crio", true, None),
        ("/var/lib/guard", "/var/lib/guard", false, None),
    ];
    for (host, at, ro, propagation) in required {
        let (name, m) = mounts
            .iter()
            .find(|(_, m)| m["mountPath"] == *at)
            .unwrap_or_else(|| panic!("no mount at {at}"));
        let v = volumes
            .get(name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        assert_eq!(v["hostPath"]["path"], *host, "{name}: host path");
        let is_ro = m["readOnly"] == Value::Bool(true);
        assert_eq!(is_ro, *ro, "{name} at {at}: readOnly");
        match propagation {
            Some(p) => assert_eq!(m["mountPropagation"], *p, "{name}: propagation"),
            None => assert!(m["mountPropagation"].is_null(), "{name}: propagation"),
        }
    }
    // The config comes from the ConfigMap, read-only, at /etc/guard.
    let (cfg_name, cfg_mount) = mounts
        .iter()
        .find(|(_, m)| m["mountPath"] == "/etc/guard")
        .expect("config mount");
    assert_eq!(cfg_mount["readOnly"], Value::Bool(true));
    let cm_name = str_of(&volumes[cfg_name]["configMap"]["name"]);
    // Every mount has a volume, and every volume is mounted.
    let mounted: BTreeSet<&str> = mounts.keys().copied().collect();
    let declared: BTreeSet<&str> = volumes.keys().copied().collect();
    assert_eq!(mounted, declared);
    // Each capability and each mount says why, in a comment next to it.
    let text = deploy("guard-daemonset.yaml");
    for cap in k8s_caps() {
        let line = text
            .lines()
            .position(|l| l.trim() == format!("- {cap}"))
            .unwrap_or_else(|| panic!("capability {cap} not listed one per line"));
        let above = text.lines().nth(line - 1).unwrap_or_default();
        assert!(
            above.trim_start().starts_with('#'),
            "{cap} has no reason above it"
        );
    }
    for name in mounts.keys() {
        let line = text
            .lines()
            .position(|l| l.trim() == format!("- name: {name}"))
            .unwrap_or_else(|| panic!("mount {name}"));
        let above = text.lines().nth(line - 1).unwrap_or_default();
        assert!(
            above.trim_start().starts_with('#'),
            "mount {name} has no reason above it"
        );
    }

    // The ConfigMap's guard.yaml is a valid config for guard's own loader, and the
    // container's arguments are accepted by guard's CLI with it.
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|d| d["metadata"]["name"] == cm_name)
        .expect("the ConfigMap");
    let cfg = tmp("guard.yaml", str_of(&cm["data"]["guard.yaml"]));
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(args, ["run", "--config", "/etc/guard/guard.yaml"]);
    let p = parses(&["run", "--config", cfg.to_str().expect("utf8")]);
    let guard::cli::Command::Run(run) = &p.cli.command else {
        panic!("not run");
    };
    assert!(run.detect_only, "the manifest rolls out in detect mode");
    assert_eq!(run.pin_dir, PathBuf::from("/sys/fs/bpf/guard"));
    assert_eq!(run.audit_dir, PathBuf::from("/var/lib/guard/audit"));
    // Its rules are the image's (deploy/Containerfile) and the ConfigMap's local rules; they
    // load with the repository's policies.
    assert_eq!(
        run.rules,
        [
            PathBuf::from("/usr/share/guard/policies"),
            PathBuf::from("/etc/guard/local_rules.yaml")
        ]
    );
    let containerfile = deploy("Containerfile");
    assert!(containerfile.contains("COPY policies /usr/share/guard/policies"));
    assert!(containerfile.contains("COPY responses /usr/share/guard/responses"));
    assert_eq!(
        run.responses,
        Some(PathBuf::from("/usr/share/guard/responses"))
    );
    let local = tmp("local_rules.yaml", str_of(&cm["data"]["local_rules.yaml"]));
    guard::cli::load_engine_and_policies(&[repo_root().join("policies"), local], None)
        .expect("local rules load with the image's policies");
    let set = guard::respond::config::load(&repo_root().join("responses"));
    assert!(set.is_ok(), "the image's responses load");
}

#[test]
fn containerfile_entrypoint_parses_with_the_cli() {
    let text = deploy("Containerfile");
    let json_line = |word: &str| -> Vec<String> {
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with(word))
            .unwrap_or_else(|| panic!("no {word}"));
        serde_json::from_str(line[word.len()..].trim()).expect("exec form JSON array")
    };
    let entry = json_line("ENTRYPOINT");
    assert_eq!(entry, ["/usr/local/bin/guard"]);
    let cmd = json_line("CMD");
    let mut argv = entry.clone();
    argv.extend(cmd);
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(matches!(cli.command, guard::cli::Command::Run(_)));
    // Two stages: a Rust builder, and a runtime stage with only the binary and data.
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].contains("rust") && froms[0].ends_with("AS build"));
    assert!(text.contains("COPY --from=build /out/guard /usr/local/bin/guard"));
}

fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_unit_runs_guard_with_the_documented_capabilities() {
    let text = deploy("guard.service");
    let exec = unit_values(&text, "ExecStart");
    assert_eq!(exec.len(), 1);
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(argv[0], "/usr/local/bin/guard");
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(matches!(cli.command, guard::cli::Command::Run(_)));
    let want: BTreeSet<String> = START_CAPS.iter().map(|s| (*s).to_owned()).collect();
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        let v = unit_values(&text, key);
        assert_eq!(v.len(), 1, "{key}");
        let got: BTreeSet<String> = v[0].split_whitespace().map(str::to_owned).collect();
        assert_eq!(got, want, "{key} must equal guard::harden::START_CAPS");
    }
    assert_eq!(unit_values(&text, "Restart"), ["always"]);
    assert_eq!(unit_values(&text, "LimitMEMLOCK"), ["infinity"]);
    // Sandboxing that would break eBPF, bpffs or cgroup access is absent.
    for bad in [
        "ProtectKernelTunables=yes",
        "ProtectControlGroups=yes",
        "PrivateDevices=yes",
        "SystemCallFilter=",
        "ProtectProc=",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(bad)),
            "{bad} breaks guard"
        );
    }
    let rw = unit_values(&text, "ReadWritePaths");
    for p in ["/var/lib/guard", "/sys/fs/bpf", "/sys/fs/cgroup"] {
        assert!(
            rw.iter().any(|l| l.split_whitespace().any(|x| x == p)),
            "{p} must stay writable under ProtectSystem=strict"
        );
    }

    // systemd's own check, with ExecStart pointed at the built binary (it must exist).
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_run(
        have,
        "systemd-analyze not installed (integration/setup.sh installs it)",
    ) {
        return;
    }
    let bin = guard_tests::harness::guard_bin();
    let unit = tmp(
        "guard.service",
        &text.replace("/usr/local/bin/guard", bin.to_str().expect("utf8")),
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only complaints about this unit count (the host's other units are not ours).
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("guard.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
