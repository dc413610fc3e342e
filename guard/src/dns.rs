//! The background resolver of the host names rules compare `fd.*ip.name` with. One thread
//! looks the names up one at a time (getaddrinfo through std, so `/etc/hosts` and then DNS),
//! every [`REFRESH_SECS`] seconds and whenever the rules change, and publishes an immutable
//! snapshot ([`DnsNames`]) into the [`DnsView`] the engine reads. Evaluation never waits for
//! a lookup: a name not resolved yet, or that fails to resolve, matches nothing.

use std::{
    collections::BTreeSet,
    net::{IpAddr, ToSocketAddrs},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use tracing::{info, warn};

pub use crate::rules::fields::dns::{
    DnsNames, DnsView, MAX_ADDRS, MAX_NAME_LEN, MAX_NAMES, REFRESH_SECS,
};

/// Looks one name up; the real one is [`system_lookup`], tests inject their own.
pub type Lookup = Box<dyn Fn(&str) -> std::io::Result<Vec<IpAddr>> + Send>;

/// The system resolver (getaddrinfo), at most [`MAX_ADDRS`] addresses.
pub fn system_lookup(name: &str) -> std::io::Result<Vec<IpAddr>> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(std::io::Error::other("not a host name"));
    }
    Ok((name, 0u16)
        .to_socket_addrs()?
        .map(|a| a.ip())
        .take(MAX_ADDRS * 4)
        .collect())
}

#[derive(Default)]
struct Wanted {
    names: Vec<Box<str>>,
    /// The names changed since the last pass.
    changed: bool,
    stop: bool,
}

type Shared = Arc<(Mutex<Wanted>, Condvar)>;

/// The resolver thread; dropping it tells the thread to stop after the lookup in progress,
/// without waiting for it (a DNS timeout must not delay the agent's exit).
pub struct Resolver {
    view: DnsView,
    shared: Shared,
    _thread: JoinHandle<()>,
}

