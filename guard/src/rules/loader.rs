//! Rules files: YAML items (`rule`, `macro`, `list`, `required_engine_version`,
//! `required_plugin_versions`) merged across files with Falco's semantics for redefinition,
//! `append`, `override` and enable-only items. serde_yaml parses; positions of items, keys and
//! condition text come from scanning the same text (serde_yaml values carry no spans).

use std::{collections::HashMap, sync::Arc};

use serde_yaml::{Mapping, Value};

use super::diag::{Diagnostic, Pos, SourceText};
use crate::alert::Priority;

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

/// Positions within one file, found by scanning its text.
pub struct Locator<'a> {
    lines: Vec<&'a str>,
    item_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let item_starts = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("- ") || **l == "-")
            .map(|(i, _)| i)
            .collect();
        Locator { lines, item_starts }
    }

    fn item_range(&self, item: usize, count: usize) -> Option<(usize, usize)> {
        if self.item_starts.len() != count {
            return None;
        }
        let start = *self.item_starts.get(item)?;
        let end = self
            .item_starts
            .get(item + 1)
            .copied()
            .unwrap_or(self.lines.len());
        Some((start, end))
    }
}

/// One item's view of its file, handed to item handlers.
pub struct ItemCtx<'a> {
    pub file: Arc<str>,
    loc: &'a Locator<'a>,
    range: Option<(usize, usize)>,
}

impl ItemCtx<'_> {
    /// Position of the item's `- `.
    pub fn pos(&self) -> Pos {
        self.range.map_or(Pos { line: 1, col: 1 }, |(s, _)| Pos {
            line: s as u32 + 1,
            col: 1,
        })
    }

    /// Position of the item's own key `key`, or the item position if not found.
    pub fn key_pos(&self, key: &str) -> Pos {
        self.find_key(key).map_or(self.pos(), |(l, c, _)| Pos {
            line: l as u32 + 1,
            col: c as u32 + 1,
        })
    }

    /// (line index, char column, key indent) of a key at the item's mapping level.
    fn find_key(&self, key: &str) -> Option<(usize, usize, usize)> {
        let (start, end) = self.range?;
        let first = self.loc.lines.get(start)?;
        let indent = 2 + first.get(2..).map_or(0, |r| r.len() - r.trim_start().len());
        for i in start..end {
            let line = self.loc.lines.get(i)?;
            let body = if i == start {
                line.get(indent..)?
            } else {
                line
            };
            let lead = if i == start {
                indent
            } else {
                body.len() - body.trim_start().len()
            };
            if i != start && lead != indent {
                continue;
            }
            let rest = body.trim_start();
            let rest = rest.strip_prefix('"').unwrap_or(rest);
            if let Some(after) = rest.strip_prefix(key) {
                let after = after.strip_prefix('"').unwrap_or(after);
                if after.trim_start().starts_with(':') {
                    let col = line[..lead].chars().count();
                    return Some((i, col, indent));
                }
            }
        }
        None
    }

    /// Positions of the non-whitespace characters of a scalar value, for [`SourceText`].
    fn value_chars(&self, key: &str) -> Vec<Pos> {
        let mut out = Vec::new();
        let Some((line_i, col, indent)) = self.find_key(key) else {
            return out;
        };
        let Some((_, end)) = self.range else {
            return out;
        };
        let Some(line) = self.loc.lines.get(line_i) else {
            return out;
        };
        // Text after `key:` on the key's own line.
        let chars: Vec<char> = line.chars().collect();
        let mut c = col;
        while c < chars.len() && chars[c] != ':' {
            c += 1;
        }
        c += 1;
        let rest: String = chars
            .get(c..)
            .map(|s| s.iter().collect())
            .unwrap_or_default();
        let trimmed = rest.trim_start();
        let block = trimmed.starts_with('>') || trimmed.starts_with('|');
        if !block {
            let mut skip_quote = trimmed.starts_with('"') || trimmed.starts_with('\'');
            for (k, ch) in chars.iter().enumerate().skip(c) {
                if ch.is_whitespace() {
                    continue;
                }
                if skip_quote {
                    skip_quote = false;
                    continue;
                }
                out.push(Pos {
                    line: line_i as u32 + 1,
                    col: k as u32 + 1,
                });
            }
        }
        for i in line_i + 1..end {
            let Some(l) = self.loc.lines.get(i) else {
                break;
            };
            let lead = l.len() - l.trim_start().len();
            if !l.trim().is_empty() && lead <= indent {
                break;
            }
            for (k, ch) in l.chars().enumerate() {
                if !ch.is_whitespace() {
                    out.push(Pos {
                        line: i as u32 + 1,
                        col: k as u32 + 1,
                    });
                }
            }
        }
        out
    }
}

