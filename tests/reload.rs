//! Issue 27: hostile files reloaded under a running server cost at most
//! their own refusal. Reloads run off the async runtime, so `/healthz` keeps
//! answering however long a file takes; a file too deep or too large is
//! refused before parsing; an empty config (a truncated write) is refused.

mod common;

use std::time::{Duration, Instant};

use common::{Options, start};

/// `/healthz` round trips while `during` runs: the slowest one.
async fn slowest_healthz_while<F: std::future::Future<Output = ()>>(
    s: &common::TestServer,
    during: F,
) -> Duration {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (client, url, stop) = (
            reqwest::Client::new(),
            s.admin_url("/healthz"),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let ok = client
                    .get(&url)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                assert!(ok, "/healthz failed");
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            slowest
        })
    };
    during.await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    probe.await.expect("probe")
}

/// A counter without labels, read from `/metrics`.
async fn counter(s: &common::TestServer, name: &str) -> u64 {
    let text = s.admin_get("/metrics").await.1;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_default()
}

async fn reload_errors(s: &common::TestServer) -> u64 {
    counter(s, "otel_admission_config_reload_errors_total").await
}

/// An empty config file on reload is a truncated write, not "no rules":
/// refused, counted, the old config kept; `{}` does ask for the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_config_on_reload_is_refused_and_braces_are_defaults() {
    let s = start(Options {
        config_yaml: Some("failureMode: deny\n".into()),
        ..Default::default()
    })
    .await;
    let path = s.dir.path().join("config.yaml");
    for blank in ["", "\n  \n", "# truncated\n---\n"] {
        let before = reload_errors(&s).await;
        std::fs::write(&path, blank).expect("w");
        let counted = common::eventually(Duration::from_secs(5), || async {
            reload_errors(&s).await > before
        })
        .await;
        assert!(counted, "{blank:?}: refused and counted");
        assert_eq!(
            s.config.load().failure_mode,
            otel_admission::config::FailureMode::Deny,
            "{blank:?}: the old config is kept"
        );
    }
    std::fs::write(&path, "{}\n").expect("w");
    let defaults = common::eventually(Duration::from_secs(5), || async {
        s.config.load().failure_mode == otel_admission::config::FailureMode::Allow
    })
    .await;
    assert!(defaults, "`{{}}` is the defaults");
}

/// A 100,000-deep YAML config took the parser about a minute, on the
/// runtime, before its recursion limit refused it. Now it is refused before
/// parsing, counted, and `/healthz` never waited on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_config_is_refused_at_once_and_health_never_waits() {
    let s = start(Options {
        config_yaml: Some("failureMode: deny\n".into()),
        ..Default::default()
    })
    .await;
    let path = s.dir.path().join("config.yaml");
    let n = 100_000;
    let started = Instant::now();
    let slowest = slowest_healthz_while(&s, async {
        std::fs::write(
            &path,
            format!("rules: {}{}\n", "[".repeat(n), "]".repeat(n)),
        )
        .expect("w");
        let counted = common::eventually(Duration::from_secs(10), || async {
            reload_errors(&s).await >= 1
        })
        .await;
        assert!(counted, "refused and counted");
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused in {:?}",
        started.elapsed()
    );
    assert!(
        slowest < Duration::from_millis(500),
        "/healthz took {slowest:?}"
    );
    assert_eq!(
        s.config.load().failure_mode,
        otel_admission::config::FailureMode::Deny
    );
}

/// Rego whose literal nests `depth` collections in first position: the
/// shape regorus parses in time exponential in the depth.
fn nested(pkg: &str, depth: usize) -> String {
    format!(
        "package kubernetes.admission.{pkg}\nimport rego.v1\nx := {}1{}\ndeny contains \"{pkg}\" if input.request.object.metadata.labels.{pkg}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// A policy file the compiler would take hours on (a 20-deep literal) is
/// refused at once, counted, the previous set keeps serving, and `/healthz`
/// never waits. A directory that is merely slow to compile (seconds of
/// work, within the bounds) is compiled on the reload thread while
/// `/healthz` answers in milliseconds, then swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_slow_policy_reloads_cost_serving_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("first.rego"),
        "package kubernetes.admission.first\nimport rego.v1\ndeny contains \"first\" if input.request.object.metadata.labels.first\n",
    )
    .expect("w");
    let metrics = std::sync::Arc::new(otel_admission::metrics::Metrics::new());
    let policies = std::sync::Arc::new(
        otel_admission::policy::Policies::load(
            dir.path(),
            Duration::from_secs(2),
            otel_admission::config::FailureMode::Allow,
            metrics.clone(),
        )
        .expect("compiles"),
    );
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let _reloader = policies.spawn_reload(Duration::from_millis(200), stop);
    let s = start(Options {
        validator: policies.clone(),
        metrics: Some(metrics),
        ..Default::default()
    })
    .await;

    let started = Instant::now();
    let slowest = slowest_healthz_while(&s, async {
        std::fs::write(dir.path().join("deep.rego"), nested("deep", 20)).expect("w");
        let counted = common::eventually(Duration::from_secs(10), || async {
            counter(&s, "otel_admission_policy_reload_errors_total").await >= 1
        })
        .await;
        assert!(counted, "refused and counted");
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        slowest < Duration::from_millis(500),
        "/healthz took {slowest:?}"
    );
    assert_eq!(
        policies.current().policy_names(),
        ["kubernetes.admission.first"]
    );
    std::fs::remove_file(dir.path().join("deep.rego")).expect("rm");

    // Seconds of legitimate compile work: a dozen files at the literal bound.
    let files = 12;
    let slowest = slowest_healthz_while(&s, async {
        for i in 0..files {
            std::fs::write(
                dir.path().join(format!("slow{i}.rego")),
                nested(&format!("slow{i}"), 12),
            )
            .expect("w");
        }
        let swapped = common::eventually(Duration::from_secs(30), || async {
            policies.current().policy_names().len() == files + 1
        })
        .await;
        assert!(swapped, "the slow set is compiled and swapped in");
    })
    .await;
    assert!(
        slowest < Duration::from_millis(500),
        "/healthz took {slowest:?}"
    );
}