impl Resolver {
    /// Starts the thread with no names; [`Resolver::set_names`] gives it work.
    pub fn start(view: DnsView, interval: Duration, lookup: Lookup) -> std::io::Result<Self> {
        let shared: Shared = Arc::default();
        let (v, s) = (view.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("guard-dns".into())
            .spawn(move || run(&v, &s, interval, &lookup))?;
        Ok(Resolver {
            view,
            shared,
            _thread: thread,
        })
    }

    pub fn view(&self) -> DnsView {
        self.view.clone()
    }

    /// The names the rules in force compare with (at load and at each reload). Only the
    /// first [`MAX_NAMES`] in name order are resolved; the others never match (logged).
    pub fn set_names(&self, names: &[Box<str>]) {
        let mut set: BTreeSet<Box<str>> = names.iter().cloned().collect();
        if set.len() > MAX_NAMES {
            warn!(
                names = set.len(),
                "rules compare fd.*ip.name with more than {MAX_NAMES} host names; only the first {MAX_NAMES} (in name order) are resolved, checks on the others are false"
            );
            set = set.into_iter().take(MAX_NAMES).collect();
        }
        let (lock, cv) = &*self.shared;
        let mut w = lock.lock().unwrap_or_else(|p| p.into_inner());
        let next: Vec<Box<str>> = set.into_iter().collect();
        if w.names != next {
            w.names = next;
            w.changed = true;
            cv.notify_one();
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        cv.notify_one();
    }
}

/// A pass's entries (name, addresses) and the names that started failing (name, why).
type Pass = (Vec<(Box<str>, Vec<IpAddr>)>, Vec<(Box<str>, String)>);

/// One pass over `names`: each looked up in turn. Returns the entries and the names that
/// started failing in this pass (to log); `failing` carries them from pass to pass, so a name
/// that keeps failing is reported once, and again only after it resolved in between.
fn lookup_all(
    names: Vec<Box<str>>,
    lookup: &Lookup,
    failing: &mut BTreeSet<Box<str>>,
    stop: &dyn Fn() -> bool,
) -> Option<Pass> {
    let mut entries = Vec::with_capacity(names.len());
    let mut newly = Vec::new();
    for name in names {
        if stop() {
            return None;
        }
        let addrs = match lookup(&name) {
            Ok(a) if !a.is_empty() => {
                if failing.remove(&name) {
                    info!(name = &*name, "host name resolves again");
                }
                a
            }
            res => {
                crate::metrics::METRICS.dns_lookup_failed();
                if failing.insert(name.clone()) {
                    let why = match res {
                        Err(e) => e.to_string(),
                        Ok(_) => "no address".into(),
                    };
                    newly.push((name.clone(), why));
                }
                Vec::new()
            }
        };
        entries.push((name, addrs));
    }
    failing.retain(|n| entries.iter().any(|(e, _)| e == n));
    Some((entries, newly))
}

fn run(view: &DnsView, shared: &Shared, interval: Duration, lookup: &Lookup) {
    let (lock, cv) = &**shared;
    let stopped = || lock.lock().unwrap_or_else(|p| p.into_inner()).stop;
    let mut failing: BTreeSet<Box<str>> = BTreeSet::new();
    loop {
        let names = {
            let mut w = lock.lock().unwrap_or_else(|p| p.into_inner());
            if w.stop {
                return;
            }
            w.changed = false;
            w.names.clone()
        };
        let Some((entries, newly)) = lookup_all(names, lookup, &mut failing, &stopped) else {
            return;
        };
        for (name, why) in newly {
            warn!(
                name = &*name,
                "host name does not resolve ({why}); fd.*ip.name checks on it are false until it does"
            );
        }
        view.store(DnsNames::new(entries));
        let w = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (w, _) = cv
            .wait_timeout_while(w, interval, |w| !w.stop && !w.changed)
            .unwrap_or_else(|p| p.into_inner());
        if w.stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Instant,
    };

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn wait_for(view: &DnsView, what: impl Fn(&DnsNames) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if view.with(&what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn resolves_refreshes_and_follows_reloads() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let lookup: Lookup = Box::new(move |n: &str| {
            c.fetch_add(1, Ordering::SeqCst);
            match n {
                "api.local" => Ok(vec![ip("127.0.0.5"), ip("::1")]),
                "empty.local" => Ok(vec![]),
                _ => Err(std::io::Error::other("NXDOMAIN")),
            }
        });
        let view = DnsView::default();
        let r = Resolver::start(view.clone(), Duration::from_millis(20), lookup).expect("start");
        r.set_names(&["api.local".into(), "nx.local".into(), "empty.local".into()]);
        assert!(wait_for(&view, |d| d.len() == 3));
        let d = view.load();
        assert_eq!(d.addrs("api.local"), &[ip("127.0.0.5"), ip("::1")]);
        assert!(d.addrs("nx.local").is_empty() && d.addrs("empty.local").is_empty());
        // Refreshed on the interval: more lookups without a change of names.
        let before = calls.load(Ordering::SeqCst);
        assert!(wait_for(&view, |_| calls.load(Ordering::SeqCst) >= before + 6));
        // A reload without the name drops it.
        r.set_names(&["nx.local".into()]);
        assert!(wait_for(&view, |d| d.len() == 1 && d.addrs("api.local").is_empty()));
        drop(r);
    }

    #[test]
    fn names_are_bounded_and_lookups_serial() {
        let active = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (a, m) = (active.clone(), most.clone());
        let lookup: Lookup = Box::new(move |_n: &str| {
            let now = a.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let addrs = (0..100u32)
                .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
                .collect();
            a.fetch_sub(1, Ordering::SeqCst);
            Ok(addrs)
        });
        let view = DnsView::default();
        let r = Resolver::start(view.clone(), Duration::from_secs(60), lookup).expect("start");
        let names: Vec<Box<str>> = (0..MAX_NAMES + 44)
            .map(|i| format!("h{i:04}").into())
            .collect();
        r.set_names(&names);
        assert!(wait_for(&view, |d| d.len() == MAX_NAMES));
        let d = view.load();
        assert_eq!(d.addrs("h0000").len(), MAX_ADDRS);
        assert!(
            d.addrs(&format!("h{:04}", MAX_NAMES)).is_empty(),
            "beyond the bound"
        );
        assert_eq!(most.load(Ordering::SeqCst), 1, "one lookup at a time");
    }

    /// A failing name is reported in the pass it starts failing, not at each refresh, and
    /// again after it resolved in between.
    #[test]
    fn failures_are_reported_once_per_name() {
        let up = Arc::new(AtomicUsize::new(0));
        let u = up.clone();
        let lookup: Lookup = Box::new(move |n: &str| match (n, u.load(Ordering::SeqCst)) {
            ("flaky.local", 1) | ("ok.local", _) => Ok(vec![ip("10.0.0.1")]),
            _ => Err(std::io::Error::other("NXDOMAIN")),
        });
        let names: Vec<Box<str>> = vec!["flaky.local".into(), "nx.local".into(), "ok.local".into()];
        let mut failing = BTreeSet::new();
        let never = || false;
        let mut pass = || {
            let (entries, newly) =
                lookup_all(names.clone(), &lookup, &mut failing, &never).expect("not stopped");
            assert_eq!(entries.len(), 3);
            newly.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
        };
        let reported = |v: &[&str]| v.iter().map(|s| Box::<str>::from(*s)).collect::<Vec<_>>();
        assert_eq!(pass(), reported(&["flaky.local", "nx.local"]));
        assert_eq!(pass(), reported(&[]), "refresh: not again");
        up.store(1, Ordering::SeqCst);
        assert_eq!(pass(), reported(&[]), "flaky resolves");
        up.store(2, Ordering::SeqCst);
        assert_eq!(
            pass(),
            reported(&["flaky.local"]),
            "fails again after resolving"
        );
        assert!(lookup_all(names.clone(), &lookup, &mut BTreeSet::new(), &|| true).is_none());
    }

    #[test]
    fn system_lookup_reads_hosts() {
        let a = system_lookup("localhost").expect("localhost resolves");
        assert!(a.iter().any(|a| a.is_loopback()), "{a:?}");
        assert!(system_lookup("").is_err());
        assert!(system_lookup(&"a".repeat(300)).is_err());
    }
}
