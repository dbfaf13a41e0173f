//! The rollout plan at scale (issue 14): 5,000 Deployments in 50 namespaces
//! with 20,000 pods, all selected by a rule: each template through decide
//! and apply, each pod's label matched against its namespace's selectors.
//! The pure part of `rollout plan` and of every controller round; the
//! cluster reads before it are one list per kind and one pod list per
//! namespace. Figures in docs/PERFORMANCE.md.
//!
//! `rollout/cluster`: the whole `rollout plan` as a user runs it, through
//! kube-rs against the tests' fake list/watch API server holding the same
//! 5,000 Deployments and 20,000 pods: the caches' sync, the paged lists and
//! the assessment.

#[allow(dead_code)]
#[path = "../tests/common/apiserver.rs"]
mod apiserver;

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::{NamespaceMeta, StaticView};
use otel_admission::rollout::{Kind, PodLabels, Workload, assess_all};
use serde_json::json;

fn inputs() -> (Vec<(Workload, LabelSelector)>, PodLabels, StaticView) {
    let mut view = StaticView::new();
    let mut found = Vec::new();
    let mut pods: PodLabels = BTreeMap::new();
    for n in 0..50 {
        let ns = format!("ns-{n:02}");
        view = view.with_namespace(
            ns.clone(),
            NamespaceMeta {
                labels: BTreeMap::from([("otel-admission.io/inject".into(), "enabled".into())]),
                annotations: BTreeMap::new(),
            },
        );
        for w in 0..100 {
            let name = format!("app-{w:03}");
            let template = serde_json::from_value(json!({
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.2.3",
                    "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 8080}]}]}
            }))
            .unwrap_or_default();
            let selector: LabelSelector =
                serde_json::from_value(json!({"matchLabels": {"app": name}})).unwrap_or_default();
            found.push((
                Workload {
                    kind: Kind::Deployment,
                    namespace: ns.clone(),
                    name: name.clone(),
                    template,
                    opted_out: false,
                    paused: false,
                    scaled_to_zero: false,
                    rolling: false,
                },
                selector,
            ));
            for p in 0..4 {
                pods.entry(ns.clone()).or_default().push(BTreeMap::from([
                    ("app".into(), name.clone()),
                    ("pod-template-hash".into(), format!("h{p}")),
                ]));
            }
        }
    }
    (found, pods, view)
}

fn bench(c: &mut Criterion) {
    let (found, pods, view) = inputs();
    let Ok(config) = Config::from_yaml(
        "rules:\n  - name: all-python\n    inject: {languages: [python]}\n",
        "bench",
    ) else {
        panic!("bench config")
    };
    let mut g = c.benchmark_group("rollout");
    g.sample_size(10);
    g.bench_function("plan 5000 workloads 20000 pods", |b| {
        b.iter(|| black_box(assess_all(&found, &pods, &config, &view, None)))
    });
    g.finish();

    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        panic!("runtime")
    };
    let api = rt.block_on(async {
        use apiserver::{DEPLOYMENTS, FakeApiServer, NAMESPACES, PODS, deployment, namespace, pod};
        let api = FakeApiServer::start().await;
        for n in 0..50 {
            let ns = format!("ns-{n:02}");
            api.apply(
                NAMESPACES,
                namespace(&ns, json!({"otel-admission.io/inject": "enabled"})),
            );
            for w in 0..100 {
                let name = format!("app-{w:03}");
                api.apply(
                    DEPLOYMENTS,
                    deployment(&ns, &name, json!({}), json!({}), true),
                );
                for p in 0..4 {
                    api.apply(PODS, pod(&ns, &format!("{name}-{p}"), &name, None));
                }
            }
        }
        api
    });
    let mut g = c.benchmark_group("rollout/cluster");
    g.sample_size(10);
    g.bench_function("rollout plan, 5000 workloads 20000 pods", |b| {
        b.iter(|| {
            // The client needs the runtime (its tower buffer spawns a task).
            let plan = rt.block_on(async {
                otel_admission::rollout::cluster::plan(
                    api.client(),
                    &[],
                    &config,
                    std::time::Duration::from_secs(60),
                )
                .await
            });
            match plan {
                Ok(p) => assert_eq!(p.len(), 5000),
                Err(e) => panic!("plan: {e}"),
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
