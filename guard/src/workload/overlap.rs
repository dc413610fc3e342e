//! Comparing selectors: how specific a selector is (the policies' overlap rule: most specific
//! wins) and whether two selectors may select the same workload (`guard validate` warnings).

use super::{Pattern, WorkloadSelector};

/// Number of constraints, the measure of "most specific" (see docs/policies.md). Each label
/// counts; `container: true|false` counts as one.
pub fn specificity(s: &WorkloadSelector) -> usize {
    [&s.image, &s.name, &s.k8s_namespace, &s.cgroup]
        .iter()
        .filter(|p| p.is_some())
        .count()
        + s.labels.len()
        + usize::from(s.container.is_some())
}

/// Conservative test for "some workload may match both": false only when a key both selectors
/// constrain cannot match the same value.
pub fn may_overlap(a: &WorkloadSelector, b: &WorkloadSelector) -> bool {
    fn pair(a: &Option<Pattern>, b: &Option<Pattern>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => patterns_may_overlap(a, b),
            _ => true,
        }
    }
    let needs_container = |s: &WorkloadSelector| {
        s.image.is_some() || s.name.is_some() || !s.labels.is_empty() || s.k8s_namespace.is_some()
    };
    let container = |s: &WorkloadSelector| match s.container {
        Some(c) => Some(c),
        None if needs_container(s) => Some(true),
        None => None,
    };
    if let (Some(x), Some(y)) = (container(a), container(b))
        && x != y
    {
        return false;
    }
    pair(&a.image, &b.image)
        && pair(&a.name, &b.name)
        && pair(&a.k8s_namespace, &b.k8s_namespace)
        && pair(&a.cgroup, &b.cgroup)
        && a.labels
            .iter()
            .all(|(k, x)| b.labels.get(k).is_none_or(|y| patterns_may_overlap(x, y)))
}

fn is_literal(p: &Pattern) -> bool {
    !p.as_str().contains(['*', '?', '[', '{', '\\'])
}

fn patterns_may_overlap(a: &Pattern, b: &Pattern) -> bool {
    match (is_literal(a), is_literal(b)) {
        (true, true) => a.as_str() == b.as_str(),
        (true, false) => b.is_match(a.as_str()),
        (false, true) => a.is_match(b.as_str()),
        // Two globs: compare the literal prefixes; deciding intersection exactly is not needed
        // for a warning.
        (false, false) => {
            let pa = literal_prefix(a.as_str());
            let pb = literal_prefix(b.as_str());
            pa.starts_with(pb) || pb.starts_with(pa)
        }
    }
}

fn literal_prefix(s: &str) -> &str {
    let end = s.find(['*', '?', '[', '{', '\\']).unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(yaml: &str) -> WorkloadSelector {
        serde_yaml::from_str(yaml).expect("selector")
    }

    #[test]
    fn overlap_is_conservative() {
        assert!(may_overlap(
            &sel("{image: 'nginx:*'}"),
            &sel("{image: 'nginx:1'}")
        ));
        assert!(!may_overlap(
            &sel("{image: 'nginx:*'}"),
            &sel("{image: 'redis:1'}")
        ));
        assert!(may_overlap(
            &sel("{image: 'nginx:*'}"),
            &sel("{cgroup: /a}")
        ));
        assert!(!may_overlap(
            &sel("{cgroup: '/a/*'}"),
            &sel("{cgroup: '/b/*'}")
        ));
        assert!(!may_overlap(&sel("{image: x}"), &sel("{container: false}")));
        assert_eq!(specificity(&sel("{image: x, cgroup: /y}")), 2);
        assert_eq!(
            specificity(&sel("{labels: {a: b, c: d}, container: true}")),
            3
        );
    }
}
