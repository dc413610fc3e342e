//! From loaded definitions to a [`RuleSet`]: parse conditions, expand macros and lists, resolve
//! and type-check fields, build tests, index rules by event type. Every problem becomes a
//! diagnostic at `file:line:col`; a rule with an error is left out, the others still load.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use globset::GlobBuilder;
use ipnet::IpNet;
use regex::Regex;

use super::{
    ast::{Check as AstCheck, Expr, FieldExpr, Lit, Op, Operand, Span, Transformer},
    diag::{Diagnostic, Pos, SourceText},
    eval::{Check, Cmp, FieldOp, Node, Test, TypeSet},
    fields::{self, FieldArg, FieldId, FieldRef, FieldType, Resolved},
    loader::{Definitions, ExValue, ExceptionDef, ListItem, RuleDef},
    output::OutputFormat,
    parser, plan,
};
use crate::alert::Priority;

mod checks;
mod exceptions;

/// Deepest macro nesting (and list nesting) accepted.
pub const MAX_MACRO_DEPTH: usize = 32;
/// Nodes one rule's condition (or one macro checked on its own) may expand to. Macros are
/// inlined, so `m1: m0 or m0`, `m2: m1 or m1`, ... doubles per level: without a bound 30 such
/// lines take minutes and gigabytes to compile (a fuzzing finding). Falco's own rules stay far
/// below it.
pub const MAX_CONDITION_NODES: usize = 50_000;
/// Items one literal list may expand to through nested lists (the same doubling, for lists).
pub const MAX_LIST_ITEMS: usize = 50_000;

/// What `guard rules list` shows about a rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    Active,
    Disabled,
    /// Not evaluated; the reason says why (other source, unknown field with skip-if-unknown-filter).
    Skipped(String),
    Invalid,
}

#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub name: String,
    pub desc: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub source: String,
    pub status: RuleStatus,
    /// Condition text after appends, for listing and tooling.
    pub condition: String,
    pub node: Node,
    pub output: OutputFormat,
    /// Fields the rule uses that guard cannot provide.
    pub unavailable: Vec<&'static str>,
    pub file: Arc<str>,
    pub pos: Pos,
}

impl CompiledRule {
    /// The status `guard rules list` and `validate` show, in text and JSON alike: `partial`
    /// for an active rule that uses a field guard cannot provide.
    pub fn status_label(&self) -> &'static str {
        match self.status {
            RuleStatus::Active if !self.unavailable.is_empty() => "partial",
            RuleStatus::Active => "active",
            RuleStatus::Disabled => "disabled",
            RuleStatus::Skipped(_) => "skipped",
            RuleStatus::Invalid => "invalid",
        }
    }
}

/// Compiled rules, indexed by event type id.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<CompiledRule>,
    pub(crate) by_type: Vec<Box<[u32]>>,
    /// Per event type: each candidate rule with its condition specialized to that type
    /// (see [`super::plan`]); rules that cannot match the type are left out.
    pub(crate) plans: Vec<Box<[(u32, Node)]>>,
    /// Number of macro result slots evaluation needs (see [`Node::Memo`]).
    pub(crate) memo_slots: usize,
    /// Host names `fd.*ip.name` checks compare with, sorted: what the resolver looks up.
    pub dns_names: Vec<Box<str>>,
}

struct Compiler<'d> {
    defs: &'d Definitions,
    diags: Vec<Diagnostic>,
    seen: HashSet<String>,
    parsed: HashMap<String, Option<Expr>>,
    macro_cache: HashMap<String, Option<(Node, BTreeSet<&'static str>)>>,
    /// Node count of each cached macro node.
    macro_sizes: HashMap<String, usize>,
    /// Nodes inlined so far for the rule (or lone macro) being compiled; see
    /// [`MAX_CONDITION_NODES`].
    expanded: usize,
    /// The current rule already went over the budget (reported once).
    over_budget: bool,
    macro_stack: Vec<String>,
    warned: HashSet<String>,
    /// Unavailable field -> first use and the rules that use it.
    unavailable: BTreeMap<&'static str, (Arc<str>, Pos, BTreeSet<String>)>,
    memo_slots: u32,
    /// Host names compared with `fd.*ip.name` (by any rule or macro).
    dns_names: BTreeSet<Box<str>>,
}

type R<T> = Result<T, ()>;

/// What one compilation walk collects besides the node.
#[derive(Default)]
struct Uses {
    unavailable: BTreeSet<&'static str>,
}

