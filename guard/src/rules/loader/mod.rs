//! Rules files: YAML items (`rule`, `macro`, `list`, `required_engine_version`,
//! `required_plugin_versions`) merged across files with Falco's semantics for redefinition,
//! `append`, `override` and enable-only items. serde_yaml parses; positions of items, keys and
//! condition text come from scanning the same text (serde_yaml values carry no spans).

use std::{collections::HashMap, sync::Arc};

use serde_yaml::{Mapping, Value};

use super::diag::{Diagnostic, Pos, SourceText};
use crate::alert::Priority;
use crate::yaml::{Locator, Seg};

mod exceptions;
mod lists;
mod rule;

/// A list item: the text and whether it was quoted inside the YAML string (`'"a b"'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    pub text: String,
    pub quoted: bool,
}

#[derive(Debug, Clone)]
pub struct ListDef {
    pub name: String,
    pub items: Vec<ListItem>,
    pub file: Arc<str>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct MacroDef {
    pub name: String,
    pub cond: SourceText,
    pub file: Arc<str>,
    pub pos: Pos,
}

/// One value of an exception tuple: a single value, or a list for `in`-style comparisons.
#[derive(Debug, Clone, PartialEq)]
pub enum ExValue {
    One(ListItem),
    Many(Vec<ListItem>),
}

#[derive(Debug, Clone)]
pub struct ExceptionDef {
    pub name: String,
    pub fields: Vec<String>,
    /// `fields` was a single string: values are then a plain list compared with `comps`.
    pub single: bool,
    pub comps: Vec<String>,
    pub values: Vec<Vec<ExValue>>,
    pub pos: Pos,
    pub file: Arc<str>,
}

#[derive(Debug, Clone)]
pub struct RuleDef {
    pub name: String,
    pub desc: String,
    pub cond: SourceText,
    pub output: String,
    pub output_pos: Pos,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub source: String,
    pub exceptions: Vec<ExceptionDef>,
    pub skip_if_unknown_filter: bool,
    pub file: Arc<str>,
    pub pos: Pos,
}

/// Handler for item kinds added by other parts of guard (`policy`, `response`). It gets the
/// item and a way to locate its keys, and returns diagnostics.
pub type ItemHandler = Box<dyn Fn(&ItemCtx<'_>, &Mapping) -> Vec<Diagnostic> + Send + Sync>;

/// Everything the loader collected, in definition order.
#[derive(Default)]
pub struct Definitions {
    pub lists: HashMap<String, ListDef>,
    pub macros: HashMap<String, MacroDef>,
    pub macro_order: Vec<String>,
    pub rules: Vec<RuleDef>,
    rule_index: HashMap<String, usize>,
    pub required_engine_versions: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    handlers: HashMap<String, ItemHandler>,
}

const ITEM_KINDS: [&str; 5] = [
    "rule",
    "macro",
    "list",
    "required_engine_version",
    "required_plugin_versions",
];

/// Kinds other issues add; without a registered handler they are reported as not yet supported.
const FUTURE_KINDS: [&str; 2] = ["policy", "response"];

const RULE_KEYS: [&str; 13] = [
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "exceptions",
    "source",
    "append",
    "override",
    "warn_evttypes",
    "skip-if-unknown-filter",
];
const RULE_APPENDABLE: [&str; 5] = ["condition", "output", "desc", "tags", "exceptions"];
const RULE_REPLACEABLE: [&str; 7] = [
    "condition",
    "output",
    "desc",
    "priority",
    "tags",
    "exceptions",
    "enabled",
];

/// One item's view of its file, handed to item handlers.
pub struct ItemCtx<'a> {
    pub file: Arc<str>,
    loc: &'a Locator<'a>,
    /// Index of the item in the top-level sequence, when the text's items were found.
    index: Option<usize>,
}

impl ItemCtx<'_> {
    /// Position of the item's `- `.
    pub fn pos(&self) -> Pos {
        self.index
            .and_then(|i| self.loc.key(&[Seg::Index(i)]))
            .unwrap_or(Pos::START)
    }

