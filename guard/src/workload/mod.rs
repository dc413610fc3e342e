//! Workload selectors: which containers (or host cgroups) a policy or a response applies to.
//!
//! A [`WorkloadSelector`] is written in YAML as a mapping; every key given must match, and
//! values are shell-style globs (`*`, `?`, `[abc]`, `{a,b}`; `*` also crosses `/`):
//!
//! ```yaml
//! workload:
//!   image: "nginx:*"          # the image as the container was created with, e.g. nginx:1.27
//!   name: "web-*"             # container name, without Docker's leading `/`
//!   labels: {app: web}        # each listed label must exist and match its glob
//!   k8s_namespace: prod       # from the io.kubernetes.pod.namespace label
//!   cgroup: "/docker/*"       # cgroup v2 path, as in /proc/PID/cgroup (hosts without a runtime)
//!   container: true           # true: only containers; false: only the host (no container)
//! ```
//!
//! An empty selector matches everything. A selector with `image`, `name`, `labels` or
//! `k8s_namespace` never matches the host, nor a container whose metadata is unknown (`<NA>`,
//! Docker unreachable): an unknown value is not a match, so a selector cannot be satisfied by
//! missing data. [`WorkloadInfo`] is the view of one workload that selectors are tested on.

mod overlap;

use std::collections::BTreeMap;

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::{Deserialize, Deserializer, de};

use crate::state::container::{ContainerMeta, NA};

pub use overlap::{may_overlap, specificity};

/// A compiled glob that remembers its source text.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    /// Compiles a glob. `*` matches any string including `/`; matching is case-sensitive.
    pub fn new(text: &str) -> Result<Self, String> {
        let glob: Glob = GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("bad glob {text:?}: {}", e.kind()))?;
        Ok(Self {
            text: text.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.matcher.is_match(s)
    }
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(de::Error::custom)
    }
}

/// Which workloads something applies to. See the module documentation for the YAML shape.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default)]
    pub image: Option<Pattern>,
    #[serde(default)]
    pub name: Option<Pattern>,
    #[serde(default)]
    pub labels: BTreeMap<String, Pattern>,
    #[serde(default)]
    pub k8s_namespace: Option<Pattern>,
    #[serde(default)]
    pub cgroup: Option<Pattern>,
    #[serde(default)]
    pub container: Option<bool>,
}

/// What selectors look at for one workload. Strings are empty (or `<NA>`) when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// Full 64-hex container id; `None` for the host.
    pub container_id: Option<String>,
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub k8s_namespace: String,
    /// cgroup v2 path, as in `/proc/PID/cgroup` (`/docker/<id>`), when known.
    pub cgroup_path: Option<String>,
}

impl WorkloadInfo {
    /// The host (no container).
    pub fn host(cgroup_path: Option<String>) -> Self {
        Self {
            cgroup_path,
            ..Default::default()
        }
    }

    /// A container, from the metadata cache (fields stay `<NA>` while unknown).
    pub fn from_container(meta: &ContainerMeta, cgroup_path: Option<String>) -> Self {
        Self {
            container_id: Some(meta.id.as_str().to_owned()),
            name: meta.name.clone(),
            image: meta.image.clone(),
            labels: meta.labels.clone(),
            k8s_namespace: meta.k8s_ns_name.clone(),
            cgroup_path,
        }
    }

    /// From an alert's Falco output fields (`container.id`, `container.name`,
    /// `container.image`, `k8s.ns.name`, `container.label[...]` style keys are not in Falco's
    /// output; labels stay empty). Used for alerts that arrive over HTTP.
    pub fn from_output_fields(fields: &BTreeMap<String, serde_json::Value>) -> Self {
        let get = |k: &str| match fields.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let id = get("container.id");
        let is_host = id.is_empty() || id == "host" || id == NA;
        Self {
            container_id: (!is_host).then_some(id),
            name: get("container.name"),
            image: {
                let full = get("container.image");
                if full.is_empty() {
                    let repo = get("container.image.repository");
                    let tag = get("container.image.tag");
                    if tag.is_empty() || repo.is_empty() {
                        repo
                    } else {
                        format!("{repo}:{tag}")
                    }
                } else {
                    full
                }
            },
            labels: BTreeMap::new(),
            k8s_namespace: get("k8s.ns.name"),
            cgroup_path: None,
        }
    }

