//! The policy engine end to end: `/validate` over the real TLS server with
//! native and Gatekeeper policies, hot reload, and the `policy` commands of
//! the shipped binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{Options, review, start};
use otel_admission::config::{Enforcement, FailureMode};
use otel_admission::metrics::Metrics;
use otel_admission::policy::{Policies, PolicySet};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_otel-admission");

// The shipped binary's allocator, so the memory test below measures what a
// replica does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const DENY_TWO: &str = r#"package kubernetes.admission.two
import rego.v1
deny contains "first problem" if input.request.object.metadata.labels.bad == "yes"
deny contains {"msg": "second problem"} if input.request.object.metadata.labels.bad == "yes"
"#;

const WARN: &str = r#"package kubernetes.admission.advice
import rego.v1
warn contains sprintf("pod in %s has no team label", [input.request.namespace]) if not input.request.object.metadata.labels.team
"#;

const TEMPLATE: &str = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8sforbiddenlabel}
spec:
  crd: {spec: {names: {kind: K8sForbiddenLabel}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8sforbiddenlabel
        violation[{"msg": msg}] {
          input.review.object.metadata.labels[input.parameters.label]
          msg := sprintf("label %v is forbidden", [input.parameters.label])
        }
"#;

fn constraint(name: &str, label: &str, action: &str) -> String {
    format!(
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sForbiddenLabel\nmetadata: {{name: {name}}}\n\
         spec:\n  enforcementAction: {action}\n  match:\n    kinds: [{{apiGroups: [\"\"], kinds: [Pod]}}]\n    excludedNamespaces: [\"kube-*\"]\n  parameters: {{label: {label}}}\n"
    )
}

fn policy_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("two.rego"), DENY_TWO).expect("w");
    std::fs::write(d.path().join("advice.rego"), WARN).expect("w");
    std::fs::create_dir(d.path().join("gk")).expect("mkdir");
    std::fs::write(d.path().join("gk/template.yaml"), TEMPLATE).expect("w");
    let constraints = [
        constraint("no-legacy", "legacy", "deny"),
        constraint("no-debug", "debug", "warn"),
        constraint("no-canary", "canary", "dryrun"),
    ]
    .join("---\n");
    std::fs::write(d.path().join("gk/constraints.yaml"), constraints).expect("w");
    d
}

fn pod(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.2.3"}]}})
}

/// The policies in `dir` served over TLS, enforced (a deny denies).
async fn serve_policies(
    dir: &Path,
    timeout: Duration,
    mode: FailureMode,
) -> (common::TestServer, Arc<Policies>) {
    serve_policies_as(dir, timeout, mode, Some(Enforcement::Enforce)).await
}

async fn serve_policies_as(
    dir: &Path,
    timeout: Duration,
    mode: FailureMode,
    enforcement: Option<Enforcement>,
) -> (common::TestServer, Arc<Policies>) {
    let metrics = Arc::new(Metrics::new());
    let policies = Arc::new(
        Policies::load(dir, timeout, mode, metrics.clone())
            .expect("policies compile")
            .with_enforcement(enforcement),
    );
    let s = start(Options {
        validator: policies.clone(),
        metrics: Some(metrics),
        ..Default::default()
    })
    .await;
    (s, policies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_warn_and_dryrun_over_tls() {
    let d = policy_dir();
    let (s, _p) = serve_policies(d.path(), Duration::from_millis(500), FailureMode::Allow).await;

    // Deny: 403 listing every message of every denying policy.
    let labels = json!({"bad": "yes", "legacy": "1", "team": "a"});
    let (code, v) = s
        .post("/validate", &review("u1", "CREATE", pod(labels)))
        .await;
    assert_eq!(code, 200);
    let r = &v["response"];
    assert_eq!(r["uid"], "u1");
    assert_eq!(r["allowed"], false, "{v}");
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().expect("message");
    for want in [
        "[kubernetes.admission.two] first problem",
        "[kubernetes.admission.two] second problem",
        "[no-legacy] label legacy is forbidden",
    ] {
        assert!(msg.contains(want), "{want:?} missing from {msg:?}");
    }

    // Warn (native and Gatekeeper) as warnings; dryrun only in metrics.
    let labels = json!({"debug": "1", "canary": "1"});
    let (_, v) = s
        .post("/validate", &review("u2", "CREATE", pod(labels)))
        .await;
    let r = &v["response"];
    assert_eq!(r["allowed"], true, "{v}");
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        warnings,
        [
            "[kubernetes.admission.advice] pod in shop has no team label",
            "[no-debug] label debug is forbidden"
        ]
    );
    let metrics = s.admin_get("/metrics").await.1;
    for want in [
        "otel_admission_policy_evaluations_total{policy=\"no-canary\",result=\"dryrun\"} 1",
        "otel_admission_policy_evaluations_total{policy=\"no-legacy\",result=\"deny\"} 1",
        "otel_admission_policy_evaluations_total{policy=\"kubernetes.admission.two\",result=\"allow\"} 1",
        "otel_admission_policy_evaluation_duration_seconds_count 2",
    ] {
        assert!(metrics.contains(want), "{want:?} missing from\n{metrics}");
    }

    // Excluded namespace glob: the Gatekeeper constraints do not apply.
    let mut rv = review("u3", "CREATE", pod(json!({"legacy": "1", "team": "a"})));
    rv["request"]["namespace"] = json!("kube-system");
    let (_, v) = s.post("/validate", &rv).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
}

/// Audit, the default (SPEC §7 "Safe by default"): the same denying pod is
/// admitted, each would-be denial is a warning that says so, and the
/// metrics count it as `audit`, not `deny`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_by_default_warns_what_enforcement_would_deny() {
    let d = policy_dir();
    let (s, p) = serve_policies_as(
        d.path(),
        Duration::from_millis(500),
        FailureMode::Allow,
        None,
    )
    .await;
    assert_eq!(p.enforcement(), Enforcement::Audit);
    let labels = json!({"bad": "yes", "legacy": "1", "team": "a"});
    let (code, v) = s
        .post("/validate", &review("u1", "CREATE", pod(labels)))
        .await;
    assert_eq!(code, 200);
    let r = &v["response"];
    assert_eq!(r["allowed"], true, "{v}");
    assert!(r.get("status").is_none() || r["status"].is_null(), "{v}");
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "[kubernetes.admission.two] would deny (audit): first problem",
        "[kubernetes.admission.two] would deny (audit): second problem",
        "[no-legacy] would deny (audit): label legacy is forbidden",
    ] {
        assert!(
            warnings.contains(&want),
            "{want:?} missing from {warnings:?}"
        );
    }
    let metrics = s.admin_get("/metrics").await.1;
    assert!(
        metrics.contains(
            "otel_admission_policy_evaluations_total{policy=\"no-legacy\",result=\"audit\"} 1"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("result=\"deny\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_and_a_broken_file_keeps_the_old_set() {
    let d = policy_dir();
    let (s, p) = serve_policies(d.path(), Duration::from_millis(500), FailureMode::Allow).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = p.spawn_reload(Duration::from_millis(200), stop_rx);
    let body = review("u1", "CREATE", pod(json!({"team": "a", "new": "x"})));
    let (_, v) = s.post("/validate", &body).await;
    assert_eq!(v["response"]["allowed"], true);

    std::fs::write(
        d.path().join("new.rego"),
        "package kubernetes.admission.new\nimport rego.v1\ndeny contains \"new is forbidden\" if input.request.object.metadata.labels.new\n",
    )
    .expect("w");
    let swapped = common::eventually(Duration::from_secs(10), || async {
        s.post("/validate", &body).await.1["response"]["allowed"] == false
    })
    .await;
    assert!(swapped, "changed policy applied");

    std::fs::write(
        d.path().join("broken.rego"),
        "package kubernetes.admission.broken\ndeny[ {",
    )
    .expect("w");
    let counted = common::eventually(Duration::from_secs(10), || async {
        s.admin_get("/metrics")
            .await
            .1
            .contains("otel_admission_policy_reload_errors_total 1")
    })
    .await;
    assert!(counted, "broken reload counted");
    let (_, v) = s.post("/validate", &body).await;
    assert_eq!(
        v["response"]["allowed"], false,
        "old set still serving: {v}"
    );
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[kubernetes.admission.new] new is forbidden"))
    );
    let _ = stop.send(true);
    task.abort();
}

const SLOW: &str = r#"package kubernetes.admission.slow
import rego.v1
deny contains "never" if {
    n := count([x | some a in numbers.range(1, 4000); some b in numbers.range(1, 4000); x := a * b])
    n < 0
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_time_limit_is_an_internal_error() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("slow.rego"), SLOW).expect("w");
    let (s, _p) = serve_policies(d.path(), Duration::from_millis(100), FailureMode::Allow).await;
    let started = std::time::Instant::now();
    let (_, v) = s
        .post("/validate", &review("u1", "CREATE", pod(json!({}))))
        .await;
    assert!(started.elapsed() < Duration::from_secs(3), "limit enforced");
    assert_eq!(v["response"]["allowed"], true, "failureMode allow: {v}");
    let w = v["response"]["warnings"][0].as_str().expect("warning");
    assert!(w.contains("evaluation time limit of 100ms exceeded"), "{w}");
    assert!(s.admin_get("/metrics").await.1.contains(
        "otel_admission_policy_evaluations_total{policy=\"kubernetes.admission.slow\",result=\"error\"} 1"
    ));

    let (s, _p) = serve_policies(d.path(), Duration::from_millis(100), FailureMode::Deny).await;
    let (_, v) = s
        .post("/validate", &review("u2", "CREATE", pod(json!({}))))
        .await;
    assert_eq!(v["response"]["allowed"], false, "failureMode deny: {v}");
}

// === the shipped pack ===

/// A pod as the injection engine makes it from a compliant input: restricted
/// security context, limits, pinned images, labels, probes, the default
/// collector endpoint.
fn injected_pod() -> Value {
    let sc = json!({"runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}});
    let limits = json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "50m", "memory": "128Mi"}});
    let probe = json!({"httpGet": {"path": "/health/live", "port": "health"}});
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "shop-7d9f8-", "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "shop", "app.kubernetes.io/version": "1.4.2"},
            "annotations": {"otel-admission.io/status": "{\"version\":1,\"languages\":{\"python\":[\"app\"]}}"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [{"name": "opentelemetry-auto-instrumentation-python",
                "image": "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.48b0",
                "securityContext": sc, "resources": limits}],
            "containers": [{"name": "app", "image": "ghcr.io/acme/shop:1.4.2",
                "securityContext": sc, "resources": limits,
                "ports": [{"name": "health", "containerPort": 8081}],
                "readinessProbe": probe, "livenessProbe": probe, "startupProbe": probe,
                "env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.monitoring:4318"},
                        {"name": "OTEL_SERVICE_NAME", "value": "shop"}]}]}})
}

