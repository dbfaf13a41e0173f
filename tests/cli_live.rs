//! Live `explain` and `inject` (`-n NS [KIND/NAME]`) against the local
//! list/watch API server: the real binary, a kubeconfig, and the cluster's
//! Namespace, Instrumentations, collectors, workloads, pods and the
//! `otel-admission-config` ConfigMap. Last, the live answer against
//! `/mutate`'s for the same cluster state.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use common::apiserver::any::gvr;
use common::apiserver::{
    COLLECTORS, DAEMONSETS, DEPLOYMENTS, FakeApiServer, INSTRUMENTATIONS, NAMESPACES, PODS,
    STATEFULSETS, collector, deployment, instrumentation, pod,
};
use common::replica::kubeconfig_for;
use serde_json::{Value, json};

const INJECTED: &str = "otel-admission.io/injected";

/// Runs the binary with `args` against `kubeconfig` off the async runtime
/// (the fake API server shares it).
async fn run(kubeconfig: &Path, args: &[&str]) -> Output {
    let kubeconfig = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_otel-admission"))
            .args(&args)
            .current_dir(kubeconfig.parent().unwrap_or(Path::new(".")))
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("OTEL_ADMISSION_CONFIG")
            .env_remove("OTEL_ADMISSION_IN_NAMESPACE")
            .env_remove("OTEL_ADMISSION_FILENAME")
            .output()
            .expect("run otel-admission")
    })
    .await
    .expect("join")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit code 0, and stdout.
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

struct Env {
    api: FakeApiServer,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let api = FakeApiServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = kubeconfig_for(&api, dir.path());
    Env {
        api,
        kubeconfig,
        _dir: dir,
    }
}

fn ns(name: &str, labels: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels, "annotations": annotations}})
}

fn config_map(ns: &str, config: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "otel-admission-config", "namespace": ns},
        "data": {"config.yaml": config}})
}

fn configmaps() -> String {
    gvr("", "v1", "configmaps")
}

/// The fingerprint label of the first pod `inject -o pod` prints.
fn injected_label(yaml: &str) -> String {
    let pod: Value =
        serde_yaml_ng::from_str(yaml.split("\n---\n").next().unwrap_or(yaml)).expect("pod YAML");
    pod["metadata"]["labels"][INJECTED]
        .as_str()
        .unwrap_or_else(|| panic!("no {INJECTED} label in\n{yaml}"))
        .to_string()
}

