//! `otel-admission inject` and `explain`, run as the built binary.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_otel-admission"))
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn inject_example_deployment() {
    let out = bin()
        .args(["inject", "-f", "examples/deployment.yaml"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let doc: serde_json::Value = serde_yaml_ng::from_str(&stdout).expect("yaml");
    assert_eq!(doc["kind"], "Deployment");
    let spec = &doc["spec"]["template"]["spec"];
    assert_eq!(
        spec["initContainers"][0]["name"],
        "opentelemetry-auto-instrumentation-python"
    );
    let env = spec["containers"][0]["env"].as_array().expect("env");
    let get = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    };
    assert_eq!(get("OTEL_SERVICE_NAME").as_deref(), Some("checkout"));
    assert_eq!(
        get("PYTHONPATH").as_deref(),
        Some(
            "/otel-auto-instrumentation-python/opentelemetry/instrumentation/auto_instrumentation:/app:/otel-auto-instrumentation-python"
        )
    );
    assert!(get("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| {
        v.contains("k8s.deployment.name=checkout") && v.contains("service.version=1.4.2")
    }));
    assert!(
        spec["containers"][1].get("env").is_none(),
        "istio-proxy untouched"
    );
    assert!(text(&out.stderr).contains("injected python into checkout"));
}

#[test]
fn explain_names_the_deciding_annotation() {
    let out = bin()
        .args(["explain", "-f", "examples/deployment.yaml"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("Deployment/checkout"), "{s}");
    assert!(
        s.contains(
            "decided by: pod annotation instrumentation.opentelemetry.io/inject-python=\"true\""
        ),
        "{s}"
    );
    assert!(s.contains("Instrumentation: config defaults"), "{s}");
}

#[test]
fn kinds_lists_and_passthrough() {
    let manifest = r#"
apiVersion: v1
kind: ConfigMap
metadata: { name: untouched }
data: { a: "1" }
---
apiVersion: batch/v1
kind: CronJob
metadata: { name: nightly, namespace: shop }
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: { instrumentation.opentelemetry.io/inject-java: "true" }
        spec:
          containers: [{ name: job, image: "batch:2" }]
---
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: StatefulSet
    metadata: { name: db }
    spec:
      template:
        metadata:
          annotations: { instrumentation.opentelemetry.io/inject-nodejs: "true" }
        spec:
          containers: [{ name: db, image: "db:1" }]
"#;
    let out = run_stdin(&["inject", "-f", "-"], manifest);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let docs: Vec<serde_json::Value> = stdout
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).expect("doc"))
        .collect();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["data"]["a"], "1");
    assert!(docs[0].get("spec").is_none());
    let cron = &docs[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        cron["initContainers"][0]["name"],
        "opentelemetry-auto-instrumentation-java"
    );
    assert!(stdout.contains("k8s.cronjob.name=nightly"));
    let sts = &docs[2]["items"][0]["spec"]["template"]["spec"];
    assert_eq!(
        sts["initContainers"][0]["name"],
        "opentelemetry-auto-instrumentation-nodejs"
    );
    assert!(stdout.contains("k8s.statefulset.name=db"));
}

#[test]
fn input_errors_name_file_document_and_field_and_exit_2() {
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: app, ports: [{containerPort: \"eighty\"}]}]\n";
    let out = run_stdin(&["inject", "-f", "-"], manifest);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "<stdin>: document 1: spec.template.spec.containers[0].ports[0].containerPort"
        ),
        "{err}"
    );

    let out = run_stdin(&["inject", "-f", "-"], "a: [unclosed\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("<stdin>: document 0"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn namespace_and_instrumentation_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let ns = dir.path().join("ns.yaml");
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations:\n    instrumentation.opentelemetry.io/inject-python: tracing\n",
    )
    .expect("w");
    let inst = dir.path().join("inst.yaml");
    std::fs::write(
        &inst,
        "apiVersion: opentelemetry.io/v1alpha1\nkind: Instrumentation\nmetadata: {name: tracing}\nspec:\n  exporter: {endpoint: 'http://gateway:4317'}\n  python: {image: 'my/python:1'}\n",
    )
    .expect("w");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: 'a:1'}]\n";
    let args = [
        "explain",
        "-f",
        "-",
        "--namespace",
        ns.to_str().expect("p"),
        "--instrumentation",
        inst.to_str().expect("p"),
    ];
    let out = run_stdin(&args, pod);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(
            "namespace annotation instrumentation.opentelemetry.io/inject-python=\"tracing\""
        ),
        "{s}"
    );
    assert!(s.contains("Instrumentation: shop/tracing"), "{s}");
    assert!(s.contains("4317"), "the gRPC port warning: {s}");
}