#[test]
fn an_injected_compliant_pod_passes_the_shipped_pack() {
    let set = PolicySet::load_dir(&repo().join("policies"), Duration::from_secs(5))
        .expect("pack compiles");
    let names = set.policy_names();
    for want in [
        "kubernetes.admission.images",
        "kubernetes.admission.resources",
        "kubernetes.admission.labels",
        "kubernetes.admission.probes",
        "restricted-security-context",
        "approved-otlp-endpoint",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let out = set.evaluate(&review("u", "CREATE", injected_pod()), &|_: &str| None);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.violations.is_empty(), "{:?}", out.violations);

    // And the pack does bite: strip the injected pod of what it needs.
    let mut bad = injected_pod();
    bad["spec"]["containers"][0]["image"] = json!("ghcr.io/acme/shop:latest");
    bad["spec"]["containers"][0]["resources"] = json!({});
    bad["spec"]["containers"][0]["securityContext"] = json!({});
    bad["spec"]["containers"][0]["env"][0]["value"] = json!("http://rogue:4318");
    bad["spec"]["containers"][0]
        .as_object_mut()
        .expect("obj")
        .remove("readinessProbe");
    bad["metadata"]["labels"] = json!({});
    let out = set.evaluate(&review("u", "CREATE", bad), &|_: &str| None);
    let policies: std::collections::BTreeSet<&str> =
        out.violations.iter().map(|v| v.policy.as_str()).collect();
    assert_eq!(policies.len(), 6, "{:?}", out.violations);
}

