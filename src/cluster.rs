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
//!
//! A kind the API server does not serve (404: the Operator's CRDs are not
//! installed) or that RBAC forbids (403) does not hold readiness back: its
//! cache counts as synced and empty, it is logged once with what that means
//! for pods, counted (`cluster_watch_errors_total{kind,reason}`), shown
//! (`cluster_kind_available{kind} 0`) and looked up again every
//! [`RETRY_ABSENT`]; once served, its objects fill the cache.

mod index;
pub mod inventory;
mod watch;
pub use watch::{parse_collector, parse_instrumentation};

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::watcher;
use tokio::sync::watch as signal;

use crate::config::ClusterMode;
use crate::inject::cluster_view::{ClusterView, NamespaceMeta};
use crate::instrumentation::{self, Instrumentation};
use crate::metrics::Metrics;
use crate::otelcol::{self, Collector};
use crate::server::admin::Gate;
use index::{ByName, ByNamespace, Index, Store, Writer};
use watch::{Availability, Failure, Presence, Watched};

/// How often a kind the API server does not serve, or RBAC forbids, is
/// looked up again: a CRD installed later is picked up within this.
pub const RETRY_ABSENT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no usable kubeconfig or in-cluster service account: {0}")]
    NoConfig(String),
    #[error("cannot reach the API server: {0}")]
    Unreachable(String),
}

/// The caches admission reads.
#[derive(Debug)]
pub struct Caches {
    namespaces: Cached<ByName<NamespaceMeta>>,
    instrumentations: Cached<ByNamespace<Instrumentation>>,
    /// Every `OpenTelemetryCollector` (any mode, so a named non-sidecar one
    /// gets a precise warning), its config defaulted once here.
    collectors: Cached<ByNamespace<Collector>>,
    retry_absent: Duration,
}

/// One kind's cache and what its watch learned about the kind.
#[derive(Debug)]
struct Cached<I> {
    store: Arc<Store<I>>,
    presence: Arc<Presence>,
}

impl<I: Index> Cached<I> {
    /// Listed, or refused before it ever listed (synced and empty).
    fn is_ready(&self) -> bool {
        self.store.is_ready() || self.presence.is_absent()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, I> {
        self.store.read()
    }

    fn len(&self) -> usize {
        self.store.len()
    }
}

impl<I: Default> Default for Cached<I> {
    fn default() -> Self {
        Self {
            store: Arc::default(),
            presence: Arc::default(),
        }
    }
}

/// The `kind` label of each cache's metrics, in `start`'s order.
const KINDS: [&str; 3] = ["namespace", "instrumentation", "opentelemetrycollector"];

// === impl Caches ===

impl Default for Caches {
    fn default() -> Self {
        Self::with_absent_retry(RETRY_ABSENT)
    }
}

impl Caches {
    /// Empty caches that are not ready; filled by [`Caches::start`].
    pub fn new() -> Self {
        Self::default()
    }

    /// As [`Caches::new`], looking an absent kind up again every `retry`
    /// instead of [`RETRY_ABSENT`] (tests).
    pub fn with_absent_retry(retry: Duration) -> Self {
        Self {
            namespaces: Cached::default(),
            instrumentations: Cached::default(),
            collectors: Cached::default(),
            retry_absent: retry,
        }
    }

    /// True once every kind has been listed at least once, or refused
    /// (404/403) before it ever listed.
    pub fn is_ready(&self) -> bool {
        self.namespaces.is_ready() && self.instrumentations.is_ready() && self.collectors.is_ready()
    }

