//! Cluster awareness (SPEC §6): in-memory caches of Namespaces,
//! Instrumentations and OpenTelemetryCollectors, kept current by kube-rs
//! watchers.
//!
//! Admission reads only these caches, so it makes no API call. Each kind is
//! an index (`index.rs`) that its watcher task updates in place, one object
//! per event, and that readers look up under a read lock held for the
//! lookup alone; a re-list is built aside and swapped in whole at
//! `InitDone`, so readers never see a half-listed cache. Namespaced kinds
//! are grouped by namespace, names in order, so "the namespace's only
//! Instrumentation" is one hash lookup. When the API server goes away the
//! watchers retry with backoff and the last good indexes keep serving.
//!
//! We keep only what admission needs (`watch.rs`): a namespace's labels and
//! annotations, watched metadata-only, and each Instrumentation's parsed,
//! validated spec and each collector's defaulted config. An object that does
//! not parse or validate is logged and left out, never fatal.

mod index;
pub mod inventory;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use tokio::sync::watch as signal;

use crate::config::ClusterMode;
use crate::inject::cluster_view::{ClusterView, NamespaceMeta};
use crate::instrumentation::{self, Instrumentation};
use crate::metrics::Metrics;
use crate::otelcol::{self, Collector};
use crate::server::admin::Gate;
use index::{ByName, ByNamespace, Store, Writer};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--cluster on: no usable kubeconfig or in-cluster service account: {0}")]
    NoConfig(String),
    #[error("--cluster on: cannot reach the API server: {0}")]
    Unreachable(String),
}

/// The caches admission reads.
#[derive(Debug, Default)]
pub struct Caches {
    namespaces: Arc<Store<ByName<NamespaceMeta>>>,
    instrumentations: Arc<Store<ByNamespace<Instrumentation>>>,
    /// Every `OpenTelemetryCollector` (any mode, so a named non-sidecar one
    /// gets a precise warning), its config defaulted once here.
    collectors: Arc<Store<ByNamespace<Collector>>>,
}

// === impl Caches ===

impl Caches {
    /// Empty caches that are not ready; filled by [`Caches::start`].
    pub fn new() -> Self {
        Self::default()
    }

    /// True once every kind has been listed at least once.
    pub fn is_ready(&self) -> bool {
        self.namespaces.is_ready() && self.instrumentations.is_ready() && self.collectors.is_ready()
    }

    /// Starts the three watchers. `gate` turns ready after the first full
    /// list of every kind.
    pub fn start(
        self: &Arc<Self>,
        client: kube::Client,
        metrics: Arc<Metrics>,
        gate: Gate,
        stop: signal::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        // Metadata-only: kube-rs asks for `PartialObjectMetadata`.
        let ns_api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let ns_stream = watcher::watcher(ns_api, watcher::Config::default()).default_backoff();
        let inst_api: Api<DynamicObject> =
            Api::all_with(client.clone(), &instrumentation_resource());
        let inst_stream = watcher::watcher(inst_api, watcher::Config::default()).default_backoff();
        let col_api: Api<DynamicObject> = Api::all_with(client, &collector_resource());
        let col_stream = watcher::watcher(col_api, watcher::Config::default()).default_backoff();

        let on_change = {
            let caches = self.clone();
            move || {
                for (kind, len) in [
                    ("namespace", caches.namespaces.len()),
                    ("instrumentation", caches.instrumentations.len()),
                    ("opentelemetrycollector", caches.collectors.len()),
                ] {
                    metrics
                        .cluster_objects
                        .get_or_create(&crate::metrics::KindLabels { kind })
                        .set(len as i64);
                }
                let ready = caches.is_ready();
                metrics.cluster_ready.set(i64::from(ready));
                gate.set(ready);
            }
        };
        let mut namespaces = Writer::new(self.namespaces.clone());
        let ns_task = tokio::spawn(watch::run(
            "namespaces",
            ns_stream,
            stop.clone(),
            on_change.clone(),
            move |ev| {
                if let Some(u) = watch::update(ev, watch::convert_namespace, watch::namespace_key) {
                    namespaces.update(u);
                }
            },
        ));
        let mut instrumentations = Writer::new(self.instrumentations.clone());
        let inst_task = tokio::spawn(watch::run(
            "instrumentations",
            inst_stream,
            stop.clone(),
            on_change.clone(),
            move |ev| {
                if let Some(u) =
                    watch::update(ev, watch::convert_instrumentation, watch::object_key)
                {
                    instrumentations.update(u);
                }
            },
        ));
        let mut collectors = Writer::new(self.collectors.clone());
        let col_task = tokio::spawn(watch::run(
            "opentelemetrycollectors",
            col_stream,
            stop,
            on_change,
            move |ev| {
                if let Some(u) = watch::update(ev, watch::convert_collector, watch::object_key) {
                    collectors.update(u);
                }
            },
        ));
        vec![ns_task, inst_task, col_task]
    }
}

