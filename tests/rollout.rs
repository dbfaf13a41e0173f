//! `otel-admission rollout plan` against the local list/watch API server:
//! the real binary, a kubeconfig, workloads and their pods' metadata.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use common::apiserver::{
    DAEMONSETS, DEPLOYMENTS, FakeApiServer, NAMESPACES, PODS, deployment, namespace, pod,
};
use common::replica::{Replica, free_admin, kubeconfig_for, memory_kib, until_metric, wait_ready};
use serde_json::{Value, json};

/// Runs `otel-admission rollout <args>` against `kubeconfig` off the async
/// runtime (the fake API server shares it), in the kubeconfig's directory.
async fn rollout(kubeconfig: &Path, args: Vec<OsString>) -> Output {
    let kubeconfig = kubeconfig.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_otel-admission"))
            .arg("rollout")
            .args(args)
            .current_dir(kubeconfig.parent().unwrap_or(Path::new(".")))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("run")
    })
    .await
    .expect("join")
}

/// A namespace opted in by a rule, three Deployments and a DaemonSet: the
/// plan lists the stale ones with the reason, marks the one mid-rollout as
/// not restartable, and exits 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_lists_stale_workloads_with_reasons() {
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    // Selected by the rule, never instrumented: stale.
    api.apply(
        DEPLOYMENTS,
        deployment("shop", "web", json!({}), json!({}), true),
    );
    api.apply(PODS, pod("shop", "web-1", "web", None));
    // Stale too, but a rollout is in progress.
    api.apply(
        DEPLOYMENTS,
        deployment("shop", "busy", json!({}), json!({}), false),
    );
    api.apply(PODS, pod("shop", "busy-1", "busy", None));
    // Opted out of injection; its pods carry nothing: up to date.
    api.apply(
        DEPLOYMENTS,
        deployment(
            "shop",
            "quiet",
            json!({"otel-admission.io/inject": "false"}),
            json!({}),
            true,
        ),
    );
    api.apply(PODS, pod("shop", "quiet-1", "quiet", None));
    // Opted out of rollouts.
    api.apply(
        DEPLOYMENTS,
        deployment(
            "shop",
            "pinned",
            json!({}),
            json!({"otel-admission.io/rollout": "false"}),
            true,
        ),
    );
    api.apply(PODS, pod("shop", "pinned-1", "pinned", None));
    api.apply(
        DAEMONSETS,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "shop", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}, "annotations": {"otel-admission.io/inject": "false"}},
                    "spec": {"containers": [{"name": "a", "image": "a:1"}]}}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 1, "updatedNumberScheduled": 1,
                "currentNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": 1}}),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "rules:\n  - name: shop-python\n    inject: {languages: [python]}\n",
    )
    .expect("config");
    let run = |out: &str| {
        let args = vec![
            "plan".into(),
            "--config".into(),
            config.clone().into(),
            "-o".into(),
            out.into(),
        ];
        rollout(&kubeconfig, args)
    };
    let out = run("json").await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let by = |name: &str| {
        all.iter()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let web = by("web");
    assert_eq!(web["stale"], true, "{all:?}");
    assert!(
        web["reason"].as_str().is_some_and(
            |r| r.starts_with("not instrumented; now python by config rule \"shop-python\"")
        ),
        "{web}"
    );
    assert!(web["not_restartable"].is_null());
    assert_eq!(web["wanted"].as_str().map(str::len), Some(16));
    let busy = by("busy");
    assert_eq!(busy["stale"], true);
    assert!(
        busy["not_restartable"]
            .as_str()
            .is_some_and(|w| w.contains("in progress")),
        "{busy}"
    );
    assert_eq!(by("quiet")["stale"], false);
    assert!(
        by("pinned")["not_restartable"]
            .as_str()
            .is_some_and(|w| w.contains("rollout=false"))
    );
    assert_eq!(by("agent")["kind"], "DaemonSet");
    assert_eq!(by("agent")["stale"], false);

    let table = run("table").await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("KIND\tNAMESPACE\tNAME"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Deployment\tshop\tweb\t-\t")),
        "{text}"
    );
    assert!(
        !text.contains("quiet"),
        "up-to-date workloads are not listed: {text}"
    );
}

