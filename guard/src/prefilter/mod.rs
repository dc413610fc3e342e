//! Kernel prefilters derived from the compiled rules (DESIGN section 10): most events match no
//! rule, so the kernel should not spend a ring-buffer record on them.
//!
//! Three filters, each a sound over-approximation of what the rules (and the agent's own state,
//! policies and responses) can use:
//! - **syscalls**: a traced syscall whose event type no active rule can match, and that the
//!   agent's state does not need, is not traced at all (`SYSCALL_FILTER`);
//! - **open paths**: for the open family, the path prefixes some rule can match, each for any
//!   access or for writes only (`OPEN_PREFIXES`, an LPM trie). The kernel drops an open only
//!   when neither its path as passed nor the opened file's kernel-resolved path is admitted: a
//!   path is admitted when it is not plain (relative, or with an empty component, a component
//!   starting with `.`, or `..` anywhere), too long or unreadable, or when a prefix matches it
//!   with the open's access. When no rule that can match an open reads the path as passed
//!   (`fd.nameraw`), a resolved kernel path decides alone, before the path as passed is copied
//!   (`KPATH_DECIDES`);
//! - **connect destinations**: ports and networks no rule can match a connect to
//!   (`not fd.sport in (...)`, `not fd.snet in (...)` and the like inside a conjunction):
//!   `CONNECT_PORTS` and `CONNECT_NETS`. Only whole IPv4/IPv6 sockaddrs are judged.
//!
//! [`Prefilter::passes_open`] and [`Prefilter::passes_connect`] are the userspace statements
//! of the kernel's checks; the differential tests replay traces through them and compare
//! alerts.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use ipnet::IpNet;

use guard_ebpf::{OPEN_PREFIX_BYTES, open_prefix_bits, syscall_filter, syscalls};

use crate::rules::{
    RuleSet,
    eval::{Check, Cmp, Node, Test},
    fields::{FieldId, event_type_id},
};

/// Event types of the open family, as the capture names them.
const OPEN_TYPES: [&str; 4] = ["open", "openat", "openat2", "creat"];
/// Above this many (prefix, access) pairs a conjunction keeps its smaller side.
const MAX_PAIRS: usize = 512;

/// What else besides the rules needs events.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    /// Trace everything, unfiltered (`guard record`, responses that snapshot recent events).
    pub everything: bool,
    /// Open events of workloads under policy (the fallback backend's after-the-fact
    /// enforcement): these paths are needed for any access. Connect rules need no events: the
    /// kernel refuses them (cgroup sock_addr programs).
    pub policy_open_paths: Vec<String>,
    /// Every connect, unfiltered (workload summaries).
    pub policy_connect: bool,
    /// Path prefixes whose writes are needed (workload summaries: `/`, every write).
    pub write_paths: Vec<String>,
    /// Every unlink, rename, link, symlink, mkdir, rmdir, mknod, chmod and truncate
    /// (`NO_OPEN_WRITE_SYSCALLS`): the
    /// `fanotify` backend's records of what its sealed directories refused, and the policies'
    /// write rules on truncate(2), which opens nothing.
    pub no_open_writes: bool,
    /// Traced syscalls this kernel only has as stubs that fail with ENOSYS
    /// (`syscall_links::enosys_stubs`): traced only when some rule can match a failed attempt.
    pub enosys_stubs: BTreeSet<u32>,
}

/// Syscalls that change a directory's names, a directory or a file without opening
/// anything, so no open hook or permission event sees them.
pub const NO_OPEN_WRITE_SYSCALLS: [u32; 18] = [
    syscalls::TRUNCATE,
    syscalls::MKDIR,
    syscalls::MKDIRAT,
    syscalls::RMDIR,
    syscalls::MKNOD,
    syscalls::MKNODAT,
    syscalls::CHMOD,
    syscalls::FCHMODAT,
    syscalls::FCHMODAT2,
    syscalls::UNLINK,
    syscalls::UNLINKAT,
    syscalls::RENAME,
    syscalls::RENAMEAT,
    syscalls::RENAMEAT2,
    syscalls::LINK,
    syscalls::LINKAT,
    syscalls::SYMLINK,
    syscalls::SYMLINKAT,
];

