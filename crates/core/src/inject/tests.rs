//! Table-driven tests of the injection core: decide, apply, patch, Mutate.
#![allow(clippy::field_reassign_with_default, clippy::type_complexity)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Pod};
use rstest::rstest;
use serde_json::{Value, json};

use crate::config::{Config, FailureMode, Rule, RuleInject};
use crate::inject::cluster_view::{NamespaceMeta, StaticView};
use crate::inject::outcome::{Outcome, run};
use crate::inject::plan::{Decision, Owner, SkipReason};
use crate::inject::{context::Context, decide::decide};
use crate::instrumentation::Instrumentation;
use crate::language::{Language, LanguageChoice};

const NS: &str = "shop";
const PY: &str = "instrumentation.opentelemetry.io/inject-python";

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).expect("pod")
}

/// A pod with one `app` container and the given annotations and labels.
fn simple(annotations: Value, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-0", "annotations": annotations, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.example/checkout:1.2.3"}]}
    })
}

fn inst(ns: &str, name: &str, spec: Value) -> Instrumentation {
    serde_json::from_value(json!({
        "apiVersion": "opentelemetry.io/v1alpha1", "kind": "Instrumentation",
        "metadata": {"name": name, "namespace": ns}, "spec": spec
    }))
    .expect("instrumentation")
}

fn ns_meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> NamespaceMeta {
    let m = |p: &[(&str, &str)]| -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    NamespaceMeta {
        labels: m(labels),
        annotations: m(annotations),
    }
}

/// The default config with every `languages` switch on (Go and nginx are
/// off by default, as the Operator's flags): for the tests of those agents.
fn all_languages() -> Config {
    let mut c = Config::default();
    c.languages = crate::config::LanguageSwitches::all();
    c
}

fn outcome(p: &Value, config: &Config, view: &StaticView) -> Outcome {
    let ctx = Context {
        namespace: NS,
        config,
        view,
        owner_hint: None,
        server_version: None,
    };
    run(&pod(p.clone()), &ctx)
}

/// Applies the outcome's patch to the pod JSON, checking it applies cleanly.
fn patched(p: &Value, o: &Outcome) -> Value {
    let mut doc = p.clone();
    if let Some(patch) = o.patch() {
        json_patch::patch(&mut doc, &patch.to_json_patch().expect("patch").0)
            .expect("patch applies");
    }
    doc
}

fn container<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .expect("container")
}

/// `NAME=value`, or `NAME<-fieldPath`, or `NAME<-valueFrom`.
fn env_lines(c: &Value) -> Vec<String> {
    let env: Vec<EnvVar> =
        serde_json::from_value(c.get("env").cloned().unwrap_or(json!([]))).expect("env");
    env.iter()
        .map(|e| match (&e.value, &e.value_from) {
            (_, Some(src)) => match &src.field_ref {
                Some(f) => format!("{}<-{}", e.name, f.field_path),
                None => format!("{}<-valueFrom", e.name),
            },
            (v, None) => format!("{}={}", e.name, v.as_deref().unwrap_or("")),
        })
        .collect()
}

/// Every `$(VAR)` in a value names a variable defined earlier in the list.
fn assert_refs_defined_before(c: &Value) {
    let env: Vec<EnvVar> =
        serde_json::from_value(c.get("env").cloned().unwrap_or(json!([]))).expect("env");
    for (i, e) in env.iter().enumerate() {
        let v = e.value.as_deref().unwrap_or("");
        let mut rest = v;
        while let Some(start) = rest.find("$(") {
            let after = &rest[start + 2..];
            let end = after.find(')').expect("closing paren");
            let var = &after[..end];
            assert!(
                env[..i].iter().any(|d| d.name == var),
                "{} uses $({var}) before it is defined",
                e.name
            );
            rest = &after[end..];
        }
    }
}

const RA_APP: &str = "OTEL_RESOURCE_ATTRIBUTES=k8s.container.name=app,k8s.namespace.name=shop,\
k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),\
service.instance.id=shop.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).app,service.namespace=shop,service.version=1.2.3";

/// The common tail every agent language adds after its own variables.
/// The common SDK tail; only Python's language step sets the protocol, as
/// in the operator. `app.kubernetes.io/name` is read only with
/// `useLabelsForResourceAttributes`, so a bare pod is named after itself.
fn common_tail(service: &str) -> Vec<String> {
    let mut v = vec![format!("OTEL_SERVICE_NAME={service}")];
    v.push("OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector.monitoring:4318".into());
    v.extend([
        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME<-metadata.name".to_string(),
        "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME<-spec.nodeName".into(),
        "OTEL_PROPAGATORS=tracecontext,baggage".into(),
        RA_APP.into(),
    ]);
    v
}

fn head() -> Vec<String> {
    vec![
        "OTEL_NODE_IP<-status.hostIP".into(),
        "OTEL_POD_IP<-status.podIP".into(),
    ]
}

struct LangCase {
    lang: &'static str,
    init: Option<(&'static str, &'static str, Vec<&'static str>, &'static str)>,
    app_mount: Option<&'static str>,
    env: Vec<String>,
}

fn lang_cases() -> Vec<LangCase> {
    let cat = |a: Vec<String>, b: Vec<String>, c: Vec<String>| [a, b, c].concat();
    vec![
        LangCase {
            lang: "java",
            init: Some((
                "opentelemetry-auto-instrumentation-java",
                "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-java:2.30.0",
                vec!["cp", "/javaagent.jar", "/otel-auto-instrumentation-java/javaagent.jar"],
                "/otel-auto-instrumentation-java",
            )),
            app_mount: Some("/otel-auto-instrumentation-java-app"),
            env: cat(
                head(),
                vec![
                    "JAVA_TOOL_OPTIONS= -javaagent:/otel-auto-instrumentation-java-app/javaagent.jar"
                        .into(),
                ],
                common_tail("checkout-0"),
            ),
        },
        LangCase {
            lang: "nodejs",
            init: Some((
                "opentelemetry-auto-instrumentation-nodejs",
                "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-nodejs:0.78.0",
                vec!["cp", "-r", "/autoinstrumentation/.", "/otel-auto-instrumentation-nodejs"],
                "/otel-auto-instrumentation-nodejs",
            )),
            app_mount: Some("/otel-auto-instrumentation-nodejs"),
            env: cat(
                head(),
                vec![
                    "NODE_OPTIONS= --require /otel-auto-instrumentation-nodejs/autoinstrumentation.js"
                        .into(),
                    "OTEL_METRICS_EXPORTER=otlp".into(),
                ],
                common_tail("checkout-0"),
            ),
        },
        LangCase {
            lang: "python",
            init: Some((
                "opentelemetry-auto-instrumentation-python",
                "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.64b0",
                vec!["cp", "-r", "/autoinstrumentation/.", "/otel-auto-instrumentation-python"],
                "/otel-auto-instrumentation-python",
            )),
            app_mount: Some("/otel-auto-instrumentation-python"),
            env: cat(
                head(),
                vec![
                    "PYTHONPATH=/otel-auto-instrumentation-python/opentelemetry/instrumentation/auto_instrumentation:/otel-auto-instrumentation-python".into(),
                    "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf".into(),
                    "OTEL_TRACES_EXPORTER=otlp".into(),
                    "OTEL_METRICS_EXPORTER=otlp".into(),
                    "OTEL_LOGS_EXPORTER=otlp".into(),
                ],
                common_tail("checkout-0"),
            ),
        },
        LangCase {
            lang: "dotnet",
            init: Some((
                "opentelemetry-auto-instrumentation-dotnet",
                "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-dotnet:1.16.0",
                vec!["cp", "-r", "/autoinstrumentation/.", "/otel-auto-instrumentation-dotnet"],
                "/otel-auto-instrumentation-dotnet",
            )),
            app_mount: Some("/otel-auto-instrumentation-dotnet"),
            env: cat(
                head(),
                vec![
                    "CORECLR_ENABLE_PROFILING=1".into(),
                    "CORECLR_PROFILER={918728DD-259F-4A6A-AC2B-B85E1B658318}".into(),
                    "CORECLR_PROFILER_PATH=/otel-auto-instrumentation-dotnet/linux/OpenTelemetry.AutoInstrumentation.Native.so".into(),
                    "DOTNET_STARTUP_HOOKS=/otel-auto-instrumentation-dotnet/net/OpenTelemetry.AutoInstrumentation.StartupHook.dll".into(),
                    "DOTNET_ADDITIONAL_DEPS=/otel-auto-instrumentation-dotnet/AdditionalDeps".into(),
                    "OTEL_DOTNET_AUTO_HOME=/otel-auto-instrumentation-dotnet".into(),
                    "DOTNET_SHARED_STORE=/otel-auto-instrumentation-dotnet/store".into(),
                ],
                common_tail("checkout-0"),
            ),
        },
        LangCase {
            lang: "sdk",
            init: None,
            app_mount: None,
            env: cat(head(), vec![], common_tail("checkout-0")),
        },
    ]
}

#[test]
fn each_language_injects_the_operator_layout() {
    let config = Config::default();
    let view = StaticView::new();
    for case in lang_cases() {
        let key = format!("instrumentation.opentelemetry.io/inject-{}", case.lang);
        let p = simple(
            json!({ key: "true" }),
            json!({"app.kubernetes.io/name": "checkout"}),
        );
        let o = outcome(&p, &config, &view);
        let doc = patched(&p, &o);
        let app = container(&doc, "app");
        assert_eq!(env_lines(app), case.env, "{} env", case.lang);
        assert_refs_defined_before(app);
        match case.init {
            Some((name, image, cmd, mount)) => {
                let init = &doc["spec"]["initContainers"][0];
                assert_eq!(init["name"], name, "{}", case.lang);
                assert_eq!(init["image"], image, "{}", case.lang);
                assert_eq!(init["command"], json!(cmd), "{}", case.lang);
                assert_eq!(
                    init["volumeMounts"],
                    json!([{"name": name, "mountPath": mount}]),
                    "{}",
                    case.lang
                );
                assert_eq!(
                    doc["spec"]["volumes"],
                    json!([{"name": name, "emptyDir": {"sizeLimit": "200Mi"}}]),
                    "{}",
                    case.lang
                );
                assert_eq!(
                    app["volumeMounts"],
                    json!([{"name": name, "mountPath": case.app_mount.expect("mount")}]),
                    "{}",
                    case.lang
                );
                let sc = &init["securityContext"];
                assert_eq!(sc["runAsNonRoot"], true);
                assert_eq!(sc["runAsUser"], 65532);
                assert_eq!(sc["allowPrivilegeEscalation"], false);
                assert_eq!(sc["readOnlyRootFilesystem"], true);
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
                assert_eq!(init["resources"]["limits"]["cpu"], "500m");
            }
            None => {
                assert!(doc["spec"].get("initContainers").is_none(), "{}", case.lang);
                assert!(doc["spec"].get("volumes").is_none(), "{}", case.lang);
            }
        }
        let status: Value = serde_json::from_str(
            doc["metadata"]["annotations"]["otel-admission.io/status"]
                .as_str()
                .expect("status"),
        )
        .expect("status json");
        assert_eq!(status["languages"][case.lang], json!(["app"]));
        assert_eq!(status["instrumentation"][case.lang], "config defaults");
        assert!(
            o.warnings
                .iter()
                .any(|w| w.contains(&format!("injected {} into app", case.lang))),
            "{:?}",
            o.warnings
        );
    }
}