/// `rollout apply` restarts what the plan lists as restartable, with the
/// `kubectl.kubernetes.io/restartedAt` annotation, waits for each to be
/// available, and prints a summary; `--dry-run` changes nothing; the
/// mid-rollout and opted-out workloads are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_restarts_the_stale_ones_as_kubectl_does() {
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    api.apply(
        NAMESPACES,
        namespace("pay", json!({"otel-admission.io/inject": "enabled"})),
    );
    for (ns, name) in [("shop", "web"), ("shop", "api"), ("pay", "ledger")] {
        api.apply(
            DEPLOYMENTS,
            deployment(ns, name, json!({}), json!({}), true),
        );
        api.apply(PODS, pod(ns, &format!("{name}-1"), name, None));
    }
    api.apply(
        DEPLOYMENTS,
        deployment("shop", "busy", json!({}), json!({}), false),
    );
    api.apply(
        DEPLOYMENTS,
        deployment(
            "shop",
            "pinned",
            json!({}),
            json!({"otel-admission.io/rollout": "false"}),
            true,
        ),
    );
    api.apply(PODS, pod("shop", "busy-1", "busy", None));
    api.apply(PODS, pod("shop", "pinned-1", "pinned", None));
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "rules:\n  - name: all-python\n    inject: {languages: [python]}\n",
    )
    .expect("config");
    let run = |extra: Vec<&'static str>| {
        let mut args: Vec<OsString> =
            vec!["apply".into(), "--config".into(), config.clone().into()];
        args.extend(extra.into_iter().map(OsString::from));
        rollout(&kubeconfig, args)
    };
    let restarted = |name: &str| {
        api.objects(DEPLOYMENTS)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .and_then(|d| {
                d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                    .as_str()
                    .map(str::to_string)
            })
    };
    let dry = run(vec!["--dry-run"]).await;
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let summary = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        summary.contains("3 planned (dry run)") && summary.contains("2 stale but not restartable"),
        "{summary}"
    );
    assert!(restarted("web").is_none(), "a dry run changes nothing");

    let out = run(vec!["--timeout", "10s"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(summary.contains("3 restarted"), "{summary}");
    for name in ["web", "api", "ledger"] {
        assert!(restarted(name).is_some(), "{name} restarted");
    }
    assert!(restarted("busy").is_none() && restarted("pinned").is_none());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("restarted Deployment shop/web, available after"),
        "{log}"
    );

    // A workload that never becomes available is reported, and fails the run.
    api.apply(
        DEPLOYMENTS,
        deployment("pay", "slow", json!({}), json!({}), true),
    );
    api.apply(PODS, pod("pay", "slow-1", "slow", None));
    api.slow_rollouts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let out = run(vec!["--timeout", "1s", "-n", "pay"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not available in time"));
}

/// The controller tests' config: Python by rule in opted-in namespaces,
/// restarts at 120/m, a 2 s Lease.
const CONTROLLER_CONFIG: &str = "rules:\n  - name: shop-python\n    inject: {languages: [python]}\nrollout: {enabled: true, rateLimit: 120/m, maxConcurrent: 5, leaseDuration: 2s}\n";

/// A Deployment's `metadata.generation` in the fake API server (each restart
/// bumps it once), 0 when it is gone.
fn generation(api: &FakeApiServer, name: &str) -> i64 {
    api.objects(DEPLOYMENTS)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .and_then(|d| d["metadata"]["generation"].as_i64())
        .unwrap_or(0)
}

/// Who holds the rollout Lease, if anyone.
fn lease_holder(api: &FakeApiServer) -> Option<String> {
    api.objects(common::apiserver::LEASES)
        .first()
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Two `serve` replicas with the controller on: exactly one holds the Lease
/// and restarts each stale workload once, at the configured pace; on SIGTERM
/// the leader hands the Lease over at once, and the new leader restarts
/// nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_restarts_each_stale_workload_once_and_hands_over() {
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    api.apply(NAMESPACES, namespace("otel-admission", json!({})));
    for name in ["a", "b", "c"] {
        api.apply(
            DEPLOYMENTS,
            deployment("shop", name, json!({}), json!({}), true),
        );
        api.apply(PODS, pod("shop", &format!("{name}-1"), name, None));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    let config = CONTROLLER_CONFIG;
    let bin = env!("CARGO_BIN_EXE_otel-admission");
    let mut first = Replica::start(bin, &kubeconfig, config);
    let mut second = Replica::start(bin, &kubeconfig, config);
    let generation = |name: &str| generation(&api, name);
    // Each restart bumps the generation once (from 2).
    let t0 = std::time::Instant::now();
    while ["a", "b", "c"].iter().any(|n| generation(n) < 3) && t0.elapsed().as_secs() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let took = t0.elapsed();
    for n in ["a", "b", "c"] {
        assert_eq!(generation(n), 3, "{n} restarted exactly once");
    }
    // 120/m is one every 500 ms: three restarts take at least a second.
    assert!(took.as_millis() >= 900, "paced: three restarts in {took:?}");
    let holder = || lease_holder(&api);
    let leader = holder().expect("a leader");
    // The restarted pods come back instrumented: what a cluster would do.
    let plan_config = dir.path().join("plan.yaml");
    std::fs::write(&plan_config, config).expect("w");
    let args = vec![
        "plan".into(),
        "-o".into(),
        "json".into(),
        "--config".into(),
        plan_config.into(),
    ];
    let plan = rollout(&kubeconfig, args).await;
    let all: Vec<Value> = serde_json::from_slice(&plan.stdout).expect("json");
    for a in &all {
        let name = a["name"].as_str().unwrap_or_default();
        api.apply(
            PODS,
            pod("shop", &format!("{name}-1"), name, a["wanted"].as_str()),
        );
    }
    // SIGTERM the leader: the other takes the Lease well within its duration.
    let leader_pid_is_first = leader.ends_with(&format!("-{}", first.child.id()));
    if leader_pid_is_first {
        first.terminate();
    } else {
        second.terminate();
    }
    let t1 = std::time::Instant::now();
    while holder().is_none_or(|h| h == leader) && t1.elapsed().as_secs() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        holder().is_some_and(|h| h != leader),
        "handed over: {:?} after {:?}",
        holder(),
        t1.elapsed()
    );
    assert!(
        t1.elapsed().as_secs_f64() < 2.5,
        "within the lease duration: {:?}",
        t1.elapsed()
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for n in ["a", "b", "c"] {
        assert_eq!(generation(n), 3, "{n} is not restarted twice");
    }
    drop(first);
    drop(second);
}

/// The API server gone for a minute under the controller: the replica keeps
/// running (no crash, no exit), restarts nothing while it cannot see the
/// cluster, and once the API server is back it resumes: the workload that
/// went stale during the outage is restarted exactly once, and the Lease is
/// held again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_rides_out_a_minute_without_the_api_server() {
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    api.apply(NAMESPACES, namespace("otel-admission", json!({})));
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    let config = CONTROLLER_CONFIG;
    let bin = env!("CARGO_BIN_EXE_otel-admission");
    let mut replica = Replica::start(bin, &kubeconfig, config);
    let holder = || lease_holder(&api);
    let t0 = std::time::Instant::now();
    while holder().is_none() && t0.elapsed().as_secs() < 15 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(holder().is_some(), "the replica took the Lease");
    let generation = |name: &str| generation(&api, name);
    api.set_down(true);
    // A workload goes stale while the API server is away.
    api.apply(
        DEPLOYMENTS,
        deployment("shop", "late", json!({}), json!({}), true),
    );
    api.apply(PODS, pod("shop", "late-1", "late", None));
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(
            replica.child.try_wait().expect("wait").is_none(),
            "the replica exited during the outage"
        );
    }
    assert_eq!(generation("late"), 2, "nothing restarted while it was away");
    api.set_down(false);
    let t1 = std::time::Instant::now();
    while generation("late") < 3 && t1.elapsed().as_secs() < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        generation("late"),
        3,
        "restarted once the API server was back ({:?})",
        t1.elapsed()
    );
    assert!(holder().is_some(), "the Lease is held again");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(generation("late"), 3, "not restarted twice");
    assert!(replica.child.try_wait().expect("wait").is_none());
    replica.terminate();
}

