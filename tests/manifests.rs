//! `manifests/` rendered with `kubectl kustomize`, checked object by object.

mod common;

use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("{ROOT}/{dir}")])
        .output()
        .expect("kubectl must be installed: the manifests are checked with `kubectl kustomize`");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("each document parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn rbac_is_get_list_watch_on_what_admission_reads_and_create_patch_on_events() {
    let objs = kustomize("manifests/base");
    let roles = find(&objs, "ClusterRole");
    assert_eq!(roles.len(), 1);
    assert!(find(&objs, "Role").is_empty(), "no namespaced Roles");
    let mut granted: Vec<(String, String, String)> = Vec::new();
    for rule in roles[0]["rules"].as_array().expect("rules") {
        assert!(rule.get("nonResourceURLs").is_none());
        assert!(rule.get("resourceNames").is_none());
        for g in rule["apiGroups"].as_array().expect("groups") {
            for r in rule["resources"].as_array().expect("resources") {
                for v in rule["verbs"].as_array().expect("verbs") {
                    granted.push((
                        g.as_str().expect("s").into(),
                        r.as_str().expect("s").into(),
                        v.as_str().expect("s").into(),
                    ));
                }
            }
        }
    }
    granted.sort();
    let mut want = Vec::new();
    for (g, r) in [
        ("", "namespaces"),
        ("opentelemetry.io", "instrumentations"),
        ("opentelemetry.io", "opentelemetrycollectors"),
    ] {
        for v in ["get", "list", "watch"] {
            want.push((g.to_string(), r.to_string(), v.to_string()));
        }
    }
    for v in ["create", "patch"] {
        want.push(("events.k8s.io".into(), "events".into(), v.to_string()));
    }
    want.sort();
    assert_eq!(granted, want);
    let binding = &find(&objs, "ClusterRoleBinding")[0];
    assert_eq!(binding["subjects"][0]["name"], "otel-admission");
    assert_eq!(binding["subjects"][0]["namespace"], "otel-admission");
    let sa = &find(&objs, "ServiceAccount")[0];
    assert_eq!(sa["metadata"]["namespace"], "otel-admission");
}

#[test]
fn the_crd_in_manifests_is_what_the_binary_prints() {
    let printed = Command::new(env!("CARGO_BIN_EXE_otel-admission"))
        .arg("crd")
        .output()
        .expect("run crd");
    assert!(printed.status.success());
    let committed =
        std::fs::read_to_string(format!("{ROOT}/manifests/base/crd.yaml")).expect("crd.yaml");
    assert_eq!(
        String::from_utf8(printed.stdout).expect("utf8"),
        committed,
        "manifests/base/crd.yaml is stale: run `cargo run -- crd > manifests/base/crd.yaml`"
    );
    let objs = kustomize("manifests/base");
    let crds = find(&objs, "CustomResourceDefinition");
    // The collector CRD, for clusters without the Operator: v1beta1 stored,
    // v1alpha1 served.
    let col = crds
        .iter()
        .find(|c| c["metadata"]["name"] == "opentelemetrycollectors.opentelemetry.io")
        .expect("collector CRD");
    let versions: Vec<(&str, bool)> = col["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or(""), v["storage"] == true))
        .collect();
    assert_eq!(versions, vec![("v1alpha1", false), ("v1beta1", true)]);
    let crd = crds
        .iter()
        .find(|c| c["metadata"]["name"] == "instrumentations.opentelemetry.io")
        .expect("Instrumentation CRD");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["x-kubernetes-preserve-unknown-fields"], true);
    for field in [
        "exporter",
        "propagators",
        "sampler",
        "resource",
        "env",
        "java",
        "nodejs",
        "python",
        "dotnet",
        "go",
        "apacheHttpd",
        "nginx",
    ] {
        assert!(
            spec["properties"].get(field).is_some(),
            "spec.{field} in the schema"
        );
    }
    assert_eq!(
        spec["properties"]["java"]["properties"]["resources"]["type"],
        "object"
    );
    assert!(spec["properties"]["python"]["properties"]["resourceRequirements"].is_object());
}

#[test]
fn the_operator_example_instrumentation_round_trips() {
    let text =
        std::fs::read_to_string(format!("{ROOT}/examples/instrumentation.yaml")).expect("example");
    let original: Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let typed: otel_admission::instrumentation::Instrumentation =
        serde_yaml_ng::from_str(&text).expect("parses as our type");
    assert!(typed.spec.validate().is_empty());
    let back = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(back, original, "no field lost or added");
}