#[test]
fn resources_follow_the_operator_table_and_musl_variants() {
    let config = Config::default();
    let view = StaticView::new();
    for (lang, req_mem, extra, want_cmd_or_path) in [
        ("java", "64Mi", None, None),
        ("nodejs", "128Mi", None, None),
        (
            "python",
            "64Mi",
            Some(("otel-python-platform", "musl")),
            Some("/autoinstrumentation-musl/."),
        ),
        (
            "dotnet",
            "128Mi",
            Some(("otel-dotnet-auto-runtime", "linux-musl-x64")),
            Some(
                "/otel-auto-instrumentation-dotnet/linux-musl/OpenTelemetry.AutoInstrumentation.Native.so",
            ),
        ),
    ] {
        let mut ann = json!({ format!("instrumentation.opentelemetry.io/inject-{lang}"): "true" });
        if let Some((k, v)) = extra {
            ann[format!("instrumentation.opentelemetry.io/{k}")] = json!(v);
        }
        let p = simple(ann, json!({}));
        let doc = patched(&p, &outcome(&p, &config, &view));
        let init = &doc["spec"]["initContainers"][0];
        assert_eq!(
            init["resources"],
            json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "50m", "memory": req_mem}}),
            "{lang}"
        );
        if let Some(want) = want_cmd_or_path {
            let text = doc.to_string();
            assert!(text.contains(want), "{lang}: {want} missing");
        }
    }
}

#[test]
fn instrumentation_image_and_settings_override_defaults() {
    let config = Config::default();
    let view = StaticView::new().with_instrumentation(
        inst(
            NS,
            "custom",
            json!({
                "exporter": {"endpoint": "http://collector:4317"},
                "propagators": ["b3"],
                "sampler": {"type": "parentbased_traceidratio", "argument": "0.25"},
                "imagePullPolicy": "IfNotPresent",
                "initContainerSecurityContext": {"runAsUser": 1000},
                "python": {"image": "my/python:1", "env": [{"name": "OTEL_LOGS_EXPORTER", "value": "none"}]}
            }),
        ),
        NS,
    );
    let p = simple(json!({ PY: "custom" }), json!({}));
    let o = outcome(&p, &config, &view);
    let doc = patched(&p, &o);
    let init = &doc["spec"]["initContainers"][0];
    assert_eq!(init["image"], "my/python:1");
    assert_eq!(init["imagePullPolicy"], "IfNotPresent");
    assert_eq!(init["securityContext"], json!({"runAsUser": 1000}));
    let env = env_lines(container(&doc, "app"));
    assert_eq!(
        env[2], "OTEL_LOGS_EXPORTER=none",
        "spec.python.env right after the IPs"
    );
    for want in [
        "OTEL_PROPAGATORS=b3",
        "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG=0.25",
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
    assert_eq!(
        env.iter()
            .filter(|e| e.starts_with("OTEL_LOGS_EXPORTER"))
            .count(),
        1
    );
    assert!(
        o.warnings
            .iter()
            .any(|w| w.contains("4317") && w.contains("http/protobuf")),
        "{:?}",
        o.warnings
    );
}

#[test]
fn target_security_context_is_inherited() {
    let p = json!({
        "metadata": {"annotations": { PY: "true" }},
        "spec": {"containers": [{"name": "app", "image": "a:1",
            "securityContext": {"runAsUser": 1001, "runAsNonRoot": true}}]}
    });
    let doc = patched(&p, &outcome(&p, &Config::default(), &StaticView::new()));
    assert_eq!(
        doc["spec"]["initContainers"][0]["securityContext"],
        json!({"runAsUser": 1001, "runAsNonRoot": true})
    );
}

// === precedence ===

/// What a row of [`precedence_table`] expects.
#[derive(Debug)]
enum Want {
    Skip(SkipReason),
    /// Python injected with this Instrumentation label.
    Python(&'static str),
}

/// The rows of the table in `decide`'s doc comment, one named case each, so
/// a failing row does not hide the others: (row, namespace, pod annotations,
/// pod labels, namespace labels, namespace annotations, expected).
#[rstest]
#[case::row01_python_shop_a(1, NS, json!({PY: "true"}), json!({}), vec![], vec![], Want::Python("shop/a"))]
#[case::row01_excluded_namespace(1, "kube-system", json!({PY: "true"}), json!({}), vec![], vec![], Want::Skip(SkipReason::ExcludedNamespace))]
#[case::row01_excluded_namespace_2(1, "otel-system", json!({PY: "true"}), json!({}), vec![], vec![], Want::Skip(SkipReason::ExcludedNamespace))]
#[case::row02_opted_out(2, NS, json!({PY: "true", "otel-admission.io/inject": "false"}), json!({}), vec![], vec![], Want::Skip(SkipReason::OptedOut))]
#[case::row02_opted_out_2(2, NS, json!({PY: "true"}), json!({"otel-admission.io/inject": "false"}), vec![], vec![], Want::Skip(SkipReason::OptedOut))]
#[case::row03_opted_out(3, NS, json!({PY: "true", "kubernetes.io/config.mirror": "x"}), json!({}), vec![], vec![], Want::Skip(SkipReason::OptedOut))]
#[case::row04_opted_out(4, NS, json!({PY: "true"}), json!({}), vec![("otel-admission.io/inject", "disabled")], vec![], Want::Skip(SkipReason::OptedOut))]
#[case::row05_already_injected(5, NS, json!({PY: "true", "otel-admission.io/status": "{}"}), json!({}), vec![], vec![], Want::Skip(SkipReason::AlreadyInjected))]
#[case::row06_not_selected(6, NS, json!({}), json!({}), vec![], vec![], Want::Skip(SkipReason::NotSelected))]
#[case::row06_python_shop_a(6, NS, json!({}), json!({"team": "payments"}), vec![("otel-admission.io/inject", "enabled")], vec![], Want::Python("shop/a"))]
#[case::row06_not_selected_2(6, NS, json!({}), json!({"team": "search"}), vec![("otel-admission.io/inject", "enabled")], vec![], Want::Skip(SkipReason::NotSelected))]
#[case::row07_python_shop_a(7, NS, json!({}), json!({}), vec![(PY, "true")], vec![], Want::Python("shop/a"))]
#[case::row07_python_other_b(7, NS, json!({}), json!({}), vec![], vec![(PY, "other/b")], Want::Python("other/b"))]
#[case::row07_python_other_b_2(7, NS, json!({}), json!({}), vec![(PY, "other/b")], vec![(PY, "missing")], Want::Python("other/b"))]
#[case::row08_opted_out(8, NS, json!({PY: "false"}), json!({}), vec![(PY, "true")], vec![], Want::Skip(SkipReason::OptedOut))]
#[case::row09_python_other_b(9, NS, json!({PY: "other/b"}), json!({}), vec![(PY, "a")], vec![], Want::Python("other/b"))]
#[case::row09_python_other_b_2(9, NS, json!({PY: "true"}), json!({PY: "other/b"}), vec![], vec![], Want::Python("other/b"))]
#[case::row10_python_shop_a(10, NS, json!({PY: "TRUE"}), json!({}), vec![], vec![], Want::Python("shop/a"))]
#[case::row11_python_shop_a(11, NS, json!({PY: "true"}), json!({}), vec![(PY, "false")], vec![], Want::Python("shop/a"))]
#[case::row12_python_shop_a(12, NS, json!({PY: "true"}), json!({}), vec![(PY, "true")], vec![], Want::Python("shop/a"))]
#[case::row13_python_other_b(13, NS, json!({PY: "true"}), json!({}), vec![(PY, "other/b")], vec![], Want::Python("other/b"))]
fn precedence_table(
    #[case] row: u32,
    #[case] ns: &str,
    #[case] ann: Value,
    #[case] labels: Value,
    #[case] ns_labels: Vec<(&str, &str)>,
    #[case] ns_ann: Vec<(&str, &str)>,
    #[case] want: Want,
) {
    let view_base = || {
        StaticView::new()
            .with_instrumentation(inst(NS, "a", json!({})), NS)
            .with_instrumentation(inst("other", "b", json!({})), NS)
    };
    let mut config = Config::default();
    config.server.namespace = Some("otel-system".into());
    config.rules = vec![Rule {
        name: "payments".into(),
        namespace_selector: None,
        pod_selector: Some(
            serde_json::from_value(json!({"matchLabels": {"team": "payments"}})).expect("sel"),
        ),
        inject: RuleInject {
            languages: vec![LanguageChoice::Python],
            ..Default::default()
        },
        instrumentation: None,
    }];
    let view = view_base().with_namespace(ns, ns_meta(&ns_labels, &ns_ann));
    let p = pod(simple(ann.clone(), labels.clone()));
    let ctx = Context {
        namespace: ns,
        config: &config,
        view: &view,
        owner_hint: None,
        server_version: None,
    };
    let d = decide(&p, &ctx);
    match (&want, &d) {
        (Want::Skip(r), Decision::Skip(s)) => assert_eq!(s.reason, *r, "row {row}: {s:?}"),
        (Want::Python(label), Decision::Inject(plan)) => {
            assert_eq!(plan.languages.len(), 1, "row {row}: {plan:?}");
            assert_eq!(plan.languages[0].language, Language::Python, "row {row}");
            assert_eq!(
                plan.languages[0].instrumentation.label, *label,
                "row {row}: {}",
                plan.languages[0].decided_by
            );
        }
        _ => panic!("row {row}: wanted {want:?}, got {d:?} ({ann}, {labels})"),
    }
}

#[test]
fn labels_win_over_annotations_and_rules_with_namespace_selectors() {
    let mut config = Config::default();
    config.rules = vec![Rule {
        name: "team".into(),
        namespace_selector: Some(
            serde_json::from_value(json!({"matchLabels": {"team": "payments"}})).expect("sel"),
        ),
        pod_selector: None,
        inject: RuleInject {
            languages: vec![LanguageChoice::Java],
            ..Default::default()
        },
        instrumentation: None,
    }];
    let view = StaticView::new().with_namespace(NS, ns_meta(&[("team", "payments")], &[]));
    // Pod label `false` beats the annotation `true`; the rule still gives java.
    let p = pod(simple(json!({PY: "true"}), json!({PY: "false"})));
    let ctx = Context {
        namespace: NS,
        config: &config,
        view: &view,
        owner_hint: None,
        server_version: None,
    };
    let Decision::Inject(plan) = decide(&p, &ctx) else {
        panic!("injects java")
    };
    let langs: Vec<Language> = plan.languages.iter().map(|l| l.language).collect();
    assert_eq!(langs, vec![Language::Java]);
    assert_eq!(plan.languages[0].decided_by, "config rule \"team\"");
}

// === skip reasons and warnings ===

#[rstest]
#[case::two_instrumentations_are_ambiguous(json!({PY: "true"}), SkipReason::AmbiguousInstrumentation, "2 Instrumentations (a, b)")]
#[case::instrumentation_shop_nope_not_found(json!({PY: "nope"}), SkipReason::NoInstrumentation, "Instrumentation shop/nope not found")]
#[case::container_names_with_a_semicolon(json!({PY: "a", "instrumentation.opentelemetry.io/container-names": "app;rm"}), SkipReason::InvalidAnnotation, "must match ^[a-zA-Z0-9-,]+$")]
#[case::a_container_the_pod_does_not_have(json!({PY: "a", "instrumentation.opentelemetry.io/python-container-names": "ghost"}), SkipReason::InvalidAnnotation, "\"ghost\", which the pod does not have")]
#[case::go_in_an_init_container(json!({"instrumentation.opentelemetry.io/inject-go": "a",
                "instrumentation.opentelemetry.io/otel-go-auto-target-exe": "/bin/x",
                "instrumentation.opentelemetry.io/container-names": "migrate"}), SkipReason::InvalidAnnotation, "names init container \"migrate\"; go cannot instrument init containers")]