/// SPEC §7, "Safe by default": a shipped policy never denies a pod for
/// what our own injection added or required. Under enforcement, with the
/// whole shipped pack, every pod that `/validate` admits before `/mutate`
/// is still admitted after it, for every language, the sidecar, probes and
/// the Istio annotations, with and without probes of its own. Over the real
/// server: the patch `/mutate` answers is applied with json-patch, parsed as
/// a Pod, and sent to `/validate` as the API server would send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_never_turns_an_admitted_pod_into_a_denied_one() {
    use base64::Engine as _;
    // Every language switched on, Go's privileged agent and nginx included.
    let config = otel_admission::config::Config::from_yaml(
        "sidecar: {native: auto}\nlanguages: {go: true, nginx: true}\n",
        "test",
    )
    .expect("config");
    let (_app, s) =
        common::start_app(config, repo().join("policies"), Some(Enforcement::Enforce)).await;
    let app_container = |probes: bool| {
        let mut c = json!({
            "name": "app", "image": "registry.example/shop/checkout:1.4.2",
            "ports": [{"name": "health", "containerPort": 8081}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"}},
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001,
                "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
        });
        if probes {
            let p = json!({"httpGet": {"path": "/health", "port": "health"}});
            c["readinessProbe"] = p.clone();
            c["livenessProbe"] = p;
        }
        c
    };
    let mut cases: Vec<(String, Value)> = Vec::new();
    for lang in [
        "java",
        "nodejs",
        "python",
        "dotnet",
        "go",
        "php",
        "ruby",
        "apache-httpd",
        "nginx",
        "sdk",
    ] {
        let mut annotations =
            json!({format!("instrumentation.opentelemetry.io/inject-{lang}"): "true"});
        if lang == "go" {
            // Without a target the Go agent is not injected at all.
            annotations["instrumentation.opentelemetry.io/otel-go-auto-target-exe"] =
                json!("/app/checkout");
        }
        cases.push((format!("inject-{lang}"), annotations));
    }
    cases.push((
        "sidecar".into(),
        json!({"sidecar.opentelemetry.io/inject": "true"}),
    ));
    cases.push(("probes".into(), json!({"otel-admission.io/probes": "true"})));
    cases.push(("istio".into(), json!({"otel-admission.io/istio": "true"})));
    cases.push((
        "everything".into(),
        json!({"instrumentation.opentelemetry.io/inject-python": "true",
            "sidecar.opentelemetry.io/inject": "true", "otel-admission.io/probes": "true",
            "otel-admission.io/istio": "true"}),
    ));
    let mut failures = Vec::new();
    let mut n = 0;
    for (name, annotations) in &cases {
        for probes in [true, false] {
            let case = format!("{name}, {} probes", if probes { "with" } else { "without" });
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "checkout-", "namespace": "shop",
                    "labels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/version": "1.4.2"},
                    "annotations": annotations},
                "spec": {"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [app_container(probes)]}});
            let (_, before) = s
                .post("/validate", &review("b", "CREATE", pod.clone()))
                .await;
            assert_eq!(
                before["response"]["allowed"], true,
                "{case}: the input must pass the pack for the test to mean anything: {before}"
            );
            let (_, m) = s.post("/mutate", &review("m", "CREATE", pod.clone())).await;
            let Some(patch) = m["response"]["patch"].as_str() else {
                panic!("{case}: nothing injected: {m}");
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .expect("base64");
            let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
            let mut injected = pod.clone();
            json_patch::patch(&mut injected, &patch.0).expect("the patch applies");
            let _: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(injected.clone()).expect("a valid Pod");
            let (_, after) = s.post("/validate", &review("a", "CREATE", injected)).await;
            n += 1;
            if after["response"]["allowed"] != true {
                failures.push(format!(
                    "{case}: {}",
                    after["response"]["status"]["message"]
                ));
            }
        }
    }
    assert_eq!(n, cases.len() * 2);
    assert!(
        failures.is_empty(),
        "admitted before /mutate, denied after:\n{}",
        failures.join("\n")
    );
}

// === the binary ===

fn run(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_test_and_verify_pass_on_the_shipped_pack() {
    let (code, out, err) = run(&["policy", "test", "policies/"], &repo());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("data.kubernetes.admission.images_test.test_latest_denied: PASS"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");
    let (code, out, err) = run(&["policy", "verify", "policies/"], &repo());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok    "), "{out}");
    assert!(out.contains("root-pod-denied"), "{out}");
}

#[test]
fn policy_test_reports_failures_and_broken_files() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("p.rego"), DENY_TWO).expect("w");
    std::fs::write(
        d.path().join("p_test.rego"),
        "package kubernetes.admission.two_test\nimport rego.v1\nimport data.kubernetes.admission.two\n\
         test_good if { count(two.deny) == 2 with input as {\"request\": {\"object\": {\"metadata\": {\"labels\": {\"bad\": \"yes\"}}}}} }\n\
         test_wrong if { count(two.deny) == 3 with input as {\"request\": {\"object\": {\"metadata\": {\"labels\": {\"bad\": \"yes\"}}}}} }\n",
    )
    .expect("w");
    let (code, out, _) = run(&["policy", "test", "."], d.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("data.kubernetes.admission.two_test.test_good: PASS"),
        "{out}"
    );
    assert!(
        out.contains("data.kubernetes.admission.two_test.test_wrong: FAIL"),
        "{out}"
    );
    assert!(
        out.contains("PASS: 1/2") && out.contains("FAIL: 1/2"),
        "{out}"
    );

    std::fs::write(d.path().join("broken.rego"), "package x\ndeny[ {").expect("w");
    let (code, _, err) = run(&["policy", "test", "."], d.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.rego"), "error names the file: {err}");
}

#[test]
fn policy_verify_fails_a_wrong_assertion() {
    let d = tempfile::tempdir().expect("tmp");
    let src = repo().join("policies/gatekeeper/otlp-endpoint");
    for f in [
        "template.yaml",
        "constraint.yaml",
        "samples/approved.yaml",
        "samples/unapproved.yaml",
    ] {
        std::fs::create_dir_all(d.path().join("samples")).expect("mkdir");
        std::fs::copy(src.join(f), d.path().join(f)).expect("copy");
    }
    let suite = "kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: t\n  template: template.yaml\n  constraint: constraint.yaml\n  cases:\n  - name: right\n    object: samples/unapproved.yaml\n    assertions: [{violations: yes}]\n  - name: wrong-count\n    object: samples/unapproved.yaml\n    assertions: [{violations: 1}]\n  - name: wrong-message\n    object: samples/approved.yaml\n    assertions: [{violations: yes, message: nope}]\n";
    std::fs::write(d.path().join("suite.yaml"), suite).expect("w");
    let (code, out, err) = run(&["policy", "verify", "suite.yaml"], d.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("ok    suite.yaml: t/right"), "{out}");
    assert!(out.contains("FAIL  suite.yaml: t/wrong-count"), "{out}");
    assert!(out.contains("got 2 violations, want 1"), "{out}");
    assert!(out.contains("FAIL  suite.yaml: t/wrong-message"), "{out}");
}

#[test]
fn policy_eval_prints_violations_for_objects_and_reviews() {
    let d = tempfile::tempdir().expect("tmp");
    let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers: [{name: app, image: nginx}]\n";
    std::fs::write(d.path().join("bad.yaml"), bad).expect("w");
    let policies = repo().join("policies");
    let p = policies.to_str().expect("utf8");
    let (code, out, err) = run(
        &["policy", "eval", "-f", "bad.yaml", "--policies", p],
        d.path(),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "deny [kubernetes.admission.images] container \"app\": image \"nginx\" has no tag"
        ),
        "{out}"
    );
    assert!(out.contains("deny [restricted-security-context]"), "{out}");
    assert!(out.contains("warn [kubernetes.admission.labels]"), "{out}");

    let good = serde_json::to_string(&review("r1", "CREATE", injected_pod())).expect("json");
    std::fs::write(d.path().join("good.json"), good).expect("w");
    let (code, out, err) = run(
        &["policy", "eval", "-f", "good.json", "--policies", p],
        d.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("no violations"), "{err}");
}

