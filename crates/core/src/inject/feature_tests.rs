//! Table-driven tests of the pod features: collector sidecar, probes,
//! Prometheus/Istio annotations, their precedence, status and metrics.
#![allow(clippy::type_complexity)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rstest::rstest;
use serde_json::{Value, json};

use crate::config::{CollectorConfigSource, Config, NativeSidecar, Rule, RuleInject};
use crate::inject::cluster_view::{NamespaceMeta, StaticView};
use crate::inject::context::Context;
use crate::inject::outcome::{Outcome, run};
use crate::inject::plan::{Feature, SkipReason};
use crate::inject::sidecar::builtin_config;

const NS: &str = "shop";
const SC: &str = "sidecar.opentelemetry.io/inject";
const PR: &str = "otel-admission.io/probes";
const PY: &str = "instrumentation.opentelemetry.io/inject-python";
const EXCL: &str = "traffic.sidecar.istio.io/excludeInboundPorts";

/// A config that defines the sidecar template (`sidecar:` in the file), as
/// these tests of the template need: without one, `true` injects nothing.
fn template_config() -> Config {
    let mut c = Config::default();
    c.sidecar.defined = true;
    c
}

/// Without a sidecar-mode collector (none are read yet) and without a
/// template in the config, the operator's `true` injects nothing: no
/// collector the pod cannot use, a warning naming the namespace.
#[test]
fn sidecar_without_collector_or_template_injects_nothing() {
    let p = json!({
        "metadata": {"annotations": {"sidecar.opentelemetry.io/inject": "true",
            "instrumentation.opentelemetry.io/inject-java": "true"}},
        "spec": {"containers": [{"name": "app", "image": "a:1"}]}
    });
    let o = run_with(&p, &Config::default(), &StaticView::new(), None);
    let a = o.applied.as_ref().expect("java still injected");
    assert!(a.sidecar.is_none());
    assert_eq!(a.injected.len(), 1);
    assert!(
        o.warnings.iter().any(|w| w.contains("namespace")
            && w.contains("mode: sidecar")
            && w.contains("nothing injected")),
        "{:?}",
        o.warnings
    );
    let doc = patched(&p, &o);
    assert!(
        doc["spec"]["containers"]
            .as_array()
            .is_some_and(|c| c.len() == 1),
        "no otc-container"
    );
}

fn ns_meta(labels: &[(&str, &str)]) -> NamespaceMeta {
    NamespaceMeta {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: BTreeMap::new(),
    }
}

fn run_with(p: &Value, config: &Config, view: &StaticView, version: Option<(u32, u32)>) -> Outcome {
    let pod: Pod = serde_json::from_value(p.clone()).expect("pod");
    let ctx = Context {
        namespace: NS,
        config,
        view,
        owner_hint: None,
        server_version: version,
    };
    run(&pod, &ctx)
}

fn outcome(p: &Value) -> Outcome {
    run_with(p, &template_config(), &StaticView::new(), None)
}

fn patched(p: &Value, o: &Outcome) -> Value {
    let mut doc = p.clone();
    if let Some(patch) = o.patch() {
        json_patch::patch(&mut doc, &patch.to_json_patch().expect("patch").0)
            .expect("patch applies");
    }
    doc
}

/// A pod with the given annotations and containers.
fn pod_with(annotations: Value, containers: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-0", "annotations": annotations},
        "spec": {"containers": containers}
    })
}

fn app() -> Value {
    json!({"name": "app", "image": "registry.example/checkout:1.2.3"})
}

fn find<'a>(doc: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    doc["spec"][list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
}

fn env_value(c: &Value, name: &str) -> Option<String> {
    let env: Vec<EnvVar> =
        serde_json::from_value(c.get("env").cloned().unwrap_or(json!([]))).expect("env");
    env.into_iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value)
}

fn restricted() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

fn common_env() -> Vec<Value> {
    vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "GOMEMLIMIT", "valueFrom": {"resourceFieldRef": {"containerName": "otc-container", "resource": "limits.memory"}}}),
        json!({"name": "GOMAXPROCS", "valueFrom": {"resourceFieldRef": {"containerName": "otc-container", "resource": "limits.cpu"}}}),
    ]
}

fn ports() -> Value {
    json!([
        {"name": "otlp-grpc", "containerPort": 4317, "protocol": "TCP"},
        {"name": "otlp-http", "containerPort": 4318, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8888, "protocol": "TCP"}
    ])
}

fn default_resources() -> Value {
    json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}})
}

fn health(period: i32, failures: i32) -> Value {
    json!({"httpGet": {"path": "/", "port": 13133}, "periodSeconds": period, "failureThreshold": failures})
}

// === sidecar ===