/// Syscalls the agent's state needs whatever the rules say: socket types (for connect and
/// dup), the cwd (relative paths), credentials, and descriptors copied by dup.
const STATE_SYSCALLS: [u32; 11] = [
    syscalls::SOCKET,
    syscalls::CHDIR,
    syscalls::FCHDIR,
    syscalls::SETUID,
    syscalls::SETGID,
    syscalls::SETREUID,
    syscalls::SETREGID,
    syscalls::SETRESUID,
    syscalls::SETRESGID,
    syscalls::DUP,
    syscalls::DUP2,
];

/// The derived filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefilter {
    /// Syscall number -> `syscall_filter` bits; syscalls absent here are not traced.
    pub syscalls: BTreeMap<u32, u8>,
    /// Path prefix -> `open_prefix_bits`, each entry carrying the bits of the shorter entries
    /// that cover it (an LPM lookup returns only the longest match). Empty when the open path
    /// filter is off.
    pub open_prefixes: BTreeMap<String, u8>,
    /// Connect destinations no rule can match; empty when the connect filter is off.
    pub connect_ports: BTreeSet<u16>,
    pub connect_nets: BTreeSet<IpNet>,
}

/// Which filterable connects (a whole IPv4/IPv6 destination) a condition can match: `None`
/// for none, else all but those to a port or a network excluded here.
#[derive(Debug, Clone, Default, PartialEq)]
struct Excluded {
    ports: BTreeSet<u16>,
    nets: BTreeSet<IpNet>,
}

type Connects = Option<Excluded>;

fn c_and(a: Connects, b: Connects) -> Connects {
    let (a, b) = (a?, b?);
    Some(Excluded {
        ports: a.ports.union(&b.ports).copied().collect(),
        nets: a.nets.union(&b.nets).copied().collect(),
    })
}

fn c_or(a: Connects, b: Connects) -> Connects {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(Excluded {
            ports: a.ports.intersection(&b.ports).copied().collect(),
            nets: a.nets.intersection(&b.nets).copied().collect(),
        }),
    }
}

/// The destinations a check excludes when it is false (`not CHECK`, or `!=` whose test
/// holds): on a connect to a whole address the destination fields always have a value.
fn excluded_when_false(c: &Check) -> Excluded {
    let mut e = Excluded::default();
    if !c.transformers.is_empty() {
        return e;
    }
    match (c.field.id, &c.test) {
        (FieldId::FdSport | FieldId::FdRport, Test::NumIn(set)) => {
            e.ports = set.iter().filter_map(|&p| u16::try_from(p).ok()).collect();
        }
        (FieldId::FdSport | FieldId::FdRport, Test::Num(crate::rules::eval::Cmp::Eq, p)) => {
            e.ports.extend(u16::try_from(*p).ok());
        }
        (FieldId::FdSip | FieldId::FdRip, Test::Ip(nets)) => {
            e.nets = nets.iter().copied().collect();
        }
        _ => {}
    }
    e
}

fn connects(n: &Node, connect_types: u128) -> Connects {
    match n {
        Node::Const(true) => Some(Excluded::default()),
        Node::Const(false) => None,
        Node::Types(t) => (t & connect_types != 0).then(Excluded::default),
        Node::Not(inner) => match &**inner {
            Node::Types(t) if t & connect_types == connect_types => None,
            Node::Const(true) => None,
            Node::Check(c) if !c.negate => Some(excluded_when_false(c)),
            Node::Memo(_, m) => connects(&Node::Not(m.clone()), connect_types),
            _ => Some(Excluded::default()),
        },
        Node::And(items) => items.iter().try_fold(Excluded::default(), |acc, i| {
            c_and(Some(acc), connects(i, connect_types))
        }),
        Node::Or(items) => items
            .iter()
            .fold(None, |acc, i| c_or(acc, connects(i, connect_types))),
        Node::Memo(_, inner) => connects(inner, connect_types),
        Node::Check(c) if matches!(c.test, Test::Unavailable) => None,
        // `fd.sport != 80`: false exactly when the port is 80.
        Node::Check(c) if c.negate => Some(excluded_when_false(c)),
        Node::Check(_) => Some(Excluded::default()),
    }
}

/// Which filterable opens (absolute, plain paths) a condition can match: pairs of (path
/// prefix, writes only). Empty: none; `("", false)`: all.
type Opens = Vec<(String, bool)>;