    pub fn is_container(&self) -> bool {
        self.container_id.is_some()
    }

    /// Short name for logs and audit records: container name, short id, or `host`.
    pub fn label(&self) -> String {
        if known(&self.name) {
            return self.name.clone();
        }
        match &self.container_id {
            Some(id) => id.chars().take(12).collect(),
            None => "host".into(),
        }
    }
}

fn known(s: &str) -> bool {
    !s.is_empty() && s != NA
}

impl WorkloadSelector {
    /// True when the selector has no keys (matches every workload).
    pub fn is_empty(&self) -> bool {
        *self == WorkloadSelector::default()
    }

    /// Every given key must match. Unknown values never match a pattern.
    pub fn matches(&self, w: &WorkloadInfo) -> bool {
        let field = |p: &Option<Pattern>, v: &str| match p {
            None => true,
            Some(p) => known(v) && p.is_match(v),
        };
        let needs_container = self.image.is_some()
            || self.name.is_some()
            || !self.labels.is_empty()
            || self.k8s_namespace.is_some();
        if needs_container && !w.is_container() {
            return false;
        }
        if let Some(c) = self.container
            && c != w.is_container()
        {
            return false;
        }
        if !field(&self.image, &w.image)
            || !field(&self.name, &w.name)
            || !field(&self.k8s_namespace, &w.k8s_namespace)
        {
            return false;
        }
        if !self
            .labels
            .iter()
            .all(|(k, p)| w.labels.get(k).is_some_and(|v| p.is_match(v)))
        {
            return false;
        }
        match &self.cgroup {
            None => true,
            Some(p) => w.cgroup_path.as_deref().is_some_and(|c| p.is_match(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> WorkloadInfo {
        WorkloadInfo {
            container_id: Some("a".repeat(64)),
            name: "web-1".into(),
            image: "nginx:1.27".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            k8s_namespace: "prod".into(),
            cgroup_path: Some(format!("/docker/{}", "a".repeat(64))),
        }
    }

    fn sel(yaml: &str) -> WorkloadSelector {
        serde_yaml::from_str(yaml).expect("selector")
    }

    #[test]
    fn every_key_must_match() {
        let w = web();
        assert!(WorkloadSelector::default().matches(&w));
        assert!(
            sel("{image: 'nginx:*', name: 'web-*', labels: {app: web}, k8s_namespace: prod}")
                .matches(&w)
        );
        assert!(!sel("{image: 'nginx:*', name: 'db-*'}").matches(&w));
        assert!(!sel("{labels: {app: web, tier: front}}").matches(&w));
        assert!(sel("{cgroup: '/docker/*'}").matches(&w));
        assert!(sel("{container: true}").matches(&w));
        assert!(!sel("{container: false}").matches(&w));
    }

    #[test]
    fn host_and_unknown_metadata_do_not_match_container_keys() {
        let host = WorkloadInfo::host(Some("/user.slice".into()));
        assert!(!sel("{name: '*'}").matches(&host));
        assert!(sel("{container: false}").matches(&host));
        assert!(sel("{cgroup: '/user.slice'}").matches(&host));
        let mut na = web();
        na.name = NA.into();
        na.image = NA.into();
        assert!(!sel("{name: '*'}").matches(&na), "<NA> is not a match");
        assert!(sel("{container: true}").matches(&na));
    }

    #[test]
    fn unknown_key_and_bad_glob_are_errors() {
        let e = serde_yaml::from_str::<WorkloadSelector>("{imgae: x}").expect_err("unknown key");
        assert!(e.to_string().contains("imgae"), "{e}");
        assert!(serde_yaml::from_str::<WorkloadSelector>("{name: 'a[b'}").is_err());
    }

    #[test]
    fn from_output_fields() {
        let f: BTreeMap<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "container.id": "host", "container.name": "host"
        }))
        .expect("fields");
        assert!(!WorkloadInfo::from_output_fields(&f).is_container());
        let f: BTreeMap<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "container.id": "abcdef012345", "container.name": "web",
            "container.image.repository": "nginx", "container.image.tag": "1"
        }))
        .expect("fields");
        let w = WorkloadInfo::from_output_fields(&f);
        assert_eq!(w.image, "nginx:1");
        assert!(sel("{image: 'nginx:*', name: web}").matches(&w));
    }
}