#[test]
fn sidecar_container_is_exact_in_both_modes_and_sources() {
    let mut env = common_env();
    env.push(
        json!({"name": "OTEL_CONFIG", "value": builtin_config("otel-collector.monitoring:4317")}),
    );
    let builtin_native = json!({
        "name": "otc-container",
        "image": crate::config::DEFAULT_COLLECTOR_IMAGE,
        "args": ["--config=env:OTEL_CONFIG"],
        "env": env,
        "ports": ports(),
        "resources": default_resources(),
        "securityContext": restricted(),
        "livenessProbe": health(10, 3),
        "readinessProbe": health(10, 3),
        "startupProbe": health(1, 30),
        "restartPolicy": "Always"
    });
    let mut builtin_regular = builtin_native.clone();
    let obj = builtin_regular.as_object_mut().expect("object");
    obj.remove("restartPolicy");
    obj.remove("startupProbe");
    let configmap_regular = json!({
        "name": "otc-container",
        "image": crate::config::DEFAULT_COLLECTOR_IMAGE,
        "args": ["--config=/conf/collector.yaml"],
        "env": common_env(),
        "ports": ports(),
        "resources": default_resources(),
        "securityContext": restricted(),
        "volumeMounts": [{"name": "otc-container-config", "mountPath": "/conf", "readOnly": true}]
    });
    // (annotation value, native config, server version, list it lands in, expected container)
    let rows: Vec<(&str, NativeSidecar, Option<(u32, u32)>, &str, Value)> = vec![
        (
            "true",
            NativeSidecar::On,
            None,
            "initContainers",
            builtin_native.clone(),
        ),
        (
            "true",
            NativeSidecar::Auto,
            None,
            "initContainers",
            builtin_native.clone(),
        ),
        (
            "true",
            NativeSidecar::Auto,
            Some((1, 29)),
            "initContainers",
            builtin_native.clone(),
        ),
        (
            "true",
            NativeSidecar::Auto,
            Some((1, 28)),
            "containers",
            builtin_regular.clone(),
        ),
        (
            "true",
            NativeSidecar::Off,
            Some((1, 31)),
            "containers",
            builtin_regular,
        ),
        // The config's template from ConfigMap my-col (the annotation says "true").
        (
            "my-col",
            NativeSidecar::Off,
            None,
            "containers",
            configmap_regular,
        ),
    ];
    for (value, native, version, list, want) in rows {
        let mut config = template_config();
        config.sidecar.native = native;
        let annotation = if value == "true" {
            "true"
        } else {
            config.sidecar.config = Some(CollectorConfigSource {
                config_map: Some(value.into()),
                inline: None,
            });
            "true"
        };
        let p = pod_with(json!({SC: annotation}), json!([app()]));
        let o = run_with(&p, &config, &StaticView::new(), version);
        let doc = patched(&p, &o);
        let got = find(&doc, list, "otc-container").unwrap_or_else(|| {
            panic!("{value} {native:?} {version:?}: no sidecar in {list}: {doc}")
        });
        assert_eq!(got, &want, "{value} {native:?} {version:?}");
        let other = if list == "containers" {
            "initContainers"
        } else {
            "containers"
        };
        assert!(find(&doc, other, "otc-container").is_none());
        if value != "true" {
            assert_eq!(
                doc["spec"]["volumes"],
                json!([{"name": "otc-container-config", "configMap": {"name": "my-col"}}])
            );
        }
        // The app is untouched apart from nothing: no language was asked for.
        assert_eq!(doc["spec"]["containers"][0], app());
    }
}

#[test]
fn sidecar_config_sources_and_resources_from_config() {
    let mut config = template_config();
    config.sidecar.native = NativeSidecar::Off;
    config.sidecar.image = "otel/col:1".into();
    config.sidecar.resources = Some(
        serde_json::from_value(json!({"limits": {"cpu": "1", "memory": "1Gi"}})).expect("res"),
    );
    // A configured ConfigMap is used for "true".
    config.sidecar.config = Some(CollectorConfigSource {
        config_map: Some("team-col".into()),
        inline: None,
    });
    let p = pod_with(json!({SC: "true"}), json!([app()]));
    let doc = patched(&p, &run_with(&p, &config, &StaticView::new(), None));
    let c = find(&doc, "containers", "otc-container").expect("sidecar");
    assert_eq!(c["image"], "otel/col:1");
    assert_eq!(c["args"], json!(["--config=/conf/collector.yaml"]));
    assert_eq!(doc["spec"]["volumes"][0]["configMap"]["name"], "team-col");
    // Configured limits, default requests.
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "1", "memory": "1Gi"})
    );
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "50m", "memory": "64Mi"})
    );
    // Inline: OTEL_CONFIG, probes only when it enables health_check.
    for (inline, probes) in [
        (
            "receivers: {otlp: {}}\nextensions: {health_check: {}}\n",
            true,
        ),
        ("receivers: {otlp: {}}\n", false),
    ] {
        config.sidecar.config = Some(CollectorConfigSource {
            config_map: None,
            inline: Some(inline.into()),
        });
        let doc = patched(&p, &run_with(&p, &config, &StaticView::new(), None));
        let c = find(&doc, "containers", "otc-container").expect("sidecar");
        assert_eq!(env_value(c, "OTEL_CONFIG").as_deref(), Some(inline));
        assert_eq!(c["args"], json!(["--config=env:OTEL_CONFIG"]));
        assert_eq!(c.get("livenessProbe").is_some(), probes, "{inline}");
        assert!(doc["spec"].get("volumes").is_none());
    }
}

