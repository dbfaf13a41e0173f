//! Property test over generated pods, through the same `Injector` the server uses:
//! the patch applies, the result is a valid Pod with unique names and resolvable
//! mounts, and mutating the result again gives no patch. Pods also opt into the
//! collector sidecar, probes and annotations, in both sidecar modes.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use otel_admission::admission::{self, Mutate};
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::{NamespaceMeta, StaticView};
use otel_admission::instrumentation::Instrumentation;
use otel_admission::metrics::Metrics;
use otel_admission::mutate::Injector;
use proptest::prelude::*;
use serde_json::{Value, json};

const CONTAINERS: [&str; 7] = [
    "app",
    "web",
    "worker",
    "istio-proxy",
    "api",
    "cloudsql-proxy",
    "otc-container",
];
const SIDECAR_VALUES: [&str; 6] = ["true", "true", "false", "col", "shop/col", "other/col"];
const SWITCH_VALUES: [&str; 4] = ["true", "true", "false", "maybe"];
const EXCLUDE_LISTS: [&str; 4] = ["15020", " 8888 , 15090", "9090,,", ""];
const ENV_NAMES: [&str; 10] = [
    "JAVA_TOOL_OPTIONS",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "DOTNET_STARTUP_HOOKS",
    "DOTNET_SHARED_STORE",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "FOO",
    "BAR",
];
const VALUES: [&str; 5] = ["", "x", "-Xmx1g", "a=b,service.version=2", "http://c:4317"];
const INJECT_VALUES: [&str; 7] = [
    "true",
    "true",
    "inst",
    "inst",
    "false",
    "other/inst",
    "missing",
];
const LANGS: [&str; 8] = [
    "java",
    "nodejs",
    "python",
    "dotnet",
    "sdk",
    "go",
    "apache-httpd",
    "nginx",
];

fn env_var() -> impl Strategy<Value = (usize, Value)> {
    (0..ENV_NAMES.len(), any::<bool>(), 0..VALUES.len()).prop_map(|(n, from, v)| {
        let name = ENV_NAMES[n];
        let var = if from {
            json!({"name": name, "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}})
        } else {
            json!({"name": name, "value": VALUES[v]})
        };
        (n, var)
    })
}

fn container(name: &'static str, volumes: usize) -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(env_var(), 0..6),
        prop::option::of(0..volumes.max(1)),
        any::<bool>(),
        (0u8..4, any::<bool>()),
    )
        .prop_map(move |(env, mount, has_env, (ports, probe))| {
            let mut seen = HashSet::new();
            let env: Vec<Value> = env
                .into_iter()
                .filter(|(n, _)| seen.insert(*n))
                .map(|(_, v)| v)
                .collect();
            let mut c = json!({"name": name, "image": format!("registry/{name}:1.0")});
            if has_env {
                c["env"] = json!(env);
            }
            if let Some(m) = mount
                && volumes > 0
            {
                c["volumeMounts"] = json!([{"name": format!("vol-{m}"), "mountPath": "/data"}]);
            }
            // No ports, a health port, a metrics port, or both.
            let mut list = Vec::new();
            if ports & 1 == 1 {
                list.push(json!({"name": "health", "containerPort": 8080}));
            }
            if ports & 2 == 2 {
                list.push(json!({"name": "metrics", "containerPort": 9090}));
            }
            if !list.is_empty() {
                c["ports"] = json!(list);
            }
            if probe {
                c["livenessProbe"] = json!({"exec": {"command": ["true"]}});
            }
            c
        })
}

fn annotations() -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(
        0.9,
        (
            prop::collection::vec((0..LANGS.len(), 0..INJECT_VALUES.len()), 1..4),
            prop::option::weighted(
                0.3,
                prop::sample::select(vec![
                    "app",
                    "web,worker",
                    "api",
                    "bad name",
                    "ghost",
                    "migrate",
                    "migrate,app",
                ]),
            ),
            any::<bool>(),
            prop::option::weighted(0.3, prop::sample::select(vec!["glibc", "musl", "alpine"])),
        )
            .prop_map(|(langs, names, exe, platform)| {
                let mut a = serde_json::Map::new();
                for (l, v) in langs {
                    a.insert(
                        format!("instrumentation.opentelemetry.io/inject-{}", LANGS[l]),
                        json!(INJECT_VALUES[v]),
                    );
                }
                if let Some(n) = names {
                    a.insert(
                        "instrumentation.opentelemetry.io/container-names".into(),
                        json!(n),
                    );
                }
                if names.is_none() && platform.is_some() {
                    a.insert("otel-admission.io/inject-auto".into(), json!("true"));
                }
                if exe {
                    a.insert(
                        "instrumentation.opentelemetry.io/otel-go-auto-target-exe".into(),
                        json!("/app/bin"),
                    );
                }
                if let Some(p) = platform {
                    a.insert(
                        "instrumentation.opentelemetry.io/otel-python-platform".into(),
                        json!(p),
                    );
                }
                Value::Object(a)
            }),
    )
}

