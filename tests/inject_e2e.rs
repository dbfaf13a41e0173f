//! End to end: AdmissionReviews posted over TLS to the running server with the
//! real `Injector`; the returned base64 patch is applied and the pod checked.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use otel_admission::certs::Bundle;
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::StaticView;
use otel_admission::inject::mutate::Injector;
use otel_admission::metrics::Metrics;
use otel_admission::server::webhook::AllowAll;
use otel_admission::server::{App, Server, Settings};
use serde_json::{Value, json};

fn review(uid: &str, op: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": op, "object": pod}
    })
}

#[tokio::test]
async fn mutate_over_tls_returns_a_patch_that_instruments_the_pod() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tmp");
    let bundle =
        Bundle::generate(&["localhost".to_string(), "127.0.0.1".to_string()], 1).expect("certs");
    bundle.write(dir.path()).expect("write certs");
    let metrics = Arc::new(Metrics::new());
    let config = Arc::new(ArcSwap::from_pointee(Config::default()));
    let app = App {
        config: Arc::clone(&config),
        config_path: None,
        metrics: Arc::clone(&metrics),
        readiness: Arc::default(),
        mutator: Arc::new(Injector {
            config,
            view: Arc::new(StaticView::new()),
            metrics: Arc::clone(&metrics),
            server_version: None,
        }),
        validator: Arc::new(AllowAll),
    };
    let settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        tls_cert: dir.path().join("tls.crt"),
        tls_key: dir.path().join("tls.key"),
        body_limit: 6 * 1024 * 1024,
        header_read_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(4),
        shutdown_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(1),
        reload_poll: Duration::from_secs(60),
    };
    let server = Server::start(settings, app).await.expect("server");
    let ca = reqwest::Certificate::from_pem(bundle.ca_cert_pem.as_bytes()).expect("ca");
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/mutate", server.webhook_addr.port());

    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-", "annotations": {"instrumentation.opentelemetry.io/inject-java": "true"}},
        "spec": {"containers": [{"name": "web", "image": "web:3", "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}]}]}
    });
    let resp: Value = client
        .post(&url)
        .json(&review("u-1", "CREATE", &pod))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
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
    assert_eq!(env[0].name, "JAVA_TOOL_OPTIONS");
    assert_eq!(
        env[0].value.as_deref(),
        Some("-Xmx1g -javaagent:/otel-auto-instrumentation-java-web/javaagent.jar")
    );
    assert!(
        r["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("injected java into web"))
    );

    // The injected pod again (reinvocation): allowed, no patch.
    let resp: Value = client
        .post(&url)
        .json(&review("u-2", "CREATE", &doc))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(resp["response"], json!({"uid": "u-2", "allowed": true}));

    // UPDATE is never mutated.
    let resp: Value = client
        .post(&url)
        .json(&review("u-3", "UPDATE", &pod))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
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
    server.shutdown();
    server.wait().await;
}