pub fn build(defs: &Definitions) -> (RuleSet, Vec<Diagnostic>) {
    let mut c = Compiler {
        defs,
        diags: Vec::new(),
        seen: HashSet::new(),
        parsed: HashMap::new(),
        macro_cache: HashMap::new(),
        macro_sizes: HashMap::new(),
        expanded: 0,
        over_budget: false,
        macro_stack: Vec::new(),
        warned: HashSet::new(),
        unavailable: BTreeMap::new(),
        memo_slots: 0,
        dns_names: BTreeSet::new(),
    };
    let mut rules = Vec::new();
    for r in &defs.rules {
        rules.push(c.rule(r));
    }
    // Macros no rule uses still get checked, so that `validate` reports their errors.
    for name in &defs.macro_order {
        if !c.macro_cache.contains_key(name) {
            c.start_budget();
            let _ = c.macro_node(name, Span::default(), &defs.macros[name].cond);
            if c.over_budget {
                // Too large on its own: the macros that use it fail at once instead of each
                // expanding it up to the budget again.
                c.macro_cache.insert(name.clone(), None);
            }
        }
    }
    for (field, (file, pos, users)) in &c.unavailable {
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let used_by = if users.is_empty() {
            "no enabled rule".to_string()
        } else {
            format!("{} rule(s): {}", users.len(), users.join("; "))
        };
        c.diags.push(Diagnostic::warning(
            file,
            *pos,
            format!("field '{field}' is not provided by guard: checks on it are false and outputs show <NA>; used by {used_by}"),
        ));
    }
    let mut set = RuleSet {
        rules,
        by_type: Vec::new(),
        plans: Vec::new(),
        memo_slots: c.memo_slots as usize,
        dns_names: std::mem::take(&mut c.dns_names).into_iter().collect(),
    };
    set.index();
    (set, c.diags)
}

impl RuleSet {
    fn index(&mut self) {
        let mut by_type = vec![Vec::new(); fields::TYPE_COUNT];
        for (i, r) in self.rules.iter().enumerate() {
            if r.status != RuleStatus::Active {
                continue;
            }
            let types = r.node.types();
            for (t, slot) in by_type.iter_mut().enumerate() {
                if types & (1u128 << t) != 0 {
                    slot.push(i as u32);
                }
            }
        }
        self.plans = by_type
            .iter()
            .enumerate()
            .map(|(t, ids)| {
                let specialized: Vec<(u32, Node)> = ids
                    .iter()
                    .map(|&i| (i, plan::specialize(&self.rules[i as usize].node, t as u16)))
                    .filter(|(_, n)| !matches!(n, Node::Const(false)))
                    .collect();
                let mut counts = Vec::new();
                for (_, n) in &specialized {
                    plan::count_memos(n, &mut counts);
                }
                specialized
                    .into_iter()
                    .map(|(i, n)| (i, plan::finish(n, &counts)))
                    .collect()
            })
            .collect();
        self.by_type = by_type.into_iter().map(Vec::into_boxed_slice).collect();
    }

    pub fn get(&self, name: &str) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| r.name == name)
    }

    pub fn active(&self) -> impl Iterator<Item = &CompiledRule> {
        self.rules.iter().filter(|r| r.status == RuleStatus::Active)
    }
}

fn op_cmp(op: Op) -> Option<(Cmp, bool)> {
    Some(match op {
        Op::Eq => (Cmp::Eq, false),
        Op::Ne => (Cmp::Eq, true),
        Op::Lt => (Cmp::Lt, false),
        Op::Le => (Cmp::Le, false),
        Op::Gt => (Cmp::Gt, false),
        Op::Ge => (Cmp::Ge, false),
        _ => return None,
    })
}

impl<'d> Compiler<'d> {
    fn push(&mut self, d: Diagnostic) {
        if self.seen.insert(d.to_string()) {
            self.diags.push(d);
        }
    }

    fn err(&mut self, src: &SourceText, span: Span, msg: String) {
        let (file, pos) = src.locate(span.start);
        let text = src.text.get(span.start..span.end).unwrap_or("").to_string();
        let d = Diagnostic::error(&file, pos, msg);
        self.push(if text.is_empty() {
            d
        } else {
            d.with_text(text)
        });
    }

    fn warn_once(&mut self, key: String, src: &SourceText, span: Span, msg: String) {
        if self.warned.insert(key) {
            let (file, pos) = src.locate(span.start);
            self.push(Diagnostic::warning(&file, pos, msg));
        }
    }

