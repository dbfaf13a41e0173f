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

// === Issue 28: a word for every mistake; MIGRATING that runs ===

/// `kubectl get namespace shop -o yaml`.
const KUBECTL_NAMESPACE: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  annotations:
    instrumentation.opentelemetry.io/inject-python: tracing
  creationTimestamp: "2025-06-02T09:00:00Z"
  labels:
    kubernetes.io/metadata.name: shop
  name: shop
  resourceVersion: "512"
  uid: 0d8e2c4a-1111-4222-8333-444455556666
spec:
  finalizers:
  - kubernetes
status:
  phase: Active
"#;

/// `kubectl -n shop get instrumentations,opentelemetrycollectors -o yaml`:
/// a `List`, with what the API server and the operator's defaulting add.
const KUBECTL_INSTRUMENTATIONS: &str = r#"apiVersion: v1
items:
- apiVersion: opentelemetry.io/v1alpha1
  kind: Instrumentation
  metadata:
    annotations:
      instrumentation.opentelemetry.io/default-auto-instrumentation-java-image: ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-java:1.33.6
      instrumentation.opentelemetry.io/default-auto-instrumentation-python-image: ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.51b0
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"opentelemetry.io/v1alpha1","kind":"Instrumentation","metadata":{"annotations":{},"name":"tracing","namespace":"shop"},"spec":{"exporter":{"endpoint":"http://otel-collector.observability:4318"}}}
    creationTimestamp: "2025-06-02T10:00:00Z"
    generation: 1
    name: tracing
    namespace: shop
    resourceVersion: "81234"
    uid: 8e6f1c2a-8a1b-4c1e-9a43-7f6a0b0c1d2e
  spec:
    apacheHttpd:
      configPath: /usr/local/apache2/conf
      image: ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-apache-httpd:1.0.4
      resourceRequirements:
        limits: {cpu: 500m, memory: 128Mi}
        requests: {cpu: 1m, memory: 128Mi}
      version: "2.4"
    exporter:
      endpoint: http://otel-collector.observability:4318
    java:
      image: ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-java:1.33.6
      resources:
        limits: {cpu: 500m, memory: 64Mi}
        requests: {cpu: 50m, memory: 64Mi}
    nginx:
      configFile: /etc/nginx/nginx.conf
      image: ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-apache-httpd:1.0.4
      resourceRequirements:
        limits: {cpu: 500m, memory: 128Mi}
        requests: {cpu: 1m, memory: 128Mi}
    python:
      image: ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.51b0
      resourceRequirements:
        limits: {cpu: 500m, memory: 32Mi}
        requests: {cpu: 50m, memory: 32Mi}
- apiVersion: opentelemetry.io/v1beta1
  kind: OpenTelemetryCollector
  metadata:
    creationTimestamp: "2025-06-02T10:00:00Z"
    generation: 1
    name: sidecar
    namespace: shop
    resourceVersion: "81240"
    uid: 1b2c3d4e-0000-4000-8000-000000000001
  spec:
    config:
      exporters:
        otlp:
          endpoint: otel-gateway.observability:4317
      receivers:
        otlp:
          protocols:
            grpc:
              endpoint: 0.0.0.0:4317
      service:
        pipelines:
          traces:
            exporters: [otlp]
            receivers: [otlp]
    configVersions: 3
    daemonSetUpdateStrategy: {}
    deploymentUpdateStrategy: {}
    ingress:
      route: {}
    ipFamilyPolicy: SingleStack
    managementState: managed
    mode: sidecar
    networkPolicy:
      enabled: true
    observability:
      metrics: {}
    replicas: 1
    resources: {}
    targetAllocator:
      allocationStrategy: consistent-hashing
      filterStrategy: relabel-config
      prometheusCR:
        scrapeInterval: 30s
      resources: {}
    upgradeStrategy: automatic
  status:
    version: 0.158.0
kind: List
metadata:
  resourceVersion: ""
"#;

/// `kubectl -n shop get deployment checkout -o yaml` (managed fields are
/// not printed by default).
const KUBECTL_DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  annotations:
    deployment.kubernetes.io/revision: "3"
  creationTimestamp: "2025-06-02T10:05:00Z"
  generation: 3
  labels:
    app.kubernetes.io/name: checkout
  name: checkout
  namespace: shop
  resourceVersion: "90211"
  uid: 7c9e6679-7425-40de-944b-e07fc1f90ae7