/// A Deployment decided by its namespace's annotation; an Instrumentation
/// the server rejects named on stderr with its field; a Deployment's stale
/// pods and another's up-to-date pod, in text and JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_is_explained_from_the_cluster_with_its_running_pods() {
    let e = env().await;
    let api = &e.api;
    api.apply(
        NAMESPACES,
        ns(
            "shop",
            json!({"team": "a"}),
            json!({"instrumentation.opentelemetry.io/inject-java": "true"}),
        ),
    );
    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "default",
            json!({"exporter": {"endpoint": "http://collector.shop:4318"}}),
        ),
    );
    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "broken",
            json!({"sampler": {"type": "traceidratio", "argument": "1.5"}}),
        ),
    );
    for name in ["checkout", "cart"] {
        api.apply(
            DEPLOYMENTS,
            deployment("shop", name, json!({}), json!({}), true),
        );
    }
    api.apply(PODS, pod("shop", "checkout-1", "checkout", None));
    api.apply(
        PODS,
        pod("shop", "checkout-2", "checkout", Some("0123456789abcdef")),
    );

    // What a new cart pod would carry: its label is the wanted fingerprint.
    let out = run(
        &e.kubeconfig,
        &["inject", "-n", "shop", "deploy/cart", "-o", "pod"],
    )
    .await;
    let wanted = injected_label(&ok(&out));
    api.apply(PODS, pod("shop", "cart-1", "cart", Some(&wanted)));

    let out = run(&e.kubeconfig, &["explain", "-n", "shop", "deploy/checkout"]).await;
    let stdout = ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stdout.contains("Deployment/checkout in namespace shop (spec.template):"),
        "{stdout}"
    );
    assert!(
        stdout.contains("java: injected into container(s) app"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decided by: namespace annotation"),
        "the namespace's annotation decided:\n{stdout}"
    );
    assert!(stdout.contains("Instrumentation: shop/default"), "{stdout}");
    assert!(
        stdout.contains("running pods: 2 of 2 stale: what decided the injection changed; now java by namespace annotation"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("assumed:"),
        "nothing is assumed live:\n{stdout}"
    );
    assert!(
        stderr.contains("warning: Instrumentation shop/broken is rejected by the server, left out: spec.sampler.argument"),
        "{stderr}"
    );

    let out = run(&e.kubeconfig, &["explain", "-n", "shop", "deployment/cart"]).await;
    let stdout = ok(&out);
    assert!(stdout.contains("running pods: 1, up to date"), "{stdout}");

    let out = run(
        &e.kubeconfig,
        &["explain", "-n", "shop", "deploy/checkout", "-o", "json"],
    )
    .await;
    let doc: Value = serde_json::from_str(ok(&out).trim()).expect("one JSON line");
    assert_eq!(doc["workload"], "Deployment/checkout");
    assert_eq!(doc["injected"], true);
    assert_eq!(doc["runningPods"]["pods"], 2);
    assert_eq!(doc["runningPods"]["stale"], 2);
    assert_eq!(doc["runningPods"]["upToDate"], false);
    assert_eq!(doc["runningPods"]["cause"], "changed");
    assert_eq!(doc["runningPods"]["wanted"], wanted.as_str());
    let out = run(
        &e.kubeconfig,
        &["explain", "-n", "shop", "deploy/cart", "-o", "json"],
    )
    .await;
    let doc: Value = serde_json::from_str(ok(&out).trim()).expect("one JSON line");
    assert_eq!(doc["runningPods"]["upToDate"], true, "{doc}");

    // `inject` prints the Deployment, its template injected.
    let out = run(&e.kubeconfig, &["inject", "-n", "shop", "deploy/checkout"]).await;
    let d: Value = serde_yaml_ng::from_str(&ok(&out)).expect("YAML");
    assert_eq!(d["kind"], "Deployment");
    assert!(
        d["spec"]["template"]["spec"]["initContainers"][0]["name"]
            .as_str()
            .is_some_and(|n| n.contains("java")),
        "{d}"
    );
    assert!(d.get("status").is_none(), "status is left out");

    let out = run(&e.kubeconfig, &["explain", "-n", "shop", "deploy/gone"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("deployment gone not found in namespace shop"),
        "{}",
        text(&out.stderr)
    );
}

/// A Pod (stale: never injected, selected now), a CronJob (its pods are
/// its Jobs'), and every workload of a namespace, but no Job a CronJob owns
/// and no Pod a controller owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_a_cronjob_and_every_workload_of_a_namespace() {
    let e = env().await;
    let api = &e.api;
    api.apply(NAMESPACES, ns("batch", json!({}), json!({})));
    let containers = json!([{"name": "app", "image": "registry.example/app:1"}]);
    api.apply(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "solo", "namespace": "batch", "labels": {"app": "solo"},
                "annotations": {"instrumentation.opentelemetry.io/inject-python": "true"}},
            "spec": {"containers": containers}}),
    );
    api.put(
        &gvr("batch", "v1", "cronjobs"),
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "batch"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"annotations": {"instrumentation.opentelemetry.io/inject-nodejs": "true"}},
                "spec": {"restartPolicy": "OnFailure", "containers": containers}}}}}}),
    );
    let owned_by = |kind: &str, name: &str| {
        json!([{"apiVersion": "batch/v1", "kind": kind, "name": name, "uid": format!("uid-{name}"),
            "controller": true}])
    };
    api.put(
        &gvr("batch", "v1", "jobs"),
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "nightly-29000000", "namespace": "batch",
                "ownerReferences": owned_by("CronJob", "nightly")},
            "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "uid-nightly-29000000"}},
                "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "uid-nightly-29000000"}},
                    "spec": {"restartPolicy": "OnFailure", "containers": containers}}}}),
    );
    api.apply(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nightly-29000000-x1", "namespace": "batch",
                "labels": {"batch.kubernetes.io/controller-uid": "uid-nightly-29000000"},
                "ownerReferences": owned_by("Job", "nightly-29000000")},
            "spec": {"restartPolicy": "OnFailure", "containers": containers}}),
    );
    api.put(
        &gvr("batch", "v1", "jobs"),
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "once", "namespace": "batch"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": containers}}}}),
    );
    api.apply(
        DEPLOYMENTS,
        deployment("batch", "web", json!({}), json!({}), true),
    );
    let template = |app: &str| {
        json!({"selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}})
    };
    api.apply(
        STATEFULSETS,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "batch"}, "spec": template("db")}),
    );
    api.apply(
        DAEMONSETS,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "batch"}, "spec": template("agent")}),
    );

    let out = run(&e.kubeconfig, &["explain", "-n", "batch", "pod/solo"]).await;
    let stdout = ok(&out);
    assert!(
        stdout.contains("Pod/solo in namespace batch ((pod)):"),
        "{stdout}"
    );
    assert!(stdout.contains("python: injected"), "{stdout}");
    assert!(
        stdout
            .contains("running pods: 1 of 1 stale: not instrumented; now python by pod annotation"),
        "{stdout}"
    );

    let out = run(&e.kubeconfig, &["explain", "-n", "batch", "cj/nightly"]).await;
    let stdout = ok(&out);
    assert!(
        stdout.contains("CronJob/nightly in namespace batch (spec.jobTemplate.spec.template):"),
        "{stdout}"
    );
    assert!(stdout.contains("nodejs: injected"), "{stdout}");
    assert!(
        stdout.contains("running pods: 1 of 1 stale: not instrumented"),
        "its Job's pod:\n{stdout}"
    );

    let out = run(&e.kubeconfig, &["explain", "-n", "batch"]).await;
    let stdout = ok(&out);
    let heads: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("cluster["))
        .collect();
    let names: Vec<String> = heads
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert_eq!(
        names,
        [
            "Deployment/web",
            "StatefulSet/db",
            "DaemonSet/agent",
            "CronJob/nightly",
            "Job/once",
            "Pod/solo"
        ],
        "{stdout}"
    );

    // Every workload, as JSON: a line each.
    let out = run(&e.kubeconfig, &["explain", "-n", "batch", "-o", "json"]).await;
    assert_eq!(ok(&out).lines().count(), 6);

    // An empty namespace says so.
    api.apply(NAMESPACES, ns("empty", json!({}), json!({})));
    let out = run(&e.kubeconfig, &["explain", "-n", "empty"]).await;
    assert!(
        ok(&out).contains("namespace empty: no Deployment"),
        "{}",
        text(&out.stdout)
    );
}

