//! `manifests/` rendered with `kubectl kustomize`, checked object by object:
//! the base, the CRDs apart, every component alone and in the combinations
//! a user applies (in either order, moved to another namespace, with
//! another image), each object parsed strictly as its Kubernetes type, and
//! the default install's config and policy pack run in the real server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Parses `kubectl kustomize` output into its objects.
fn parse_rendered(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("each document parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn render_dir(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl must be installed: the manifests are checked with `kubectl kustomize`");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_rendered(&String::from_utf8(out.stdout).expect("utf8"))
}

/// Renders a kustomization of the repository as it is.
fn kustomize(dir: &str) -> Vec<Value> {
    render_dir(&Path::new(ROOT).join(dir))
}

/// A scratch copy of `manifests/` with the dev pair written by the real
/// `otel-admission certs`, so every kustomization renders as on a user's
/// machine after the README's steps.
struct Scratch {
    dir: tempfile::TempDir,
    ca: String,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let copy = Command::new("cp")
            .args(["-r", &format!("{ROOT}/manifests")])
            .arg(dir.path())
            .status()
            .expect("cp");
        assert!(copy.success());
        let certs = dir.path().join("manifests/components/dev-certs/certs");
        let out = Command::new(env!("CARGO_BIN_EXE_otel-admission"))
            .args(["certs", "--out"])
            .arg(&certs)
            .output()
            .expect("certs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ca = std::fs::read_to_string(certs.join("ca.crt")).expect("ca");
        Self { dir, ca }
    }

    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// Renders a shipped kustomization of the scratch copy.
    fn render(&self, dir: &str) -> Vec<Value> {
        render_dir(&self.manifests().join(dir))
    }