spec:
  progressDeadlineSeconds: 600
  replicas: 2
  revisionHistoryLimit: 10
  selector:
    matchLabels:
      app.kubernetes.io/name: checkout
  strategy:
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 25%
    type: RollingUpdate
  template:
    metadata:
      annotations:
        sidecar.opentelemetry.io/inject: "true"
      creationTimestamp: null
      labels:
        app.kubernetes.io/name: checkout
    spec:
      containers:
      - image: registry.example.com/shop/checkout:1.4.2
        imagePullPolicy: IfNotPresent
        name: checkout
        ports:
        - containerPort: 8000
          name: http
          protocol: TCP
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      dnsPolicy: ClusterFirst
      restartPolicy: Always
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
status:
  availableReplicas: 2
  observedGeneration: 3
  readyReplicas: 2
  replicas: 2
  updatedReplicas: 2
"#;

/// The List's items as separate documents, and as a single object.
fn documents_of(list: &str) -> Vec<String> {
    let v: serde_json::Value = serde_yaml_ng::from_str(list).expect("list");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| serde_yaml_ng::to_string(i).expect("yaml"))
        .collect()
}

/// `--namespace` and `--instrumentation` read what `kubectl get … -o yaml`
/// prints: a `List`, several documents, or one object.
#[rstest::rstest]
#[case::kubectl_list(KUBECTL_NAMESPACE.to_string(), KUBECTL_INSTRUMENTATIONS.to_string(), true)]
#[case::several_documents(
    KUBECTL_NAMESPACE.to_string(),
    documents_of(KUBECTL_INSTRUMENTATIONS).join("---\n"),
    true
)]
#[case::one_object(KUBECTL_NAMESPACE.to_string(), documents_of(KUBECTL_INSTRUMENTATIONS)[0].clone(), false)]
#[case::namespace_list(
    format!("apiVersion: v1\nkind: List\nitems:\n- {}", KUBECTL_NAMESPACE.replace('\n', "\n  ")),
    KUBECTL_INSTRUMENTATIONS.to_string(),
    true
)]
#[case::typed_list(
    KUBECTL_NAMESPACE.to_string(),
    KUBECTL_INSTRUMENTATIONS.replace("kind: List", "kind: InstrumentationList"),
    true
)]
fn namespace_and_instrumentation_files_as_kubectl_prints_them(
    #[case] ns: String,
    #[case] inst: String,
    #[case] collector: bool,
) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("ns.yaml"), ns).expect("w");
    std::fs::write(dir.path().join("inst.yaml"), inst).expect("w");
    std::fs::write(dir.path().join("deploy.yaml"), KUBECTL_DEPLOYMENT).expect("w");
    let out = bin()
        .current_dir(dir.path())
        .args([
            "explain",
            "-f",
            "deploy.yaml",
            "--namespace",
            "ns.yaml",
            "--instrumentation",
            "inst.yaml",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(
            "decided by: namespace annotation instrumentation.opentelemetry.io/inject-python=\"tracing\""
        ),
        "{s}"
    );
    assert!(s.contains("Instrumentation: shop/tracing"), "{s}");
    assert_eq!(
        s.contains("config collector/shop/sidecar"),
        collector,
        "the List's collector: {s}"
    );
    assert!(!s.contains("namespace shop: "), "nothing assumed: {s}");
}

