//! Admission against live cluster caches: the real TLS server with the real
//! Injector, kube-rs watchers fed by a local list/watch API server. The next
//! pod follows each namespace and Instrumentation change, admission keeps
//! working while the API server is away, and it never calls the API server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use common::apiserver::{
    COLLECTORS, EVENTS, FakeApiServer, INSTRUMENTATIONS, NAMESPACES, Refusal, collector,
    instrumentation, namespace,
};
use common::{Options, TestServer, review};
use otel_admission::cluster::Caches;
use otel_admission::config::Config;
use otel_admission::metrics::Metrics;
use otel_admission::mutate::Injector;
use otel_admission::policy::suite::review_for;
use otel_admission::server::admin::Readiness;
use serde_json::{Value, json};

const CONFIG: &str = r#"
defaults:
  exporter: { endpoint: "http://default-collector.monitoring:4318" }
rules:
  - name: opted-in-namespaces-python
    namespaceSelector: { matchLabels: { otel-admission.io/inject: enabled } }
    inject: { languages: [python] }
"#;

struct Env {
    api: FakeApiServer,
    caches: Arc<Caches>,
    server: TestServer,
    /// What the caches record.
    metrics: Arc<Metrics>,
    /// Holds the caches' gate.
    readiness: Arc<Readiness>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start(api: FakeApiServer) -> Env {
    start_with(api, Caches::new()).await
}

async fn start_with(api: FakeApiServer, caches: Caches) -> Env {
    let metrics = Arc::new(Metrics::new());
    let caches = Arc::new(caches);
    let readiness = Arc::new(Readiness::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    caches.start(
        api.client(),
        metrics.clone(),
        readiness.gate("cluster"),
        stop_rx,
    );
    let config = Arc::new(ArcSwap::from_pointee(
        Config::from_yaml(CONFIG, "test").expect("config"),
    ));
    let injector = Injector {
        config,
        view: caches.clone(),
        metrics: metrics.clone(),
        server_version: None,
        events: None,
    };
    let server = common::start(Options {
        mutator: Arc::new(injector),
        ..Default::default()
    })
    .await;
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let ok = caches.is_ready();
            async move { ok }
        })
        .await,
        "caches synced"
    );
    Env {
        api,
        caches,
        server,
        metrics,
        readiness,
        _stop: stop,
    }
}

fn app_pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-5d8f-", "labels": {"app.kubernetes.io/name": "web"}, "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "registry.example/web:2.0.1"}]}
    })
}