    fn path<'k>(&self, rel: &[Seg<'k>]) -> Option<Vec<Seg<'k>>> {
        let i = self.index?;
        Some(
            std::iter::once(Seg::Index(i))
                .chain(rel.iter().copied())
                .collect(),
        )
    }

    /// Position of the item's own key `key`, or the item position if not found.
    pub fn key_pos(&self, key: &str) -> Pos {
        self.path_pos(&[Seg::Key(key)])
    }

    /// Position of the key at `rel` (a path inside the item), or of its deepest part found.
    pub fn path_pos(&self, rel: &[Seg<'_>]) -> Pos {
        self.path(rel)
            .map_or(Pos::START, |p| self.loc.nearest_key(&p))
    }

    /// Position of the value at `rel`, else as [`ItemCtx::path_pos`].
    pub fn value_pos(&self, rel: &[Seg<'_>]) -> Pos {
        self.path(rel)
            .map_or(Pos::START, |p| self.loc.nearest_value(&p))
    }

    /// Positions of the non-whitespace characters of a scalar value, for [`SourceText`].
    fn value_chars(&self, key: &str) -> Vec<Pos> {
        self.path(&[Seg::Key(key)])
            .map(|p| self.loc.value_chars(&p))
            .unwrap_or_default()
    }
}

/// Scalar YAML value as text; sequences and mappings are not scalars.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

/// List item text: YAML strings written as `'"a b"'` keep their inner quotes in Falco files
/// so that they parse as one value; strip them here.
fn list_item(text: String) -> ListItem {
    let t = text.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        ListItem {
            text: t[1..t.len() - 1].to_string(),
            quoted: true,
        }
    } else {
        ListItem {
            text,
            quoted: false,
        }
    }
}