#[case::python_platform_alpine(json!({PY: "a", "instrumentation.opentelemetry.io/otel-python-platform": "alpine"}), SkipReason::InvalidAnnotation, "not glibc or musl")]
#[case::go_without_target_exe(json!({"instrumentation.opentelemetry.io/inject-go": "a"}), SkipReason::InvalidAnnotation, "otel-go-auto-target-exe is required")]
fn failures_are_reasons_with_warnings(
    #[case] ann: Value,
    #[case] reason: SkipReason,
    #[case] needle: &str,
) {
    let two = StaticView::new()
        .with_instrumentation(inst(NS, "a", json!({})), NS)
        .with_instrumentation(inst(NS, "b", json!({})), NS);

    let view = &two;
    let mut p = simple(ann.clone(), json!({}));
    p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m:1"}]);
    let o = outcome(&p, &all_languages(), view);
    let a = o.applied.as_ref().expect("status is still written");
    assert_eq!(a.failures.len(), 1, "{ann}");
    assert_eq!(a.failures[0].reason, reason, "{ann}");
    assert!(
        o.warnings.iter().any(|w| w.contains(needle)),
        "{ann}: {needle:?} not in {:?}",
        o.warnings
    );
    let doc = patched(&p, &o);
    let status: Value = serde_json::from_str(
        doc["metadata"]["annotations"]["otel-admission.io/status"]
            .as_str()
            .expect("status"),
    )
    .expect("json");
    assert!(
        status["failures"]
            .as_object()
            .is_some_and(|f| f.values().any(|v| v == reason.as_str())),
        "{status}"
    );
    assert_eq!(
        doc["spec"]["initContainers"].as_array().map(Vec::len),
        Some(1),
        "{ann}: nothing injected"
    );

    let mut deny = all_languages();
    deny.failure_mode = FailureMode::Deny;
    let o = outcome(&p, &deny, view);
    assert_eq!(o.denials.len(), 1, "{ann}: deny mode denies");
}

#[test]
fn operator_injected_pods_are_left_alone() {
    for spec in [
        json!({"initContainers": [{"name": "opentelemetry-auto-instrumentation-java"}], "containers": [{"name": "app"}]}),
        json!({"containers": [{"name": "app"}, {"name": "opentelemetry-auto-instrumentation"}]}),
        json!({"containers": [{"name": "app", "env": [{"name": "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "value": "x"}]}]}),
    ] {
        let p = json!({"metadata": {"annotations": {PY: "true"}}, "spec": spec});
        let o = outcome(&p, &Config::default(), &StaticView::new());
        assert_eq!(
            o.skip.as_ref().map(|s| s.reason),
            Some(SkipReason::AlreadyInjected),
            "{p}"
        );
        assert!(o.patch().is_none());
    }
}

#[test]
fn second_mutation_gives_no_patch() {
    let p = simple(
        json!({PY: "true", "instrumentation.opentelemetry.io/inject-java": "true"}),
        json!({}),
    );
    let o = outcome(&p, &Config::default(), &StaticView::new());
    let once = patched(&p, &o);
    let again = outcome(&once, &Config::default(), &StaticView::new());
    assert!(again.patch().is_none());
    assert_eq!(
        again.skip.map(|s| s.reason),
        Some(SkipReason::AlreadyInjected)
    );
}

// === env rules ===

#[rstest]
#[case::the_user_s_value_is_kept("python", json!([{"name": "OTEL_SERVICE_NAME", "value": "mine"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://x:4318"}]), vec![
                "OTEL_SERVICE_NAME=mine",
                "OTEL_EXPORTER_OTLP_ENDPOINT=http://x:4318",
            ])]
#[case::a_plain_list_value_gets_ours_appended("java", json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}]), vec![
                "JAVA_TOOL_OPTIONS=-Xmx1g -javaagent:/otel-auto-instrumentation-java-app/javaagent.jar",
            ])]
#[case::nodejs_options_appended("nodejs", json!([{"name": "NODE_OPTIONS", "value": "--max-old-space-size=512"}]), vec![
                "NODE_OPTIONS=--max-old-space-size=512 --require /otel-auto-instrumentation-nodejs/autoinstrumentation.js",
            ])]
#[case::pythonpath_wrapped("python", json!([{"name": "PYTHONPATH", "value": "/app"}]), vec![
                "PYTHONPATH=/otel-auto-instrumentation-python/opentelemetry/instrumentation/auto_instrumentation:/app:/otel-auto-instrumentation-python",
            ])]
#[case::dotnet_hooks_appended("dotnet", json!([{"name": "DOTNET_STARTUP_HOOKS", "value": "/my/hook.dll"}]), vec![
                "DOTNET_STARTUP_HOOKS=/my/hook.dll:/otel-auto-instrumentation-dotnet/net/OpenTelemetry.AutoInstrumentation.StartupHook.dll",
            ])]
#[case::valuefrom_kept_under_a_new_name_defined("java", json!([{"name": "JAVA_TOOL_OPTIONS", "valueFrom": {"configMapKeyRef": {"name": "jvm", "key": "opts"}}}, {"name": "X", "value": "1"}]), vec![
                "OTEL_ADMISSION_ORIG_JAVA_TOOL_OPTIONS<-valueFrom",
                "JAVA_TOOL_OPTIONS=$(OTEL_ADMISSION_ORIG_JAVA_TOOL_OPTIONS) -javaagent:/otel-auto-instrumentation-java-app/javaagent.jar",
                "X=1",
            ])]
#[case::pythonpath_value_from_kept("python", json!([{"name": "PYTHONPATH", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]), vec![
                "OTEL_ADMISSION_ORIG_PYTHONPATH<-valueFrom",
                "PYTHONPATH=/otel-auto-instrumentation-python/opentelemetry/instrumentation/auto_instrumentation:$(OTEL_ADMISSION_ORIG_PYTHONPATH):/otel-auto-instrumentation-python",
            ])]
#[case::resource_attributes_merge_user_keys_win_and("sdk", json!([{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "service.version=9,team=x"}, {"name": "Y", "value": "2"}]), vec!["Y=2"])]
fn env_rules_table(#[case] lang: &str, #[case] env: Value, #[case] want: Vec<&str>) {
    let p = json!({
        "metadata": {"annotations": {format!("instrumentation.opentelemetry.io/inject-{lang}"): "true"}},
        "spec": {"containers": [{"name": "app", "image": "a:1.2.3", "env": env}]}
    });
    let o = outcome(&p, &Config::default(), &StaticView::new());
    let doc = patched(&p, &o);
    let app = container(&doc, "app");
    let lines = env_lines(app);
    assert_refs_defined_before(app);
    // `want` appears as a contiguous run, in order.
    let at = lines
        .iter()
        .position(|l| l == want[0])
        .unwrap_or_else(|| panic!("{lang}: {} not in {lines:?}", want[0]));
    assert_eq!(&lines[at..at + want.len()], want.as_slice(), "{lang}");
    for w in &want {
        let name = w.split(['=', '<']).next().unwrap_or_default();
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.split(['=', '<']).next() == Some(name))
                .count(),
            1,
            "{lang}: {name} defined once in {lines:?}"
        );
    }

    // The merged OTEL_RESOURCE_ATTRIBUTES keeps the user's keys and is last.
    let p = json!({
        "metadata": {"annotations": {"instrumentation.opentelemetry.io/inject-sdk": "true"}},
        "spec": {"containers": [{"name": "app", "image": "a:1.2.3", "env": [{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "service.version=9,team=x"}]}]}
    });
    let doc = patched(&p, &outcome(&p, &Config::default(), &StaticView::new()));
    let lines = env_lines(container(&doc, "app"));
    let last = lines.last().expect("env");
    assert!(
        last.starts_with(
            "OTEL_RESOURCE_ATTRIBUTES=service.version=9,team=x,k8s.container.name=app,"
        ),
        "{last}"
    );
    assert!(!last.contains("service.version=1.2.3"), "{last}");
}

// === service name ===

/// A controlling owner reference, for [`service_name_per_owner_kind`].
fn owner(kind: &str, name: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true}])
}

#[rstest]
#[case::replicaset_of_a_deployment(json!({"ownerReferences": owner("ReplicaSet", "checkout-7d9f8c6b5"), "labels": {"pod-template-hash": "7d9f8c6b5"}}), "checkout", vec![
                "k8s.deployment.name=checkout",
                "k8s.replicaset.name=checkout-7d9f8c6b5",
            ])]
#[case::bare_replicaset(json!({"ownerReferences": owner("ReplicaSet", "bare-rs")}), "bare-rs", vec!["k8s.replicaset.name=bare-rs"])]
#[case::statefulset(json!({"ownerReferences": owner("StatefulSet", "db")}), "db", vec!["k8s.statefulset.name=db"])]
#[case::daemonset(json!({"ownerReferences": owner("DaemonSet", "agent")}), "agent", vec!["k8s.daemonset.name=agent"])]
#[case::job_of_a_cronjob(json!({"ownerReferences": owner("Job", "nightly-29000000")}), "nightly", vec!["k8s.cronjob.name=nightly", "k8s.job.name=nightly-29000000"])]
#[case::bare_job(json!({"ownerReferences": owner("Job", "migrate")}), "migrate", vec!["k8s.job.name=migrate"])]
#[case::generate_name(json!({"generateName": "worker-"}), "worker", vec![])]
#[case::no_owner_no_name(json!({}), "app", vec![])]
// The label counts only with `useLabelsForResourceAttributes`.
#[case::label_ignored_without_use_labels(json!({"labels": {"app.kubernetes.io/name": "label-name"}, "ownerReferences": owner("StatefulSet", "db")}), "db", vec![])]
#[case::annotation_wins_over_label(json!({"annotations": {"resource.opentelemetry.io/service.name": "ann-name"}, "labels": {"app.kubernetes.io/name": "label-name"}}), "ann-name", vec![])]
fn service_name_per_owner_kind(
    #[case] mut meta: Value,
    #[case] want: &str,
    #[case] attrs: Vec<&str>,
) {
    let ann = meta.get("annotations").cloned().unwrap_or(json!({}));
    let mut ann = ann;
    ann["instrumentation.opentelemetry.io/inject-sdk"] = json!("true");
    meta["annotations"] = ann;
    let p = json!({"metadata": meta, "spec": {"containers": [{"name": "app", "image": "a"}]}});
    let doc = patched(&p, &outcome(&p, &Config::default(), &StaticView::new()));
    let lines = env_lines(container(&doc, "app"));
    assert!(
        lines.contains(&format!("OTEL_SERVICE_NAME={want}")),
        "{want}: {lines:?}"
    );
    let ra = lines
        .iter()
        .find(|l| l.starts_with("OTEL_RESOURCE_ATTRIBUTES="))
        .expect("attrs");
    for a in attrs {
        assert!(ra.contains(a), "{a} not in {ra}");
    }
}

#[test]
fn owner_hint_names_the_workload() {
    let p = pod(simple(json!({PY: "true"}), json!({})));
    let hint = Owner {
        kind: "Deployment".into(),
        name: "web".into(),
        via: None,
    };
    let config = Config::default();
    let view = StaticView::new();
    let ctx = Context {
        namespace: NS,
        config: &config,
        view: &view,
        owner_hint: Some(&hint),
        server_version: None,
    };
    let o = run(&p, &ctx);
    let a = o.applied.expect("applied");
    let env = a.pod.spec.expect("spec").containers[0]
        .env
        .clone()
        .expect("env");
    assert!(
        env.iter()
            .any(|e| e.name == "OTEL_SERVICE_NAME" && e.value.as_deref() == Some("web"))
    );
}

// === multi-language, multi-container, sidecars ===