/// Posts a pod CREATE and returns the pod after applying the patch, if any.
async fn admit(s: &TestServer, pod: &Value) -> Option<Value> {
    let (status, body) = s.post("/mutate", &review("u", "CREATE", pod.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    let patch = body["response"]["patch"].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).expect("patch applies");
    Some(out)
}

fn env_of(pod: &Value, name: &str) -> Option<String> {
    pod["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(String::from)
}

async fn until<F: Fn() -> bool>(f: F) {
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let ok = f();
            async move { ok }
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_label_added_turns_injection_on_for_the_next_pod() {
    use otel_admission::inject::cluster_view::ClusterView as _;
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    let e = start(api).await;
    let pod = app_pod(json!({}));
    assert!(admit(&e.server, &pod).await.is_none(), "not selected yet");

    e.api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    until(|| {
        e.caches
            .namespace("shop")
            .is_some_and(|n| !n.labels.is_empty())
    })
    .await;
    let injected = admit(&e.server, &pod)
        .await
        .expect("injected after the label");
    let inits = injected["spec"]["initContainers"]
        .as_array()
        .expect("init containers");
    assert!(
        inits
            .iter()
            .any(|c| c["name"] == "opentelemetry-auto-instrumentation-python")
    );
    assert_eq!(
        env_of(&injected, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://default-collector.monitoring:4318"),
        "no Instrumentation in the namespace: the config default"
    );
    let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(injected).expect("a valid Pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_pod_follows_instrumentation_create_change_delete() {
    use otel_admission::inject::cluster_view::ClusterView as _;
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    let e = start(api).await;
    let pod = app_pod(json!({"instrumentation.opentelemetry.io/inject-python": "true"}));
    let endpoint = |p: &Value| env_of(p, "OTEL_EXPORTER_OTLP_ENDPOINT");

    let p = admit(&e.server, &pod).await.expect("injected");
    assert_eq!(
        endpoint(&p).as_deref(),
        Some("http://default-collector.monitoring:4318")
    );

    e.api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "python",
            json!({"exporter": {"endpoint": "http://created:4318"}}),
        ),
    );
    until(|| e.caches.instrumentation("shop", "python").is_some()).await;
    let p = admit(&e.server, &pod).await.expect("injected");
    assert_eq!(endpoint(&p).as_deref(), Some("http://created:4318"));

    e.api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "python",
            json!({"exporter": {"endpoint": "http://changed:4318"}}),
        ),
    );
    until(|| {
        e.caches.instrumentation("shop", "python").is_some_and(|i| {
            i.spec.exporter.as_ref().and_then(|x| x.endpoint.as_deref())
                == Some("http://changed:4318")
        })
    })
    .await;
    let p = admit(&e.server, &pod).await.expect("injected");
    assert_eq!(endpoint(&p).as_deref(), Some("http://changed:4318"));

    // A second one makes `true` ambiguous: skipped, with a warning naming both.
    e.api.apply(
        INSTRUMENTATIONS,
        instrumentation("shop", "other", json!({})),
    );
    until(|| e.caches.instrumentations_in("shop").len() == 2).await;
    let (_, body) = e
        .server
        .post("/mutate", &review("amb", "CREATE", pod.clone()))
        .await;
    let warnings = body["response"]["warnings"].to_string();
    assert!(
        warnings.contains("python") && warnings.contains("other"),
        "{warnings}"
    );

    e.api.delete(INSTRUMENTATIONS, "shop", "other");
    e.api.delete(INSTRUMENTATIONS, "shop", "python");
    until(|| e.caches.instrumentations_in("shop").is_empty()).await;
    let p = admit(&e.server, &pod).await.expect("injected");
    assert_eq!(
        endpoint(&p).as_deref(),
        Some("http://default-collector.monitoring:4318")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_works_from_the_cache_while_the_api_server_is_away_and_never_calls_it() {
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "python",
            json!({"exporter": {"endpoint": "http://cached:4318"}}),
        ),
    );
    let e = start(api).await;
    let pod = app_pod(json!({}));

    // A burst of admissions makes no request to the API server.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = e.api.requests();
    for _ in 0..200 {
        let p = admit(&e.server, &pod).await.expect("injected");
        assert_eq!(
            env_of(&p, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            Some("http://cached:4318")
        );
    }
    assert_eq!(
        e.api.requests(),
        before,
        "zero API calls on the admission path"
    );

    // The API server goes away: admissions continue from the cache.
    e.api.set_down(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..20 {
        let p = admit(&e.server, &pod).await.expect("still injected");
        assert_eq!(
            env_of(&p, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            Some("http://cached:4318")
        );
    }
    assert!(e.caches.is_ready());
}

const TEMPLATE: &str = r#"
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sforbiddenlabel
spec:
  crd:
    spec:
      names:
        kind: K8sForbiddenLabel
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8sforbiddenlabel
        violation[{"msg": msg}] {
          input.review.object.metadata.labels[input.parameters.label]
          msg := sprintf("label %v is not allowed here", [input.parameters.label])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sForbiddenLabel
metadata:
  name: no-debug-in-payments
spec:
  match:
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaceSelector:
      matchLabels: {team: payments}
  parameters:
    label: debug
"#;

/// Gatekeeper `namespaceSelector` at admission reads the same namespace cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraint_namespace_selectors_read_the_namespace_cache() {
    use otel_admission::inject::cluster_view::ClusterView as _;
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    let metrics = Arc::new(Metrics::new());
    let caches = Arc::new(Caches::new());
    let readiness = Arc::new(Readiness::default());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    caches.start(
        api.client(),
        metrics.clone(),
        readiness.gate("cluster"),
        stop_rx,
    );
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("forbidden.yaml"), TEMPLATE).expect("write");
    let lookup = caches.clone();
    let policies = otel_admission::policy::Policies::load(
        dir.path(),
        Duration::from_secs(2),
        otel_admission::config::FailureMode::Allow,
        metrics.clone(),
    )
    .expect("policies")
    .with_enforcement(Some(otel_admission::config::Enforcement::Enforce))
    .with_namespace_labels(Box::new(move |ns| {
        lookup.namespace(ns).map(|m| m.labels.clone())
    }));
    let server = common::start(Options {
        validator: Arc::new(policies),
        metrics: Some(metrics),
        ..Default::default()
    })
    .await;
    until(|| caches.is_ready()).await;
    let mut pod = app_pod(json!({}));
    pod["metadata"]["labels"]["debug"] = json!("true");
    let (_, body) = server
        .post("/validate", &review("v1", "CREATE", pod.clone()))
        .await;
    assert_eq!(
        body["response"]["allowed"], true,
        "namespace not selected yet: {body}"
    );

    api.apply(NAMESPACES, namespace("shop", json!({"team": "payments"})));
    until(|| {
        caches
            .namespace("shop")
            .is_some_and(|n| n.labels.contains_key("team"))
    })
    .await;
    let (_, body) = server.post("/validate", &review("v2", "CREATE", pod)).await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let msg = body["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        msg.contains("[no-debug-in-payments] label debug is not allowed here"),
        "{msg}"
    );
}

/// A sidecar-mode `OpenTelemetryCollector` in the cache is the sidecar of the
/// next pod that asks for one, built from the resource (its config in
/// `OTEL_CONFIG`, its ports, the injected label); deleting it stops the
/// injection, and the pod is still admitted with a warning.
#[tokio::test]
async fn the_sidecar_comes_from_the_collector_resource_in_the_cache() {
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.apply(
        COLLECTORS,
        collector(
            "shop",
            "agent",
            json!({"mode": "sidecar", "image": "otel/col:9", "config": {
                "receivers": {"otlp": {"protocols": {"grpc": {}, "http": {}}}},
                "exporters": {"debug": {}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}
            }}),
        ),
    );
    let env = start(api).await;
    let pod = app_pod(json!({"sidecar.opentelemetry.io/inject": "true"}));
    let out = admit(&env.server, &pod).await.expect("patched");
    assert_eq!(
        out["metadata"]["labels"]["sidecar.opentelemetry.io/injected"],
        "shop.agent"
    );
    let side = out["spec"]["initContainers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "otc-container"))
        .expect("native sidecar");
    assert_eq!(side["image"], "otel/col:9");
    let config = side["env"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "OTEL_CONFIG"))
        .and_then(|e| e["value"].as_str())
        .expect("OTEL_CONFIG");
    assert!(config.contains("endpoint: 0.0.0.0:4317"), "{config}");
    let ports: Vec<&str> = side["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(ports, vec!["metrics", "otlp-grpc", "otlp-http"]);

    env.api.delete(COLLECTORS, "shop", "agent");
    until(|| {
        otel_admission::inject::cluster_view::ClusterView::sidecar_collectors(
            env.caches.as_ref(),
            "shop",
        )
        .is_empty()
    })
    .await;
    let (_, body) = env
        .server
        .post("/mutate", &review("u", "CREATE", pod.clone()))
        .await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(
        body["response"].get("patch").is_none() || {
            // Only the status annotation may be written; no sidecar.
            let raw = base64::engine::general_purpose::STANDARD
                .decode(body["response"]["patch"].as_str().unwrap_or_default())
                .unwrap_or_default();
            !String::from_utf8_lossy(&raw).contains("otc-container")
        }
    );
    assert!(
        body["response"]["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("mode: sidecar")))),
        "{body}"
    );
}

/// A skipped injection produces one Event on the pod's owner, however many
/// pods: the first creates it, the repeats update its series; a dry run
/// sends nothing; a full queue drops and counts, never delays admission.
#[tokio::test]
async fn a_skipped_injection_is_one_event_per_owner_and_reason() {
    use otel_admission::events::{EventSettings, Events};
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    let metrics = Arc::new(Metrics::new());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let settings = EventSettings {
        series_interval: Duration::from_millis(200),
        ..EventSettings::default()
    };
    let (events, _task) = Events::start(api.client(), settings, metrics.clone(), stop_rx);
    let caches = Arc::new(Caches::new());
    let readiness = Arc::new(Readiness::default());
    let (_cstop, cstop_rx) = tokio::sync::watch::channel(false);
    caches.start(
        api.client(),
        metrics.clone(),
        readiness.gate("cluster"),
        cstop_rx,
    );
    until(|| caches.is_ready()).await;
    let injector = Injector {
        config: Arc::new(ArcSwap::from_pointee(Config::default())),
        view: caches.clone(),
        metrics: metrics.clone(),
        server_version: None,
        events: Some(events),
    };
    let server = common::start(common::Options {
        mutator: Arc::new(injector),
        ..Default::default()
    })
    .await;
    // Each pod names an Instrumentation that does not exist.
    let mut pod = app_pod(json!({"instrumentation.opentelemetry.io/inject-python": "missing"}));
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": "web-5d8f", "uid": "rs-uid", "controller": true}]);
    for i in 0..50 {
        let (status, body) = server
            .post("/mutate", &review(&format!("u{i}"), "CREATE", pod.clone()))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], true);
    }
    // A dry run is never reported.
    let mut dry = review("dry", "CREATE", pod.clone());
    dry["request"]["dryRun"] = json!(true);
    server.post("/mutate", &dry).await;
    until(|| {
        api.objects(EVENTS)
            .first()
            .and_then(|e| e["series"]["count"].as_i64())
            == Some(50)
    })
    .await;
    let evs = api.objects(EVENTS);
    assert_eq!(evs.len(), 1, "one Event per owner and reason: {evs:?}");
    let e = &evs[0];
    assert_eq!(e["reason"], "InjectionFailed");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["regarding"]["kind"], "ReplicaSet");
    assert_eq!(e["regarding"]["name"], "web-5d8f");
    assert!(
        e["note"]
            .as_str()
            .is_some_and(|n| n.contains("shop/missing")),
        "{e}"
    );
    let text = metrics.encode();
    assert!(
        text.contains(r#"otel_admission_events_total{reason="InjectionFailed",result="sent"}"#),
        "{text}"
    );
}

/// The composition root `serve` uses, against `api`, with its validator
/// behind the real server; returned once ready.
async fn serve_policies(
    api: &FakeApiServer,
    config: Config,
    policies: std::path::PathBuf,
    namespace: Option<&str>,
) -> (otel_admission::app::App, TestServer) {
    let mut opts = otel_admission::app::Options::from_env(otel_admission::app::Cluster::Client(
        api.client(),
        None,
    ));
    opts.policies_dir = Some(policies);
    // These tests show denials; audit (the default) would only warn.
    opts.policy_enforcement = Some(otel_admission::config::Enforcement::Enforce);
    if let Some(ns) = namespace {
        opts.namespace = ns.into();
    }
    let app = otel_admission::app::App::from_config(config, opts)
        .await
        .expect("app");
    let server = common::start(Options {
        validator: app.policies.clone(),
        metrics: Some(app.metrics.clone()),
        ..Default::default()
    })
    .await;
    let readiness = app.readiness.clone();
    until(|| readiness.check().is_ok()).await;
    (app, server)
}

/// The `/validate` response to `review`.
async fn validate(server: &TestServer, review: &Value) -> Value {
    let (status, body) = server.post("/validate", review).await;
    assert_eq!(status, 200);
    body["response"].clone()
}

/// `/validate`'s response once `allowed` is `want` (the caches and the
/// inventory follow the API server within a moment), or the last one.
async fn until_allowed(server: &TestServer, review: &Value, want: bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..50 {
        last = validate(server, review).await;
        if last["allowed"] == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// A referential template, written for this test after Gatekeeper's
/// `k8suniqueingresshost`: an Ingress host already used by another Ingress
/// (in any namespace) is denied. It reads `data.inventory`.
const UNIQUE_HOST: &str = r#"
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: uniqueingresshost}
spec:
  crd: {spec: {names: {kind: UniqueIngressHost}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package uniqueingresshost
        same(other, review) {
          other.metadata.namespace == review.object.metadata.namespace
          other.metadata.name == review.object.metadata.name
        }
        violation[{"msg": msg}] {
          host := input.review.object.spec.rules[_].host
          other := data.inventory.namespace[_][gv]["Ingress"][_]
          startswith(gv, "networking.k8s.io/")
          other.spec.rules[_].host == host
          not same(other, input.review)
          msg := sprintf("host %v is already used by Ingress %v/%v", [host, other.metadata.namespace, other.metadata.name])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: UniqueIngressHost
metadata: {name: unique-ingress-host}
spec:
  match: {kinds: [{apiGroups: [networking.k8s.io], kinds: [Ingress]}]}
"#;

/// Referential data in `serve` (issue 15): with `policies.sync` listing
/// Ingresses, the composition root watches them into `data.inventory`; a
/// second Ingress with a host already in use is denied, another host is
/// allowed, and once the first Ingress is deleted the host is free again.
/// A synced kind the API server does not serve is logged and counted, and
/// does not hold readiness back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referential_template_reads_the_synced_inventory() {
    use common::apiserver::{INGRESSES, ingress};
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.apply(NAMESPACES, namespace("blog", json!({})));
    api.apply(INGRESSES, ingress("blog", "first", "www.example.com"));
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("unique-host.yaml"), UNIQUE_HOST).expect("write");
    let config = Config::from_yaml(
        "policies:\n  sync:\n    - {group: networking.k8s.io, version: v1, kind: Ingress}\n    - {group: widgets.example.com, version: v1, kind: Widget}\n",
        "test",
    )
    .expect("config");
    let (app, server) = serve_policies(&api, config, dir.path().to_path_buf(), None).await;
    let second = review_for(&ingress("shop", "second", "www.example.com"));
    let denied = until_allowed(&server, &second, false).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    let msg = denied["status"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(
            "[unique-ingress-host] host www.example.com is already used by Ingress blog/first"
        ),
        "{msg}"
    );
    let other = validate(
        &server,
        &review_for(&ingress("shop", "second", "shop.example.com")),
    )
    .await;
    assert_eq!(other["allowed"], true, "another host: {other}");
    let itself = validate(
        &server,
        &review_for(&ingress("blog", "first", "www.example.com")),
    )
    .await;
    assert_eq!(itself["allowed"], true, "the Ingress itself: {itself}");

    api.delete(INGRESSES, "blog", "first");
    let after = until_allowed(&server, &second, true).await;
    assert_eq!(after["allowed"], true, "the host is free again: {after}");

    let text = app.metrics.encode();
    assert!(
        text.contains(r#"otel_admission_inventory_errors_total{kind="widgets.example.com/v1/Widget",reason="not_served"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"otel_admission_inventory_objects{kind="networking.k8s.io/v1/Ingress"} 0"#),
        "{text}"
    );
}

/// What `data.inventory` costs (issue 15: memory bounded by what is synced):
/// 10,000 Ingresses in 100 namespaces, the same server with and without
/// `policies.sync`, each measured once ready (and, with sync, once the
/// policies hold the inventory). Prints the cost per object, and holds it
/// to at most 64 MiB for the 10,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_synced_ingresses_cost_a_bounded_amount_of_memory() {
    use common::apiserver::{INGRESSES, ingress};
    use common::replica::{
        Replica, free_admin, kubeconfig_for, memory_kib, until_metric, wait_ready,
    };
    let api = FakeApiServer::start().await;
    for n in 0..100 {
        let ns = format!("team-{n}");
        api.apply(NAMESPACES, namespace(&ns, json!({})));
        for i in 0..100 {
            api.apply(
                INGRESSES,
                ingress(
                    &ns,
                    &format!("web-{i}"),
                    &format!("web-{i}.team-{n}.example.com"),
                ),
            );
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("dir");
    std::fs::write(policies.join("unique-host.yaml"), UNIQUE_HOST).expect("write");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    let bin = env!("CARGO_BIN_EXE_otel-admission");
    let base = format!("policies: {{dir: {}}}\n", policies.display());

    let admin = free_admin();
    let mut alone = Replica::start_with_admin(bin, &kubeconfig, &base, &admin);
    assert!(wait_ready(&admin, 60).await, "ready without sync");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (without, _) = memory_kib(alone.child.id());
    alone.terminate();

    let synced = format!(
        "policies: {{dir: {}, sync: [{{group: networking.k8s.io, version: v1, kind: Ingress}}]}}\n",
        policies.display()
    );
    let admin = free_admin();
    let mut replica = Replica::start_with_admin(bin, &kubeconfig, &synced, &admin);
    assert!(wait_ready(&admin, 60).await, "ready with sync");
    let gauge = r#"otel_admission_inventory_objects{kind="networking.k8s.io/v1/Ingress"}"#;
    let held = until_metric(&admin, gauge, 10_000.0, 30).await;
    assert_eq!(held, Some(10_000.0), "all synced");
    // The settle time and the policies' rebuild.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (with, rss) = memory_kib(replica.child.id());
    let extra = with.saturating_sub(without);
    eprintln!(
        "10,000 Ingresses synced: peak RSS {} MiB without sync, {} MiB with (RSS now {} MiB): {} MiB more, {:.1} KiB per object",
        without / 1024,
        with / 1024,
        rss / 1024,
        extra / 1024,
        extra as f64 / 10_000.0
    );
    assert!(
        extra <= 64 * 1024,
        "10,000 synced Ingresses cost {} MiB (at most 64)",
        extra / 1024
    );
    replica.terminate();
}

/// A Deployment that passes the shipped pack as written, asking for Python.
fn checkout(probes: bool) -> Value {
    let mut app = json!({"name": "app", "image": "registry.example/checkout:1.4.2",
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}});
    if probes {
        let probe = json!({"httpGet": {"path": "/healthz", "port": 8080}});
        app["readinessProbe"] = probe.clone();
        app["livenessProbe"] = probe;
    }
    let labels =
        json!({"app.kubernetes.io/name": "checkout", "app.kubernetes.io/version": "1.4.2"});
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": "shop", "labels": labels},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "checkout"}},
            "template": {"metadata": {"labels": labels,
                    "annotations": {"instrumentation.opentelemetry.io/inject-python": "true"}},
                "spec": {"containers": [app]}}}})
}

/// Workloads judged as the pods they will be (issue 15): with the shipped
/// pack (its ExpansionTemplates included) and the namespace's
/// Instrumentation in the cache, a Deployment that passes as written is
/// denied for what injection will add: the pod's OTLP endpoint (from the
/// Instrumentation, not approved), and probes on an instrumented pod. The
/// same Deployment passes once the Instrumentation points at an approved
/// collector and the pod has probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_is_judged_as_the_injected_pod_it_creates() {
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "python",
            json!({"exporter": {"endpoint": "http://rogue.example:4318"}}),
        ),
    );
    let pack = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
    let (_app, server) = serve_policies(&api, Config::default(), pack, None).await;
    let r = validate(&server, &review_for(&checkout(false))).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("[approved-otlp-endpoint] in the Pod that Deployment/checkout creates:")
            && msg.contains("rogue.example"),
        "the endpoint injection will set: {msg}"
    );
    // Probes on the pod once instrumented: a warning, never a denial, since
    // our injection is what made it "instrumented" (SPEC §7).
    assert!(!msg.contains("[kubernetes.admission.probes]"), "{msg}");
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("[kubernetes.admission.probes] in the Pod that Deployment/checkout creates: container \\\"app\\\" is instrumented but has no readinessProbe"),
        "probes on the pod once instrumented: {warnings}"
    );

    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "python",
            json!({"exporter": {"endpoint": "http://otel-collector.monitoring:4318"}}),
        ),
    );
    let last = until_allowed(&server, &review_for(&checkout(true)), true).await;
    assert_eq!(last["allowed"], true, "satisfied: {last}");
}

