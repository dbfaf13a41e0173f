//! Evaluating the shipped `policies/` pack against a typical instrumented
//! pod: the per-request cost of `/validate`. Figures in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use otel_admission::admission::{Validate, decode};
use otel_admission::config::FailureMode;
use otel_admission::metrics::Metrics;
use otel_admission::policy::{Policies, PolicySet};
use serde_json::{Value, json};

fn review() -> Value {
    let sc = json!({"runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}});
    let limits = json!({"limits": {"cpu": "500m", "memory": "128Mi"}});
    let probe = json!({"httpGet": {"path": "/health/live", "port": "health"}});
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "bench", "operation": "CREATE", "namespace": "shop",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "shop-7d9f8-", "namespace": "shop",
                "labels": {"app.kubernetes.io/name": "shop", "app.kubernetes.io/version": "1.4.2", "pod-template-hash": "7d9f8"},
                "annotations": {"otel-admission.io/status": "{\"version\":1}"}},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "initContainers": [{"name": "opentelemetry-auto-instrumentation-python",
                    "image": "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.48b0",
                    "securityContext": sc, "resources": limits}],
                "containers": [
                    {"name": "app", "image": "ghcr.io/acme/shop:1.4.2", "securityContext": sc,
                     "resources": limits, "readinessProbe": probe, "livenessProbe": probe,
                     "env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.monitoring:4318"}]},
                    {"name": "worker", "image": "ghcr.io/acme/shop-worker:1.4.2", "securityContext": sc,
                     "resources": limits, "readinessProbe": probe, "livenessProbe": probe}]}}}})
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let timeout = Duration::from_millis(500);
    let set = PolicySet::load_dir(&dir, timeout).expect("pack compiles");
    let review = review();
    let out = set.evaluate(&review, &|_: &str| None);
    assert!(
        out.violations.is_empty() && out.errors.is_empty(),
        "{out:?}"
    );

    let mut g = c.benchmark_group("policy");
    g.bench_function("compile_shipped_pack", |b| {
        b.iter(|| PolicySet::load_dir(black_box(&dir), timeout).expect("compiles"))
    });
    g.bench_function("clone_compiled_set", |b| b.iter(|| black_box(&set).clone()));
    g.bench_function("evaluate_shipped_pack_pod", |b| {
        b.iter(|| set.evaluate(black_box(&review), &|_: &str| None))
    });
    let policies =
        Policies::load(&dir, timeout, FailureMode::Allow, Arc::new(Metrics::new())).expect("load");
    let body = serde_json::to_vec(&review).expect("json");
    g.bench_function("validate_request_end_to_end", |b| {
        b.iter(|| {
            let decoded = decode(black_box(&body)).expect("decodes");
            policies.validate(&decoded)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