    /// Renders a user's overlay: the base plus `components` in that order,
    /// and `extra` kustomization fields (`namespace:`, `images:`).
    fn overlay(&self, name: &str, components: &[&str], extra: &str) -> Vec<Value> {
        let dir = self.manifests().join("overlays").join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut k = String::from(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\n",
        );
        if !components.is_empty() {
            k.push_str("components:\n");
            for c in components {
                k.push_str(&format!("  - ../../components/{c}\n"));
            }
        }
        k.push_str(extra);
        std::fs::write(dir.join("kustomization.yaml"), k).expect("write");
        render_dir(&dir)
    }
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
        std::fs::read_to_string(format!("{ROOT}/manifests/crds/crds.yaml")).expect("crds.yaml");
    assert_eq!(
        String::from_utf8(printed.stdout).expect("utf8"),
        committed,
        "manifests/crds/crds.yaml is stale: run `cargo run -- crd > manifests/crds/crds.yaml`"
    );
    let objs = kustomize("manifests/crds");
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

/// Every object of an install parsed strictly as its Kubernetes type (an
/// unknown or misspelled field fails, as `kubectl apply --validate=strict`
/// would), every namespaced object in `ns`, nothing cluster-scoped given a
/// namespace, and no `$(VAR)` left unresolved.
fn check_strict(objs: &[Value], ns: &str) {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, apps::v1 as apps, autoscaling::v2 as autoscaling,
        core::v1 as core, policy::v1 as policy, rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    fn strict<T: serde::de::DeserializeOwned>(obj: &Value) -> Vec<String> {
        let mut unknown = Vec::new();
        let parsed: Result<T, _> =
            serde_ignored::deserialize(obj.clone(), |path| unknown.push(path.to_string()));
        match parsed {
            Ok(_) => unknown
                .into_iter()
                .map(|p| format!("unknown field {p}"))
                .collect(),
            Err(e) => vec![format!("does not parse: {e}")],
        }
    }
    let text = serde_json::to_string(objs).expect("json");
    assert!(!text.contains("$("), "an unresolved kustomize var is left");
    let mut problems = Vec::new();
    for o in objs {
        let kind = o["kind"].as_str().unwrap_or_default();
        let api = o["apiVersion"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let (found, namespaced) = match kind {
            "Namespace" => (strict::<core::Namespace>(o), false),
            "ServiceAccount" => (strict::<core::ServiceAccount>(o), true),
            "ConfigMap" => (strict::<core::ConfigMap>(o), true),
            "Secret" => {
                // kustomize folds long base64 values over lines; the API
                // server's decoder (Go's encoding/base64) skips newlines.
                let mut unfolded = o.clone();
                if let Some(data) = unfolded["data"].as_object_mut() {
                    for v in data.values_mut() {
                        if let Some(text) = v.as_str() {
                            *v = Value::String(text.replace(['\n', '\r'], ""));
                        }
                    }
                }
                (strict::<core::Secret>(&unfolded), true)
            }
            "Service" => (strict::<core::Service>(o), true),
            "ResourceQuota" => (strict::<core::ResourceQuota>(o), true),
            "ClusterRole" => (strict::<rbac::ClusterRole>(o), false),
            "ClusterRoleBinding" => (strict::<rbac::ClusterRoleBinding>(o), false),
            "Role" => (strict::<rbac::Role>(o), true),
            "RoleBinding" => (strict::<rbac::RoleBinding>(o), true),
            "Deployment" => (strict::<apps::Deployment>(o), true),
            "PodDisruptionBudget" => (strict::<policy::PodDisruptionBudget>(o), true),
            "HorizontalPodAutoscaler" => (strict::<autoscaling::HorizontalPodAutoscaler>(o), true),
            "MutatingWebhookConfiguration" => {
                (strict::<adm::MutatingWebhookConfiguration>(o), false)
            }
            "ValidatingWebhookConfiguration" => {
                (strict::<adm::ValidatingWebhookConfiguration>(o), false)
            }
            "CustomResourceDefinition" => (strict::<CustomResourceDefinition>(o), false),
            // Custom resources of cert-manager and the Prometheus Operator:
            // their group and version, and a spec.
            "Issuer" | "Certificate" if api == "cert-manager.io/v1" => (check_spec(o), true),
            "ServiceMonitor" | "PrometheusRule" if api == "monitoring.coreos.com/v1" => {
                (check_spec(o), true)
            }
            _ => (vec![format!("unexpected {api} {kind}")], true),
        };
        problems.extend(found.into_iter().map(|p| format!("{kind}/{name}: {p}")));
        let got = o["metadata"]["namespace"].as_str();
        if namespaced && got != Some(ns) {
            problems.push(format!("{kind}/{name}: namespace {got:?}, want {ns:?}"));
        }
        if !namespaced && got.is_some() {
            problems.push(format!("{kind}/{name}: cluster-scoped, with a namespace"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn check_spec(o: &Value) -> Vec<String> {
    if o["spec"].is_object() {
        Vec::new()
    } else {
        vec!["no spec".into()]
    }
}

/// Every reference of an install points where the install is: the
/// webhooks at the Service in `ns` and at the ports `serve` listens on,
/// RBAC at the ServiceAccount in `ns`, the webhooks' selectors excluding
/// `ns`, the image `image`; restricted, highly available, probed.
fn check_install(objs: &[Value], ns: &str, image: &str) {
    check_strict(objs, ns);
    one(objs, "Namespace", ns);
    let deploy = one(objs, "Deployment", "otel-admission");
    let pod = &deploy["spec"]["template"];
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], image);
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
    // The server learns its namespace from the pod, not from a file.
    let pod_ns = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "POD_NAMESPACE")
        .expect("POD_NAMESPACE");
    assert_eq!(
        pod_ns["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
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
        assert_eq!(s["namespace"], ns, "{kind}");
        assert_eq!(s["port"], 443, "{kind}");
        assert_eq!(s["path"], path, "{kind}");
        assert_eq!(wh["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(wh["sideEffects"], "None");
        assert_eq!(wh["timeoutSeconds"], 5);
        assert_eq!(wh["matchPolicy"], "Equivalent");
        assert_eq!(wh["failurePolicy"], "Ignore", "{kind}");
        // The namespace selector keeps system namespaces and ourselves out.
        let exprs = wh["namespaceSelector"]["matchExpressions"]
            .as_array()
            .expect("exprs");
        let names = exprs
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name")
            .expect("name expr");
        assert_eq!(names["operator"], "NotIn");
        for excluded in ["kube-system", "kube-public", "kube-node-lease", ns] {
            assert!(
                names["values"]
                    .as_array()
                    .expect("v")
                    .iter()
                    .any(|v| v == excluded),
                "{kind} excludes {excluded}"
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
    // Every RBAC subject is our ServiceAccount, where it is.
    let sa = one(objs, "ServiceAccount", "otel-admission");
    assert_eq!(sa["metadata"]["namespace"], ns);
    for binding in objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        for subject in binding["subjects"].as_array().expect("subjects") {
            assert_eq!(subject["kind"], "ServiceAccount", "{binding}");
            assert_eq!(subject["name"], "otel-admission", "{binding}");
            assert_eq!(subject["namespace"], ns, "{binding}");
        }
    }

    // Highly available, with the HPA alone owning the scale.
    assert!(
        deploy["spec"].get("replicas").is_none(),
        "`replicas` next to an HPA resets the scale on every apply"
    );
    assert!(pod["spec"]["affinity"]["podAntiAffinity"].is_object());
    let hpa = one(objs, "HorizontalPodAutoscaler", "otel-admission");
    assert!(hpa["spec"]["minReplicas"].as_u64().expect("min") >= 2);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "otel-admission");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    let pdb = one(objs, "PodDisruptionBudget", "otel-admission");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    // A critical priority comes with the quota that admits it outside
    // kube-system, for every replica the HPA may run plus a surge each.
    let priority = pod["spec"]["priorityClassName"].as_str().expect("priority");
    let quota = one(objs, "ResourceQuota", "otel-admission-critical-pods");
    let scope = &quota["spec"]["scopeSelector"]["matchExpressions"][0];
    assert_eq!(scope["scopeName"], "PriorityClass");
    assert_eq!(scope["operator"], "In");
    assert_eq!(scope["values"], serde_json::json!([priority]));
    let pods: u64 = quota["spec"]["hard"]["pods"]
        .as_str()
        .expect("pods")
        .parse()
        .expect("n");
    assert!(pods >= 2 * hpa["spec"]["maxReplicas"].as_u64().expect("max"));
    // Restricted, probed on the admin port.
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

    // The shipped config is valid, names no namespace of its own (the pod
    // tells the server), and audits rather than enforces.
    let cm = one(objs, "ConfigMap", "otel-admission-config");
    let cfg = otel_admission::config::Config::from_yaml(
        cm["data"]["config.yaml"].as_str().expect("config.yaml"),
        "ConfigMap",
    )
    .expect("the shipped config parses");
    assert_eq!(cfg.server.namespace, None);
    assert_eq!(
        cfg.policies.enforcement,
        otel_admission::config::Enforcement::Audit
    );
    assert!(!cfg.rules.is_empty());
}

const IMAGE: &str = "ghcr.io/otel-admission/otel-admission:0.1.0";

/// The cert-manager path: Certificate names and CA injection follow the
/// namespace.
fn check_cert_manager(objs: &[Value], ns: &str) {
    let cert = one(objs, "Certificate", "otel-admission");
    assert_eq!(cert["spec"]["secretName"], "otel-admission-tls");
    let dns = cert["spec"]["dnsNames"].as_array().expect("dns");
    for want in [
        format!("otel-admission.{ns}.svc"),
        format!("otel-admission.{ns}.svc.cluster.local"),
    ] {
        assert!(
            dns.iter().any(|d| *d == want),
            "{want}: the name the API server dials"
        );
    }
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert_eq!(
            one(objs, kind, "otel-admission")["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{ns}/otel-admission").as_str(),
            "{kind}"
        );
    }
    let issuer = &cert["spec"]["issuerRef"]["name"];
    assert_eq!(
        one(objs, "Issuer", issuer.as_str().expect("issuer"))["spec"]["ca"]["secretName"],
        "otel-admission-ca"
    );
}

/// The dev path: the static pair as the TLS Secret, its CA in both webhooks.
fn check_dev_certs(objs: &[Value], ca: &str) {
    use base64::Engine as _;
    let secret = one(objs, "Secret", "otel-admission-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let b64 = one(objs, kind, "otel-admission")["webhooks"][0]["clientConfig"]["caBundle"]
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
fn the_cert_manager_overlay_is_consistent() {
    let objs = kustomize("manifests/overlays/cert-manager");
    check_install(&objs, "otel-admission", IMAGE);
    check_cert_manager(&objs, "otel-admission");
}

#[test]
fn the_dev_overlay_carries_a_static_pair_and_runs_the_local_image() {
    let scratch = Scratch::new();
    let objs = scratch.render("overlays/dev");
    // The image the README builds and loads into kind or minikube.
    check_install(&objs, "otel-admission", "otel-admission:dev");
    check_dev_certs(&objs, &scratch.ca);
}

/// Issue 26: components stack in any order, on either certificate path, and
/// an overlay's `namespace:` and `images:` reach every reference.
#[test]
fn components_stack_in_any_order_and_the_install_moves() {
    let scratch = Scratch::new();
    let all = ["cert-manager", "rollout", "inventory", "monitoring"];
    let mut reversed = all;
    reversed.reverse();
    let base_len = scratch.render("base").len();
    let mut sizes = Vec::new();
    for (name, components) in [("forward", all), ("reversed", reversed)] {
        let objs = scratch.overlay(name, &components, "");
        check_install(&objs, "otel-admission", IMAGE);
        check_cert_manager(&objs, "otel-admission");
        for (kind, obj) in [
            ("ClusterRole", "otel-admission-rollout"),
            ("Role", "otel-admission-rollout-lease"),
            ("ClusterRole", "otel-admission-inventory"),
            ("ServiceMonitor", "otel-admission"),
            ("PrometheusRule", "otel-admission"),
            ("ConfigMap", "otel-admission-dashboard"),
        ] {
            one(&objs, kind, obj);
        }
        sizes.push(objs.len());
    }
    assert_eq!(sizes[0], sizes[1], "the order changes nothing");
    // cert-manager adds 4, rollout 4, inventory 4, monitoring 3.
    assert_eq!(sizes[0], base_len + 15);

    let objs = scratch.overlay("dev-rollout", &["dev-certs", "rollout"], "");
    check_install(&objs, "otel-admission", IMAGE);
    check_dev_certs(&objs, &scratch.ca);
    one(&objs, "ClusterRole", "otel-admission-rollout");
    let objs = scratch.overlay("rollout-dev", &["rollout", "dev-certs"], "");
    check_dev_certs(&objs, &scratch.ca);

    // Moved, with another image: one line each.
    let moved = scratch.overlay(
        "moved",
        &["monitoring", "inventory", "rollout", "cert-manager", "enforce"],
        "namespace: observability\nimages:\n  - name: ghcr.io/otel-admission/otel-admission\n    newName: registry.example/platform/otel-admission\n    newTag: 1.2.3\n",
    );
    check_install(
        &moved,
        "observability",
        "registry.example/platform/otel-admission:1.2.3",
    );
    check_cert_manager(&moved, "observability");
    assert!(
        !serde_json::to_string(&moved)
            .expect("json")
            .contains("\"otel-admission\",\"kube")
    );
    for o in &moved {
        let text = serde_json::to_string(o).expect("json");
        assert!(
            !text.contains("otel-admission.otel-admission.svc")
                && !text.contains("\"namespace\":\"otel-admission\""),
            "a reference to the old namespace is left in {text}"
        );
    }
}

/// Issue 26: only `manifests/crds` holds a CRD. Every shipped kustomization
/// (each component over the base) renders, strictly valid, without one, so
/// deleting an install never deletes a CRD and with it every
/// Instrumentation in the cluster.
#[test]
fn only_crds_holds_a_crd_and_every_kustomization_renders() {
    let scratch = Scratch::new();
    let mut seen = Vec::new();
    let mut stack = vec![scratch.manifests()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.file_name().and_then(|n| n.to_str()) != Some("kustomization.yaml") {
                continue;
            }
            let rel = path
                .parent()
                .expect("dir")
                .strip_prefix(scratch.manifests())
                .expect("under manifests")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("read");
            let objs = if text.contains("kind: Component") {
                let name = rel
                    .strip_prefix("components/")
                    .expect("components live in components/");
                scratch.overlay(&format!("only-{name}"), &[name], "")
            } else if rel.starts_with("overlays/only-") {
                continue;
            } else {
                scratch.render(&rel)
            };
            let crds = find(&objs, "CustomResourceDefinition").len();
            if rel == "crds" {
                assert_eq!(crds, 2, "{rel}");
            } else {
                assert_eq!(crds, 0, "{rel} holds a CRD");
                if rel != "examples" {
                    check_strict(&objs, "otel-admission");
                }
            }
            seen.push(rel);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "base",
            "components/cert-manager",
            "components/dev-certs",
            "components/enforce",
            "components/inventory",
            "components/migration",
            "components/monitoring",
            "components/rollout",
            "crds",
            "examples",
            "overlays/cert-manager",
            "overlays/dev",
        ]
    );
}

/// The migration's first step scopes both webhooks to nothing: only
/// namespaces labelled `otel-admission.io/inject=enabled` are sent.
#[test]
fn the_migration_component_scopes_both_webhooks_to_labelled_namespaces() {
    let scratch = Scratch::new();
    let objs = scratch.overlay("migration", &["cert-manager", "migration"], "");
    check_install(&objs, "otel-admission", IMAGE);
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let exprs = one(&objs, kind, "otel-admission")["webhooks"][0]["namespaceSelector"]
            ["matchExpressions"]
            .as_array()
            .expect("exprs")
            .clone();
        assert!(
            exprs.contains(&serde_json::json!({"key": "otel-admission.io/inject", "operator": "In", "values": ["enabled"]})),
            "{kind}: {exprs:?}"
        );
    }
}

/// The server as an install runs it: the rendered config ConfigMap, the
/// rendered policy ConfigMap mounted flat, and `--policy-enforcement` as
/// the rendered Deployment sets it, through the composition root `serve`
/// uses and the real TLS server.
async fn serve_install(objs: &[Value]) -> (common::TestServer, tempfile::TempDir) {
    let cm = one(objs, "ConfigMap", "otel-admission-config");
    let config = otel_admission::config::Config::from_yaml(
        cm["data"]["config.yaml"].as_str().expect("config.yaml"),
        "ConfigMap",
    )
    .expect("config");
    let flat = tempfile::tempdir().expect("tmp");
    for (k, v) in one(objs, "ConfigMap", "otel-admission-policies")["data"]
        .as_object()
        .expect("data")
    {
        std::fs::write(flat.path().join(k), v.as_str().expect("text")).expect("write");
    }
    let c = &one(objs, "Deployment", "otel-admission")["spec"]["template"]["spec"]["containers"][0];
    let enforcement = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "OTEL_ADMISSION_POLICY_ENFORCEMENT")
        .map(|e| match e["value"].as_str() {
            Some("enforce") => otel_admission::config::Enforcement::Enforce,
            Some("audit") => otel_admission::config::Enforcement::Audit,
            other => panic!("OTEL_ADMISSION_POLICY_ENFORCEMENT={other:?}"),
        });
    let (_app, server) = common::start_app(config, flat.path().to_path_buf(), enforcement).await;
    (server, flat)
}

/// A plain Deployment, as `kubectl create deployment web --image=nginx:1.27`
/// makes it: no labels the pack wants, no limits, no security context.
fn nginx_review(uid: &str, operation: &str) -> Value {
    let deploy = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}});
    serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web", "namespace": "shop", "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": deploy,
            "oldObject": if operation == "UPDATE" { deploy.clone() } else { Value::Null }}})
}

