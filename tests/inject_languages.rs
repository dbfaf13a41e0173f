//! Issue 29: the Operator's per-language switches (`languages.<lang>`, its
//! `--enable-<lang>-instrumentation`) and `multiInstrumentation` (its
//! `--enable-multi-instrumentation`), through the one core every caller
//! runs (`inject::outcome::run`): the skip reason, the warning naming the
//! switch, the status annotation and what the pod gets.

use k8s_openapi::api::core::v1::Pod;
use otel_admission::config::{Config, FailureMode, LanguageSwitches};
use otel_admission::inject::cluster_view::StaticView;
use otel_admission::inject::context::Context;
use otel_admission::inject::outcome::{Outcome, run};
use otel_admission::inject::plan::SkipReason;
use otel_admission::language::Language;
use serde_json::{Value, json};

const NS: &str = "shop";

fn inject_key(lang: Language) -> String {
    format!("instrumentation.opentelemetry.io/inject-{}", lang.key())
}

/// A pod asking for `langs` (each `"true"`), with what each needs to be
/// injected: PHP its API version, Go its target executable; `names` adds
/// `<lang>-container-names` per language, one container each.
fn pod_asking(langs: &[Language], names: bool) -> Value {
    let mut ann = serde_json::Map::new();
    let mut containers = Vec::new();
    for (i, l) in langs.iter().enumerate() {
        ann.insert(inject_key(*l), json!("true"));
        match l {
            Language::Php => {
                ann.insert(
                    "instrumentation.opentelemetry.io/otel-php-api-version".into(),
                    json!("20240924"),
                );
            }
            Language::Go => {
                ann.insert(
                    "instrumentation.opentelemetry.io/otel-go-auto-target-exe".into(),
                    json!("/app/server"),
                );
            }
            _ => {}
        }
        if names {
            let key = match l {
                Language::Nginx => {
                    "instrumentation.opentelemetry.io/inject-nginx-container-names".to_string()
                }
                other => format!(
                    "instrumentation.opentelemetry.io/{}-container-names",
                    other.key()
                ),
            };
            ann.insert(key, json!(format!("app{i}")));
            containers.push(json!({"name": format!("app{i}"), "image": "app:1"}));
        }
    }
    if containers.is_empty() {
        containers.push(json!({"name": "app", "image": "app:1"}));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": NS, "annotations": ann},
        "spec": {"containers": containers}
    })
}

fn outcome(pod: &Value, config: &Config, view: &StaticView) -> Outcome {
    let pod: Pod = serde_json::from_value(pod.clone()).expect("pod");
    run(
        &pod,
        &Context {
            namespace: NS,
            config,
            view,
            owner_hint: None,
            server_version: None,
        },
    )
}

fn with(languages: LanguageSwitches) -> Config {
    Config {
        languages,
        ..Config::default()
    }
}

fn off(lang: Language) -> LanguageSwitches {
    let mut s = LanguageSwitches::all();
    match lang {
        Language::Java => s.java = false,
        Language::Nodejs => s.nodejs = false,
        Language::Python => s.python = false,
        Language::Dotnet => s.dotnet = false,
        Language::Go => s.go = false,
        Language::ApacheHttpd => s.apache_httpd = false,
        Language::Nginx => s.nginx = false,
        Language::Php => s.php = false,
        Language::Ruby => s.ruby = false,
        Language::Sdk => unreachable!("sdk has no switch"),
    }
    s
}

fn injected(o: &Outcome) -> Vec<String> {
    o.applied
        .iter()
        .flat_map(|a| a.injected.iter())
        .map(|i| i.language.to_string())
        .collect()
}

fn failures(o: &Outcome) -> Vec<(String, SkipReason)> {
    o.applied
        .iter()
        .flat_map(|a| a.failures.iter())
        .map(|f| (f.feature.to_string(), f.reason))
        .collect()
}

/// The status annotation the patch writes.
fn status(o: &Outcome) -> Value {
    let a = o.applied.as_ref().expect("applied");
    let ann = a.pod.metadata.annotations.as_ref().expect("annotations");
    serde_json::from_str(&ann["otel-admission.io/status"]).expect("status json")
}

