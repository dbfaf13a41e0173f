//! Cluster awareness (SPEC §6): in-memory caches of Namespaces and
//! Instrumentations, kept current by kube-rs watchers.
//!
//! Admission reads only these caches, so it makes no API call. Each cache is
//! an immutable map behind an [`ArcSwap`]: readers take a snapshot without a
//! lock; the watcher task replaces the map on each change. A re-list builds a
//! fresh map and swaps it in whole, so readers never see a half-listed cache.
//! When the API server goes away the watchers retry with backoff and the last
//! good maps keep serving.
//!
//! We keep only what admission needs: a namespace's labels and annotations,
//! and each Instrumentation's parsed, validated spec. An Instrumentation that
//! does not parse or validate is logged and left out, never fatal: a typed
//! watcher would fail the whole list on one bad object, so the watch is
//! untyped and each object is converted on its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use crate::config::ClusterMode;
use crate::inject::cluster_view::{ClusterView, NamespaceMeta};
use crate::instrumentation::{self, Instrumentation, InstrumentationSpec};
use crate::metrics::Metrics;
use crate::otelcol::{self, Collector};
use crate::server::admin::Gate;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--cluster on: no usable kubeconfig or in-cluster service account: {0}")]
    NoConfig(String),
    #[error("--cluster on: cannot reach the API server: {0}")]
    Unreachable(String),
}

/// One watched kind, keyed `name` (namespaces) or `namespace/name`.
#[derive(Debug)]
struct Index<V> {
    map: ArcSwap<HashMap<String, Arc<V>>>,
    /// A re-list in progress; swapped in whole at `InitDone`.
    pending: std::sync::Mutex<Option<HashMap<String, Arc<V>>>>,
    ready: AtomicBool,
}

/// The caches admission reads.
#[derive(Debug)]
pub struct Caches {
    namespaces: Index<NamespaceMeta>,
    instrumentations: Index<Instrumentation>,
    /// Every `OpenTelemetryCollector` (any mode, so a named non-sidecar one
    /// gets a precise warning), its config defaulted once here.
    collectors: Index<Collector>,
}

// === impl Index ===

impl<V> Default for Index<V> {
    fn default() -> Self {
        Self {
            map: ArcSwap::from_pointee(HashMap::new()),
            pending: std::sync::Mutex::new(None),
            ready: AtomicBool::new(false),
        }
    }
}

impl<V> Index<V> {
    fn get(&self, key: &str) -> Option<Arc<V>> {
        self.map.load().get(key).cloned()
    }

    fn upsert(&self, key: String, value: V) {
        let value = Arc::new(value);
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(key.clone(), value.clone());
            m
        });
    }

    fn remove(&self, key: &str) {
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(key);
            m
        });
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, Arc<V>>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending_reset(&self) {
        *self.pending() = Some(HashMap::new());
    }

    fn pending_insert(&self, key: String, value: V) {
        self.pending()
            .get_or_insert_with(HashMap::new)
            .insert(key, Arc::new(value));
    }

    fn pending_commit(&self) {
        let fresh = self.pending().take().unwrap_or_default();
        self.map.store(Arc::new(fresh));
    }

    fn len(&self) -> usize {
        self.map.load().len()
    }
}

// === impl Caches ===

impl Caches {
    /// Empty caches that are not ready; filled by [`Caches::start`].
    pub fn new() -> Self {
        Self {
            namespaces: Index::default(),
            instrumentations: Index::default(),
            collectors: Index::default(),
        }
    }

    /// True once every kind has been listed at least once.
    pub fn is_ready(&self) -> bool {
        self.namespaces.ready.load(Ordering::SeqCst)
            && self.instrumentations.ready.load(Ordering::SeqCst)
            && self.collectors.ready.load(Ordering::SeqCst)
    }

