//! The one diagnostic type of every YAML input (rules, policies, responses, `guard.yaml`),
//! printed as `file:line:col: error: message`.

use std::{fmt, sync::Arc};

/// 1-based line and column (columns count characters). Line 0: no position (an unreadable
/// file, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Arc<str>,
    pub pos: Pos,
    pub msg: String,
    /// The closest valid name (the message offers it as "did you mean"), for tools.
    pub hint: Option<String>,
    /// The offending text, when there is one.
    pub text: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &Arc<str>, pos: Pos, msg: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.clone(),
            pos,
            msg: msg.into(),
            hint: None,
            text: None,
        }
    }

    pub fn warning(file: &Arc<str>, pos: Pos, msg: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, pos, msg)
        }
    }

    /// A serde_yaml error at the position it carries (none: no position), without the
    /// " at line L column C" serde_yaml appends (the prefix says it already).
    pub fn from_yaml(file: &Arc<str>, e: &serde_yaml::Error) -> Self {
        let pos = e.location().map_or(Pos::default(), |l| Pos {
            line: l.line() as u32,
            col: l.column() as u32,
        });
        let mut msg = e.to_string();
        if let Some(i) = msg.rfind(" at line ") {
            msg.truncate(i);
        }
        Diagnostic::error(file, pos, msg)
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn with_hint(mut self, hint: Option<&str>) -> Self {
        self.hint = hint.map(str::to_owned);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        if self.pos.line == 0 {
            write!(f, "{}: {sev}: {}", self.file, self.msg)?;
        } else {
            let Pos { line, col } = self.pos;
            write!(f, "{}:{line}:{col}: {sev}: {}", self.file, self.msg)?;
        }
        if let Some(t) = &self.text {
            write!(f, "\n    {t}")?;
        }
        Ok(())
    }
}

/// Levenshtein distance, for "did you mean".
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word` (the first of equals), if within `bound(candidate)` edits.
pub fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    bound: impl Fn(&str) -> usize,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= bound(c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_position_hint_and_text() {
        let f: Arc<str> = Arc::from("x.yaml");
        let d = Diagnostic::error(&f, Pos { line: 2, col: 3 }, "bad").with_text("zz");
        assert_eq!(d.to_string(), "x.yaml:2:3: error: bad\n    zz");
        let d = Diagnostic::error(&f, Pos::default(), "unreadable");
        assert_eq!(d.to_string(), "x.yaml: error: unreadable");
        let d = Diagnostic::warning(&f, Pos::START, "unknown key 'mod'").with_hint(Some("mode"));
        assert_eq!(d.to_string(), "x.yaml:1:1: warning: unknown key 'mod'");
        assert_eq!(d.hint.as_deref(), Some("mode"));
    }

    #[test]
    fn closest_within_bound() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(closest("mod", ["mode", "rules"], |_| 2), Some("mode"));
        assert_eq!(closest("zzzzzz", ["mode", "rules"], |_| 2), None);
    }
}