/// What is wrong in such a file is named by document, item and field.
#[rstest::rstest]
#[case::item_field(
    "--instrumentation",
    KUBECTL_INSTRUMENTATIONS.replace("endpoint: http://otel-collector.observability:4318", "endpoint: [not, a, string]"),
    "inst.yaml: document 0: items[0]: spec.exporter.endpoint: invalid type"
)]
#[case::other_kind(
    "--instrumentation",
    "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}\n".to_string(),
    "inst.yaml: document 0: items[0]: kind: expected Instrumentation or OpenTelemetryCollector, got ConfigMap"
)]
#[case::namespace_kind(
    "--namespace",
    "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n".to_string(),
    "inst.yaml: document 0: kind: expected Namespace, got Pod"
)]
#[case::empty_namespace_list(
    "--namespace",
    "apiVersion: v1\nkind: List\nitems: []\n".to_string(),
    "inst.yaml: no Namespace document"
)]
fn kubectl_file_errors_name_document_item_and_field(
    #[case] flag: &str,
    #[case] content: String,
    #[case] want: &str,
) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("inst.yaml"), content).expect("w");
    std::fs::write(dir.path().join("deploy.yaml"), KUBECTL_DEPLOYMENT).expect("w");
    let out = bin()
        .current_dir(dir.path())
        .args(["explain", "-f", "deploy.yaml", flag, "inst.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(want), "{err}");
}

/// `explain -o json`: one JSON document per workload, a line each, with the
/// features and what decided them, the warnings and the assumptions.
#[test]
fn explain_json_is_one_document_per_workload() {
    let manifest = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
  namespace: shop
  annotations: {instrumentation.opentelemetry.io/inject-java: "true"}
spec:
  template:
    metadata:
      annotations: {instrumentation.opentelemetry.io/inject-python: "true", instrumentation.opentelemetry.io/inject-jvm: "true"}
    spec:
      containers: [{name: app, image: "a:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: idle, namespace: shop}
spec:
  containers: [{name: app, image: "a:1"}]
"#;
    let out = run_stdin(&["explain", "-f", "-", "-o", "json"], manifest);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let docs: Vec<serde_json::Value> = s
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document a line"))
        .collect();
    assert_eq!(docs.len(), 2, "{s}");
    let d = &docs[0];
    assert_eq!(d["workload"], "Deployment/checkout");
    assert_eq!(d["namespace"], "shop");
    assert_eq!(d["injected"], true);
    assert_eq!(d["features"][0]["feature"], "python");
    assert_eq!(d["features"][0]["result"], "injected");
    assert_eq!(
        d["features"][0]["decidedBy"],
        "pod annotation instrumentation.opentelemetry.io/inject-python=\"true\""
    );
    assert_eq!(d["features"][0]["instrumentation"], "config defaults");
    assert_eq!(d["features"][1]["feature"], "sidecar");
    assert_eq!(d["features"][1]["result"], "not_requested");
    assert_eq!(
        d["warnings"][0],
        "otel-admission: instrumentation.opentelemetry.io/inject-java is on Deployment/checkout's own metadata; move it to spec.template.metadata (the pod template), where it reaches the pods"
    );
    assert_eq!(
        d["warnings"][1],
        "otel-admission: unknown annotation instrumentation.opentelemetry.io/inject-jvm; did you mean instrumentation.opentelemetry.io/inject-java?"
    );
    assert!(
        d["assumptions"][0]
            .as_str()
            .is_some_and(|a| a.starts_with("namespace shop: no --namespace given;")),
        "{d}"
    );
    assert!(d.get("skip").is_none(), "{d}");
    let idle = &docs[1];
    assert_eq!(idle["injected"], false);
    assert_eq!(idle["skip"]["reason"], "not_selected");
    assert_eq!(idle["features"], serde_json::json!([]));
}

/// `-o` takes a format word of the command (`-o json`, `-o pod`) or, as
/// before, a file to write; another command's word is refused, and
/// `-o ./json` still writes a file named `json`.
#[test]
fn output_takes_a_format_word_or_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let example = std::fs::canonicalize("examples/deployment.yaml").expect("example");
    let example = example.to_str().expect("path");
    let run = |args: &[&str]| {
        bin()
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("run")
    };
    let out = run(&["explain", "-f", example, "-o", "pod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "explain -o pod: explain's formats are text and json; to write a file named pod, give -o ./pod"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["inject", "-f", example, "-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("inject's formats are yaml and pod"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["explain", "-f", example, "-o", "./json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(dir.path().join("json")).expect("file json");
    assert!(written.contains("Deployment/checkout"), "{written}");
    let out = run(&["inject", "-f", example, "-o", "out.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        std::fs::read_to_string(dir.path().join("out.yaml"))
            .expect("file")
            .contains("kind: Deployment")
    );
}

/// `inject -o pod`: for each workload the Pod the API server would create
/// from its template (its metadata, the namespace, the name its controller
/// gives, the spec), then injected, with keys sorted and quotes as kubectl
/// prints them.
#[rstest::rstest]
#[case::deployment(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: checkout, namespace: shop, labels: {tier: web}}\nspec:\n  template:\n    metadata:\n      labels: {app: checkout}\n      annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\n    spec: {containers: [{name: app, image: \"a:1\"}]}\n",
    serde_json::json!({"generateName": "checkout-", "namespace": "shop", "labels": {"app": "checkout"}})
)]
#[case::statefulset(
    "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  template:\n    metadata:\n      annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\n    spec: {containers: [{name: app, image: \"a:1\"}]}\n",
    serde_json::json!({"name": "db-0", "namespace": "default", "labels": {"statefulset.kubernetes.io/pod-name": "db-0", "apps.kubernetes.io/pod-index": "0"}})
)]
#[case::job(
    "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate, namespace: shop}\nspec:\n  template:\n    metadata:\n      annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\n    spec: {restartPolicy: Never, containers: [{name: app, image: \"a:1\"}]}\n",
    serde_json::json!({"generateName": "migrate-", "namespace": "shop", "labels": {"batch.kubernetes.io/job-name": "migrate", "job-name": "migrate"}})
)]
#[case::cronjob(
    "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: shop}\nspec:\n  schedule: \"0 1 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\n        spec: {restartPolicy: Never, containers: [{name: app, image: \"a:1\"}]}\n",
    serde_json::json!({"generateName": "nightly-", "namespace": "shop"})
)]
#[case::pod(
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\nspec: {containers: [{name: app, image: \"a:1\"}]}\n",
    serde_json::json!({"name": "p", "namespace": "default"})
)]
fn inject_pod_prints_the_pod_the_api_server_would_create(
    #[case] manifest: &str,
    #[case] metadata: serde_json::Value,
) {
    let out = run_stdin(&["inject", "-f", "-", "-o", "pod"], manifest);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let pod: serde_json::Value = serde_yaml_ng::from_str(&s).expect("one Pod");
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    for (k, v) in metadata.as_object().expect("object") {
        match v {
            serde_json::Value::Object(m) => {
                for (lk, lv) in m {
                    assert_eq!(&pod["metadata"][k][lk], lv, "{k}.{lk} in {s}");
                }
            }
            v => assert_eq!(&pod["metadata"][k], v, "{k} in {s}"),
        }
    }
    // Only the template's labels, never the workload's own.
    assert!(pod["metadata"]["labels"].get("tier").is_none(), "{s}");
    assert_eq!(
        pod["spec"]["initContainers"][0]["name"],
        "opentelemetry-auto-instrumentation-python"
    );
    assert!(
        pod["metadata"]["annotations"]["otel-admission.io/status"].is_string(),
        "{s}"
    );
    assert!(
        s.contains("instrumentation.opentelemetry.io/inject-python: \"true\"\n"),
        "quoted as kubectl quotes it: {s}"
    );
    // Keys sorted, as `kubectl get pod -o yaml` prints them.
    let top: Vec<&str> = s
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('-'))
        .collect();
    assert_eq!(top, ["apiVersion: v1", "kind: Pod", "metadata:", "spec:"]);
}

