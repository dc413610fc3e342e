//! Modules import downward only: no circle between the top-level modules of `guard/src`, nor
//! between sibling submodules of one module.
//!
//! Every `crate::…`, `super::…` and `self::…` path of every `guard/src/**/*.rs` file (in `use`
//! trees, groups included, and in code) is resolved against the file's module to an edge
//! "module A uses module B"; test modules count too. A circle is a strongly connected
//! component of that graph; each is listed with one source line per edge.
//! `GUARD_SRC=/other/guard/src` checks another tree.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

/// Tokens with their line numbers; comments, strings and char literals are dropped.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let bump = |i: &mut usize, line: &mut usize| {
        if b[*i] == b'\n' {
            *line += 1;
        }
        *i += 1;
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    bump(&mut i, &mut line);
                }
            }
        } else if (c == b'r' || c == b'b') && raw_string_start(&b[i..]).is_some() {
            let (skip, hashes) = raw_string_start(&b[i..]).unwrap_or((0, 0));
            i += skip;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while i < b.len() && !b[i..].starts_with(&close) {
                bump(&mut i, &mut line);
            }
            i += close.len();
        } else if c == b'"' || (c == b'b' && next == Some(b'"')) {
            i += if c == b'b' { 2 } else { 1 };
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                bump(&mut i, &mut line);
            }
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some(b'\\') {
                i += 3;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            let word = &src[start..i];
            // `r#ident`
            let word = word.strip_prefix("r#").unwrap_or(word);
            out.push((Tok::Ident(word.to_owned()), line));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Other, line));
        } else {
            let t = match c {
                b':' if next == Some(b':') => {
                    i += 1;
                    Tok::Sep
                }
                b'{' => Tok::Open,
                b'}' => Tok::Close,
                b',' => Tok::Comma,
                b';' => Tok::Semi,
                _ => Tok::Other,
            };
            if c == b'\n' {
                line += 1;
            }
            i += 1;
            if t != Tok::Other || !c.is_ascii_whitespace() {
                out.push((t, line));
            }
        }
    }
    out
}

/// `r"`, `r#"`, `br"`, `br##"`…: (bytes before the string's content, number of `#`).
fn raw_string_start(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    if b.first() == Some(&b'b') {
        i += 1;
    }
    if b.get(i) != Some(&b'r') {
        return None;
    }
    i += 1;
    let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
    i += hashes;
    (b.get(i) == Some(&b'"')).then_some((i + 1, hashes))
}

/// One resolved path: absolute module segments (as written; may end in an item name).
struct Use {
    from: Vec<String>,
    to: Vec<String>,
    line: usize,
}

/// Reads a path tree starting at `toks[i]` (after a leading `crate::`/`super::`/`self::`
/// chain was resolved into `base`); returns where it ended.
fn path_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    base: Vec<String>,
    emit: &mut dyn FnMut(Vec<String>, usize),
) -> usize {
    let mut path = base;
    loop {
        match toks.get(i) {
            Some((Tok::Ident(w), _)) if w == "super" && path.is_empty() => return i,
            Some((Tok::Ident(w), l)) if w == "self" => {
                // `{self, …}` in a group: the group's own path.
                emit(path.clone(), *l);
                return i + 1;
            }
            Some((Tok::Ident(w), l)) => {
                path.push(w.clone());
                i += 1;
                if toks.get(i).map(|t| &t.0) == Some(&Tok::Sep) {
                    i += 1;
                    continue;
                }
                emit(path, *l);
                return i;
            }
            Some((Tok::Open, _)) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        Some(Tok::Close) => return i + 1,
                        Some(Tok::Comma) => i += 1,
                        None => return i,
                        _ => {
                            let j = path_tree(toks, i, path.clone(), emit);
                            // Anything the tree does not read (`*`, `as x`): skip it.
                            i = if j == i { i + 1 } else { j };
                        }
                    }
                }
            }
            Some((_, l)) => {
                // `*` or the end of the path.
                emit(path, *l);
                return i;
            }
            None => return i,
        }
    }
}