/// `policy eval` judges a Deployment as the pod it creates, injected with
/// `--config`'s injection (issue 15), as `/validate` does.
#[test]
fn policy_eval_judges_a_deployment_as_its_injected_pod() {
    let d = tempfile::tempdir().expect("tmp");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: checkout, namespace: shop, labels: {app.kubernetes.io/name: checkout, app.kubernetes.io/version: '1'}}\nspec:\n  selector: {matchLabels: {app.kubernetes.io/name: checkout}}\n  template:\n    metadata:\n      labels: {app.kubernetes.io/name: checkout, app.kubernetes.io/version: '1'}\n      annotations: {instrumentation.opentelemetry.io/inject-python: 'true'}\n    spec:\n      containers:\n      - name: app\n        image: registry.example/checkout:1.0.0\n        resources: {limits: {cpu: 500m, memory: 256Mi}}\n        readinessProbe: {httpGet: {path: /healthz, port: 8080}}\n        livenessProbe: {httpGet: {path: /healthz, port: 8080}}\n        securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}\n";
    std::fs::write(d.path().join("deploy.yaml"), deployment).expect("w");
    std::fs::write(
        d.path().join("rogue.yaml"),
        "defaults: {exporter: {endpoint: 'http://rogue.example:4318'}}\n",
    )
    .expect("w");
    std::fs::write(
        d.path().join("approved.yaml"),
        "defaults: {exporter: {endpoint: 'http://otel-collector.monitoring:4318'}}\n",
    )
    .expect("w");
    let policies = repo().join("policies");
    let p = policies.to_str().expect("utf8");
    let (code, out, err) = run(
        &[
            "policy",
            "eval",
            "-f",
            "deploy.yaml",
            "--policies",
            p,
            "--config",
            "rogue.yaml",
        ],
        d.path(),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("deny [approved-otlp-endpoint] in the Pod that Deployment/checkout creates:")
            && out.contains("rogue.example"),
        "{out}"
    );
    let (code, out, err) = run(
        &[
            "policy",
            "eval",
            "-f",
            "deploy.yaml",
            "--policies",
            p,
            "--config",
            "approved.yaml",
        ],
        d.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn serve_refuses_a_policy_directory_that_does_not_compile() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(d.path().join("pol")).expect("mkdir");
    std::fs::write(
        d.path().join("pol/bad.rego"),
        "package kubernetes.admission.bad\ndeny[ {",
    )
    .expect("w");
    let out = Command::new(BIN)
        .args(["serve", "--policies", "pol"])
        .current_dir(d.path())
        .env("OTEL_ADMISSION_LISTEN", "127.0.0.1:0")
        .env("OTEL_ADMISSION_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.rego") && err.contains("does not compile"),
        "{err}"
    );
}

/// `serve` spawned in `cwd` with `args`, ports chosen by the system, no
/// cluster, no policy or config variable from the test's environment; its
/// stderr piped.
fn spawn_serve(args: &[&str], cwd: &Path) -> std::process::Child {
    Command::new(BIN)
        .arg("serve")
        .args(args)
        .args(["--cluster", "off"])
        .current_dir(cwd)
        .env("OTEL_ADMISSION_LISTEN", "127.0.0.1:0")
        .env("OTEL_ADMISSION_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("OTEL_ADMISSION_POLICIES")
        .env_remove("OTEL_ADMISSION_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// `serve` in `cwd` with `args` ([`spawn_serve`]): its exit code and
/// stderr, or `None` when it is still running after `wait` (killed then).
fn serve_for(args: &[&str], cwd: &Path, wait: Duration) -> (Option<i32>, String) {
    let mut child = spawn_serve(args, cwd);
    let deadline = std::time::Instant::now() + wait;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (code, err)
}

/// A policy directory that was named, by `--policies`, its variable or the
/// config's `policies.dir`, and is not there stops `serve` (exit 2, before
/// anything starts) naming where it came from. Before, `serve` started
/// with validation silently off ("no policy directory; /validate allows
/// everything"), after walking the missing directory's parent's tree.
#[test]
fn serve_refuses_a_named_policy_directory_that_does_not_exist() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("config.yaml"), "policies: {dir: mistyped}\n").expect("w");
    std::fs::write(d.path().join("a-file"), "").expect("w");
    for (args, want) in [
        (
            &["--policies", "mistyped"][..],
            "error: --policies mistyped: no such directory\n",
        ),
        (
            &["--policies", "a-file"][..],
            "error: --policies a-file: not a directory\n",
        ),
        (
            &["--config", "config.yaml"][..],
            "error: config.yaml: policies.dir mistyped: no such directory\n",
        ),
    ] {
        let (code, err) = serve_for(args, d.path(), Duration::from_secs(30));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        // Contained, not last: log lines are written by a thread of their own.
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(!err.contains("serving"), "{args:?}: {err}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--cluster", "off"])
        .current_dir(d.path())
        .env("OTEL_ADMISSION_POLICIES", "mistyped")
        .env("OTEL_ADMISSION_LISTEN", "127.0.0.1:0")
        .env("OTEL_ADMISSION_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: --policies mistyped: no such directory\n"),
        "{err}"
    );
}