/// Each language with its switch on is injected, and with it off is not:
/// a `language_disabled` failure, a warning naming the key and the
/// Operator's flag, the status annotation's `failures`, nothing added to
/// the containers, and never a denial (even with `failureMode: deny`).
#[rstest::rstest]
#[case::java(Language::Java, "java", "--enable-java-instrumentation")]
#[case::nodejs(Language::Nodejs, "nodejs", "--enable-nodejs-instrumentation")]
#[case::python(Language::Python, "python", "--enable-python-instrumentation")]
#[case::dotnet(Language::Dotnet, "dotnet", "--enable-dotnet-instrumentation")]
#[case::go(Language::Go, "go", "--enable-go-instrumentation")]
#[case::apache_httpd(
    Language::ApacheHttpd,
    "apacheHttpd",
    "--enable-apache-httpd-instrumentation"
)]
#[case::nginx(Language::Nginx, "nginx", "--enable-nginx-instrumentation")]
#[case::php(Language::Php, "php", "--enable-php-instrumentation")]
#[case::ruby(Language::Ruby, "ruby", "--enable-ruby-instrumentation")]
fn each_language_follows_its_switch(#[case] lang: Language, #[case] key: &str, #[case] flag: &str) {
    let pod = pod_asking(&[lang], false);
    let view = StaticView::new();

    let on = outcome(&pod, &with(LanguageSwitches::all()), &view);
    assert_eq!(
        injected(&on),
        [lang.to_string()],
        "{lang} on: {:?}",
        on.warnings
    );
    assert!(failures(&on).is_empty(), "{:?}", failures(&on));

    let mut config = with(off(lang));
    config.failure_mode = FailureMode::Deny;
    let o = outcome(&pod, &config, &view);
    assert!(injected(&o).is_empty(), "{lang} off: {:?}", injected(&o));
    assert_eq!(
        failures(&o),
        [(lang.to_string(), SkipReason::LanguageDisabled)]
    );
    let want = format!(
        "otel-admission: {lang}: not injected: languages.{key} is off (the Operator's {flag}); set languages.{key}: true in the config to inject it"
    );
    assert!(
        o.warnings.contains(&want),
        "{want:?} not in {:?}",
        o.warnings
    );
    assert!(o.denials.is_empty(), "never denied: {:?}", o.denials);
    assert_eq!(
        status(&o)["failures"],
        json!({lang.to_string(): "language_disabled"})
    );
    let spec = o
        .applied
        .as_ref()
        .expect("applied")
        .pod
        .spec
        .clone()
        .expect("spec");
    assert!(spec.init_containers.is_none(), "no agent init container");
    assert_eq!(spec.containers.len(), 1, "no agent sidecar");
    assert!(spec.containers[0].env.is_none(), "no env");
}

/// The Operator's defaults: Go and nginx off, the others on. The Go case is
/// the one that matters: a pod with inject-go and its target executable
/// gets no privileged sidecar from the default (and the shipped) config.
#[rstest::rstest]
#[case::java(Language::Java, true)]
#[case::nodejs(Language::Nodejs, true)]
#[case::python(Language::Python, true)]
#[case::dotnet(Language::Dotnet, true)]
#[case::go_is_off(Language::Go, false)]
#[case::apache_httpd(Language::ApacheHttpd, true)]
#[case::nginx_is_off(Language::Nginx, false)]
#[case::php(Language::Php, true)]
#[case::ruby(Language::Ruby, true)]
#[case::sdk_has_no_switch(Language::Sdk, true)]
fn defaults_are_the_operators(#[case] lang: Language, #[case] on: bool) {
    let shipped = Config::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base/config.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shipped.languages, LanguageSwitches::default());
    assert!(shipped.multi_instrumentation);
    assert!(Config::default().multi_instrumentation);
    let pod = pod_asking(&[lang], false);
    for config in [Config::default(), shipped] {
        assert_eq!(config.languages.enabled(lang), on, "{lang}");
        let o = outcome(&pod, &config, &StaticView::new());
        if on {
            assert_eq!(injected(&o), [lang.to_string()], "{lang}: {:?}", o.warnings);
        } else {
            assert!(injected(&o).is_empty(), "{lang}");
            assert_eq!(
                failures(&o),
                [(lang.to_string(), SkipReason::LanguageDisabled)]
            );
            let spec = o
                .applied
                .as_ref()
                .expect("applied")
                .pod
                .spec
                .clone()
                .expect("spec");
            assert!(
                spec.containers
                    .iter()
                    .all(|c| c.security_context.is_none() && c.name == "app"),
                "{lang}: no privileged sidecar: {:?}",
                spec.containers
            );
            assert!(spec.share_process_namespace.is_none(), "{lang}");
        }
    }
}

/// `multiInstrumentation: false`: a pod asking for more than one language
/// (named containers or not, `sdk` counting) gets none of them, each a
/// `language_disabled` failure naming the switch; one language is
/// unaffected, and a disabled language does not count.
#[rstest::rstest]
#[case::two_named(&[Language::Java, Language::Python], true, &[], &["java", "python"])]
#[case::two_unnamed(&[Language::Java, Language::Python], false, &[], &["java", "python"])]
#[case::sdk_counts(&[Language::Nodejs, Language::Sdk], true, &[], &["nodejs", "sdk"])]
#[case::one_is_fine(&[Language::Python], false, &["python"], &[])]
#[case::a_disabled_one_does_not_count(&[Language::Java, Language::Go], true, &["java"], &[])]
fn multi_instrumentation_off_refuses_several(
    #[case] langs: &[Language],
    #[case] names: bool,
    #[case] want_injected: &[&str],
    #[case] want_refused: &[&str],
) {
    let config = Config {
        multi_instrumentation: false,
        ..Config::default()
    };
    let pod = pod_asking(langs, names);
    let o = outcome(&pod, &config, &StaticView::new());
    assert_eq!(injected(&o), want_injected, "{:?}", o.warnings);
    let refused: Vec<String> = failures(&o)
        .into_iter()
        .filter(|(_, r)| *r == SkipReason::LanguageDisabled)
        .map(|(f, _)| f)
        .filter(|f| f != "go")
        .collect();
    assert_eq!(refused, want_refused);
    for l in want_refused {
        assert!(
            o.warnings.iter().any(|w| w.starts_with(&format!(
                "otel-admission: {l}: not injected: the pod asks for several languages ("
            )) && w.contains(
                "multiInstrumentation is off (the Operator's --enable-multi-instrumentation=false)"
            )),
            "{l}: {:?}",
            o.warnings
        );
    }
    // With the switch on (the default), the same pod with names gets them all.
    if names {
        let o = outcome(&pod, &Config::default(), &StaticView::new());
        let on: Vec<String> = langs
            .iter()
            .filter(|l| Config::default().languages.enabled(**l))
            .map(|l| l.to_string())
            .collect();
        assert_eq!(injected(&o), on);
    }
}