fn all() -> Opens {
    vec![(String::new(), false)]
}

/// Drops pairs another pair covers (a shorter prefix with an access condition no stricter).
fn simplify(mut v: Opens) -> Opens {
    v.sort();
    v.dedup();
    let covered = |i: usize, v: &Opens| {
        let (p, w) = &v[i];
        v.iter().enumerate().any(|(j, (q, x))| {
            j != i && p.starts_with(q.as_str()) && (!x || *w) && (q, x) != (p, w)
        })
    };
    let keep: Vec<bool> = (0..v.len()).map(|i| !covered(i, &v)).collect();
    v.into_iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect()
}

fn and(a: Opens, b: Opens) -> Opens {
    let mut out = Vec::new();
    for (p, w) in &a {
        for (q, x) in &b {
            if q.starts_with(p.as_str()) {
                out.push((q.clone(), *w || *x));
            } else if p.starts_with(q.as_str()) {
                out.push((p.clone(), *w || *x));
            }
            if out.len() > MAX_PAIRS {
                // Either side alone is a sound over-approximation.
                return if a.len() <= b.len() { a } else { b };
            }
        }
    }
    simplify(out)
}

fn or(mut a: Opens, b: Opens) -> Opens {
    a.extend(b);
    simplify(a)
}

fn open_type_bits() -> u128 {
    OPEN_TYPES
        .iter()
        .fold(0, |acc, t| acc | 1u128 << event_type_id(t))
}

/// Whether a string can only occur in `fd.name` values whose open the kernel passes anyway:
/// `fd.name` is the kernel-resolved path, or the path as passed normalised by the agent when
/// the kernel's walk failed. Either holds `/.` only for a component starting with `.`, which
/// both checks pass (`kernel_path_plain`, `is_plain`), and never `//`.
fn only_in_unfiltered_name(needle: &str) -> bool {
    needle.contains("/.") || needle.contains("//")
}

/// Whether a string can only occur in paths as passed that the kernel passes anyway (not
/// plain: relative, or with an empty component, a component starting with `.`, or `..`
/// anywhere).
fn only_in_unfiltered_raw(needle: &str) -> bool {
    only_in_unfiltered_name(needle) || needle.contains("..")
}

/// The same for every string a glob pattern matches: only when the pattern holds such a
/// string as literal characters (a class, an alternation or an escape may not).
fn glob_only_in_unfiltered_raw(pattern: &str) -> bool {
    !pattern.contains(['[', '{', '\\']) && only_in_unfiltered_raw(pattern)
}

/// Whether the kernel's open prefilter judges a path as passed by its prefixes: absolute and
/// plain (see `only_in_unfiltered_raw`); any other path passes.
fn is_plain(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
        && !path
            .windows(2)
            .any(|w| (w[0] == b'/' && (w[1] == b'.' || w[1] == b'/')) || w == b"..")
}

/// The same for a kernel-resolved path, which the walk builds without empty, `.` or `..`
/// components: plain unless a component starts with `.`.
fn kernel_path_plain(path: &[u8]) -> bool {
    path.first() == Some(&b'/') && !path.windows(2).any(|w| w == b"/.")
}

/// The literal start of a glob pattern.
fn glob_prefix(pattern: &str) -> &str {
    let end = pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len());
    &pattern[..end]
}

fn check(c: &Check) -> Opens {
    if matches!(c.test, Test::Unavailable) {
        return Vec::new();
    }
    if c.negate || !c.transformers.is_empty() {
        return all();
    }
    let prefixes = |list: &mut dyn Iterator<Item = &str>, dir: bool| -> Opens {
        simplify(
            list.map(|s| {
                // fd.directory = D: the file is directly in D, so its path starts with "D/".
                let p = if dir && !s.ends_with('/') {
                    format!("{s}/")
                } else {
                    s.to_owned()
                };
                (p, false)
            })
            .collect(),
        )
    };
    match c.field.id {
        FieldId::FdName | FieldId::FdDirectory => {
            let dir = c.field.id == FieldId::FdDirectory;
            match &c.test {
                Test::StrEq(s) => prefixes(&mut std::iter::once(&**s), dir),
                Test::StrIn(set) => prefixes(&mut set.iter().map(|s| &**s), dir),
                Test::Pmatch(list) => prefixes(&mut list.iter().map(|s| &**s), false),
                Test::StartsWith(s) => prefixes(&mut std::iter::once(&**s), false),
                Test::Glob(g) if !dir => {
                    prefixes(&mut std::iter::once(glob_prefix(g.glob().glob())), false)
                }
                Test::Contains(s) if only_in_unfiltered_name(s) => Vec::new(),
                _ => all(),
            }
        }
        FieldId::FdNameraw => match &c.test {
            Test::Contains(s) if only_in_unfiltered_raw(s) => Vec::new(),
            Test::Glob(g) if glob_only_in_unfiltered_raw(g.glob().glob()) => Vec::new(),
            _ => all(),
        },
        FieldId::EvtIsOpenWrite => match c.test {
            Test::Bool(true) => vec![(String::new(), true)],
            _ => all(),
        },
        _ => all(),
    }
}