/// The sync list may also come from a Gatekeeper `Config` in the server's
/// namespace (`spec.sync.syncOnly`), as Gatekeeper users already have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gatekeeper_config_resource_lists_the_synced_kinds() {
    use common::apiserver::{GATEKEEPER_CONFIGS, INGRESSES, ingress};
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.apply(INGRESSES, ingress("blog", "first", "www.example.com"));
    api.apply(
        GATEKEEPER_CONFIGS,
        json!({"apiVersion": "config.gatekeeper.sh/v1alpha1", "kind": "Config",
            "metadata": {"name": "config", "namespace": "otel-admission"},
            "spec": {"sync": {"syncOnly": [{"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"}]}}}),
    );
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("unique-host.yaml"), UNIQUE_HOST).expect("write");
    let (_app, server) = serve_policies(
        &api,
        Config::default(),
        dir.path().to_path_buf(),
        Some("otel-admission"),
    )
    .await;
    let second = review_for(&ingress("shop", "second", "www.example.com"));
    let r = until_allowed(&server, &second, false).await;
    assert_eq!(r["allowed"], false, "synced from the Config: {r}");
}

/// What the server logs while the guard lives, as text. The subscriber is
/// this thread's default, so the test runs on a current-thread runtime,
/// where every task (the watchers included) runs on this thread.
struct Logs {
    text: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Logs {
    let text = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = text.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || LogWriter(writer.clone()))
        .finish();
    Logs {
        text,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

impl Logs {
    /// Lines containing `needle`.
    fn count(&self, needle: &str) -> usize {
        let bytes = self.text.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().expect("log buffer")).into_owned()
    }
}

/// A cluster whose API server refuses the OpenTelemetryCollector kind (no
/// CRD: 404; or no RBAC: 403), with an opted-in namespace holding one
/// Instrumentation.
async fn cluster_refusing_collectors(refusal: Refusal) -> FakeApiServer {
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "python",
            json!({"exporter": {"endpoint": "http://from-instrumentation:4318"}}),
        ),
    );
    api.set_refused(COLLECTORS, Some(refusal));
    api
}

