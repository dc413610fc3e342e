//! Positions of key paths in a YAML text. serde_yaml's values carry no spans, so the text is
//! scanned: block mappings and sequences by indentation, flow mappings on their line. A path
//! that cannot be followed to its end resolves to its deepest part that can.

use super::diag::Pos;

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A node's place: its first character (byte column) and the line its extent ends before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    line: usize,
    col: usize,
    end: usize,
}

/// Where one step of a path led: the key (or sequence dash) and the value.
#[derive(Debug, Clone, Copy)]
struct Step {
    key: (usize, usize),
    value: Option<Node>,
}

/// The lines of one YAML text, to locate key paths in.
pub struct Locator<'a> {
    text: &'a str,
    lines: Vec<&'a str>,
    /// Lines of the top-level block sequence's items (`-` in column 0).
    item_starts: Vec<usize>,
}

/// Indentation of a line with content; `None` for blank and comment-only lines.
fn indent(line: &str) -> Option<usize> {
    let t = line.trim_start_matches(' ');
    (!t.is_empty() && !t.starts_with('#') && !t.trim().is_empty()).then(|| line.len() - t.len())
}

fn is_dash(s: &str) -> bool {
    s == "-" || s.starts_with("- ") || s.starts_with("-\t")
}

/// `rest` starts with key `key` (optionally quoted) followed by `:`; the bytes up to after it.
fn key_len(rest: &str, key: &str) -> Option<usize> {
    let (q, body) = match rest.as_bytes().first() {
        Some(b'"') => (Some('"'), &rest[1..]),
        Some(b'\'') => (Some('\''), &rest[1..]),
        _ => (None, rest),
    };
    let mut after = body.strip_prefix(key)?;
    if let Some(q) = q {
        after = after.strip_prefix(q)?;
    }
    let colon = after.trim_start_matches([' ', '\t']);
    let tail = colon.strip_prefix(':')?;
    if !(tail.is_empty() || tail.starts_with([' ', '\t']) || q.is_some()) {
        return None;
    }
    Some(rest.len() - tail.len())
}