/// The ConfigMap `otel-admission-config` is the config: without it the
/// defaults (Go off, said on stderr), with `languages.go: true` Go is
/// injected, and `--config FILE` wins over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_config_map_decides_and_config_wins() {
    let e = env().await;
    let api = &e.api;
    api.apply(NAMESPACES, ns("go", json!({}), json!({})));
    api.apply(
        DEPLOYMENTS,
        deployment(
            "go",
            "svc",
            json!({"instrumentation.opentelemetry.io/inject-go": "true",
                "instrumentation.opentelemetry.io/otel-go-auto-target-exe": "/app/svc"}),
            json!({}),
            true,
        ),
    );
    let explain = || run(&e.kubeconfig, &["explain", "-n", "go", "deploy/svc"]);

    let out = explain().await;
    let stdout = ok(&out);
    assert!(stdout.contains("language_disabled"), "{stdout}");
    assert!(
        text(&out.stderr).contains("no ConfigMap otel-admission/otel-admission-config"),
        "{}",
        text(&out.stderr)
    );

    api.put(
        &configmaps(),
        config_map("otel-admission", "languages:\n  go: true\n"),
    );
    let out = explain().await;
    let stdout = ok(&out);
    assert!(stdout.contains("go: injected"), "{stdout}");
    assert!(!stdout.contains("language_disabled"), "{stdout}");
    assert!(!text(&out.stderr).contains("no ConfigMap"));

    // Another install namespace: its ConfigMap, or none.
    let out = run(
        &e.kubeconfig,
        &[
            "explain",
            "-n",
            "go",
            "deploy/svc",
            "--install-namespace",
            "elsewhere",
        ],
    )
    .await;
    assert!(ok(&out).contains("language_disabled"));
    assert!(text(&out.stderr).contains("no ConfigMap elsewhere/otel-admission-config"));

    // --config wins over the ConfigMap.
    let file = e.kubeconfig.with_file_name("config.yaml");
    std::fs::write(&file, "{}\n").expect("config");
    let out = run(
        &e.kubeconfig,
        &[
            "explain",
            "-n",
            "go",
            "deploy/svc",
            "--config",
            file.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(ok(&out).contains("language_disabled"));

    // A ConfigMap the server would refuse is an error naming it.
    api.put(
        &configmaps(),
        config_map("otel-admission", "languages:\n  cobol: true\n"),
    );
    let out = explain().await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("ConfigMap otel-admission/otel-admission-config"),
        "{}",
        text(&out.stderr)
    );
}