/// The collector kind refused (`reason` in the metric, `logged` once in
/// the log): the caches turn ready without it, the namespace opt-in and
/// its Instrumentation still inject, the kind shows as unavailable, and it
/// is looked up again every 30 s, not in a loop: one attempt and one log
/// line over the next seconds.
async fn refused_collectors_do_not_hold_readiness_back(
    refusal: Refusal,
    reason: &str,
    logged: &str,
) {
    let logs = capture_logs();
    let api = cluster_refusing_collectors(refusal).await;
    let e = start(api).await;
    assert!(e.readiness.check().is_ok(), "{:?}", e.readiness.check());
    let pod = app_pod(json!({}));
    let injected = admit(&e.server, &pod)
        .await
        .expect("injected: the namespace opted in");
    assert_eq!(
        env_of(&injected, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://from-instrumentation:4318"),
        "the namespace's Instrumentation"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        e.api.accepts(COLLECTORS).len(),
        1,
        "one list in 3 s: looked up again every 30 s"
    );
    let text = e.metrics.encode();
    for needle in [
        format!(
            "otel_admission_cluster_watch_errors_total{{kind=\"opentelemetrycollector\",reason=\"{reason}\"}} 1\n"
        ),
        "otel_admission_cluster_watch_errors_total{kind=\"instrumentation\",reason=\"other\"} 0\n"
            .into(),
        "otel_admission_cluster_kind_available{kind=\"opentelemetrycollector\"} 0\n".into(),
        "otel_admission_cluster_kind_available{kind=\"instrumentation\"} 1\n".into(),
        "otel_admission_cluster_kind_available{kind=\"namespace\"} 1\n".into(),
        "otel_admission_cluster_cache_ready 1\n".into(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    assert_eq!(logs.count(logged), 1, "logged once:\n{}", logs.text());
    assert_eq!(logs.count("watch recovered"), 0, "{}", logs.text());
}

/// No OpenTelemetryCollector CRD in the cluster (404 on its list).
#[tokio::test]
async fn an_unserved_collector_kind_does_not_hold_readiness_back() {
    refused_collectors_do_not_hold_readiness_back(
        Refusal::NotServed,
        "not_served",
        "the API server does not serve opentelemetrycollectors.opentelemetry.io (404): no OpenTelemetryCollector resources",
    )
    .await;
}

/// RBAC grants no list/watch on OpenTelemetryCollectors (403).
#[tokio::test]
async fn a_forbidden_collector_kind_does_not_hold_readiness_back() {
    refused_collectors_do_not_hold_readiness_back(
        Refusal::Forbidden,
        "forbidden",
        "RBAC forbids list/watch on opentelemetrycollectors.opentelemetry.io (403): grant get/list/watch",
    )
    .await;
}

/// Unique Ingress hosts, as a native policy reading `data.inventory`.
const UNIQUE_HOST_NATIVE: &str = r#"
package kubernetes.admission.unique_ingress_host

import rego.v1

deny contains msg if {
	input.request.kind.kind == "Ingress"
	some rule in input.request.object.spec.rules
	some ns, gv, name
	other := data.inventory.namespace[ns][gv].Ingress[name]
	startswith(gv, "networking.k8s.io/")
	some used in other.spec.rules
	used.host == rule.host
	[ns, name] != [input.request.namespace, input.request.name]
	msg := sprintf("host %v is already used by Ingress %v/%v", [rule.host, ns, name])
}
"#;

/// `serve`'s composition root behind real listeners, as `App::serve` runs
/// it: `/readyz` answers from the app's own readiness.
struct Served {
    server: otel_admission::server::Server,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn serve_app(app: &otel_admission::app::App) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = otel_admission::certs::Bundle::generate(&common::names(), 10).expect("certs");
    bundle.write(dir.path()).expect("write certs");
    let server =
        otel_admission::server::Server::start(common::settings(dir.path()), app.services())
            .await
            .expect("server starts");
    Served {
        server,
        client: common::client_for(&bundle),
        _dir: dir,
    }
}

/// The first `/readyz` 200 and the first `/validate` right after it: with
/// `policies.sync`, readiness waits until the policies hold a
/// `data.inventory` built from the whole synced list, so an Ingress whose
/// host an existing Ingress already uses is denied from the first request,
/// not admitted while the inventory is on its way. Five fresh servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referential_policy_denies_from_the_first_request_after_ready() {
    use common::apiserver::{INGRESSES, ingress};
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("blog", json!({})));
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.apply(INGRESSES, ingress("blog", "first", "www.example.com"));
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("unique-host.rego"), UNIQUE_HOST_NATIVE).expect("write");
    let yaml = "policies:\n  enforcement: enforce\n  sync:\n    - {group: networking.k8s.io, version: v1, kind: Ingress}\n";
    let second = review_for(&ingress("shop", "second", "www.example.com"));
    for round in 0..5 {
        let config = Config::from_yaml(yaml, "test").expect("config");
        let mut opts = otel_admission::app::Options::from_env(
            otel_admission::app::Cluster::Client(api.client(), None),
        );
        opts.policies_dir = Some(dir.path().to_path_buf());
        let app = otel_admission::app::App::from_config(config, opts)
            .await
            .expect("app");
        let served = serve_app(&app).await;
        let readyz = format!("http://{}/readyz", served.server.admin_addr);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = reqwest::get(&readyz).await.expect("readyz");
            if r.status() == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: never ready: {}",
                r.text().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let r: Value = served
            .client
            .post(format!(
                "https://127.0.0.1:{}/validate",
                served.server.webhook_addr.port()
            ))
            .json(&second)
            .send()
            .await
            .expect("validate")
            .json()
            .await
            .expect("json");
        let response = &r["response"];
        assert_eq!(response["allowed"], false, "round {round}: {response}");
        let msg = response["status"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("host www.example.com is already used by Ingress blog/first"),
            "round {round}: {msg}"
        );
        served.server.shutdown();
        served.server.wait().await;
        drop(app);
    }
}

