//! Response configuration: `responses/*.yaml`, a list of `- response:` items and at most one
//! `- settings:` item. Validation is strict: an unknown key, a bad glob, an unknown action or
//! a malformed value is an error reported as `file:line:col: message` (docs/responses.md).

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Deserializer, de};

use super::action::check_action;
pub use super::action::{
    Action, Dur, Exec, KillProcess, NoOptions, Notify, Quarantine, Snapshot, StopContainer,
};
use crate::{
    alert::{Alert, Priority},
    workload::{Pattern, WorkloadInfo, WorkloadSelector},
    yaml::{Locator, Pos, Seg},
};

/// Largest response file read, so a stray huge file cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Most responses accepted over all files.
pub const MAX_RESPONSES: usize = 1024;
/// Most actions in one response.
pub const MAX_ACTIONS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `priority: ">= Critical"`; a bare priority means `=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityMatch {
    pub cmp: Cmp,
    pub priority: Priority,
}

impl PriorityMatch {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (cmp, rest) = [
            (">=", Cmp::Ge),
            ("<=", Cmp::Le),
            ("!=", Cmp::Ne),
            ("=", Cmp::Eq),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ]
        .iter()
        .find_map(|(p, c)| t.strip_prefix(p).map(|r| (*c, r)))
        .unwrap_or((Cmp::Eq, t));
        let priority = Priority::parse(rest).ok_or_else(|| {
            format!("bad priority {s:?}: expected [= != < <= > >=] followed by a Falco priority (Debug .. Emergency)")
        })?;
        Ok(Self { cmp, priority })
    }

    pub fn matches(&self, p: Priority) -> bool {
        match self.cmp {
            Cmp::Eq => p == self.priority,
            Cmp::Ne => p != self.priority,
            Cmp::Lt => p < self.priority,
            Cmp::Le => p <= self.priority,
            Cmp::Gt => p > self.priority,
            Cmp::Ge => p >= self.priority,
        }
    }
}

impl<'de> Deserialize<'de> for PriorityMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PriorityMatch::parse(&s).map_err(de::Error::custom)
    }
}

/// `output_fields: ["proc.name=sh", "k8s.ns.name!=kube-*"]`: the field's value (as text;
/// null and missing are `<NA>`) must (`=`) or must not (`!=`) match the glob.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCondition {
    pub field: String,
    pub negate: bool,
    pub value: Pattern,
}

impl FieldCondition {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (field, negate, value) = if let Some((f, v)) = s.split_once("!=") {
            (f, true, v)
        } else if let Some((f, v)) = s.split_once('=') {
            (f, false, v)
        } else {
            return Err(format!(
                "bad output_fields condition {s:?}: expected FIELD=GLOB or FIELD!=GLOB"
            ));
        };
        let field = field.trim();
        if field.is_empty() {
            return Err(format!(
                "bad output_fields condition {s:?}: empty field name"
            ));
        }
        Ok(Self {
            field: field.to_owned(),
            negate,
            value: Pattern::new(value.trim())?,
        })
    }

    pub fn matches(&self, fields: &BTreeMap<String, serde_json::Value>) -> bool {
        let text = match fields.get(&self.field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => crate::state::container::NA.to_owned(),
            Some(v) => v.to_string(),
        };
        self.value.is_match(&text) != self.negate
    }
}

impl<'de> Deserialize<'de> for FieldCondition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FieldCondition::parse(&s).map_err(de::Error::custom)
    }
}

/// When a response applies. Every given key must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub priority: Option<PriorityMatch>,
    /// Rule-name globs; any may match.
    #[serde(default)]
    pub rules: Vec<Pattern>,
    /// The alert must carry every listed tag.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub output_fields: Vec<FieldCondition>,
    #[serde(default)]
    pub workload: WorkloadSelector,
}

impl Match {
    pub fn matches(&self, alert: &Alert, w: &WorkloadInfo) -> bool {
        self.priority.is_none_or(|p| p.matches(alert.priority))
            && (self.rules.is_empty() || self.rules.iter().any(|g| g.is_match(&alert.rule)))
            && self.tags.iter().all(|t| alert.tags.iter().any(|a| a == t))
            && self
                .output_fields
                .iter()
                .all(|c| c.matches(&alert.output_fields))
            && self.workload.matches(w)
    }
}

/// A token bucket's shape: `burst` actions at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub burst: u32,
    pub per_minute: f64,
}

/// Engine settings (`- settings:`); every key optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The same response, rule, workload and process within this window is acted on once.
    pub dedupe_window: Dur,
    /// Token bucket per workload (container, or the host).
    pub rate_limit_per_workload: RateLimit,
    /// Token bucket over all workloads.
    pub rate_limit_global: RateLimit,
    /// Workloads no action may touch (in addition to PID 1, kernel threads and guard itself).
    pub protected: Vec<WorkloadSelector>,
    /// Alerts whose responses may run at once; beyond that an alert's responses are refused
    /// (and recorded) rather than queued without bound.
    pub max_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dedupe_window: Dur(Duration::from_secs(60)),
            rate_limit_per_workload: RateLimit {
                burst: 5,
                per_minute: 30.0,
            },
            rate_limit_global: RateLimit {
                burst: 50,
                per_minute: 600.0,
            },
            protected: Vec::new(),
            max_in_flight: 256,
        }
    }
}

/// One configured response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub name: String,
    pub desc: Option<String>,
    pub matcher: Match,
    pub actions: Vec<Action>,
    /// `false`: no later response is considered for the same alert.
    pub cont: bool,
    pub dry_run: bool,
    /// Run the remaining actions after one fails.
    pub ignore_errors: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    settings: Option<Settings>,
    #[serde(default)]
    desc: Option<String>,
    #[serde(default, rename = "match")]
    matcher: Option<Match>,
    #[serde(default)]
    actions: Option<Vec<Action>>,
    #[serde(default, rename = "continue")]
    cont: Option<bool>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    ignore_errors: Option<bool>,
    #[serde(default)]
    enabled: Option<bool>,
}

enum Item {
    Response(Box<Response>, bool),
    Settings(Box<Settings>),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawItem::deserialize(d)?;
        item_from_raw(r).map_err(|e| de::Error::custom(e.msg))
    }
}

/// A problem with one item, and where in the item it is.
struct ItemError {
    /// Key path inside the item.
    at: Vec<Seg<'static>>,
    /// The key itself is at fault (else its value).
    key: bool,
    msg: String,
}

impl ItemError {
    fn value(at: &[Seg<'static>], msg: impl Into<String>) -> Self {
        ItemError {
            at: at.to_vec(),
            key: false,
            msg: msg.into(),
        }
    }

    fn key(at: &[Seg<'static>], msg: impl Into<String>) -> Self {
        ItemError {
            key: true,
            ..ItemError::value(at, msg)
        }
    }
}

fn item_from_raw(r: RawItem) -> Result<Item, ItemError> {
    use Seg::{Index, Key};
    match (r.response, r.settings) {
        (Some(_), Some(_)) => Err(ItemError::key(
            &[Key("settings")],
            "an item is either `response:` or `settings:`, not both",
        )),
        (None, Some(s)) => {
            let stray = [
                ("match", r.matcher.is_some()),
                ("actions", r.actions.is_some()),
                ("continue", r.cont.is_some()),
                ("dry_run", r.dry_run.is_some()),
                ("ignore_errors", r.ignore_errors.is_some()),
                ("enabled", r.enabled.is_some()),
                ("desc", r.desc.is_some()),
            ];
            if let Some((k, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(ItemError::key(
                    &[Key(k)],
                    "a `settings:` item has only its own keys (indent them under settings:)",
                ));
            }
            if s.max_in_flight == 0 {
                return Err(ItemError::value(
                    &[Key("settings"), Key("max_in_flight")],
                    "settings.max_in_flight must be at least 1",
                ));
            }
            for (what, rl) in [
                ("rate_limit_per_workload", s.rate_limit_per_workload),
                ("rate_limit_global", s.rate_limit_global),
            ] {
                if !(rl.per_minute.is_finite() && rl.per_minute >= 0.0) {
                    return Err(ItemError::value(
                        &[Key("settings"), Key(what), Key("per_minute")],
                        format!("settings.{what}.per_minute must be a number >= 0"),
                    ));
                }
            }
            Ok(Item::Settings(Box::new(s)))
        }
        (None, None) => Err(ItemError::key(
            &[],
            "expected a `- response: NAME` or `- settings:` item",
        )),
        (Some(name), None) => {
            let name = name.trim().to_owned();
            if name.is_empty() {
                return Err(ItemError::value(
                    &[Key("response")],
                    "response name is empty",
                ));
            }
            let Some(actions) = r.actions else {
                return Err(ItemError::key(
                    &[Key("response")],
                    format!("response {name:?}: `actions` is required"),
                ));
            };
            if actions.is_empty() {
                return Err(ItemError::value(
                    &[Key("actions")],
                    format!("response {name:?}: `actions` is empty"),
                ));
            }
            if actions.len() > MAX_ACTIONS {
                return Err(ItemError::key(
                    &[Key("actions")],
                    format!("response {name:?}: more than {MAX_ACTIONS} actions"),
                ));
            }
            for (i, a) in actions.iter().enumerate() {
                check_action(a).map_err(|(field, e)| {
                    ItemError::value(
                        &[Key("actions"), Index(i), Key(a.name()), Key(field)],
                        format!("response {name:?}: {}: {e}", a.name()),
                    )
                })?;
            }
            let resp = Response {
                name,
                desc: r.desc,
                matcher: r.matcher.unwrap_or_default(),
                actions,
                cont: r.cont.unwrap_or(true),
                dry_run: r.dry_run.unwrap_or(false),
                ignore_errors: r.ignore_errors.unwrap_or(false),
            };
            Ok(Item::Response(Box::new(resp), r.enabled.unwrap_or(true)))
        }
    }
}

pub use crate::yaml::Diagnostic;

/// Everything loaded from one or more response files.
#[derive(Debug, Clone, Default)]
pub struct ResponseSet {
    /// Enabled responses, in file order (files sorted by name).
    pub responses: Vec<Response>,
    pub settings: Settings,
    /// (path, sha256) of each file read, for the audit log's `response_load`.
    pub files: Vec<(PathBuf, String)>,
}

/// Parses one file's text.
pub fn parse_str(path: &Path, text: &str, into: &mut ResponseSet) -> Vec<Diagnostic> {
    let file: Arc<str> = Arc::from(path.display().to_string());
    let mut diags = Vec::new();
    if text.trim().is_empty() {
        return diags;
    }
    if let Err(e) = crate::yaml::check_expansion(text) {
        diags.push(Diagnostic::error(&file, Pos::START, e.to_string()));
        return diags;
    }
    // Syntax first: a file that is not YAML gets one error.
    let values = match serde_yaml::from_str::<Option<Vec<serde_yaml::Value>>>(text) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => {
            diags.push(Diagnostic::from_yaml(&file, &e));
            return diags;
        }
    };
    // Then each top-level item on its own, so every bad item is reported where it is wrong.
    let loc = Locator::new(text);
    let mut items = Vec::new();
    if loc.item_count() == values.len() {
        for k in 0..values.len() {
            let Some((first_line, slice)) = loc.item_text(k, values.len()) else {
                continue;
            };
            match serde_yaml::from_str::<Vec<RawItem>>(slice) {
                Ok(mut v) if v.len() == 1 => match v.pop().map(item_from_raw) {
                    Some(Ok(item)) => items.push((k, item)),
                    Some(Err(e)) => {
                        let at: Vec<Seg<'_>> = [Seg::Index(k)].into_iter().chain(e.at).collect();
                        let pos = if e.key {
                            loc.nearest_key(&at)
                        } else {
                            loc.nearest_value(&at)
                        };
                        diags.push(Diagnostic::error(&file, pos, e.msg));
                    }
                    None => {}
                },
                Ok(_) => diags.push(Diagnostic::error(
                    &file,
                    loc.nearest_key(&[Seg::Index(k)]),
                    "expected exactly one item",
                )),
                Err(e) => {
                    let mut d = Diagnostic::from_yaml(&file, &e);
                    if d.pos.line > 0 {
                        d.pos.line += first_line - 1;
                    }
                    // The slice is item 0 of its own document; name it as in the file.
                    if let Some(rest) = d.msg.strip_prefix(".[0]") {
                        d.msg = format!(".[{k}]{rest}");
                    }
                    diags.push(d);
                }
            }
        }
    } else {
        // Not a block sequence (e.g. flow style): the whole document at once.
        match serde_yaml::from_str::<Vec<Item>>(text) {
            Ok(v) => items = v.into_iter().enumerate().collect(),
            Err(e) => {
                diags.push(Diagnostic::from_yaml(&file, &e));
                return diags;
            }
        }
    }
    let mut seen_settings = false;
    let mut names: HashSet<String> = into.responses.iter().map(|r| r.name.clone()).collect();
    for (k, item) in items {
        match item {
            Item::Settings(s) => {
                if seen_settings {
                    let pos = loc.nearest_key(&[Seg::Index(k), Seg::Key("settings")]);
                    diags.push(Diagnostic::error(
                        &file,
                        pos,
                        "more than one `settings:` item",
                    ));
                }
                seen_settings = true;
                into.settings = *s;
            }
            Item::Response(r, enabled) => {
                let pos = loc.nearest_value(&[Seg::Index(k), Seg::Key("response")]);
                if !names.insert(r.name.clone()) {
                    let msg = format!("duplicate response name {:?}", r.name);
                    diags.push(Diagnostic::error(&file, pos, msg));
                    continue;
                }
                if into.responses.len() >= MAX_RESPONSES {
                    let msg = format!("more than {MAX_RESPONSES} responses");
                    diags.push(Diagnostic::error(&file, pos, msg));
                    break;
                }
                if enabled {
                    into.responses.push(*r);
                }
            }
        }
    }
    diags
}

/// A problem with a file as a whole (no position).
fn file_error(path: &Path, msg: String) -> Diagnostic {
    Diagnostic::error(&Arc::from(path.display().to_string()), Pos::default(), msg)
}

/// The response files at `path`: the file itself, or the `*.yaml` / `*.yml` files in the
/// directory, sorted by name.
pub fn response_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let md = std::fs::metadata(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    if md.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let rd = std::fs::read_dir(path).map_err(|e| file_error(path, format!("cannot list: {e}")))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| x == "yaml" || x == "yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads a response file or directory. Any diagnostic makes the load fail.
pub fn load(path: &Path) -> Result<ResponseSet, Vec<Diagnostic>> {
    let mut set = ResponseSet::default();
    let mut diags = Vec::new();
    let files = response_files(path).map_err(|d| vec![d])?;
    for f in files {
        let text = match read_text(&f) {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        set.files
            .push((f.clone(), crate::audit::sha256_hex(text.as_bytes())));
        diags.extend(parse_str(&f, &text, &mut set));
    }
    if diags.is_empty() {
        Ok(set)
    } else {
        Err(diags)
    }
}

fn read_text(f: &Path) -> Result<String, Diagnostic> {
    let d = |msg| file_error(f, msg);
    let raw = crate::state::procfs::read_capped(f, MAX_FILE_BYTES as usize + 1)
        .map_err(|e| d(format!("cannot read: {e}")))?;
    if raw.len() as u64 > MAX_FILE_BYTES {
        return Err(d(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    String::from_utf8(raw).map_err(|_| d("not UTF-8".into()))
}

/// For `guard validate`: every problem in the response file(s) at `path`; empty when valid.
pub fn validate_responses(path: &Path) -> Vec<Diagnostic> {
    match load(path) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ResponseSet, Vec<Diagnostic>> {
        let mut set = ResponseSet::default();
        let d = parse_str(Path::new("r.yaml"), text, &mut set);
        if d.is_empty() { Ok(set) } else { Err(d) }
    }

    #[test]
    fn every_bad_item_is_reported_at_its_line() {
        let text = "# comment\n- response: one\n  match:\n    priority: \">= Bogus\"\n  actions:\n    - kill_process: {}\n- response: ok\n  actions:\n    - snapshot: {}\n- response: three\n  actions:\n    - explode: {}\n";
        let diags = parse(text).expect_err("two bad items");
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert_eq!(diags[0].pos.line, 4, "{}", diags[0]);
        assert!(diags[0].msg.starts_with(".[0].match"), "{}", diags[0]);
        assert_eq!(diags[1].pos.line, 12, "{}", diags[1]);
        assert!(diags[1].msg.starts_with(".[2].actions[0]"), "{}", diags[1]);
        assert!(diags[1].msg.contains("explode"), "{}", diags[1]);
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("should fail")[0].to_string()
    }

    #[test]
    fn full_example_parses() {
        let set = parse(
            r#"
- settings:
    dedupe_window: 30s
    rate_limit_per_workload: {burst: 2, per_minute: 6}
    protected: [{name: "db-*"}]
- response: kill-on-critical
  desc: shells in containers
  match:
    priority: ">= Critical"
    rules: ["Terminal shell*"]
    tags: [mitre_execution]
    output_fields: ["proc.name=sh", "k8s.ns.name!=kube-*"]
    workload: {image: "nginx:*", container: true}
  actions:
    - kill_container: {}
    - kill_process: {tree: true}
    - stop_container: {timeout: 5s}
    - pause_container
    - quarantine_network: {duration: 10m}
    - notify: {url: "http://127.0.0.1:2801/"}
    - exec: {script: /usr/local/bin/x.sh, timeout: 2s, allow_write: [/tmp/x]}
    - snapshot:
  continue: false
  dry_run: true
  ignore_errors: true
"#,
        )
        .expect("valid");
        assert_eq!(set.settings.dedupe_window, Dur(Duration::from_secs(30)));
        assert_eq!(set.settings.rate_limit_per_workload.burst, 2);
        let r = &set.responses[0];
        assert_eq!(r.actions.len(), 8);
        assert!(!r.cont && r.dry_run && r.ignore_errors);
        assert_eq!(
            r.actions[2],
            Action::StopContainer(StopContainer {
                timeout: Dur(Duration::from_secs(5))
            })
        );
        assert_eq!(r.actions[7], Action::Snapshot(Snapshot::default()));
    }

    #[test]
    fn unknown_keys_have_positions() {
        let e = err("- response: a\n  match: {priorty: Critical}\n  actions: [kill_container]\n");
        assert!(e.starts_with("r.yaml:2:"), "{e}");
        assert!(e.contains("priorty"), "{e}");
        let e = err("- response: a\n  actions:\n    - kill_container: {signal: 9}\n");
        assert!(e.starts_with("r.yaml:3:"), "{e}");
        assert!(e.contains("signal"), "{e}");
        let e = err("- response: a\n  actions:\n    - kil_container: {}\n");
        assert!(e.starts_with("r.yaml:3:"), "{e}");
        assert!(e.contains("kil_container"), "{e}");
        let e = err("- response: a\n  actoins: [kill_container]\n");
        assert!(e.starts_with("r.yaml:2:3"), "{e}");
    }

    /// Unknown keys two levels down and bad values are reported at the key or value itself.
    #[test]
    fn nested_errors_point_at_the_key_or_value_itself() {
        let e = err(
            "- response: a\n  match:\n    priority: Critical\n    workload:\n      imagee: x\n  actions: [snapshot]\n",
        );
        assert!(e.starts_with("r.yaml:5:7: error: "), "{e}");
        assert!(e.contains("unknown field `imagee`"), "{e}");
        let e = err(
            "- response: a\n  actions:\n    - snapshot\n    - notify:\n        url: https://x/\n",
        );
        assert!(e.starts_with("r.yaml:5:14: error: "), "{e}");
        assert!(e.contains("expected http://"), "{e}");
        let e = err("- settings:\n    rate_limit_global: {burst: 1, per_minute: .nan}\n");
        assert!(e.starts_with("r.yaml:2:47: error: "), "{e}");
        let e = err("- response: a\n  actions: [snapshot]\n- response: a\n  actions: [snapshot]\n");
        assert!(e.starts_with("r.yaml:3:13: error: duplicate"), "{e}");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(
            err("- response: a\n  match: {priority: '>> High'}\n  actions: [snapshot]\n")
                .contains("bad priority")
        );
        assert!(
            err("- response: a\n  match: {rules: ['a[']}\n  actions: [snapshot]\n")
                .contains("glob")
        );
        assert!(err("- response: a\n  actions: []\n").contains("empty"));
        assert!(err("- response: a\n").contains("required"));
        assert!(err("- response: a\n  actions: [notify]\n").contains("needs options"));
        assert!(
            err("- response: a\n  actions: [{notify: {url: 'https://x/'}}]\n").contains("http://")
        );
        assert!(err("- response: a\n  actions: [{exec: {script: rel.sh}}]\n").contains("absolute"));
        assert!(
            err("- response: a\n  actions: [{stop_container: {timeout: 5 parsecs}}]\n")
                .contains("duration")
        );
        assert!(
            err("- response: a\n  actions: [snapshot]\n- response: a\n  actions: [snapshot]\n")
                .contains("duplicate")
        );
        assert!(err("- foo: 1\n").contains("foo"));
        assert!(
            err("- response: a\n  actions:\n    - {kill_container: {}, snapshot: {}}\n")
                .contains("one action per list item")
        );
        assert!(err("[[[").contains("r.yaml"));
        assert!(err("- settings: {max_in_flight: 0}\n").contains("max_in_flight"));
    }

    #[test]
    fn priority_comparators() {
        use Priority::*;
        let m = |s: &str, p| PriorityMatch::parse(s).expect("parse").matches(p);
        assert!(
            m(">= Critical", Critical) && m(">=Critical", Emergency) && !m(">= Critical", Error)
        );
        assert!(m("> Error", Critical) && !m("> Error", Error));
        assert!(m("< Warning", Notice) && !m("< Warning", Warning));
        assert!(m("<= Warning", Warning));
        assert!(m("= Notice", Notice) && m("Notice", Notice) && !m("Notice", Error));
        assert!(m("!= Notice", Error) && !m("!= Notice", Notice));
    }

    #[test]
    fn matching() {
        let set = parse(
            "- response: a\n  match:\n    priority: '>= Error'\n    rules: ['Terminal*', 'Other']\n    tags: [t1]\n    output_fields: ['proc.name=sh', 'user.uid!=0']\n  actions: [snapshot]\n",
        )
        .expect("valid");
        let m = &set.responses[0].matcher;
        let mut a = Alert {
            time: String::new(),
            rule: "Terminal shell in container".into(),
            priority: Priority::Critical,
            source: "syscall".into(),
            hostname: "h".into(),
            output: String::new(),
            tags: vec!["t1".into(), "t2".into()],
            output_fields: serde_json::from_value(
                serde_json::json!({"proc.name": "sh", "user.uid": 1000}),
            )
            .expect("fields"),
            guard: Default::default(),
        };
        let host = WorkloadInfo::host(None);
        assert!(m.matches(&a, &host));
        a.output_fields
            .insert("user.uid".into(), serde_json::json!(0));
        assert!(!m.matches(&a, &host), "user.uid!=0");
        a.output_fields
            .insert("user.uid".into(), serde_json::json!(5));
        a.tags.clear();
        assert!(!m.matches(&a, &host), "tag missing");
        a.tags.push("t1".into());
        a.rule = "Something else".into();
        assert!(!m.matches(&a, &host), "rule glob");
        a.rule = "Other".into();
        a.priority = Priority::Warning;
        assert!(!m.matches(&a, &host), "priority");
    }

    /// The commented examples are valid once uncommented.
    #[test]
    fn commented_examples_are_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../responses/examples.yaml");
        let text = std::fs::read_to_string(&path).expect("examples.yaml");
        let yaml: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with("- ") || l.starts_with("  "))
            .map(|l| format!("{l}\n"))
            .collect();
        let set = parse(&yaml).unwrap_or_else(|d| panic!("{d:?}\n{yaml}"));
        assert_eq!(set.responses.len(), 4, "{yaml}");
        assert!(
            set.responses
                .iter()
                .any(|r| r.name == "kill-container-on-critical"
                    && r.actions.contains(&Action::KillContainer(NoOptions {})))
        );
    }

    #[test]
    fn shipped_response_files_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../responses");
        let set = load(&dir).unwrap_or_else(|d| {
            panic!(
                "{}",
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(!set.files.is_empty());
    }

    /// Fuzzing finding (fuzz/regressions/policy_load/yaml-alias-bomb.yaml): a YAML alias bomb
    /// in a response file is one error, not seconds (or hours) of alias expansion.
    #[test]
    fn yaml_alias_bomb_is_an_error_not_a_hang() {
        let mut text = String::from(
            "- response: r0
  desc: &a0 [x,x,x,x,x,x,x,x,x,x]
",
        );
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            text.push_str(&format!("- response: r{i}\n  desc: &a{i} [{refs}]\n"));
        }
        let t0 = std::time::Instant::now();
        let diags = parse(&text).expect_err("bomb");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            diags[0].msg.contains("too large once its aliases"),
            "{}",
            diags[0]
        );
        assert!(t0.elapsed() < std::time::Duration::from_secs(20));
    }
}