    fn rule(&mut self, r: &RuleDef) -> CompiledRule {
        let mut out = CompiledRule {
            name: r.name.clone(),
            desc: r.desc.trim().to_string(),
            priority: r.priority,
            tags: r.tags.clone(),
            source: r.source.clone(),
            status: if r.enabled {
                RuleStatus::Active
            } else {
                RuleStatus::Disabled
            },
            condition: r.cond.text.trim().to_string(),
            node: Node::Const(false),
            output: OutputFormat::default(),
            unavailable: Vec::new(),
            file: r.file.clone(),
            pos: r.pos,
        };
        if r.source != "syscall" {
            let src = SourceText::new(String::new(), r.file.clone(), Vec::new(), r.pos);
            self.warn_once(
                format!("source:{}", r.source),
                &src,
                Span::default(),
                format!("rules with source '{}' are loaded but not evaluated: guard handles syscall events only", r.source),
            );
            out.status =
                RuleStatus::Skipped(format!("source '{}' is not handled by guard", r.source));
            return out;
        }
        let errors_before = self.diags.iter().filter(|d| d.is_error()).count();
        let mut uses = Uses::default();
        self.start_budget();
        let cond = match parser::parse(&r.cond.text) {
            Ok(e) => self.expr(&e, &r.cond, &mut uses),
            Err(e) => {
                self.err(&r.cond, e.span, format!("rule '{}': {}", r.name, e.msg));
                Err(())
            }
        };
        let exceptions = self.exceptions(&r.exceptions, &mut uses);
        let output = OutputFormat::compile(&r.output);
        let output = match output {
            Ok(o) => {
                for f in &o.unavailable {
                    uses.unavailable.insert(f);
                    self.unavailable.entry(f).or_insert((
                        r.file.clone(),
                        r.output_pos,
                        BTreeSet::new(),
                    ));
                }
                Some(o)
            }
            Err(e) => {
                let file = r.file.clone();
                self.push(
                    Diagnostic::error(
                        &file,
                        r.output_pos,
                        format!("rule '{}': output: {}", r.name, e.msg),
                    )
                    .with_text(e.text),
                );
                None
            }
        };
        let failed = self.diags.iter().filter(|d| d.is_error()).count() > errors_before;
        match (cond, exceptions, output) {
            (Ok(cond), Ok(ex), Some(output)) if !failed => {
                out.node = match ex {
                    Some(ex) => Node::And(vec![cond, Node::Not(Box::new(ex))].into()),
                    None => cond,
                };
                out.output = output;
            }
            _ if r.skip_if_unknown_filter => {
                // Falco's escape hatch: demote this rule's errors to a skip.
                let mut demoted = 0;
                for d in self.diags.iter_mut().skip(errors_before) {
                    if d.is_error() {
                        d.severity = super::diag::Severity::Warning;
                        demoted += 1;
                    }
                }
                out.status = RuleStatus::Skipped(format!(
                    "{demoted} error(s) with skip-if-unknown-filter: true"
                ));
                return out;
            }
            _ => {
                out.status = RuleStatus::Invalid;
                return out;
            }
        }
        out.unavailable = uses.unavailable.iter().copied().collect();
        for f in &uses.unavailable {
            if let Some(e) = self.unavailable.get_mut(f)
                && out.status == RuleStatus::Active
            {
                e.2.insert(r.name.clone());
            }
        }
        out
    }

    fn expr(&mut self, e: &Expr, src: &SourceText, uses: &mut Uses) -> R<Node> {
        match e {
            Expr::And(items) | Expr::Or(items) => {
                // Compile every branch so that all errors are reported, not just the first.
                let mut nodes = Vec::with_capacity(items.len());
                let mut ok = true;
                for i in items {
                    match self.expr(i, src, uses) {
                        Ok(n) => nodes.push(n),
                        Err(()) => ok = false,
                    }
                }
                if !ok {
                    return Err(());
                }
                Ok(if matches!(e, Expr::And(_)) {
                    Node::And(nodes.into())
                } else {
                    Node::Or(nodes.into())
                })
            }
            Expr::Not(inner) => Ok(Node::Not(Box::new(self.expr(inner, src, uses)?))),
            Expr::Macro(name, span) => {
                let (node, un) = self.macro_node(name, *span, src)?;
                uses.unavailable.extend(un);
                Ok(node)
            }
            Expr::Check(c) => self.check(c, src, uses),
        }
    }

    fn start_budget(&mut self) {
        self.expanded = 0;
        self.over_budget = false;
    }

