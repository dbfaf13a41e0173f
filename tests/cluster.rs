//! kube-rs watchers against a local API server that speaks list/watch:
//! initial sync, live changes, invalid objects, and the API server going away.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::apiserver::{
    COLLECTORS, FakeApiServer, INSTRUMENTATIONS, NAMESPACES, collector, instrumentation, namespace,
};
use otel_admission::cluster::Caches;
use otel_admission::inject::cluster_view::ClusterView as _;
use otel_admission::metrics::Metrics;
use otel_admission::server::admin::Readiness;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    api: FakeApiServer,
    caches: Arc<Caches>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start(api: FakeApiServer) -> Running {
    let caches = Arc::new(Caches::new());
    let readiness = Arc::new(Readiness::default());
    let metrics = Arc::new(Metrics::new());
    let gate = readiness.gate("cluster");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    caches.start(api.client(), metrics.clone(), gate, stop_rx);
    Running {
        api,
        caches,
        readiness,
        metrics,
        _stop: stop,
    }
}

async fn until(f: impl Fn() -> bool) -> bool {
    common::eventually(WAIT, || {
        let r = f();
        async move { r }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_then_readiness() {
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    api.apply(NAMESPACES, namespace("kube-system", json!({})));
    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "default",
            json!({"exporter": {"endpoint": "http://col:4318"}}),
        ),
    );
    let r = start(api).await;
    assert!(
        until(|| r.readiness.check().is_ok()).await,
        "{:?}",
        r.readiness.check()
    );
    assert!(r.caches.is_ready());
    let ns = r.caches.namespace("shop").expect("cached");
    assert_eq!(
        ns.labels
            .get("otel-admission.io/inject")
            .map(String::as_str),
        Some("enabled")
    );
    let insts = r.caches.instrumentations_in("shop");
    assert_eq!(insts.len(), 1);
    assert_eq!(
        insts[0]
            .spec
            .exporter
            .as_ref()
            .and_then(|e| e.endpoint.as_deref()),
        Some("http://col:4318")
    );
    assert!(r.caches.instrumentation("shop", "default").is_some());
    assert!(r.caches.instrumentations_in("kube-system").is_empty());
    let text = r.metrics.encode();
    assert!(
        text.contains("otel_admission_cluster_cache_ready 1"),
        "{text}"
    );
    assert!(
        text.contains("otel_admission_cluster_cache_objects{kind=\"namespace\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("otel_admission_cluster_cache_objects{kind=\"instrumentation\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_flow_into_the_cache() {
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    let r = start(api).await;
    assert!(until(|| r.caches.is_ready()).await);
    assert!(r.caches.namespace("shop").expect("ns").labels.is_empty());

    // A namespace label added.
    r.api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    assert!(
        until(|| r
            .caches
            .namespace("shop")
            .is_some_and(|n| !n.labels.is_empty()))
        .await
    );

    // An Instrumentation created, changed, deleted.
    r.api.apply(
        INSTRUMENTATIONS,
        instrumentation("shop", "otel", json!({"propagators": ["b3"]})),
    );
    assert!(until(|| r.caches.instrumentation("shop", "otel").is_some()).await);
    r.api.apply(
        INSTRUMENTATIONS,
        instrumentation("shop", "otel", json!({"propagators": ["jaeger"]})),
    );
    assert!(
        until(|| r
            .caches
            .instrumentation("shop", "otel")
            .is_some_and(|i| i.spec.propagators[0].as_str() == "jaeger"))
        .await
    );
    r.api.delete(INSTRUMENTATIONS, "shop", "otel");
    assert!(until(|| r.caches.instrumentation("shop", "otel").is_none()).await);
    r.api.delete(NAMESPACES, "", "shop");
    assert!(until(|| r.caches.namespace("shop").is_none()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_instrumentations_are_reported_not_fatal() {
    let api = FakeApiServer::start().await;
    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "a",
            "bad-ratio",
            json!({"sampler": {"type": "traceidratio", "argument": "1.5"}}),
        ),
    );
    api.apply(
        INSTRUMENTATIONS,
        instrumentation("a", "bad-propagator", json!({"propagators": ["w3c"]})),
    );
    api.apply(INSTRUMENTATIONS, instrumentation("a", "good", json!({})));
    let r = start(api).await;
    assert!(
        until(|| r.caches.is_ready()).await,
        "one bad object must not block the sync"
    );
    let names: Vec<_> = r
        .caches
        .instrumentations_in("a")
        .iter()
        .map(|i| i.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, vec!["good"]);
    // A valid object later made invalid is dropped, not kept stale.
    r.api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "a",
            "good",
            json!({"sampler": {"type": "traceidratio", "argument": "-1"}}),
        ),
    );
    assert!(until(|| r.caches.instrumentation("a", "good").is_none()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_serving_while_the_api_server_is_away() {
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({"team": "payments"})));
    api.apply(
        INSTRUMENTATIONS,
        instrumentation("shop", "default", json!({})),
    );
    let r = start(api).await;
    assert!(until(|| r.caches.is_ready()).await);

    r.api.set_down(true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(r.caches.is_ready(), "still ready from the last cache");
    assert_eq!(
        r.caches.namespace("shop").expect("ns").labels["team"],
        "payments"
    );
    assert_eq!(r.caches.instrumentations_in("shop").len(), 1);

    // Changes made while away arrive once it is back (watch resumes or re-lists).
    r.api
        .apply(NAMESPACES, namespace("shop", json!({"team": "search"})));
    r.api.set_down(false);
    assert!(
        common::eventually(Duration::from_secs(40), || {
            let ok = r
                .caches
                .namespace("shop")
                .is_some_and(|n| n.labels["team"] == "search");
            async move { ok }
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_cache_makes_no_api_calls() {
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.apply(
        INSTRUMENTATIONS,
        instrumentation("shop", "default", json!({})),
    );
    let r = start(api).await;
    assert!(until(|| r.caches.is_ready()).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = r.api.requests();
    for _ in 0..10_000 {
        assert!(r.caches.namespace("shop").is_some());
        assert_eq!(r.caches.instrumentations_in("shop").len(), 1);
    }
    assert_eq!(r.api.requests(), before);
}

/// Namespaces are listed and watched metadata-only (`PartialObjectMetadata`:
/// no spec, no status on the wire); their labels and annotations still
/// arrive, from the list and from the watch. The other kinds come whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_watched_metadata_only() {
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"team": "payments"},
                "annotations": {"instrumentation.opentelemetry.io/inject-java": "true"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
    );
    let r = start(api).await;
    assert!(until(|| r.caches.is_ready()).await);
    r.api
        .apply(NAMESPACES, namespace("web", json!({"team": "web"})));
    assert!(
        until(|| r
            .caches
            .namespace("web")
            .is_some_and(|n| n.labels.get("team").is_some_and(|t| t == "web")))
        .await
    );
    let shop = r.caches.namespace("shop").expect("cached");
    assert_eq!(shop.labels["team"], "payments");
    assert_eq!(
        shop.annotations["instrumentation.opentelemetry.io/inject-java"],
        "true"
    );

    let accepts = r.api.accepts(NAMESPACES);
    assert!(
        accepts
            .iter()
            .any(|a| a.contains("as=PartialObjectMetadataList;")),
        "a metadata-only list: {accepts:?}"
    );
    assert!(
        accepts
            .iter()
            .any(|a| a.contains("as=PartialObjectMetadata;")),
        "a metadata-only watch: {accepts:?}"
    );
    assert!(
        accepts
            .iter()
            .all(|a| a.contains("as=PartialObjectMetadata")),
        "never the full object: {accepts:?}"
    );
    let accepts = r.api.accepts(INSTRUMENTATIONS);
    assert!(
        !accepts.is_empty() && accepts.iter().all(|a| !a.contains("PartialObjectMetadata")),
        "Instrumentations need their spec: {accepts:?}"
    );
}

/// Ready only after the first list of every kind: while the collectors'
/// list fails, namespaces and Instrumentations are cached but the gate stays
/// shut; it opens once the collectors are listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_first_list_of_every_kind() {
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.apply(
        INSTRUMENTATIONS,
        instrumentation("shop", "default", json!({})),
    );
    api.set_unavailable(COLLECTORS, true);
    let r = start(api).await;
    assert!(
        until(|| r.caches.namespace("shop").is_some()
            && r.caches.instrumentation("shop", "default").is_some())
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!r.caches.is_ready());
    assert!(r.readiness.check().is_err());
    let text = r.metrics.encode();
    assert!(
        text.contains("otel_admission_cluster_cache_ready 0"),
        "{text}"
    );

    r.api.set_unavailable(COLLECTORS, false);
    assert!(
        common::eventually(Duration::from_secs(40), || {
            let ok = r.readiness.check().is_ok();
            async move { ok }
        })
        .await,
        "{:?}",
        r.readiness.check()
    );
    assert!(r.caches.is_ready());
}

/// When the watch's resourceVersion has been compacted away the watcher
/// lists again; the new list replaces the cache whole: what was deleted
/// unseen is gone, and a reader spinning through it always finds all 100
/// Instrumentations of `bulk`, never part of a list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_drops_what_was_deleted_unseen_and_never_shows_half_a_list() {
    let api = FakeApiServer::start().await;
    for i in 0..100 {
        api.apply(
            INSTRUMENTATIONS,
            instrumentation("bulk", &format!("i-{i:03}"), json!({})),
        );
    }
    api.apply(INSTRUMENTATIONS, instrumentation("shop", "java", json!({})));
    api.apply(
        INSTRUMENTATIONS,
        instrumentation("shop", "python", json!({})),
    );
    let r = start(api).await;
    assert!(until(|| r.caches.is_ready()).await);
    assert_eq!(r.caches.instrumentations_in("shop").len(), 2);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let caches = r.caches.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let n = caches.instrumentations_in("bulk").len();
                assert_eq!(n, 100, "part of a list");
                reads += 1;
                std::thread::yield_now();
            }
            reads
        })
    };

    // The watch goes away; `python` is deleted and the history compacted,
    // so only a fresh list can tell.
    r.api.set_down(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.api.delete(INSTRUMENTATIONS, "shop", "python");
    r.api.compact();
    assert_eq!(
        r.caches.instrumentations_in("shop").len(),
        2,
        "the last list keeps serving"
    );
    r.api.set_down(false);
    let names = || {
        r.caches
            .instrumentations_in("shop")
            .iter()
            .map(|i| i.metadata.name.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert!(
        common::eventually(Duration::from_secs(40), || {
            let ok = names() == ["java"];
            async move { ok }
        })
        .await,
        "{:?}",
        names()
    );
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("the reader never saw part of a list");
    assert!(reads > 0);
    assert!(r.caches.is_ready());
    assert_eq!(r.caches.instrumentations_in("bulk").len(), 100);
}

/// A collector that does not parse is logged and left out of the list; the
/// others are served, the cache is ready, and a collector later made
/// invalid is dropped, not kept stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_collector_is_left_out_not_fatal() {
    let api = FakeApiServer::start().await;
    api.apply(
        COLLECTORS,
        collector(
            "shop",
            "bad",
            json!({"mode": "sidecar", "ports": "not-a-list"}),
        ),
    );
    api.apply(
        COLLECTORS,
        collector("shop", "good", json!({"mode": "sidecar"})),
    );
    api.apply(
        COLLECTORS,
        collector("shop", "gateway", json!({"mode": "deployment"})),
    );
    let r = start(api).await;
    assert!(until(|| r.caches.is_ready()).await);
    let sidecars = |c: &Caches| -> Vec<String> {
        c.sidecar_collectors("shop")
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(sidecars(&r.caches), ["good"]);
    assert!(r.caches.collector("shop", "bad").is_none());
    assert!(r.caches.collector("shop", "gateway").is_some());
    let text = r.metrics.encode();
    assert!(
        text.contains("otel_admission_cluster_cache_objects{kind=\"opentelemetrycollector\"} 2"),
        "{text}"
    );
    r.api.apply(
        COLLECTORS,
        collector("shop", "good", json!({"mode": "sidecar", "ports": 7})),
    );
    assert!(until(|| r.caches.collector("shop", "good").is_none()).await);
    assert!(sidecars(&r.caches).is_empty());
}

/// An Instrumentation without `spec` (the API server accepts one) is kept,
/// with an empty spec, from the first list and as a live addition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrumentation_without_spec_is_kept() {
    let api = FakeApiServer::start().await;
    let bare = |name: &str| {
        let mut obj = instrumentation("shop", name, json!({}));
        if let Some(m) = obj.as_object_mut() {
            m.remove("spec");
        }
        obj
    };
    api.apply(INSTRUMENTATIONS, bare("listed"));
    let r = start(api).await;
    assert!(until(|| r.caches.is_ready()).await);
    let listed = r.caches.instrumentation("shop", "listed");
    assert_eq!(
        listed.map(|i| i.spec.clone()),
        Some(otel_admission::instrumentation::InstrumentationSpec::default())
    );
    r.api.apply(INSTRUMENTATIONS, bare("added"));
    assert!(until(|| r.caches.instrumentation("shop", "added").is_some()).await);
}