/// The pod features: sidecar, probes, annotations, and what the pod already
/// carries (Istio membership, an exclude list, a Prometheus port).
fn feature_annotations() -> impl Strategy<Value = Value> {
    (
        prop::option::of(0..SIDECAR_VALUES.len()),
        prop::option::of(0..SWITCH_VALUES.len()),
        prop::option::of(0..SWITCH_VALUES.len()),
        prop::option::of(0..EXCLUDE_LISTS.len()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(sidecar, probes, istio, exclude, mesh, prom)| {
            let mut a = serde_json::Map::new();
            if let Some(i) = sidecar {
                a.insert(
                    "sidecar.opentelemetry.io/inject".into(),
                    json!(SIDECAR_VALUES[i]),
                );
            }
            if let Some(i) = probes {
                a.insert("otel-admission.io/probes".into(), json!(SWITCH_VALUES[i]));
            }
            if let Some(i) = istio {
                a.insert("otel-admission.io/istio".into(), json!(SWITCH_VALUES[i]));
            }
            if let Some(i) = exclude {
                a.insert(
                    "traffic.sidecar.istio.io/excludeInboundPorts".into(),
                    json!(EXCLUDE_LISTS[i]),
                );
            }
            if mesh {
                a.insert("sidecar.istio.io/inject".into(), json!("true"));
            }
            if prom {
                a.insert("prometheus.io/port".into(), json!("9102"));
            }
            Value::Object(a)
        })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        prop::sample::subsequence(CONTAINERS.to_vec(), 1..4),
        0usize..3,
        annotations(),
        prop::option::of(prop::sample::select(vec!["checkout", ""])),
        prop::bool::weighted(0.9),
        any::<bool>(),
        (feature_annotations(), prop::bool::weighted(0.1)),
    )
        .prop_flat_map(|(names, volumes, ann, app_label, has_meta, init, features)| {
            let containers: Vec<_> = names.into_iter().map(|n| container(n, volumes)).collect();
            (containers, Just((volumes, ann, app_label, has_meta, init, features)))
        })
        .prop_map(|(containers, (volumes, ann, app_label, has_meta, init, (features, clash)))| {
            let mut spec = json!({"containers": containers});
            let mut vols: Vec<Value> = (0..volumes)
                .map(|i| json!({"name": format!("vol-{i}"), "emptyDir": {}}))
                .collect();
            if clash {
                vols.push(json!({"name": "otc-container-config", "emptyDir": {}}));
            }
            if !vols.is_empty() {
                spec["volumes"] = json!(vols);
            }
            if init {
                spec["initContainers"] = json!([
                    {"name": "setup", "image": "s:1"},
                    {"name": "migrate", "image": "m:1", "env": [{"name": "PYTHONPATH", "value": "/m"}]}
                ]);
            }
            let mut p = json!({"apiVersion": "v1", "kind": "Pod", "spec": spec});
            if has_meta {
                let mut meta = json!({"generateName": "checkout-7d9f-"});
                // Pods without annotations stay as common as before, so the
                // patch keeps adding the whole map in those cases.
                if let Some(Value::Object(a)) = ann {
                    let mut all = features;
                    if let Value::Object(f) = &mut all {
                        f.extend(a);
                    }
                    meta["annotations"] = all;
                }
                if let Some(l) = app_label {
                    meta["labels"] = json!({"app.kubernetes.io/name": l});
                }
                p["metadata"] = meta;
            }
            p
        })
}