#[test]
fn multi_language_multi_container() {
    let p = json!({
        "metadata": {"annotations": {
            "instrumentation.opentelemetry.io/inject-java": "true",
            PY: "true",
            "instrumentation.opentelemetry.io/java-container-names": "api,worker",
            "instrumentation.opentelemetry.io/python-container-names": "ml",
        }},
        "spec": {"containers": [
            {"name": "istio-proxy", "image": "istio"},
            {"name": "api", "image": "api:1"},
            {"name": "worker", "image": "worker:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "ml", "image": "ml:1"},
        ]}
    });
    let o = outcome(&p, &Config::default(), &StaticView::new());
    let doc = patched(&p, &o);
    let inits: Vec<&str> = doc["spec"]["initContainers"]
        .as_array()
        .expect("inits")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        inits,
        vec![
            "opentelemetry-auto-instrumentation-java",
            "opentelemetry-auto-instrumentation-python"
        ]
    );
    assert!(container(&doc, "istio-proxy").get("env").is_none());
    for (c, var) in [
        ("api", "JAVA_TOOL_OPTIONS"),
        ("worker", "JAVA_TOOL_OPTIONS"),
        ("ml", "PYTHONPATH"),
    ] {
        let lines = env_lines(container(&doc, c));
        assert!(lines.iter().any(|l| l.starts_with(var)), "{c}: {lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("k8s.container.name={c}"))),
            "{c}"
        );
    }
    // The user's first variable follows the prepended OTEL_NODE_IP and OTEL_POD_IP.
    assert_eq!(env_lines(container(&doc, "worker"))[2], "A=1");
    assert!(
        env_lines(container(&doc, "worker")).contains(
            &"JAVA_TOOL_OPTIONS= -javaagent:/otel-auto-instrumentation-java-worker/javaagent.jar"
                .to_string()
        )
    );
}

#[test]
fn default_target_skips_known_sidecars_and_config_list() {
    let mut config = Config::default();
    config.skip_containers = vec!["vault-agent".into()];
    let p = json!({
        "metadata": {"annotations": {PY: "true"}},
        "spec": {"containers": [{"name": "istio-proxy"}, {"name": "vault-agent"}, {"name": "web"}]}
    });
    let o = outcome(&p, &config, &StaticView::new());
    let a = o.applied.expect("applied");
    assert_eq!(a.injected[0].containers, vec!["web".to_string()]);

    let only = json!({"metadata": {"annotations": {PY: "true"}}, "spec": {"containers": [{"name": "istio-proxy"}]}});
    let o = outcome(&only, &config, &StaticView::new());
    assert_eq!(
        o.applied.expect("status").failures[0].reason,
        SkipReason::NotSelected
    );
}

#[test]
fn go_sidecar_is_privileged_and_shares_the_process_namespace() {
    let p = json!({
        "metadata": {"annotations": {
            "instrumentation.opentelemetry.io/inject-go": "true",
            "instrumentation.opentelemetry.io/otel-go-auto-target-exe": "/app/server",
        }},
        "spec": {"containers": [{"name": "app", "image": "go:1.2.3"}]}
    });
    let o = outcome(&p, &all_languages(), &StaticView::new());
    let doc = patched(&p, &o);
    assert_eq!(doc["spec"]["shareProcessNamespace"], true);
    let side = container(&doc, "opentelemetry-auto-instrumentation");
    assert_eq!(
        side["image"],
        "ghcr.io/open-telemetry/opentelemetry-go-instrumentation/autoinstrumentation-go:v0.24.0"
    );
    assert_eq!(
        side["securityContext"],
        json!({"privileged": true, "runAsUser": 0})
    );
    assert_eq!(
        side["volumeMounts"],
        json!([{"name": "kernel-debug", "mountPath": "/sys/kernel/debug"}])
    );
    assert_eq!(
        doc["spec"]["volumes"],
        json!([{"name": "kernel-debug", "hostPath": {"path": "/sys/kernel/debug"}}])
    );
    let lines = env_lines(side);
    assert_eq!(
        lines[..3],
        [
            "OTEL_NODE_IP<-status.hostIP",
            "OTEL_POD_IP<-status.podIP",
            "OTEL_GO_AUTO_TARGET_EXE=/app/server"
        ]
    );
    assert!(
        lines.iter().any(|l| l.contains("k8s.container.name=app")),
        "{lines:?}"
    );
    assert_refs_defined_before(side);
    assert!(container(&doc, "app").get("env").is_none(), "app untouched");
}

// === the patch ===

#[test]
fn thousand_env_vars_stay_linear() {
    let env: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": "x"}))
        .collect();
    let p = json!({
        "metadata": {"annotations": {PY: "true"}},
        "spec": {"containers": [{"name": "app", "image": "a:1", "env": env}]}
    });
    let typed = pod(p.clone());
    let config = Config::default();
    let view = StaticView::new();
    let ctx = Context {
        namespace: NS,
        config: &config,
        view: &view,
        owner_hint: None,
        server_version: None,
    };
    let o = run(&typed, &ctx);
    let ops = o.patch().expect("patch").len();
    assert!(ops < 30, "{ops} ops: no op per existing variable");
    let doc = patched(&p, &o);
    assert_eq!(
        container(&doc, "app")["env"].as_array().map(Vec::len),
        Some(1000 + 13)
    );
}

