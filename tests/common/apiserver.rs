//! A local HTTP server that speaks the Kubernetes list/watch protocol for
//! Namespaces, Instrumentations and OpenTelemetryCollectors, so kube-rs
//! watchers run for real. Like the API server it answers metadata-only
//! (`PartialObjectMetadata`) when the Accept header asks for it, and a watch
//! from a resourceVersion older than the kept history gets `410 Gone`. A
//! resource can be made to answer 503 ([`FakeApiServer::set_unavailable`],
//! which kube-rs' client retries itself), or 404, 403 or 500
//! ([`FakeApiServer::set_refused`], which reach the watcher).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

#[path = "apiserver/any.rs"]
pub mod any;

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

/// The kinds the watched store holds; [`any::fallback`] reads the rest from
/// the second store.
const WATCHED: [&str; 10] = [
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

#[derive(Clone)]
struct Change {
    rv: u64,
    resource: &'static str,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<(&'static str, String), Value>,
    log: Vec<Change>,
    /// Changes up to here are forgotten ([`FakeApiServer::compact`]).
    compacted: u64,
    /// Resources whose list and watch answer 503.
    unavailable: BTreeSet<&'static str>,
    /// Resources whose list and watch are refused (404, 403) or fail (500).
    refused: BTreeMap<&'static str, Refusal>,
    /// The Accept header of each list or watch, by resource.
    accepts: Vec<(&'static str, String)>,
    /// When each workload PATCH that succeeded arrived, and on what.
    patches: Vec<(std::time::Instant, String)>,
    /// Everything else, by `group/version/resource` ([`any`]).
    other: BTreeMap<(String, String), Value>,
    /// Verbs `SelfSubjectAccessReview` denies: (verb, group, resource).
    denied: Vec<(String, String, String)>,
    /// What `/version` reports.
    version: Option<(u32, u32)>,
}

/// How the API server answers a list or watch of a resource it will not
/// list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 404 NotFound, as for a group/version or CRD it does not serve.
    NotServed,
    /// 403 Forbidden, as when RBAC grants the client no list/watch on it.
    Forbidden,
    /// 500 InternalError (an etcd timeout, say): an outage, which kube-rs'
    /// client does not retry itself as it does a 503.
    Internal,
}

#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Change>,
    down: watch::Sender<bool>,
    requests: Arc<AtomicUsize>,
    /// When set, PATCHed workloads do not report their rollout as done.
    pub slow_rollouts: Arc<std::sync::atomic::AtomicBool>,
    /// When non-zero, workload PATCHes fail with this HTTP status.
    pub fail_patches: Arc<std::sync::atomic::AtomicU16>,
    pub url: String,
}

fn key(object: &Value) -> String {
    let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    format!("{ns}/{name}")
}

impl FakeApiServer {
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(1024);
        let (down, _) = watch::channel(false);
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
        // The cluster-scoped and all-namespace lists kube-rs watches.
        let watched = [
            ("/api/v1/namespaces", NAMESPACES),
            (
                "/apis/opentelemetry.io/v1alpha1/instrumentations",
                INSTRUMENTATIONS,
            ),
            (
                "/apis/opentelemetry.io/v1beta1/opentelemetrycollectors",
                COLLECTORS,
            ),
            ("/apis/apps/v1/deployments", DEPLOYMENTS),
            ("/apis/networking.k8s.io/v1/ingresses", INGRESSES),
            ("/apis/apps/v1/statefulsets", STATEFULSETS),
            ("/apis/apps/v1/daemonsets", DAEMONSETS),
        ];
        let app = watched
            .into_iter()
            .fold(Router::new(), |app, (path, resource)| {
                app.route(
                    path,
                    get(
                        move |s: State<FakeApiServer>,
                              q: Query<BTreeMap<String, String>>,
                              headers: HeaderMap| {
                            list_or_watch(s, q, headers, resource)
                        },
                    ),
                )
            })
            .route("/version", get(any::version))
            .route("/apis/{group}/{version}", get(discovery))
            .route(
                "/apis/config.gatekeeper.sh/v1alpha1/namespaces/{ns}/configs/{name}",
                get(get_gatekeeper_config),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(pods_metadata))
            .route(
                "/api/v1/pods",
                get(
                    |s: State<FakeApiServer>, q: Query<BTreeMap<String, String>>| {
                        pods_metadata_in(s, None, q)
                    },
                ),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/{resource}/{name}",
                get(get_workload).patch(patch_workload),
            )
            .route(
                "/apis/apps/v1/namespaces/{ns}/{resource}",
                get(list_workloads),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                axum::routing::post(create_lease),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
                get(get_lease).put(replace_lease),
            )
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events",
                axum::routing::post(create_event),
            )
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events/{name}",
                axum::routing::patch(patch_event),
            )
            .fallback(any::fallback)
            .with_state(fake.clone())
            .layer(axum::middleware::from_fn_with_state(fake.clone(), count));
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

    /// Takes the API server away (503 on every route, open watches end) or
    /// brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// Makes one resource's list and watch answer 503 (or answer again).
    pub fn set_unavailable(&self, resource: &'static str, unavailable: bool) {
        let mut inner = self.inner.lock().expect("lock");
        if unavailable {
            inner.unavailable.insert(resource);
        } else {
            inner.unavailable.remove(resource);
        }
    }

    /// Makes one resource's list and watch answer as the API server does for
    /// a resource it does not serve (404), that RBAC forbids (403), or on an
    /// internal error (500), or, with `None`, serves it again; objects
    /// applied meanwhile are kept.
    pub fn set_refused(&self, resource: &'static str, refusal: Option<Refusal>) {
        let mut inner = self.inner.lock().expect("lock");
        match refusal {
            Some(r) => inner.refused.insert(resource, r),
            None => inner.refused.remove(resource),
        };
    }

    /// Forgets the change history, as etcd compaction does: a watch from an
    /// older resourceVersion is answered `410 Gone`, and the client must
    /// list again to learn what changed (deletions included).
    pub fn compact(&self) {
        let mut inner = self.inner.lock().expect("lock");
        inner.compacted = inner.rv;
        inner.log.clear();
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
}

