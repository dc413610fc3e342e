//! Audit record types. One JSON object per line:
//! `{"seq":N,"time":"…","kind":"…","prev":"<sha256 hex>", …payload}`.
//!
//! The chain hash is over the exact bytes of a line (without its newline), so verification never
//! depends on re-serialising JSON the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{alert::Alert, events::Hook};

/// `prev` of the very first record of a log.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339 UTC with nanoseconds.
    pub time: String,
    #[serde(flatten)]
    pub payload: Payload,
    /// SHA-256 (hex) of the previous record's line; [`GENESIS_PREV`] for the first record.
    pub prev: String,
}

/// What a record says. Serialised with the `kind` tag next to the payload's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    AgentStart(AgentInfo),
    AgentStop(AgentInfo),
    PolicyLoad(LoadInfo),
    ResponseLoad(LoadInfo),
    Alert {
        alert: Box<Alert>,
    },
    Decision(Decision),
    Response(ResponseOutcome),
    /// What the `snapshot` response action captured.
    Snapshot(Box<SnapshotRecord>),
    DropSummary(DropSummary),
    /// A hot reload that was refused: the configuration in force did not change.
    ReloadFailed(ReloadFailure),
    /// What one workload did over an interval, for `guard policy learn` (guard/src/learn/).
    WorkloadSummary(Box<WorkloadSummary>),
}