/// The controller's memory at scale (issue 14: at most 128 MiB more than
/// the webhook alone): against 5,000 Deployments in 50 namespaces and
/// 20,000 pods, all stale, the webhook alone (rollout off, the same caches)
/// is measured once ready; then a replica in `mode: report`, once a whole
/// round is counted (the `rollout_workloads` gauge reads 5,000 stale). The
/// difference of their peak RSS (`VmHWM`) is within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_at_5000_workloads_holds_at_most_128_mib_more_than_the_webhook() {
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("otel-admission", json!({})));
    for n in 0..50 {
        let ns = format!("team-{n}");
        api.apply(
            NAMESPACES,
            namespace(&ns, json!({"otel-admission.io/inject": "enabled"})),
        );
        for d in 0..100 {
            let name = format!("svc-{d}");
            api.apply(
                DEPLOYMENTS,
                deployment(&ns, &name, json!({}), json!({}), true),
            );
            for p in 0..4 {
                api.apply(PODS, pod(&ns, &format!("{name}-{p}"), &name, None));
            }
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    let rules = "rules:\n  - name: all-python\n    inject: {languages: [python]}\n";
    let bin = env!("CARGO_BIN_EXE_otel-admission");

    // The webhook alone: rollout off, ready (the caches synced).
    let admin = free_admin();
    let mut webhook = Replica::start_with_admin(bin, &kubeconfig, rules, &admin);
    wait_ready(&admin, 60).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (alone, _) = memory_kib(webhook.child.id());
    webhook.terminate();

    let config = format!("{rules}rollout: {{enabled: true, mode: report, leaseDuration: 2s}}\n");
    let admin = free_admin();
    let mut replica = Replica::start_with_admin(bin, &kubeconfig, &config, &admin);
    let t0 = std::time::Instant::now();
    let series = r#"otel_admission_rollout_workloads{state="stale"}"#;
    let seen = until_metric(&admin, series, 5000.0, 120).await;
    assert_eq!(seen, Some(5000.0), "a whole round counted within 120 s");
    let (hwm, rss) = memory_kib(replica.child.id());
    eprintln!(
        "5,000 Deployments / 20,000 pods: webhook alone peak RSS {} MiB; with the controller, round counted after {:?}, peak RSS {} MiB, RSS {} MiB",
        alone / 1024,
        t0.elapsed(),
        hwm / 1024,
        rss / 1024
    );
    assert!(alone > 0 && hwm > 0, "read VmHWM");
    assert!(
        hwm.saturating_sub(alone) <= 128 * 1024,
        "the controller holds {} MiB more than the webhook alone (at most 128)",
        (hwm - alone) / 1024
    );
    replica.terminate();
}

/// The bad cases of `rollout apply`: a PATCH refused with 409 or failing
/// with 500 is reported as failed (exit 1), changing nothing; a workload
/// deleted while it restarts is reported, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reports_failed_patches_and_deleted_workloads() {
    use std::sync::atomic::Ordering;
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    api.apply(
        DEPLOYMENTS,
        deployment("shop", "web", json!({}), json!({}), true),
    );
    api.apply(PODS, pod("shop", "web-1", "web", None));
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "rules:\n  - name: all\n    inject: {languages: [python]}\n",
    )
    .expect("w");
    let run = |timeout: &'static str| {
        let args = vec![
            "apply".into(),
            "--timeout".into(),
            timeout.into(),
            "--config".into(),
            config.clone().into(),
        ];
        rollout(&kubeconfig, args)
    };
    for code in [409u16, 500] {
        api.fail_patches.store(code, Ordering::SeqCst);
        let out = run("5s").await;
        assert_eq!(out.status.code(), Some(1), "{code}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 failed"),
            "{code}"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED Deployment shop/web"));
    }
    api.fail_patches.store(0, Ordering::SeqCst);
    // Deleted while its rollout is still running.
    api.slow_rollouts.store(true, Ordering::SeqCst);
    let deleter = {
        let api = api.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            api.delete(DEPLOYMENTS, "shop", "web");
        })
    };
    let out = run("20s").await;
    deleter.await.expect("join");
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("deleted while restarting"), "{log}");
}