fn warnings(v: &Value) -> Vec<String> {
    v["response"]["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 26: the default install blocks nothing. With the config and pack
/// the base ships, the README's example pod (before and after `/mutate`)
/// and a plain nginx Deployment, on CREATE and on the UPDATE `kubectl
/// rollout restart` sends, are admitted, with warnings saying what
/// enforcement would deny. With components/enforce the same Deployment is
/// denied: the switch is real, and the findings were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_install_blocks_nothing_and_enforce_is_an_opt_in() {
    use base64::Engine as _;
    let scratch = Scratch::new();
    let objs = scratch.render("overlays/cert-manager");
    let (s, _flat) = serve_install(&objs).await;
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/examples/admission-review.json"))
            .expect("example"),
    )
    .expect("json");
    let (code, v) = s.post("/validate", &example).await;
    assert_eq!(code, 200);
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(
        warnings(&v)
            .iter()
            .any(|w| w.contains("would deny (audit)")),
        "the findings are visible: {v}"
    );
    let (_, m) = s.post("/mutate", &example).await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            m["response"]["patch"]
                .as_str()
                .expect("the example is injected"),
        )
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
    let mut injected = example.clone();
    json_patch::patch(&mut injected["request"]["object"], &patch.0).expect("applies");
    let (_, v) = s.post("/validate", &injected).await;
    assert_eq!(v["response"]["allowed"], true, "after /mutate: {v}");
    for op in ["CREATE", "UPDATE"] {
        let (code, v) = s.post("/validate", &nginx_review("n", op)).await;
        assert_eq!(code, 200);
        assert_eq!(v["response"]["allowed"], true, "{op}: {v}");
        let w = warnings(&v);
        assert!(
            w.iter()
                .filter(|w| w.contains("would deny (audit)"))
                .count()
                >= 4,
            "{op}: {w:?}"
        );
    }
    s.server.shutdown();

    let objs = scratch.overlay("enforced", &["cert-manager", "enforce"], "");
    check_install(&objs, "otel-admission", IMAGE);
    let (s, _flat) = serve_install(&objs).await;
    let (_, v) = s.post("/validate", &nginx_review("e", "CREATE")).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert_eq!(v["response"]["status"]["code"], 403);
}