fn opens(n: &Node, open_types: u128) -> Opens {
    match n {
        Node::Const(true) => all(),
        Node::Const(false) => Vec::new(),
        Node::Types(t) => {
            if t & open_types == 0 {
                Vec::new()
            } else {
                all()
            }
        }
        Node::Not(inner) => match &**inner {
            // `not evt.type in (...)` that names every open type: no open passes it.
            Node::Types(t) if t & open_types == open_types => Vec::new(),
            Node::Const(false) => all(),
            Node::Const(true) => Vec::new(),
            _ => all(),
        },
        Node::And(items) => items
            .iter()
            .fold(all(), |acc, i| and(acc, opens(i, open_types))),
        Node::Or(items) => items
            .iter()
            .fold(Vec::new(), |acc, i| or(acc, opens(i, open_types))),
        Node::Memo(_, inner) => opens(inner, open_types),
        Node::Check(c) => check(c),
    }
}

/// The value of condition `n` on an event of type `t` whose syscall failed with ENOSYS, when
/// that alone decides it (`evt.res = SUCCESS`, `evt.rawres >= 0`, `evt.failed = false`, a field
/// guard cannot provide); `None` when it depends on anything else.
fn on_enosys(n: &Node, t: u16) -> Option<bool> {
    three_valued(n, t, &|c: &Check| {
        if matches!(c.test, Test::Unavailable) {
            return Some(false);
        }
        if !c.transformers.is_empty() || c.multi {
            return None;
        }
        const ENOSYS: i64 = -(libc::ENOSYS as i64);
        let passes = match (c.field.id, &c.test) {
            (FieldId::EvtRes | FieldId::EvtRawres | FieldId::EvtFailed, Test::Exists) => {
                return Some(true);
            }
            (FieldId::EvtRes, Test::StrEq(s)) => &**s == "ENOSYS",
            (FieldId::EvtRes, Test::StrIn(set)) => set.contains("ENOSYS"),
            (FieldId::EvtRawres, Test::Num(cmp, x)) => match cmp {
                Cmp::Eq => ENOSYS == *x,
                Cmp::Lt => ENOSYS < *x,
                Cmp::Le => ENOSYS <= *x,
                Cmp::Gt => ENOSYS > *x,
                Cmp::Ge => ENOSYS >= *x,
            },
            (FieldId::EvtRawres, Test::NumIn(set)) => set.contains(&ENOSYS),
            (FieldId::EvtFailed, Test::Bool(b)) => *b,
            _ => return None,
        };
        Some(passes != c.negate)
    })
}

/// `n`'s value for an event of type `t` where `check` knows the value of some checks (their
/// negation applied); `None` when it depends on one `check` does not know.
fn three_valued(n: &Node, t: u16, check: &dyn Fn(&Check) -> Option<bool>) -> Option<bool> {
    match n {
        Node::Const(b) => Some(*b),
        Node::Types(set) => Some(set & (1u128 << t) != 0),
        Node::Not(inner) => three_valued(inner, t, check).map(|b| !b),
        Node::Memo(_, inner) => three_valued(inner, t, check),
        Node::And(items) => items
            .iter()
            .try_fold(Some(true), |acc, i| match three_valued(i, t, check) {
                Some(false) => Err(()),
                Some(true) => Ok(acc),
                None => Ok(None),
            })
            .unwrap_or(Some(false)),
        Node::Or(items) => items
            .iter()
            .try_fold(Some(false), |acc, i| match three_valued(i, t, check) {
                Some(true) => Err(()),
                Some(false) => Ok(acc),
                None => Ok(None),
            })
            .unwrap_or(Some(true)),
        Node::Check(c) => check(c),
    }
}

