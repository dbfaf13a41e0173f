//! Where decide reads namespaces and Instrumentations from. The admission path
//! only ever reads memory: [`StaticView`] here (config and files), and later a
//! kube-rs reflector-backed view. Never an API call per request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;

use crate::instrumentation::Instrumentation;
use crate::otelcol::Collector;

/// The parts of a Namespace that opt-in reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Read-only, in-memory lookups for the admission path.
pub trait ClusterView: Send + Sync {
    /// The namespace's labels and annotations, if known.
    fn namespace(&self, name: &str) -> Option<Arc<NamespaceMeta>>;
    /// Every Instrumentation in `ns`, sorted by name.
    fn instrumentations_in(&self, ns: &str) -> Vec<Arc<Instrumentation>>;
    fn instrumentation(&self, ns: &str, name: &str) -> Option<Arc<Instrumentation>>;
    /// The `OpenTelemetryCollector`s with `mode: sidecar` in `ns`, sorted by name.
    fn sidecar_collectors(&self, ns: &str) -> Vec<Arc<Collector>>;
    /// One `OpenTelemetryCollector`, whatever its mode.
    fn collector(&self, ns: &str, name: &str) -> Option<Arc<Collector>>;
    /// Changes whenever anything above may have changed (a fixed view never
    /// changes): the rollout re-plans when it moves, instead of waiting for
    /// its kept plan to expire.
    fn revision(&self) -> u64 {
        0
    }
}

/// A fixed view, built from files (`inject --namespace --instrumentation`) or
/// empty when the server runs without a cluster.
#[derive(Clone, Debug, Default)]
pub struct StaticView {
    namespaces: HashMap<String, Arc<NamespaceMeta>>,
    /// Keyed by (namespace, name) so listing a namespace is a range scan.
    instrumentations: BTreeMap<(String, String), Arc<Instrumentation>>,
    collectors: BTreeMap<(String, String), Arc<Collector>>,
}

// === impl NamespaceMeta ===

impl From<&Namespace> for NamespaceMeta {
    fn from(ns: &Namespace) -> Self {
        Self {
            labels: ns.metadata.labels.clone().unwrap_or_default(),
            annotations: ns.metadata.annotations.clone().unwrap_or_default(),
        }
    }
}

// === impl StaticView ===

impl StaticView {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_namespace(mut self, name: impl Into<String>, meta: NamespaceMeta) -> Self {
        self.namespaces.insert(name.into(), Arc::new(meta));
        self
    }

    /// Adds an Instrumentation; one without `metadata.namespace` goes to `default_ns`.
    pub fn with_instrumentation(mut self, inst: Instrumentation, default_ns: &str) -> Self {
        let ns = inst
            .metadata
            .namespace
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default_ns.to_string());
        let name = inst.metadata.name.clone().unwrap_or_default();
        self.instrumentations.insert((ns, name), Arc::new(inst));
        self
    }
}

impl StaticView {
    pub fn with_collector(mut self, c: Collector) -> Self {
        self.collectors
            .insert((c.namespace.clone(), c.name.clone()), Arc::new(c));
        self
    }
}

impl ClusterView for StaticView {
    fn sidecar_collectors(&self, ns: &str) -> Vec<Arc<Collector>> {
        self.collectors
            .iter()
            .filter(|((n, _), c)| n == ns && c.is_sidecar())
            .map(|(_, c)| Arc::clone(c))
            .collect()
    }

    fn collector(&self, ns: &str, name: &str) -> Option<Arc<Collector>> {
        self.collectors
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    fn namespace(&self, name: &str) -> Option<Arc<NamespaceMeta>> {
        self.namespaces.get(name).cloned()
    }

    fn instrumentations_in(&self, ns: &str) -> Vec<Arc<Instrumentation>> {
        self.instrumentations
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|(_, i)| Arc::clone(i))
            .collect()
    }

    fn instrumentation(&self, ns: &str, name: &str) -> Option<Arc<Instrumentation>> {
        self.instrumentations
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }
}