/// The README's own overlay, as written there, renders into a consistent
/// install with the image it names.
#[test]
fn the_readme_overlay_renders_as_written() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("README");
    let start = readme.find("<<'YAML'\n").expect("the README's overlay") + "<<'YAML'\n".len();
    let len = readme[start..].find("\nYAML\n").expect("its end");
    let overlay = &readme[start..start + len];
    let scratch = Scratch::new();
    let dir = scratch.dir.path().join("deploy/otel-admission");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("kustomization.yaml"), overlay).expect("write");
    let objs = render_dir(&dir);
    check_install(
        &objs,
        "otel-admission",
        "registry.example.com/platform/otel-admission:0.1.0",
    );
    check_cert_manager(&objs, "otel-admission");
    // Uncommented, every optional line still renders.
    let all = overlay
        .lines()
        .map(|l| {
            l.replacen("  # - ", "  - ", 1)
                .replacen("# namespace:", "namespace:", 1)
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("kustomization.yaml"), all).expect("write");
    let objs = render_dir(&dir);
    check_install(
        &objs,
        "observability",
        "registry.example.com/platform/otel-admission:0.1.0",
    );
}

/// The image build: the dependency layer's stub targets are every target
/// Cargo.toml declares (else `cargo build` fails in that layer), and the
/// build context leaves out generated keys and certificates.
#[test]
fn the_image_build_caches_dependencies_and_leaves_keys_out() {
    let cargo: toml_like::Manifest = toml_like::read(&format!("{ROOT}/Cargo.toml"));
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).expect("Dockerfile");
    for bench in &cargo.benches {
        assert!(
            dockerfile.contains(&format!(" {bench} "))
                || dockerfile.contains(&format!(" {bench};")),
            "the Dockerfile's stubs miss bench {bench}"
        );
    }
    for test in &cargo.tests {
        assert!(
            dockerfile.contains(&format!(" {test} ")) || dockerfile.contains(&format!(" {test};")),
            "the Dockerfile's stubs miss test {test} (a [[test]] target)"
        );
    }
    assert!(!cargo.members.is_empty(), "the workspace lists its crates");
    for member in &cargo.members {
        assert!(
            dockerfile.contains(&format!("COPY {member}/Cargo.toml {member}/")),
            "the dependency layer copies {member}/Cargo.toml"
        );
        assert!(
            dockerfile.contains(&format!("{member}/src/lib.rs")),
            "the dependency layer stubs {member}/src/lib.rs"
        );
    }
    assert!(dockerfile.contains("COPY Cargo.toml Cargo.lock ./"));
    assert!(dockerfile.contains("STRIP=symbols"));
    let ignore = std::fs::read_to_string(format!("{ROOT}/.dockerignore")).expect(".dockerignore");
    for entry in [
        "target",
        ".git",
        "certs",
        "manifests/components/dev-certs/certs",
        "**/*.key",
    ] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            "{entry} in .dockerignore"
        );
    }
}

