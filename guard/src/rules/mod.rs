//! Falco's rule language: load YAML rules files ([`loader`]), parse conditions ([`lexer`],
//! [`parser`]), compile them against guard's field catalog ([`fields`], [`compile`]), evaluate
//! them on enriched events ([`eval`]) and render alerts ([`output`]).
//!
//! ```text
//! files --Loader--> Definitions --compile::build--> RuleSet --Engine::matches--> rule ids --> Alert
//! ```

pub mod ast;
pub mod compile;
pub mod diag;
pub mod eval;
pub mod fields;
pub mod lexer;
pub mod loader;
pub mod output;
pub mod parser;
mod plan;

use std::path::{Path, PathBuf};

pub use compile::{CompiledRule, RuleSet, RuleStatus};
pub use diag::{Diagnostic, Pos, Severity};
pub use fields::Ctx;
pub use loader::{Definitions, ItemCtx, ItemHandler};

use crate::{alert::Alert, model::Event};

/// Collects rules files in order; later files override earlier ones, as in Falco.
#[derive(Default)]
pub struct Loader {
    defs: Definitions,
}

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts an extra item kind (`policy`, `response`) with its own validation.
    pub fn register_kind(&mut self, kind: &str, handler: ItemHandler) {
        self.defs.register_kind(kind, handler);
    }

    pub fn add_str(&mut self, name: &str, text: &str) {
        self.defs.load_str(name, text);
    }

    /// Adds a file, or every `*.yaml`/`*.yml` file of a directory in name order.
    pub fn add_path(&mut self, path: &Path) {
        for file in rules_files(path) {
            match file {
                Ok(f) => match std::fs::read_to_string(&f) {
                    Ok(text) => self.add_str(&f.display().to_string(), &text),
                    Err(e) => self.io_error(&f, &e),
                },
                Err((f, e)) => self.io_error(&f, &e),
            }
        }
    }

    fn io_error(&mut self, f: &Path, e: &std::io::Error) {
        let file = f.display().to_string().into();
        self.defs.diagnostics.push(Diagnostic::error(
            &file,
            Pos { line: 1, col: 1 },
            format!("cannot read: {e}"),
        ));
    }

    pub fn definitions(&self) -> &Definitions {
        &self.defs
    }

    /// Compiles everything loaded. Diagnostics come in file order: loading first, then compiling.
    pub fn finish(self) -> (RuleSet, Vec<Diagnostic>) {
        let (set, compile_diags) = compile::build(&self.defs);
        let mut diags = self.defs.diagnostics;
        diags.extend(compile_diags);
        (set, diags)
    }
}

type FileResult = Result<PathBuf, (PathBuf, std::io::Error)>;

fn rules_files(path: &Path) -> Vec<FileResult> {
    if !path.is_dir() {
        return vec![Ok(path.to_path_buf())];
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => return vec![Err((path.to_path_buf(), e))],
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files.into_iter().map(Ok).collect()
}

/// Reusable per-thread evaluation state: scratch buffers and the match list.
#[derive(Debug, Default)]
pub struct Matcher {
    scratch: eval::Scratch,
    matched: Vec<u32>,
}

/// A compiled rule set plus what evaluation needs besides the event.
#[derive(Debug, Clone)]
pub struct Engine {
    pub rules: RuleSet,
    pub ctx: Ctx,
}

impl Engine {
    pub fn new(rules: RuleSet, hostname: impl Into<String>) -> Self {
        Engine {
            rules,
            ctx: Ctx {
                hostname: hostname.into(),
                no_container_fields: false,
                dns: Default::default(),
            },
        }
    }

    /// Indices (into `rules.rules`) of every rule that matches, in rule order. Does not
    /// allocate once `m` has grown to the largest match count. `ev` must have been through
    /// [`Event::prepare`] (the readers do it); an unprepared event matches nothing.
    pub fn matches<'m>(&self, ev: &Event, m: &'m mut Matcher) -> &'m [u32] {
        m.matched.clear();
        debug_assert!(
            ev.derived.prepared,
            "Engine::matches needs Event::prepare first"
        );
        if !ev.derived.prepared {
            return &m.matched;
        }
        m.scratch.reset(self.rules.memo_slots);
        let Some(plan) = self.rules.plans.get(ev.derived.type_id as usize) else {
            return &m.matched;
        };
        for (i, node) in plan.iter() {
            if node.eval(ev, &self.ctx, &mut m.scratch) {
                m.matched.push(*i);
            }
        }
        &m.matched
    }

    /// What [`Engine::matches`] returns, computed the slow way: every active rule's condition
    /// as compiled, without the type index or the per-type programs. The reference the fast
    /// path is tested against.
    pub fn matches_unindexed<'m>(&self, ev: &Event, m: &'m mut Matcher) -> &'m [u32] {
        m.matched.clear();
        if !ev.derived.prepared {
            return &m.matched;
        }
        m.scratch.reset(self.rules.memo_slots);
        for (i, r) in self.rules.rules.iter().enumerate() {
            if r.status == RuleStatus::Active && r.node.eval(ev, &self.ctx, &mut m.scratch) {
                m.matched.push(i as u32);
            }
        }
        &m.matched
    }

    /// Alerts for every matching rule (Falco's `rule_matching: all`).
    pub fn alerts(&self, ev: &Event, m: &mut Matcher) -> Vec<Alert> {
        let ids: Vec<u32> = self.matches(ev, m).to_vec();
        ids.iter()
            .filter_map(|&i| self.rules.rules.get(i as usize))
            .map(|r| {
                output::alert(
                    &r.name,
                    r.priority,
                    &r.tags,
                    &r.output,
                    ev,
                    &self.ctx,
                    &mut m.scratch,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod dns_tests;
#[cfg(test)]
mod tests;
