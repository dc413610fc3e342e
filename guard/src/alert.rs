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

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with nine fractional digits.
pub fn rfc3339_ns(epoch_ns: u64) -> String {
    let secs = (epoch_ns / 1_000_000_000) as i64;
    let nanos = epoch_ns % 1_000_000_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_ns(1_795_838_559_052_667_406),
            "2026-11-28T04:02:39.052667406Z"
        );
        assert_eq!(
            rfc3339_ns(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

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
