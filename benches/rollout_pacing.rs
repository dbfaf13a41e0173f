//! The rollout controller's pace against `rateLimit` (issue 14: within 10%).
//!
//! The controller runs in-process, as `serve` runs it, against the tests'
//! fake list/watch API server, which records when each workload PATCH
//! arrives. Each scenario has more stale Deployments (one per namespace, so
//! `maxConcurrent` never holds one back) than it restarts; the figure is
//! the achieved rate over the run, `(restarts - 1) / (last - first)`, as a
//! ratio to `rateLimit`, with the largest gap's deviation from the spacing.
//!
//! A plain `main` rather than criterion: one scenario takes tens of seconds
//! of wall time, and what it measures is a rate, not a duration.
//! `cargo bench --bench rollout_pacing` (release) or `--profile dev`.

#[allow(dead_code)]
#[path = "../tests/common/apiserver.rs"]
mod apiserver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::{DEPLOYMENTS, FakeApiServer, NAMESPACES, PODS, deployment, namespace, pod};
use arc_swap::ArcSwap;
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::{NamespaceMeta, StaticView};
use otel_admission::metrics::Metrics;
use otel_admission::rollout::controller::Controller;
use otel_admission::rollout::lease::Elector;
use serde_json::json;

struct Scenario {
    rate: &'static str,
    per_minute: f64,
    lease: &'static str,
    lease_duration: Duration,
    restarts: usize,
    /// Workloads that are not stale, planned each round beside the others.
    bystanders: usize,
}

async fn run(s: &Scenario) {
    let api = FakeApiServer::start().await;
    let mut view = StaticView::new();
    let opted_in = BTreeMap::from([("otel-admission.io/inject".into(), "enabled".into())]);
    // More stale workloads than the run restarts, so the pace, not the
    // supply, ends each interval.
    for n in 0..s.restarts + 4 {
        let ns = format!("team-{n:03}");
        api.apply(NAMESPACES, namespace(&ns, json!(opted_in)));
        view = view.with_namespace(
            ns.clone(),
            NamespaceMeta {
                labels: opted_in.clone(),
                annotations: BTreeMap::new(),
            },
        );
        api.apply(
            DEPLOYMENTS,
            deployment(&ns, "stale", json!({}), json!({}), true),
        );
        api.apply(PODS, pod(&ns, "stale-0", "stale", None));
    }
    api.apply(NAMESPACES, namespace("quiet", json!({})));
    view = view.with_namespace("quiet", NamespaceMeta::default());
    for b in 0..s.bystanders {
        let ns = "quiet";
        let name = format!("app-{b}");
        api.apply(
            DEPLOYMENTS,
            deployment(ns, &name, json!({}), json!({}), true),
        );
        api.apply(PODS, pod(ns, &format!("{name}-0"), &name, None));
    }
    let yaml = format!(
        "rules:\n  - name: all-python\n    inject: {{languages: [python]}}\n    namespaceSelector: {{matchLabels: {{otel-admission.io/inject: enabled}}}}\nrollout: {{enabled: true, rateLimit: {}, maxConcurrent: 1, leaseDuration: {}}}\n",
        s.rate, s.lease
    );
    let config = match Config::from_yaml(&yaml, "bench") {
        Ok(c) => c,
        Err(e) => panic!("bench config: {e}"),
    };
    let client = api.client();
    let controller = Controller {
        elector: Elector::new(
            client.clone(),
            "otel-admission",
            "bench".into(),
            s.lease_duration,
        ),
        client,
        config: Arc::new(ArcSwap::from_pointee(config)),
        view: Arc::new(view),
        metrics: Arc::new(Metrics::new()),
        events: None,
        server_version: None,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(controller.run(stop_rx));
    let spacing = 60.0 / s.per_minute;
    let budget = Duration::from_secs_f64(spacing * (s.restarts as f64 + 2.0) + 30.0);
    let t0 = Instant::now();
    while api.patches().len() < s.restarts && t0.elapsed() < budget {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    let _ = task.await;
    let times: Vec<Instant> = api.patches().iter().take(s.restarts).map(|p| p.0).collect();
    if times.len() < 2 {
        println!(
            "{} / lease {}: only {} restarts",
            s.rate,
            s.lease,
            times.len()
        );
        return;
    }
    let span = times[times.len() - 1]
        .duration_since(times[0])
        .as_secs_f64();
    let achieved = (times.len() - 1) as f64 / span * 60.0;
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    let worst = gaps
        .iter()
        .map(|g| (g - spacing).abs() / spacing)
        .fold(0.0f64, f64::max);
    println!(
        "rateLimit {:>5} lease {:>3} ({} restarts, {} bystanders): achieved {:.2}/m = {:.3}x rateLimit; gaps {:.3}-{:.3} s for {:.3} s, worst {:.1}% off",
        s.rate,
        s.lease,
        times.len(),
        s.bystanders,
        achieved,
        achieved / s.per_minute,
        gaps.iter().copied().fold(f64::INFINITY, f64::min),
        gaps.iter().copied().fold(0.0, f64::max),
        spacing,
        worst * 100.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        panic!("runtime")
    };
    let scenarios = [
        // Spacing shorter than the tick: restarts wait for their slot
        // inside a round.
        Scenario {
            rate: "120/m",
            per_minute: 120.0,
            lease: "15s",
            lease_duration: Duration::from_secs(15),
            restarts: 30,
            bystanders: 0,
        },
        // Spacing longer than the tick: the slot falls in a later round.
        Scenario {
            rate: "20/m",
            per_minute: 20.0,
            lease: "4s",
            lease_duration: Duration::from_secs(4),
            restarts: 8,
            bystanders: 0,
        },
        // The defaults (5/m, a 15 s Lease).
        Scenario {
            rate: "5/m",
            per_minute: 5.0,
            lease: "15s",
            lease_duration: Duration::from_secs(15),
            restarts: 5,
            bystanders: 0,
        },
        // A plan that takes real time: 2,000 more workloads in each plan.
        Scenario {
            rate: "60/m",
            per_minute: 60.0,
            lease: "15s",
            lease_duration: Duration::from_secs(15),
            restarts: 40,
            bystanders: 2000,
        },
    ];
    for s in &scenarios {
        rt.block_on(run(s));
    }
}