impl Definitions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets another module accept an item kind such as `policy`.
    pub fn register_kind(&mut self, kind: &str, handler: ItemHandler) {
        self.handlers.insert(kind.to_string(), handler);
    }

    pub fn rule(&self, name: &str) -> Option<&RuleDef> {
        self.rule_index.get(name).and_then(|&i| self.rules.get(i))
    }

    /// Loads one file's text. Problems become diagnostics; loading goes on with the next item.
    pub fn load_str(&mut self, file: &str, text: &str) {
        let file: Arc<str> = Arc::from(file);
        if let Err(e) = crate::yaml::check_expansion(text) {
            self.diagnostics
                .push(Diagnostic::error(&file, Pos::START, e.to_string()));
            return;
        }
        let root: Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let pos = e.location().map_or(Pos { line: 1, col: 1 }, |l| Pos {
                    line: l.line() as u32,
                    col: l.column() as u32,
                });
                let line = text
                    .lines()
                    .nth(pos.line.saturating_sub(1) as usize)
                    .unwrap_or("");
                self.diagnostics.push(
                    Diagnostic::error(&file, pos, format!("YAML syntax: {e}"))
                        .with_text(line.trim_end()),
                );
                return;
            }
        };
        let items = match root {
            Value::Null => return,
            Value::Sequence(s) => s,
            _ => {
                self.diagnostics.push(Diagnostic::error(
                    &file,
                    Pos { line: 1, col: 1 },
                    "a rules file is a YAML sequence of items (- rule: ..., - macro: ..., - list: ...)",
                ));
                return;
            }
        };
        let loc = Locator::new(text);
        for (i, item) in items.iter().enumerate() {
            let ctx = ItemCtx {
                file: file.clone(),
                loc: &loc,
                index: (loc.item_count() == items.len()).then_some(i),
            };
            let Value::Mapping(map) = item else {
                self.diagnostics
                    .push(Diagnostic::error(&file, ctx.pos(), "item is not a mapping"));
                continue;
            };
            self.load_item(&ctx, map);
        }
    }

    fn load_item(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) {
        let keys: Vec<String> = map.keys().filter_map(scalar).collect();
        let mut kinds = keys.iter().filter(|k| {
            ITEM_KINDS.contains(&k.as_str())
                || FUTURE_KINDS.contains(&k.as_str())
                || self.handlers.contains_key(k.as_str())
        });
        let Some(kind) = kinds.next().cloned() else {
            self.diagnostics.push(
                Diagnostic::error(
                    &ctx.file,
                    ctx.pos(),
                    format!(
                        "unknown item: expected one of {}; found keys {}",
                        ITEM_KINDS.join(", "),
                        keys.join(", ")
                    ),
                )
                .with_text(keys.first().cloned().unwrap_or_default()),
            );
            return;
        };
        if let Some(other) = kinds.next() {
            self.diagnostics.push(Diagnostic::error(
                &ctx.file,
                ctx.key_pos(other),
                format!("item has both '{kind}' and '{other}'"),
            ));
            return;
        }
        if let Some(h) = self.handlers.get(&kind) {
            let d = h(ctx, map);
            self.diagnostics.extend(d);
            return;
        }
        match kind.as_str() {
            "rule" => self.load_rule(ctx, map),
            "macro" => self.load_macro(ctx, map),
            "list" => self.load_list(ctx, map),
            "required_engine_version" => {
                if let Some(v) = map.get("required_engine_version").and_then(scalar) {
                    self.required_engine_versions.push(v);
                }
                self.check_keys(ctx, map, &["required_engine_version"]);
            }
            "required_plugin_versions" => {
                self.check_keys(ctx, map, &["required_plugin_versions"]);
                let names: Vec<String> = match map.get("required_plugin_versions") {
                    Some(Value::Sequence(s)) => s
                        .iter()
                        .filter_map(|p| p.get("name").and_then(scalar))
                        .collect(),
                    _ => {
                        self.diagnostics.push(Diagnostic::error(
                            &ctx.file,
                            ctx.pos(),
                            "required_plugin_versions must be a list of {name, version}",
                        ));
                        return;
                    }
                };
                for n in names {
                    self.diagnostics.push(Diagnostic::warning(
                        &ctx.file,
                        ctx.pos(),
                        format!("plugin requirement '{n}' is not applicable: guard has no plugins and provides container fields itself"),
                    ));
                }
            }
            other => self.diagnostics.push(Diagnostic::error(
                &ctx.file,
                ctx.key_pos(other),
                format!("item kind '{other}' is not supported by this build of guard"),
            )),
        }
    }

    /// Reports every key not in `allowed`; returns false if there was one.
    pub(super) fn check_keys(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        allowed: &[&str],
    ) -> bool {
        let mut ok = true;
        for k in map.keys() {
            let name = scalar(k).unwrap_or_else(|| format!("{k:?}"));
            if !allowed.contains(&name.as_str()) {
                let close = crate::yaml::closest(&name, allowed.iter().copied(), |_| 3);
                let hint = close
                    .map(|a| format!("; did you mean '{a}'?"))
                    .unwrap_or_default();
                self.diagnostics.push(
                    Diagnostic::error(
                        &ctx.file,
                        ctx.key_pos(&name),
                        format!(
                            "unknown key '{name}'{hint} (allowed: {})",
                            allowed.join(", ")
                        ),
                    )
                    .with_hint(close)
                    .with_text(name.clone()),
                );
                ok = false;
            }
        }
        ok
    }

    pub(super) fn err(&mut self, ctx: &ItemCtx<'_>, pos: Pos, msg: String) {
        self.diagnostics
            .push(Diagnostic::error(&ctx.file, pos, msg));
    }

    pub(super) fn name_of(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        kind: &str,
    ) -> Option<String> {
        match map.get(kind).and_then(scalar) {
            Some(n) if !n.trim().is_empty() => Some(n),
            _ => {
                self.err(
                    ctx,
                    ctx.key_pos(kind),
                    format!("{kind} needs a non-empty name"),
                );
                None
            }
        }
    }

    pub(super) fn string_key(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        key: &str,
    ) -> Option<String> {
        let v = map.get(key)?;
        match scalar(v) {
            Some(s) => Some(s),
            None => {
                self.err(ctx, ctx.key_pos(key), format!("'{key}' must be a string"));
                None
            }
        }
    }

    pub(super) fn bool_key(&mut self, ctx: &ItemCtx<'_>, map: &Mapping, key: &str) -> Option<bool> {
        match map.get(key)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.err(
                    ctx,
                    ctx.key_pos(key),
                    format!("'{key}' must be true or false"),
                );
                None
            }
        }
    }

    pub(super) fn cond_key(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        key: &str,
    ) -> Option<SourceText> {
        let text = self.string_key(ctx, map, key)?;
        Some(SourceText::new(
            text,
            ctx.file.clone(),
            ctx.value_chars(key),
            ctx.key_pos(key),
        ))
    }

    pub(super) fn string_list(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        key: &str,
    ) -> Option<Vec<String>> {
        match map.get(key)? {
            Value::Sequence(s) => {
                let mut out = Vec::with_capacity(s.len());
                for v in s {
                    match scalar(v) {
                        Some(x) => out.push(x),
                        None => {
                            self.err(
                                ctx,
                                ctx.key_pos(key),
                                format!("'{key}' items must be strings"),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            Value::Null => Some(Vec::new()),
            _ => {
                self.err(ctx, ctx.key_pos(key), format!("'{key}' must be a list"));
                None
            }
        }
    }

    /// Parses `override:`; returns key -> is_append.
    pub(super) fn overrides(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        kind_key: &str,
        appendable: &[&str],
        replaceable: &[&str],
    ) -> Option<Vec<(String, bool)>> {
        let ov = map.get("override")?;
        let Value::Mapping(ov) = ov else {
            self.err(
                ctx,
                ctx.key_pos("override"),
                "'override' must be a mapping of key: append|replace".into(),
            );
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        for (k, v) in ov {
            let (Some(k), Some(how)) = (scalar(k), scalar(v)) else {
                self.err(
                    ctx,
                    ctx.key_pos("override"),
                    "'override' entries must be key: append|replace".into(),
                );
                continue;
            };
            let ok = match how.as_str() {
                "append" => appendable.contains(&k.as_str()),
                "replace" => replaceable.contains(&k.as_str()),
                _ => {
                    self.err(
                        ctx,
                        ctx.value_pos(&[Seg::Key("override"), Seg::Key(&k)]),
                        format!("override of '{k}' must be 'append' or 'replace', not '{how}'"),
                    );
                    continue;
                }
            };
            if !ok {
                self.err(
                    ctx,
                    ctx.path_pos(&[Seg::Key("override"), Seg::Key(&k)]),
                    format!("key '{k}' cannot be overridden with '{how}'"),
                );
                continue;
            }
            if !map.contains_key(k.as_str()) {
                self.err(
                    ctx,
                    ctx.path_pos(&[Seg::Key("override"), Seg::Key(&k)]),
                    format!("override names '{k}' but the item has no '{k}' key"),
                );
                continue;
            }
            out.push((k, how == "append"));
        }
        for k in map.keys().filter_map(scalar) {
            // `append` with `override` gets its own error from the caller (Falco: they
            // cannot be used together); `append: false` is harmless.
            if k != kind_key
                && k != "override"
                && k != "append"
                && !out.iter().any(|(o, _)| *o == k)
                && !ov.contains_key(k.as_str())
            {
                self.err(
                    ctx,
                    ctx.key_pos(&k),
                    format!("key '{k}' is not named in 'override'"),
                );
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests;