/// The default directory (`policies`, neither flag nor config) may be
/// absent: `cargo run -- serve` on a laptop starts, and is ready, with
/// `/validate` allowing everything.
#[test]
fn serve_starts_without_the_default_policy_directory() {
    use std::io::{BufRead as _, Read as _, Write as _};
    let d = tempfile::tempdir().expect("tmp");
    let mut child = spawn_serve(&[], d.path());
    let stderr = child.stderr.take().expect("stderr");
    // Read on a thread: a server that never says `serving` fails the
    // test at the timeout rather than hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let admin = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let admin = line
                    .contains(" serving ")
                    .then(|| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix("admin="))
                    })
                    .flatten()
                    .map(str::to_string);
                seen.push(line);
                if let Some(a) = admin {
                    break a;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not start: {seen:#?}");
            }
        }
    };
    let mut ready = String::new();
    for _ in 0..100 {
        let mut c = std::net::TcpStream::connect(&admin).expect("admin port");
        c.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        ready.clear();
        let _ = c.read_to_string(&mut ready);
        if ready.starts_with("HTTP/1.1 200") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        seen.iter()
            .any(|l| l.contains("no policy directory; /validate allows everything")),
        "{seen:#?}"
    );
}

const V0_BROKEN: &str = "package kubernetes.admission.a\n\ndeny[msg] {\n  input.request.kind.kind == \"Pod\"\n  msg := \"x\" +\n}\n";
const V1_BROKEN: &str = "package kubernetes.admission.b\n\ndeny contains msg if {\n  input.request.kind.kind == \"Pod\"\n  msg := \"x\" +\n}\n";

/// A Rego syntax error is one error, of the syntax the file declares (v1
/// for `if`/`contains`; v0 here, where it got further), with its
/// `file:line:col`. Before: regorus' warning from the v0 retry of a v1 file
/// (`` `if` will be treated as identifier ``), then both attempts' errors.
#[test]
fn a_rego_syntax_error_is_reported_once_for_the_syntax_the_file_declares() {
    for (file, src, syntax) in [("a.rego", V0_BROKEN, "v0"), ("b.rego", V1_BROKEN, "v1")] {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join(file), src).expect("w");
        let (code, out, err) = run(&["policy", "test", "."], d.path());
        assert_eq!(code, 2, "{out}{err}");
        assert_eq!(
            err,
            format!(
                "error: ./{file}: Rego does not compile: as Rego {syntax}:\n--> ./{file}:6:1\n  |\n6 | }}\n  | ^\nerror: expecting expression\n"
            )
        );
        // `serve` says it once too (it repeated it: `policies: E: E`).
        std::fs::create_dir(d.path().join("pol")).expect("mkdir");
        std::fs::rename(d.path().join(file), d.path().join("pol").join(file)).expect("mv");
        let (code, err) = serve_for(&["--policies", "pol"], d.path(), Duration::from_secs(30));
        assert_eq!(code, Some(2), "{err}");
        let want = format!(
            "error: policies: pol/{file}: Rego does not compile: as Rego {syntax}:\n--> pol/{file}:6:1\n  |\n6 | }}\n  | ^\nerror: expecting expression\n"
        );
        assert!(err.contains(&want), "{err:?} lacks {want:?}");
        assert_eq!(err.matches("expecting expression").count(), 1, "{err}");
        assert!(!err.contains("warning:"), "{err}");
    }
}

#[test]
fn policy_eval_reads_stdin_and_verify_names_a_missing_file() {
    use std::io::Write as _;
    let policies = repo().join("policies");
    let mut child = Command::new(BIN)
        .args(["policy", "eval", "-f", "-", "--policies"])
        .arg(&policies)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: app, image: 'nginx:latest'}]\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("<stdin>: document 0 Pod/a: deny [kubernetes.admission.images]"),
        "{stdout}"
    );
    assert!(stdout.contains("uses the :latest tag"), "{stdout}");

    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(
        d.path().join("suite.yaml"),
        "kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: t\n  template: missing.yaml\n  constraint: c.yaml\n",
    )
    .expect("w");
    let (code, _, err) = run(&["policy", "verify", "."], d.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.yaml"), "{err}");
}

// === memory (issue 12) ===

/// Set in the child process of [`validate_memory_is_bounded`]: the body file
/// to validate.
const MEM_CHILD: &str = "OTEL_ADMISSION_TEST_MEM_BODY";

