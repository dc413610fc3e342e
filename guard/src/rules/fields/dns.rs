//! `fd.sip.name`, `fd.cip.name`, `fd.lip.name`, `fd.rip.name`: the addresses each host name
//! the rules compare these fields with resolves to. Evaluation reads an immutable snapshot
//! ([`DnsNames`]) that a background resolver replaces (`crate::dns`); it never resolves
//! anything itself, so a slow or absent DNS never stalls the pipeline.

use std::{
    net::IpAddr,
    sync::{Arc, RwLock},
};

/// At most this many names are resolved; further names never match.
pub const MAX_NAMES: usize = 256;
/// At most this many addresses are kept per name.
pub const MAX_ADDRS: usize = 32;
/// How often the resolver looks every name up again.
pub const REFRESH_SECS: u64 = 30;
/// Longest host name (RFC 1035: 253 characters in text form).
pub const MAX_NAME_LEN: usize = 253;

/// IPv4-mapped IPv6 addresses compare as IPv4 (as `fd.sip` checks do).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Each name with the addresses it resolved to at the last lookup, in name order; a name
/// whose lookup failed has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsNames {
    names: Vec<(Box<str>, Box<[IpAddr]>)>,
}

impl DnsNames {
    /// Builds a snapshot, keeping the first [`MAX_NAMES`] names (sorted, deduplicated) and
    /// the first [`MAX_ADDRS`] distinct addresses of each.
    pub fn new(entries: impl IntoIterator<Item = (Box<str>, Vec<IpAddr>)>) -> Self {
        let mut names: Vec<(Box<str>, Box<[IpAddr]>)> = Vec::new();
        for (name, addrs) in entries {
            let mut kept: Vec<IpAddr> = Vec::new();
            for a in addrs.into_iter().map(canonical) {
                if kept.len() == MAX_ADDRS {
                    break;
                }
                if !kept.contains(&a) {
                    kept.push(a);
                }
            }
            names.push((name, kept.into()));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names.dedup_by(|a, b| a.0 == b.0);
        names.truncate(MAX_NAMES);
        DnsNames { names }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The addresses of `name` (empty: unknown or unresolved).
    pub fn addrs(&self, name: &str) -> &[IpAddr] {
        self.names
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .map_or(&[], |i| &self.names[i].1)
    }

    /// Whether `ip` is one of the addresses any of `names` resolves to (Falco's `=`/`in`).
    pub fn matches(&self, names: &[Box<str>], ip: IpAddr) -> bool {
        let ip = canonical(ip);
        names.iter().any(|n| self.addrs(n).contains(&ip))
    }

    /// The first name (in name order) that resolves to `ip`: the field's value in outputs.
    pub fn name_of(&self, ip: IpAddr) -> Option<&str> {
        let ip = canonical(ip);
        self.names
            .iter()
            .find(|(_, a)| a.contains(&ip))
            .map(|(n, _)| &**n)
    }
}

/// The snapshot in force, shared by the engine (reader) and the resolver (writer).
#[derive(Debug, Clone, Default)]
pub struct DnsView(Arc<RwLock<Arc<DnsNames>>>);

impl DnsView {
    pub fn load(&self) -> Arc<DnsNames> {
        // A writer that panicked left a whole snapshot behind: still usable.
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn store(&self, names: DnsNames) {
        let next = Arc::new(names);
        match self.0.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
    }

    /// Runs `f` on the snapshot without cloning it.
    #[inline]
    pub fn with<T>(&self, f: impl FnOnce(&DnsNames) -> T) -> T {
        match self.0.read() {
            Ok(g) => f(&g),
            Err(p) => f(&p.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn snapshot_matches_by_name_and_address() {
        let snap = DnsNames::new([
            ("k8s.local".into(), vec![ip("127.0.0.5"), ip("fd00::5")]),
            ("other.local".into(), vec![ip("10.0.0.1")]),
            ("gone.local".into(), vec![]),
        ]);
        let names = |v: &[&str]| -> Vec<Box<str>> { v.iter().map(|s| (*s).into()).collect() };
        assert!(snap.matches(&names(&["k8s.local"]), ip("127.0.0.5")));
        assert!(snap.matches(&names(&["k8s.local"]), ip("fd00::5")));
        assert!(
            snap.matches(&names(&["k8s.local"]), ip("::ffff:127.0.0.5")),
            "mapped IPv4"
        );
        assert!(!snap.matches(&names(&["k8s.local"]), ip("127.0.0.6")));
        assert!(!snap.matches(&names(&["gone.local"]), ip("127.0.0.5")));
        assert!(!snap.matches(&names(&["unknown"]), ip("127.0.0.5")));
        assert!(snap.matches(&names(&["nope", "other.local"]), ip("10.0.0.1")));
        assert_eq!(snap.name_of(ip("10.0.0.1")), Some("other.local"));
        assert_eq!(snap.name_of(ip("fd00::5")), Some("k8s.local"));
        assert_eq!(snap.name_of(ip("10.0.0.2")), None);
    }

    #[test]
    fn snapshot_is_bounded() {
        let many = (0..MAX_NAMES + 10).map(|i| {
            let addrs = (0..MAX_ADDRS as u32 + 5)
                .map(|a| IpAddr::V4(std::net::Ipv4Addr::from(((i as u32) << 16) | a)))
                .collect::<Vec<_>>();
            (format!("n{i:04}").into_boxed_str(), addrs)
        });
        let snap = DnsNames::new(many);
        assert_eq!(snap.len(), MAX_NAMES);
        assert_eq!(snap.addrs("n0000").len(), MAX_ADDRS);
        assert!(snap.addrs(&format!("n{:04}", MAX_NAMES + 5)).is_empty());
        // Duplicates (mapped and plain) count once.
        let d = DnsNames::new([(
            "a".into(),
            vec![ip("1.2.3.4"), ip("::ffff:1.2.3.4"), ip("1.2.3.4")],
        )]);
        assert_eq!(d.addrs("a"), &[ip("1.2.3.4")]);
    }

    #[test]
    fn view_swaps_snapshots() {
        let v = DnsView::default();
        assert!(v.load().is_empty());
        let reader = v.clone();
        v.store(DnsNames::new([("a".into(), vec![ip("1.1.1.1")])]));
        assert_eq!(
            reader.with(|s| s.name_of(ip("1.1.1.1")).map(str::to_owned)),
            Some("a".into())
        );
    }
}
