//! The fake API server's routes: the list/watch paths of the watched kinds,
//! discovery and `/version`, pods as metadata, workloads (GET, list, merge
//! PATCH), Leases, Events and Gatekeeper's Config; everything else falls
//! back to [`super::any`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::FakeApiServer;
use super::any;
use super::store::{
    COLLECTORS, DAEMONSETS, DEPLOYMENTS, EVENTS, GATEKEEPER_CONFIGS, INGRESSES, INSTRUMENTATIONS,
    LEASES, NAMESPACES, PODS, STATEFULSETS,
};
use super::watch::{list_body, list_or_watch};

/// Every route, served from `fake`, each request counted.
pub(super) fn router(fake: FakeApiServer) -> Router {
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
    watched
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
        .layer(axum::middleware::from_fn_with_state(fake, count))
}

/// Counts every request ([`FakeApiServer::requests`]).
async fn count(
    State(s): State<FakeApiServer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    // Down means down for every route: Leases, patches and pod reads too.
    if let Some(down) = s.when_down() {
        return down;
    }
    next.run(req).await
}

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

/// A namespace's pods, metadata only, as a `PartialObjectMetadataList` (what
/// kube-rs' `list_metadata` asks for).
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

/// The API server's 404 for an object (or group version) it does not have.
pub(super) fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{name} not found"), "reason": "NotFound", "code": 404}),
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
/// reports the new generation rolled out (unless `slow_rollouts` is set).
async fn patch_workload(
    State(s): State<FakeApiServer>,
    axum::extract::Path((ns, resource, name)): axum::extract::Path<(String, String, String)>,
    axum::Json(patch): axum::Json<Value>,
) -> Response {
    let Some(r) = workload_resource(&resource) else {
        return (StatusCode::NOT_FOUND, "no such resource").into_response();
    };
    if let Some(failure) = s.patch_failure() {
        return failure;
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
        if s.rollouts_finish() {
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
    if let Some(down) = s.when_down() {
        return down;
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