fn injector(native: bool) -> Injector {
    let inst: Instrumentation = serde_json::from_value(json!({
        "metadata": {"name": "inst", "namespace": "shop"},
        "spec": {"exporter": {"endpoint": "http://collector:4318"}, "sampler": {"type": "always_on"}}
    }))
    .expect("inst");
    let other: Instrumentation = serde_json::from_value(json!({
        "metadata": {"name": "inst", "namespace": "other"}, "spec": {}
    }))
    .expect("inst");
    let view = StaticView::new()
        .with_namespace("shop", NamespaceMeta::default())
        .with_instrumentation(inst, "shop")
        .with_instrumentation(other, "other");
    Injector {
        config: Arc::new(ArcSwap::from_pointee(Config::default())),
        view: Arc::new(view),
        metrics: Arc::new(Metrics::new()),
        // `native: auto` decides from the version: 1.29 native, 1.28 regular.
        server_version: Some((1, if native { 29 } else { 28 })),
        events: None,
    }
}

fn mutate(inj: &Injector, object: &Value) -> admission::Verdict {
    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "object": object}
    }))
    .expect("body");
    let review = admission::decode(&body).expect("decode");
    inj.mutate(&review)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn patch_applies_and_is_idempotent(original in pod(), native in any::<bool>()) {
        let inj = injector(native);
        let verdict = mutate(&inj, &original);
        let mut doc = original.clone();
        if let Some(patch) = &verdict.patch {
            json_patch::patch(&mut doc, &patch.to_json_patch().map_err(|e| TestCaseError::fail(e.to_string()))?.0).map_err(|e| TestCaseError::fail(format!("{e}: {patch:?}")))?;
        }
        let pod: Pod = serde_json::from_value(doc.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let spec = pod.spec.expect("spec");
        let mut names = HashSet::new();
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            prop_assert!(names.insert(c.name.clone()), "duplicate container {}", c.name);
        }
        let volumes: Vec<String> = spec.volumes.iter().flatten().map(|v| v.name.clone()).collect();
        let unique: HashSet<&String> = volumes.iter().collect();
        prop_assert_eq!(unique.len(), volumes.len(), "duplicate volume in {:?}", volumes);
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            let mut paths = HashSet::new();
            for m in c.volume_mounts.iter().flatten() {
                prop_assert!(volumes.contains(&m.name), "{} mounts unknown volume {}", c.name, m.name);
                prop_assert!(paths.insert(m.mount_path.clone()), "{} mounts {} twice", c.name, m.mount_path);
            }
            let mut env_names = HashSet::new();
            for e in c.env.iter().flatten() {
                prop_assert!(env_names.insert(e.name.clone()), "{} defines {} twice", c.name, e.name);
            }
            let mut port_names = HashSet::new();
            for p in c.ports.iter().flatten() {
                if let Some(n) = &p.name {
                    prop_assert!(n.len() <= 15, "{}: port name {} too long", c.name, n);
                    prop_assert!(port_names.insert(n.clone()), "{}: port {} twice", c.name, n);
                }
            }
            // Our probes only target ports the container exposes.
            if c.name != "otc-container" {
                for probe in [&c.startup_probe, &c.liveness_probe, &c.readiness_probe].into_iter().flatten() {
                    if let Some(get) = &probe.http_get {
                        let IntOrString::Int(port) = get.port else {
                            return Err(TestCaseError::fail(format!("{}: named probe port", c.name)));
                        };
                        prop_assert!(
                            c.ports.iter().flatten().any(|p| p.container_port == port),
                            "{}: probe on unexposed port {}", c.name, port
                        );
                    }
                }
            }
        }
        for c in &spec.containers {
            prop_assert!(c.restart_policy.is_none(), "{}: restartPolicy on a regular container", c.name);
        }
        let sidecars = spec.containers.iter().chain(spec.init_containers.iter().flatten())
            .filter(|c| c.name == "otc-container").count();
        prop_assert!(sidecars <= 1);
        let ann = pod.metadata.annotations.clone().unwrap_or_default();
        if let Some(list) = ann.get("traffic.sidecar.istio.io/excludeInboundPorts") {
            let items: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            let unique: HashSet<&&str> = items.iter().collect();
            prop_assert_eq!(unique.len(), items.len(), "duplicates in {}", list);
        }
        let original_ann = original.pointer("/metadata/annotations").cloned().unwrap_or(json!({}));
        for (k, v) in original_ann.as_object().into_iter().flatten() {
            if k != "traffic.sidecar.istio.io/excludeInboundPorts" {
                prop_assert_eq!(ann.get(k).map(String::as_str), v.as_str(), "{} overwritten", k);
            }
        }
        let again = mutate(&inj, &doc);
        prop_assert!(again.patch.is_none(), "second mutation patched: {:?}", again.patch);
    }
}