/// The offline flags keep their meaning, and say what to do instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_live_flags_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tmp");
    let deploy = dir.path().join("deploy.yaml");
    std::fs::write(
        &deploy,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: a}]}\n",
    )
    .expect("write");
    let kubeconfig = dir.path().join("kubeconfig");
    let d = deploy.to_str().expect("utf-8");

    let out = run(&kubeconfig, &["explain", "-f", d, "--namespace", "shop"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--namespace takes a file of Namespace objects (offline); to read namespace shop from the cluster use -n shop"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot read shop"), "{stderr}");

    let out = run(&kubeconfig, &["explain", "-f", d, "-n", "shop"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("give one"), "{stderr}");
    assert!(stderr.contains("explain -n shop KIND/NAME"), "{stderr}");

    let out = run(&kubeconfig, &["inject"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("give -f FILE"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&kubeconfig, &["explain", "-n", "shop", "svc/web"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("KIND/NAME"),
        "{}",
        text(&out.stderr)
    );

    // Offline still works with a file.
    let out = run(&kubeconfig, &["explain", "-f", d]).await;
    assert!(ok(&out).contains("Pod/p"));
}

/// No cluster: the kubeconfig names none, or its server does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cluster_the_error_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("no-such-kubeconfig");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_otel-admission"))
            .args(["explain", "-n", "shop", "deploy/checkout"])
            .env("KUBECONFIG", &missing)
            .env("HOME", missing.parent().unwrap_or(Path::new("/")))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "explain -n/KIND/NAME reads the cluster of the kubeconfig (offline, give -f FILE)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("no usable kubeconfig or in-cluster service account"),
        "{stderr}"
    );

    // A kubeconfig whose API server is not there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: http://127.0.0.1:{port}}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"),
    )
    .expect("kubeconfig");
    let out = run(&kubeconfig, &["inject", "-n", "shop"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot reach the API server"),
        "{}",
        text(&out.stderr)
    );
}

const SAME_CONFIG: &str = r#"
defaults:
  exporter: { endpoint: "http://default-collector.monitoring:4318" }
rules:
  - name: opted-in-namespaces-python
    namespaceSelector: { matchLabels: { otel-admission.io/inject: enabled } }
    inject: { languages: [python], sidecar: true }
"#;

/// Live `inject -o pod pod/NAME` gives the pod `/mutate` makes of the same
/// pod, with the same cluster state: the server composition (`App`) with
/// its cluster caches on the same fake API server, the same config in its
/// file and in the ConfigMap. Nothing is ignored: the pod posted is the
/// one the API server stores, so every field matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_inject_gives_the_pod_mutate_gives() {
    let e = env().await;
    let api = &e.api;
    api.apply(
        NAMESPACES,
        ns(
            "shop",
            json!({"otel-admission.io/inject": "enabled"}),
            json!({"resource.opentelemetry.io/team": "payments"}),
        ),
    );
    api.apply(
        INSTRUMENTATIONS,
        instrumentation(
            "shop",
            "default",
            json!({"exporter": {"endpoint": "http://collector.shop:4318"},
                "propagators": ["tracecontext", "baggage"],
                "sampler": {"type": "parentbased_traceidratio", "argument": "0.5"}}),
        ),
    );
    api.apply(
        COLLECTORS,
        collector(
            "shop",
            "sidecar",
            json!({"mode": "sidecar", "config": {
                "receivers": {"otlp": {"protocols": {"grpc": {}, "http": {}}}},
                "exporters": {"debug": {}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}}}),
        ),
    );
    api.put(&configmaps(), config_map("otel-admission", SAME_CONFIG));
    api.apply(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop",
                "labels": {"app.kubernetes.io/name": "web"},
                "annotations": {"otel-admission.io/probes": "true"}},
            "spec": {"containers": [{"name": "web", "image": "registry.example/web:2.0.1",
                "ports": [{"containerPort": 8080}]}]}}),
    );

    // The server, as `serve --cluster on` composes it, on the same API server.
    let mut config =
        otel_admission::config::Config::from_yaml(SAME_CONFIG, "test").expect("config");
    config.server.namespace = Some("otel-admission".into());
    let opts = otel_admission::app::Options::from_env(otel_admission::app::Cluster::Client(
        api.client(),
        Some((1, 33)),
    ));
    let app = otel_admission::app::App::from_config(config, opts)
        .await
        .expect("app");
    let caches = app.caches.clone().expect("cluster on");
    let server = common::start(common::Options {
        mutator: app.injector.clone(),
        metrics: Some(app.metrics.clone()),
        ..Default::default()
    })
    .await;
    assert!(
        common::eventually(Duration::from_secs(10), || {
            let ready = caches.is_ready();
            async move { ready }
        })
        .await,
        "caches synced"
    );

    let stored = api
        .objects(PODS)
        .into_iter()
        .find(|p| p["metadata"]["name"] == "web-1")
        .expect("stored pod");
    let (status, body) = server
        .post("/mutate", &common::review("u1", "CREATE", stored.clone()))
        .await;
    assert_eq!(status, 200);
    let patch = body["response"]["patch"].as_str().expect("a patch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
    let mut mutated = stored.clone();
    json_patch::patch(&mut mutated, &patch).expect("applies");

    let out = run(
        &e.kubeconfig,
        &["inject", "-n", "shop", "pod/web-1", "-o", "pod"],
    )
    .await;
    let live: Value = serde_yaml_ng::from_str(&ok(&out)).expect("pod YAML");
    assert!(
        mutated["spec"]["initContainers"].is_array(),
        "the pod was injected: {mutated}"
    );
    assert_eq!(
        live, mutated,
        "live inject -o pod and /mutate differ:\nlive: {live}\nmutate: {mutated}"
    );
    drop(server);
    drop(app);
}