/// Just enough of Cargo.toml: the `[[bench]]` names.
mod toml_like {
    /// What the image's dependency layer must stub: the benches and tests
    /// declared by name (`[[bench]]`, `[[test]]`), and the workspace's
    /// member crates.
    pub struct Manifest {
        pub benches: Vec<String>,
        pub tests: Vec<String>,
        pub members: Vec<String>,
    }

    pub fn read(path: &str) -> Manifest {
        let text = std::fs::read_to_string(path).expect("Cargo.toml");
        let (mut benches, mut tests, mut members) = (Vec::new(), Vec::new(), Vec::new());
        let mut section = "";
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line;
            } else if let Some(name) = line.strip_prefix("name = ") {
                let name = name.trim_matches('"').to_string();
                match section {
                    "[[bench]]" => benches.push(name),
                    "[[test]]" => tests.push(name),
                    _ => {}
                }
            } else if section == "[workspace]"
                && let Some(list) = line.strip_prefix("members = ")
            {
                members = list
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|m| m.trim().trim_matches('"').to_string())
                    .filter(|m| !m.is_empty() && m != ".")
                    .collect();
            }
        }
        assert!(!benches.is_empty(), "no [[bench]] in Cargo.toml");
        Manifest {
            benches,
            tests,
            members,
        }
    }
}