/// Scalar YAML value as text; sequences and mappings are not scalars.
/// Nodes a YAML text may hold once its aliases are expanded: 4 per byte of text (more than any
/// document without aliases can have) plus a margin for modest alias use.
pub fn max_yaml_nodes(text: &str) -> usize {
    text.len().saturating_mul(4).saturating_add(10_000)
}

/// Rejects a YAML text whose aliases expand it beyond [`max_yaml_nodes`] (a "billion laughs":
/// ten lines of anchors each used ten times by the next make 10^10 nodes). serde_yaml bounds
/// the number of alias jumps, not the nodes each one replays, so a 500-byte file took seconds
/// to load and far more with a few more lines (a fuzzing finding). This walk stops at the bound
/// without building anything; syntax errors are left to the real parse.
pub fn check_yaml_expansion(text: &str) -> Result<(), String> {
    use serde::de::{
        self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess,
        Visitor,
    };
    use std::cell::Cell;

    #[derive(Clone, Copy)]
    struct Count<'a> {
        left: &'a Cell<usize>,
    }
    const TOO_LARGE: &str = "YAML document too large once its aliases (*name) are expanded";
    impl Count<'_> {
        fn tick<E: de::Error>(self) -> Result<(), E> {
            match self.left.get().checked_sub(1) {
                Some(n) => {
                    self.left.set(n);
                    Ok(())
                }
                None => Err(E::custom(TOO_LARGE)),
            }
        }
    }
    impl<'de> DeserializeSeed<'de> for Count<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    macro_rules! scalars {
        ($($f:ident: $t:ty),*) => {$(
            fn $f<E: de::Error>(self, _: $t) -> Result<(), E> { self.tick() }
        )*};
    }
    impl<'de> Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any YAML value")
        }
        scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
            visit_u128: u128, visit_f64: f64, visit_str: &str, visit_bytes: &[u8]);
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.tick()
        }
        fn visit_none<E: de::Error>(self) -> Result<(), E> {
            self.tick()
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            self.tick()?;
            d.deserialize_any(self)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            self.tick()?;
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            self.tick()?;
            while a.next_element_seed(self)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            self.tick()?;
            while a.next_key_seed(self)?.is_some() {
                a.next_value_seed(self)?;
            }
            Ok(())
        }
        fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<(), A::Error> {
            // A tagged value (`!tag value`).
            self.tick()?;
            let (_, v) = a.variant_seed(self)?;
            v.newtype_variant_seed(self)
        }
    }

    let left = Cell::new(max_yaml_nodes(text));
    let counter = Count { left: &left };
    match counter.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(e) if e.to_string().contains(TOO_LARGE) => Err(format!(
            "{TOO_LARGE} (more than {} nodes)",
            max_yaml_nodes(text)
        )),
        _ => Ok(()),
    }
}

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
        if let Err(msg) = check_yaml_expansion(text) {
            self.diagnostics
                .push(Diagnostic::error(&file, Pos { line: 1, col: 1 }, msg));
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
                range: loc.item_range(i, items.len()),
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
    fn check_keys(&mut self, ctx: &ItemCtx<'_>, map: &Mapping, allowed: &[&str]) -> bool {
        let mut ok = true;
        for k in map.keys() {
            let name = scalar(k).unwrap_or_else(|| format!("{k:?}"));
            if !allowed.contains(&name.as_str()) {
                let hint = allowed
                    .iter()
                    .map(|a| (super::fields::levenshtein(&name, a), *a))
                    .filter(|(d, _)| *d <= 3)
                    .min()
                    .map(|(_, a)| format!("; did you mean '{a}'?"))
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
                    .with_text(name.clone()),
                );
                ok = false;
            }
        }
        ok
    }

    fn err(&mut self, ctx: &ItemCtx<'_>, pos: Pos, msg: String) {
        self.diagnostics
            .push(Diagnostic::error(&ctx.file, pos, msg));
    }

    fn name_of(&mut self, ctx: &ItemCtx<'_>, map: &Mapping, kind: &str) -> Option<String> {
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

    fn string_key(&mut self, ctx: &ItemCtx<'_>, map: &Mapping, key: &str) -> Option<String> {
        let v = map.get(key)?;
        match scalar(v) {
            Some(s) => Some(s),
            None => {
                self.err(ctx, ctx.key_pos(key), format!("'{key}' must be a string"));
                None
            }
        }
    }

    fn bool_key(&mut self, ctx: &ItemCtx<'_>, map: &Mapping, key: &str) -> Option<bool> {
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

    fn cond_key(&mut self, ctx: &ItemCtx<'_>, map: &Mapping, key: &str) -> Option<SourceText> {
        let text = self.string_key(ctx, map, key)?;
        Some(SourceText::new(
            text,
            ctx.file.clone(),
            ctx.value_chars(key),
            ctx.key_pos(key),
        ))
    }

    fn string_list(&mut self, ctx: &ItemCtx<'_>, map: &Mapping, key: &str) -> Option<Vec<String>> {
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
    fn overrides(
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
                        ctx.key_pos("override"),
                        format!("override of '{k}' must be 'append' or 'replace', not '{how}'"),
                    );
                    continue;
                }
            };
            if !ok {
                self.err(
                    ctx,
                    ctx.key_pos("override"),
                    format!("key '{k}' cannot be overridden with '{how}'"),
                );
                continue;
            }
            if !map.contains_key(k.as_str()) {
                self.err(
                    ctx,
                    ctx.key_pos("override"),
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

    fn load_list(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) {
        if !self.check_keys(ctx, map, &["list", "items", "append", "override"]) {
            return;
        }
        let Some(name) = self.name_of(ctx, map, "list") else {
            return;
        };
        let items: Vec<ListItem> = self
            .string_list(ctx, map, "items")
            .unwrap_or_default()
            .into_iter()
            .map(list_item)
            .collect();
        let append = self.bool_key(ctx, map, "append").unwrap_or(false);
        let ov = self.overrides(ctx, map, "list", &["items"], &["items"]);
        if append && ov.is_some() {
            self.err(
                ctx,
                ctx.key_pos("append"),
                format!("list '{name}': use either 'append' or 'override', not both"),
            );
            return;
        }
        let extend = append || ov.as_ref().is_some_and(|o| o.iter().any(|(_, a)| *a));
        if (append || ov.is_some()) && !self.lists.contains_key(&name) {
            self.err(
                ctx,
                ctx.pos(),
                format!("list '{name}': append/override of a list that is not defined"),
            );
            return;
        }
        if !map.contains_key("items") {
            self.err(ctx, ctx.pos(), format!("list '{name}' has no 'items'"));
            return;
        }
        match self.lists.get_mut(&name) {
            Some(l) if extend => l.items.extend(items),
            _ => {
                self.lists.insert(
                    name.clone(),
                    ListDef {
                        name,
                        items,
                        file: ctx.file.clone(),
                        pos: ctx.pos(),
                    },
                );
            }
        }
    }

    fn load_macro(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) {
        if !self.check_keys(ctx, map, &["macro", "condition", "append", "override"]) {
            return;
        }
        let Some(name) = self.name_of(ctx, map, "macro") else {
            return;
        };
        let Some(cond) = self.cond_key(ctx, map, "condition") else {
            if !map.contains_key("condition") {
                self.err(ctx, ctx.pos(), format!("macro '{name}' has no 'condition'"));
            }
            return;
        };
        let append = self.bool_key(ctx, map, "append").unwrap_or(false);
        let ov = self.overrides(ctx, map, "macro", &["condition"], &["condition"]);
        if append && ov.is_some() {
            self.err(
                ctx,
                ctx.key_pos("append"),
                format!("macro '{name}': use either 'append' or 'override', not both"),
            );
            return;
        }
        let extend = append || ov.as_ref().is_some_and(|o| o.iter().any(|(_, a)| *a));
        if (append || ov.is_some()) && !self.macros.contains_key(&name) {
            self.err(
                ctx,
                ctx.pos(),
                format!("macro '{name}': append/override of a macro that is not defined"),
            );
            return;
        }
        match self.macros.get_mut(&name) {
            Some(m) if extend => m.cond.append(cond),
            _ => {
                if !self.macros.contains_key(&name) {
                    self.macro_order.push(name.clone());
                }
                self.macros.insert(
                    name.clone(),
                    MacroDef {
                        name,
                        cond,
                        file: ctx.file.clone(),
                        pos: ctx.pos(),
                    },
                );
            }
        }
    }

    fn load_rule(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) {
        if !self.check_keys(ctx, map, &RULE_KEYS) {
            // The item is dropped, but report a bad priority too so one run shows both.
            if map.contains_key("priority") {
                self.priority(ctx, map);
            }
            return;
        }
        let Some(name) = self.name_of(ctx, map, "rule") else {
            return;
        };
        let append = self.bool_key(ctx, map, "append").unwrap_or(false);
        let ov = self.overrides(ctx, map, "rule", &RULE_APPENDABLE, &RULE_REPLACEABLE);
        if append && ov.is_some() {
            self.err(
                ctx,
                ctx.key_pos("append"),
                format!("rule '{name}': use either 'append' or 'override', not both"),
            );
            return;
        }
        let existing = self.rule_index.get(&name).copied();
        if let Some(ov) = ov {
            let Some(idx) = existing else {
                self.err(
                    ctx,
                    ctx.pos(),
                    format!("rule '{name}': override of a rule that is not defined"),
                );
                return;
            };
            for (key, is_append) in ov {
                self.apply_rule_key(ctx, map, idx, &key, is_append);
            }
            return;
        }
        if append {
            let Some(idx) = existing else {
                self.err(
                    ctx,
                    ctx.pos(),
                    format!("rule '{name}': append to a rule that is not defined"),
                );
                return;
            };
            for key in map.keys().filter_map(scalar) {
                match key.as_str() {
                    "rule" | "append" => {}
                    "condition" | "exceptions" | "output" | "desc" | "tags" => {
                        self.apply_rule_key(ctx, map, idx, &key, true)
                    }
                    other => self.err(
                        ctx,
                        ctx.key_pos(other),
                        format!("rule '{name}': '{other}' cannot be appended"),
                    ),
                }
            }
            return;
        }
        let only_enabled = map
            .keys()
            .filter_map(scalar)
            .all(|k| k == "rule" || k == "enabled");
        if only_enabled && map.contains_key("enabled") {
            match existing {
                Some(idx) => self.apply_rule_key(ctx, map, idx, "enabled", false),
                None => self.err(
                    ctx,
                    ctx.pos(),
                    format!("rule '{name}': enabled-only item for a rule that is not defined"),
                ),
            }
            return;
        }
        let mut missing = Vec::new();
        for k in ["condition", "output", "desc", "priority"] {
            if !map.contains_key(k) {
                missing.push(k);
            }
        }
        if !missing.is_empty() {
            self.err(
                ctx,
                ctx.pos(),
                format!(
                    "rule '{name}' is missing required key(s): {}",
                    missing.join(", ")
                ),
            );
            return;
        }
        let (Some(cond), Some(output), Some(desc), Some(priority)) = (
            self.cond_key(ctx, map, "condition"),
            self.string_key(ctx, map, "output"),
            self.string_key(ctx, map, "desc"),
            self.priority(ctx, map),
        ) else {
            return;
        };
        let rule = RuleDef {
            name: name.clone(),
            desc,
            cond,
            output: output.trim().to_string(),
            output_pos: ctx.key_pos("output"),
            priority,
            tags: self.string_list(ctx, map, "tags").unwrap_or_default(),
            enabled: self.bool_key(ctx, map, "enabled").unwrap_or(true),
            source: self
                .string_key(ctx, map, "source")
                .unwrap_or_else(|| "syscall".into()),
            exceptions: self.exceptions(ctx, map, None).unwrap_or_default(),
            skip_if_unknown_filter: self
                .bool_key(ctx, map, "skip-if-unknown-filter")
                .unwrap_or(false),
            file: ctx.file.clone(),
            pos: ctx.pos(),
        };
        if map.contains_key("warn_evttypes") {
            self.bool_key(ctx, map, "warn_evttypes");
        }
        match existing {
            Some(idx) => self.rules[idx] = rule,
            None => {
                self.rule_index.insert(name, self.rules.len());
                self.rules.push(rule);
            }
        }
    }

    fn priority(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) -> Option<Priority> {
        let p = self.string_key(ctx, map, "priority")?;
        match Priority::parse(&p) {
            Some(p) => Some(p),
            None => {
                self.diagnostics.push(
                    Diagnostic::error(
                        &ctx.file,
                        ctx.key_pos("priority"),
                        format!(
                            "unknown priority '{p}' (expected one of {})",
                            Priority::ALL.map(|p| p.as_str()).join(", ")
                        ),
                    )
                    .with_text(p),
                );
                None
            }
        }
    }

    fn apply_rule_key(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        idx: usize,
        key: &str,
        append: bool,
    ) {
        match key {
            "condition" => {
                if let Some(c) = self.cond_key(ctx, map, key) {
                    let r = &mut self.rules[idx];
                    if append { r.cond.append(c) } else { r.cond = c }
                }
            }
            "output" | "desc" => {
                if let Some(s) = self.string_key(ctx, map, key) {
                    let r = &mut self.rules[idx];
                    let slot = if key == "output" {
                        &mut r.output
                    } else {
                        &mut r.desc
                    };
                    if append {
                        slot.push(' ');
                        slot.push_str(s.trim());
                    } else {
                        *slot = s.trim().to_string();
                    }
                }
            }
            "priority" => {
                if let Some(p) = self.priority(ctx, map) {
                    self.rules[idx].priority = p;
                }
            }
            "enabled" => {
                if let Some(b) = self.bool_key(ctx, map, key) {
                    self.rules[idx].enabled = b;
                }
            }
            "tags" => {
                if let Some(t) = self.string_list(ctx, map, key) {
                    let r = &mut self.rules[idx];
                    if append {
                        for x in t {
                            if !r.tags.contains(&x) {
                                r.tags.push(x);
                            }
                        }
                    } else {
                        r.tags = t;
                    }
                }
            }
            "exceptions" => {
                let prior = append.then(|| self.rules[idx].exceptions.clone());
                if let Some(ex) = self.exceptions(ctx, map, prior.as_deref()) {
                    let r = &mut self.rules[idx];
                    if !append {
                        r.exceptions = ex;
                        return;
                    }
                    for e in ex {
                        match r.exceptions.iter_mut().find(|x| x.name == e.name) {
                            Some(x) => x.values.extend(e.values),
                            None => r.exceptions.push(e),
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Parses `exceptions:`. `prior` is the rule's current exceptions when they are being
    /// appended to: then, as in Falco, an entry that names an existing exception carries only
    /// `values` (its fields and comps are the existing ones), and a new entry needs `values`.
    fn exceptions(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        prior: Option<&[ExceptionDef]>,
    ) -> Option<Vec<ExceptionDef>> {
        let v = map.get("exceptions")?;
        let pos = ctx.key_pos("exceptions");
        let Value::Sequence(list) = v else {
            self.err(ctx, pos, "'exceptions' must be a list".into());
            return None;
        };
        let mut out = Vec::new();
        for e in list {
            let Value::Mapping(m) = e else {
                self.err(
                    ctx,
                    pos,
                    "each exception must be a mapping with name, fields, comps, values".into(),
                );
                continue;
            };
            let mut bad = false;
            for k in m.keys() {
                let k = scalar(k).unwrap_or_default();
                if !["name", "fields", "comps", "values"].contains(&k.as_str()) {
                    self.diagnostics.push(
                        Diagnostic::error(
                            &ctx.file,
                            pos,
                            format!(
                                "unknown exception key '{k}' (allowed: name, fields, comps, values)"
                            ),
                        )
                        .with_text(k),
                    );
                    bad = true;
                }
            }
            let Some(name) = m.get("name").and_then(scalar) else {
                self.err(ctx, pos, "exception needs a 'name'".into());
                continue;
            };
            let existing = prior.and_then(|p| p.iter().find(|x| x.name == name));
            let Some((fields, single, comps)) = (match existing {
                Some(x) => self.appended_exception_shape(ctx, m, x),
                None => self.exception_shape(ctx, m, &name),
            }) else {
                continue;
            };
            if comps.len() != fields.len() {
                self.err(
                    ctx,
                    pos,
                    format!(
                        "exception '{name}': {} fields but {} comps",
                        fields.len(),
                        comps.len()
                    ),
                );
                continue;
            }
            let mut values = Vec::new();
            match m.get("values") {
                None | Some(Value::Null) => {}
                Some(Value::Sequence(rows)) if single => {
                    let row: Vec<ListItem> =
                        rows.iter().filter_map(scalar).map(list_item).collect();
                    values.push(vec![ExValue::Many(row)]);
                }
                Some(Value::Sequence(rows)) => {
                    for row in rows {
                        let Value::Sequence(cells) = row else {
                            self.err(ctx, pos, format!("exception '{name}': each value must be a list with one entry per field"));
                            bad = true;
                            break;
                        };
                        if cells.len() != fields.len() {
                            self.err(
                                ctx,
                                pos,
                                format!(
                                    "exception '{name}': value has {} entries for {} fields",
                                    cells.len(),
                                    fields.len()
                                ),
                            );
                            bad = true;
                            break;
                        }
                        let row = cells
                            .iter()
                            .map(|c| match c {
                                Value::Sequence(s) => ExValue::Many(
                                    s.iter().filter_map(scalar).map(list_item).collect(),
                                ),
                                other => ExValue::One(list_item(scalar(other).unwrap_or_default())),
                            })
                            .collect();
                        values.push(row);
                    }
                }
                Some(_) => {
                    self.err(
                        ctx,
                        pos,
                        format!("exception '{name}': 'values' must be a list"),
                    );
                    bad = true;
                }
            }
            if !bad && prior.is_some() && existing.is_none() && values.is_empty() {
                self.err(
                    ctx,
                    pos,
                    format!("exception '{name}': an appended exception needs 'values'"),
                );
                bad = true;
            }
            if !bad {
                out.push(ExceptionDef {
                    name,
                    fields,
                    single,
                    comps,
                    values,
                    pos,
                    file: ctx.file.clone(),
                });
            }
        }
        Some(out)
    }

    /// `fields` and `comps` of a new exception: Falco's defaults are `=` per field, or `in` when
    /// `fields` is a single string (which then allows only `in`, `pmatch` and `intersects`).
    fn exception_shape(
        &mut self,
        ctx: &ItemCtx<'_>,
        m: &Mapping,
        name: &str,
    ) -> Option<(Vec<String>, bool, Vec<String>)> {
        let pos = ctx.key_pos("exceptions");
        let (fields, single) = match m.get("fields") {
            Some(Value::Sequence(s)) => (s.iter().filter_map(scalar).collect::<Vec<_>>(), false),
            Some(v) => match scalar(v) {
                Some(f) => (vec![f], true),
                None => {
                    self.err(
                        ctx,
                        pos,
                        format!("exception '{name}': 'fields' must be a string or a list"),
                    );
                    return None;
                }
            },
            None => {
                self.err(ctx, pos, format!("exception '{name}' needs 'fields'"));
                return None;
            }
        };
        let comps: Vec<String> = match m.get("comps") {
            Some(Value::Sequence(s)) => s.iter().filter_map(scalar).collect(),
            Some(v) => scalar(v).into_iter().collect(),
            None if single => vec!["in".to_string()],
            None => vec!["=".to_string(); fields.len()],
        };
        if single
            && !comps
                .iter()
                .all(|c| ["in", "pmatch", "intersects"].contains(&c.as_str()))
        {
            self.err(
                ctx,
                pos,
                format!(
                    "exception '{name}': when 'fields' is a single field, 'comps' must be in, pmatch or intersects"
                ),
            );
            return None;
        }
        Some((fields, single, comps))
    }

    /// Appending to an existing exception adds values only, as in Falco.
    fn appended_exception_shape(
        &mut self,
        ctx: &ItemCtx<'_>,
        m: &Mapping,
        existing: &ExceptionDef,
    ) -> Option<(Vec<String>, bool, Vec<String>)> {
        for key in ["fields", "comps"] {
            if m.contains_key(key) {
                self.err(
                    ctx,
                    ctx.key_pos("exceptions"),
                    format!(
                        "exception '{}': cannot append '{key}' to an existing exception, only values",
                        existing.name
                    ),
                );
                return None;
            }
        }
        Some((
            existing.fields.clone(),
            existing.single,
            existing.comps.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Definitions {
        let mut d = Definitions::new();
        d.load_str("t.yaml", text);
        d
    }

    #[test]
    fn items_and_positions() {
        let d = load(
            "- list: l\n  items: [a, '\"b c\"', 3]\n\n- macro: m\n  condition: >\n    proc.name in (l)\n    and x\n- rule: r\n  desc: d\n  condition: m\n  output: o %proc.name\n  priority: warning\n  tags: [a]\n",
        );
        assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
        let l = &d.lists["l"];
        assert_eq!(
            l.items[1],
            ListItem {
                text: "b c".into(),
                quoted: true
            }
        );
        assert_eq!(l.items[2].text, "3");
        let m = &d.macros["m"];
        // "and" begins at line 7 col 5.
        let off = m.cond.text.find("and").expect("and");
        assert_eq!(m.cond.locate(off).1, Pos { line: 7, col: 5 });
        let r = d.rule("r").expect("rule");
        assert_eq!(r.pos, Pos { line: 8, col: 1 });
        assert_eq!(r.priority, Priority::Warning);
    }

    #[test]
    fn unknown_key_has_position_and_hint() {
        let d = load("- rule: r\n  desc: d\n  condtion: x\n  output: o\n  priority: INFO\n");
        let e = &d.diagnostics[0];
        assert_eq!(e.pos, Pos { line: 3, col: 3 });
        assert!(
            e.msg
                .contains("unknown key 'condtion'; did you mean 'condition'?"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn append_override_enable_only() {
        let d = load(concat!(
            "- list: l\n  items: [a]\n",
            "- list: l\n  items: [b]\n  append: true\n",
            "- list: l\n  items: [c]\n  override:\n    items: append\n",
            "- macro: m\n  condition: a\n",
            "- macro: m\n  condition: or b\n  append: true\n",
            "- rule: r\n  desc: d\n  condition: x\n  output: o\n  priority: INFO\n  tags: [t1]\n",
            "- rule: r\n  condition: and y\n  append: true\n",
            "- rule: r\n  output: more\n  tags: [t2]\n  override:\n    output: append\n    tags: append\n",
            "- rule: r\n  priority: CRITICAL\n  override:\n    priority: replace\n",
            "- rule: r\n  enabled: false\n",
        ));
        assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
        let items: Vec<&str> = d.lists["l"].items.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(items, ["a", "b", "c"]);
        assert_eq!(d.macros["m"].cond.text, "a or b");
        let r = d.rule("r").expect("rule");
        assert_eq!(r.cond.text, "x and y");
        assert_eq!(r.output, "o more");
        assert_eq!(r.tags, ["t1", "t2"]);
        assert_eq!(r.priority, Priority::Critical);
        assert!(!r.enabled);
    }

    #[test]
    fn redefinition_replaces_and_errors_are_reported() {
        let d = load(concat!(
            "- rule: r\n  desc: d\n  condition: x\n  output: o\n  priority: INFO\n",
            "- rule: r\n  desc: d2\n  condition: y\n  output: o\n  priority: INFO\n",
            "- rule: nope\n  condition: and z\n  append: true\n",
            "- rule: s\n  desc: d\n  condition: x\n  output: o\n  priority: LOUD\n",
            "- rule: t\n  desc: d\n  output: o\n  priority: INFO\n",
            "- rule: r\n  output: z\n  override:\n    condition: append\n",
            "- thing: x\n",
        ));
        assert_eq!(d.rules.len(), 1);
        assert_eq!(d.rule("r").map(|r| r.cond.text.as_str()), Some("y"));
        let msgs: Vec<&str> = d.diagnostics.iter().map(|d| d.msg.as_str()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("append to a rule that is not defined")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("unknown priority 'LOUD'")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("missing required key(s): condition")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("override names 'condition'")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("unknown item")), "{msgs:?}");
    }

    #[test]
    fn yaml_syntax_error_position() {
        let d = load("- rule: a\n  desc: [unclosed\n");
        let e = &d.diagnostics[0];
        assert!(e.msg.starts_with("YAML syntax"), "{}", e.msg);
        assert!(e.pos.line >= 2, "{:?}", e.pos);
    }

    #[test]
    fn exceptions_forms() {
        let d = load(concat!(
            "- rule: r\n  desc: d\n  condition: x\n  output: o\n  priority: INFO\n",
            "  exceptions:\n",
            "    - name: pair\n      fields: [proc.name, fd.name]\n      comps: [=, startswith]\n      values:\n        - [a, /etc]\n",
            "    - name: one\n      fields: proc.name\n      values: [x, y]\n",
        ));
        assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
        let r = d.rule("r").expect("rule");
        assert_eq!(r.exceptions.len(), 2);
        assert_eq!(r.exceptions[1].comps, ["in"]);
        assert!(r.exceptions[1].single);
    }

    #[test]
    fn future_kinds_are_reported_not_silently_ignored() {
        let d = load("- policy: web\n  mode: detect\n");
        assert!(
            d.diagnostics[0].msg.contains("'policy' is not supported"),
            "{:?}",
            d.diagnostics
        );
        let mut d = Definitions::new();
        d.register_kind(
            "policy",
            Box::new(|ctx, _| vec![Diagnostic::warning(&ctx.file, ctx.key_pos("mode"), "seen")]),
        );
        d.load_str("p.yaml", "- policy: web\n  mode: detect\n");
        assert_eq!(d.diagnostics[0].pos, Pos { line: 2, col: 3 });
    }
}