/// A `VmHWM`/`VmRSS` field of `/proc/self/status`, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// A pod with `n` env vars in one container, one of them an unapproved
/// collector endpoint so the Gatekeeper constraint has a violation to find.
fn pod_with_env(n: usize) -> Value {
    let mut pod = injected_pod();
    let env: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("E{i:06}"), "value": format!("v{i}")}))
        .chain([
            json!({"name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "value": "http://rogue:4318"}),
        ])
        .collect();
    pod["spec"]["containers"][0]["env"] = Value::Array(env);
    pod
}

/// The child half: `/validate`'s path (decode, then the policy engine)
/// on the body in `$OTEL_ADMISSION_TEST_MEM_BODY`, in a fresh process,
/// printing its peak RSS. A no-op in a normal test run.
#[test]
fn validate_memory_child() {
    use otel_admission::admission::Validate as _;
    let Some(path) = std::env::var_os(MEM_CHILD) else {
        return;
    };
    // The shipped pack, unless the parent names other policies (then with
    // the default 500 ms time limit).
    let (dir, timeout) = match std::env::var_os(MEM_CHILD_POLICIES) {
        Some(d) => (PathBuf::from(d), Duration::from_millis(500)),
        None => (repo().join("policies"), Duration::from_secs(60)),
    };
    let policies = Policies::load(&dir, timeout, FailureMode::Allow, Arc::new(Metrics::new()))
        .expect("policies");
    let body = std::fs::read(path).expect("body");
    let decoded = otel_admission::admission::decode(&body).expect("decodes");
    let idle = proc_status_kib("VmHWM");
    let verdict = policies.validate(&decoded);
    let peak = proc_status_kib("VmHWM");
    println!(
        "\nMEM idle_kib={idle} peak_kib={peak} denials={} warnings={}",
        verdict.denials.len(),
        verdict.warnings.len()
    );
    for w in verdict.warnings.iter().chain(&verdict.denials) {
        println!("MSG {}", w.chars().take(200).collect::<String>());
    }
}

/// Set in the child process of [`validate_memory_child`]: the policy
/// directory, when not the shipped pack.
const MEM_CHILD_POLICIES: &str = "OTEL_ADMISSION_TEST_MEM_POLICIES";

/// Peak RSS and the verdict's messages of one child run.
fn measure(body: &Path) -> (u64, u64, Vec<String>) {
    measure_with(body, None)
}

/// [`measure`], with the policies in `policies` instead of the pack.
fn measure_with(body: &Path, policies: Option<&Path>) -> (u64, u64, Vec<String>) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child
        .args([
            "validate_memory_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEM_CHILD, body);
    if let Some(p) = policies {
        child.env(MEM_CHILD_POLICIES, p);
    }
    let out = child.output().expect("child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| Some(l.split_once("MEM ")?.1))
        .unwrap_or_else(|| panic!("no MEM line in {stdout}"));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {line}"))
    };
    let messages = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("MSG "))
        .map(str::to_string)
        .collect();
    (field("idle_kib"), field("peak_kib"), messages)
}

/// SPEC §10 / issue 12: a 3 MiB pod (100,000 env vars) costs at most 64 MiB
/// above a tiny one on `/validate` with the shipped pack. Each body is
/// validated in a fresh process (this test binary, re-run on
/// [`validate_memory_child`]) whose peak RSS (`VmHWM`) is compared.
#[test]
fn validate_memory_is_bounded() {
    if std::env::var_os(MEM_CHILD).is_some() {
        return;
    }
    if !Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: peak RSS cannot be read here; skipped");
        return;
    }
    let d = tempfile::tempdir().expect("tmp");
    let big = serde_json::to_vec(&review("big", "CREATE", pod_with_env(100_000))).expect("json");
    assert!(
        (3 << 20..4 << 20).contains(&big.len()),
        "a 3 MiB body, got {} bytes",
        big.len()
    );
    let tiny = serde_json::to_vec(&review("tiny", "CREATE", pod_with_env(1))).expect("json");
    std::fs::write(d.path().join("big.json"), &big).expect("w");
    std::fs::write(d.path().join("tiny.json"), &tiny).expect("w");
    let (tiny_idle, tiny_peak, tiny_msgs) = measure(&d.path().join("tiny.json"));
    let (big_idle, big_peak, big_msgs) = measure(&d.path().join("big.json"));
    eprintln!(
        "validate peak RSS: tiny {tiny_peak} KiB (idle {tiny_idle}), 3 MiB pod {big_peak} KiB (idle {big_idle}); cost {} KiB",
        big_peak.saturating_sub(tiny_peak)
    );
    // Both were really evaluated: the rogue endpoint is denied, and nothing
    // failed to evaluate.
    for msgs in [&tiny_msgs, &big_msgs] {
        assert!(
            msgs.iter()
                .any(|m| m.contains("[approved-otlp-endpoint]") && m.contains("rogue")),
            "{msgs:?}"
        );
        assert!(!msgs.iter().any(|m| m.contains("not enforced")), "{msgs:?}");
    }
    assert_eq!(
        tiny_msgs.len(),
        big_msgs.len(),
        "{tiny_msgs:?} / {big_msgs:?}"
    );
    let cost_mib = big_peak.saturating_sub(tiny_peak) as f64 / 1024.0;
    assert!(
        cost_mib <= 64.0,
        "a 3 MiB pod costs {cost_mib:.1} MiB above a tiny one on /validate (bound 64 MiB)"
    );
}

// === an admin's mistakes (issue 27) ===

/// A policy directory holding one file `name` with `text`.
fn dir_with(name: &str, text: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tmp");
    if let Some(parent) = Path::new(name).parent() {
        std::fs::create_dir_all(d.path().join(parent)).expect("mkdir");
    }
    std::fs::write(d.path().join(name), text).expect("w");
    d
}

/// A native module whose rule is a `depth`-deep array literal, on line 4.
fn deep_rego(depth: usize) -> String {
    format!(
        "package kubernetes.admission.deep\nimport rego.v1\n\nx := {}1{}\ndeny contains \"deep\" if count(x) > 5\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// regorus' parser is exponential in literal nesting (20 deep took over
/// 20 s, 30 would take hours): such a file is refused before regorus sees
/// it, in well under a second, naming the file, the line and the reason, at
/// load and by `policy test` and `policy eval`.
#[test]
fn deeply_nested_literals_are_refused_before_parsing() {
    let later_items = format!(
        "package kubernetes.admission.deep\nimport rego.v1\n\nx := {}1{}\n",
        "[1, ".repeat(1000),
        "]".repeat(1000)
    );
    for (depth, text) in [
        (20, deep_rego(20)),
        (1000, deep_rego(1000)),
        (0, later_items),
    ] {
        let d = dir_with("deep.rego", &text);
        let started = std::time::Instant::now();
        let err = PolicySet::load_dir(d.path(), Duration::from_secs(5))
            .expect_err("refused")
            .to_string();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{depth} deep: {:?}",
            started.elapsed()
        );
        // A chain of first items is what regorus pays for; any nesting
        // past 32 is refused too (regorus would, after parsing down there).
        let want = if depth > 0 {
            "collection literals nested deeper than 12 at line 4"
        } else {
            "nesting deeper than 32 at line 4"
        };
        assert!(
            err.contains("deep.rego: Rego does not compile: ") && err.contains(want),
            "{err}"
        );
        let err = Policies::load(
            d.path(),
            Duration::from_secs(5),
            FailureMode::Allow,
            Arc::new(Metrics::new()),
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains(want), "{err}");

        std::fs::write(
            d.path().join("pod.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n",
        )
        .expect("w");
        for args in [
            &["policy", "test", "."][..],
            &["policy", "eval", "-f", "pod.yaml", "--policies", "."][..],
        ] {
            let started = std::time::Instant::now();
            let (code, out, err) = run(args, d.path());
            // The whole command, process start included.
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{args:?}: {:?}",
                started.elapsed()
            );
            assert_eq!(code, 2, "{args:?}: {out}{err}");
            assert!(
                err.contains("deep.rego") && err.contains(want),
                "{args:?}: {err}"
            );
        }
    }
    // A Gatekeeper template's Rego is checked the same way, and named.
    let template = TEMPLATE.replace(
        "violation[{\"msg\": msg}] {",
        &format!(
            "x := {}1{}\n        violation[{{\"msg\": msg}}] {{",
            "[".repeat(20),
            "]".repeat(20)
        ),
    );
    let d = dir_with("t.yaml", &template);
    let err = PolicySet::load_dir(d.path(), Duration::from_secs(5))
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("t.yaml: Rego does not compile: template k8sforbiddenlabel: collection literals nested deeper than 12 at line 2"),
        "{err}"
    );
}