#[test]
fn webservers_clone_the_config_and_attach_the_module() {
    struct Case {
        key: &'static str,
        attach: &'static str,
        conf_volume: &'static str,
        agent_volume: &'static str,
        conf_dir: &'static str,
        attach_env: [&'static str; 4],
        app_extra: Option<&'static str>,
    }
    let cases = [
        Case {
            key: "apache-httpd",
            attach: "otel-agent-attach-apache",
            conf_volume: "otel-apache-conf-dir",
            agent_volume: "otel-apache-agent",
            conf_dir: "/usr/local/apache2/conf",
            attach_env: [
                "OTEL_POD_IP",
                "OTEL_NODE_IP",
                "OTEL_APACHE_AGENT_CONF",
                "APACHE_SERVICE_INSTANCE_ID",
            ],
            app_extra: None,
        },
        Case {
            key: "nginx",
            attach: "otel-agent-attach-nginx",
            conf_volume: "otel-nginx-conf-dir",
            agent_volume: "otel-nginx-agent",
            conf_dir: "/etc/nginx",
            attach_env: [
                "OTEL_POD_IP",
                "OTEL_NODE_IP",
                "OTEL_NGINX_AGENT_CONF",
                "OTEL_NGINX_SERVICE_INSTANCE_ID",
            ],
            app_extra: Some("LD_LIBRARY_PATH=/opt/opentelemetry-webserver/agent/sdk_lib/lib"),
        },
    ];
    for c in cases {
        let p = json!({
            "metadata": {"annotations": {format!("instrumentation.opentelemetry.io/inject-{}", c.key): "true"}},
            "spec": {"containers": [{"name": "web", "image": "httpd:2.4",
                "volumeMounts": [{"name": "html", "mountPath": "/srv"}]}],
                "volumes": [{"name": "html", "emptyDir": {}}]}
        });
        let o = outcome(&p, &all_languages(), &StaticView::new());
        let doc = patched(&p, &o);
        let inits = doc["spec"]["initContainers"].as_array().expect("inits");
        assert_eq!(inits.len(), 2, "{}", c.key);
        let clone = &inits[0];
        assert_eq!(clone["name"], "otel-agent-source-container-clone");
        assert_eq!(clone["image"], "httpd:2.4", "the clone runs the app image");
        assert_eq!(
            clone["volumeMounts"],
            json!([{"name": "html", "mountPath": "/srv"},
                   {"name": c.conf_volume, "mountPath": "/opt/opentelemetry-webserver/source-conf"}])
        );
        let attach = &inits[1];
        assert_eq!(attach["name"], c.attach);
        assert_eq!(
            attach["image"],
            "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-apache-httpd:1.0.4"
        );
        let names: Vec<&str> = attach["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert_eq!(names, c.attach_env.to_vec());
        assert!(
            attach["env"][2]["value"].as_str().is_some_and(
                |v| v.contains("ExporterEndpoint http://otel-collector.monitoring:4318")
            ),
            "{}",
            attach["env"][2]
        );
        assert_eq!(attach["resources"]["requests"]["cpu"], "1m");
        let vols: Vec<&str> = doc["spec"]["volumes"]
            .as_array()
            .expect("vols")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(vols, vec!["html", c.conf_volume, c.agent_volume]);
        let web = container(&doc, "web");
        assert_eq!(
            web["volumeMounts"],
            json!([{"name": "html", "mountPath": "/srv"},
                   {"name": c.agent_volume, "mountPath": "/opt/opentelemetry-webserver/agent"},
                   {"name": c.conf_volume, "mountPath": c.conf_dir}])
        );
        let lines = env_lines(web);
        if let Some(extra) = c.app_extra {
            assert!(lines.iter().any(|l| l == extra), "{lines:?}");
        }
        assert!(
            lines.iter().any(|l| l == "OTEL_SERVICE_NAME=web"),
            "{lines:?}"
        );
        assert_refs_defined_before(web);
        assert!(
            o.warnings
                .iter()
                .any(|w| w.contains("4318") && w.contains("gRPC")),
            "{}: {:?}",
            c.key,
            o.warnings
        );
    }
    // Both at once share the clone container's name: the second reports the clash.
    let p = json!({
        "metadata": {"annotations": {
            "instrumentation.opentelemetry.io/container-names": "web",
            "instrumentation.opentelemetry.io/inject-apache-httpd": "true",
            "instrumentation.opentelemetry.io/inject-nginx": "true"}},
        "spec": {"containers": [{"name": "web", "image": "w:1"}]}
    });
    let o = outcome(&p, &all_languages(), &StaticView::new());
    let a = o.applied.expect("applied");
    assert_eq!(a.injected.len(), 1);
    assert_eq!(a.failures[0].reason, SkipReason::Error);
    assert!(
        a.failures[0]
            .message
            .contains("otel-agent-source-container-clone")
    );
}

#[test]
fn java_extensions_uid_attributes_and_resource_attributes_from_value_from() {
    let view = StaticView::new().with_instrumentation(
        inst(
            NS,
            "ext",
            json!({
                "resource": {"addK8sUIDAttributes": true, "resourceAttributes": {"team": "payments"}},
                "java": {"extensions": [{"image": "ext:1", "dir": "/ext"}]}
            }),
        ),
        NS,
    );
    let p = json!({
        "metadata": {"annotations": {"instrumentation.opentelemetry.io/inject-java": "true",
            "resource.opentelemetry.io/deployment.environment": "prod"}},
        "spec": {"containers": [{"name": "app", "image": "a:1", "env": [
            {"name": "OTEL_RESOURCE_ATTRIBUTES", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}
        ]}]}
    });
    let o = outcome(&p, &Config::default(), &view);
    let doc = patched(&p, &o);
    let ext = &doc["spec"]["initContainers"][1];
    assert_eq!(
        ext["name"],
        "opentelemetry-auto-instrumentation-extension-0"
    );
    assert_eq!(
        ext["command"],
        json!([
            "cp",
            "-r",
            "/ext/.",
            "/otel-auto-instrumentation-java/extensions"
        ])
    );
    assert_eq!(ext["securityContext"]["runAsNonRoot"], true);
    let app = container(&doc, "app");
    assert_refs_defined_before(app);
    let lines = env_lines(app);
    assert_eq!(
        lines[2],
        "OTEL_ADMISSION_ORIG_OTEL_RESOURCE_ATTRIBUTES<-valueFrom"
    );
    assert!(lines.contains(
        &"JAVA_TOOL_OPTIONS= -javaagent:/otel-auto-instrumentation-java-app/javaagent.jar -Dotel.javaagent.extensions=/otel-auto-instrumentation-java-app/extensions".to_string()
    ), "{lines:?}");
    assert!(lines.contains(&"OTEL_RESOURCE_ATTRIBUTES_POD_UID<-metadata.uid".to_string()));
    let ra = lines.last().expect("last");
    assert!(
        ra.starts_with("OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod,"),
        "{ra}"
    );
    assert!(
        ra.contains("k8s.pod.uid=$(OTEL_RESOURCE_ATTRIBUTES_POD_UID)"),
        "{ra}"
    );
    assert!(ra.contains("team=payments"), "{ra}");
    assert!(
        ra.ends_with(",$(OTEL_ADMISSION_ORIG_OTEL_RESOURCE_ATTRIBUTES)"),
        "{ra}"
    );
}

#[test]
fn exporter_tls_mounts_secret_and_config_map_once_and_optional() {
    let view = StaticView::new().with_instrumentation(
        inst(
            NS,
            "tls",
            json!({"exporter": {"endpoint": "https://gw:4318", "tls": {
                "secretName": "client", "configMapName": "ca", "ca_file": "ca.crt",
                "cert_file": "tls.crt", "key_file": "/abs/tls.key"}}}),
        ),
        NS,
    );
    let p = json!({
        "metadata": {"annotations": {"instrumentation.opentelemetry.io/inject-sdk": "true",
            "instrumentation.opentelemetry.io/container-names": "app",
            "instrumentation.opentelemetry.io/inject-python": "true"}},
        "spec": {"containers": [{"name": "app", "image": "a:1"}]}
    });
    let doc = patched(&p, &outcome(&p, &Config::default(), &view));
    let vols: Vec<&str> = doc["spec"]["volumes"]
        .as_array()
        .expect("vols")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    // The operator's order: the exporter's volumes come with the SDK
    // configuration, before the agent volume is added to the pod.
    assert_eq!(
        vols,
        vec![
            "otel-auto-secret-client",
            "otel-auto-configmap-ca",
            "opentelemetry-auto-instrumentation-python"
        ]
    );
    // Neither object is read (no API call), so a missing one must not keep
    // the pod in ContainerCreating: both are optional for the kubelet.
    assert_eq!(
        doc["spec"]["volumes"][0]["secret"],
        json!({"secretName": "client", "optional": true})
    );
    assert_eq!(
        doc["spec"]["volumes"][1]["configMap"],
        json!({"name": "ca", "optional": true})
    );
    let app = container(&doc, "app");
    assert_eq!(app["volumeMounts"].as_array().map(Vec::len), Some(3));
    assert_eq!(app["volumeMounts"][1]["readOnly"], true);
    let lines = env_lines(app);
    for want in [
        "OTEL_EXPORTER_OTLP_CERTIFICATE=/otel-auto-instrumentation-configmap-ca/ca.crt",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=/otel-auto-instrumentation-secret-client/tls.crt",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY=/abs/tls.key",
    ] {
        assert_eq!(
            lines.iter().filter(|l| *l == want).count(),
            1,
            "{want} in {lines:?}"
        );
    }
}

#[test]
fn auto_detection_injects_only_one_evident_language() {
    const AUTO: &str = "otel-admission.io/inject-auto";
    let with = |ann: Value, container: Value| json!({"metadata": {"annotations": ann}, "spec": {"containers": [container]}});
    // Annotation opt-in, Python evident from the image.
    let p = with(
        json!({AUTO: "true"}),
        json!({"name": "app", "image": "python:3.12-slim"}),
    );
    let o = outcome(&p, &Config::default(), &StaticView::new());
    let Decision::Inject(plan) = &o.decision else {
        panic!("inject")
    };
    assert_eq!(plan.languages[0].language, Language::Python);
    assert!(
        plan.languages[0]
            .decided_by
            .contains("detected python (app: image python:3.12-slim)"),
        "{}",
        plan.languages[0].decided_by
    );
    // A rule with `auto` in an opted-in namespace; Java from the command.
    let mut config = Config::default();
    config.rules = vec![Rule {
        name: "everything".into(),
        namespace_selector: None,
        pod_selector: None,
        inject: RuleInject {
            languages: vec![LanguageChoice::Auto],
            ..Default::default()
        },
        instrumentation: None,
    }];
    let view = StaticView::new()
        .with_namespace(NS, ns_meta(&[("otel-admission.io/inject", "enabled")], &[]));
    let p = with(
        json!({}),
        json!({"name": "app", "image": "reg/app:1", "command": ["java", "-jar", "/app.jar"]}),
    );
    let o = outcome(&p, &config, &view);
    let a = o.applied.expect("applied");
    assert_eq!(a.injected[0].language, Language::Java);
    // Nothing evident: reported, never denied.
    config.failure_mode = FailureMode::Deny;
    let p = with(
        json!({AUTO: "true"}),
        json!({"name": "app", "image": "reg/app:1"}),
    );
    let o = outcome(&p, &config, &view);
    let a = o.applied.as_ref().expect("status");
    assert_eq!(a.failures[0].reason, SkipReason::NotSelected);
    assert_eq!(a.failures[0].feature.to_string(), "auto");
    assert!(o.denials.is_empty());
    assert!(o.warnings.iter().any(|w| w.contains("found no language")));
    // An explicit setting for the detected language wins.
    let p = with(
        json!({AUTO: "true", PY: "false"}),
        json!({"name": "app", "image": "python:3"}),
    );
    let o = outcome(&p, &Config::default(), &StaticView::new());
    assert!(o.patch().is_none());
    assert_eq!(o.skip.map(|s| s.reason), Some(SkipReason::OptedOut));
    assert!(
        o.warnings
            .iter()
            .any(|w| w.contains("inject-python=\"false\"")),
        "{:?}",
        o.warnings
    );
}

#[test]
fn per_language_container_names_keys_and_rollout_owner() {
    use crate::inject::keys::container_names_key;
    assert_eq!(
        container_names_key(Language::Nginx),
        "instrumentation.opentelemetry.io/inject-nginx-container-names"
    );
    assert_eq!(
        container_names_key(Language::ApacheHttpd),
        "instrumentation.opentelemetry.io/apache-httpd-container-names"
    );
    let p = json!({
        "metadata": {
            "annotations": {
                "instrumentation.opentelemetry.io/inject-nginx": "true",
                "instrumentation.opentelemetry.io/inject-nginx-container-names": "proxy",
            },
            "labels": {"rollouts-pod-template-hash": "5c8b7d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop-5c8b7d", "uid": "u", "controller": true}]
        },
        "spec": {"containers": [{"name": "app", "image": "a:1"}, {"name": "proxy", "image": "nginx:1.23.1"}]}
    });
    let o = outcome(&p, &all_languages(), &StaticView::new());
    let a = o.applied.as_ref().expect("applied");
    assert_eq!(a.injected[0].containers, vec!["proxy".to_string()]);
    let doc = patched(&p, &o);
    let lines = env_lines(container(&doc, "proxy"));
    // Argo Rollouts (#3887): the service is the Rollout, not the hashed ReplicaSet.
    assert!(
        lines.contains(&"OTEL_SERVICE_NAME=shop".to_string()),
        "{lines:?}"
    );
    assert!(container(&doc, "app").get("env").is_none());
}

#[test]
fn init_container_targets_get_the_agent_just_before_them() {
    let p = json!({
        "metadata": {"annotations": {PY: "true",
            "instrumentation.opentelemetry.io/python-container-names": "app,migrate"}},
        "spec": {
            "initContainers": [{"name": "setup", "image": "s:1"}, {"name": "migrate", "image": "m:1", "env": [{"name": "A", "value": "1"}]}],
            "containers": [{"name": "app", "image": "a:1"}]
        }
    });
    let o = outcome(&p, &Config::default(), &StaticView::new());
    let doc = patched(&p, &o);
    let inits: Vec<&str> = doc["spec"]["initContainers"]
        .as_array()
        .expect("inits")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        inits,
        vec![
            "setup",
            "opentelemetry-auto-instrumentation-python",
            "migrate"
        ]
    );
    let migrate = &doc["spec"]["initContainers"][2];
    let lines = env_lines(migrate);
    assert_eq!(lines[2], "A=1", "after the prepended IPs");
    assert!(
        lines.iter().any(|l| l.starts_with("PYTHONPATH=")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("k8s.container.name=migrate"))
    );
    assert_refs_defined_before(migrate);
    assert_eq!(
        migrate["volumeMounts"],
        json!([{"name": "opentelemetry-auto-instrumentation-python", "mountPath": "/otel-auto-instrumentation-python"}])
    );
    assert!(
        env_lines(container(&doc, "app"))
            .iter()
            .any(|l| l.starts_with("PYTHONPATH="))
    );
    // The injected pod is stable on a second pass.
    assert!(
        outcome(&doc, &Config::default(), &StaticView::new())
            .patch()
            .is_none()
    );
}

/// PHP needs `otel-php-api-version` (the extension is built per PHP minor);
/// without it, or with a value the image does not carry, nothing is injected
/// for PHP and the warning lists the versions. Platform and thread safety
/// select the build the init container copies.
#[test]
fn php_needs_its_api_version_and_selects_the_build() {
    let config = Config::default();
    let view = StaticView::new();
    for (ann, want) in [
        (
            json!({"instrumentation.opentelemetry.io/inject-php": "true"}),
            "is required",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-php": "true",
                "instrumentation.opentelemetry.io/otel-php-api-version": "2024"}),
            "is not one of",
        ),
        (
            json!({"instrumentation.opentelemetry.io/inject-php": "true",
                "instrumentation.opentelemetry.io/otel-php-api-version": "20240924",
                "instrumentation.opentelemetry.io/otel-php-platform": "alpine"}),
            "is not glibc or musl",
        ),
    ] {
        let p = simple(ann, json!({}));
        let o = outcome(&p, &config, &view);
        let w = o.warnings.iter().find(|w| w.contains(want));
        assert!(w.is_some(), "{want}: {:?}", o.warnings);
        if !want.contains("glibc") {
            assert!(w.is_some_and(|w| w.contains("20240924 (PHP 8.4)")), "{w:?}");
        }
        let doc = patched(&p, &o);
        assert!(doc["spec"]["initContainers"].is_null(), "{doc}");
    }
    let p = simple(
        json!({"instrumentation.opentelemetry.io/inject-php": "true",
            "instrumentation.opentelemetry.io/otel-php-api-version": "20230831",
            "instrumentation.opentelemetry.io/otel-php-platform": "musl",
            "instrumentation.opentelemetry.io/otel-php-thread-safety": "zts"}),
        json!({}),
    );
    let doc = patched(&p, &outcome(&p, &config, &view));
    let init = &doc["spec"]["initContainers"][0];
    assert_eq!(init["name"], "opentelemetry-auto-instrumentation-php");
    assert_eq!(init["command"], json!(["/bin/sh", "-c"]));
    assert_eq!(
        init["args"].as_array().map(|a| a[1..].to_vec()),
        Some(vec![
            json!("--"),
            json!("/autoinstrumentation/."),
            json!("/otel-auto-instrumentation-php"),
            json!("musl"),
            json!("20230831"),
            json!("zts")
        ])
    );
    let lines = env_lines(container(&doc, "app"));
    assert!(lines.contains(&"PHP_INI_SCAN_DIR=:/otel-auto-instrumentation-php".to_string()));
    assert!(lines.contains(&"OTEL_PHP_AUTOLOAD_ENABLED=true".to_string()));
}