impl ClusterView for Caches {
    /// Sidecar-mode collectors in `namespace`, sorted by name; only that
    /// namespace's collectors are visited.
    fn sidecar_collectors(&self, namespace: &str) -> Vec<Arc<Collector>> {
        self.collectors
            .read()
            .in_namespace(namespace)
            .filter(|c| c.is_sidecar())
            .cloned()
            .collect()
    }

    fn collector(&self, namespace: &str, name: &str) -> Option<Arc<Collector>> {
        self.collectors.read().get(namespace, name).cloned()
    }

    fn namespace(&self, name: &str) -> Option<Arc<NamespaceMeta>> {
        self.namespaces.read().get(name).cloned()
    }

    fn instrumentation(&self, namespace: &str, name: &str) -> Option<Arc<Instrumentation>> {
        self.instrumentations.read().get(namespace, name).cloned()
    }

    /// Instrumentations in `namespace`, sorted by name: one hash lookup,
    /// then that namespace's own entries, so the `inject-*: "true"` case
    /// (its only Instrumentation) is O(1) whatever the cluster holds.
    fn instrumentations_in(&self, namespace: &str) -> Vec<Arc<Instrumentation>> {
        let live = self.instrumentations.read();
        let mut out = Vec::with_capacity(live.count_in(namespace));
        out.extend(live.in_namespace(namespace).cloned());
        out
    }
}

/// `opentelemetry.io/v1alpha1` `Instrumentation`, plural `instrumentations`.
pub fn instrumentation_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("opentelemetry.io", "v1alpha1", instrumentation::KIND),
        "instrumentations",
    )
}

/// `opentelemetry.io/v1beta1` `OpenTelemetryCollector`; the API server
/// serves `v1alpha1` objects through it.
pub fn collector_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(otelcol::GROUP, otelcol::VERSION, otelcol::KIND),
        otelcol::PLURAL,
    )
}

