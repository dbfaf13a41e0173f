//! A local HTTP server that speaks the Kubernetes list/watch protocol for
//! Namespaces, Instrumentations and OpenTelemetryCollectors, so kube-rs
//! watchers run for real. Like the API server it answers metadata-only
//! (`PartialObjectMetadata`) when the Accept header asks for it, and a watch
//! from a resourceVersion older than the kept history gets `410 Gone`. A
//! resource can be made to answer 503 ([`FakeApiServer::set_unavailable`],
//! which kube-rs' client retries itself), or 404, 403 or 500
//! ([`FakeApiServer::set_refused`], which reach the watcher).
//!
//! This file holds the server itself; its parts live in `apiserver/`:
//! [`store`] (objects, resource versions, change log, compaction),
//! [`faults`] (the knobs that make it misbehave), [`watch`] (lists and
//! watch streams), [`routes`] (every other route), [`any`] (plain reads of
//! any resource) and [`fixtures`] (object builders).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

// Each part by `#[path]`, as the benches include this file by `#[path]` too.
#[path = "apiserver/any.rs"]
pub mod any;
#[path = "apiserver/faults.rs"]
mod faults;
#[path = "apiserver/fixtures.rs"]
mod fixtures;
#[path = "apiserver/routes.rs"]
mod routes;
#[path = "apiserver/store.rs"]
mod store;
#[path = "apiserver/watch.rs"]
mod watch;

// Each test and bench uses some of these.
#[allow(unused_imports)]
pub use faults::Refusal;
#[allow(unused_imports)]
pub use fixtures::{collector, deployment, ingress, instrumentation, namespace, pod};
#[allow(unused_imports)]
pub use store::{
    COLLECTORS, DAEMONSETS, DEPLOYMENTS, EVENTS, GATEKEEPER_CONFIGS, INGRESSES, INSTRUMENTATIONS,
    LEASES, NAMESPACES, PODS, STATEFULSETS,
};

use store::{Change, Inner};

#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Change>,
    down: tokio::sync::watch::Sender<bool>,
    requests: Arc<AtomicUsize>,
    /// When set, PATCHed workloads do not report their rollout as done.
    pub slow_rollouts: Arc<std::sync::atomic::AtomicBool>,
    /// When non-zero, workload PATCHes fail with this HTTP status.
    pub fail_patches: Arc<std::sync::atomic::AtomicU16>,
    pub url: String,
}

impl FakeApiServer {
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(1024);
        let (down, _) = tokio::sync::watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let fake = Self {
            inner: Arc::default(),
            events,
            down,
            requests: Arc::default(),
            slow_rollouts: Arc::default(),
            fail_patches: Arc::default(),
            url,
        };
        let app = routes::router(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("uri"));
        kube::Client::try_from(config).expect("client")
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The Accept headers of the lists and watches of `resource` so far.
    pub fn accepts(&self, resource: &'static str) -> Vec<String> {
        let inner = self.inner.lock().expect("lock");
        inner
            .accepts
            .iter()
            .filter(|(r, _)| *r == resource)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// The workload PATCHes that succeeded, in order of arrival.
    pub fn patches(&self) -> Vec<(std::time::Instant, String)> {
        self.inner.lock().expect("lock").patches.clone()
    }
}
