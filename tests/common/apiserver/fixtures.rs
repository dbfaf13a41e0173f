//! Builders of the objects tests store in the fake API server.

use serde_json::{Value, json};

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

/// An Ingress of `host` in `ns`.
pub fn ingress(ns: &str, name: &str, host: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}})
}
