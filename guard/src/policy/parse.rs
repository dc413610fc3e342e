//! Strict parsing of `- policy:` items, with `file:line:col` diagnostics.

use std::sync::{Arc, Mutex};

use serde_yaml::{Mapping, Value};

use super::{
    ConnectPolicy, ExecPolicy, Mode, NetRule, OpenPolicy, PathRule, Pattern, Policy, RuleSelection,
    WorkloadSelector, overlap_warnings, parse_net_rule, parse_path_rule,
};
use crate::{
    rules::{Diagnostic, ItemCtx, Loader, Pos},
    yaml::Seg,
};

/// The policies collected while loading rules files.
pub type PolicySink = Arc<Mutex<Vec<Policy>>>;

/// Accepts `- policy:` items on `loader`; the parsed policies land in the returned sink.
pub fn register(loader: &mut Loader) -> PolicySink {
    let sink: PolicySink = Arc::default();
    let s = sink.clone();
    loader.register_kind(
        "policy",
        Box::new(move |ctx, map| {
            let mut p = Parser {
                ctx,
                diags: Vec::new(),
            };
            if let Some(pol) = p.policy(map) {
                match s.lock() {
                    Ok(mut v) => {
                        if let Some(prev) = v.iter().find(|q| q.name == pol.name) {
                            let msg = format!(
                                "policy '{}' is already defined at {}:{}:{}",
                                pol.name, prev.file, prev.pos.line, prev.pos.col
                            );
                            p.diags.push(Diagnostic::error(&ctx.file, ctx.pos(), msg));
                        } else {
                            v.push(pol);
                        }
                    }
                    Err(_) => p.diags.push(Diagnostic::error(
                        &ctx.file,
                        ctx.pos(),
                        "internal: policy table poisoned",
                    )),
                }
            }
            p.diags
        }),
    );
    sink
}

/// Parses policies from one YAML text (tests, `guard exec --policy FILE`).
pub fn load_policies(paths: &[std::path::PathBuf]) -> (Vec<Policy>, Vec<Diagnostic>) {
    let mut l = Loader::new();
    let sink = register(&mut l);
    for p in paths {
        l.add_path(p);
    }
    let (_, mut diags) = l.finish();
    let policies = sink.lock().map(|v| v.clone()).unwrap_or_default();
    diags.extend(overlap_warnings(&policies));
    (policies, diags)
}

const POLICY_KEYS: [&str; 7] = [
    "policy", "desc", "workload", "mode", "rules", "enforce", "learned",
];
const LEARNED_KEYS: [&str; 2] = ["from", "to"];
const RULES_KEYS: [&str; 4] = ["tags", "names", "exclude_tags", "exclude_names"];
const ENFORCE_KEYS: [&str; 3] = ["exec", "open", "connect"];
const EXEC_KEYS: [&str; 3] = ["deny", "allow", "deny_new_binaries"];
const OPEN_KEYS: [&str; 2] = ["deny_write", "deny_read"];
const CONNECT_KEYS: [&str; 2] = ["deny", "allow"];

/// `enforce.exec.deny[2]` as a key path.
fn segs(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse().ok()),
            None => (part, None),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        out.extend(index.map(Seg::Index));
    }
    out
}

struct Parser<'a, 'b> {
    ctx: &'a ItemCtx<'b>,
    diags: Vec<Diagnostic>,
}