/// What the API server sends for `as=PartialObjectMetadata`: the metadata alone.
fn metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": object["metadata"].clone()})
}

/// A namespace's pods, metadata only, as a `PartialObjectMetadataList` (what
/// kube-rs' `list_metadata` asks for).
/// Discovery of one group version (what `kube::discovery::pinned_kind`
/// reads): the kinds this server serves there; 404 for any other group.
async fn discovery(
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
) -> Response {
    let resources = match (group.as_str(), version.as_str()) {
        ("networking.k8s.io", "v1") => json!([
            {"name": "ingresses", "singularName": "ingress", "namespaced": true, "kind": "Ingress",
             "verbs": ["get", "list", "watch"]},
        ]),
        ("apps", "v1") => json!([
            {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": ["get", "list", "watch", "patch"]},
            {"name": "statefulsets", "singularName": "statefulset", "namespaced": true, "kind": "StatefulSet", "verbs": ["get", "list", "watch", "patch"]},
            {"name": "daemonsets", "singularName": "daemonset", "namespaced": true, "kind": "DaemonSet", "verbs": ["get", "list", "watch", "patch"]},
        ]),
        _ => return not_found(&format!("{group}/{version}")),
    };
    axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"), "resources": resources}))
    .into_response()
}

/// An Ingress of `host` in `ns`.
pub fn ingress(ns: &str, name: &str, host: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}})
}

async fn pods_metadata(
    s: State<FakeApiServer>,
    axum::extract::Path(ns): axum::extract::Path<String>,
    q: Query<BTreeMap<String, String>>,
) -> Response {
    pods_metadata_in(s, Some(ns), q).await
}

/// Pods as `PartialObjectMetadataList`, in one namespace or all.
async fn pods_metadata_in(
    State(s): State<FakeApiServer>,
    ns: Option<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let inner = s.inner.lock().expect("lock");
    let prefix = ns.map(|n| format!("{n}/")).unwrap_or_default();
    let items: Vec<&Value> = inner
        .objects
        .iter()
        .filter(|((r, k), _)| *r == PODS && k.starts_with(&prefix))
        .map(|(_, v)| v)
        .collect();
    list_body(
        "meta.k8s.io/v1",
        "PartialObjectMetadataList",
        inner.rv,
        items,
        &q,
        |v| {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": v["metadata"].clone()})
        },
    )
}

async fn get_gatekeeper_config(
    State(s): State<FakeApiServer>,
    axum::extract::Path((ns, name)): axum::extract::Path<(String, String)>,
) -> Response {
    let inner = s.inner.lock().expect("lock");
    match inner
        .objects
        .get(&(GATEKEEPER_CONFIGS, format!("{ns}/{name}")))
    {
        Some(o) => axum::Json(o.clone()).into_response(),
        None => not_found(&name),
    }
}

