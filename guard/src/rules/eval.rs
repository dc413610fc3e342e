//! Compiled conditions and their evaluation. Everything that can be decided at load time is:
//! literals are parsed, sets hashed, globs and regexes built. Evaluation borrows from the
//! event and reuses the caller's [`Scratch`] buffers, so the hot path does not allocate.

use std::net::IpAddr;

use base64::Engine as _;
use globset::GlobMatcher;
use ipnet::IpNet;
use regex::Regex;
use rustc_hash::FxHashSet;

use super::{
    ast::Transformer,
    fields::{Ctx, FieldRef, Val},
};
use crate::model::Event;

/// Event types as a bit set over [`super::fields::EVENT_TYPES`] ids.
pub type TypeSet = u128;
const _: () = assert!(super::fields::TYPE_COUNT <= 128);
pub const ALL_TYPES: TypeSet = if super::fields::TYPE_COUNT == 128 {
    u128::MAX
} else {
    (1u128 << super::fields::TYPE_COUNT) - 1
};

#[derive(Debug, Clone)]
pub enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// `evt.type = x` / `evt.type in (...)`.
    Types(TypeSet),
    /// A macro body; its result is computed once per event and shared by every rule using it.
    Memo(u32, Box<Node>),
    Check(Box<Check>),
}

