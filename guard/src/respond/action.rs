//! Response actions: the option types, the [`Action`] value a response file holds, and the one
//! [`ActionKind`] table (name, disruptive or not) that the parser, the responder and the report
//! share.
//!
//! Adding an action: its options type and an `Action` variant here, an `ActionKind` variant
//! (its place in `ActionKind::next`); the compiler points at `next`, `name`, `is_disruptive`,
//! `Action::kind`, `with_defaults`, the parser's match and `check_action` (this file), the
//! responder's `run_action` (`respond/mod.rs`) and the report's counters (`report/mod.rs`).
//! Not found by the compiler: the code that does the work (usually a new `respond/*.rs`),
//! `docs/responses.md`, and any special case outside `respond/` (Landlock paths in
//! `harden.rs` for `exec`, the event ring in `agent.rs` for `snapshot`).

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor},
};

/// A duration written as `500ms`, `30s`, `5m`, `2h`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("bad duration {s:?} (expected e.g. 500ms, 30s, 5m, 2h)"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "ms" => n / 1000.0,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            u => return Err(format!("bad duration unit {u:?} in {s:?} (ms, s, m, h)")),
        };
        if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
            return Err(format!("duration {s:?} out of range"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 30s, 5m or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Dur::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Dur::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                Dur::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                Dur::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillProcess {
    /// Also kill every descendant of the process.
    #[serde(default)]
    pub tree: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopContainer {
    /// Grace period between SIGTERM and SIGKILL.
    #[serde(default = "default_stop_timeout")]
    pub timeout: Dur,
}

fn default_stop_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Default for StopContainer {
    fn default() -> Self {
        Self {
            timeout: default_stop_timeout(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    /// Lift automatically after this long (in the kernel: it holds even with the agent down).
    #[serde(default)]
    pub duration: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// `http://host:port/path`.
    pub url: String,
    /// Per attempt.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_notify_retries")]
    pub retries: u32,
}

fn default_notify_timeout() -> Dur {
    Dur(Duration::from_secs(3))
}
fn default_notify_retries() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// Absolute path of the script (or program); the alert JSON is on its stdin.
    pub script: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_exec_timeout")]
    pub timeout: Dur,
    /// Directories the script may write below; everything else is read-only.
    #[serde(default)]
    pub allow_write: Vec<PathBuf>,
    /// `false` declares that the script only reports (pages, tickets): it then runs in
    /// detect mode too. By default a script is assumed to act on the workload.
    #[serde(default = "default_exec_disruptive")]
    pub disruptive: bool,
}

fn default_exec_disruptive() -> bool {
    true
}

fn default_exec_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Recent events of the offending process to include (at most the ring's size).
    #[serde(default = "default_snapshot_events")]
    pub events: usize,
}

fn default_snapshot_events() -> usize {
    64
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            events: default_snapshot_events(),
        }
    }
}

/// One action, written as a one-key mapping (`- kill_container: {}`) or a bare name
/// (`- kill_container`).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    KillProcess(KillProcess),
    KillContainer(NoOptions),
    StopContainer(StopContainer),
    PauseContainer(NoOptions),
    QuarantineNetwork(Quarantine),
    Notify(Notify),
    Exec(Exec),
    Snapshot(Snapshot),
}

/// The kinds of action: the one table of names and of which actions are disruptive.
/// [`ActionKind::ALL`] is built from [`ActionKind::next`], whose match is exhaustive: a new kind
/// does not compile until it has a place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    KillProcess,
    KillContainer,
    StopContainer,
    PauseContainer,
    QuarantineNetwork,
    Notify,
    Exec,
    Snapshot,
}

impl ActionKind {
    const FIRST: ActionKind = ActionKind::KillProcess;

    /// The kind after this one in [`ActionKind::ALL`]; `None` for the last.
    const fn next(self) -> Option<ActionKind> {
        match self {
            ActionKind::KillProcess => Some(ActionKind::KillContainer),
            ActionKind::KillContainer => Some(ActionKind::StopContainer),
            ActionKind::StopContainer => Some(ActionKind::PauseContainer),
            ActionKind::PauseContainer => Some(ActionKind::QuarantineNetwork),
            ActionKind::QuarantineNetwork => Some(ActionKind::Notify),
            ActionKind::Notify => Some(ActionKind::Exec),
            ActionKind::Exec => Some(ActionKind::Snapshot),
            ActionKind::Snapshot => None,
        }
    }

    const COUNT: usize = {
        let (mut n, mut k) = (1, ActionKind::FIRST);
        while let Some(next) = k.next() {
            (n, k) = (n + 1, next);
        }
        n
    };

    /// Every kind, in declaration order.
    pub const ALL: [ActionKind; ActionKind::COUNT] = {
        let mut all = [ActionKind::FIRST; ActionKind::COUNT];
        let mut i = 1;
        while i < all.len() {
            all[i] = match all[i - 1].next() {
                Some(k) => k,
                None => panic!("ActionKind::next ends early"),
            };
            i += 1;
        }
        all
    };

    /// Every name, in [`ActionKind::ALL`]'s order (serde's `unknown_variant` wants a static list).
    pub const NAMES: [&'static str; ActionKind::ALL.len()] = {
        let mut names = [""; ActionKind::ALL.len()];
        let mut i = 0;
        while i < names.len() {
            names[i] = ActionKind::ALL[i].name();
            i += 1;
        }
        names
    };

    /// The name in response files and audit records.
    pub const fn name(self) -> &'static str {
        match self {
            ActionKind::KillProcess => "kill_process",
            ActionKind::KillContainer => "kill_container",
            ActionKind::StopContainer => "stop_container",
            ActionKind::PauseContainer => "pause_container",
            ActionKind::QuarantineNetwork => "quarantine_network",
            ActionKind::Notify => "notify",
            ActionKind::Exec => "exec",
            ActionKind::Snapshot => "snapshot",
        }
    }

    /// Actions that stop or cut off a workload: subject to the rails and rate limits, and
    /// what a detect-mode rollout report counts as "would have disrupted".
    pub const fn is_disruptive(self) -> bool {
        match self {
            ActionKind::KillProcess
            | ActionKind::KillContainer
            | ActionKind::StopContainer
            | ActionKind::PauseContainer
            | ActionKind::QuarantineNetwork => true,
            ActionKind::Notify | ActionKind::Exec | ActionKind::Snapshot => false,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {0:?} (expected one of {names})", names = ActionKind::NAMES.join(", "))]
pub struct UnknownAction(pub String);

impl FromStr for ActionKind {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        ActionKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::KillProcess(_) => ActionKind::KillProcess,
            Action::KillContainer(_) => ActionKind::KillContainer,
            Action::StopContainer(_) => ActionKind::StopContainer,
            Action::PauseContainer(_) => ActionKind::PauseContainer,
            Action::QuarantineNetwork(_) => ActionKind::QuarantineNetwork,
            Action::Notify(_) => ActionKind::Notify,
            Action::Exec(_) => ActionKind::Exec,
            Action::Snapshot(_) => ActionKind::Snapshot,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// See [`ActionKind::is_disruptive`].
    pub fn is_disruptive(&self) -> bool {
        self.kind().is_disruptive()
    }

    /// Whether detect mode turns this action into a dry run: the disruptive kinds, and
    /// `exec` unless its script is declared `disruptive: false`. Notify and snapshot run.
    pub fn dries_in_detect(&self) -> bool {
        match self {
            Action::Exec(e) => e.disruptive,
            a => a.is_disruptive(),
        }
    }

    /// The action written as a bare name; `None` for kinds whose options are required.
    fn with_defaults(kind: ActionKind) -> Option<Self> {
        Some(match kind {
            ActionKind::KillProcess => Action::KillProcess(KillProcess::default()),
            ActionKind::KillContainer => Action::KillContainer(NoOptions {}),
            ActionKind::StopContainer => Action::StopContainer(StopContainer::default()),
            ActionKind::PauseContainer => Action::PauseContainer(NoOptions {}),
            ActionKind::QuarantineNetwork => Action::QuarantineNetwork(Quarantine::default()),
            ActionKind::Snapshot => Action::Snapshot(Snapshot::default()),
            ActionKind::Notify | ActionKind::Exec => return None,
        })
    }
}

/// A value that may be null (`- kill_container:`), meaning the defaults.
struct OrDefault<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrDefault<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(OrDefault)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Action;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an action: one of {}", ActionKind::NAMES.join(", "))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Action, E> {
                let kind: ActionKind = v
                    .parse()
                    .map_err(|_| E::unknown_variant(v, &ActionKind::NAMES))?;
                Action::with_defaults(kind).ok_or_else(|| {
                    E::custom(format!("action {v} needs options (e.g. {v}: {{url: ...}})"))
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Action, A::Error> {
                let Some(name) = m.next_key::<String>()? else {
                    return Err(de::Error::custom("empty action"));
                };
                fn opt<'de, A: MapAccess<'de>, T: Deserialize<'de> + Default>(
                    m: &mut A,
                ) -> Result<T, A::Error> {
                    Ok(m.next_value::<OrDefault<T>>()?.0.unwrap_or_default())
                }
                let kind: ActionKind = name
                    .parse()
                    .map_err(|_| de::Error::unknown_variant(&name, &ActionKind::NAMES))?;
                let a = match kind {
                    ActionKind::KillProcess => Action::KillProcess(opt(&mut m)?),
                    ActionKind::KillContainer => Action::KillContainer(opt(&mut m)?),
                    ActionKind::StopContainer => Action::StopContainer(opt(&mut m)?),
                    ActionKind::PauseContainer => Action::PauseContainer(opt(&mut m)?),
                    ActionKind::QuarantineNetwork => Action::QuarantineNetwork(opt(&mut m)?),
                    ActionKind::Snapshot => Action::Snapshot(opt(&mut m)?),
                    ActionKind::Notify => Action::Notify(m.next_value()?),
                    ActionKind::Exec => Action::Exec(m.next_value()?),
                };
                if let Some(extra) = m.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "one action per list item: found `{extra}` after `{name}` (start a new `- ` item)"
                    )));
                }
                Ok(a)
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks an action's options beyond their types.
pub(super) fn check_action(a: &Action) -> Result<(), (&'static str, String)> {
    match a {
        Action::Notify(n) => {
            let uri: hyper::Uri = n
                .url
                .parse()
                .map_err(|e| ("url", format!("bad url {:?}: {e}", n.url)))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err((
                    "url",
                    format!(
                        "url {:?}: expected http://host[:port]/path (https: use a local relay)",
                        n.url
                    ),
                ));
            }
            if n.retries > 10 {
                return Err(("retries", "retries must be at most 10".into()));
            }
        }
        Action::Exec(e) => {
            if !e.script.is_absolute() {
                return Err((
                    "script",
                    format!("script {:?} must be an absolute path", e.script),
                ));
            }
            if let Some(d) = e.allow_write.iter().find(|d| !d.is_absolute()) {
                return Err((
                    "allow_write",
                    format!("allow_write {d:?} must be an absolute path"),
                ));
            }
            if e.timeout.0.is_zero() {
                return Err(("timeout", "timeout must be > 0".into()));
            }
        }
        Action::Snapshot(s) => {
            if s.events > super::snapshot::MAX_RECENT_PER_PROCESS {
                return Err((
                    "events",
                    format!(
                        "events must be at most {}",
                        super::snapshot::MAX_RECENT_PER_PROCESS
                    ),
                ));
            }
        }
        // Options whose types say everything (a new action decides here what to check).
        Action::KillProcess(_)
        | Action::KillContainer(_)
        | Action::StopContainer(_)
        | Action::PauseContainer(_)
        | Action::QuarantineNetwork(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for k in ActionKind::ALL {
            assert_eq!(k.name().parse::<ActionKind>(), Ok(k));
            assert_eq!(ActionKind::NAMES[k as usize], k.name());
            assert_eq!(
                ActionKind::ALL[k as usize],
                k,
                "ALL is in declaration order"
            );
        }
        let err = "kill_everything"
            .parse::<ActionKind>()
            .expect_err("not an action");
        assert_eq!(err, UnknownAction("kill_everything".into()));
        assert!(err.to_string().contains("kill_process, kill_container"));
    }

    #[test]
    fn disruptive_kinds_are_the_ones_that_stop_or_cut_off_a_workload() {
        let disruptive: Vec<_> = ActionKind::ALL
            .into_iter()
            .filter(|k| k.is_disruptive())
            .map(ActionKind::name)
            .collect();
        assert_eq!(
            disruptive,
            [
                "kill_process",
                "kill_container",
                "stop_container",
                "pause_container",
                "quarantine_network"
            ]
        );
    }

    #[test]
    fn an_action_reports_its_kind() {
        let a: Action = serde_yaml::from_str("stop_container: {timeout: 3s}").expect("parses");
        assert_eq!(a.kind(), ActionKind::StopContainer);
        assert!(a.is_disruptive());
        let a: Action = serde_yaml::from_str("snapshot").expect("parses");
        assert_eq!(a.kind(), ActionKind::Snapshot);
        assert!(!a.is_disruptive());
    }
}
