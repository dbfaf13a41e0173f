//! The `/mutate` adapter over the core: the review decoded, the core's
//! outcome turned into the answer, the metrics and the Events.

use super::*;
use serde_json::json;

fn why(object: &serde_json::Value) -> String {
    let raw = object.to_string();
    let e = crate::inject::sent_pod::parse(&raw).expect_err("not a Pod");
    not_a_pod(&raw, &e)
}

/// The reason names the field, for pods parsed in one pass and for
/// those over [`crate::inject::sent_pod::ONE_PASS`] (parsed their own
/// way); before, it said `at line 1 column N` of the object's text.
#[test]
fn a_pod_that_does_not_parse_is_reported_by_its_field() {
    let big = "x".repeat(crate::inject::sent_pod::ONE_PASS);
    for pad in ["", big.as_str()] {
        let meta = json!({"name": "p", "annotations": {"pad": pad}});
        let cases = [
            (
                json!({"metadata": meta, "spec": {"containers": {"name": "app"}}}),
                "not a Pod: request.object.spec.containers: invalid type: map, expected a sequence",
            ),
            (
                json!({"metadata": meta, "spec": {"containers": [{"name": "app", "env": "A=1"}]}}),
                "not a Pod: request.object.spec.containers[0].env: invalid type: string \"A=1\", expected a sequence",
            ),
            (
                json!({"metadata": {"name": "p", "annotations": {"pad": pad}, "labels": ["a"]}, "spec": {"containers": []}}),
                "not a Pod: request.object.metadata.labels: invalid type: sequence, expected a map",
            ),
        ];
        for (object, want) in cases {
            assert_eq!(why(&object), want, "pad {}", pad.len());
        }
    }
}

// === Moved with the core's split: the core's outcome, as `/mutate` answers and counts it ===

use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::admission;
use crate::config::{Rule, RuleInject};
use crate::inject::cluster_view::StaticView;
use crate::language::LanguageChoice;

const NS: &str = "shop";
const PY: &str = "instrumentation.opentelemetry.io/inject-python";
const JVM: &str = "instrumentation.opentelemetry.io/inject-jvm";

fn simple(annotations: Value, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-0", "annotations": annotations, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.example/checkout:1.2.3"}]}
    })
}

fn outcome(pod: &Value, config: &Config) -> Outcome {
    let pod: Pod = serde_json::from_value(pod.clone()).expect("pod");
    let view = StaticView::new();
    let ctx = Context {
        namespace: NS,
        config,
        view: &view,
        owner_hint: None,
        server_version: None,
    };
    crate::inject::outcome::run(&pod, &ctx)
}

#[test]
fn patch_adds_missing_maps_and_arrays_and_escapes_keys() {
    // No annotations map, no env, no volumes, no initContainers, no metadata.
    let p = json!({"spec": {"containers": [{"name": "app"}]}});
    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NS, "operation": "CREATE", "object": p}
    }))
    .expect("body");
    let config = Config {
        rules: vec![Rule {
            name: "all".into(),
            namespace_selector: Some(Default::default()),
            pod_selector: None,
            inject: RuleInject {
                languages: vec![LanguageChoice::Python],
                ..Default::default()
            },
            instrumentation: None,
        }],
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::new());
    let injector = Injector {
        config: Arc::new(ArcSwap::from_pointee(config)),
        view: Arc::new(StaticView::new()),
        metrics: Arc::clone(&metrics),
        server_version: None,
        events: None,
    };
    let review = admission::decode(&body).expect("decode");
    let v = injector.mutate(&review);
    let patch = v.patch.expect("patch");
    let mut doc = p.clone();
    json_patch::patch(&mut doc, &patch.to_json_patch().expect("patch").0).expect("applies");
    let back: Pod = serde_json::from_value(doc).expect("pod");
    assert!(
        back.metadata
            .annotations
            .expect("ann")
            .contains_key("otel-admission.io/status")
    );
    let m = metrics.encode();
    assert!(
        m.contains(
            "otel_admission_injections_total{feature=\"instrumentation\",language=\"python\"} 1"
        ),
        "{m}"
    );
}

#[test]
fn mutate_ignores_everything_but_pod_create_and_never_panics() {
    let injector = Injector {
        config: Arc::new(ArcSwap::from_pointee(Config::default())),
        view: Arc::new(StaticView::new()),
        metrics: Arc::new(Metrics::new()),
        server_version: None,
        events: None,
    };
    let review = |op: &str, object: Value| {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": NS, "operation": op, "object": object}
        }))
        .expect("body")
    };
    let annotated = simple(json!({PY: "true"}), json!({}));
    let body = review("UPDATE", annotated.clone());
    assert_eq!(
        injector.mutate(&admission::decode(&body).expect("d")),
        admission::Verdict::default()
    );
    let body = review("CREATE", json!({"spec": {"containers": "not a list"}}));
    let v = injector.mutate(&admission::decode(&body).expect("d"));
    assert!(v.patch.is_none());
    assert!(v.warnings[0].contains("not a Pod"), "{:?}", v.warnings);
    let body = review("CREATE", annotated);
    let v = injector.mutate(&admission::decode(&body).expect("d"));
    assert!(v.patch.is_some());
}

/// `/mutate` sends the warning with the review, even with no patch.
#[test]
fn mutate_sends_the_unknown_key_warning() {
    let injector = Injector {
        config: Arc::new(ArcSwap::from_pointee(Config::default())),
        view: Arc::new(StaticView::new()),
        metrics: Arc::new(Metrics::new()),
        server_version: None,
        events: None,
    };
    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NS, "operation": "CREATE",
            "object": simple(json!({JVM: "true"}), json!({}))}
    }))
    .expect("body");
    let v = injector.mutate(&admission::decode(&body).expect("decode"));
    assert!(v.patch.is_none());
    assert_eq!(
        v.warnings,
        vec!["otel-admission: unknown annotation instrumentation.opentelemetry.io/inject-jvm; did you mean instrumentation.opentelemetry.io/inject-java?".to_string()]
    );
}

/// A Windows pod's Linux-only feature is counted as `unsupported_os`.
#[test]
fn record_counts_a_windows_pods_language_as_unsupported_os() {
    let mut p = simple(json!({PY: "true"}), json!({}));
    p["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "windows"});
    let o = outcome(&p, &Config::default());
    let metrics = Metrics::new();
    record(&o, &metrics);
    let m = metrics.encode();
    assert!(
        m.contains("otel_admission_skips_total{reason=\"unsupported_os\"} 1"),
        "{m}"
    );
}

/// The pod features count as `language="none"`, and their series exist at
/// zero before any pod.
#[test]
fn record_counts_the_pod_features() {
    let fresh = Metrics::new().encode();
    for f in ["sidecar", "probes", "annotations"] {
        let line =
            format!("otel_admission_injections_total{{feature=\"{f}\",language=\"none\"}} 0");
        assert!(fresh.contains(&line), "{line} in {fresh}");
    }
    let p = simple(json!({"otel-admission.io/probes": "true"}), json!({}));
    let mut pod = p.clone();
    pod["spec"]["containers"][0]["ports"] = json!([{"name": "health", "containerPort": 8080}]);
    let o = outcome(&pod, &Config::default());
    let metrics = Metrics::new();
    record(&o, &metrics);
    let m = metrics.encode();
    assert!(
        m.contains("otel_admission_injections_total{feature=\"probes\",language=\"none\"} 1"),
        "{m}"
    );
}