#[derive(Debug, Clone)]
pub struct Check {
    pub field: FieldRef,
    pub multi: bool,
    pub transformers: Box<[Transformer]>,
    pub test: Test,
    /// `!=`: true when the value exists and the test fails (for multi-valued fields: when no
    /// value passes).
    pub negate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Test {
    Exists,
    /// The field is one guard cannot provide: never true.
    Unavailable,
    StrEq(Box<str>),
    StrIn(StrSet),
    Contains(Box<str>),
    /// Needle is stored lowercased (ASCII, as Falco does).
    IContains(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Glob(Box<GlobMatcher>),
    Regex(Box<Regex>),
    /// Path prefixes, stored without trailing slashes (`/` is stored as the empty string).
    Pmatch(Box<[Box<str>]>),
    BContains(Box<[u8]>),
    BStartsWith(Box<[u8]>),
    Num(Cmp, i64),
    NumIn(FxHashSet<i64>),
    Bool(bool),
    /// Any of these networks contains the address (a plain IP is a /32 or /128).
    Ip(Box<[IpNet]>),
    /// `fd.*ip.name = NAME` / `in (...)`, on the address field: one of the names resolves to
    /// the address (in the resolver's current snapshot, `Ctx::dns`).
    Resolves(Box<[Box<str>]>),
    /// `val(field)` on the right-hand side.
    Field(Box<FieldRef>, FieldOp),
    /// Any of these tests passes (same-field tests under `or`, merged by [`super::plan`]).
    Any(Box<[Test]>),
}

/// The strings of an `in` list: a hash set plus one bit per member length (bit 63 stands for
/// 63 bytes or more), so that most misses are decided without hashing the value.
#[derive(Debug, Clone, Default)]
pub struct StrSet {
    set: FxHashSet<Box<str>>,
    lens: u64,
}

impl StrSet {
    #[inline]
    fn len_bit(len: usize) -> u64 {
        1u64 << len.min(63)
    }

    pub fn insert(&mut self, s: Box<str>) {
        self.lens |= Self::len_bit(s.len());
        self.set.insert(s);
    }

    pub fn extend(&mut self, other: StrSet) {
        self.lens |= other.lens;
        self.set.extend(other.set);
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Box<str>> {
        self.set.iter()
    }

    #[inline]
    pub fn contains(&self, s: &str) -> bool {
        self.lens & Self::len_bit(s.len()) != 0 && self.set.contains(s)
    }
}

impl FromIterator<Box<str>> for StrSet {
    fn from_iter<I: IntoIterator<Item = Box<str>>>(iter: I) -> Self {
        let mut s = StrSet::default();
        for x in iter {
            s.insert(x);
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Cmp(Cmp),
    Contains,
    IContains,
    StartsWith,
    EndsWith,
}

/// Buffers reused across evaluations.
#[derive(Debug, Default)]
pub struct Scratch {
    a: String,
    b: String,
    c: String,
    d: String,
    /// Per-event macro results: 0 unknown, 1 false, 2 true.
    memo: Vec<u8>,
}

impl Scratch {
    /// Forgets macro results; call before evaluating a new event.
    pub fn reset(&mut self, memo_slots: usize) {
        self.memo.clear();
        self.memo.resize(memo_slots, 0);
    }
}

impl Node {
    pub fn eval(&self, ev: &Event, ctx: &Ctx, s: &mut Scratch) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::And(items) => items.iter().all(|n| n.eval(ev, ctx, s)),
            Node::Or(items) => items.iter().any(|n| n.eval(ev, ctx, s)),
            Node::Not(n) => !n.eval(ev, ctx, s),
            Node::Types(set) => set & (1u128 << ev.derived.type_id) != 0,
            Node::Check(c) => c.eval(ev, ctx, s),
            Node::Memo(i, n) => match s.memo.get(*i as usize).copied() {
                Some(1) => false,
                Some(2) => true,
                _ => {
                    let r = n.eval(ev, ctx, s);
                    if let Some(slot) = s.memo.get_mut(*i as usize) {
                        *slot = 1 + u8::from(r);
                    }
                    r
                }
            },
        }
    }

    /// Number of nodes (a macro body counts each time it is inlined).
    pub fn size(&self) -> usize {
        1 + match self {
            Node::Const(_) | Node::Types(_) | Node::Check(_) => 0,
            Node::And(items) | Node::Or(items) => items.iter().map(Node::size).sum(),
            Node::Not(n) | Node::Memo(_, n) => n.size(),
        }
    }

    /// Whether some check in this node (a macro body included) satisfies `f`.
    pub fn any_check(&self, f: &impl Fn(&Check) -> bool) -> bool {
        match self {
            Node::Const(_) | Node::Types(_) => false,
            Node::Check(c) => f(c),
            Node::And(items) | Node::Or(items) => items.iter().any(|n| n.any_check(f)),
            Node::Not(n) | Node::Memo(_, n) => n.any_check(f),
        }
    }

    /// Event types this node can match: an over-approximation used to index rules.
    pub fn types(&self) -> TypeSet {
        match self {
            Node::Const(false) => 0,
            Node::Types(t) => *t,
            Node::Not(inner) => match &**inner {
                Node::Types(t) => ALL_TYPES & !t,
                Node::Memo(_, m) if matches!(**m, Node::Types(_)) => Node::Not(m.clone()).types(),
                Node::Const(true) => 0,
                _ => ALL_TYPES,
            },
            Node::And(items) => items.iter().fold(ALL_TYPES, |acc, n| acc & n.types()),
            Node::Or(items) => items.iter().fold(0, |acc, n| acc | n.types()),
            Node::Memo(_, n) => n.types(),
            Node::Const(true) | Node::Check(_) => ALL_TYPES,
        }
    }
}

impl Check {
    #[inline]
    fn eval(&self, ev: &Event, ctx: &Ctx, s: &mut Scratch) -> bool {
        if matches!(self.test, Test::Unavailable) {
            return false;
        }
        let Scratch { a, b, c, d, .. } = s;
        if !self.multi {
            let v = self.field.extract(ev, 0, ctx, a);
            if matches!(v, Val::Na) {
                return false;
            }
            if matches!(self.test, Test::Exists) {
                return true;
            }
            // Two calls rather than one on `if ... { v } else { transform(..) }`: the copy of
            // `v` that the `if` made stalled on the just-written return value (store
            // forwarding), and this is the hottest path of evaluation.
            if self.transformers.is_empty() {
                return self.test.eval(v, ev, ctx, d) != self.negate;
            }
            return self
                .test
                .eval(transform(v, &self.transformers, b, c), ev, ctx, d)
                != self.negate;
        }
        let mut seen = false;
        for n in 0.. {
            let v = self.field.extract(ev, n, ctx, a);
            if matches!(v, Val::Na) {
                break;
            }
            if matches!(self.test, Test::Exists) {
                return true;
            }
            seen = true;
            let v = transform(v, &self.transformers, b, c);
            let r = self.test.eval(v, ev, ctx, d);
            if self.negate && r {
                return false;
            }
            if !self.negate && r {
                return true;
            }
        }
        self.negate && seen
    }
}

/// Applies transformers (stored outermost first) in place in `b`.
#[inline]
fn transform<'a>(v: Val<'a>, ts: &[Transformer], b: &'a mut String, c: &'a mut String) -> Val<'a> {
    if ts.is_empty() {
        return v;
    }
    let Val::Str(src) = v else { return Val::Na };
    b.clear();
    b.push_str(src);
    for t in ts.iter().rev() {
        match t {
            Transformer::ToLower => b.make_ascii_lowercase(),
            Transformer::ToUpper => b.make_ascii_uppercase(),
            Transformer::Basename => {
                let trimmed_len = b.trim_end_matches('/').len();
                let start = b[..trimmed_len].rfind('/').map_or(0, |i| i + 1);
                b.truncate(trimmed_len);
                b.drain(..start);
            }
            Transformer::B64 => {
                // Decode into `c`'s buffer, reused across events. Invalid base64 or a result
                // that is not UTF-8 has no string value.
                let mut bytes = std::mem::take(c).into_bytes();
                bytes.clear();
                if base64::engine::general_purpose::STANDARD
                    .decode_vec(b.as_bytes(), &mut bytes)
                    .is_err()
                {
                    bytes.clear();
                    *c = String::from_utf8(bytes).unwrap_or_default();
                    return Val::Na;
                }
                match String::from_utf8(bytes) {
                    Ok(decoded) => *c = decoded,
                    Err(e) => {
                        let mut bytes = e.into_bytes();
                        bytes.clear();
                        *c = String::from_utf8(bytes).unwrap_or_default();
                        return Val::Na;
                    }
                }
                std::mem::swap(b, c);
            }
            Transformer::Len => return Val::Num(b.len() as i64),
        }
    }
    Val::Str(b.as_str())
}

/// Equality without a `memcmp` call for the short strings most checks compare.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && (a.len() > 16 || a.iter().zip(b).all(|(x, y)| x == y))
        && (a.len() <= 16 || a == b)
}