/// `explain` shows each pod feature's decision and reason: injected (with
/// mode and what decided), off, failed, or not requested.
#[test]
fn explain_shows_sidecar_probes_and_annotations_decisions() {
    let manifest = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: shop}
spec:
  template:
    metadata:
      annotations:
        instrumentation.opentelemetry.io/inject-python: "true"
        sidecar.opentelemetry.io/inject: "true"
        otel-admission.io/probes: "true"
        otel-admission.io/istio: "false"
    spec:
      containers:
        - name: app
          image: registry.example/checkout:1.4.2
          ports: [{name: health, containerPort: 8081}]
---
apiVersion: v1
kind: Pod
metadata: {name: batch, namespace: shop, annotations: {sidecar.opentelemetry.io/inject: other/col, otel-admission.io/istio: "true", instrumentation.opentelemetry.io/inject-java: "true"}}
spec:
  containers: [{name: job, image: registry.example/job:2}]
"#;
    // A config with a `sidecar` section: the template for namespaces without
    // a sidecar-mode collector.
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "sidecar: {}\n").expect("w");
    let out = run_stdin(
        &[
            "explain",
            "-f",
            "-",
            "--config",
            config.to_str().expect("p"),
        ],
        manifest,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for want in [
        // Document 0: everything decided by its annotation.
        "sidecar: injected otc-container (native sidecar in initContainers, restartPolicy Always), config builtin",
        "decided by: pod annotation sidecar.opentelemetry.io/inject=\"true\"",
        "mode chosen by: config sidecar.native: auto, API server version unknown",
        "app endpoint: OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318",
        "probes: added startup, liveness, readiness to app",
        "decided by: pod annotation otel-admission.io/probes=\"true\"",
        "annotations: off, by pod annotation otel-admission.io/istio=\"false\"",
        // Document 1: a collector that does not exist, and no metrics port.
        "sidecar: not injected (invalid_annotation): sidecar: pod annotation sidecar.opentelemetry.io/inject=\"other/col\": OpenTelemetryCollector other/col not found",
        "probes: not requested (no otel-admission.io/probes and no rule with probes: true)",
        "annotations: not injected (not_selected): annotations: no metrics port",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
}

/// `explain` names every rule whose `podSelector` selects the pod and why it
/// did not apply, so a user looks at the namespace label, not the selector;
/// a `generateName` pod is shown by its stem.
#[test]
fn explain_names_near_miss_rules_and_the_generate_name_stem() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "rules:\n  - name: payments-java\n    podSelector: {matchLabels: {team: payments}}\n    inject: {languages: [java]}\n  - name: prod-only\n    namespaceSelector: {matchLabels: {env: prod}}\n    podSelector: {matchLabels: {team: payments}}\n    inject: {languages: [python]}\n  - name: other-team\n    namespaceSelector: {}\n    podSelector: {matchLabels: {team: search}}\n    inject: {languages: [java]}\n",
    )
    .expect("w");
    let ns = dir.path().join("ns.yaml");
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {env: dev}}\n",
    )
    .expect("w");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {generateName: web-, labels: {team: payments}}\nspec:\n  containers: [{name: app, image: 'a:1'}]\n";
    let args = [
        "explain",
        "-f",
        "-",
        "--config",
        config.to_str().expect("p"),
        "--namespace",
        ns.to_str().expect("p"),
    ];
    let out = run_stdin(&args, pod);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("Pod/web (generateName web-)"), "{s}");
    assert!(
        s.contains("\"payments-java\": does not apply: namespace shop is not labelled otel-admission.io/inject=enabled"),
        "{s}"
    );
    assert!(
        s.contains("\"prod-only\": does not apply: its namespaceSelector does not match namespace shop's labels"),
        "{s}"
    );
    assert!(
        !s.contains("other-team"),
        "its podSelector does not select the pod: {s}"
    );

    // With the namespace opted in, the first rule applies and the second is
    // still a near miss for its own selector.
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {env: prod, otel-admission.io/inject: enabled}}\n",
    )
    .expect("w");
    let out = run_stdin(&args, pod);
    let s = text(&out.stdout);
    assert!(s.contains("\"payments-java\": applies"), "{s}");
    assert!(
        s.contains("\"prod-only\": does not apply: rule \"payments-java\" matched first"),
        "{s}"
    );
}
