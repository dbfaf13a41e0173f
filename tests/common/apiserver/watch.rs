//! The list/watch protocol of the watched kinds: lists (paginated, and
//! metadata-only when the Accept header asks) and watch streams that replay
//! the change log, follow new changes, answer `410 Gone` from before a
//! compaction and end when the server goes down.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::FakeApiServer;
use super::faults::list_refusal;
use super::store::{
    COLLECTORS, Change, DAEMONSETS, DEPLOYMENTS, INGRESSES, NAMESPACES, STATEFULSETS,
};

/// A list, or with `watch=true` a watch, of one watched resource.
pub(super) async fn list_or_watch(
    State(s): State<FakeApiServer>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    resource: &'static str,
) -> Response {
    if let Some(down) = s.when_down() {
        return down;
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
        if let Some(refusal) = list_refusal(&inner, resource) {
            return refusal;
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
pub(super) fn list_body(
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

/// What the API server sends for `as=PartialObjectMetadata`: the metadata alone.
fn metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": object["metadata"].clone()})
}

/// One watch event, as a line of the stream.
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