/// Whether `n` can be true for a send of type `t` (sendto, sendmsg) given no destination
/// address: such a send keeps the socket's name, so `fd.name_changed` is false (or `<NA>`),
/// and a check that it is true fails. Anything else may hold.
fn send_without_dest(n: &Node, t: u16) -> bool {
    let name_changed = |c: &Check| {
        (c.field.id == FieldId::FdNameChanged
            && c.transformers.is_empty()
            && !c.multi
            && matches!(c.test, Test::Bool(true)))
        .then_some(c.negate)
    };
    three_valued(n, t, &name_changed) != Some(false)
}

impl Prefilter {
    /// Derives the filters from the active rules and the agent's other needs.
    pub fn derive(rules: &RuleSet, needs: &Needs) -> Prefilter {
        let open_types = open_type_bits();
        let connect_types = 1u128 << event_type_id("connect");
        let mut types: u128 = 0;
        let mut open_pairs: Opens = Vec::new();
        let mut connect_excl: Connects = None;
        // Per ENOSYS-only syscall: whether some rule can match an attempt (which always fails).
        let mut failed_attempts: u128 = 0;
        // Types rules restrict themselves to (a rule with no `evt.type` check counts for none).
        let mut named_types: u128 = 0;
        // Send types some rule can match without a destination address.
        let send_types = [syscalls::SENDTO, syscalls::SENDMSG]
            .map(|nr| event_type_id(syscalls::event_type(syscalls::name(nr).unwrap_or_default())));
        let mut sends_without_dest: u128 = 0;
        // Whether a rule that can match an open reads the path as passed (`fd.nameraw`); if
        // none does, the opened file's kernel path alone decides (`KPATH_DECIDES`).
        let mut raw_path_read = false;
        for r in rules.active() {
            let t = r.node.types();
            types |= t;
            if t != crate::rules::eval::ALL_TYPES {
                named_types |= t;
            }
            for nr in &needs.enosys_stubs {
                let Some(name) = syscalls::TRACED
                    .iter()
                    .find(|s| s.nr == *nr)
                    .map(|s| s.name)
                else {
                    continue;
                };
                let id = event_type_id(name);
                if t & (1u128 << id) != 0 && on_enosys(&r.node, id) != Some(false) {
                    failed_attempts |= 1u128 << id;
                }
            }
            if t & open_types != 0 {
                open_pairs = or(open_pairs, opens(&r.node, open_types));
                raw_path_read |= r.node.any_check(&|c| c.field.id == FieldId::FdNameraw);
            }
            if t & connect_types != 0 {
                connect_excl = c_or(connect_excl, connects(&r.node, connect_types));
            }
            for id in send_types {
                if t & (1u128 << id) != 0 && send_without_dest(&r.node, id) {
                    sends_without_dest |= 1u128 << id;
                }
            }
        }
        // No rule can match any connect: it is not traced at all (below), nothing to exclude.
        let connect_excl = connect_excl.unwrap_or_default();
        let bounds_nothing = connect_excl.ports.is_empty() && connect_excl.nets.is_empty();
        // A traced data syscall's `fd.connected` needs every connect on its sockets.
        let data_traced = syscalls::DATA_SYSCALLS.iter().any(|nr| {
            syscalls::name(*nr).is_some_and(|n| {
                named_types & (1u128 << event_type_id(syscalls::event_type(n))) != 0
            })
        });
        let connect_filter =
            !(needs.everything || needs.policy_connect || bounds_nothing || data_traced);
        for p in &needs.policy_open_paths {
            open_pairs = or(open_pairs, vec![(p.clone(), false)]);
        }
        for p in &needs.write_paths {
            open_pairs = or(open_pairs, vec![(p.clone(), true)]);
        }
        let open_filter = !needs.everything && !open_pairs.contains(&(String::new(), false));
        let mut syscalls = BTreeMap::new();
        for sc in syscalls::TRACED {
            let id = event_type_id(syscalls::event_type(sc.name));
            let is_open = OPEN_TYPES.contains(&sc.name);
            // The data syscalls are the busiest of most hosts: only a rule that names their
            // type traces them, never `everything` nor a rule without an `evt.type` check.
            let wanted = if syscalls::DATA_SYSCALLS.contains(&sc.nr) {
                named_types & (1u128 << id) != 0
            } else {
                needs.everything
                || STATE_SYSCALLS.contains(&sc.nr)
                // A type the rule language does not know: keep it (no rule can be proven
                // not to need it).
                || id == crate::rules::fields::OTHER_TYPE
                || (types & (1u128 << id) != 0
                    && (!needs.enosys_stubs.contains(&sc.nr) || failed_attempts & (1u128 << id) != 0))
                || (is_open && !needs.policy_open_paths.is_empty())
                || (is_open && !needs.write_paths.is_empty())
                || (sc.nr == syscalls::CONNECT && (needs.policy_connect || data_traced))
                || (needs.no_open_writes && NO_OPEN_WRITE_SYSCALLS.contains(&sc.nr))
            };
            if !wanted {
                continue;
            }
            let mut bits = syscall_filter::TRACE;
            if is_open && open_filter {
                bits |= syscall_filter::OPEN_PATHS;
                if !raw_path_read && sc.nr != syscalls::OPENAT2 {
                    bits |= syscall_filter::KPATH_DECIDES;
                }
            }
            if sc.nr == syscalls::CONNECT && connect_filter {
                bits |= syscall_filter::CONNECT_DEST;
            }
            if matches!(sc.nr, syscalls::SENDTO | syscalls::SENDMSG)
                && !needs.everything
                && sends_without_dest & (1u128 << id) == 0
            {
                bits |= syscall_filter::SEND_DEST;
            }
            syscalls.insert(sc.nr, bits);
        }
        let mut open_prefixes = BTreeMap::new();
        if open_filter {
            for (p, w) in &open_pairs {
                let bit = if *w {
                    open_prefix_bits::WRITE
                } else {
                    open_prefix_bits::ANY
                };
                // A prefix longer than the kernel key is shortened: a wider prefix passes more.
                // So is one holding a NUL, which no path does: the kernel ends each path it
                // looks up with a NUL and leaves what an earlier key held after it.
                let p = p.split('\0').next().unwrap_or_default();
                let key = truncate(p, OPEN_PREFIX_BYTES);
                *open_prefixes.entry(key.to_owned()).or_insert(0) |= bit;
            }
            // Carry covering entries' bits into longer ones.
            let snapshot: Vec<(String, u8)> =
                open_prefixes.iter().map(|(k, v)| (k.clone(), *v)).collect();
            for (k, v) in open_prefixes.iter_mut() {
                for (q, b) in &snapshot {
                    if k.starts_with(q.as_str()) {
                        *v |= b;
                    }
                }
            }
        }
        let (connect_ports, connect_nets) = if connect_filter {
            (connect_excl.ports, connect_excl.nets)
        } else {
            Default::default()
        };
        Prefilter {
            syscalls,
            open_prefixes,
            connect_ports,
            connect_nets,
        }
    }