/// Ruby composes `RUBYOPT` with the user's value, plain or `valueFrom`.
#[test]
fn ruby_composes_rubyopt() {
    let p = json!({
        "metadata": {"name": "r", "annotations": {"instrumentation.opentelemetry.io/inject-ruby": "true"}},
        "spec": {"containers": [{"name": "app", "image": "ruby:3", "env": [{"name": "RUBYOPT", "value": "-W0"}]}]}
    });
    let doc = patched(&p, &outcome(&p, &Config::default(), &StaticView::new()));
    let lines = env_lines(container(&doc, "app"));
    assert!(
        lines.contains(
            &"RUBYOPT=-W0 -r /otel-auto-instrumentation-ruby/src/autoinstrumentation".to_string()
        ),
        "{lines:?}"
    );
    assert_eq!(
        doc["spec"]["initContainers"][0]["command"],
        json!([
            "cp",
            "-r",
            "/autoinstrumentation/.",
            "/otel-auto-instrumentation-ruby"
        ])
    );
}

/// The fingerprint (SPEC §5): the same template gives the same value for
/// every replica and ReplicaSet (no pod name or template hash in it), in the
/// status annotation and the `otel-admission.io/injected` label; a changed
/// Instrumentation spec or deciding source changes it.
#[test]
fn the_fingerprint_follows_what_decided_not_which_pod() {
    let view = |endpoint: &str| {
        StaticView::new().with_instrumentation(
            inst(NS, "python", json!({"exporter": {"endpoint": endpoint}})),
            NS,
        )
    };
    let pod = |name: &str, rs: &str| {
        json!({
            "metadata": {"generateName": format!("{name}-"), "labels": {"pod-template-hash": rs.rsplit('-').next()},
                "annotations": {"instrumentation.opentelemetry.io/inject-python": "true"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "a:1"}]}
        })
    };
    let fp = |p: &Value, v: &StaticView| {
        let doc = patched(p, &outcome(p, &Config::default(), v));
        let label = doc["metadata"]["labels"]["otel-admission.io/injected"]
            .as_str()
            .map(str::to_string)
            .expect("label");
        let status: Value = serde_json::from_str(
            doc["metadata"]["annotations"]["otel-admission.io/status"]
                .as_str()
                .expect("status"),
        )
        .expect("json");
        assert_eq!(status["fingerprint"], label.as_str());
        assert_eq!(label.len(), 16);
        label
    };
    let a = fp(&pod("web-5d8f", "web-5d8f"), &view("http://c:4318"));
    let b = fp(&pod("web-77aa", "web-77aa"), &view("http://c:4318"));
    assert_eq!(a, b, "another ReplicaSet of the same template");
    let c = fp(&pod("web-5d8f", "web-5d8f"), &view("http://other:4318"));
    assert_ne!(a, c, "a changed Instrumentation");
    // Nothing injected: no label.
    let plain = json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "app", "image": "a:1"}]}});
    let o = outcome(&plain, &Config::default(), &StaticView::new());
    assert!(o.patch().is_none());
}

/// A container that runs its own .NET agent (`OTEL_DOTNET_AUTO_HOME` set)
/// is left alone for .NET, with a warning naming the variable; the data-driven
/// agents keep that rule.
#[test]
fn dotnet_is_refused_where_the_container_runs_its_own_agent() {
    let mut p = simple(
        json!({"instrumentation.opentelemetry.io/inject-dotnet": "true"}),
        json!({}),
    );
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "OTEL_DOTNET_AUTO_HOME", "value": "/mine"}]);
    let o = outcome(&p, &Config::default(), &StaticView::new());
    let doc = patched(&p, &o);
    assert!(
        doc["spec"]["initContainers"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "{doc}"
    );
    assert!(
        o.warnings
            .iter()
            .any(|w| w.contains("dotnet: container")
                && w.contains("already sets OTEL_DOTNET_AUTO_HOME")),
        "{:?}",
        o.warnings
    );
    let failures = &o.applied.as_ref().expect("applied").failures;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, SkipReason::AgentConfigured);
    // The container has the agent it asked for: the Operator admits it, and
    // so does `failureMode: deny`.
    let deny: Config = Config::from_yaml("failureMode: deny", "t").expect("config");
    assert!(outcome(&p, &deny, &StaticView::new()).denials.is_empty());
}

/// Two targets, one with its own .NET agent: the other is still injected,
/// as the Operator skips only the refused container.
#[test]
fn dotnet_skips_only_the_container_that_runs_its_own_agent() {
    let mut p = simple(
        json!({"instrumentation.opentelemetry.io/inject-dotnet": "true",
               "instrumentation.opentelemetry.io/container-names": "app,worker"}),
        json!({}),
    );
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "OTEL_DOTNET_AUTO_HOME", "value": "/mine"}]);
    if let Some(cs) = p["spec"]["containers"].as_array_mut() {
        cs.push(json!({"name": "worker", "image": "w:1"}));
    }
    let o = outcome(&p, &Config::default(), &StaticView::new());
    let doc = patched(&p, &o);
    let applied = o.applied.as_ref().expect("applied");
    assert_eq!(applied.injected.len(), 1);
    assert_eq!(applied.injected[0].containers, vec!["worker".to_string()]);
    assert!(applied.failures.is_empty(), "{:?}", applied.failures);
    assert_eq!(
        container(&doc, "app")["env"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(
        env_lines(container(&doc, "worker"))
            .iter()
            .any(|l| l == "OTEL_DOTNET_AUTO_HOME=/otel-auto-instrumentation-dotnet")
    );
    assert!(
        o.warnings
            .iter()
            .any(|w| w.contains("not injected into app")),
        "{:?}",
        o.warnings
    );
}

// === Windows pods ===

/// A one-container pod placed by `placement` (merged into its `spec`) and
/// asking for `feature`: a language key, or `sidecar`. The app's own
/// context is what a Windows pod may carry.
fn placed_pod(placement: &Value, feature: &str) -> Value {
    let key = match feature {
        "sidecar" => "sidecar.opentelemetry.io/inject".to_string(),
        lang => format!("instrumentation.opentelemetry.io/inject-{lang}"),
    };
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-0", "annotations": {key: "true"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/checkout:1.2.3",
            "securityContext": {"windowsOptions": {"runAsUserName": "ContainerUser"}}}]}
    });
    if let (Some(spec), Some(extra)) = (p["spec"].as_object_mut(), placement.as_object()) {
        spec.extend(extra.clone());
    }
    p
}

/// `requiredDuringScheduling…` node affinity, one term per list of
/// `kubernetes.io/os In` values.
fn os_affinity(terms: &[&[&str]]) -> Value {
    let terms: Vec<Value> = terms
        .iter()
        .map(|values| {
            json!({"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                {"key": "kubernetes.io/os", "operator": "In", "values": values}
            ]})
        })
        .collect();
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": terms}}}})
}

/// What the API server's `validateWindows` refuses on a Windows pod, set in
/// what the patch added or changed: container contexts of containers the
/// pod did not have (or changed ones), and the pod-level fields.
fn linux_only_fields_added(before: &Pod, after: &Pod) -> Vec<String> {
    use k8s_openapi::api::core::v1::{Container, SecurityContext};
    fn set(sc: &SecurityContext) -> Vec<&'static str> {
        [
            ("seLinuxOptions", sc.se_linux_options.is_some()),
            ("seccompProfile", sc.seccomp_profile.is_some()),
            ("appArmorProfile", sc.app_armor_profile.is_some()),
            ("capabilities", sc.capabilities.is_some()),
            (
                "readOnlyRootFilesystem",
                sc.read_only_root_filesystem.is_some(),
            ),
            ("privileged", sc.privileged.is_some()),
            (
                "allowPrivilegeEscalation",
                sc.allow_privilege_escalation.is_some(),
            ),
            ("procMount", sc.proc_mount.is_some()),
            ("runAsUser", sc.run_as_user.is_some()),
            ("runAsGroup", sc.run_as_group.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }
    let (Some(b), Some(a)) = (before.spec.as_ref(), after.spec.as_ref()) else {
        return vec!["spec missing".into()];
    };
    let all = |s: &k8s_openapi::api::core::v1::PodSpec| -> Vec<Container> {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
            .cloned()
            .collect()
    };
    let old = all(b);
    let mut found = Vec::new();
    for c in all(a) {
        let was = old.iter().find(|o| o.name == c.name);
        if was.is_some_and(|o| o.security_context == c.security_context) {
            continue;
        }
        for f in c.security_context.as_ref().map(set).unwrap_or_default() {
            found.push(format!("{}.securityContext.{f}", c.name));
        }
    }
    if a.security_context != b.security_context {
        found.push(format!("pod securityContext {:?}", a.security_context));
    }
    for (name, was, now) in [
        (
            "shareProcessNamespace",
            b.share_process_namespace,
            a.share_process_namespace,
        ),
        ("hostPID", b.host_pid, a.host_pid),
        ("hostIPC", b.host_ipc, a.host_ipc),
    ] {
        if was != now {
            found.push(format!("spec.{name}"));
        }
    }
    found
}

/// A pod bound for Windows nodes gets no Linux-only feature (every agent
/// but `sdk`, and the collector sidecar): each is `unsupported_os`, in
/// a warning, the status annotation, `skips_total` and `explain`, never a
/// denial; what it does get adds nothing the API server refuses on Windows.
/// A pod that may land on Linux is injected as any other.
#[rstest]
#[case::os_name_windows(json!({"os": {"name": "windows"}}), Some("spec.os.name: windows"))]
#[case::node_selector_windows(
    json!({"nodeSelector": {"kubernetes.io/os": "windows"}}),
    Some("nodeSelector kubernetes.io/os=windows")
)]
#[case::beta_node_selector_windows(
    json!({"nodeSelector": {"beta.kubernetes.io/os": "windows"}}),
    Some("nodeSelector beta.kubernetes.io/os=windows")
)]
#[case::affinity_windows_only(
    os_affinity(&[&["windows"], &["windows"]]),
    Some("required node affinity admits only kubernetes.io/os In [windows]")
)]
#[case::affinity_linux_and_windows(os_affinity(&[&["linux", "windows"]]), None)]
#[case::affinity_one_term_linux(os_affinity(&[&["windows"], &["linux"]]), None)]
#[case::os_name_linux_beats_selector(
    json!({"os": {"name": "linux"}, "nodeSelector": {"kubernetes.io/os": "windows"}}),
    None
)]
#[case::linux(json!({"nodeSelector": {"kubernetes.io/os": "linux"}}), None)]
#[case::none(json!({}), None)]
fn windows_pods_get_no_linux_only_feature(
    #[case] placement: Value,
    #[case] windows: Option<&str>,
    #[values("java", "python", "dotnet", "sdk", "sidecar")] feature: &str,
) {
    let p = placed_pod(&placement, feature);
    let mut config = Config::default();
    // The template, so `true` has a collector; deny, so a wrong reason shows.
    config.sidecar.defined = true;
    config.failure_mode = FailureMode::Deny;
    let o = outcome(&p, &config, &StaticView::new());
    let a = o.applied.as_ref().expect("applied");
    let sidecar = feature == "sidecar";
    let done = if sidecar {
        a.sidecar.is_some()
    } else {
        a.injected.iter().any(|i| i.language.key() == feature)
    };
    let neutral = feature == "sdk";
    let unsupported: Vec<_> = a
        .failures
        .iter()
        .filter(|f| f.reason == SkipReason::UnsupportedOs)
        .collect();
    assert!(o.denials.is_empty(), "never a denial: {:?}", o.denials);
    let Some(why) = windows.filter(|_| !neutral) else {
        assert!(done, "{feature} injected as before: {:?}", o.warnings);
        assert!(unsupported.is_empty(), "{unsupported:?}");
        if windows.is_some() {
            let back = pod(patched(&p, &o));
            assert_eq!(
                linux_only_fields_added(&pod(p.clone()), &back),
                Vec::<String>::new()
            );
        }
        return;
    };
    assert!(!done, "{feature} must not be injected on Windows");
    assert_eq!(unsupported.len(), 1, "{:?}", a.failures);
    let what = match feature {
        "sidecar" => "the sidecar otc-container is a Linux container".to_string(),
        lang => format!("the {lang} agent is a Linux init container"),
    };
    let warning =
        format!("otel-admission: {feature}: pod runs on Windows ({why}): {what}; not injected");
    assert!(
        o.warnings.contains(&warning),
        "{warning} in {:?}",
        o.warnings
    );
    // The status annotation, from the same failure.
    let doc = patched(&p, &o);
    let status: Value = serde_json::from_str(
        doc["metadata"]["annotations"]["otel-admission.io/status"]
            .as_str()
            .expect("status"),
    )
    .expect("json");
    assert_eq!(status["failures"], json!({feature: "unsupported_os"}));
    // Metrics: `mutate::tests` counts the same outcome.
    // explain.
    let text = crate::inject::manifest::explain(
        "pod.yaml",
        &[crate::inject::manifest::Report {
            index: 0,
            workload: "Pod/checkout-0".into(),
            namespace: NS.into(),
            location: "".into(),
            outcome: o.clone(),
            rules: Vec::new(),
            assumptions: Vec::new(),
            pod: None,
        }],
    );
    assert!(
        text.contains(&format!(
            "  {feature}: not injected (unsupported_os): {feature}: pod runs on Windows ({why})"
        )),
        "{text}"
    );
    // The patch, applied and read back as a Pod, adds nothing Windows refuses.
    let back = pod(doc);
    assert_eq!(
        linux_only_fields_added(&pod(p.clone()), &back),
        Vec::<String>::new()
    );
    let spec = back.spec.expect("spec");
    assert_eq!(spec.containers.len(), 1, "no otc-container");
    assert!(spec.init_containers.is_none(), "no agent init container");
}