impl Payload {
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::AgentStart(_) => "agent_start",
            Payload::AgentStop(_) => "agent_stop",
            Payload::PolicyLoad(_) => "policy_load",
            Payload::ResponseLoad(_) => "response_load",
            Payload::Alert { .. } => "alert",
            Payload::Decision(_) => "decision",
            Payload::Response(_) => "response",
            Payload::Snapshot(_) => "snapshot",
            Payload::DropSummary(_) => "drop_summary",
            Payload::ReloadFailed(_) => "reload_failed",
            Payload::WorkloadSummary(_) => "workload_summary",
        }
    }

    /// Records that must be on disk before the writer returns (see docs/audit.md, "fsync rule"):
    /// lifecycle and configuration changes, kernel denies, and every response action result
    /// except a plan (a plan is followed by its outcome, which is synced).
    pub fn needs_immediate_sync(&self) -> bool {
        match self {
            Payload::AgentStart(_)
            | Payload::AgentStop(_)
            | Payload::PolicyLoad(_)
            | Payload::ResponseLoad(_)
            | Payload::ReloadFailed(_) => true,
            Payload::Decision(d) => d.decision == DecisionKind::Deny,
            Payload::Response(r) => r.outcome != Outcome::Planned,
            Payload::Snapshot(_) => true,
            Payload::Alert { .. } | Payload::DropSummary(_) | Payload::WorkloadSummary(_) => false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadFailure {
    /// What asked for the reload: `SIGHUP` or `file change`.
    pub trigger: String,
    /// Every error found, `file:line:col: error: message`.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    /// SHA-256 hex of the effective configuration.
    pub config_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `detect` when `--detect-only` forces detect mode everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// What the writer had to repair or noticed when it opened the log (torn tail, checkpoint
    /// mismatch). Empty on a clean start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery: Vec<String>,
    /// For `agent_stop`: why the agent stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadInfo {
    pub files: Vec<FileHash>,
    /// Policies (or responses) defined by those files, with their effective mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<LoadedItem>,
    /// True for a hot reload rather than the initial load.
    #[serde(default)]
    pub reload: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedItem {
    pub name: String,
    /// `detect` or `enforce` (policies), or `dry_run` / `active` (responses).
    pub mode: String,
    /// For a policy written by `guard policy learn`: the end of its learning window (RFC 3339),
    /// from which the report counts what it would have denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_to: Option<String>,
}

/// The container (or host) an event belongs to. All optional: the daemon may be unreachable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_pod: Option<String>,
}

impl Workload {
    /// The name a person recognises: container name, else pod, else short id, else `host`.
    pub fn label(&self) -> String {
        if let Some(n) = self.container_name.as_deref().filter(|s| !s.is_empty()) {
            return n.to_string();
        }
        if let Some(p) = self.k8s_pod.as_deref().filter(|s| !s.is_empty()) {
            return match self.k8s_namespace.as_deref() {
                Some(ns) => format!("{ns}/{p}"),
                None => p.to_string(),
            };
        }
        if let Some(id) = self.container_id.as_deref().filter(|s| !s.is_empty()) {
            return id.chars().take(12).collect();
        }
        "host".to_string()
    }

    /// Builds the workload from an alert's Falco output fields.
    pub fn from_alert(a: &Alert) -> Self {
        let get = |k: &str| match a.output_fields.get(k) {
            Some(serde_json::Value::String(s)) if !s.is_empty() && s != "<NA>" => Some(s.clone()),
            _ => None,
        };
        let id = get("container.id").filter(|s| s != "host");
        Workload {
            container_name: get("container.name").filter(|s| s != "host"),
            container_id: id,
            image: get("container.image.repository").or_else(|| get("container.image")),
            k8s_namespace: get("k8s.ns.name"),
            k8s_pod: get("k8s.pod.name"),
        }
    }

    /// All identifying strings, for `--workload` matching.
    pub fn identifiers(&self) -> Vec<&str> {
        [
            &self.container_name,
            &self.container_id,
            &self.image,
            &self.k8s_namespace,
            &self.k8s_pod,
        ]
        .into_iter()
        .filter_map(|o| o.as_deref())
        .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Executable path (or comm when the path is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Enforce mode: the kernel refused the operation (or killed the process, fallback backend).
    Deny,
    /// Detect mode: enforce mode would have refused it.
    WouldDeny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Exec,
    Open,
    Connect,
    /// A UDP datagram with a destination on an unconnected socket.
    Sendmsg,
    /// A change other than an open for write: truncate, create, link, rename, unlink, mkdir,
    /// rmdir, symlink, mknod, chmod, chown, xattrs (`hook` says which).
    Write,
    /// Self-protection: a task in a container reached for the agent (signal, ptrace) or its
    /// state (config, policies, audit log, pins, BPF objects); docs/self-protection.md.
    SelfProtect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Exec => "exec",
            Operation::Open => "open",
            Operation::Connect => "connect",
            Operation::Sendmsg => "sendmsg",
            Operation::Write => "write",
            Operation::SelfProtect => "self_protect",
        }
    }
}

/// A kernel enforcement decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: DecisionKind,
    pub op: Operation,
    pub policy: String,
    /// `bpf-lsm`, `sigkill-fallback`, `landlock`.
    pub backend: String,
    /// What was acted on: the binary (exec), the path (open, with ` (write)` or ` (read)` access
    /// in `access`), or `ip:port` (connect, sendmsg).
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// The program that decided (`bprm_check_security`, `sched_process_exec`, ...); absent in
    /// records written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<Hook>,
    /// Enforce mode, fallback backend: why the process was not killed (`kill-failed` in the
    /// alert); absent when it was killed or the kernel refused the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_error: Option<String>,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub process: ProcessInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Chosen, about to run.
    Planned,
    /// Detect mode or `dry_run: true`: recorded instead of run.
    DryRun,
    Done,
    /// A safety rail refused it (PID 1, self, protected workload, rate limit).
    Refused,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Planned => "planned",
            Outcome::DryRun => "dry_run",
            Outcome::Done => "done",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// One response action and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseOutcome {
    /// Name of the response rule.
    pub response: String,
    /// `kill_process`, `kill_container`, `stop_container`, `pause_container`,
    /// `quarantine_network`, `notify`, `exec`, `snapshot`.
    pub action: String,
    pub outcome: Outcome,
    /// The alert rule that triggered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `detect` or `enforce`: the mode that made this a dry run or a real action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub process: ProcessInfo,
    /// Failure message, or why a rail refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was (or, for a dry run, would have been) done: "would kill container web-1",
    /// "paused via cgroup v1 freezer", a script's exit status and stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Alert to outcome, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
}

/// One process in a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProcess {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cmdline: String,
}

/// One recent event of the offending process, as the pipeline summarised it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEvent {
    /// RFC 3339 UTC.
    pub time: String,
    pub summary: String,
}

/// The workload's process tree and the offender's recent events at the time of an alert.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub response: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub process: ProcessInfo,
    pub processes: Vec<SnapshotProcess>,
    /// True when the process list hit its bound.
    #[serde(default)]
    pub processes_truncated: bool,
    pub recent_events: Vec<RecentEvent>,
}