    /// Starts both watchers. `gate` turns ready after the first full list of both.
    pub fn start(
        self: &Arc<Self>,
        client: kube::Client,
        metrics: Arc<Metrics>,
        gate: Gate,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let ns_api: Api<Namespace> = Api::all(client.clone());
        let ns_stream = watcher::watcher(ns_api, watcher::Config::default()).default_backoff();
        let inst_api: Api<DynamicObject> =
            Api::all_with(client.clone(), &instrumentation_resource());
        let inst_stream = watcher::watcher(inst_api, watcher::Config::default()).default_backoff();
        let col_api: Api<DynamicObject> = Api::all_with(client, &collector_resource());
        let col_stream = watcher::watcher(col_api, watcher::Config::default()).default_backoff();

        let on_change = {
            let caches = self.clone();
            let metrics = metrics.clone();
            move || {
                metrics
                    .cluster_objects
                    .get_or_create(&crate::metrics::KindLabels { kind: "namespace" })
                    .set(caches.namespaces.len() as i64);
                metrics
                    .cluster_objects
                    .get_or_create(&crate::metrics::KindLabels {
                        kind: "instrumentation",
                    })
                    .set(caches.instrumentations.len() as i64);
                metrics
                    .cluster_objects
                    .get_or_create(&crate::metrics::KindLabels {
                        kind: "opentelemetrycollector",
                    })
                    .set(caches.collectors.len() as i64);
                let ready = caches.is_ready();
                metrics.cluster_ready.set(i64::from(ready));
                gate.set(ready);
            }
        };
        let caches = self.clone();
        let ns_task = tokio::spawn(run(
            "namespaces",
            ns_stream,
            stop.clone(),
            on_change.clone(),
            move |ev| caches.apply_namespace(ev),
        ));
        let caches = self.clone();
        let inst_task = tokio::spawn(run(
            "instrumentations",
            inst_stream,
            stop.clone(),
            on_change.clone(),
            move |ev| caches.apply_instrumentation(ev),
        ));
        let caches = self.clone();
        let col_task = tokio::spawn(run(
            "opentelemetrycollectors",
            col_stream,
            stop,
            on_change,
            move |ev| caches.apply_collector(ev),
        ));
        vec![ns_task, inst_task, col_task]
    }

    fn apply_namespace(&self, ev: Event<Namespace>) {
        apply(
            &self.namespaces,
            ev,
            |ns: Namespace| {
                let name = ns.metadata.name?;
                Some((
                    name,
                    NamespaceMeta {
                        labels: ns.metadata.labels.unwrap_or_default(),
                        annotations: ns.metadata.annotations.unwrap_or_default(),
                    },
                ))
            },
            |ns| ns.metadata.name.clone(),
        );
    }

    fn apply_instrumentation(&self, ev: Event<DynamicObject>) {
        apply(&self.instrumentations, ev, convert_instrumentation, |o| {
            Some(format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or_default(),
                o.metadata.name.as_deref().unwrap_or_default()
            ))
        });
    }
}

impl Caches {
    fn apply_collector(&self, ev: Event<DynamicObject>) {
        apply(&self.collectors, ev, convert_collector, |o| {
            Some(format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or_default(),
                o.metadata.name.as_deref().unwrap_or_default()
            ))
        });
    }
}

