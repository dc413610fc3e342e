//! Fixtures the targets share, built once per process from the repository's own files: sample
//! events (the rule corpus traces), alerts, workloads, the shipped rules and responses.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use guard::{
    alert::Alert,
    model::Event,
    respond::{ResponseSet, falco::parse_falco_alert},
    rules::{Engine, Loader},
    workload::WorkloadInfo,
};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The first event of every trace in tests/corpus (at most 64).
pub fn events() -> &'static [Event] {
    static E: OnceLock<Vec<Event>> = OnceLock::new();
    E.get_or_init(|| {
        let mut files: Vec<PathBuf> = ["tests/corpus/falco", "tests/corpus/policies"]
            .iter()
            .filter_map(|d| std::fs::read_dir(repo().join(d)).ok())
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .filter_map(|t| t.lines().next().and_then(|l| Event::from_json_line(l).ok()))
            .take(64)
            .collect()
    })
}

/// A handful of Falco-style alerts: host, container, Kubernetes, odd field types.
pub fn alerts() -> &'static [Alert] {
    static A: OnceLock<Vec<Alert>> = OnceLock::new();
    A.get_or_init(|| {
        [
            br#"{"time":"2026-01-01T00:00:00.000000000Z","rule":"Terminal shell in container","priority":"Critical","output":"shell","output_fields":{"proc.pid":42,"container.id":"0123456789ab","container.name":"web","container.image.repository":"nginx"},"tags":["shell","container"]}"#.as_slice(),
            br#"{"rule":"Read sensitive file untrusted","priority":"Warning","output_fields":{"proc.pid":"7","fd.name":"/etc/shadow"}}"#,
            br#"{"rule":"Contact K8S API Server From Container","priority":"Notice","output_fields":{"k8s.ns.name":"prod","k8s.pod.name":"api-1","container.id":"host"},"tags":["k8s"]}"#,
            br#"{"rule":"x","priority":"Emergency","output_fields":{"proc.pid":null,"container.name":5}}"#,
        ]
        .iter()
        .filter_map(|b| parse_falco_alert(b).ok())
        .collect()
    })
}

/// Workloads to match selectors against: the host, a container, a labelled pod.
pub fn workloads() -> &'static [WorkloadInfo] {
    static W: OnceLock<Vec<WorkloadInfo>> = OnceLock::new();
    W.get_or_init(|| {
        let mut v = vec![WorkloadInfo::host(Some(
            "/system.slice/sshd.service".into(),
        ))];
        for a in alerts() {
            v.push(WorkloadInfo::from_output_fields(&a.output_fields));
        }
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "payments".to_string());
        labels.insert(
            "io.kubernetes.pod.namespace".to_string(),
            "prod".to_string(),
        );
        v.push(WorkloadInfo {
            container_id: Some("f".repeat(64)),
            name: "payments-api".into(),
            image: "registry.local/payments/api:1.2.3".into(),
            labels,
            k8s_namespace: "prod".into(),
            cgroup_path: Some(format!("/docker/{}", "f".repeat(64))),
        });
        v
    })
}

/// The shipped rules (policies/) and, when the sibling checkout has it, Falco's stable ruleset.
pub fn engine() -> &'static Engine {
    static R: OnceLock<Engine> = OnceLock::new();
    R.get_or_init(|| {
        let mut l = Loader::new();
        let falco = repo().join("../shared/falco-rules/falco_rules.yaml");
        if falco.is_file() {
            l.add_path(&falco);
        }
        l.add_path(&repo().join("policies/guard_rules.yaml"));
        let (set, _) = l.finish();
        Engine::new(set, "fuzz-host")
    })
}

/// The shipped response files.
pub fn responses() -> &'static ResponseSet {
    static S: OnceLock<ResponseSet> = OnceLock::new();
    S.get_or_init(|| guard::respond::load_responses(&repo().join("responses")).unwrap_or_default())
}