/// `starts_with` without a `memcmp` call for short prefixes (`/etc/`, `/tmp/`, ...).
#[inline]
fn short_starts_with(hay: &[u8], prefix: &[u8]) -> bool {
    hay.get(..prefix.len()).is_some_and(|h| short_eq(h, prefix))
}

/// `ends_with` without a `memcmp` call for short suffixes.
#[inline]
fn short_ends_with(hay: &[u8], suffix: &[u8]) -> bool {
    hay.len() >= suffix.len() && short_eq(&hay[hay.len() - suffix.len()..], suffix)
}

/// ASCII case-insensitive substring search (either side may have any case).
fn icontains(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

fn pmatch(path: &str, prefixes: &[Box<str>]) -> bool {
    prefixes.iter().any(|p| {
        let p: &str = p;
        let (path, p) = (path.as_bytes(), p.as_bytes());
        p.is_empty() && path.first() == Some(&b'/')
            || short_eq(path, p)
            || (short_starts_with(path, p) && path.get(p.len()) == Some(&b'/'))
    })
}

impl Test {
    #[inline]
    fn eval(&self, v: Val<'_>, ev: &Event, ctx: &Ctx, buf: &mut String) -> bool {
        match (self, v) {
            (Test::Exists, _) => true,
            (Test::Unavailable, _) => false,
            (Test::StrEq(x), Val::Str(s)) => short_eq(s.as_bytes(), x.as_bytes()),
            (Test::StrIn(set), Val::Str(s)) => set.contains(s),
            (Test::Contains(x), Val::Str(s)) => s.contains(&**x),
            (Test::IContains(x), Val::Str(s)) => icontains(s, x),
            (Test::StartsWith(x), Val::Str(s)) => short_starts_with(s.as_bytes(), x.as_bytes()),
            (Test::EndsWith(x), Val::Str(s)) => short_ends_with(s.as_bytes(), x.as_bytes()),
            (Test::Glob(g), Val::Str(s)) => g.is_match(s),
            (Test::Regex(r), Val::Str(s)) => r.is_match(s),
            (Test::Pmatch(p), Val::Str(s)) => pmatch(s, p),
            (Test::BContains(x), Val::Str(s)) => {
                s.as_bytes().windows(x.len().max(1)).any(|w| w == &**x) || x.is_empty()
            }
            (Test::BStartsWith(x), Val::Str(s)) => s.as_bytes().starts_with(x),
            (Test::Num(cmp, x), Val::Num(n)) => cmp.holds(n, *x),
            (Test::NumIn(set), Val::Num(n)) => set.contains(&n),
            (Test::Bool(x), Val::Bool(b)) => b == *x,
            (Test::Ip(nets), Val::Ip(ip)) => ip_in(ip, nets),
            (Test::Resolves(names), Val::Ip(ip)) => ctx.dns.with(|d| d.matches(names, ip)),
            (Test::Any(tests), v) => tests.iter().any(|t| t.eval(v, ev, ctx, buf)),
            (Test::Field(rhs, op), lhs) => {
                let r = rhs.extract(ev, 0, ctx, buf);
                field_cmp(lhs, r, *op)
            }
            _ => false,
        }
    }
}

fn ip_in(ip: IpAddr, nets: &[IpNet]) -> bool {
    // IPv4-mapped IPv6 addresses compare as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

fn field_cmp(l: Val<'_>, r: Val<'_>, op: FieldOp) -> bool {
    match (l, r, op) {
        (Val::Str(a), Val::Str(b), FieldOp::Cmp(c)) => c.holds(a, b),
        (Val::Str(a), Val::Str(b), FieldOp::Contains) => a.contains(b),
        (Val::Str(a), Val::Str(b), FieldOp::IContains) => icontains(a, b),
        (Val::Str(a), Val::Str(b), FieldOp::StartsWith) => a.starts_with(b),
        (Val::Str(a), Val::Str(b), FieldOp::EndsWith) => a.ends_with(b),
        (Val::Num(a), Val::Num(b), FieldOp::Cmp(c)) => c.holds(a, b),
        (Val::Bool(a), Val::Bool(b), FieldOp::Cmp(Cmp::Eq)) => a == b,
        (Val::Ip(a), Val::Ip(b), FieldOp::Cmp(Cmp::Eq)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformers_in_place() {
        let (mut b, mut c) = (String::new(), String::new());
        let v = transform(
            Val::Str("/USR/Bin/"),
            &[Transformer::ToLower, Transformer::Basename],
            &mut b,
            &mut c,
        );
        assert_eq!(v, Val::Str("bin"));
        let v = transform(
            Val::Str("aGVsbG8="),
            &[Transformer::ToUpper, Transformer::B64],
            &mut b,
            &mut c,
        );
        assert_eq!(v, Val::Str("HELLO"));
        let v = transform(Val::Str("abc"), &[Transformer::Len], &mut b, &mut c);
        assert_eq!(v, Val::Num(3));
        let v = transform(Val::Str("!!"), &[Transformer::B64], &mut b, &mut c);
        assert_eq!(v, Val::Na);
    }

    #[test]
    fn short_strings_compare() {
        assert!(short_eq(b"abc", b"abc") && !short_eq(b"abc", b"abd") && !short_eq(b"ab", b"abc"));
        let long = [b'x'; 40];
        assert!(short_eq(&long, &long));
        assert!(
            short_starts_with(b"/etc/passwd", b"/etc/") && !short_starts_with(b"/et", b"/etc/")
        );
        assert!(short_ends_with(b"/usr/bin/java", b"java") && !short_ends_with(b"va", b"java"));
        assert!(short_ends_with(&long, &long[3..]) && short_starts_with(&long, &long[..20]));
    }

    #[test]
    fn str_set_decides_by_length_then_hash() {
        let long = "x".repeat(70);
        let mut s: StrSet = ["sh", "bash", long.as_str()]
            .into_iter()
            .map(Box::from)
            .collect();
        assert!(s.contains("sh") && s.contains("bash") && s.contains(&long));
        assert!(!s.contains("zsh") && !s.contains("") && !s.contains("bas"));
        // Same length bucket (63+) but another string.
        assert!(!s.contains(&"y".repeat(80)));
        s.extend(["zsh".into()].into_iter().collect());
        s.insert("".into());
        assert!(s.contains("zsh") && s.contains("") && s.len() == 5);
    }

    #[test]
    fn helpers() {
        assert!(icontains("CAP_SYS_MODULE CAP_X", "sys_module"));
        assert!(!icontains("abc", "abcd"));
        let p: Box<[Box<str>]> = vec!["/etc".into(), "/usr/bin".into()].into();
        assert!(pmatch("/etc", &p));
        assert!(pmatch("/etc/passwd", &p));
        assert!(pmatch("/usr/bin/x", &p));
        assert!(!pmatch("/etcetera", &p));
        let nets = ["10.0.0.0/8".parse().expect("net")];
        assert!(ip_in("::ffff:10.1.2.3".parse().expect("ip"), &nets));
        assert!(!ip_in("11.0.0.1".parse().expect("ip"), &nets));
    }
}