#[test]
fn monitoring_renders_with_a_labelled_dashboard() {
    let objs = Scratch::new().overlay("monitoring", &["monitoring"], "");
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
        "OtelAdmissionDown",
    ] {
        assert!(alerts.contains(&a), "{a}");
    }
    // Under failurePolicy: Ignore a webhook that is down or unreachable
    // fails no request; only an alert says so. One on our replicas being
    // scraped at all, and ones on the API server's own webhook metrics.
    let down = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["alert"] == "OtelAdmissionDown")
        .expect("down");
    assert!(
        down["expr"]
            .as_str()
            .expect("expr")
            .contains("job=\"otel-admission-metrics\""),
        "the ServiceMonitor's job is the metrics Service's name"
    );
    let apiserver = &rule["spec"]["groups"][1];
    assert_eq!(apiserver["name"], "otel-admission-apiserver");
    let exprs: Vec<&str> = apiserver["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["expr"].as_str().expect("expr"))
        .collect();
    for metric in [
        "apiserver_admission_webhook_fail_open_count",
        "apiserver_admission_webhook_rejection_count",
    ] {
        assert!(exprs.iter().any(|e| e.contains(metric)), "{metric}");
    }
    // They match the webhooks' names as the API server labels them.
    let re = regex::Regex::new(r#"name=~"([^"]+)""#).expect("re");
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let name = one(&objs, kind, "otel-admission")["webhooks"][0]["name"]
            .as_str()
            .expect("name")
            .to_string();
        for e in &exprs {
            let pattern = re
                .captures(e)
                .expect("a name matcher")
                .get(1)
                .expect("group")
                .as_str()
                .replace("\\\\", "\\");
            assert!(
                regex::Regex::new(&format!("^(?:{pattern})$"))
                    .expect("PromQL regex")
                    .is_match(&name),
                "{pattern} misses {name}"
            );
        }
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
    let (_app, server) = common::start_app(
        otel_admission::config::Config::default(),
        PathBuf::from(format!("{ROOT}/policies")),
        None,
    )
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
    let objs = Scratch::new().overlay("monitoring", &["monitoring"], "");
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
    for g in one(&objs, "PrometheusRule", "otel-admission")["spec"]["groups"]
        .as_array()
        .expect("groups")
    {
        for r in g["rules"].as_array().expect("rules") {
            queries.push(r["expr"].as_str().expect("expr").to_string());
        }
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

/// The rollout component adds exactly the controller's verbs; the base keeps
/// its least privilege (checked above).
#[test]
fn the_rollout_component_adds_only_the_rollout_verbs() {
    let objs = Scratch::new().overlay("rollout", &["rollout"], "");
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
        "the component adds its four RBAC objects"
    );
}

/// The inventory component grants only reads of the synced kinds (issue 15);
/// the base grants none of them.
#[test]
fn the_inventory_component_adds_only_reads_of_synced_kinds() {
    let objs = Scratch::new().overlay("inventory", &["inventory"], "");
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
