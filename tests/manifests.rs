//! `manifests/` rendered with `kubectl kustomize`, checked object by object.

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
fn rbac_is_exactly_get_list_watch_on_namespaces_and_instrumentations() {
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
    for (g, r) in [("", "namespaces"), ("opentelemetry.io", "instrumentations")] {
        for v in ["get", "list", "watch"] {
            want.push((g.to_string(), r.to_string(), v.to_string()));
        }
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
    let crd = &find(&objs, "CustomResourceDefinition")[0];
    assert_eq!(crd["metadata"]["name"], "instrumentations.opentelemetry.io");
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