fn one<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} missing"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("env {name}"))
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("number")
}

/// Renders the dev overlay in a scratch copy, after `otel-admission certs`.
fn render_dev() -> (Vec<Value>, String) {
    let scratch = tempfile::tempdir().expect("tmp");
    let copy = Command::new("cp")
        .args(["-r", &format!("{ROOT}/manifests")])
        .arg(scratch.path())
        .status()
        .expect("cp");
    assert!(copy.success());
    let out = Command::new(env!("CARGO_BIN_EXE_otel-admission"))
        .args(["certs", "--out"])
        .arg(scratch.path().join("manifests/overlays/dev/certs"))
        .output()
        .expect("certs");
    assert!(out.status.success());
    let ca = std::fs::read_to_string(scratch.path().join("manifests/overlays/dev/certs/ca.crt"))
        .expect("ca");
    let rendered = Command::new("kubectl")
        .arg("kustomize")
        .arg(scratch.path().join("manifests/overlays/dev"))
        .output()
        .expect("kubectl");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let text = String::from_utf8(rendered.stdout).expect("utf8");
    let objs = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("parses"))
        .collect();
    (objs, ca)
}

fn check_common(objs: &[Value]) {
    // Webhooks point at the Service, which points at the port `serve` listens on.
    let deploy = one(objs, "Deployment", "otel-admission");
    let pod = &deploy["spec"]["template"];
    let c = &pod["spec"]["containers"][0];
    let port_named = |name: &str| {
        c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .expect("port")["containerPort"]
            .as_u64()
            .expect("n")
    };
    assert_eq!(
        port_named("webhook"),
        port_of(env_value(c, "OTEL_ADMISSION_LISTEN"))
    );
    assert_eq!(
        port_named("admin"),
        port_of(env_value(c, "OTEL_ADMISSION_ADMIN_LISTEN"))
    );
    let svc = one(objs, "Service", "otel-admission");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "webhook");
    let metrics_svc = one(objs, "Service", "otel-admission-metrics");
    assert_eq!(metrics_svc["spec"]["ports"][0]["targetPort"], "admin");
    for (kind, path) in [
        ("MutatingWebhookConfiguration", "/mutate"),
        ("ValidatingWebhookConfiguration", "/validate"),
    ] {
        let wh = &one(objs, kind, "otel-admission")["webhooks"][0];
        let s = &wh["clientConfig"]["service"];
        assert_eq!(s["name"], "otel-admission", "{kind}");
        assert_eq!(s["namespace"], "otel-admission", "{kind}");
        assert_eq!(s["port"], 443, "{kind}");
        assert_eq!(s["path"], path, "{kind}");
        assert_eq!(wh["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(wh["sideEffects"], "None");
        assert_eq!(wh["timeoutSeconds"], 5);
        assert_eq!(wh["matchPolicy"], "Equivalent");
        // The namespace selector keeps system namespaces and ourselves out.
        let exprs = wh["namespaceSelector"]["matchExpressions"]
            .as_array()
            .expect("exprs");
        let names = exprs
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name")
            .expect("name expr");
        assert_eq!(names["operator"], "NotIn");
        for ns in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "otel-admission",
        ] {
            assert!(
                names["values"]
                    .as_array()
                    .expect("v")
                    .iter()
                    .any(|v| v == ns),
                "{kind} excludes {ns}"
            );
        }
        // Our own pods never match the objectSelector.
        let labels = pod["metadata"]["labels"].as_object().expect("labels");
        let obj = wh["objectSelector"]["matchExpressions"]
            .as_array()
            .expect("obj exprs");
        assert!(
            obj.iter().any(|e| e["operator"] == "NotIn"
                && labels
                    .get(e["key"].as_str().expect("k"))
                    .is_some_and(|v| e["values"].as_array().expect("v").contains(v))),
            "{kind}: objectSelector must exclude the webhook's own pods"
        );
    }
    let mwh = &one(objs, "MutatingWebhookConfiguration", "otel-admission")["webhooks"][0];
    assert_eq!(mwh["failurePolicy"], "Ignore");
    assert_eq!(mwh["reinvocationPolicy"], "IfNeeded");
    assert_eq!(
        mwh["rules"],
        serde_json::json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}])
    );
    let disabled = mwh["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("e")
        .iter()
        .any(|e| {
            e["key"] == "otel-admission.io/inject"
                && e["operator"] == "NotIn"
                && e["values"] == serde_json::json!(["disabled"])
        });
    assert!(
        disabled,
        "namespaces labelled otel-admission.io/inject=disabled are skipped"
    );

    // Restricted, highly available, probed on the admin port.
    assert!(deploy["spec"]["replicas"].as_u64().expect("replicas") >= 2);
    assert!(pod["spec"]["affinity"]["podAntiAffinity"].is_object());
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    let hpa = one(objs, "HorizontalPodAutoscaler", "otel-admission");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "otel-admission");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    let pdb = one(objs, "PodDisruptionBudget", "otel-admission");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    let psc = &pod["spec"]["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["runAsUser"].as_u64().expect("uid") > 0);
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["resources"]["limits"]["memory"].is_string()
            && c["resources"]["requests"]["cpu"].is_string()
    );
    let tls = pod["spec"]["volumes"]
        .as_array()
        .expect("vols")
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume");
    assert_eq!(
        tls["secret"]["secretName"], "otel-admission-tls",
        "the Secret is a volume, so rotation reaches the pod"
    );
    assert!(
        c["volumeMounts"]
            .as_array()
            .expect("m")
            .iter()
            .all(|m| m.get("subPath").is_none()),
        "subPath mounts never update"
    );

    // The shipped config is valid.
    let cm = one(objs, "ConfigMap", "otel-admission-config");
    let cfg = otel_admission::config::Config::from_yaml(
        cm["data"]["config.yaml"].as_str().expect("config.yaml"),
        "ConfigMap",
    )
    .expect("the shipped config parses");
    assert_eq!(cfg.server.namespace.as_deref(), Some("otel-admission"));
    assert!(!cfg.rules.is_empty());
}

