//! decide + apply + patch on a typical pod and on a pod with 1,000 env vars.
//! Figures and the command are in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Pod;
use otel_admission::admission::{self, Mutate};
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::StaticView;
use otel_admission::inject::context::Context;
use otel_admission::inject::outcome::run;
use otel_admission::metrics::Metrics;
use otel_admission::mutate::Injector;
use serde_json::{Value, json};

// The server's allocator, so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Deployment-made pod: app plus istio-proxy, a dozen env vars, python opt-in.
fn typical() -> Value {
    let env: Vec<Value> = (0..12)
        .map(|i| json!({"name": format!("APP_SETTING_{i}"), "value": "some-value"}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "checkout-7d9f8c6b5-",
            "labels": {"app.kubernetes.io/name": "checkout", "pod-template-hash": "7d9f8c6b5"},
            "annotations": {"instrumentation.opentelemetry.io/inject-python": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8c6b5", "uid": "u", "controller": true}]
        },
        "spec": {
            "containers": [
                {"name": "checkout", "image": "registry.example.com/checkout:1.4.2", "env": env,
                 "ports": [{"containerPort": 8000}], "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "istio-proxy", "image": "istio/proxyv2:1.27.0"}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn thousand_env() -> Value {
    let mut p = typical();
    p["spec"]["containers"][0]["env"] = json!(
        (0..1000)
            .map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}")}))
            .collect::<Vec<_>>()
    );
    p
}

fn review(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "object": pod}
    }))
    .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let config = Config::default();
    let view = StaticView::new();
    let injector = Injector {
        config: Arc::new(ArcSwap::from_pointee(Config::default())),
        view: Arc::new(StaticView::new()),
        metrics: Arc::new(Metrics::new()),
        server_version: None,
        events: None,
    };
    for (name, pod_json) in [("typical", typical()), ("1000-env", thousand_env())] {
        let Ok(pod) = serde_json::from_value::<Pod>(pod_json.clone()) else {
            panic!("bench pod does not parse")
        };
        let ctx = Context {
            namespace: "shop",
            config: &config,
            view: &view,
            owner_hint: None,
            server_version: None,
        };
        c.bench_function(&format!("decide+apply+patch/{name}"), |b| {
            b.iter(|| {
                let o = run(black_box(&pod), &ctx);
                black_box(o.patch().map(|p| p.len()))
            })
        });
        let body = review(&pod_json);
        c.bench_function(&format!("mutate (decode+run+patch json)/{name}"), |b| {
            b.iter(|| {
                let Ok(r) = admission::decode(black_box(&body)) else {
                    panic!("decode")
                };
                let v = injector.mutate(&r);
                black_box(serde_json::to_vec(&v.patch).map(|b| b.len()))
            })
        });
        stages(c, name, &body, &injector, &ctx);
    }
}

/// Where one `/mutate` answer's time goes, stage by stage, beside the
/// naive webhook's whole work (parse into `serde_json::Value`, answer
/// allowed with the uid) on the same body: the load report's ratio, without
/// TLS and HTTP.
fn stages(c: &mut Criterion, name: &str, body: &[u8], injector: &Injector, ctx: &Context<'_>) {
    let mut g = c.benchmark_group(format!("stages/{name}"));
    g.bench_function("naive: parse Value + answer", |b| {
        b.iter(|| {
            let Ok(v) = serde_json::from_slice::<Value>(black_box(body)) else {
                panic!("json")
            };
            let uid = v["request"]["uid"].clone();
            black_box(serde_json::to_vec(&json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": true}
            })))
        })
    });
    g.bench_function("1 decode envelope", |b| {
        b.iter(|| black_box(admission::decode(black_box(body)).is_ok()))
    });
    let Ok(review) = admission::decode(body) else {
        panic!("decode")
    };
    let raw = review.request.object.map(|o| o.get()).unwrap_or("null");
    g.bench_function("2 parse pod", |b| {
        b.iter(|| black_box(otel_admission::inject::sent_pod::parse(black_box(raw)).is_ok()))
    });
    let Ok(sent) = otel_admission::inject::sent_pod::parse(raw) else {
        panic!("pod")
    };
    g.bench_function("3 decide", |b| {
        b.iter(|| {
            black_box(otel_admission::inject::decide::decide(
                black_box(&sent.pod),
                ctx,
            ))
        })
    });
    let otel_admission::inject::plan::Decision::Inject(plan) =
        otel_admission::inject::decide::decide(&sent.pod, ctx)
    else {
        panic!("the bench pod is injected")
    };
    g.bench_function("4 apply (owned pod)", |b| {
        b.iter_batched(
            || sent.pod.clone(),
            |pod| {
                black_box(
                    otel_admission::inject::apply::apply_owned(pod, &plan, ctx.config).is_ok(),
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let verdict = injector.mutate(&review);
    g.bench_function("5 encode answer (patch json, base64)", |b| {
        b.iter(|| black_box(admission::encode("u", black_box(&verdict)).map(|(b, _)| b.len())))
    });
    g.bench_function("all: decode + mutate + encode", |b| {
        b.iter(|| {
            let Ok(r) = admission::decode(black_box(body)) else {
                panic!("decode")
            };
            let v = injector.mutate(&r);
            black_box(admission::encode(&r.request.uid, &v).map(|(b, _)| b.len()))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
