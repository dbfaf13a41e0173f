//! End to end through the TLS server: a pod that opts into everything (python,
//! collector sidecar, probes, annotations) in an Istio namespace comes back
//! with all of it, deserializes as a Pod, and passes the shipped policy
//! pack's restricted security-context checks.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::{NamespaceMeta, StaticView};
use otel_admission::mutate::Injector;
use otel_admission::policy::{self, PolicySet};
use serde_json::{Value, json};

fn review(uid: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "object": pod}
    })
}

/// An app container that already passes the restricted profile.
fn restricted_app() -> Value {
    json!({
        "name": "app", "image": "registry.example/shop/checkout:1.4.2",
        "command": ["gunicorn", "app:app"],
        "ports": [{"name": "http", "containerPort": 8000}, {"name": "health", "containerPort": 8081}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": {
            "runAsNonRoot": true, "runAsUser": 10001, "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    })
}

#[tokio::test]
async fn a_pod_opting_into_everything_gets_everything_and_passes_the_policies() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut labels = BTreeMap::new();
    labels.insert("istio-injection".to_string(), "enabled".to_string());
    let view = StaticView::new().with_namespace(
        "shop",
        NamespaceMeta {
            labels,
            annotations: BTreeMap::new(),
        },
    );
    let metrics = Arc::new(otel_admission::metrics::Metrics::new());
    let injector = Injector {
        // A config file with a `sidecar:` section: the sidecar template.
        config: Arc::new(ArcSwap::from_pointee(
            Config::from_yaml("sidecar: {native: auto}\n", "test").expect("config"),
        )),
        view: Arc::new(view),
        metrics: Arc::clone(&metrics),
        server_version: Some((1, 31)),
        events: None,
    };
    let server = common::start(common::Options {
        mutator: Arc::new(injector),
        metrics: Some(Arc::clone(&metrics)),
        ..Default::default()
    })
    .await;

    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-0", "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/version": "1.4.2"},
            "annotations": {
                "instrumentation.opentelemetry.io/inject-python": "true",
                "sidecar.opentelemetry.io/inject": "true",
                "otel-admission.io/probes": "true",
                "otel-admission.io/istio": "true",
                "traffic.sidecar.istio.io/excludeInboundPorts": "15020, 9000"
            }},
        "spec": {"containers": [restricted_app()]}
    });
    let (status, resp) = server.post("/mutate", &review("e2e-1", &pod)).await;
    assert_eq!(status, 200);
    let r = &resp["response"];
    assert_eq!(r["allowed"], true);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().expect("patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch.0).expect("applies");
    let injected: Pod = serde_json::from_value(doc.clone()).expect("a valid Pod");
    let spec = injected.spec.as_ref().expect("spec");
    let inits: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    // The native sidecar first, then Python's agent (API server 1.31): the
    // operator's sidecar mutator runs before its instrumentation mutator.
    assert_eq!(
        inits,
        vec!["otc-container", "opentelemetry-auto-instrumentation-python"]
    );
    let sidecar = &spec.init_containers.as_ref().expect("inits")[0];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let app = &spec.containers[0];
    let env = |name: &str| {
        app.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        env("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://localhost:4318")
    );
    assert!(env("PYTHONPATH").is_some());
    for probe in [
        &app.startup_probe,
        &app.liveness_probe,
        &app.readiness_probe,
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8081)
        );
    }
    let ann = injected.metadata.annotations.clone().expect("annotations");
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "8888");
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    assert_eq!(
        ann["traffic.sidecar.istio.io/excludeInboundPorts"],
        "15020,9000,8888"
    );
    let st: Value = serde_json::from_str(&ann["otel-admission.io/status"]).expect("status");
    assert_eq!(st["sidecar"]["mode"], "native");
    assert_eq!(
        st["probes"]["app"],
        json!(["startup", "liveness", "readiness"])
    );
    assert_eq!(st["languages"]["python"], json!(["app"]));
    let warnings = r["warnings"].to_string();
    for w in [
        "injected python",
        "injected collector sidecar",
        "added startup",
    ] {
        assert!(warnings.contains(w), "{w} in {warnings}");
    }

    // The shipped policy pack: the input passes the restricted profile, and
    // so does the injected pod, sidecar and init container included.
    let set = PolicySet::load_dir(Path::new("policies"), Duration::from_secs(5)).expect("policies");
    let security = |obj: &Value| -> Vec<String> {
        set.evaluate(&policy::suite::review_for(obj), &|_| None)
            .violations
            .into_iter()
            .filter(|v| v.policy.contains("security-context"))
            .map(|v| v.message)
            .collect()
    };
    assert_eq!(
        security(&pod),
        Vec::<String>::new(),
        "input must be compliant"
    );
    assert_eq!(security(&doc), Vec::<String>::new());
    // Nothing in the pack objects to the injected pod at all (probes,
    // endpoint, images, resources, labels).
    let all = set.evaluate(&policy::suite::review_for(&doc), &|_| None);
    assert!(all.errors.is_empty(), "{:?}", all.errors);
    assert_eq!(
        all.violations
            .iter()
            .map(|v| format!("{}: {}", v.policy, v.message))
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );

    // Reinvocation: no patch.
    let (_, again) = server.post("/mutate", &review("e2e-2", &doc)).await;
    assert!(again["response"].get("patch").is_none(), "{again}");
    let (_, text) = server.admin_get("/metrics").await;
    for f in ["sidecar", "probes", "annotations"] {
        let line =
            format!("otel_admission_injections_total{{feature=\"{f}\",language=\"none\"}} 1");
        assert!(text.contains(&line), "{line}");
    }
    server.server.shutdown();
    server.server.wait().await;
}