/// A language and the sidecar on one Windows pod: `sdk` still gets its env,
/// probes and annotations are OS-neutral, and every Linux-only feature is
/// reported once, by its own name.
#[test]
fn windows_pod_keeps_the_os_neutral_features() {
    let p = json!({
        "metadata": {"name": "checkout-0", "annotations": {
            "instrumentation.opentelemetry.io/inject-java": "true",
            "instrumentation.opentelemetry.io/inject-sdk": "true",
            "instrumentation.opentelemetry.io/java-container-names": "app",
            "instrumentation.opentelemetry.io/sdk-container-names": "app",
            "sidecar.opentelemetry.io/inject": "true",
            "otel-admission.io/probes": "true"}},
        "spec": {"os": {"name": "windows"}, "containers": [{"name": "app", "image": "a:1",
            "ports": [{"name": "health", "containerPort": 8080}]}]}
    });
    let mut config = Config::default();
    config.sidecar.defined = true;
    let o = outcome(&p, &config, &StaticView::new());
    let a = o.applied.as_ref().expect("applied");
    let failed: Vec<(String, SkipReason)> = a
        .failures
        .iter()
        .map(|f| (f.feature.to_string(), f.reason))
        .collect();
    assert_eq!(
        failed,
        vec![
            ("java".to_string(), SkipReason::UnsupportedOs),
            ("sidecar".to_string(), SkipReason::UnsupportedOs)
        ]
    );
    assert_eq!(a.injected.len(), 1);
    assert_eq!(a.injected[0].language, Language::Sdk);
    assert!(!a.probes.is_empty(), "probes are OS-neutral");
    let doc = patched(&p, &o);
    let env = env_lines(container(&doc, "app"));
    assert!(
        env.iter().any(|e| e.starts_with("OTEL_SERVICE_NAME=")),
        "{env:?}"
    );
    // Endpoint is not the absent sidecar's localhost.
    assert!(!env.iter().any(|e| e.contains("localhost")), "{env:?}");
    assert_eq!(
        linux_only_fields_added(&pod(p.clone()), &pod(doc)),
        Vec::<String>::new()
    );
}

// === OTEL_RESOURCE_ATTRIBUTES encoding ===

/// Splits `OTEL_RESOURCE_ATTRIBUTES` as an SDK does (pairs on `,`, key and
/// value on the first `=`, values percent-decoded), failing on a fragment
/// that is not a pair.
fn sdk_parse(v: &str) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    }
    v.split(',')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("{kv:?} in {v}"));
            (k.to_string(), decode(v))
        })
        .collect()
}

fn resource_attributes_of(doc: &Value) -> String {
    env_lines(container(doc, "app"))
        .into_iter()
        .find_map(|e| {
            e.strip_prefix("OTEL_RESOURCE_ATTRIBUTES=")
                .map(str::to_string)
        })
        .expect("OTEL_RESOURCE_ATTRIBUTES")
}

/// `resource.opentelemetry.io/<attr>` values are percent-encoded as the
/// specification requires (W3C baggage octets, plus `%` and `=`), so
/// an SDK splitting on `,` and `=` reads back exactly the value given, and
/// a value without those characters is written unchanged.
#[rstest]
#[case::plain("checkout-team_1.2", "checkout-team_1.2")]
#[case::comma("a,b", "a%2Cb")]
#[case::equals("k=v", "k%3Dv")]
#[case::percent("100%", "100%25")]
#[case::already_encoded_is_literal("a%2Cb", "a%252Cb")]
#[case::space("two words", "two%20words")]
#[case::non_ascii("café ☕", "caf%C3%A9%20%E2%98%95")]
#[case::quote_semicolon_backslash("\"a;b\\", "%22a%3Bb%5C")]
#[case::baggage_octets_kept("$(A)/b:c?d@e[f]+~!#&'*", "$(A)/b:c?d@e[f]+~!#&'*")]
fn resource_attribute_values_are_percent_encoded(#[case] value: &str, #[case] encoded: &str) {
    let p = simple(
        json!({"instrumentation.opentelemetry.io/inject-python": "true",
            "resource.opentelemetry.io/team": value}),
        json!({}),
    );
    let o = outcome(&p, &Config::default(), &StaticView::new());
    let ra = resource_attributes_of(&patched(&p, &o));
    assert!(
        ra.split(',').any(|kv| kv == format!("team={encoded}")),
        "team={encoded} in {ra}"
    );
    let read = sdk_parse(&ra);
    assert_eq!(read.get("team").map(String::as_str), Some(value), "{ra}");
    assert_eq!(
        read.get("k8s.container.name").map(String::as_str),
        Some("app")
    );
    assert_eq!(read.len(), ra.split(',').count(), "no stray fragment: {ra}");
}

/// The Instrumentation's `spec.resource.resourceAttributes` go through the
/// same encoding; the user's own variable is left as written.
#[test]
fn instrumentation_resource_attributes_are_percent_encoded() {
    let view = StaticView::new().with_instrumentation(
        inst(
            NS,
            "default",
            json!({"resource": {"resourceAttributes": {"deployment.environment": "eu,prod=1"}}}),
        ),
        NS,
    );
    let p = json!({
        "metadata": {"name": "checkout-0",
            "annotations": {"instrumentation.opentelemetry.io/inject-sdk": "true"}},
        "spec": {"containers": [{"name": "app", "image": "a:1",
            "env": [{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "owner=a%2Cb"}]}]}
    });
    let o = outcome(&p, &Config::default(), &view);
    let ra = resource_attributes_of(&patched(&p, &o));
    assert!(ra.starts_with("owner=a%2Cb,"), "{ra}");
    assert!(
        ra.contains(",deployment.environment=eu%2Cprod%3D1,"),
        "{ra}"
    );
    let read = sdk_parse(&ra);
    assert_eq!(read["deployment.environment"], "eu,prod=1");
    assert_eq!(read["owner"], "a,b");
}

// === A word for every mistake ===

const JVM: &str = "instrumentation.opentelemetry.io/inject-jvm";

/// A key under the operator's or our prefixes that neither reads is a
/// warning naming the key meant, wherever decide reads keys from: the
/// pod's labels and annotations and the namespace's.
#[rstest]
#[case::pod_annotation(
    simple(json!({JVM: "true"}), json!({})),
    ns_meta(&[], &[]),
    "otel-admission: unknown annotation instrumentation.opentelemetry.io/inject-jvm; did you mean instrumentation.opentelemetry.io/inject-java?"
)]
#[case::pod_label(
    simple(json!({}), json!({"otel-admission.io/probe": "true"})),
    ns_meta(&[], &[]),
    "otel-admission: unknown label otel-admission.io/probe; did you mean otel-admission.io/probes?"
)]
#[case::sidecar_prefix(
    simple(json!({"sidecar.opentelemetry.io/injct": "true"}), json!({})),
    ns_meta(&[], &[]),
    "otel-admission: unknown annotation sidecar.opentelemetry.io/injct; did you mean sidecar.opentelemetry.io/inject?"
)]
#[case::operator_key_under_our_prefix(
    simple(json!({"otel-admission.io/inject-python": "true"}), json!({})),
    ns_meta(&[], &[]),
    "otel-admission: unknown annotation otel-admission.io/inject-python; did you mean instrumentation.opentelemetry.io/inject-python?"
)]
#[case::namespace_label(
    simple(json!({}), json!({})),
    ns_meta(&[("otel-admission.io/injection", "enabled")], &[]),
    "otel-admission: unknown label otel-admission.io/injection on namespace shop; did you mean otel-admission.io/inject?"
)]
#[case::namespace_annotation(
    simple(json!({}), json!({})),
    ns_meta(&[], &[(JVM, "true")]),
    "otel-admission: unknown annotation instrumentation.opentelemetry.io/inject-jvm on namespace shop; did you mean instrumentation.opentelemetry.io/inject-java?"
)]
#[case::nothing_close(
    simple(json!({"instrumentation.opentelemetry.io/tracing": "on"}), json!({})),
    ns_meta(&[], &[]),
    "otel-admission: unknown annotation instrumentation.opentelemetry.io/tracing; neither otel-admission nor the OpenTelemetry Operator reads it"
)]
fn unknown_keys_are_named_with_the_key_meant(
    #[case] p: Value,
    #[case] ns: NamespaceMeta,
    #[case] want: &str,
) {
    let view = StaticView::new().with_namespace(NS, ns);
    let o = outcome(&p, &Config::default(), &view);
    assert_eq!(
        o.warnings.first().map(String::as_str),
        Some(want),
        "{:?}",
        o.warnings
    );
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    // Nothing selects the pod: the typo is the only word it gets.
    assert_eq!(o.skip.map(|s| s.reason), Some(SkipReason::NotSelected));
}

/// The warnings change nothing that is injected: the same patch with and
/// without a misspelt key beside a right one.
#[test]
fn unknown_keys_change_nothing_injected() {
    let view = StaticView::new();
    let right = simple(json!({PY: "true"}), json!({"app": "checkout"}));
    let both = simple(
        json!({PY: "true", JVM: "true", "otel-admission.io/probs": "true"}),
        json!({"app": "checkout", "sidecar.opentelemetry.io/inject-sidecar": "x"}),
    );
    let a = outcome(&right, &Config::default(), &view);
    let b = outcome(&both, &Config::default(), &view);
    let ops = |o: &Outcome| {
        serde_json::to_value(o.patch().expect("patch").to_json_patch().expect("json")).expect("v")
    };
    assert_eq!(ops(&a), ops(&b));
    assert_eq!(b.warnings.len(), a.warnings.len() + 3, "{:?}", b.warnings);
    assert_eq!(b.warnings[3..], a.warnings[..]);
}