/// The uses of one file whose module path is `module`.
fn uses_of(src: &str, module: &[String]) -> Vec<Use> {
    let toks = tokens(src);
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`): (name, brace depth at which it closes).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let cur: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        match &toks[i].0 {
            Tok::Open => {
                depth += 1;
                i += 1;
            }
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Open, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(w) if w == "crate" || w == "super" || w == "self" => {
                // Only the start of a path (not `pub(crate)` or `a::self`).
                let prev_sep = i > 0 && toks[i - 1].0 == Tok::Sep;
                if prev_sep || toks.get(i + 1).map(|t| &t.0) != Some(&Tok::Sep) {
                    i += 1;
                    continue;
                }
                let mut base: Vec<String> = if w == "crate" {
                    Vec::new()
                } else {
                    cur.clone()
                };
                let mut j = i;
                if w != "crate" {
                    // A run of `super::` / `self::`.
                    while let Some((Tok::Ident(s), _)) = toks.get(j) {
                        match s.as_str() {
                            "super" => {
                                base.pop();
                            }
                            "self" => {}
                            _ => break,
                        }
                        if toks.get(j + 1).map(|t| &t.0) != Some(&Tok::Sep) {
                            break;
                        }
                        j += 2;
                    }
                } else {
                    j += 2;
                }
                let from = cur.clone();
                let end = path_tree(&toks, j, base, &mut |to, line| {
                    out.push(Use {
                        from: from.clone(),
                        to,
                        line,
                    })
                });
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file: `a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs` and
/// `main.rs` the crate root.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(root)
        .expect("under root")
        .with_extension("");
    let mut segs: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(segs.last().map(String::as_str), Some("mod")) {
        segs.pop();
    }
    if segs.len() == 1 && (segs[0] == "lib" || segs[0] == "main") {
        segs.clear();
    }
    segs
}

/// Edges between nodes with one example (file:line) each.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// Strongly connected components with more than one node (Tarjan).
fn circles(g: &Graph) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut St<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = St {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// The graphs of a source tree: top-level modules, and per module its sibling submodules
/// (`policy::kernel` → `policy::probes`); children using their parent's items and the parent
/// declaring its children are the normal shape of a module, not edges.
fn graphs(root: &Path) -> BTreeMap<String, Graph> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    let is_module = |p: &[String]| modules.contains(p);
    let mut out: BTreeMap<String, Graph> = BTreeMap::new();
    for f in &files {
        let module = module_of(root, f);
        let src = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f.strip_prefix(root).unwrap_or(f).display().to_string();
        for u in uses_of(&src, &module) {
            let (Some(a), Some(b)) = (u.from.first(), u.to.first()) else {
                continue;
            };
            let at = format!("{name}:{}", u.line);
            if a != b {
                if is_module(&u.to[..1]) {
                    out.entry(String::new())
                        .or_default()
                        .entry(a.clone())
                        .or_default()
                        .entry(b.clone())
                        .or_insert(at);
                }
                continue;
            }
            // Siblings under the same parent, at each level below the top.
            let common = u.from.iter().zip(&u.to).take_while(|(x, y)| x == y).count();
            if common == 0 || common >= u.from.len() || common >= u.to.len() {
                continue;
            }
            let (x, y) = (&u.from[..=common], &u.to[..=common]);
            if is_module(x) && is_module(y) {
                out.entry(u.from[..common].join("::"))
                    .or_default()
                    .entry(x.join("::"))
                    .or_default()
                    .entry(y.join("::"))
                    .or_insert(at);
            }
        }
    }
    out
}

/// Every circle, each with the edges that close it, as text.
fn describe_circles(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (scope, g) in graphs(root) {
        for comp in circles(&g) {
            let mut text = if scope.is_empty() {
                format!("circle between top-level modules {{{}}}:", comp.join(", "))
            } else {
                format!("circle in {scope}: {{{}}}:", comp.join(", "))
            };
            for a in &comp {
                for (b, at) in g.get(a).into_iter().flatten() {
                    if comp.contains(b) {
                        text.push_str(&format!("\n    {a} -> {b}  ({at})"));
                    }
                }
            }
            out.push(text);
        }
    }
    out
}

fn src_root() -> PathBuf {
    std::env::var_os("GUARD_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn modules_import_downward_only() {
    let root = src_root();
    let found = describe_circles(&root);
    assert!(
        found.is_empty(),
        "import circles in {}:\n{}",
        root.display(),
        found.join("\n")
    );
}

/// The parser itself: groups, `self`, `super` climbing to the root, inline modules, and
/// paths inside strings and comments ignored.
#[test]
fn the_parser_resolves_every_form_of_path() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let src = r##"
        use crate::{a::{self, B}, b::c::D, e};
        use super::f::G; // crate::zz in a comment
        /* crate::yy */ fn x() { let s = "crate::xx"; let r = r#"crate::ww"#; crate::h::i(); }
        pub(crate) fn y<'a>(c: char) { let _ = 'a'; super::super::j::k(); }
        mod tests { use super::*; use super::super::l::M; }
    "##;
    let got: BTreeSet<(Vec<String>, Vec<String>)> = uses_of(src, &m("top::sub"))
        .into_iter()
        .map(|u| (u.from, u.to))
        .collect();
    let want: BTreeSet<(Vec<String>, Vec<String>)> = [
        ("top::sub", "a"),
        ("top::sub", "a::B"),
        ("top::sub", "b::c::D"),
        ("top::sub", "e"),
        ("top::sub", "top::f::G"),
        ("top::sub", "h::i"),
        ("top::sub", "j::k"),
        ("top::sub::tests", "top::sub"),
        ("top::sub::tests", "top::l::M"),
    ]
    .into_iter()
    .map(|(a, b)| (m(a), m(b)))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn a_circle_is_found_with_its_edges() {
    let dir = std::env::temp_dir().join(format!("guard-module-graph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |p: &str, s: &str| {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, s).expect("write");
    };
    write("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d;");
    write("a.rs", "use crate::b::X;");
    write("b.rs", "fn f() { crate::c::y(); }");
    write("c.rs", "use crate::{d, a::Z};");
    write("d.rs", "pub mod p; pub mod q; pub mod r;");
    write("d/p.rs", "use super::q::Y;");
    write("d/q.rs", "use crate::d::p::X; use super::Root;");
    // Only downward: not a circle.
    write("d/r.rs", "use super::p::X;");
    let found = describe_circles(&dir);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("circle between top-level modules {a, b, c}"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("c -> a  (c.rs:1)"), "{}", found[0]);
    assert!(
        found[1].starts_with("circle in d: {d::p, d::q}"),
        "{}",
        found[1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