#[test]
fn the_cert_manager_overlay_is_consistent() {
    let objs = kustomize("manifests/overlays/cert-manager");
    check_common(&objs);
    let cert = one(&objs, "Certificate", "otel-admission");
    assert_eq!(cert["metadata"]["namespace"], "otel-admission");
    assert_eq!(cert["spec"]["secretName"], "otel-admission-tls");
    let dns = cert["spec"]["dnsNames"].as_array().expect("dns");
    assert!(
        dns.iter().any(|d| d == "otel-admission.otel-admission.svc"),
        "the name the API server dials"
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert_eq!(
            one(&objs, kind, "otel-admission")["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "otel-admission/otel-admission"
        );
    }
    let issuer = &cert["spec"]["issuerRef"]["name"];
    assert_eq!(
        one(&objs, "Issuer", issuer.as_str().expect("issuer"))["spec"]["ca"]["secretName"],
        "otel-admission-ca"
    );
}

#[test]
fn the_dev_overlay_carries_a_static_pair_and_its_ca_bundle() {
    use base64::Engine as _;
    let (objs, ca) = render_dev();
    check_common(&objs);
    let secret = one(&objs, "Secret", "otel-admission-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], "otel-admission");
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let b64 = one(&objs, kind, "otel-admission")["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .expect("caBundle")
            .to_string();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        assert_eq!(String::from_utf8(pem).expect("pem"), ca, "{kind}");
    }
}

#[test]
fn monitoring_renders_with_a_labelled_dashboard() {
    let objs = kustomize("manifests/monitoring");
    let sm = one(&objs, "ServiceMonitor", "otel-admission");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    let base = kustomize("manifests/base");
    let svc = one(&base, "Service", "otel-admission-metrics");
    let sel = sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("sel");
    for (k, v) in sel {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects the metrics Service"
        );
    }
    let rule = one(&objs, "PrometheusRule", "otel-admission");
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["alert"].as_str().expect("alert"))
        .collect();
    for a in [
        "OtelAdmissionErrorRate",
        "OtelAdmissionLatencyNearTimeout",
        "OtelAdmissionCertificateExpiresSoon",
        "OtelAdmissionPolicyReloadFailing",
        "OtelAdmissionCacheNotReady",
    ] {
        assert!(alerts.contains(&a), "{a}");
    }
    let cm = one(&objs, "ConfigMap", "otel-admission-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dash: Value =
        serde_json::from_str(cm["data"]["otel-admission.json"].as_str().expect("json"))
            .expect("dashboard JSON");
    assert!(dash["panels"].as_array().expect("panels").len() >= 6);
}

#[test]
fn the_policies_configmap_is_the_shipped_pack_and_loads_flat() {
    let printed = Command::new(env!("CARGO_BIN_EXE_otel-admission"))
        .args(["policy", "bundle", "policies"])
        .current_dir(ROOT)
        .output()
        .expect("run bundle");
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let committed = std::fs::read_to_string(format!("{ROOT}/manifests/base/policies.yaml"))
        .expect("policies.yaml");
    assert_eq!(
        String::from_utf8(printed.stdout).expect("utf8"),
        committed,
        "manifests/base/policies.yaml is stale: run `cargo run -- policy bundle policies > manifests/base/policies.yaml`"
    );
    // Mounted as a ConfigMap, the files sit flat in one directory; the engine
    // must load them to the same set as the source tree.
    let objs = kustomize("manifests/base");
    let cm = one(&objs, "ConfigMap", "otel-admission-policies");
    let flat = tempfile::tempdir().expect("tmp");
    for (k, v) in cm["data"].as_object().expect("data") {
        std::fs::write(flat.path().join(k), v.as_str().expect("text")).expect("write");
    }
    let timeout = std::time::Duration::from_secs(5);
    let from_tree = otel_admission::policy::PolicySet::load_dir(
        std::path::Path::new(&format!("{ROOT}/policies")),
        timeout,
    )
    .expect("tree");
    let from_flat =
        otel_admission::policy::PolicySet::load_dir(flat.path(), timeout).expect("flat");
    assert_eq!(from_flat.policy_names(), from_tree.policy_names());
    assert!(
        from_flat.policy_names().len() >= 6,
        "{:?}",
        from_flat.policy_names()
    );
    let deploy = one(&objs, "Deployment", "otel-admission");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    let mount = c["volumeMounts"]
        .as_array()
        .expect("m")
        .iter()
        .find(|m| m["name"] == "policies")
        .expect("mounted");
    assert_eq!(
        mount["mountPath"].as_str(),
        Some(env_value(c, "OTEL_ADMISSION_POLICIES"))
    );
}

/// We eat our own cooking: the shipped pack admits our own Deployment and pod.
#[test]
fn the_shipped_pack_passes_on_our_own_deployment() {
    let objs = kustomize("manifests/base");
    let deploy = one(&objs, "Deployment", "otel-admission").clone();
    let mut pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": deploy["spec"]["template"]["metadata"].clone(), "spec": deploy["spec"]["template"]["spec"].clone()});
    pod["metadata"]["namespace"] = "otel-admission".into();
    pod["metadata"]["name"] = "otel-admission-0".into();
    let set = otel_admission::policy::PolicySet::load_dir(
        std::path::Path::new(&format!("{ROOT}/policies")),
        std::time::Duration::from_secs(5),
    )
    .expect("pack");
    // Not vacuous: the same pod, made non-compliant, is denied.
    let mut bad = pod.clone();
    bad["spec"]["containers"][0]["image"] = "ghcr.io/otel-admission/otel-admission:latest".into();
    bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = true.into();
    let outcome = set.evaluate(
        &otel_admission::policy::suite::review_for(&bad),
        &|_: &str| None,
    );
    let msgs: Vec<String> = outcome
        .violations
        .iter()
        .map(|v| v.policy.clone())
        .collect();
    assert!(msgs.len() >= 2, "{msgs:?}");
    for obj in [deploy, pod] {
        let review = otel_admission::policy::suite::review_for(&obj);
        let outcome = set.evaluate(&review, &|_: &str| None);
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert!(
            outcome.violations.is_empty(),
            "{}: {:?}",
            obj["kind"],
            outcome
                .violations
                .iter()
                .map(|v| format!("[{}] {}", v.policy, v.message))
                .collect::<Vec<_>>()
        );
    }
}

/// Every metric the dashboard and alerts query is one a running server exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_exported_metrics() {
    // The real engines, wired by the composition root `serve` uses, and one
    // request to each endpoint.
    let mut opts = otel_admission::app::Options::from_env(otel_admission::app::Cluster::Mode(
        otel_admission::config::ClusterMode::Off,
    ));
    opts.policies_dir = Some(std::path::PathBuf::from(format!("{ROOT}/policies")));
    let app =
        otel_admission::app::App::from_config(otel_admission::config::Config::default(), opts)
            .await
            .expect("app");
    let server = common::start(common::Options {
        mutator: app.injector.clone(),
        validator: app.policies.clone(),
        metrics: Some(app.metrics.clone()),
        ..Default::default()
    })
    .await;
    server
        .post("/mutate", &common::review("m", "CREATE", common::pod()))
        .await;
    server
        .post("/validate", &common::review("v", "CREATE", common::pod()))
        .await;
    let (status, text) = server.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    assert!(exported.len() >= 12, "{exported:?}");
    let objs = kustomize("manifests/monitoring");
    let mut queries: Vec<String> = Vec::new();
    let cm = one(&objs, "ConfigMap", "otel-admission-dashboard");
    let dash: Value =
        serde_json::from_str(cm["data"]["otel-admission.json"].as_str().expect("json"))
            .expect("json");
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            queries.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for r in one(&objs, "PrometheusRule", "otel-admission")["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
    {
        queries.push(r["expr"].as_str().expect("expr").to_string());
    }
    let mut used = std::collections::BTreeSet::new();
    for q in &queries {
        let mut rest = q.as_str();
        while let Some(i) = rest.find("otel_admission_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_string();
            used.insert(family);
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}

#[test]
fn the_example_instrumentation_is_valid_for_the_server() {
    let objs = kustomize("manifests/examples");
    let inst = one(&objs, "Instrumentation", "default");
    assert_eq!(inst["metadata"]["namespace"], "shop");
    let typed: otel_admission::instrumentation::Instrumentation =
        serde_json::from_value(inst.clone()).expect("parses as the server's type");
    assert!(
        typed.spec.validate().is_empty(),
        "{:?}",
        typed.spec.validate()
    );
}

/// The rollout overlay adds exactly the controller's verbs; the base keeps
/// its least privilege (checked above).
#[test]
fn the_rollout_overlay_adds_only_the_rollout_verbs() {
    let objs = kustomize("manifests/overlays/rollout");
    let role = one(&objs, "ClusterRole", "otel-admission-rollout");
    let mut granted: Vec<(String, String, String)> = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        for g in rule["apiGroups"].as_array().expect("groups") {
            for r in rule["resources"].as_array().expect("resources") {
                for v in rule["verbs"].as_array().expect("verbs") {
                    granted.push((
                        g.as_str().unwrap_or_default().into(),
                        r.as_str().unwrap_or_default().into(),
                        v.as_str().unwrap_or_default().into(),
                    ));
                }
            }
        }
    }
    granted.sort();
    let mut want = Vec::new();
    for r in ["daemonsets", "deployments", "statefulsets"] {
        for v in ["get", "list", "patch", "watch"] {
            want.push(("apps".to_string(), r.to_string(), v.to_string()));
        }
    }
    for v in ["get", "list", "watch"] {
        want.push((String::new(), "pods".to_string(), v.to_string()));
    }
    want.sort();
    assert_eq!(granted, want);
    let lease = one(&objs, "Role", "otel-admission-rollout-lease");
    assert_eq!(lease["metadata"]["namespace"], "otel-admission");
    assert!(
        lease["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .all(
                |r| r["apiGroups"] == serde_json::json!(["coordination.k8s.io"])
                    && r["resources"] == serde_json::json!(["leases"])
            )
    );
    // The base objects are all there, unchanged in number.
    assert_eq!(
        objs.len(),
        kustomize("manifests/base").len() + 4,
        "the overlay adds its four RBAC objects"
    );
}

/// The inventory overlay grants only reads of the synced kinds (issue 15);
/// the base grants none of them.
#[test]
fn the_inventory_overlay_adds_only_reads_of_synced_kinds() {
    let objs = kustomize("manifests/overlays/inventory");
    let role = one(&objs, "ClusterRole", "otel-admission-inventory");
    for rule in role["rules"].as_array().expect("rules") {
        assert_eq!(
            rule["verbs"],
            serde_json::json!(["get", "list", "watch"]),
            "{rule}"
        );
    }
    assert_eq!(
        role["rules"][0]["resources"],
        serde_json::json!(["ingresses"])
    );
    let binding = one(&objs, "ClusterRoleBinding", "otel-admission-inventory");
    assert_eq!(binding["subjects"][0]["name"], "otel-admission");
    let base = kustomize("manifests/base");
    assert!(
        !serde_json::to_string(&base)
            .expect("json")
            .contains("ingresses"),
        "the base reads no synced kind"
    );
    let config = one(&objs, "Role", "otel-admission-gatekeeper-config");
    assert_eq!(config["metadata"]["namespace"], "otel-admission");
    assert_eq!(
        config["rules"],
        serde_json::json!([{"apiGroups": ["config.gatekeeper.sh"], "resources": ["configs"],
            "resourceNames": ["config"], "verbs": ["get"]}])
    );
    assert_eq!(objs.len(), base.len() + 4);
}