impl Parser<'_, '_> {
    fn push(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(&self.ctx.file, pos, msg.into()));
    }

    /// An error about the key at `path` (as written in messages: `enforce.exec`).
    fn err_key(&mut self, path: &str, msg: impl Into<String>) {
        self.push(self.ctx.path_pos(&segs(path)), msg);
    }

    /// An error about the value at `path`.
    fn err_value(&mut self, path: &str, msg: impl Into<String>) {
        self.push(self.ctx.value_pos(&segs(path)), msg);
    }

    /// Reports each key of `m` (at `path`) not in `allowed`, at the key itself.
    fn unknown_keys(&mut self, path: &[Seg<'_>], what: &str, m: &Mapping, allowed: &[&str]) {
        for k in m.keys() {
            if k.as_str().is_some_and(|k| allowed.contains(&k)) {
                continue;
            }
            let name = k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned);
            let at: Vec<Seg<'_>> = path.iter().copied().chain([Seg::Key(&name)]).collect();
            let hint = crate::yaml::closest(&name, allowed.iter().copied(), |_| 3);
            let d = Diagnostic::error(
                &self.ctx.file,
                self.ctx.path_pos(&at),
                format!(
                    "unknown key '{name}' in {what} (allowed: {})",
                    allowed.join(", ")
                ),
            )
            .with_hint(hint);
            self.diags.push(d);
        }
    }

    /// Checks the keys of a nested mapping; `path` names it in messages. The known keys are
    /// still read, so that their errors are reported too.
    fn mapping<'v>(&mut self, path: &str, v: &'v Value, allowed: &[&str]) -> Option<&'v Mapping> {
        let Value::Mapping(m) = v else {
            self.err_value(path, format!("'{path}' must be a mapping"));
            return None;
        };
        self.unknown_keys(&segs(path), &format!("'{path}'"), m, allowed);
        Some(m)
    }

    fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.err_value(path, format!("'{path}' must be a string"));
                None
            }
        }
    }

    fn strings(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
        let Value::Sequence(seq) = v else {
            self.err_value(path, format!("'{path}' must be a list"));
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in seq.iter().enumerate() {
            out.push(self.string(&format!("{path}[{i}]"), item)?);
        }
        Some(out)
    }

    /// Each string of the list at `path` through `parse`; errors at the item.
    fn parsed<T, E: std::fmt::Display>(
        &mut self,
        path: &str,
        v: &Value,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Vec<T> {
        let Some(list) = self.strings(path, v) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match parse(s) {
                Ok(r) => out.push(r),
                Err(e) => self.err_value(&format!("{path}[{i}]"), format!("'{path}': {e}")),
            }
        }
        out
    }

    fn paths(&mut self, path: &str, v: &Value) -> Vec<PathRule> {
        self.parsed(path, v, parse_path_rule)
    }

    fn nets(&mut self, path: &str, v: &Value) -> Vec<NetRule> {
        self.parsed(path, v, parse_net_rule)
    }

    fn policy(&mut self, map: &Mapping) -> Option<Policy> {
        let before = self.diags.len();
        self.unknown_keys(&[], "policy", map, &POLICY_KEYS);
        let name = match map.get("policy") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => {
                self.err_value("policy", "'policy' must be a non-empty name");
                return None;
            }
        };
        let desc = match map.get("desc") {
            Some(v) => self.string("desc", v),
            None => None,
        };
        let mode = match map.get("mode").and_then(Value::as_str) {
            None if map.get("mode").is_none() => Mode::Detect,
            Some("detect") => Mode::Detect,
            Some("enforce") => Mode::Enforce,
            _ => {
                self.err_value("mode", "'mode' must be 'detect' or 'enforce'");
                Mode::Detect
            }
        };
        let mut workload = WorkloadSelector::default();
        match map.get("workload") {
            None => self.err_key(
                "policy",
                "'workload' is required (use `workload: {}` to select every workload)",
            ),
            // The shared selector (crate::workload) rejects unknown keys and bad globs.
            Some(v) => match serde_yaml::from_value::<WorkloadSelector>(v.clone()) {
                Ok(w) => workload = w,
                Err(e) => {
                    // serde names an unknown key: point at it.
                    let at = e
                        .to_string()
                        .strip_prefix("unknown field `")
                        .and_then(|r| r.split_once('`'))
                        .map(|(k, _)| self.ctx.path_pos(&[Seg::Key("workload"), Seg::Key(k)]))
                        .unwrap_or_else(|| self.ctx.value_pos(&[Seg::Key("workload")]));
                    self.push(at, format!("'workload': {e}"));
                }
            },
        }
        let mut rules = RuleSelection::default();
        if let Some(v) = map.get("rules")
            && let Some(m) = self.mapping("rules", v, &RULES_KEYS)
        {
            for (k, v) in m {
                let k = k.as_str().unwrap_or("");
                let path = format!("rules.{k}");
                match k {
                    "tags" | "exclude_tags" => {
                        let Some(list) = self.strings(&path, v) else {
                            continue;
                        };
                        if k == "tags" {
                            rules.tags = list;
                        } else {
                            rules.exclude_tags = list;
                        }
                    }
                    "names" | "exclude_names" => {
                        let pats = self.parsed(&path, v, Pattern::new);
                        if k == "names" {
                            rules.names = pats;
                        } else {
                            rules.exclude_names = pats;
                        }
                    }
                    _ => {}
                }
            }
        }
        let (mut exec, mut open, mut connect) = Default::default();
        if let Some(v) = map.get("enforce")
            && let Some(m) = self.mapping("enforce", v, &ENFORCE_KEYS)
        {
            if let Some(v) = m.get("exec") {
                exec = self.exec(v);
            }
            if let Some(v) = m.get("open")
                && let Some(m) = self.mapping("enforce.open", v, &OPEN_KEYS)
            {
                let o: &mut OpenPolicy = &mut open;
                if let Some(v) = m.get("deny_write") {
                    o.deny_write = self.paths("enforce.open.deny_write", v);
                }
                if let Some(v) = m.get("deny_read") {
                    o.deny_read = self.paths("enforce.open.deny_read", v);
                }
            }
            if let Some(v) = m.get("connect")
                && let Some(m) = self.mapping("enforce.connect", v, &CONNECT_KEYS)
            {
                let c: &mut ConnectPolicy = &mut connect;
                if let Some(v) = m.get("deny") {
                    c.deny = self.nets("enforce.connect.deny", v);
                }
                if let Some(v) = m.get("allow") {
                    c.allow = Some(self.nets("enforce.connect.allow", v));
                }
            }
        }
        let learned = map.get("learned").and_then(|v| self.learned(v));
        if self.diags.len() > before {
            return None;
        }
        Some(Policy {
            name,
            desc,
            workload,
            mode,
            rules,
            exec,
            open,
            connect,
            learned,
            file: self.ctx.file.clone(),
            pos: self.ctx.pos(),
        })
    }

    /// `learned: {from: T, to: T}`, both RFC 3339, from <= to.
    fn learned(&mut self, v: &Value) -> Option<super::LearnedWindow> {
        let m = self.mapping("learned", v, &LEARNED_KEYS)?;
        let mut time = |k: &str| -> Option<(String, i64)> {
            let path = format!("learned.{k}");
            let Some(v) = m.get(k) else {
                self.err_key(
                    "learned",
                    format!("'learned' needs '{k}' (an RFC 3339 time)"),
                );
                return None;
            };
            let s = self.string(&path, v)?;
            match crate::rfc3339::parse(&s) {
                Some(ns) => Some((s, ns)),
                None => {
                    self.err_value(
                        &path,
                        format!("'{path}': {s:?} is not an RFC 3339 time (2026-12-03T22:00:00Z)"),
                    );
                    None
                }
            }
        };
        let (from, to) = (time("from"), time("to"));
        let ((from, a), (to, b)) = (from?, to?);
        if a > b {
            self.err_value("learned.to", "'learned.to' is before 'learned.from'");
            return None;
        }
        Some(super::LearnedWindow { from, to })
    }

    fn exec(&mut self, v: &Value) -> ExecPolicy {
        let mut e = ExecPolicy::default();
        let Some(m) = self.mapping("enforce.exec", v, &EXEC_KEYS) else {
            return e;
        };
        if let Some(v) = m.get("deny") {
            e.deny = self.paths("enforce.exec.deny", v);
        }
        if let Some(v) = m.get("allow") {
            e.allow = Some(self.paths("enforce.exec.allow", v));
        }
        match m.get("deny_new_binaries") {
            None => {}
            Some(Value::Bool(b)) => e.deny_new_binaries = *b,
            Some(_) => self.err_value(
                "enforce.exec.deny_new_binaries",
                "'enforce.exec.deny_new_binaries' must be true or false",
            ),
        }
        if !e.deny.is_empty() && e.allow.is_some() {
            self.err_key(
                "enforce.exec",
                "'enforce.exec' takes 'deny' or 'allow', not both (an allow list already denies everything else)",
            );
        }
        e
    }
}