async fn get_lease(
    State(s): State<FakeApiServer>,
    axum::extract::Path((ns, name)): axum::extract::Path<(String, String)>,
) -> Response {
    let inner = s.inner.lock().expect("lock");
    match inner.objects.get(&(LEASES, format!("{ns}/{name}"))) {
        Some(o) => axum::Json(o.clone()).into_response(),
        None => not_found(&name),
    }
}

fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{name} not found"), "reason": "NotFound", "code": 404}),
        ),
    )
        .into_response()
}

/// The API server's answers for a resource it does not serve (its
/// NotFound handler), for one RBAC forbids (the authorizer's message) and
/// on an internal error.
fn refused(resource: &str, refusal: Refusal) -> Response {
    let (code, reason, message) = match refusal {
        Refusal::NotServed => (
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".to_string(),
        ),
        Refusal::Forbidden => (
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{resource} is forbidden: User \"system:serviceaccount:otel-admission:otel-admission\" cannot list resource \"{resource}\" at the cluster scope"
            ),
        ),
        Refusal::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out".to_string(),
        ),
    };
    (
        code,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": {}, "code": code.as_u16()}),
        ),
    )
        .into_response()
}

fn conflict(what: &str) -> Response {
    (
        StatusCode::CONFLICT,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": what, "reason": "Conflict", "code": 409}),
        ),
    )
        .into_response()
}

async fn create_lease(
    State(s): State<FakeApiServer>,
    axum::extract::Path(ns): axum::extract::Path<String>,
    axum::Json(mut lease): axum::Json<Value>,
) -> Response {
    let mut inner = s.inner.lock().expect("lock");
    let name = lease["metadata"]["name"].as_str().unwrap_or("").to_string();
    let k = (LEASES, format!("{ns}/{name}"));
    if inner.objects.contains_key(&k) {
        return conflict("already exists");
    }
    inner.rv += 1;
    lease["metadata"]["namespace"] = json!(ns);
    lease["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    inner.objects.insert(k, lease.clone());
    (StatusCode::CREATED, axum::Json(lease)).into_response()
}

/// A replace, refused with 409 unless it names the current resourceVersion,
/// as the API server's optimistic concurrency does.
async fn replace_lease(
    State(s): State<FakeApiServer>,
    axum::extract::Path((ns, name)): axum::extract::Path<(String, String)>,
    axum::Json(mut lease): axum::Json<Value>,
) -> Response {
    let mut inner = s.inner.lock().expect("lock");
    let k = (LEASES, format!("{ns}/{name}"));
    let Some(current) = inner.objects.get(&k) else {
        return not_found(&name);
    };
    if current["metadata"]["resourceVersion"] != lease["metadata"]["resourceVersion"] {
        return conflict("the object has been modified");
    }
    inner.rv += 1;
    lease["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    inner.objects.insert(k, lease.clone());
    axum::Json(lease).into_response()
}

fn workload_resource(r: &str) -> Option<&'static str> {
    [DEPLOYMENTS, STATEFULSETS, DAEMONSETS]
        .into_iter()
        .find(|x| *x == r)
}

async fn list_workloads(
    State(s): State<FakeApiServer>,
    axum::extract::Path((ns, resource)): axum::extract::Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(r) = workload_resource(&resource) else {
        return (StatusCode::NOT_FOUND, "no such resource").into_response();
    };
    let inner = s.inner.lock().expect("lock");
    let items: Vec<&Value> = inner
        .objects
        .iter()
        .filter(|((x, k), _)| *x == r && k.starts_with(&format!("{ns}/")))
        .map(|(_, v)| v)
        .collect();
    list_body("apps/v1", "List", inner.rv, items, &q, Value::clone)
}

async fn get_workload(
    State(s): State<FakeApiServer>,
    axum::extract::Path((ns, resource, name)): axum::extract::Path<(String, String, String)>,
) -> Response {
    let Some(r) = workload_resource(&resource) else {
        return (StatusCode::NOT_FOUND, "no such resource").into_response();
    };
    let inner = s.inner.lock().expect("lock");
    match inner.objects.get(&(r, format!("{ns}/{name}"))) {
        Some(o) => axum::Json(o.clone()).into_response(),
        None => not_found(&name),
    }
}

/// A merge PATCH of a workload; like the API server it bumps `generation`
/// when the spec changes, and like a controller that finishes at once it
/// reports the new generation rolled out (unless `slow` is set).
async fn patch_workload(
    State(s): State<FakeApiServer>,
    axum::extract::Path((ns, resource, name)): axum::extract::Path<(String, String, String)>,
    axum::Json(patch): axum::Json<Value>,
) -> Response {
    let Some(r) = workload_resource(&resource) else {
        return (StatusCode::NOT_FOUND, "no such resource").into_response();
    };
    let fail = s.fail_patches.load(Ordering::SeqCst);
    if fail != 0 {
        let code = StatusCode::from_u16(fail).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            code,
            axum::Json(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "injected failure", "reason": "InternalError", "code": fail}),
            ),
        )
            .into_response();
    }
    let updated = {
        let inner = s.inner.lock().expect("lock");
        let Some(obj) = inner.objects.get(&(r, format!("{ns}/{name}"))).cloned() else {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        };
        let mut obj = obj;
        json_patch::merge(&mut obj, &patch);
        let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        obj["metadata"]["generation"] = json!(generation);
        if !s.slow_rollouts.load(Ordering::SeqCst) {
            let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            obj["status"]["observedGeneration"] = json!(generation);
            obj["status"]["updatedReplicas"] = json!(replicas);
            obj["status"]["availableReplicas"] = json!(replicas);
            obj["status"]["updatedNumberScheduled"] =
                obj["status"]["desiredNumberScheduled"].clone();
            obj["status"]["numberAvailable"] = obj["status"]["desiredNumberScheduled"].clone();
        }
        obj
    };
    s.inner
        .lock()
        .expect("lock")
        .patches
        .push((std::time::Instant::now(), format!("{resource}/{ns}/{name}")));
    s.apply(r, updated.clone());
    axum::Json(updated).into_response()
}