/// The Operator's CRDs installed after the server started: the collector
/// kind, absent at first (404), is looked up again (every 200 ms here, 30 s
/// by default), its collectors fill the cache, and the next pod asking for
/// a sidecar gets that collector's. Readiness never drops on the way.
#[tokio::test]
async fn a_collector_kind_served_later_is_picked_up() {
    let logs = capture_logs();
    let api = cluster_refusing_collectors(Refusal::NotServed).await;
    let e = start_with(api, Caches::with_absent_retry(Duration::from_millis(200))).await;
    let pod = app_pod(json!({"sidecar.opentelemetry.io/inject": "shop/agent"}));
    let has_sidecar = |p: &Value| {
        p["spec"]["initContainers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "otc-container"))
    };
    let before = admit(&e.server, &pod).await.expect("python still injected");
    assert!(!has_sidecar(&before), "no collector yet: {before}");

    e.api.apply(
        COLLECTORS,
        collector(
            "shop",
            "agent",
            json!({"mode": "sidecar", "image": "otel/col:9"}),
        ),
    );
    e.api.set_refused(COLLECTORS, None);
    let served = std::time::Instant::now();
    let mut after = Value::Null;
    while served.elapsed() < Duration::from_secs(5) {
        after = admit(&e.server, &pod).await.expect("patched");
        if has_sidecar(&after) {
            break;
        }
        assert!(e.readiness.check().is_ok(), "readiness dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        has_sidecar(&after),
        "the collector's sidecar within 5 s: {after}"
    );
    assert_eq!(
        after["metadata"]["labels"]["sidecar.opentelemetry.io/injected"],
        "shop.agent"
    );
    assert!(e.readiness.check().is_ok());
    let text = e.metrics.encode();
    assert!(
        text.contains("otel_admission_cluster_kind_available{kind=\"opentelemetrycollector\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("otel_admission_cluster_cache_objects{kind=\"opentelemetrycollector\"} 1\n"),
        "{text}"
    );
    assert_eq!(
        logs.count("the API server now serves opentelemetrycollectors.opentelemetry.io"),
        1,
        "{}",
        logs.text()
    );
}

/// An outage before the first list (500 on the collectors for 2.5 s): warned
/// once, retried with a growing backoff, counted as `other`, and "watch
/// recovered" logged once, when a list succeeds, not on each retry's start.
#[tokio::test]
async fn a_failing_first_list_is_warned_once_and_recovers_once() {
    let logs = capture_logs();
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.set_refused(COLLECTORS, Some(Refusal::Internal));
    let back = {
        let api = api.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            api.set_refused(COLLECTORS, None);
        })
    };
    let e = start(api).await;
    back.await.expect("back");
    assert!(e.readiness.check().is_ok());
    let text = e.metrics.encode();
    let failed = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "otel_admission_cluster_watch_errors_total{kind=\"opentelemetrycollector\",reason=\"other\"} ",
            )
        })
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_default();
    assert!(
        (2..=4).contains(&failed),
        "{failed} failed lists in 2.5 s:\n{}",
        logs.text()
    );
    assert_eq!(
        logs.count("first list failed; retrying with backoff"),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(logs.count("watch recovered"), 1, "{}", logs.text());
    assert_eq!(logs.count("does not serve"), 0, "{}", logs.text());
}

/// A synced kind RBAC forbids (its list answers 403, though discovery
/// lists it) does not hold readiness back either: counted as synced and
/// empty, and counted as `forbidden`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_synced_kind_does_not_hold_readiness_back() {
    use common::apiserver::{INGRESSES, ingress};
    let api = FakeApiServer::start().await;
    api.apply(INGRESSES, ingress("blog", "first", "www.example.com"));
    api.set_refused(INGRESSES, Some(Refusal::Forbidden));
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("unique-host.rego"), UNIQUE_HOST_NATIVE).expect("write");
    let config = Config::from_yaml(
        "policies:\n  sync:\n    - {group: networking.k8s.io, version: v1, kind: Ingress}\n",
        "test",
    )
    .expect("config");
    let (app, _server) = serve_policies(&api, config, dir.path().to_path_buf(), None).await;
    let text = app.metrics.encode();
    assert!(
        text.contains(r#"otel_admission_inventory_errors_total{kind="networking.k8s.io/v1/Ingress",reason="forbidden"} 1"#),
        "{text}"
    );
}
