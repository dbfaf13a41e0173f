//! The cluster cache (issue 13), through its public API and real kube-rs
//! watchers fed by the tests' fake list/watch API server: 10,000
//! Instrumentations in 500 namespaces and 2,000 namespaces cached.
//!
//! - `lookup`: what one admission reads (a namespace; the only
//!   Instrumentation of a namespace, the `inject-java: "true"` case).
//! - `watch`: 500 MODIFIED events of one Instrumentation, from the first
//!   `apply` on the fake server to the cache showing the last one; the cost
//!   of an event against the size of the cache.
//!
//! `cargo bench --profile dev --bench cluster -- --quick` for a short run.

#[allow(dead_code)]
#[path = "../tests/common/apiserver.rs"]
mod apiserver;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::{FakeApiServer, INSTRUMENTATIONS, NAMESPACES, instrumentation, namespace};
use criterion::{Criterion, criterion_group, criterion_main};
use otel_admission::cluster::Caches;
use otel_admission::inject::cluster_view::ClusterView as _;
use otel_admission::metrics::Metrics;
use otel_admission::server::admin::Readiness;
use serde_json::json;

const NAMESPACE_COUNT: usize = 2_000;
const INSTRUMENTED_NAMESPACES: usize = 500;
const PER_NAMESPACE: usize = 20;
const EVENTS: usize = 500;

fn endpoint_of(caches: &Caches) -> Option<String> {
    caches
        .instrumentation("solo", "only")?
        .spec
        .exporter
        .as_ref()?
        .endpoint
        .clone()
}

fn bench(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        panic!("runtime")
    };
    let (api, caches, _stop) = rt.block_on(async {
        let api = FakeApiServer::start().await;
        for n in 0..NAMESPACE_COUNT {
            api.apply(
                NAMESPACES,
                namespace(&format!("ns-{n:04}"), json!({"team": "t"})),
            );
        }
        api.apply(NAMESPACES, namespace("solo", json!({})));
        for n in 0..INSTRUMENTED_NAMESPACES {
            for i in 0..PER_NAMESPACE {
                api.apply(
                    INSTRUMENTATIONS,
                    instrumentation(
                        &format!("ns-{n:04}"),
                        &format!("inst-{i:02}"),
                        json!({"exporter": {"endpoint": "http://col:4318"}}),
                    ),
                );
            }
        }
        api.apply(
            INSTRUMENTATIONS,
            instrumentation(
                "solo",
                "only",
                json!({"exporter": {"endpoint": "http://e-0:4318"}}),
            ),
        );
        let caches = Arc::new(Caches::new());
        let readiness = Readiness::default();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        caches.start(
            api.client(),
            Arc::new(Metrics::new()),
            readiness.gate("cluster"),
            stop_rx,
        );
        let start = Instant::now();
        while !caches.is_ready() {
            assert!(start.elapsed() < Duration::from_secs(120), "not synced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (api, caches, stop)
    });

    let mut g = c.benchmark_group("cluster/lookup");
    g.bench_function("namespace", |b| {
        b.iter(|| black_box(caches.namespace(black_box("ns-0042"))))
    });
    g.bench_function("the namespace's only Instrumentation", |b| {
        b.iter(|| {
            let all = caches.instrumentations_in(black_box("solo"));
            assert_eq!(all.len(), 1);
            black_box(all)
        })
    });
    g.bench_function("20 Instrumentations of a namespace", |b| {
        b.iter(|| black_box(caches.instrumentations_in(black_box("ns-0042"))))
    });
    g.finish();

    let mut g = c.benchmark_group("cluster/watch");
    g.sample_size(10);
    let mut round = 0usize;
    g.bench_function("500 events into 10,000 cached", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut last = String::new();
                for _ in 0..EVENTS {
                    round += 1;
                    last = format!("http://e-{round}:4318");
                    api.apply(
                        INSTRUMENTATIONS,
                        instrumentation("solo", "only", json!({"exporter": {"endpoint": last}})),
                    );
                }
                rt.block_on(async {
                    while endpoint_of(&caches).as_deref() != Some(last.as_str()) {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