    /// The kernel's connect check: whether a connect to `dest` (None: not a whole IPv4/IPv6
    /// sockaddr) produces a record.
    pub fn passes_connect(&self, dest: Option<SocketAddr>) -> bool {
        let Some(bits) = self.syscalls.get(&syscalls::CONNECT) else {
            return false;
        };
        let Some(dest) = dest else {
            return true;
        };
        if bits & syscall_filter::CONNECT_DEST == 0 {
            return true;
        }
        let ip = dest.ip();
        !(self.connect_ports.contains(&dest.port())
            || self.connect_nets.iter().any(|n| n.contains(&ip)))
    }

    /// The kernel's send check: whether a sendto / sendmsg (`nr`), given a destination address
    /// or not, produces a record.
    pub fn passes_send(&self, nr: u32, has_dest: bool) -> bool {
        self.syscalls
            .get(&nr)
            .is_some_and(|bits| has_dest || bits & syscall_filter::SEND_DEST == 0)
    }

    /// Everything traced, nothing filtered.
    pub fn none() -> Prefilter {
        Prefilter::derive(
            &RuleSet::default(),
            &Needs {
                everything: true,
                ..Needs::default()
            },
        )
    }

    /// This filter, tracing also every syscall `other` traces (unfiltered): the reload
    /// window's wide filter, which `none` alone leaves without the data syscalls.
    pub fn with_syscalls_of(mut self, other: &Prefilter) -> Prefilter {
        for nr in other.syscalls.keys() {
            self.syscalls.entry(*nr).or_insert(syscall_filter::TRACE);
        }
        self
    }

