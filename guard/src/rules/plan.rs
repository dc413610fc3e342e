//! Per-event-type rule programs. A rule is only ever evaluated on events of the types it is
//! indexed under, so for each type its condition is rewritten with that type known: type tests
//! become constants and fold away, macros that reduce to a constant disappear, macros used once
//! lose their memo slot, and `or`s of tests on one field read the field once.
//!
//! Every rewrite preserves the result. Evaluation is two-valued and pure (a check on a missing
//! field is false, `not` of it true; memo slots only cache), so `and`/`or` operands may be
//! dropped when constant and regrouped without changing what a condition returns.

use super::eval::{Check, Node, Test};

/// The program for `node` on events of type `t`, which references only memo slots that
/// `node` references (with unchanged meaning, so the slots can be shared by every rule's
/// program for `t`).
pub(crate) fn specialize(node: &Node, t: u16) -> Node {
    match node {
        Node::Const(b) => Node::Const(*b),
        Node::Types(set) => Node::Const(set & (1u128 << t) != 0),
        Node::Check(c) if matches!(c.test, Test::Unavailable) => Node::Const(false),
        Node::Check(_) => node.clone(),
        Node::Not(n) => not(specialize(n, t)),
        Node::And(items) => and(items.iter().map(|n| specialize(n, t)).collect()),
        Node::Or(items) => or(items.iter().map(|n| specialize(n, t)).collect(), false),
        Node::Memo(i, body) => match specialize(body, t) {
            c @ Node::Const(_) => c,
            // A macro that is just another macro: the inner slot caches the same value.
            inner @ Node::Memo(..) => inner,
            b => Node::Memo(*i, Box::new(b)),
        },
    }
}

/// Counts memo references, once per place they appear (a memo inside a memo's body is
/// counted each time the outer one appears: an over-count, which only keeps a slot).
pub(crate) fn count_memos(node: &Node, counts: &mut Vec<u32>) {
    match node {
        Node::Const(_) | Node::Types(_) | Node::Check(_) => {}
        Node::Not(n) => count_memos(n, counts),
        Node::And(items) | Node::Or(items) => items.iter().for_each(|n| count_memos(n, counts)),
        Node::Memo(i, body) => {
            let i = *i as usize;
            if counts.len() <= i {
                counts.resize(i + 1, 0);
            }
            counts[i] += 1;
            count_memos(body, counts);
        }
    }
}

/// Drops memo slots referenced once (caching them costs more than it saves), then regroups
/// what that exposes and merges same-field tests under `or`.
pub(crate) fn finish(node: Node, counts: &[u32]) -> Node {
    match node {
        Node::Memo(i, body) if counts.get(i as usize).copied().unwrap_or(0) <= 1 => {
            finish(*body, counts)
        }
        Node::Memo(i, body) => Node::Memo(i, Box::new(finish(*body, counts))),
        Node::Not(n) => not(finish(*n, counts)),
        Node::And(items) => and(items
            .into_vec()
            .into_iter()
            .map(|n| finish(n, counts))
            .collect()),
        Node::Or(items) => or(
            items
                .into_vec()
                .into_iter()
                .map(|n| finish(n, counts))
                .collect(),
            true,
        ),
        n => n,
    }
}

fn not(n: Node) -> Node {
    match n {
        Node::Const(b) => Node::Const(!b),
        Node::Not(inner) => *inner,
        n => Node::Not(Box::new(n)),
    }
}

fn and(items: Vec<Node>) -> Node {
    let mut out = Vec::with_capacity(items.len());
    for n in items {
        match n {
            Node::Const(true) => {}
            Node::Const(false) => return Node::Const(false),
            Node::And(inner) => out.extend(inner.into_vec()),
            n => out.push(n),
        }
    }
    match out.len() {
        0 => Node::Const(true),
        1 => out.pop().unwrap_or(Node::Const(true)),
        _ => Node::And(out.into()),
    }
}

fn or(items: Vec<Node>, merge: bool) -> Node {
    let mut out = Vec::with_capacity(items.len());
    for n in items {
        match n {
            Node::Const(false) => {}
            Node::Const(true) => return Node::Const(true),
            Node::Or(inner) => out.extend(inner.into_vec()),
            n => out.push(n),
        }
    }
    if merge {
        out = merge_checks(out);
    }
    match out.len() {
        0 => Node::Const(false),
        1 => out.pop().unwrap_or(Node::Const(false)),
        _ => Node::Or(out.into()),
    }
}

/// Whether `or` may fold this check into another on the same field: the field is read the
/// same way and the result is "some value passes the test" (no `!=`, no existence test, no
/// second field).
fn mergeable(c: &Check) -> bool {
    !c.negate
        && c.transformers.is_empty()
        && !matches!(c.test, Test::Exists | Test::Unavailable | Test::Field(..))
}

/// `f op1 a or f op2 b or ...` becomes one check on `f` that passes when any test does, placed
/// where the first of them was. For a multi-valued field, "some value passes some test" is
/// the same as "some test passes on some value".
fn merge_checks(items: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::with_capacity(items.len());
    for n in items {
        if let Node::Check(c) = &n
            && mergeable(c)
            && let Some(Node::Check(prev)) = out.iter_mut().find(|o| {
                matches!(o, Node::Check(p) if mergeable(p) && p.field == c.field && p.multi == c.multi)
            })
        {
            let Node::Check(c) = n else { continue };
            let prev_test = std::mem::replace(&mut prev.test, Test::Exists);
            prev.test = merge_tests(prev_test, c.test);
            continue;
        }
        out.push(n);
    }
    out
}

fn merge_tests(a: Test, b: Test) -> Test {
    match (a, b) {
        (Test::StrEq(x), Test::StrEq(y)) => Test::StrIn([x, y].into_iter().collect()),
        (Test::StrIn(mut s), Test::StrEq(y)) | (Test::StrEq(y), Test::StrIn(mut s)) => {
            s.insert(y);
            Test::StrIn(s)
        }
        (Test::StrIn(mut s), Test::StrIn(t)) => {
            s.extend(t);
            Test::StrIn(s)
        }
        (Test::Any(xs), Test::Any(ys)) => {
            Test::Any(xs.into_vec().into_iter().chain(ys.into_vec()).collect())
        }
        (Test::Any(xs), y) => Test::Any(xs.into_vec().into_iter().chain([y]).collect()),
        (x, Test::Any(ys)) => Test::Any([x].into_iter().chain(ys.into_vec()).collect()),
        (x, y) => Test::Any(vec![x, y].into()),
    }
}