/// Byte offsets of the direct children of the flow collection whose `{` or `[` is at byte
/// `open` of `line` (on that line only).
fn flow_children(line: &str, open: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut expect = false;
    for (i, ch) in line.char_indices().skip_while(|(i, _)| *i < open) {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            continue;
        }
        if expect && depth == 1 && !matches!(ch, ' ' | '\t' | ',' | '}' | ']') {
            out.push(i);
            expect = false;
        }
        match ch {
            '{' | '[' => {
                depth += 1;
                if depth == 1 {
                    expect = true;
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect = true,
            '"' | '\'' => quote = Some(ch),
            _ => {}
        }
    }
    out
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let item_starts = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| is_dash(l))
            .map(|(i, _)| i)
            .collect();
        Locator {
            text,
            lines,
            item_starts,
        }
    }

    /// The top-level items' line ranges (0-based, end exclusive), if the document is a block
    /// sequence of `count` items written with `-` in column 0.
    pub fn item_range(&self, item: usize, count: usize) -> Option<(usize, usize)> {
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

    /// The text of top-level item `item` of `count` (see [`Locator::item_range`]), with the
    /// 1-based line it starts on.
    pub fn item_text(&self, item: usize, count: usize) -> Option<(u32, &'a str)> {
        let (start, end) = self.item_range(item, count)?;
        // Each line is a slice of `text`: its address gives its offset.
        let offset = |i: usize| {
            self.lines.get(i).map_or(self.text.len(), |l| {
                l.as_ptr() as usize - self.text.as_ptr() as usize
            })
        };
        let text = self.text.get(offset(start)..offset(end))?;
        Some((start as u32 + 1, text))
    }

    /// Number of top-level block sequence items.
    pub fn item_count(&self) -> usize {
        self.item_starts.len()
    }

    fn pos(&self, (line, col): (usize, usize)) -> Pos {
        let chars = self
            .lines
            .get(line)
            .and_then(|l| l.get(..col))
            .map_or(col, |s| s.chars().count());
        Pos {
            line: line as u32 + 1,
            col: chars as u32 + 1,
        }
    }

    fn root(&self) -> Option<Node> {
        let line = self
            .lines
            .iter()
            .position(|l| indent(l).is_some() && !l.starts_with("---") && !l.starts_with('%'))?;
        Some(Node {
            line,
            col: indent(self.lines[line])?,
            end: self.lines.len(),
        })
    }

    /// The text of a node from its first character to the end of that line.
    fn head(&self, n: Node) -> &'a str {
        self.lines
            .get(n.line)
            .and_then(|l| l.get(n.col..))
            .unwrap_or("")
    }

    /// The first line after `line` (and before `end`) whose indentation is at most `col`
    /// (at `col`, only if it does not continue a sequence there when `seq_ok`).
    fn extent(&self, line: usize, col: usize, end: usize, seq_ok: bool) -> usize {
        (line + 1..end)
            .find(|&i| match indent(self.lines[i]) {
                Some(ind) if ind < col => true,
                Some(ind) if ind == col => !(seq_ok && is_dash(&self.lines[i][ind..])),
                _ => false,
            })
            .unwrap_or(end)
    }

    /// The value node that follows a key or dash ending at (`line`, byte `after`), within
    /// the lines before `end`; `col` is the column of the key or dash.
    fn value_after(&self, line: usize, after: usize, col: usize, end: usize) -> Option<Node> {
        let l = self.lines[line];
        let rest = l.get(after..).unwrap_or("");
        let t = rest.trim_start_matches([' ', '\t']);
        if !t.is_empty() && !t.starts_with('#') {
            return Some(Node {
                line,
                col: l.len() - t.len(),
                end,
            });
        }
        let next = (line + 1..end).find(|&i| indent(self.lines[i]).is_some())?;
        let ind = indent(self.lines[next])?;
        (ind > col || (ind == col && is_dash(&self.lines[next][ind..]))).then_some(Node {
            line: next,
            col: ind,
            end,
        })
    }

    fn step(&self, n: Node, seg: Seg<'_>) -> Option<Step> {
        let head = self.head(n);
        match seg {
            Seg::Key(k) if head.starts_with('{') => {
                let l = self.lines[n.line];
                flow_children(l, n.col).into_iter().find_map(|at| {
                    let len = key_len(&l[at..], k)?;
                    Some(Step {
                        key: (n.line, at),
                        value: self.value_after(n.line, at + len, at, n.line + 1),
                    })
                })
            }
            Seg::Index(want) if head.starts_with('[') => {
                let at = *flow_children(self.lines[n.line], n.col).get(want)?;
                let node = Node {
                    line: n.line,
                    col: at,
                    end: n.line + 1,
                };
                Some(Step {
                    key: (n.line, at),
                    value: Some(node),
                })
            }
            Seg::Key(k) => {
                if is_dash(head) || head.starts_with('[') {
                    return None;
                }
                // The mapping ends at a line indented less; its keys are at its column.
                let map_end = (n.line + 1..n.end)
                    .find(|&i| indent(self.lines[i]).is_some_and(|ind| ind < n.col))
                    .unwrap_or(n.end);
                for i in n.line..map_end {
                    if i > n.line && indent(self.lines[i]) != Some(n.col) {
                        continue;
                    }
                    let Some(len) = self.lines[i].get(n.col..).and_then(|r| key_len(r, k)) else {
                        continue;
                    };
                    let end = self.extent(i, n.col, map_end, true);
                    return Some(Step {
                        key: (i, n.col),
                        value: self.value_after(i, n.col + len, n.col, end),
                    });
                }
                None
            }
            Seg::Index(want) => {
                if !is_dash(head) {
                    return None;
                }
                let mut seen = 0;
                for i in n.line..n.end {
                    let Some(ind) = indent(self.lines[i]) else {
                        continue;
                    };
                    if ind < n.col
                        || (i > n.line && ind == n.col && !is_dash(&self.lines[i][ind..]))
                    {
                        break;
                    }
                    if ind != n.col || !is_dash(&self.lines[i][ind..]) {
                        continue;
                    }
                    if seen == want {
                        let end = self.extent(i, n.col, n.end, false);
                        return Some(Step {
                            key: (i, n.col),
                            value: self.value_after(i, n.col + 1, n.col, end),
                        });
                    }
                    seen += 1;
                }
                None
            }
        }
    }

    /// Follows `path` from the root; the steps that could be followed.
    fn walk(&self, path: &[Seg<'_>]) -> Vec<Step> {
        let mut out = Vec::new();
        let Some(mut node) = self.root() else {
            return out;
        };
        let mut path = path;
        // The top-level items are known: no scan for each lookup (loaders ask for every item).
        if let (Some(Seg::Index(i)), 0) = (path.first(), node.col)
            && is_dash(self.head(node))
        {
            let Some(&line) = self.item_starts.get(*i) else {
                return out;
            };
            let end = self
                .item_starts
                .get(i + 1)
                .copied()
                .unwrap_or(self.lines.len());
            let step = Step {
                key: (line, 0),
                value: self.value_after(line, 1, 0, end),
            };
            out.push(step);
            match step.value {
                Some(v) => node = v,
                None => return out,
            }
            path = &path[1..];
        }
        for seg in path {
            let Some(step) = self.step(node, *seg) else {
                break;
            };
            out.push(step);
            match step.value {
                Some(v) => node = v,
                None => break,
            }
        }
        out
    }

    /// Position of the last key of `path` (an index: its item's dash), if the whole path
    /// was found.
    pub fn key(&self, path: &[Seg<'_>]) -> Option<Pos> {
        let steps = self.walk(path);
        (steps.len() == path.len())
            .then(|| steps.last().map(|s| self.pos(s.key)))
            .flatten()
    }

    /// Position of the value at `path`, if the whole path was found.
    pub fn value(&self, path: &[Seg<'_>]) -> Option<Pos> {
        let steps = self.walk(path);
        if steps.len() != path.len() {
            return None;
        }
        let v = steps.last()?.value?;
        Some(self.pos((v.line, v.col)))
    }

    /// The key of `path`, or of its deepest part that was found (1:1 if none).
    pub fn nearest_key(&self, path: &[Seg<'_>]) -> Pos {
        self.walk(path)
            .last()
            .map_or(Pos::START, |s| self.pos(s.key))
    }

    /// The value of `path` if found, else the key of its deepest part that was.
    pub fn nearest_value(&self, path: &[Seg<'_>]) -> Pos {
        let steps = self.walk(path);
        match steps.last() {
            Some(Step { value: Some(v), .. }) if steps.len() == path.len() => {
                self.pos((v.line, v.col))
            }
            Some(s) => self.pos(s.key),
            None => Pos::START,
        }
    }

    /// Positions of the non-whitespace characters of the scalar at `path` (after an opening
    /// quote; a block scalar's lines below its `|` or `>`), to map parsed text back to the
    /// source. Empty if the path is not found.
    pub fn value_chars(&self, path: &[Seg<'_>]) -> Vec<Pos> {
        let mut out = Vec::new();
        let steps = self.walk(path);
        let (Some(last), true) = (steps.last(), steps.len() == path.len()) else {
            return out;
        };
        let (line_i, key_col) = last.key;
        let end = last.value.map_or(line_i + 1, |v| v.end).max(self.extent(
            line_i,
            key_col,
            self.lines.len(),
            true,
        ));
        let Some(line) = self.lines.get(line_i) else {
            return out;
        };
        // Text after `key:` on the key's own line.
        let chars: Vec<char> = line.chars().collect();
        let mut c = line[..key_col].chars().count();
        while c < chars.len() && chars[c] != ':' {
            c += 1;
        }
        c += 1;
        let rest: String = chars
            .get(c..)
            .map(|s| s.iter().collect())
            .unwrap_or_default();
        let trimmed = rest.trim_start();
        if !(trimmed.starts_with('>') || trimmed.starts_with('|')) {
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
            let Some(l) = self.lines.get(i) else {
                break;
            };
            let lead = l.len() - l.trim_start().len();
            if !l.trim().is_empty() && lead <= key_col {
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

#[cfg(test)]
mod tests {
    use super::{Seg::*, *};

    const DOC: &str = "\
# comment
- policy: web
  workload: {image: 'nginx:*', name: web}
  enforce:
    exec:
      deny: [/bin/sh]
      bogus: 1
    open:

      deny_read:
        - /etc/shadow
        - \"/etc/gshadow\"
- rule: r
  condition: >
    a and
      b
  \"output\": x
";

    fn p(line: u32, col: u32) -> Option<Pos> {
        Some(Pos { line, col })
    }

    #[test]
    fn nested_keys_and_values() {
        let l = Locator::new(DOC);
        assert_eq!(l.key(&[Index(0)]), p(2, 1));
        assert_eq!(l.key(&[Index(0), Key("policy")]), p(2, 3));
        assert_eq!(l.value(&[Index(0), Key("policy")]), p(2, 11));
        assert_eq!(
            l.key(&[Index(0), Key("enforce"), Key("exec"), Key("bogus")]),
            p(7, 7)
        );
        assert_eq!(
            l.value(&[Index(0), Key("enforce"), Key("exec"), Key("deny")]),
            p(6, 13)
        );
        let first = [Index(0), Key("enforce"), Key("exec"), Key("deny"), Index(0)];
        assert_eq!(l.value(&first), p(6, 14));
        let deny_read = [Index(0), Key("enforce"), Key("open"), Key("deny_read")];
        assert_eq!(l.key(&deny_read), p(10, 7));
        assert_eq!(l.value(&[&deny_read[..], &[Index(1)]].concat()), p(12, 11));
        assert_eq!(l.key(&[Index(1), Key("output")]), p(17, 3));
        // Flow mappings: keys on their line.
        assert_eq!(l.key(&[Index(0), Key("workload"), Key("name")]), p(3, 32));
        assert_eq!(
            l.value(&[Index(0), Key("workload"), Key("image")]),
            p(3, 21)
        );
    }

    #[test]
    fn missing_parts_resolve_to_the_deepest_found() {
        let l = Locator::new(DOC);
        let path = [Index(0), Key("enforce"), Key("connect"), Key("deny")];
        assert_eq!(l.key(&path), None);
        assert_eq!(l.nearest_key(&path), Pos { line: 4, col: 3 });
        // `bogus` of the second item is not the first item's.
        assert_eq!(l.key(&[Index(1), Key("bogus")]), None);
        assert_eq!(l.key(&[Index(2)]), None);
    }

    #[test]
    fn block_scalar_chars() {
        let l = Locator::new(DOC);
        let c = l.value_chars(&[Index(1), Key("condition")]);
        assert_eq!(c.first(), p(15, 5).as_ref());
        assert_eq!(c.last(), p(16, 7).as_ref());
        assert_eq!(c.len(), "aandb".len());
    }

    #[test]
    fn top_level_mapping() {
        let l = Locator::new("---\nring_bytes: 4096\nrules:\n- /a\n- /b\n");
        assert_eq!(l.value(&[Key("ring_bytes")]), p(2, 13));
        assert_eq!(l.value(&[Key("rules"), Index(1)]), p(5, 3));
    }
}