/// regorus' own length limits (PolicyLengthConfig: 1 MiB, 20,000 lines,
/// 1,024 columns per file) are in effect on the engines we build.
#[test]
fn regorus_length_limits_are_in_effect() {
    let long_line = format!(
        "package kubernetes.admission.long\nimport rego.v1\nx := \"{}\"\n",
        "a".repeat(2000)
    );
    let many_lines = format!(
        "package kubernetes.admission.many\nimport rego.v1\n{}",
        "x := 1\n".repeat(20_001).replace("x := 1\n", "\n")
    );
    for (text, want) in [
        (
            long_line,
            "error: line exceeds maximum column width of 1024",
        ),
        (many_lines, "exceeds maximum allowed line count 20000"),
    ] {
        let d = dir_with("big.rego", &text);
        let err = PolicySet::load_dir(d.path(), Duration::from_secs(5))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("big.rego") && err.contains(want), "{err}");
    }
}

/// A native module and a template, in Rego v1 and v0, each calling `call`
/// on line 4 of its Rego.
fn calling(call: &str) -> [(&'static str, String); 4] {
    let native = |v1: bool| {
        if v1 {
            format!(
                "package kubernetes.admission.c\nimport rego.v1\n\ndeny contains \"x\" if {{ {call} }}\n"
            )
        } else {
            format!("package kubernetes.admission.c\n\n\ndeny[\"x\"] {{ {call} }}\n")
        }
    };
    let template = |v1: bool| {
        let (version, rule) = if v1 {
            (
                "v1",
                format!("violation contains {{\"msg\": \"x\"}} if {{ {call} }}"),
            )
        } else {
            ("v0", format!("violation[{{\"msg\": \"x\"}}] {{ {call} }}"))
        };
        format!(
            "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {{name: k8scall}}\n\
             spec:\n  crd: {{spec: {{names: {{kind: K8sCall}}}}}}\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    code:\n    - engine: Rego\n      source:\n        version: {version}\n        rego: |\n          package k8scall\n{}\n\n          {rule}\n",
            if v1 { "          import rego.v1" } else { "" }
        )
    };
    [
        ("native.v1.rego", native(true)),
        ("native.v0.rego", native(false)),
        ("template.v1.yaml", template(true)),
        ("template.v0.yaml", template(false)),
    ]
}

/// OPA refuses a call nothing defines at compile time; regorus loaded it
/// and failed every evaluation, so `failureMode: allow` admitted the pod
/// with "policy ... not enforced". Refused at load now, with the file and
/// line, in v0 and v1, native and Gatekeeper alike; network and runtime
/// builtins are named as unsupported.
#[test]
fn calls_nothing_defines_are_refused_at_load() {
    let network = "is unsupported: otel-admission never makes network calls from policies";
    let cases = [
        (
            "r := http.send({\"method\": \"get\", \"url\": \"http://x\"}); r.status_code == 200",
            format!("http.send at line 4 {network}"),
        ),
        (
            "net.lookup_ip_addr(\"example.com\")",
            format!("net.lookup_ip_addr at line 4 {network}"),
        ),
        (
            "rt := opa.runtime(); rt.env.X",
            "opa.runtime at line 4 is unsupported".to_string(),
        ),
        (
            "contians(input.request.name, \"a\")",
            "undefined function contians at line 4".to_string(),
        ),
    ];
    for (call, want) in &cases {
        for (file, text) in calling(call) {
            let d = dir_with(file, &text);
            let err = PolicySet::load_dir(d.path(), Duration::from_secs(5))
                .map(|s| format!("loaded: {:?}", s.policy_names()))
                .unwrap_or_else(|e| e.to_string());
            let template = if file.starts_with("template") {
                "template k8scall: "
            } else {
                ""
            };
            assert!(
                err.contains(&format!("{file}: Rego does not compile: {template}{want}")),
                "{file} calling {call}: {err}"
            );
        }
    }
    // The shipped pack, its tests and Gatekeeper-style libs still load.
    assert!(PolicySet::load_dir(&repo().join("policies"), Duration::from_secs(5)).is_ok());
}

/// The same refusal from `policy test`, `policy eval` and `serve`.
#[test]
fn the_commands_refuse_calls_nothing_defines() {
    let [(file, text), ..] = calling("contians(input.request.name, \"a\")");
    let d = dir_with(file, &text);
    std::fs::write(
        d.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n",
    )
    .expect("w");
    let want = "native.v1.rego: Rego does not compile: undefined function contians at line 4";
    for args in [
        &["policy", "test", "."][..],
        &["policy", "eval", "-f", "pod.yaml", "--policies", "."][..],
    ] {
        let (code, out, err) = run(args, d.path());
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--policies", "."])
        .current_dir(d.path())
        .env("OTEL_ADMISSION_LISTEN", "127.0.0.1:0")
        .env("OTEL_ADMISSION_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(want), "{err}");
    // `policy verify` refuses the template of a suite the same way.
    let [_, _, (tfile, template), _] = calling("net.lookup_ip_addr(\"x\")");
    std::fs::write(d.path().join(tfile), template).expect("w");
    std::fs::write(
        d.path().join("c.yaml"),
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sCall\nmetadata: {name: c}\n",
    )
    .expect("w");
    std::fs::write(
        d.path().join("suite.yaml"),
        format!("kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: t\n  template: {tfile}\n  constraint: c.yaml\n  cases:\n  - name: a\n    object: pod.yaml\n    assertions: [{{violations: no}}]\n"),
    )
    .expect("w");
    let (code, out, err) = run(&["policy", "verify", "suite.yaml"], d.path());
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("net.lookup_ip_addr at line 4 is unsupported"),
        "{err}"
    );
}

/// Policies that build a huge value: a 100-million-element range joined
/// into a string (the time limit cannot stop it: regorus checks the clock
/// between steps, not inside `numbers.range`), and a string doubled 24
/// times by `concat` (256 MiB at the end).
fn memory_hungry_policies() -> tempfile::TempDir {
    let d = dir_with(
        "range.rego",
        "package kubernetes.admission.range\nimport rego.v1\n\
         deny contains \"never\" if {\n  x := concat(\"\", [s | some i in numbers.range(1, 100000000); s := \"aaaaaaaaaa\"])\n  count(x) < 0\n}\n",
    );
    let mut doubling = String::from(
        "package kubernetes.admission.doubling\nimport rego.v1\ns0 := \"aaaaaaaaaaaaaaaa\"\n",
    );
    for i in 1..=24 {
        doubling.push_str(&format!("s{i} := concat(\"\", [s{0}, s{0}])\n", i - 1));
    }
    doubling.push_str("warn contains \"never\" if count(s24) < 0\n");
    std::fs::write(d.path().join("doubling.rego"), doubling).expect("w");
    d
}

/// Issue 27: an evaluation that would build more than its memory budget
/// (64 MiB by default) fails with an error, answered per `failureMode` as
/// the time limit is, and the process' peak RSS stays bounded. Before, the
/// range alone took 2.4 GB (OOM-killed under the Deployment's 256 MiB).
#[test]
fn an_evaluation_over_its_memory_budget_fails_and_memory_stays_bounded() {
    if std::env::var_os(MEM_CHILD).is_some() {
        return;
    }
    let d = memory_hungry_policies();
    let set = PolicySet::load_dir(d.path(), Duration::from_millis(500)).expect("compiles");
    let started = std::time::Instant::now();
    let out = set.evaluate(&review("u", "CREATE", pod(json!({}))), &|_: &str| None);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let errors: std::collections::BTreeMap<&str, &str> = out
        .errors
        .iter()
        .map(|(p, e)| (p.as_str(), e.as_str()))
        .collect();
    assert!(
        errors["kubernetes.admission.range"]
            .starts_with("evaluation memory limit of 64 MiB exceeded: numbers.range would build"),
        "{errors:?}"
    );
    assert!(
        errors["kubernetes.admission.doubling"]
            .starts_with("evaluation memory limit of 64 MiB exceeded: concat would build"),
        "{errors:?}"
    );
    // A smaller budget bites sooner.
    let small = set.clone().with_memory_limit(1 << 20);
    let out = small.evaluate(&review("u", "CREATE", pod(json!({}))), &|_: &str| None);
    assert!(
        out.errors
            .iter()
            .all(|(_, e)| e.starts_with("evaluation memory limit of 1 MiB exceeded")),
        "{:?}",
        out.errors
    );

    if !Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: peak RSS cannot be read here; skipped");
        return;
    }
    let body = d.path().join("review.json");
    std::fs::write(
        &body,
        serde_json::to_vec(&review("mem", "CREATE", pod(json!({})))).expect("json"),
    )
    .expect("w");
    let (idle, peak, messages) = measure_with(&body, Some(d.path()));
    let cost_mib = peak.saturating_sub(idle) as f64 / 1024.0;
    eprintln!("memory-hungry policies: peak RSS {peak} KiB (idle {idle}); cost {cost_mib:.1} MiB");
    for policy in ["range", "doubling"] {
        let want = format!(
            "otel-admission: policy kubernetes.admission.{policy} not enforced: evaluation memory limit of 64 MiB exceeded"
        );
        assert!(
            messages.iter().any(|m| m.starts_with(&want)),
            "{want:?} in {messages:?}"
        );
    }
    // The budget counts what the builtins build (a string twice: built,
    // then copied into its value); what is live at the peak is about that.
    assert!(
        cost_mib <= 96.0,
        "the memory-hungry policies cost {cost_mib:.1} MiB of peak RSS (bound 96 MiB)"
    );
}

/// Issue 27: what kubectl users read names the policy and at most the
/// file's base name, never a directory of the server; the server's log
/// keeps the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_errors_name_the_policy_not_server_paths() {
    // The kubelet's layout: the file is a link into a `..2026_x` snapshot.
    let d = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(d.path().join("..2026_x")).expect("mkdir");
    std::fs::write(
        d.path().join("..2026_x/native.probes.rego"),
        "package kubernetes.admission.probes\nimport rego.v1\nx := 1 if true\nx := 2 if input.request\ndeny contains \"bad\" if x == 1\n",
    )
    .expect("w");
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        "..2026_x/native.probes.rego",
        d.path().join("native.probes.rego"),
    )
    .expect("link");
    #[cfg(not(unix))]
    std::fs::copy(
        d.path().join("..2026_x/native.probes.rego"),
        d.path().join("native.probes.rego"),
    )
    .expect("copy");
    let dir = d.path().to_string_lossy().into_owned();
    let direct = PolicySet::load_dir(d.path(), Duration::from_secs(5))
        .expect("compiles")
        .evaluate(&review("u", "CREATE", pod(json!({}))), &|_: &str| None);
    assert!(
        direct.errors.iter().any(|(_, e)| e.contains(&dir)),
        "the full message (for the log) has the path: {:?}",
        direct.errors
    );
    for mode in [FailureMode::Allow, FailureMode::Deny] {
        let (s, _p) = serve_policies(d.path(), Duration::from_millis(500), mode).await;
        let (_, v) = s
            .post("/validate", &review("u1", "CREATE", pod(json!({}))))
            .await;
        let r = &v["response"];
        let messages: Vec<String> = r["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(r["status"]["message"].as_str().map(Value::from).iter())
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        let want = match mode {
            FailureMode::Allow => {
                "otel-admission: policy kubernetes.admission.probes not enforced: native.probes.rego:"
            }
            FailureMode::Deny => {
                "[kubernetes.admission.probes] policy evaluation failed: native.probes.rego:"
            }
        };
        eprintln!("{mode:?}: {messages:?}");
        assert!(
            messages.iter().any(|m| m.contains(want)),
            "{want:?} in {messages:?}"
        );
        for m in &messages {
            assert!(
                !m.contains(&dir) && !m.contains("..2026_x") && !m.contains('/'),
                "{m}"
            );
        }
    }
}
