//! The alert: what a rule match (or a kernel decision) becomes, in Falco's JSON shape so that
//! Falcosidekick and existing pipelines consume it unchanged. guard's own keys live under `guard`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Falco's eight priorities, lowest first (so `>=` comparisons follow severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    Debug,
    Informational,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Priority {
    pub const ALL: [Priority; 8] = [
        Priority::Debug,
        Priority::Informational,
        Priority::Notice,
        Priority::Warning,
        Priority::Error,
        Priority::Critical,
        Priority::Alert,
        Priority::Emergency,
    ];

    /// Falco's spelling, as it appears in alert JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Debug => "Debug",
            Priority::Informational => "Informational",
            Priority::Notice => "Notice",
            Priority::Warning => "Warning",
            Priority::Error => "Error",
            Priority::Critical => "Critical",
            Priority::Alert => "Alert",
            Priority::Emergency => "Emergency",
        }
    }

    /// Parses a priority as Falco does: case-insensitive, with `info` accepted for Informational.
    pub fn parse(s: &str) -> Option<Self> {
        let l = s.trim().to_ascii_lowercase();
        Some(match l.as_str() {
            "debug" => Priority::Debug,
            "informational" | "info" => Priority::Informational,
            "notice" => Priority::Notice,
            "warning" | "warn" => Priority::Warning,
            "error" => Priority::Error,
            "critical" => Priority::Critical,
            "alert" => Priority::Alert,
            "emergency" => Priority::Emergency,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// guard's additions to the Falco payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardInfo {
    /// Name of the workload policy that applied, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `detect` or `enforce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Kernel decision for decision alerts: `deny` or `would-deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Enforcement backend that made the decision (`bpf-lsm`, `sigkill-fallback`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Response actions taken or planned for this alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

/// One alert, serialised with Falco's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    pub rule: String,
    pub priority: Priority,
    pub source: String,
    pub hostname: String,
    pub output: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Field name -> value; values are strings, numbers, booleans or null as Falco emits them.
    #[serde(default)]
    pub output_fields: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub guard: GuardInfo,
}

// One RFC 3339 implementation (crate::rfc3339); the name alerts have always used.
pub use crate::rfc3339::format as rfc3339_ns;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_and_parse() {
        assert!(Priority::Critical > Priority::Error);
        assert_eq!(Priority::parse("INFO"), Some(Priority::Informational));
        assert_eq!(Priority::parse("bogus"), None);
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn alert_json_has_falco_keys() {
        let a = Alert {
            time: rfc3339_ns(0),
            rule: "r".into(),
            priority: Priority::Critical,
            source: "syscall".into(),
            hostname: "h".into(),
            output: "o".into(),
            tags: vec!["t".into()],
            output_fields: BTreeMap::new(),
            guard: GuardInfo::default(),
        };
        let v = serde_json::to_value(&a).expect("json");
        for k in [
            "time",
            "rule",
            "priority",
            "source",
            "hostname",
            "output",
            "tags",
            "output_fields",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["priority"], "Critical");
    }
}