/// POST of an Event: named from `generateName`, stored, echoed back.
async fn create_event(
    State(s): State<FakeApiServer>,
    axum::extract::Path(ns): axum::extract::Path<String>,
    axum::Json(mut event): axum::Json<Value>,
) -> Response {
    if *s.down.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let mut inner = s.inner.lock().expect("lock");
    inner.rv += 1;
    let rv = inner.rv;
    let stem = event["metadata"]["generateName"]
        .as_str()
        .unwrap_or("event.")
        .to_string();
    let name = format!("{stem}{rv:05}");
    event["metadata"]["name"] = json!(name);
    event["metadata"]["namespace"] = json!(ns);
    event["metadata"]["resourceVersion"] = json!(rv.to_string());
    inner
        .objects
        .insert((EVENTS, format!("{ns}/{name}")), event.clone());
    (StatusCode::CREATED, axum::Json(event)).into_response()
}

/// A merge PATCH of an Event (the series updates).
async fn patch_event(
    State(s): State<FakeApiServer>,
    axum::extract::Path((ns, name)): axum::extract::Path<(String, String)>,
    axum::Json(patch): axum::Json<Value>,
) -> Response {
    let mut inner = s.inner.lock().expect("lock");
    let Some(event) = inner.objects.get_mut(&(EVENTS, format!("{ns}/{name}"))) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if let (Some(obj), Some(p)) = (event.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            obj.insert(k.clone(), v.clone());
        }
    }
    let out = event.clone();
    axum::Json(out).into_response()
}