    /// Starts the three watchers. `gate` turns ready once every kind is
    /// listed or known to be absent.
    pub fn start(
        self: &Arc<Self>,
        client: kube::Client,
        metrics: Arc<Metrics>,
        gate: Gate,
        stop: signal::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        metrics.zero_cluster_watch_errors(&KINDS, &Failure::ALL.map(Failure::as_str));
        // Metadata-only: kube-rs asks for `PartialObjectMetadata`. Bare
        // watchers: `watch::run` backs off itself.
        let ns_api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let ns_stream = watcher::watcher(ns_api, watcher::Config::default());
        let inst_resource = instrumentation_resource();
        let inst_api: Api<DynamicObject> = Api::all_with(client.clone(), &inst_resource);
        let inst_stream = watcher::watcher(inst_api, watcher::Config::default());
        let col_resource = collector_resource();
        let col_api: Api<DynamicObject> = Api::all_with(client, &col_resource);
        let col_stream = watcher::watcher(col_api, watcher::Config::default());

        let on_change = {
            let (caches, metrics) = (self.clone(), metrics.clone());
            move || {
                for (kind, len, presence) in [
                    (
                        KINDS[0],
                        caches.namespaces.len(),
                        &caches.namespaces.presence,
                    ),
                    (
                        KINDS[1],
                        caches.instrumentations.len(),
                        &caches.instrumentations.presence,
                    ),
                    (
                        KINDS[2],
                        caches.collectors.len(),
                        &caches.collectors.presence,
                    ),
                ] {
                    let labels = crate::metrics::KindLabels { kind };
                    metrics
                        .cluster_objects
                        .get_or_create(&labels)
                        .set(len as i64);
                    let available = match presence.get() {
                        Availability::Unknown => None,
                        Availability::Listed => Some(1),
                        Availability::Absent(_) => Some(0),
                    };
                    if let Some(v) = available {
                        metrics.cluster_kind_available.get_or_create(&labels).set(v);
                    }
                }
                let ready = caches.is_ready();
                metrics.cluster_ready.set(i64::from(ready));
                gate.set(ready);
            }
        };
        let on_error = |kind: &'static str| {
            let metrics = metrics.clone();
            move |failure: Failure| {
                metrics
                    .cluster_watch_errors
                    .get_or_create(&crate::metrics::ClusterWatchErrorLabels {
                        kind,
                        reason: failure.as_str(),
                    })
                    .inc();
            }
        };
        let watched = |what, resource: String, means, presence: &Arc<Presence>| Watched {
            what,
            resource,
            absent_means: means,
            retry_absent: self.retry_absent,
            presence: presence.clone(),
        };
        let mut namespaces = Writer::new(self.namespaces.store.clone());
        let ns_task = tokio::spawn(watch::run(
            watched(
                "namespaces",
                "namespaces".into(),
                NAMESPACES_ABSENT,
                &self.namespaces.presence,
            ),
            ns_stream,
            stop.clone(),
            on_error(KINDS[0]),
            on_change.clone(),
            move |ev| {
                if let Some(u) = watch::update(ev, watch::convert_namespace, watch::namespace_key) {
                    namespaces.update(u);
                }
            },
        ));
        let mut instrumentations = Writer::new(self.instrumentations.store.clone());
        let inst_task = tokio::spawn(watch::run(
            watched(
                "instrumentations",
                resource_name(&inst_resource),
                INSTRUMENTATIONS_ABSENT,
                &self.instrumentations.presence,
            ),
            inst_stream,
            stop.clone(),
            on_error(KINDS[1]),
            on_change.clone(),
            move |ev| {
                if let Some(u) =
                    watch::update(ev, watch::convert_instrumentation, watch::object_key)
                {
                    instrumentations.update(u);
                }
            },
        ));
        let mut collectors = Writer::new(self.collectors.store.clone());
        let col_task = tokio::spawn(watch::run(
            watched(
                "opentelemetrycollectors",
                resource_name(&col_resource),
                COLLECTORS_ABSENT,
                &self.collectors.presence,
            ),
            col_stream,
            stop,
            on_error(KINDS[2]),
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

/// What pods get while a kind is absent, as `inject` reads the caches:
/// nothing in the cache is the same as no such objects in the cluster.
const NAMESPACES_ABSENT: &str = "namespace labels and annotations are not seen: namespace opt-in and opt-out labels, namespace annotations and namespaceSelector rules (and constraints' namespaceSelector) match nothing";
const INSTRUMENTATIONS_ABSENT: &str = "no Instrumentation resources: pods get the config's `defaults:` only (`inject-<language>: \"true\"`, rules without an `instrumentation:`), and a language whose annotation or rule names an Instrumentation is skipped (not found)";
const COLLECTORS_ABSENT: &str = "no OpenTelemetryCollector resources: sidecars come only from the config's `sidecar:` template, and pods naming a collector in `sidecar.opentelemetry.io/inject` get no sidecar";

/// `<plural>.<group>`, as RBAC and `kubectl api-resources` name it.
fn resource_name(r: &ApiResource) -> String {
    if r.group.is_empty() {
        r.plural.clone()
    } else {
        format!("{}.{}", r.plural, r.group)
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

    fn revision(&self) -> u64 {
        self.namespaces.store.revision()
            + self.instrumentations.store.revision()
            + self.collectors.store.revision()
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

/// `f`, failed with a timeout error after `limit`: a request in flight when
/// the API server goes away would otherwise hang its caller for minutes.
pub async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service(
            format!("no answer within {limit:?}").into(),
        )),
    }
}

/// An object's `namespace/name`, as logs and messages name it.
pub fn object_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
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
        let mut ns = Writer::new(caches.namespaces.store.clone());
        let mut insts = Writer::new(caches.instrumentations.store.clone());
        let mut cols = Writer::new(caches.collectors.store.clone());
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

    /// A kind refused (404/403) before it ever listed counts as synced and
    /// empty; a list of it later fills the cache, and readiness holds.
    #[test]
    fn a_kind_refused_before_it_ever_listed_is_synced_and_empty() {
        let caches = Caches::new();
        let mut ns = Writer::new(caches.namespaces.store.clone());
        let mut insts = Writer::new(caches.instrumentations.store.clone());
        let mut cols = Writer::new(caches.collectors.store.clone());
        insts.update(Update::Init);
        insts.update(Update::InitDone);
        cols.update(Update::Init);
        cols.update(Update::InitDone);
        assert!(!caches.is_ready(), "namespaces not answered yet");
        caches
            .namespaces
            .presence
            .set(Availability::Absent(Failure::NotServed));
        assert!(caches.is_ready());
        assert!(caches.namespace("shop").is_none());

        ns.update(Update::Init);
        ns.update(Update::InitApply("shop".into(), NamespaceMeta::default()));
        assert!(caches.is_ready(), "a list under way keeps it synced");
        ns.update(Update::InitDone);
        caches.namespaces.presence.set(Availability::Listed);
        assert!(caches.is_ready());
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
            let mut w = Writer::new(caches.instrumentations.store.clone());
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