/// A config rule naming a disabled language: the switch wins (the
/// Operator's flag is global). The rule's other languages are injected.
#[rstest::rstest]
#[case::go_by_default(
    "rules: [{name: r, namespaceSelector: {}, inject: {languages: [go]}}]",
    &[],
    &["go"]
)]
#[case::nginx_by_default(
    "rules: [{name: r, namespaceSelector: {}, inject: {languages: [nginx]}}]",
    &[],
    &["nginx"]
)]
#[case::java_switched_off(
    "languages: {java: false}\nrules: [{name: r, namespaceSelector: {}, inject: {languages: [java]}}]",
    &[],
    &["java"]
)]
#[case::the_others_still_apply(
    "rules: [{name: r, namespaceSelector: {}, inject: {languages: [sdk, go]}}]",
    &["sdk"],
    &["go"]
)]
#[case::switched_on_the_rule_applies(
    "languages: {nginx: true}\nrules: [{name: r, namespaceSelector: {}, inject: {languages: [nginx]}}]",
    &["nginx"],
    &[]
)]
fn rules_naming_a_disabled_language(
    #[case] yaml: &str,
    #[case] want_injected: &[&str],
    #[case] want_disabled: &[&str],
) {
    let config = Config::from_yaml(yaml, "t").unwrap_or_else(|e| panic!("{e}"));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": NS,
            "annotations": {"instrumentation.opentelemetry.io/otel-go-auto-target-exe": "/app/server"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    });
    let o = outcome(&pod, &config, &StaticView::new());
    assert_eq!(injected(&o), want_injected, "{:?}", o.warnings);
    let disabled: Vec<String> = failures(&o)
        .into_iter()
        .filter(|(_, r)| *r == SkipReason::LanguageDisabled)
        .map(|(f, _)| f)
        .collect();
    assert_eq!(disabled, want_disabled);
}

/// `languages` takes only the known keys, each a bool; a partial section
/// keeps the other defaults.
#[rstest::rstest]
#[case::typo("languages: {golang: true}", "unknown field `languages.golang`")]
#[case::not_a_bool("languages: {go: maybe}", "languages.go")]
#[case::kebab_case("languages: {apache-httpd: false}", "did you mean `apacheHttpd`?")]
#[case::multi_not_a_bool("multiInstrumentation: sometimes", "multiInstrumentation")]
fn bad_switches_name_their_key(#[case] yaml: &str, #[case] want: &str) {
    let err = Config::from_yaml(yaml, "t").expect_err(yaml).to_string();
    assert!(err.contains(want), "{yaml}: {err}");
}

#[test]
fn a_partial_languages_section_keeps_the_other_defaults() {
    let c = Config::from_yaml("languages: {go: true}", "t").expect("valid");
    assert_eq!(
        c.languages,
        LanguageSwitches {
            go: true,
            ..LanguageSwitches::default()
        }
    );
}

/// Auto-detection follows the switches too: a detected language that is
/// off is `language_disabled`, not injected.
#[rstest::rstest]
#[case::detected_and_on("", &["python"], &[])]
#[case::detected_but_off("languages: {python: false}\n", &[], &["python"])]
fn auto_detection_follows_the_switches(
    #[case] switches: &str,
    #[case] want_injected: &[&str],
    #[case] want_disabled: &[&str],
) {
    let yaml = format!(
        "{switches}rules: [{{name: r, namespaceSelector: {{}}, inject: {{languages: [auto]}}}}]"
    );
    let config = Config::from_yaml(&yaml, "t").unwrap_or_else(|e| panic!("{e}"));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": NS},
        "spec": {"containers": [{"name": "app", "image": "python:3.12"}]}
    });
    let o = outcome(&pod, &config, &StaticView::new());
    assert_eq!(injected(&o), want_injected, "{:?}", o.warnings);
    let disabled: Vec<String> = failures(&o)
        .into_iter()
        .filter(|(_, r)| *r == SkipReason::LanguageDisabled)
        .map(|(f, _)| f)
        .collect();
    assert_eq!(disabled, want_disabled);
}