impl FakeApiServer {
    /// Every stored object of `resource`.
    /// The workload PATCHes that succeeded, in order of arrival.
    pub fn patches(&self) -> Vec<(std::time::Instant, String)> {
        self.inner.lock().expect("lock").patches.clone()
    }

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

async fn count(
    State(s): State<FakeApiServer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    // Down means down for every route: Leases, patches and pod reads too.
    if *s.down.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    next.run(req).await
}

async fn list_or_watch(
    State(s): State<FakeApiServer>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    resource: &'static str,
) -> Response {
    if *s.down.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // `as=PartialObjectMetadata` for a watch, `as=PartialObjectMetadataList` for a list.
    let meta_only = accept.contains("as=PartialObjectMetadata");
    {
        let mut inner = s.inner.lock().expect("lock");
        inner.accepts.push((resource, accept));
        if inner.unavailable.contains(resource) {
            return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
        }
        if let Some(r) = inner.refused.get(resource) {
            return refused(resource, *r);
        }
    }
    if q.get("watch").map(String::as_str) == Some("true")
        || q.get("watch").map(String::as_str) == Some("1")
    {
        let since: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut rx = s.events.subscribe();
        let (backlog, gone): (Vec<Change>, bool) = {
            let inner = s.inner.lock().expect("lock");
            let backlog = inner
                .log
                .iter()
                .filter(|c| c.rv > since && c.resource == resource)
                .cloned()
                .collect();
            (backlog, since < inner.compacted)
        };
        if gone {
            // What the API server streams for a compacted resourceVersion.
            let mut body = serde_json::to_vec(&json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {since}"),
                "reason": "Expired", "code": 410}}))
            .expect("json");
            body.push(b'\n');
            return Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("response");
        }
        let mut down = s.down.subscribe();
        let last = backlog.last().map_or(since, |c| c.rv);
        let stream = async_stream(backlog, meta_only, move |tx| async move {
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Ok(c) if c.resource == resource && c.rv > last => {
                            if tx.send(line(&c, meta_only)).await.is_err() { return; }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    },
                    _ = async { let _ = down.wait_for(|d| *d).await; } => return,
                }
            }
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(stream)
            .expect("response");
    }
    let inner = s.inner.lock().expect("lock");
    let items: Vec<&Value> = inner
        .objects
        .iter()
        .filter(|((r, _), _)| *r == resource)
        .map(|(_, v)| v)
        .collect();
    let (api_version, kind) = match resource {
        _ if meta_only => ("meta.k8s.io/v1", "PartialObjectMetadataList"),
        NAMESPACES => ("v1", "NamespaceList"),
        DEPLOYMENTS => ("apps/v1", "DeploymentList"),
        STATEFULSETS => ("apps/v1", "StatefulSetList"),
        DAEMONSETS => ("apps/v1", "DaemonSetList"),
        COLLECTORS => ("opentelemetry.io/v1beta1", "OpenTelemetryCollectorList"),
        INGRESSES => ("networking.k8s.io/v1", "IngressList"),
        _ => ("opentelemetry.io/v1alpha1", "InstrumentationList"),
    };
    list_body(api_version, kind, inner.rv, items, &q, |v| {
        if meta_only {
            metadata_only(v)
        } else {
            v.clone()
        }
    })
}

/// A list body, paginated as the API server does when the client sends
/// `limit`: a page of items and, when more remain, `metadata.continue` (here
/// the offset of the next page). Only the page's items are copied (`f`), so
/// paging through a large list costs what the API server's does.
fn list_body(
    api_version: &str,
    kind: &str,
    rv: u64,
    items: Vec<&Value>,
    q: &BTreeMap<String, String>,
    f: impl Fn(&Value) -> Value,
) -> Response {
    let limit: Option<usize> = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0);
    let from: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    let page: Vec<Value> = match limit {
        Some(limit) => {
            if from + limit < items.len() {
                metadata["continue"] = json!((from + limit).to_string());
                metadata["remainingItemCount"] = json!(items.len() - from - limit);
            }
            items.into_iter().skip(from).take(limit).map(f).collect()
        }
        None => items.into_iter().map(f).collect(),
    };
    axum::Json(
        json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": page}),
    )
    .into_response()
}

fn line(c: &Change, meta_only: bool) -> bytes::Bytes {
    let object = if meta_only {
        metadata_only(&c.object)
    } else {
        c.object.clone()
    };
    let mut v = serde_json::to_vec(&json!({"type": c.kind, "object": object})).expect("json");
    v.push(b'\n');
    v.into()
}

/// A streaming body: the backlog first, then whatever `f` sends.
fn async_stream<F, Fut>(backlog: Vec<Change>, meta_only: bool, f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<bytes::Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let live = f(tx.clone());
    tokio::spawn(async move {
        for c in &backlog {
            if tx.send(line(c, meta_only)).await.is_err() {
                return;
            }
        }
        drop(tx);
        live.await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Body::from_stream(stream)
}

/// A Deployment of 2 replicas selecting `app: name`; `ready` says whether
/// its rollout is done (all replicas updated).
pub fn deployment(ns: &str, name: &str, annotations: Value, labels: Value, ready: bool) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "generation": 2, "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}},
        "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": if ready { 2 } else { 1 },
            "availableReplicas": 2}
    })
}

/// A pod of `app`, metadata only, carrying `fingerprint` as its injected label.
pub fn pod(ns: &str, name: &str, app: &str, fingerprint: Option<&str>) -> Value {
    let mut labels = json!({"app": app});
    if let Some(f) = fingerprint {
        labels["otel-admission.io/injected"] = json!(f);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels}})
}

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

pub fn instrumentation(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "opentelemetry.io/v1alpha1", "kind": "Instrumentation",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    })
}

pub fn collector(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "opentelemetry.io/v1beta1", "kind": "OpenTelemetryCollector",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    })
}