/// docs/MIGRATING.md step 2, run as written: every `otel-admission` command
/// in its code blocks, against the files its `kubectl` commands write
/// (here as kubectl prints them), succeeds; and every file those commands
/// read is one a `kubectl` command of the step writes.
#[test]
fn migrating_step_2_runs_as_written() {
    let doc = std::fs::read_to_string("docs/MIGRATING.md").expect("MIGRATING");
    let mut in_block = false;
    let mut ours: Vec<String> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for line in doc.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        if t.starts_with("otel-admission ") {
            ours.push(t.to_string());
        }
        if t.starts_with("kubectl ")
            && let Some((_, file)) = t.rsplit_once(" > ")
        {
            written.push(file.trim().to_string());
        }
    }
    assert!(
        ours.iter()
            .any(|c| c.starts_with("otel-admission explain "))
            && ours.iter().any(|c| c.contains(" -o pod ")),
        "MIGRATING has an explain and an inject -o pod command: {ours:?}"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let configmap: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string("manifests/base/config.yaml").expect("cm"),
    )
    .expect("yaml");
    let files = [
        (
            "config.yaml",
            configmap["data"]["config.yaml"]
                .as_str()
                .expect("config.yaml")
                .to_string(),
        ),
        ("ns.yaml", KUBECTL_NAMESPACE.to_string()),
        ("inst.yaml", KUBECTL_INSTRUMENTATIONS.to_string()),
        ("deploy.yaml", KUBECTL_DEPLOYMENT.to_string()),
    ];
    for (name, content) in &files {
        assert!(
            written.iter().any(|w| w == name),
            "no kubectl command of MIGRATING writes {name}: {written:?}"
        );
        std::fs::write(dir.path().join(name), content).expect("w");
    }
    for command in &ours {
        let (command, redirect) = match command.split_once(" > ") {
            Some((c, f)) => (c, Some(f.trim())),
            None => (command.as_str(), None),
        };
        let words: Vec<&str> = command.split_whitespace().skip(1).collect();
        for pair in words.windows(2) {
            if ["-f", "--config", "--namespace", "--instrumentation"].contains(&pair[0]) {
                assert!(
                    written.iter().any(|w| w == pair[1]),
                    "{command}: {} {} is written by no kubectl command of MIGRATING",
                    pair[0],
                    pair[1]
                );
            }
        }
        let out = bin()
            .current_dir(dir.path())
            .args(&words)
            .output()
            .expect("run");
        assert!(out.status.success(), "{command}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        if words.contains(&"pod") {
            let pod: serde_json::Value = serde_yaml_ng::from_str(&stdout).expect("a Pod");
            assert_eq!(pod["kind"], "Pod", "{stdout}");
            assert_eq!(pod["metadata"]["namespace"], "shop", "{stdout}");
            assert_eq!(pod["metadata"]["generateName"], "checkout-", "{stdout}");
        }
        if words.first() == Some(&"explain") {
            assert!(stdout.contains("Instrumentation: shop/tracing"), "{stdout}");
        }
        if let Some(f) = redirect {
            std::fs::write(dir.path().join(f), &out.stdout).expect("redirect");
        }
    }
}