/// Connects per `--cluster`. `Ok(None)` means: run from the config alone.
/// Also returns the API server's `(major, minor)`, read once here, which
/// decides `sidecar.native: auto` (`None` when the version is unparseable).
pub async fn connect(
    mode: ClusterMode,
) -> Result<Option<(kube::Client, Option<(u32, u32)>)>, ClusterError> {
    if mode == ClusterMode::Off {
        tracing::info!("--cluster off: running from the config file alone");
        return Ok(None);
    }
    let config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) if mode == ClusterMode::Auto => {
            tracing::info!(reason = %e, "no kubeconfig or in-cluster service account found: running from the config file alone");
            return Ok(None);
        }
        Err(e) => return Err(ClusterError::NoConfig(e.to_string())),
    };
    let client = match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) if mode == ClusterMode::Auto => {
            tracing::info!(reason = %e, "cannot build a cluster client: running from the config file alone");
            return Ok(None);
        }
        Err(e) => return Err(ClusterError::NoConfig(e.to_string())),
    };
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(v)) => {
            tracing::info!(version = %v.git_version, "connected to the cluster");
            let parsed = crate::inject::context::parse_server_version(&v.major, &v.minor);
            Ok(Some((client, parsed)))
        }
        Ok(Err(e)) if mode == ClusterMode::Auto => {
            tracing::info!(reason = %e, "API server unreachable: running from the config file alone");
            Ok(None)
        }
        Err(_) if mode == ClusterMode::Auto => {
            tracing::info!("API server did not answer in 5s: running from the config file alone");
            Ok(None)
        }
        Ok(Err(e)) => Err(ClusterError::Unreachable(e.to_string())),
        Err(_) => Err(ClusterError::Unreachable("no answer in 5s".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use kube::api::ObjectMeta;
    use proptest::prelude::*;

    use super::index::Update;
    use super::*;

    fn inst(ns: &str, name: &str) -> Instrumentation {
        Instrumentation {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            spec: Default::default(),
        }
    }

    fn key(ns: &str, name: &str) -> (String, String) {
        (ns.into(), name.into())
    }

    #[test]
    fn ready_only_once_every_kind_is_listed_and_through_a_relist() {
        let caches = Caches::new();
        let mut ns = Writer::new(caches.namespaces.clone());
        let mut insts = Writer::new(caches.instrumentations.clone());
        let mut cols = Writer::new(caches.collectors.clone());
        assert!(!caches.is_ready());
        ns.update(Update::Init);
        ns.update(Update::InitApply("shop".into(), NamespaceMeta::default()));
        ns.update(Update::InitDone);
        insts.update(Update::Init);
        insts.update(Update::InitDone);
        assert!(!caches.is_ready(), "collectors not listed yet");
        assert!(caches.namespace("shop").is_some(), "served already");
        cols.update(Update::Init);
        assert!(!caches.is_ready());
        cols.update(Update::InitDone);
        assert!(caches.is_ready());
        ns.update(Update::Init);
        assert!(caches.is_ready(), "a re-list keeps the last list");
        assert!(caches.namespace("shop").is_some());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Apply(u8, u8),
        Delete(u8, u8),
        Relist(Vec<(u8, u8)>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..4u8, 0..6u8).prop_map(|(n, i)| Op::Apply(n, i)),
            2 => (0..4u8, 0..6u8).prop_map(|(n, i)| Op::Delete(n, i)),
            1 => prop::collection::vec((0..4u8, 0..6u8), 0..12).prop_map(Op::Relist),
        ]
    }

    proptest! {
        /// Any sequence of events and re-lists gives, for every namespace,
        /// the answer the scan-and-sort over every Instrumentation gave:
        /// the same objects, in the same (name) order, so `true` picks the
        /// same only one and names the same ambiguous ones.
        #[test]
        fn the_namespace_index_answers_as_the_scan_did(ops in prop::collection::vec(op(), 0..40)) {
            let caches = Caches::new();
            let mut w = Writer::new(caches.instrumentations.clone());
            let mut model: BTreeSet<(String, String)> = BTreeSet::new();
            let name = |n: u8, i: u8| (format!("ns-{n}"), format!("i-{i}"));
            for op in ops {
                match op {
                    Op::Apply(n, i) => {
                        let (ns, nm) = name(n, i);
                        w.update(Update::Apply(key(&ns, &nm), inst(&ns, &nm)));
                        model.insert((ns, nm));
                    }
                    Op::Delete(n, i) => {
                        let (ns, nm) = name(n, i);
                        w.update(Update::Delete(key(&ns, &nm)));
                        model.remove(&(ns, nm));
                    }
                    Op::Relist(list) => {
                        w.update(Update::Init);
                        model.clear();
                        for (n, i) in list {
                            let (ns, nm) = name(n, i);
                            w.update(Update::InitApply(key(&ns, &nm), inst(&ns, &nm)));
                            model.insert((ns, nm));
                        }
                        w.update(Update::InitDone);
                    }
                }
                for n in 0..4u8 {
                    let ns = format!("ns-{n}");
                    // Today's answer: every Instrumentation, filtered, sorted by name.
                    let mut scan: Vec<&(String, String)> =
                        model.iter().filter(|(m, _)| *m == ns).collect();
                    scan.sort_by(|a, b| a.1.cmp(&b.1));
                    let scan: Vec<&str> = scan.iter().map(|(_, nm)| nm.as_str()).collect();
                    let got: Vec<String> = caches
                        .instrumentations_in(&ns)
                        .iter()
                        .map(|i| i.metadata.name.clone().unwrap_or_default())
                        .collect();
                    prop_assert_eq!(got, scan);
                }
                prop_assert_eq!(caches.instrumentations.len(), model.len());
            }
        }
    }
}
