//! The map from condition text back to the YAML source it was read from. Diagnostics are
//! [`crate::yaml`]'s.

use std::sync::Arc;

pub use crate::yaml::{Diagnostic, Pos, Severity};

/// Where each non-whitespace character of one piece of condition text sits in its file.
/// YAML folding only changes whitespace, so counting non-whitespace characters maps a byte
/// offset in the parsed string back to the source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    start: usize,
    file: Arc<str>,
    chars: Arc<[Pos]>,
    fallback: Pos,
}

/// Condition text (possibly concatenated by `append`) with its source map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceText {
    pub text: String,
    segs: Vec<Segment>,
}

impl SourceText {
    pub fn new(text: String, file: Arc<str>, chars: Vec<Pos>, fallback: Pos) -> Self {
        SourceText {
            text,
            segs: vec![Segment {
                start: 0,
                file,
                chars: chars.into(),
                fallback,
            }],
        }
    }

    /// Falco's `append`: the new text follows after a space.
    pub fn append(&mut self, other: SourceText) {
        self.text.push(' ');
        let base = self.text.len();
        self.text.push_str(&other.text);
        for mut s in other.segs {
            s.start += base;
            self.segs.push(s);
        }
    }

    /// File and position of byte `offset` of `text`.
    pub fn locate(&self, offset: usize) -> (Arc<str>, Pos) {
        let Some(seg) = self.segs.iter().rev().find(|s| s.start <= offset) else {
            return (Arc::from("<unknown>"), Pos::default());
        };
        let end = offset.min(self.text.len());
        let before = self
            .text
            .get(seg.start..end)
            .map_or(0, |t| t.chars().filter(|c| !c.is_whitespace()).count());
        let pos = seg.chars.get(before).copied().unwrap_or(seg.fallback);
        (seg.file.clone(), pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_through_folding_and_append() {
        let file: Arc<str> = Arc::from("f.yaml");
        // "a = b" written as "a =\n  b" in the file.
        let chars = vec![
            Pos { line: 3, col: 5 },
            Pos { line: 3, col: 7 },
            Pos { line: 4, col: 5 },
        ];
        let mut t = SourceText::new(
            "a = b\n".into(),
            file.clone(),
            chars,
            Pos { line: 3, col: 1 },
        );
        assert_eq!(t.locate(4).1, Pos { line: 4, col: 5 });
        t.append(SourceText::new(
            "and c".into(),
            Arc::from("g.yaml"),
            vec![Pos { line: 9, col: 1 }; 4],
            Pos { line: 9, col: 1 },
        ));
        let (f, p) = t.locate(t.text.len() - 1);
        assert_eq!((&*f, p.line), ("g.yaml", 9));
    }
}