/// What one workload did between `from` and `to` (event times, RFC 3339): each map is
/// entry -> count of events. Bounded (guard/src/learn/summary.rs): what did not fit is counted in
/// `overflow`, so a reader knows the lists are incomplete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSummary {
    pub workload: Workload,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub from: String,
    pub to: String,
    /// Events summarised (each counted once, in at most one map).
    pub events: u64,
    /// Executed files, as given to execve (made absolute).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub execs: BTreeMap<String, u64>,
    /// Files opened for writing (or created).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub writes: BTreeMap<String, u64>,
    /// Sensitive files (the loaded rules' lists) opened for reading.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reads: BTreeMap<String, u64>,
    /// Connect destinations, `ip:port` (`[ip]:port` for IPv6).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connects: BTreeMap<String, u64>,
    /// Events per map (`execs`, `writes`, `reads`, `connects`) whose entry was not kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overflow: BTreeMap<String, u64>,
}

/// Counts of what was lost since the previous summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropSummary {
    /// Ring-buffer drops per event kind.
    #[serde(default)]
    pub ringbuf: BTreeMap<String, u64>,
    /// Alerts an output channel dropped (queue full or failed delivery), per channel name.
    #[serde(default)]
    pub outputs: BTreeMap<String, u64>,
    /// Audit records that are not in the log, per kind: the queue was full, or writing failed
    /// (then `audit_gap` says when and why).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit: BTreeMap<String, u64>,
    /// The log could not be written for a while (disk full, I/O error): written by the first
    /// record that succeeds again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_gap: Option<AuditGap>,
}

/// A stretch of time in which the audit log could not be written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditGap {
    /// Records that reached the writer but could not be written (also counted in `audit`).
    pub lost: u64,
    /// The first error, e.g. `write audit record /var/lib/guard/audit/audit-…jsonl: No space
    /// left on device (os error 28)`.
    pub error: String,
    /// Errno name of the first error when there is one (`ENOSPC`, `EDQUOT`, `EIO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// First failure and recovery (RFC 3339).
    pub from: String,
    pub to: String,
}

impl DropSummary {
    pub fn total(&self) -> u64 {
        self.ringbuf
            .values()
            .chain(self.outputs.values())
            .chain(self.audit.values())
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_has_envelope_and_kind() {
        let r = Record {
            seq: 7,
            time: crate::alert::rfc3339_ns(0),
            payload: Payload::Decision(Decision {
                decision: DecisionKind::WouldDeny,
                op: Operation::Exec,
                policy: "web".into(),
                backend: "bpf-lsm".into(),
                target: "/bin/sh".into(),
                access: None,
                hook: Some(Hook::BprmCheckSecurity),
                kill_error: None,
                workload: Workload::default(),
                process: ProcessInfo::default(),
            }),
            prev: GENESIS_PREV.into(),
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["kind"], "decision");
        assert_eq!(v["decision"], "would_deny");
        assert_eq!(v["prev"], GENESIS_PREV);
        assert_eq!(v["hook"], "bprm_check_security");
        let back: Record = serde_json::from_value(v).expect("parse");
        assert_eq!(back, r);
    }

    #[test]
    fn decisions_without_a_hook_still_parse() {
        // Logs written before decisions named their hook.
        let old = r#"{"seq":1,"time":"1970-01-01T00:00:00.000000000Z","kind":"decision","decision":"deny","op":"exec","policy":"p","backend":"bpf-lsm","target":"/bin/sh","prev":"x"}"#;
        let r: Record = serde_json::from_str(old).expect("parses");
        let Payload::Decision(d) = &r.payload else {
            panic!("not a decision: {r:?}")
        };
        assert_eq!(d.hook, None);
        let v = serde_json::to_value(&r).expect("json");
        assert!(v.get("hook").is_none(), "{v}");
    }

    #[test]
    fn sync_rule() {
        let deny = Payload::Decision(Decision {
            decision: DecisionKind::Deny,
            op: Operation::Open,
            policy: "p".into(),
            backend: "bpf-lsm".into(),
            target: "/etc/shadow".into(),
            access: Some("read".into()),
            hook: Some(Hook::FileOpen),
            kill_error: None,
            workload: Workload::default(),
            process: ProcessInfo::default(),
        });
        assert!(deny.needs_immediate_sync());
        assert!(!Payload::DropSummary(DropSummary::default()).needs_immediate_sync());
    }

    #[test]
    fn workload_label_prefers_name() {
        let w = Workload {
            container_id: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        assert_eq!(w.label(), "0123456789ab");
        assert_eq!(Workload::default().label(), "host");
    }
}