/// The mistakes, through the binary: `inject` prints the move and the
/// typo on stderr; `explain`'s not_selected line names the misplaced key.
#[test]
fn inject_and_explain_name_misplaced_and_misspelt_keys() {
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout\n  namespace: shop\n  annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\nspec:\n  template:\n    metadata:\n      labels: {otel-admission.io/inject-auto: \"true\", otel-admission.io/probez: \"true\"}\n    spec: {containers: [{name: app, image: \"a:1\"}]}\n";
    let out = run_stdin(&["inject", "-f", "-"], manifest);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for want in [
        "<stdin>[0] Deployment/checkout: otel-admission: instrumentation.opentelemetry.io/inject-python is on Deployment/checkout's own metadata; move it to spec.template.metadata (the pod template), where it reaches the pods",
        "<stdin>[0] Deployment/checkout: otel-admission: unknown label otel-admission.io/probez; did you mean otel-admission.io/probes?",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let manifest = manifest.replace("otel-admission.io/inject-auto: \"true\", ", "");
    let out = run_stdin(&["explain", "-f", "-"], &manifest);
    let s = text(&out.stdout);
    assert!(
        s.contains("  nothing injected (not_selected): no annotation, label, namespace setting or config rule selects this pod; instrumentation.opentelemetry.io/inject-python is on Deployment/checkout's own metadata, not on spec.template.metadata\n"),
        "{s}"
    );
}

/// An Instrumentation without `spec` (or with `spec:` empty, which YAML
/// reads as null) is an empty spec, as the API server and the Operator
/// accept it: `inject-sdk` gets the Operator's env of its `TestSDKInjection`
/// "Empty instrumentation spec" (service name and resource attributes, no
/// endpoint, propagators or sampler), after the node and pod IPs its pod
/// mutator prepends, and a language gets its default image.
#[test]
fn an_instrumentation_without_spec_injects_defaults() {
    let dir = tempfile::tempdir().expect("tmp");
    let inst = dir.path().join("inst.yaml");
    std::fs::write(
        &inst,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: opentelemetry.io/v1alpha1\n  kind: Instrumentation\n  metadata: {name: empty, namespace: project1}\n- apiVersion: opentelemetry.io/v1alpha1\n  kind: Instrumentation\n  metadata: {name: nulled, namespace: project1}\n  spec:\n",
    )
    .expect("w");
    let manifest = |key: &str, name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: my-deployment, namespace: project1}}\nspec:\n  template:\n    metadata:\n      annotations: {{instrumentation.opentelemetry.io/{key}: {name}}}\n    spec: {{containers: [{{name: application-name, image: 'app:latest'}}]}}\n"
        )
    };
    let args = [
        "inject",
        "-f",
        "-",
        "--instrumentation",
        inst.to_str().expect("p"),
    ];
    for name in ["empty", "nulled"] {
        let out = run_stdin(&args, &manifest("inject-sdk", name));
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let doc: serde_json::Value = serde_yaml_ng::from_str(&text(&out.stdout)).expect("yaml");
        let spec = &doc["spec"]["template"]["spec"];
        let env = spec["containers"][0]["env"].as_array().expect("env");
        let names: Vec<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(
            names,
            [
                "OTEL_NODE_IP",
                "OTEL_POD_IP",
                "OTEL_SERVICE_NAME",
                "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
                "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
                "OTEL_RESOURCE_ATTRIBUTES"
            ],
            "{name}: {env:?}"
        );
        assert_eq!(env[2]["value"], "my-deployment", "{name}");
        let status = doc["spec"]["template"]["metadata"]["annotations"]["otel-admission.io/status"]
            .as_str()
            .unwrap_or_default();
        assert!(
            status.contains(&format!("\"sdk\":\"project1/{name}\"")),
            "{name}: {status}"
        );
    }
    let out = run_stdin(&args, &manifest("inject-dotnet", "empty"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text(&out.stdout)).expect("yaml");
    let init = &doc["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "opentelemetry-auto-instrumentation-dotnet");
    assert_eq!(
        init["image"],
        otel_admission::inject::languages::dotnet::DEFAULT_IMAGE
    );
}

/// Issue 29: `explain` names a disabled language's switch, from the default
/// config (Go off, as the Operator's `--enable-go-instrumentation`), and
/// `inject` adds no Go sidecar; with `languages.go: true` it does.
#[test]
fn explain_and_inject_follow_the_language_switches() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    instrumentation.opentelemetry.io/inject-go: 'true'\n    instrumentation.opentelemetry.io/otel-go-auto-target-exe: /app/server\nspec:\n  containers: [{name: app, image: 'a:1'}]\n";
    let out = run_stdin(&["explain", "-f", "-"], pod);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("not injected (language_disabled): go: not injected: languages.go is off (the Operator's --enable-go-instrumentation); set languages.go: true in the config to inject it"),
        "{s}"
    );
    let out = run_stdin(&["inject", "-f", "-"], pod);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(!s.contains("opentelemetry-auto-instrumentation"), "{s}");
    assert!(
        text(&out.stderr).contains("languages.go is off"),
        "{}",
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "languages: {go: true}\n").expect("w");
    let args = ["inject", "-f", "-", "--config", config.to_str().expect("p")];
    let out = run_stdin(&args, pod);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("name: opentelemetry-auto-instrumentation"),
        "{}",
        text(&out.stdout)
    );
}