/// The controller keeps a plan for a few ticks, so each workload is read
/// again before its restart: one that started rolling, was opted out or was
/// deleted since the plan is left alone, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_changed_since_the_plan_is_read_again_before_its_restart() {
    use otel_admission::rollout::cluster::{plan, recheck};
    let api = FakeApiServer::start().await;
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    api.apply(
        DEPLOYMENTS,
        deployment("shop", "web", json!({}), json!({}), true),
    );
    api.apply(PODS, pod("shop", "web-0", "web", None));
    let config = otel_admission::config::Config::from_yaml(
        "rules:\n  - name: all-python\n    inject: {languages: [python]}\n",
        "test",
    )
    .expect("config");
    let client = api.client();
    let planned = plan(
        client.clone(),
        &["shop".to_string()],
        &config,
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("plan");
    let web = planned.iter().find(|a| a.name == "web").expect("web");
    assert!(web.stale && web.not_restartable.is_none(), "{web:?}");
    assert_eq!(recheck(&client, web).await.expect("read"), None);

    api.apply(
        DEPLOYMENTS,
        deployment("shop", "web", json!({}), json!({}), false),
    );
    assert_eq!(
        recheck(&client, web).await.expect("read").as_deref(),
        Some("a rollout is in progress")
    );
    api.apply(
        DEPLOYMENTS,
        deployment(
            "shop",
            "web",
            json!({}),
            json!({"otel-admission.io/rollout": "false"}),
            true,
        ),
    );
    assert_eq!(
        recheck(&client, web).await.expect("read").as_deref(),
        Some("labelled otel-admission.io/rollout=false")
    );
    api.delete(DEPLOYMENTS, "shop", "web");
    assert_eq!(
        recheck(&client, web).await.expect("read").as_deref(),
        Some("deleted")
    );
}

