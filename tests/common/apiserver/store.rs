//! The fake API server's state: the stored objects, their resource
//! versions, the change log watches replay, and its compaction.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{FakeApiServer, Refusal};

pub const NAMESPACES: &str = "namespaces";
pub const INSTRUMENTATIONS: &str = "instrumentations";
pub const COLLECTORS: &str = "opentelemetrycollectors";
pub const EVENTS: &str = "events";
pub const DEPLOYMENTS: &str = "deployments";
pub const STATEFULSETS: &str = "statefulsets";
pub const DAEMONSETS: &str = "daemonsets";
pub const PODS: &str = "pods";
pub const LEASES: &str = "leases";
pub const INGRESSES: &str = "ingresses";
/// Gatekeeper's `Config` (`config.gatekeeper.sh/v1alpha1`), read with GET.
pub const GATEKEEPER_CONFIGS: &str = "configs";

/// The kinds the watched store holds; [`super::any::fallback`] reads the
/// rest from the second store.
pub(super) const WATCHED: [&str; 10] = [
    NAMESPACES,
    INSTRUMENTATIONS,
    COLLECTORS,
    DEPLOYMENTS,
    STATEFULSETS,
    DAEMONSETS,
    PODS,
    LEASES,
    INGRESSES,
    EVENTS,
];

/// One entry of the change log: what a watch streams.
#[derive(Clone)]
pub(super) struct Change {
    pub(super) rv: u64,
    pub(super) resource: &'static str,
    pub(super) kind: &'static str,
    pub(super) object: Value,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) rv: u64,
    pub(super) objects: BTreeMap<(&'static str, String), Value>,
    pub(super) log: Vec<Change>,
    /// Changes up to here are forgotten ([`FakeApiServer::compact`]).
    pub(super) compacted: u64,
    /// Resources whose list and watch answer 503.
    pub(super) unavailable: BTreeSet<&'static str>,
    /// Resources whose list and watch are refused (404, 403) or fail (500).
    pub(super) refused: BTreeMap<&'static str, Refusal>,
    /// The Accept header of each list or watch, by resource.
    pub(super) accepts: Vec<(&'static str, String)>,
    /// When each workload PATCH that succeeded arrived, and on what.
    pub(super) patches: Vec<(std::time::Instant, String)>,
    /// Everything else, by `group/version/resource` ([`super::any`]).
    pub(super) other: BTreeMap<(String, String), Value>,
    /// Verbs `SelfSubjectAccessReview` denies: (verb, group, resource).
    pub(super) denied: Vec<(String, String, String)>,
    /// What `/version` reports.
    pub(super) version: Option<(u32, u32)>,
}

/// An object's key in the store: `namespace/name`.
pub(super) fn key(object: &Value) -> String {
    let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    format!("{ns}/{name}")
}

impl FakeApiServer {
    /// Creates or replaces an object; watchers see ADDED or MODIFIED.
    pub fn apply(&self, resource: &'static str, mut object: Value) {
        let mut inner = self.inner.lock().expect("lock");
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let k = (resource, key(&object));
        let kind = if inner.objects.contains_key(&k) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.objects.insert(k, object.clone());
        let change = Change {
            rv,
            resource,
            kind,
            object,
        };
        inner.log.push(change.clone());
        let _ = self.events.send(change);
    }

    pub fn delete(&self, resource: &'static str, namespace: &str, name: &str) {
        let mut inner = self.inner.lock().expect("lock");
        inner.rv += 1;
        let rv = inner.rv;
        if let Some(mut object) = inner
            .objects
            .remove(&(resource, format!("{namespace}/{name}")))
        {
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            let change = Change {
                rv,
                resource,
                kind: "DELETED",
                object,
            };
            inner.log.push(change.clone());
            let _ = self.events.send(change);
        }
    }

    /// Forgets the change history, as etcd compaction does: a watch from an
    /// older resourceVersion is answered `410 Gone`, and the client must
    /// list again to learn what changed (deletions included).
    pub fn compact(&self) {
        let mut inner = self.inner.lock().expect("lock");
        inner.compacted = inner.rv;
        inner.log.clear();
    }

    /// Every stored object of `resource`.
    pub fn objects(&self, resource: &'static str) -> Vec<Value> {
        let inner = self.inner.lock().expect("lock");
        inner
            .objects
            .iter()
            .filter(|((r, _), _)| *r == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }
}