    /// Counts `nodes` more inlined nodes against [`MAX_CONDITION_NODES`]; past it, an error
    /// (the first time) at the macro reference that went over.
    fn charge(&mut self, nodes: usize, name: &str, span: Span, src: &SourceText) -> R<()> {
        if self.over_budget {
            return Err(());
        }
        self.expanded = self.expanded.saturating_add(nodes);
        if self.expanded > MAX_CONDITION_NODES {
            self.over_budget = true;
            self.err(
                src,
                span,
                format!(
                    "condition too large: with macro '{name}' inlined it exceeds {MAX_CONDITION_NODES} nodes (macros that use other macros several times grow exponentially)"
                ),
            );
            return Err(());
        }
        Ok(())
    }

    /// Compiles (once) and returns a macro's node; `span`/`src` locate the reference.
    fn macro_node(
        &mut self,
        name: &str,
        span: Span,
        src: &SourceText,
    ) -> R<(Node, BTreeSet<&'static str>)> {
        if self.over_budget {
            // Stop at once: macros left uncached by the overflow would otherwise be compiled
            // again at every reference, which is the same doubling again.
            return Err(());
        }
        if let Some(cached) = self.macro_cache.get(name) {
            if cached.is_some() {
                // Charge before cloning: the clone is the expensive part.
                let size = self.macro_sizes.get(name).copied().unwrap_or(0);
                self.charge(size, name, span, src)?;
            }
            return self.macro_cache.get(name).cloned().flatten().ok_or(());
        }
        if let Some(i) = self.macro_stack.iter().position(|m| m == name) {
            let mut cycle = self.macro_stack[i..].to_vec();
            cycle.push(name.to_string());
            self.err(
                src,
                span,
                format!("circular macro reference: {}", cycle.join(" -> ")),
            );
            return Err(());
        }
        if self.macro_stack.len() >= MAX_MACRO_DEPTH {
            self.err(
                src,
                span,
                format!("macros nested deeper than {MAX_MACRO_DEPTH} levels at '{name}'"),
            );
            return Err(());
        }
        let defs = self.defs;
        let Some(m) = defs.macros.get(name) else {
            let hint = if defs.lists.contains_key(name) {
                format!("; '{name}' is a list: use it as `field in ({name})`")
            } else {
                closest_name(name, defs.macros.keys())
                    .map(|c| format!("; did you mean '{c}'?"))
                    .unwrap_or_default()
            };
            self.err(src, span, format!("undefined macro '{name}'{hint}"));
            return Err(());
        };
        if !self.parsed.contains_key(name) {
            let parsed = match parser::parse(&m.cond.text) {
                Ok(e) => Some(e),
                Err(e) => {
                    self.err(&m.cond, e.span, format!("macro '{name}': {}", e.msg));
                    None
                }
            };
            self.parsed.insert(name.to_string(), parsed);
        }
        let Some(Some(ast)) = self.parsed.get(name).cloned() else {
            self.macro_cache.insert(name.to_string(), None);
            return Err(());
        };
        self.macro_stack.push(name.to_string());
        let mut uses = Uses::default();
        let res = self.expr(&ast, &m.cond, &mut uses);
        self.macro_stack.pop();
        if self.over_budget {
            // Too large for this rule's budget, which says nothing about the macro alone:
            // not cached, so another rule compiles it again (each within its own budget).
            return Err(());
        }
        // A cycle error belongs to the outermost macro of the cycle; do not cache inner results.
        let slot = self.memo_slots;
        self.memo_slots += 1;
        let entry = res
            .ok()
            .map(|n| (Node::Memo(slot, Box::new(n)), uses.unavailable));
        if let Some((n, _)) = &entry {
            self.macro_sizes.insert(name.to_string(), n.size());
        }
        self.macro_cache.insert(name.to_string(), entry.clone());
        entry.ok_or(())
    }

    fn resolve(&mut self, f: &FieldExpr, src: &SourceText) -> R<Resolved> {
        match fields::resolve(&f.name) {
            Ok((r, renamed)) => {
                if let Some(rn) = renamed {
                    self.warn_once(
                        format!("renamed:{}", rn.name),
                        src,
                        f.span,
                        format!("{} (field '{}')", rn.why, rn.name),
                    );
                }
                Ok(r)
            }
            Err(e) => {
                self.err(src, f.span, e.msg);
                Err(())
            }
        }
    }
}

fn closest_name<'a>(name: &str, cands: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    cands
        .map(|c| (crate::yaml::levenshtein(name, c), c.as_str()))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}
