//! Plain reads of any resource, for the commands that look at a cluster
//! rather than watch it (`check`, live `explain`): GET of one object or a
//! list (namespaced or all, with an equality `labelSelector`) on the paths
//! kube-rs builds, from the watched store for the kinds it holds and from a
//! second store for everything else; `SelfSubjectAccessReview`s answered
//! from a set of denied verbs; the `/version` the server reports.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::FakeApiServer;
use super::faults::refused;
use super::routes::not_found;
use super::store::{WATCHED, key};

/// One resource of the second store: `group/version/resource` (`""` group
/// for the core API).
pub fn gvr(group: &str, version: &str, resource: &str) -> String {
    format!("{group}/{version}/{resource}")
}

impl FakeApiServer {
    /// Creates or replaces an object of any resource outside the watched
    /// kinds (Services, EndpointSlices, webhook configurations, CRDs,
    /// ConfigMaps, Secrets, Jobs, CronJobs, ReplicaSets...), read back with
    /// GET and list. `gvr` as [`gvr`].
    pub fn put(&self, gvr: &str, object: Value) {
        let mut inner = self.inner.lock().expect("lock");
        inner.rv += 1;
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        inner.other.insert((gvr.to_string(), key(&object)), object);
    }

    /// Removes an object [`FakeApiServer::put`] made.
    pub fn remove(&self, gvr: &str, namespace: &str, name: &str) {
        let mut inner = self.inner.lock().expect("lock");
        inner
            .other
            .remove(&(gvr.to_string(), format!("{namespace}/{name}")));
    }

    /// Makes `SelfSubjectAccessReview`s deny `verb` on `group`/`resource`
    /// (`"*"` matches any), as RBAC would for a user without that right.
    pub fn deny(&self, verb: &str, group: &str, resource: &str) {
        let mut inner = self.inner.lock().expect("lock");
        inner
            .denied
            .push((verb.to_string(), group.to_string(), resource.to_string()));
    }

    /// The version `/version` reports (1.33 unless set).
    pub fn set_version(&self, major: u32, minor: u32) {
        self.inner.lock().expect("lock").version = Some((major, minor));
    }
}

/// `/version`, as set by [`FakeApiServer::set_version`].
pub async fn version(State(s): State<FakeApiServer>) -> Response {
    let (major, minor) = s.inner.lock().expect("lock").version.unwrap_or((1, 33));
    axum::Json(json!({
        "major": major.to_string(), "minor": minor.to_string(),
        "gitVersion": format!("v{major}.{minor}.0"), "gitCommit": "fake",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
        "compiler": "gc", "platform": "linux/amd64"
    }))
    .into_response()
}

/// Where a request path points.
struct Target {
    group: String,
    version: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, name) = match rest {
        [r] => (*r, None),
        [r, n] => (*r, Some(n.to_string())),
        _ => return None,
    };
    Some(Target {
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        namespace,
        name,
    })
}

fn matches(object: &Value, selector: Option<&str>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    sel.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => object["metadata"]["labels"][k.trim()].as_str() == Some(v.trim()),
        None => !object["metadata"]["labels"][term.trim()].is_null(),
    })
}

/// Every route the watched kinds do not have: GET of objects, and
/// `SelfSubjectAccessReview`.
pub async fn fallback(
    State(s): State<FakeApiServer>,
    method: Method,
    uri: Uri,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path();
    if method == Method::POST && path.ends_with("/selfsubjectaccessreviews") {
        return access_review(&s, &body);
    }
    let Some(t) = parse(path) else {
        return not_found(path);
    };
    if method != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "read-only").into_response();
    }
    let inner = s.inner.lock().expect("lock");
    let watched = WATCHED.iter().find(|r| **r == t.resource).copied();
    let gvr = gvr(&t.group, &t.version, &t.resource);
    let objects: Vec<(&String, &Value)> = match watched {
        Some(r) => inner
            .objects
            .iter()
            .filter(|((res, _), _)| *res == r)
            .map(|((_, k), v)| (k, v))
            .collect(),
        None => inner
            .other
            .iter()
            .filter(|((g, _), _)| *g == gvr)
            .map(|((_, k), v)| (k, v))
            .collect(),
    };
    if let Some(r) = watched
        && let Some(refusal) = inner.refused.get(r)
    {
        return refused(r, *refusal);
    }
    match &t.name {
        Some(name) => {
            let want = format!("{}/{name}", t.namespace.as_deref().unwrap_or(""));
            match objects.into_iter().find(|(k, _)| **k == want) {
                Some((_, v)) => axum::Json(v.clone()).into_response(),
                None => not_found(&format!("{} {want}", t.resource)),
            }
        }
        None => {
            let items: Vec<Value> = objects
                .into_iter()
                .filter(|(k, _)| {
                    t.namespace
                        .as_deref()
                        .is_none_or(|ns| k.starts_with(&format!("{ns}/")))
                })
                .map(|(_, v)| v)
                .filter(|v| matches(v, query.get("labelSelector").map(String::as_str)))
                .cloned()
                .collect();
            let api_version = if t.group.is_empty() {
                t.version.clone()
            } else {
                format!("{}/{}", t.group, t.version)
            };
            axum::Json(json!({
                "kind": "List", "apiVersion": api_version,
                "metadata": {"resourceVersion": inner.rv.to_string()},
                "items": items
            }))
            .into_response()
        }
    }
}

fn access_review(s: &FakeApiServer, body: &[u8]) -> Response {
    let review: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let attrs = &review["spec"]["resourceAttributes"];
    let field = |k: &str| attrs[k].as_str().unwrap_or_default().to_string();
    let (verb, group, resource) = (field("verb"), field("group"), field("resource"));
    let inner = s.inner.lock().expect("lock");
    let denied = inner.denied.iter().any(|(v, g, r)| {
        (v == "*" || *v == verb) && (g == "*" || *g == group) && (r == "*" || *r == resource)
    });
    let mut answer = review.clone();
    answer["status"] = json!({"allowed": !denied});
    axum::Json(answer).into_response()
}