/// Issue 29: an Instrumentation whose `spec.dotnet.env` sets
/// `OTEL_DOTNET_AUTO_HOME` makes the Operator refuse .NET; through the real
/// binary, the pod is left without the .NET agent and the warning says why.
#[test]
fn dotnet_home_in_the_instrumentation_refuses_dotnet_as_the_operator_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let inst = dir.path().join("inst.yaml");
    std::fs::write(
        &inst,
        "apiVersion: opentelemetry.io/v1alpha1\nkind: Instrumentation\nmetadata: {name: tracing, namespace: shop}\nspec:\n  dotnet:\n    env:\n      - {name: OTEL_DOTNET_AUTO_HOME, value: /theirs}\n",
    )
    .expect("write");
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: api\n  namespace: shop\n  annotations: {instrumentation.opentelemetry.io/inject-dotnet: \"true\"}\nspec:\n  containers: [{name: api, image: registry.example/api:1}]\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otel-admission"))
        .args(["inject", "-f"])
        .arg(&pod)
        .arg("--instrumentation")
        .arg(&inst)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("opentelemetry-auto-instrumentation-dotnet"),
        "{stdout}"
    );
    assert!(
        stderr
            .contains("Instrumentation shop/tracing sets OTEL_DOTNET_AUTO_HOME in spec.dotnet.env"),
        "{stderr}"
    );
}
