//! End to end: AdmissionReviews posted over TLS to the running server with the
//! real `Injector`; the returned base64 patch is applied and the pod checked.

mod common;

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::StaticView;
use otel_admission::metrics::Metrics;
use otel_admission::mutate::Injector;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_over_tls_returns_a_patch_that_instruments_the_pod() {
    let metrics = Arc::new(Metrics::new());
    let injector = Injector {
        config: Arc::new(ArcSwap::from_pointee(Config::default())),
        view: Arc::new(StaticView::new()),
        metrics: Arc::clone(&metrics),
        server_version: None,
        events: None,
    };
    let s = common::start(common::Options {
        mutator: Arc::new(injector),
        metrics: Some(Arc::clone(&metrics)),
        ..Default::default()
    })
    .await;

    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-", "annotations": {"instrumentation.opentelemetry.io/inject-java": "true"}},
        "spec": {"containers": [{"name": "web", "image": "web:3", "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}]}]}
    });
    let (status, resp) = s
        .post("/mutate", &common::review("u-1", "CREATE", pod.clone()))
        .await;
    assert_eq!(status, 200);
    let r = &resp["response"];
    assert_eq!(r["uid"], "u-1");
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().expect("patch string"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch.0).expect("applies");
    let injected: Pod = serde_json::from_value(doc.clone()).expect("pod");
    let spec = injected.spec.expect("spec");
    assert_eq!(
        spec.init_containers.expect("inits")[0].name,
        "opentelemetry-auto-instrumentation-java"
    );
    let env = spec.containers[0].env.clone().expect("env");
    // The operator's order: the IPs first, then the user's variables.
    assert_eq!(env[0].name, "OTEL_NODE_IP");
    assert_eq!(env[1].name, "OTEL_POD_IP");
    assert_eq!(env[2].name, "JAVA_TOOL_OPTIONS");
    assert_eq!(
        env[2].value.as_deref(),
        Some("-Xmx1g -javaagent:/otel-auto-instrumentation-java-web/javaagent.jar")
    );
    assert!(
        r["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("injected java into web"))
    );

    // The injected pod again (reinvocation): allowed, no patch.
    let (_, resp) = s
        .post("/mutate", &common::review("u-2", "CREATE", doc))
        .await;
    assert_eq!(resp["response"], json!({"uid": "u-2", "allowed": true}));

    // UPDATE is never mutated.
    let (_, resp) = s
        .post("/mutate", &common::review("u-3", "UPDATE", pod))
        .await;
    assert!(resp["response"].get("patch").is_none());

    let text = metrics.encode();
    assert!(
        text.contains(
            "otel_admission_injections_total{feature=\"instrumentation\",language=\"java\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("otel_admission_skips_total{reason=\"already_injected\"} 1"),
        "{text}"
    );
}

/// Issue 27, through the real server: a pod pinned to Windows nodes asking
/// for Java is admitted (even with `failureMode: deny`) with a warning that
/// says why, a patch that adds only the status annotation, and
/// `skips_total{reason="unsupported_os"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_pod_gets_a_warning_not_a_linux_agent() {
    let metrics = Arc::new(Metrics::new());
    let config = Config {
        failure_mode: otel_admission::config::FailureMode::Deny,
        ..Config::default()
    };
    let injector = Injector {
        config: Arc::new(ArcSwap::from_pointee(config)),
        view: Arc::new(StaticView::new()),
        metrics: Arc::clone(&metrics),
        server_version: None,
        events: None,
    };
    let s = common::start(common::Options {
        mutator: Arc::new(injector),
        metrics: Some(Arc::clone(&metrics)),
        ..Default::default()
    })
    .await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-", "annotations": {"instrumentation.opentelemetry.io/inject-java": "true"}},
        "spec": {"nodeSelector": {"kubernetes.io/os": "windows"},
            "containers": [{"name": "web", "image": "web:3"}]}
    });
    let (status, resp) = s
        .post("/mutate", &common::review("w-1", "CREATE", pod.clone()))
        .await;
    assert_eq!(status, 200);
    let r = &resp["response"];
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        r["warnings"],
        json!([
            "otel-admission: java: pod runs on Windows (nodeSelector kubernetes.io/os=windows): the java agent is a Linux init container; not injected"
        ])
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().expect("patch string"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch.0).expect("applies");
    let injected: Pod = serde_json::from_value(doc).expect("pod");
    let spec = injected.spec.expect("spec");
    assert!(spec.init_containers.is_none());
    assert!(spec.volumes.is_none());
    assert!(spec.containers[0].env.is_none());
    assert_eq!(
        injected.metadata.annotations.expect("annotations")["otel-admission.io/status"],
        format!(
            r#"{{"version":"{}","failures":{{"java":"unsupported_os"}}}}"#,
            env!("CARGO_PKG_VERSION")
        )
    );
    let text = metrics.encode();
    assert!(
        text.contains("otel_admission_skips_total{reason=\"unsupported_os\"} 1"),
        "{text}"
    );
}