    pub fn traces(&self, nr: u32) -> bool {
        self.syscalls.contains_key(&nr)
    }

    /// The kernel's open check: whether an open of `raw_path` (as the caller passed it) with
    /// `write` access produces a record.
    pub fn passes_open(&self, nr: u32, raw_path: &[u8], write: bool) -> bool {
        let Some(bits) = self.syscalls.get(&nr) else {
            return false;
        };
        if bits & syscall_filter::OPEN_PATHS == 0 {
            return true;
        }
        raw_path.len() >= OPEN_PREFIX_BYTES
            || !is_plain(raw_path)
            || self.prefix_lookup(raw_path, write)
    }

    /// The kernel's `prefix_lookup`: whether the longest prefix of `path` (as the LPM trie
    /// answers) admits the access.
    fn prefix_lookup(&self, path: &[u8], write: bool) -> bool {
        let hit = self
            .open_prefixes
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_bytes()))
            .max_by_key(|(p, _)| p.len())
            .map_or(0, |(_, b)| *b);
        hit & open_prefix_bits::ANY != 0 || (write && hit & open_prefix_bits::WRITE != 0)
    }

    /// The kernel's whole open check (`open_wanted`) of an open with `flags` (`O_*`) and result
    /// `ret`: it produces a record when it was refused with EPERM for write, truncate or create
    /// (a seal's refusal, which only this record reports), when the path as passed passes
    /// `passes_open`, or when the opened file's kernel-resolved path (absolute and normalised)
    /// is too long for a key, has a component starting with `.`, or has a prefix that admits
    /// the access. Under `KPATH_DECIDES` a resolved kernel path decides alone (no rule reads
    /// the path as passed, and `fd.name` is that path).
    pub fn passes_open_resolved(
        &self,
        nr: u32,
        raw_path: &[u8],
        kernel_path: Option<&[u8]>,
        flags: i32,
        ret: i64,
    ) -> bool {
        if !self.traces(nr) {
            return false;
        }
        let write = flags & (libc::O_WRONLY | libc::O_RDWR) != 0;
        if ret == -i64::from(libc::EPERM) && (write || flags & (libc::O_CREAT | libc::O_TRUNC) != 0)
        {
            return true;
        }
        let kernel_admits = |k: &[u8]| {
            k.len() >= OPEN_PREFIX_BYTES || !kernel_path_plain(k) || self.prefix_lookup(k, write)
        };
        let bits = self.syscalls.get(&nr).copied().unwrap_or(0);
        if bits & syscall_filter::KPATH_DECIDES != 0
            && ret >= 0
            && let Some(k) = kernel_path
        {
            return kernel_admits(k);
        }
        self.passes_open(nr, raw_path, write) || kernel_path.is_some_and(kernel_admits)
    }

    /// One line for the startup log.
    pub fn summary(&self) -> String {
        let off: Vec<&str> = syscalls::TRACED
            .iter()
            .filter(|s| !self.syscalls.contains_key(&s.nr))
            .map(|s| s.name)
            .collect();
        format!(
            "{} of {} syscalls traced (not: {}); open path filter: {}",
            self.syscalls.len(),
            syscalls::TRACED.len(),
            if off.is_empty() {
                "-".to_owned()
            } else {
                off.join(",")
            },
            if self.open_prefixes.is_empty() {
                "off".to_owned()
            } else {
                format!("{} prefixes", self.open_prefixes.len())
            },
        ) + &if self.connect_ports.is_empty() && self.connect_nets.is_empty() {
            "; connect filter: off".to_owned()
        } else {
            format!(
                "; connect filter: {} ports, {} networks",
                self.connect_ports.len(),
                self.connect_nets.len()
            )
        }
    }
}

/// The longest prefix of `s` of at most `max - 1` bytes on a char boundary (the kernel key
/// keeps room for the path's NUL).
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
