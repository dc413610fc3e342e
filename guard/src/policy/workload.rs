//! Workload selectors: which containers (or bare cgroups) a policy applies to.
//!
//! Same shape as the response engine's selector (issue 6); the lead unifies the two.

use std::collections::BTreeMap;

use globset::GlobMatcher;

/// What a selector is matched against. `None` fields are unknown (no container runtime, daemon
/// unreachable): a selector key on an unknown field does not match.
#[derive(Debug, Clone, Default)]
pub struct WorkloadInfo {
    pub image: Option<String>,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub k8s_namespace: Option<String>,
    /// cgroup v2 path relative to the cgroup2 mount, starting with `/` (e.g. `/system.slice/docker-<id>.scope`).
    pub cgroup: Option<String>,
}

/// A compiled glob with its source text.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    pub fn new(text: &str) -> Result<Self, String> {
        let glob = globset::GlobBuilder::new(text)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("bad glob {text:?}: {e}"))?;
        Ok(Pattern {
            text: text.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn matches(&self, s: &str) -> bool {
        self.matcher.is_match(s)
    }

    pub fn is_literal(&self) -> bool {
        !self.text.contains(['*', '?', '[', '{'])
    }
}

/// Every given key must match; an empty selector matches every workload.
#[derive(Debug, Clone, Default)]
pub struct WorkloadSelector {
    pub image: Option<Pattern>,
    pub name: Option<Pattern>,
    pub labels: BTreeMap<String, Pattern>,
    pub k8s_namespace: Option<Pattern>,
    pub cgroup: Option<Pattern>,
}

fn field_matches(p: &Option<Pattern>, v: &Option<String>) -> bool {
    match (p, v) {
        (None, _) => true,
        (Some(p), Some(v)) => p.matches(v),
        (Some(_), None) => false,
    }
}

impl WorkloadSelector {
    pub fn matches(&self, w: &WorkloadInfo) -> bool {
        field_matches(&self.image, &w.image)
            && field_matches(&self.name, &w.name)
            && field_matches(&self.k8s_namespace, &w.k8s_namespace)
            && field_matches(&self.cgroup, &w.cgroup)
            && self
                .labels
                .iter()
                .all(|(k, p)| w.labels.get(k).is_some_and(|v| p.matches(v)))
    }

    /// Number of constraints, the measure of "most specific" (see docs/policies.md).
    pub fn specificity(&self) -> usize {
        [&self.image, &self.name, &self.k8s_namespace, &self.cgroup]
            .iter()
            .filter(|p| p.is_some())
            .count()
            + self.labels.len()
    }

    /// Whether the selector only needs the cgroup path (no container metadata).
    pub fn cgroup_only(&self) -> bool {
        self.image.is_none()
            && self.name.is_none()
            && self.k8s_namespace.is_none()
            && self.labels.is_empty()
    }

    /// Conservative test for "some workload may match both": false only when a key both
    /// selectors constrain cannot match the same value.
    pub fn may_overlap(&self, other: &WorkloadSelector) -> bool {
        fn pair(a: &Option<Pattern>, b: &Option<Pattern>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => patterns_may_overlap(a, b),
                _ => true,
            }
        }
        pair(&self.image, &other.image)
            && pair(&self.name, &other.name)
            && pair(&self.k8s_namespace, &other.k8s_namespace)
            && pair(&self.cgroup, &other.cgroup)
            && self.labels.iter().all(|(k, a)| {
                other
                    .labels
                    .get(k)
                    .is_none_or(|b| patterns_may_overlap(a, b))
            })
    }
}

fn patterns_may_overlap(a: &Pattern, b: &Pattern) -> bool {
    match (a.is_literal(), b.is_literal()) {
        (true, true) => a.text == b.text,
        (true, false) => b.matches(&a.text),
        (false, true) => a.matches(&b.text),
        // Two globs: compare the literal prefixes; deciding intersection exactly is not needed
        // for a warning.
        (false, false) => {
            let pa = literal_prefix(&a.text);
            let pb = literal_prefix(&b.text);
            pa.starts_with(pb) || pb.starts_with(pa)
        }
    }
}

fn literal_prefix(s: &str) -> &str {
    let end = s.find(['*', '?', '[', '{']).unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(image: Option<&str>, cgroup: Option<&str>) -> WorkloadSelector {
        WorkloadSelector {
            image: image.map(|s| Pattern::new(s).expect("glob")),
            cgroup: cgroup.map(|s| Pattern::new(s).expect("glob")),
            ..Default::default()
        }
    }

    #[test]
    fn every_key_must_match() {
        let s = sel(Some("nginx:*"), None);
        let mut w = WorkloadInfo {
            image: Some("nginx:1.25".into()),
            ..Default::default()
        };
        assert!(s.matches(&w));
        w.image = Some("redis:7".into());
        assert!(!s.matches(&w));
        w.image = None;
        assert!(
            !s.matches(&w),
            "unknown image never matches an image selector"
        );
        let mut l = WorkloadSelector::default();
        l.labels
            .insert("app".into(), Pattern::new("web").expect("glob"));
        let mut w = WorkloadInfo::default();
        assert!(!l.matches(&w));
        w.labels.insert("app".into(), "web".into());
        assert!(l.matches(&w));
    }

    #[test]
    fn overlap_is_conservative() {
        assert!(sel(Some("nginx:*"), None).may_overlap(&sel(Some("nginx:1"), None)));
        assert!(!sel(Some("nginx:*"), None).may_overlap(&sel(Some("redis:1"), None)));
        assert!(sel(Some("nginx:*"), None).may_overlap(&sel(None, Some("/a"))));
        assert!(!sel(None, Some("/a/*")).may_overlap(&sel(None, Some("/b/*"))));
        assert_eq!(sel(Some("x"), Some("/y")).specificity(), 2);
    }
}