/// Known keys (ours, the operator's, the open families) get no warning, and
/// an excluded namespace's pods get none at all.
#[test]
fn known_keys_and_excluded_namespaces_get_no_unknown_key_warning() {
    let p = simple(
        json!({
            "instrumentation.opentelemetry.io/inject-sdk": "false",
            "instrumentation.opentelemetry.io/container-names": "app",
            "instrumentation.opentelemetry.io/otel-go-auto-target-exe": "/app",
            "instrumentation.opentelemetry.io/otel-dotnet-auto-runtime": "linux-x64",
            "instrumentation.opentelemetry.io/otel-python-platform": "glibc",
            "instrumentation.opentelemetry.io/apache-httpd-container-names": "app",
            "instrumentation.opentelemetry.io/inject-nginx-container-names": "app",
            "instrumentation.opentelemetry.io/deno-container-names": "app",
            "resource.opentelemetry.io/team.name": "shop",
            "otel-admission.io/status": "{}",
        }),
        json!({"otel-admission.io/injected": "abc", "sidecar.opentelemetry.io/injected": "shop.c"}),
    );
    let o = outcome(&p, &Config::default(), &StaticView::new());
    assert!(
        !o.warnings.iter().any(|w| w.contains("unknown")),
        "{:?}",
        o.warnings
    );
    let mut config = Config::default();
    config.excluded_namespaces = vec![NS.into()];
    let o = outcome(
        &simple(json!({JVM: "true"}), json!({})),
        &config,
        &StaticView::new(),
    );
    assert_eq!(
        o.skip.map(|s| s.reason),
        Some(SkipReason::ExcludedNamespace)
    );
    assert_eq!(o.warnings, Vec::<String>::new());
}

fn offline(text: &str, view: &StaticView, as_pods: bool) -> crate::inject::manifest::Processed {
    let config = Config::default();
    let inputs = crate::inject::manifest::Inputs {
        config: &config,
        view,
        default_namespace: NS,
        server_version: None,
        given: crate::inject::manifest::Given::default(),
        as_pods,
    };
    crate::inject::manifest::process(text, "m.yaml", &inputs).expect("process")
}

/// The README's usual mistake, offline: an injection key on the workload's
/// own metadata reaches no pod; the warning says where to move it, and a
/// `not_selected` skip names it. A key the template has too, and a key
/// for the workload itself (`rollout`), are left alone.
#[rstest]
#[case::deployment_annotation(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout\n  annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\nspec:\n  template:\n    spec: {containers: [{name: app, image: a}]}\n",
    &["otel-admission: instrumentation.opentelemetry.io/inject-python is on Deployment/checkout's own metadata; move it to spec.template.metadata (the pod template), where it reaches the pods"],
    Some("no annotation, label, namespace setting or config rule selects this pod; instrumentation.opentelemetry.io/inject-python is on Deployment/checkout's own metadata, not on spec.template.metadata")
)]
#[case::statefulset_label(
    "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  labels: {sidecar.opentelemetry.io/inject: \"true\"}\nspec:\n  template:\n    spec: {containers: [{name: app, image: a}]}\n",
    &["otel-admission: sidecar.opentelemetry.io/inject is on StatefulSet/db's own metadata; move it to spec.template.metadata (the pod template), where it reaches the pods"],
    Some("no annotation, label, namespace setting or config rule selects this pod; sidecar.opentelemetry.io/inject is on StatefulSet/db's own metadata, not on spec.template.metadata")
)]
#[case::cronjob_job_template(
    "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  jobTemplate:\n    metadata:\n      annotations: {instrumentation.opentelemetry.io/inject-java: \"true\"}\n    spec:\n      template:\n        spec: {containers: [{name: job, image: a}]}\n",
    &["otel-admission: instrumentation.opentelemetry.io/inject-java is on CronJob/nightly's spec.jobTemplate.metadata; move it to spec.jobTemplate.spec.template.metadata (the pod template), where it reaches the pods"],
    Some("no annotation, label, namespace setting or config rule selects this pod; instrumentation.opentelemetry.io/inject-java is on CronJob/nightly's spec.jobTemplate.metadata, not on spec.jobTemplate.spec.template.metadata")
)]
#[case::misspelt_on_the_workload(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout\n  annotations: {instrumentation.opentelemetry.io/inject-jvm: \"true\"}\nspec:\n  template:\n    spec: {containers: [{name: app, image: a}]}\n",
    &["otel-admission: unknown annotation instrumentation.opentelemetry.io/inject-jvm on Deployment/checkout's own metadata; did you mean instrumentation.opentelemetry.io/inject-java?"],
    Some("no annotation, label, namespace setting or config rule selects this pod")
)]
#[case::also_in_the_template(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout\n  annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\nspec:\n  template:\n    metadata:\n      annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\n    spec: {containers: [{name: app, image: a}]}\n",
    &["otel-admission: injected python into app (Instrumentation config defaults)"],
    None
)]
#[case::rollout_belongs_on_the_workload(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout\n  labels: {otel-admission.io/rollout: \"false\", app: checkout}\nspec:\n  template:\n    spec: {containers: [{name: app, image: a}]}\n",
    &[],
    Some("no annotation, label, namespace setting or config rule selects this pod")
)]
#[case::a_pod_is_its_own_template(
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {instrumentation.opentelemetry.io/inject-python: \"true\"}\nspec: {containers: [{name: app, image: a}]}\n",
    &["otel-admission: injected python into app (Instrumentation config defaults)"],
    None
)]
fn keys_on_the_workloads_own_metadata_are_named(
    #[case] manifest: &str,
    #[case] warnings: &[&str],
    #[case] skip: Option<&str>,
) {
    let processed = offline(manifest, &StaticView::new(), false);
    let r = &processed.reports[0];
    assert_eq!(r.outcome.warnings, warnings);
    assert_eq!(r.outcome.skip.as_ref().map(|s| s.message.as_str()), skip);
    if let Some(skip) = skip {
        let text = crate::inject::manifest::explain("m.yaml", &processed.reports);
        assert!(
            text.contains(&format!("  nothing injected (not_selected): {skip}\n")),
            "{text}"
        );
    }
}

/// `explain` says what it assumed for each input the user did not give,
/// when it bears on the workload, and nothing when it was given.
#[rstest]
#[case::nothing_given(
    simple(json!({PY: "true"}), json!({})),
    false,
    false,
    &[
        "namespace shop: no --namespace given; assumed no labels or annotations, so namespace opt-in and namespaceSelector rules were not evaluated against real labels",
        "Instrumentations: no --instrumentation given; assumed none in namespace shop, so \"true\" uses the config defaults and a named Instrumentation is not found",
    ]
)]
#[case::not_selected_needs_no_instrumentation(
    simple(json!({}), json!({})),
    false,
    false,
    &["namespace shop: no --namespace given; assumed no labels or annotations, so namespace opt-in and namespaceSelector rules were not evaluated against real labels"]
)]
#[case::everything_given(simple(json!({PY: "true"}), json!({})), true, true, &[])]
#[case::another_namespace(
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "payments", "annotations": {PY: "true"}},
        "spec": {"containers": [{"name": "app", "image": "a"}]}}),
    true,
    true,
    &[
        "namespace payments: not in the --namespace file; assumed no labels or annotations, so namespace opt-in and namespaceSelector rules were not evaluated against real labels",
        "Instrumentations: none in the --instrumentation files for namespace payments; assumed none in namespace payments, so \"true\" uses the config defaults and a named Instrumentation is not found",
    ]
)]
#[case::sidecar_without_collectors(
    simple(json!({"sidecar.opentelemetry.io/inject": "true"}), json!({})),
    true,
    false,
    &["OpenTelemetryCollectors: no --instrumentation given (it takes OpenTelemetryCollectors too); assumed none in namespace shop, so \"true\" uses the config's sidecar template, if it has one"]
)]
#[case::sidecar_mode_unknown_offline(
    simple(json!({"sidecar.opentelemetry.io/inject": "shop/col"}), json!({})),
    true,
    true,
    &["cluster version: unknown offline; sidecar.native: auto taken as native (Kubernetes 1.29 or later); on an older cluster the sidecar is a regular container"]
)]
fn explain_says_what_it_assumed(
    #[case] p: Value,
    #[case] namespaces: bool,
    #[case] instrumentations: bool,
    #[case] want: &[&str],
) {
    let mut view = StaticView::new();
    if namespaces {
        view = view.with_namespace(NS, ns_meta(&[], &[]));
    }
    if instrumentations {
        view = view
            .with_instrumentation(inst(NS, "default", json!({})), NS)
            .with_collector(
                crate::otelcol::Collector::from_object(
                    &json!({"metadata": {"name": "col", "namespace": NS}, "spec": {"mode": "sidecar"}}),
                    NS,
                )
                .expect("collector"),
            );
    }
    let config = Config::default();
    let inputs = crate::inject::manifest::Inputs {
        config: &config,
        view: &view,
        default_namespace: NS,
        server_version: None,
        given: crate::inject::manifest::Given {
            namespaces,
            instrumentations,
        },
        as_pods: false,
    };
    let text = serde_json::to_string(&p).expect("json");
    let processed = crate::inject::manifest::process(&text, "m.yaml", &inputs).expect("process");
    let r = &processed.reports[0];
    assert_eq!(r.assumptions, want);
    let text = crate::inject::manifest::explain("m.yaml", &processed.reports);
    if want.is_empty() {
        assert!(!text.contains("  assumed:"), "{text}");
    } else {
        assert!(
            text.contains(&format!("  assumed:\n    - {}\n", want[0])),
            "{text}"
        );
    }
    // With the version known, there is nothing to assume about it.
    let known = crate::inject::manifest::Inputs {
        server_version: Some((1, 33)),
        ..inputs
    };
    let text = serde_json::to_string(&p).expect("json");
    let r = crate::inject::manifest::process(&text, "m.yaml", &known).expect("process");
    assert!(
        !r.reports[0]
            .assumptions
            .iter()
            .any(|a| a.starts_with("cluster version")),
        "{:?}",
        r.reports[0].assumptions
    );
}

/// The service is named from the Operator's resource map, not only from the
/// owner: a `resource.opentelemetry.io/k8s.deployment.name` annotation or an
/// Instrumentation's `resource.resourceAttributes` names it, unless the
/// container's own `OTEL_RESOURCE_ATTRIBUTES` sets that key; a user value
/// ending in `,` gets no second one.
#[test]
fn the_service_is_named_from_the_resource_map_as_the_operator_does() {
    let view = StaticView::new().with_instrumentation(
        inst(
            NS,
            "res",
            json!({"resource": {"resourceAttributes": {"k8s.statefulset.name": "from-crd"}}}),
        ),
        NS,
    );
    let named = |p: &Value| {
        let doc = patched(p, &outcome(p, &Config::default(), &view));
        env_lines(container(&doc, "app"))
    };
    let java = json!({"instrumentation.opentelemetry.io/inject-java": "true"});
    let mut p = simple(java.clone(), json!({}));
    assert!(named(&p).contains(&"OTEL_SERVICE_NAME=from-crd".to_string()));
    p["metadata"]["annotations"]["resource.opentelemetry.io/k8s.deployment.name"] =
        json!("from-annotation");
    assert!(named(&p).contains(&"OTEL_SERVICE_NAME=from-annotation".to_string()));
    let mut own = simple(java, json!({}));
    own["spec"]["containers"][0]["env"] =
        json!([{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "k8s.statefulset.name=mine,"}]);
    let lines = named(&own);
    assert!(
        lines.contains(&"OTEL_SERVICE_NAME=checkout-0".to_string()),
        "{lines:?}"
    );
    let ra = lines
        .iter()
        .find(|l| l.starts_with("OTEL_RESOURCE_ATTRIBUTES="))
        .expect("resource attributes");
    assert!(
        ra.starts_with("OTEL_RESOURCE_ATTRIBUTES=k8s.statefulset.name=mine,k8s."),
        "{ra}"
    );
    assert!(!ra.contains(",,"), "{ra}");
}