#[test]
fn builtin_config_has_the_pipeline_and_gateway() {
    let y: Value = serde_yaml_ng::from_str(&builtin_config("gw.monitoring:4317")).expect("yaml");
    assert_eq!(y["exporters"]["otlp"]["endpoint"], "gw.monitoring:4317");
    assert_eq!(y["exporters"]["otlp"]["tls"]["insecure"], true);
    assert_eq!(
        y["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        "localhost:4317"
    );
    assert_eq!(
        y["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        "localhost:4318"
    );
    for p in ["traces", "metrics", "logs"] {
        assert_eq!(
            y["service"]["pipelines"][p]["processors"],
            json!(["memory_limiter", "batch"])
        );
    }
    assert_eq!(y["service"]["extensions"], json!(["health_check"]));
    let tls: Value = serde_yaml_ng::from_str(&builtin_config("https://gw:4317")).expect("yaml");
    assert_eq!(tls["exporters"]["otlp"]["tls"]["insecure"], false);
}

/// The app's endpoint points at the sidecar with the port of the SDK's protocol.
#[test]
fn endpoint_is_rewritten_per_language_protocol() {
    let go = "instrumentation.opentelemetry.io/otel-go-auto-target-exe";
    // (annotations, container with the SDK env, extra app env, expected endpoint)
    let rows: Vec<(Value, &str, Value, &str)> = vec![
        (
            json!({"instrumentation.opentelemetry.io/inject-java": "true"}),
            "app",
            json!([]),
            "http://localhost:4318",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-nodejs": "true"}),
            "app",
            json!([]),
            "http://localhost:4318",
        ),
        (
            json!({PY: "true"}),
            "app",
            json!([]),
            "http://localhost:4318",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-dotnet": "true"}),
            "app",
            json!([]),
            "http://localhost:4318",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-go": "true", go: "/app"}),
            "opentelemetry-auto-instrumentation",
            json!([]),
            "http://localhost:4318",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-sdk": "true"}),
            "app",
            json!([]),
            "http://localhost:4318",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-apache-httpd": "true"}),
            "app",
            json!([]),
            "http://localhost:4317",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-nginx": "true"}),
            "app",
            json!([]),
            "http://localhost:4317",
        ),
        // The user's protocol decides the port.
        (
            json!({PY: "true"}),
            "app",
            json!([{"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "grpc"}]),
            "http://localhost:4317",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-sdk": "true"}),
            "app",
            json!([{"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "http/json"}]),
            "http://localhost:4318",
        ),
        // Never override a value the user set.
        (
            json!({PY: "true"}),
            "app",
            json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://mine:4318"}]),
            "http://mine:4318",
        ),
    ];
    for (mut ann, target, env, want) in rows {
        ann[SC] = json!("true");
        let mut c = app();
        c["env"] = env;
        let p = pod_with(ann.clone(), json!([c]));
        let mut config = template_config();
        config.languages = crate::config::LanguageSwitches::all();
        let o = run_with(&p, &config, &StaticView::new(), None);
        let doc = patched(&p, &o);
        assert!(
            o.applied.as_ref().is_some_and(|a| a.sidecar.is_some()),
            "{ann}"
        );
        let c = find(&doc, "containers", target).expect("target");
        assert_eq!(
            env_value(c, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            Some(want),
            "{ann}"
        );
        // Without the sidecar the Instrumentation's endpoint is used.
        ann.as_object_mut().expect("obj").remove(SC);
        let p = pod_with(ann.clone(), json!([app()]));
        let doc = patched(&p, &run_with(&p, &config, &StaticView::new(), None));
        let c = find(&doc, "containers", target).expect("target");
        let ep = env_value(c, "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert!(
            !ep.as_deref().unwrap_or("").contains("localhost"),
            "{ann}: {ep:?}"
        );
    }
}

/// What a row of [`sidecar_precedence_rows`] expects.
enum Want {
    /// Sidecar injected with this status config.
    Injected(&'static str),
    /// Not injected; the pod is skipped with this reason.
    PodSkip(SkipReason),
    /// Not injected; the sidecar feature failed with this reason.
    Failed(SkipReason),
    /// Not injected; declined by `false` while something else is injected.
    Declined,
}

/// Opt-in precedence rows 14–16 and 19 for the sidecar annotation.
#[rstest]
#[case::pod_true(0, json!({SC: "true"}), vec![], json!([app()]), Want::Injected("builtin"))]
#[case::namespace_true(1, json!({}), vec![(SC, "true")], json!([app()]), Want::Injected("builtin"))]
#[case::pod_names_a_collector(2, json!({SC: "otel/mine"}), vec![], json!([app()]), Want::Injected("collector/otel/mine"))]
// Not in the pod's namespace: not found.
#[case::collector_in_the_pod_namespace_not_found(3, json!({SC: "shop/mine"}), vec![], json!([app()]), Want::Failed(SkipReason::InvalidAnnotation))]
#[case::pod_true_namespace_name_the_namespace_refines(4, json!({SC: "true"}), vec![(SC, "otel/ns-col")], json!([app()]), Want::Injected("collector/otel/ns-col"))]
#[case::pod_name_wins_over_namespace_true(5, json!({SC: "otel/pod-col"}), vec![(SC, "true")], json!([app()]), Want::Injected("collector/otel/pod-col"))]
#[case::pod_false_wins_over_namespace_true(6, json!({SC: "false"}), vec![(SC, "true")], json!([app()]), Want::PodSkip(SkipReason::OptedOut))]
#[case::pod_true_wins_over_namespace_false(7, json!({SC: "true"}), vec![(SC, "false")], json!([app()]), Want::Injected("builtin"))]
#[case::pod_false_declines_while_python_injects(8, json!({SC: "false", PY: "true"}), vec![], json!([app()]), Want::Declined)]
#[case::unknown_collector_namespace(9, json!({SC: "other/mine"}), vec![], json!([app()]), Want::Failed(SkipReason::InvalidAnnotation))]
#[case::invalid_name(10, json!({SC: "Not_A_Name"}), vec![], json!([app()]), Want::Failed(SkipReason::InvalidAnnotation))]
#[case::existing_otc_container(11, json!({SC: "true"}), vec![], json!([app(), {"name": "otc-container", "image": "mine"}]), Want::Failed(SkipReason::AlreadyInjected))]
#[case::row_19_a_rule_when_the_namespace(12, json!({}), vec![("otel-admission.io/inject", "enabled")], json!([app()]), Want::Injected("builtin"))]
#[case::nothing_set(13, json!({}), vec![], json!([app()]), Want::PodSkip(SkipReason::NotSelected))]
#[case::the_rule_does_not_override_the_pod(14, json!({SC: "false"}), vec![("otel-admission.io/inject", "enabled")], json!([app()]), Want::PodSkip(SkipReason::OptedOut))]
fn sidecar_precedence_rows(
    #[case] i: usize,
    #[case] ann: Value,
    #[case] labels: Vec<(&str, &str)>,
    #[case] containers: Value,
    #[case] want: Want,
) {
    let rule = Rule {
        name: "all-sidecars".into(),
        namespace_selector: None,
        pod_selector: None,
        inject: RuleInject {
            sidecar: true,
            ..RuleInject::default()
        },
        instrumentation: None,
    };
    // (pod annotations, namespace labels, pod containers, want)
    let mut config = template_config();
    config.rules.push(rule);
    // `<ns>/<name>` names a sidecar-mode collector, here in a central
    // namespace (so `true` in the pod's own namespace finds none).
    let collector = |name: &str| {
        crate::otelcol::Collector::from_object(
            &json!({"metadata": {"name": name, "namespace": "otel"}, "spec": {"mode": "sidecar"}}),
            NS,
        )
        .expect("collector")
    };
    let mut view = StaticView::new().with_namespace(NS, ns_meta(&labels));
    for name in ["mine", "ns-col", "pod-col"] {
        view = view.with_collector(collector(name));
    }
    let p = pod_with(ann.clone(), containers.clone());
    let o = run_with(&p, &config, &view, None);
    let doc = patched(&p, &o);
    let sidecars = doc["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .chain(doc["spec"]["containers"].as_array())
        .flatten()
        .filter(|c| c["name"] == "otc-container")
        .count();
    let had = usize::from(containers.to_string().contains("otc-container"));
    match want {
        Want::Injected(cfg) => {
            let a = o
                .applied
                .as_ref()
                .unwrap_or_else(|| panic!("row {i}: {:?}", o.skip));
            assert_eq!(
                a.sidecar.as_ref().map(|s| s.config.as_str()),
                Some(cfg),
                "row {i}"
            );
            assert_eq!(sidecars, 1, "row {i}");
        }
        Want::PodSkip(r) => {
            assert_eq!(o.skip.as_ref().map(|s| s.reason), Some(r), "row {i}");
            assert_eq!(sidecars, had, "row {i}");
        }
        Want::Failed(r) => {
            let a = o.applied.as_ref().expect("applied");
            assert!(a.sidecar.is_none(), "row {i}");
            assert!(
                a.failures
                    .iter()
                    .any(|f| f.feature == Feature::Sidecar && f.reason == r),
                "row {i}: {:?}",
                a.failures
            );
            // Nothing the user wrote is removed; no second sidecar.
            assert_eq!(sidecars, had, "row {i}");
            assert!(o.warnings.iter().any(|w| w.contains("sidecar")), "row {i}");
        }
        Want::Declined => {
            let a = o.applied.as_ref().expect("applied");
            assert!(a.sidecar.is_none(), "row {i}");
            assert_eq!(sidecars, 0, "row {i}");
            assert!(!a.injected.is_empty(), "row {i}");
        }
    }
}

/// `true` takes the namespace's only sidecar-mode collector; two are
/// ambiguous; a deployment-mode one is not a sidecar (named: an error; for
/// `true`: not counted, so the template applies).
#[test]
fn true_picks_the_only_sidecar_mode_collector() {
    let col = |name: &str, mode: &str| {
        crate::otelcol::Collector::from_object(
            &json!({"metadata": {"name": name, "namespace": NS}, "spec": {"mode": mode,
                "config": {"receivers": {"otlp": {"protocols": {"grpc": {}}}}, "exporters": {"debug": {}},
                    "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}}}}),
            NS,
        )
        .expect("collector")
    };
    let p = pod_with(json!({SC: "true"}), json!([app()]));
    let one = StaticView::new()
        .with_collector(col("agent", "sidecar"))
        .with_collector(col("gateway", "deployment"));
    let o = run_with(&p, &Config::default(), &one, None);
    let a = o.applied.as_ref().expect("applied");
    assert_eq!(
        a.sidecar.as_ref().map(|s| s.config.as_str()),
        Some("collector/shop/agent")
    );
    let doc = patched(&p, &o);
    assert_eq!(
        doc["metadata"]["labels"]["sidecar.opentelemetry.io/injected"],
        "shop.agent"
    );
    let side = find(&doc, "initContainers", "otc-container").expect("native sidecar");
    assert_eq!(side["args"], json!(["--config=env:OTEL_CONFIG"]));
    assert_eq!(side["restartPolicy"], "Always");

    let two = one.clone().with_collector(col("agent-2", "sidecar"));
    let o = run_with(&p, &Config::default(), &two, None);
    let a = o.applied.as_ref().expect("applied");
    assert!(a.sidecar.is_none());
    assert!(
        a.failures
            .iter()
            .any(|f| f.reason == SkipReason::AmbiguousInstrumentation
                && f.message.contains("agent, agent-2"))
    );

    let named = pod_with(json!({SC: "gateway"}), json!([app()]));
    let o = run_with(&named, &Config::default(), &one, None);
    let a = o.applied.as_ref().expect("applied");
    assert!(
        a.failures.iter().any(|f| f.message.contains("not sidecar")),
        "{:?}",
        a.failures
    );
}

#[test]
fn false_removes_nothing_the_user_wrote() {
    let p = pod_with(
        json!({SC: "false", PY: "true"}),
        json!([app(), {"name": "otc-container", "image": "mine"}]),
    );
    let o = outcome(&p);
    let doc = patched(&p, &o);
    assert_eq!(
        find(&doc, "containers", "otc-container"),
        Some(&json!({"name": "otc-container", "image": "mine"}))
    );
    let patch = serde_json::to_string(o.patch().expect("patch")).expect("json");
    assert!(!patch.contains("\"remove\""), "{patch}");
}

// === probes ===

fn health_port() -> Value {
    json!([{"name": "health", "containerPort": 8080}])
}

fn want_probe(path: &str, failures: i32, port: i32) -> Value {
    json!({"httpGet": {"path": path, "port": port}, "initialDelaySeconds": 0,
        "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": failures})
}

#[test]
fn probes_are_added_only_where_missing_and_skips_warn() {
    let existing = json!({"exec": {"command": ["true"]}});
    // (containers, config port, container -> expected [startup, liveness, readiness] (None: absent), warning substring)
    let rows: Vec<(
        Value,
        IntOrString,
        Vec<(&str, [Option<Value>; 3])>,
        Option<&str>,
    )> = vec![
        (
            json!([{"name": "app", "image": "x", "ports": health_port()}]),
            IntOrString::String("health".into()),
            vec![(
                "app",
                [
                    Some(want_probe("/health/startup", 30, 8080)),
                    Some(want_probe("/health/live", 3, 8080)),
                    Some(want_probe("/health/ready", 3, 8080)),
                ],
            )],
            None,
        ),
        // An existing liveness probe is kept; only the others are added.
        (
            json!([{"name": "app", "image": "x", "ports": health_port(), "livenessProbe": existing}]),
            IntOrString::String("health".into()),
            vec![(
                "app",
                [
                    Some(want_probe("/health/startup", 30, 8080)),
                    Some(existing.clone()),
                    Some(want_probe("/health/ready", 3, 8080)),
                ],
            )],
            None,
        ),
        // All three present: nothing.
        (
            json!([{"name": "app", "image": "x", "ports": health_port(), "livenessProbe": existing,
                "readinessProbe": existing, "startupProbe": existing}]),
            IntOrString::String("health".into()),
            vec![(
                "app",
                [
                    Some(existing.clone()),
                    Some(existing.clone()),
                    Some(existing.clone()),
                ],
            )],
            Some("already has all three"),
        ),
        // Port not exposed: skipped with a warning.
        (
            json!([{"name": "app", "image": "x", "ports": [{"name": "http", "containerPort": 80}]}]),
            IntOrString::String("health".into()),
            vec![("app", [None, None, None])],
            Some("container app does not expose port health"),
        ),
        (
            json!([{"name": "app", "image": "x"}]),
            IntOrString::Int(9000),
            vec![("app", [None, None, None])],
            Some("does not expose port 9000"),
        ),
        // A numeric port.
        (
            json!([{"name": "app", "image": "x", "ports": [{"containerPort": 9000}]}]),
            IntOrString::Int(9000),
            vec![(
                "app",
                [
                    Some(want_probe("/health/startup", 30, 9000)),
                    Some(want_probe("/health/live", 3, 9000)),
                    Some(want_probe("/health/ready", 3, 9000)),
                ],
            )],
            None,
        ),
        // Known sidecars and skipContainers never get probes, even with the port.
        (
            json!([
                {"name": "istio-proxy", "image": "istio", "ports": health_port()},
                {"name": "side", "image": "s", "ports": health_port()},
                {"name": "app", "image": "x", "ports": [{"name": "health", "containerPort": 8081}]}
            ]),
            IntOrString::String("health".into()),
            vec![
                ("istio-proxy", [None, None, None]),
                ("side", [None, None, None]),
                (
                    "app",
                    [
                        Some(want_probe("/health/startup", 30, 8081)),
                        Some(want_probe("/health/live", 3, 8081)),
                        Some(want_probe("/health/ready", 3, 8081)),
                    ],
                ),
            ],
            None,
        ),
    ];
    for (i, (containers, port, want, warning)) in rows.into_iter().enumerate() {
        let mut config = template_config();
        config.probes.port = port;
        config.skip_containers = vec!["side".into()];
        let p = pod_with(json!({"otel-admission.io/probes": "true"}), containers);
        let o = run_with(&p, &config, &StaticView::new(), None);
        let doc = patched(&p, &o);
        for (name, kinds) in want {
            let c = find(&doc, "containers", name).expect("container");
            for (field, w) in ["startupProbe", "livenessProbe", "readinessProbe"]
                .iter()
                .zip(kinds)
            {
                assert_eq!(c.get(*field), w.as_ref(), "row {i}: {name}.{field}");
            }
        }
        match warning {
            Some(w) => assert!(
                o.warnings.iter().any(|x| x.contains(w)),
                "row {i}: {:?}",
                o.warnings
            ),
            None => assert!(
                !o.warnings.iter().any(|x| x.contains("probes:")),
                "row {i}: {:?}",
                o.warnings
            ),
        }
    }
}

#[test]
fn probes_skip_the_injected_sidecar_and_init_containers() {
    let p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {SC: "true", "otel-admission.io/probes": "true"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "m", "ports": health_port()}],
            "containers": [{"name": "app", "image": "x", "ports": health_port()}]
        }
    });
    let mut config = template_config();
    config.sidecar.native = NativeSidecar::Off;
    let o = run_with(&p, &config, &StaticView::new(), None);
    let doc = patched(&p, &o);
    let a = o.applied.as_ref().expect("applied");
    assert_eq!(a.probes.keys().collect::<Vec<_>>(), vec!["app"]);
    assert!(
        find(&doc, "initContainers", "migrate")
            .expect("init")
            .get("livenessProbe")
            .is_none()
    );
    // The collector keeps its own health_check probes.
    let sc = find(&doc, "containers", "otc-container").expect("sidecar");
    assert_eq!(sc["livenessProbe"]["httpGet"]["port"], 13133);
}

#[test]
fn invalid_switch_values_are_invalid_annotations() {
    for key in ["otel-admission.io/probes", "otel-admission.io/istio"] {
        let p = pod_with(json!({key: "yes"}), json!([app()]));
        let o = outcome(&p);
        let a = o.applied.as_ref().expect("applied");
        assert_eq!(a.failures[0].reason, SkipReason::InvalidAnnotation, "{key}");
        let status = patched(&p, &o)["metadata"]["annotations"]["otel-admission.io/status"]
            .as_str()
            .map(String::from)
            .expect("status");
        assert!(status.contains("invalid_annotation"), "{status}");
    }
}

// === annotations ===

#[test]
fn annotations_merge_and_never_overwrite() {
    // (pod annotations, pod labels, namespace labels, containers, sidecar, expected annotations subset, absent keys, warning)
    let rows: Vec<(
        Value,
        Value,
        Vec<(&str, &str)>,
        Value,
        bool,
        Value,
        Vec<&str>,
        Option<&str>,
    )> = vec![
        // Sidecar, Istio namespace, no existing list.
        (
            json!({}),
            json!({}),
            vec![("istio-injection", "enabled")],
            json!([app()]),
            true,
            json!({"prometheus.io/scrape": "true", "prometheus.io/port": "8888", "prometheus.io/path": "/metrics", EXCL: "8888"}),
            vec![],
            None,
        ),
        // Existing list with spaces: trimmed, order kept, appended.
        (
            json!({EXCL: "15020, 9090"}),
            json!({}),
            vec![("istio-injection", "enabled")],
            json!([app()]),
            true,
            json!({EXCL: "15020,9090,8888"}),
            vec![],
            None,
        ),
        // Empty entries dropped.
        (
            json!({EXCL: "9090,,8080,"}),
            json!({}),
            vec![("istio-injection", "enabled")],
            json!([app()]),
            true,
            json!({EXCL: "9090,8080,8888"}),
            vec![],
            None,
        ),
        // Already listed: left exactly as written.
        (
            json!({EXCL: " 8888 ,9090"}),
            json!({}),
            vec![("istio-injection", "enabled")],
            json!([app()]),
            true,
            json!({EXCL: " 8888 ,9090"}),
            vec![],
            None,
        ),
        // Existing Prometheus annotations win, with a warning for another port.
        (
            json!({"prometheus.io/scrape": "false", "prometheus.io/port": "9102", "prometheus.io/path": "/m"}),
            json!({}),
            vec![],
            json!([app()]),
            true,
            json!({"prometheus.io/scrape": "false", "prometheus.io/port": "9102", "prometheus.io/path": "/m"}),
            vec![EXCL],
            Some("keeping the pod's prometheus.io/port"),
        ),
        // Not in a mesh: no Istio key.
        (
            json!({}),
            json!({}),
            vec![],
            json!([app()]),
            true,
            json!({"prometheus.io/port": "8888"}),
            vec![EXCL],
            None,
        ),
        // Pod label puts it in the mesh.
        (
            json!({}),
            json!({"sidecar.istio.io/inject": "true"}),
            vec![],
            json!([app()]),
            true,
            json!({EXCL: "8888"}),
            vec![],
            None,
        ),
        // Pod annotation false takes it out of an enabled namespace.
        (
            json!({"sidecar.istio.io/inject": "false"}),
            json!({}),
            vec![("istio-injection", "enabled")],
            json!([app()]),
            true,
            json!({"prometheus.io/port": "8888"}),
            vec![EXCL],
            None,
        ),
        // No sidecar: the container port named metrics.
        (
            json!({}),
            json!({}),
            vec![("istio-injection", "enabled")],
            json!([{"name": "app", "image": "x", "ports": [{"name": "metrics", "containerPort": 9090}]}]),
            false,
            json!({"prometheus.io/port": "9090", EXCL: "9090"}),
            vec![],
            None,
        ),
        // Neither: skipped with a warning.
        (
            json!({}),
            json!({}),
            vec![("istio-injection", "enabled")],
            json!([app()]),
            false,
            json!({}),
            vec!["prometheus.io/scrape", EXCL],
            Some("no metrics port"),
        ),
    ];
    for (i, (mut ann, labels, ns_labels, containers, sidecar, want, absent, warning)) in
        rows.into_iter().enumerate()
    {
        ann["otel-admission.io/istio"] = json!("true");
        if sidecar {
            ann[SC] = json!("true");
        }
        let mut p = pod_with(ann, containers);
        p["metadata"]["labels"] = labels;
        let view = StaticView::new().with_namespace(NS, ns_meta(&ns_labels));
        let o = run_with(&p, &template_config(), &view, None);
        let doc = patched(&p, &o);
        let got = &doc["metadata"]["annotations"];
        for (k, v) in want.as_object().expect("obj") {
            assert_eq!(&got[k], v, "row {i}: {k}");
        }
        for k in absent {
            assert!(got.get(k).is_none(), "row {i}: {k} = {}", got[k]);
        }
        match warning {
            Some(w) => assert!(
                o.warnings.iter().any(|x| x.contains(w)),
                "row {i}: {:?}",
                o.warnings
            ),
            None => assert!(
                !o.warnings.iter().any(|x| x.contains("annotations:")),
                "row {i}: {:?}",
                o.warnings
            ),
        }
    }
}

#[test]
fn merge_ports_table() {
    use crate::inject::annotations::merge_ports;
    for (existing, want) in [
        (None, Some("8888")),
        (Some(""), Some("8888")),
        (Some("15090"), Some("15090,8888")),
        (Some(" a , b "), Some("a,b,8888")),
        (Some("8888"), None),
        (Some("1, 8888"), None),
        (Some("88888"), Some("88888,8888")),
    ] {
        assert_eq!(merge_ports(existing, 8888).as_deref(), want, "{existing:?}");
    }
}

// === status, metrics, idempotency ===

#[test]
fn status_metrics_and_second_run_cover_every_feature() {
    let p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {PY: "true", SC: "true",
            "otel-admission.io/probes": "true", "otel-admission.io/istio": "true"}},
        "spec": {"containers": [{"name": "app", "image": "python:3.12", "ports": health_port()}]}
    });
    let view = StaticView::new().with_namespace(NS, ns_meta(&[("istio-injection", "enabled")]));
    let o = run_with(&p, &template_config(), &view, Some((1, 30)));
    let doc = patched(&p, &o);
    let status: Value = serde_json::from_str(
        doc["metadata"]["annotations"]["otel-admission.io/status"]
            .as_str()
            .expect("status"),
    )
    .expect("json");
    assert_eq!(
        status["sidecar"],
        json!({"mode": "native", "config": "builtin"})
    );
    assert_eq!(
        status["probes"],
        json!({"app": ["startup", "liveness", "readiness"]})
    );
    assert_eq!(
        status["annotations"],
        json!([
            "prometheus.io/scrape",
            "prometheus.io/port",
            "prometheus.io/path",
            EXCL
        ])
    );
    assert_eq!(status["languages"], json!({"python": ["app"]}));
    // Metrics: `mutate::tests` counts the pod features.
    // A second pass changes nothing.
    let again = run_with(&doc, &template_config(), &view, Some((1, 30)));
    assert!(again.patch().is_none());
    // The injected pod has unique container names.
    let mut names: Vec<&str> = doc["spec"]["containers"]
        .as_array()
        .into_iter()
        .chain(doc["spec"]["initContainers"].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n);
}

#[test]
fn server_versions_parse_with_provider_suffixes() {
    use crate::inject::context::parse_server_version;
    for (major, minor, want) in [
        ("1", "29", Some((1, 29))),
        ("1", "28+", Some((1, 28))),
        ("1", "31-gke.100", Some((1, 31))),
        ("", "29", None),
        ("1", "x", None),
    ] {
        assert_eq!(parse_server_version(major, minor), want, "{major}.{minor}");
    }
}

/// Probes and annotations follow the same pod/namespace precedence as the
/// languages, then the rule.
#[rstest]
#[case::pod_true(0, json!({PR: "true"}), vec![], true)]
#[case::namespace_true(1, json!({}), vec![(PR, "true")], true)]
#[case::pod_false_wins_over_namespace_true(2, json!({PR: "false"}), vec![(PR, "true")], false)]
#[case::pod_true_wins_over_namespace_false(3, json!({PR: "true"}), vec![(PR, "false")], true)]
#[case::rule_in_an_enabled_namespace(4, json!({}), vec![("otel-admission.io/inject", "enabled")], true)]
#[case::pod_false_wins_over_the_rule(5, json!({PR: "false"}), vec![("otel-admission.io/inject", "enabled")], false)]
#[case::nothing_set(6, json!({}), vec![], false)]
fn probes_and_annotations_switch_precedence(
    #[case] i: usize,
    #[case] ann: Value,
    #[case] labels: Vec<(&str, &str)>,
    #[case] want: bool,
) {
    let containers = json!([{"name": "app", "image": "x", "ports": health_port()}]);
    let rule = Rule {
        name: "probes-everywhere".into(),
        namespace_selector: None,
        pod_selector: None,
        inject: RuleInject {
            probes: true,
            ..RuleInject::default()
        },
        instrumentation: None,
    };
    // (pod annotations, namespace labels, probes added?)
    let mut config = template_config();
    config.rules.push(rule);
    let view = StaticView::new().with_namespace(NS, ns_meta(&labels));
    let p = pod_with(ann, containers.clone());
    let o = run_with(&p, &config, &view, None);
    let doc = patched(&p, &o);
    assert_eq!(
        doc["spec"]["containers"][0].get("livenessProbe").is_some(),
        want,
        "row {i}"
    );
}