/// A namespace opted in while the controller holds a kept plan is acted on
/// within a second or two: the watched namespaces moved, so the controller
/// stops waiting for its tick and makes the plan again (issue 32). With
/// `leaseDuration: 30s` a tick is 10 s and a kept plan lives 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_opted_in_is_acted_on_within_seconds_not_at_the_tick() {
    let api = FakeApiServer::start().await;
    api.apply(NAMESPACES, namespace("shop", json!({})));
    api.apply(NAMESPACES, namespace("otel-admission", json!({})));
    api.apply(
        DEPLOYMENTS,
        deployment("shop", "a", json!({}), json!({}), true),
    );
    api.apply(PODS, pod("shop", "a-1", "a", None));
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    let config = "rules:\n  - name: shop-python\n    inject: {languages: [python]}\nrollout: {enabled: true, rateLimit: 120/m, maxConcurrent: 5, leaseDuration: 30s}\n";
    let bin = env!("CARGO_BIN_EXE_otel-admission");
    let replica = Replica::start(bin, &kubeconfig, config);
    let t0 = std::time::Instant::now();
    while lease_holder(&api).is_none() && t0.elapsed().as_secs() < 15 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(lease_holder(&api).is_some(), "a leader");
    // A round has planned: nothing is stale while the namespace is not opted in.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(generation(&api, "a"), 2, "not restarted before the opt-in");
    api.apply(
        NAMESPACES,
        namespace("shop", json!({"otel-admission.io/inject": "enabled"})),
    );
    let t1 = std::time::Instant::now();
    while generation(&api, "a") < 3 && t1.elapsed().as_secs() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let took = t1.elapsed();
    assert_eq!(generation(&api, "a"), 3, "restarted after the opt-in");
    assert!(
        took.as_secs_f64() < 3.0,
        "acted on within seconds, not at the 10 s tick or after the 60 s plan: {took:?}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(generation(&api, "a"), 3, "restarted once");
    drop(replica);
}