impl ClusterView for Caches {
    /// Sidecar-mode collectors in `namespace`, sorted by name.
    fn sidecar_collectors(&self, namespace: &str) -> Vec<Arc<Collector>> {
        let map = self.collectors.map.load();
        let mut out: Vec<Arc<Collector>> = map
            .values()
            .filter(|c| c.namespace == namespace && c.is_sidecar())
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn collector(&self, namespace: &str, name: &str) -> Option<Arc<Collector>> {
        self.collectors.get(&format!("{namespace}/{name}"))
    }

    fn namespace(&self, name: &str) -> Option<Arc<NamespaceMeta>> {
        self.namespaces.get(name)
    }

    fn instrumentation(&self, namespace: &str, name: &str) -> Option<Arc<Instrumentation>> {
        self.instrumentations.get(&format!("{namespace}/{name}"))
    }

    /// Instrumentations in `namespace`, sorted by name.
    fn instrumentations_in(&self, namespace: &str) -> Vec<Arc<Instrumentation>> {
        let map = self.instrumentations.map.load();
        let mut out: Vec<Arc<Instrumentation>> = map
            .values()
            .filter(|i| i.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out
    }
}

impl Default for Caches {
    fn default() -> Self {
        Self::new()
    }
}

/// Applies one watcher event to an index. `convert` returns `None` for an
/// object to leave out; `key_of` names an object even when it does not convert,
/// so a now-invalid update or a delete removes the old entry.
fn apply<K, V>(
    index: &Index<V>,
    ev: Event<K>,
    convert: impl Fn(K) -> Option<(String, V)>,
    key_of: impl Fn(&K) -> Option<String>,
) {
    match ev {
        Event::Init => {
            index.pending_reset();
        }
        Event::InitApply(obj) => {
            if let Some((k, v)) = convert(obj) {
                index.pending_insert(k, v);
            }
        }
        Event::InitDone => {
            index.pending_commit();
            index.ready.store(true, Ordering::SeqCst);
        }
        Event::Apply(obj) => {
            let key = key_of(&obj);
            match convert(obj) {
                Some((k, v)) => index.upsert(k, v),
                None => {
                    if let Some(k) = key {
                        index.remove(&k);
                    }
                }
            }
        }
        Event::Delete(obj) => {
            if let Some(k) = key_of(&obj) {
                index.remove(&k);
            }
        }
    }
}

async fn run<K, S>(
    what: &'static str,
    stream: S,
    mut stop: watch::Receiver<bool>,
    on_change: impl Fn() + Send + 'static,
    mut apply_event: impl FnMut(Event<K>) + Send + 'static,
) where
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    K: Send,
{
    let mut stream = std::pin::pin!(stream);
    let mut healthy = true;
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = stop.wait_for(|s| *s) => return,
        };
        match next {
            Some(Ok(ev)) => {
                if !healthy {
                    tracing::info!(what, "watch recovered");
                    healthy = true;
                }
                apply_event(ev);
                on_change();
            }
            Some(Err(e)) => {
                // The backoff wrapper retries; the last good cache keeps serving.
                if healthy {
                    tracing::warn!(what, error = %e, "watch failed; retrying with backoff, serving from the last cache");
                }
                healthy = false;
            }
            None => return,
        }
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

/// Reads one collector; one that does not parse is logged and left out.
fn convert_collector(obj: DynamicObject) -> Option<(String, Collector)> {
    let value = serde_json::to_value(&obj).ok()?;
    match Collector::from_object(&value, "") {
        Ok(c) => Some((c.key(), c)),
        Err(e) => {
            tracing::warn!(collector = %format!("{}/{}", obj.metadata.namespace.as_deref().unwrap_or_default(), obj.metadata.name.as_deref().unwrap_or_default()), error = %e, "invalid OpenTelemetryCollector ignored");
            None
        }
    }
}

/// Parses and validates one Instrumentation; invalid ones are logged and left out.
fn convert_instrumentation(obj: DynamicObject) -> Option<(String, Instrumentation)> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let spec_value = obj.data.get("spec").cloned().unwrap_or_default();
    let spec: InstrumentationSpec = match serde_path_to_error::deserialize(&spec_value) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(instrumentation = %format!("{ns}/{name}"), field = %format!("spec.{}", e.path()), error = %e.inner(), "invalid Instrumentation ignored");
            return None;
        }
    };
    let problems = spec.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("spec.{p}")).collect();
        tracing::warn!(instrumentation = %format!("{ns}/{name}"), problems = %list.join("; "), "invalid Instrumentation ignored");
        return None;
    }
    Some((
        format!("{ns}/{name}"),
        Instrumentation {
            metadata: obj.metadata,
            spec,
        },
    ))
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
