//! Who gets what (SPEC §4): a pure function from the pod, its namespace, the
//! config and the known Instrumentations to a [`Plan`] or a [`Skip`].
//!
//! # Precedence
//!
//! Hard exclusions come first and apply to the whole pod:
//!
//! | # | condition                                                          | outcome              |
//! |---|--------------------------------------------------------------------|----------------------|
//! | 1 | namespace in `excludedNamespaces` or `server.namespace`             | `excluded_namespace` |
//! | 2 | pod label or annotation `otel-admission.io/inject: "false"`        | `opted_out`          |
//! | 3 | mirror/static pod (annotation `kubernetes.io/config.mirror`)       | `opted_out`          |
//! | 4 | namespace label `otel-admission.io/inject: disabled` (or `false`)  | `opted_out`          |
//! | 5 | pod has `otel-admission.io/status`, or the operator injected it    | `already_injected`   |
//!
//! Then, separately for every language, the pod value (label, else annotation
//! `instrumentation.opentelemetry.io/inject-<lang>`) and the namespace value
//! (label, else annotation) combine with the operator's `annotationValue`:
//!
//! | # | pod value | namespace value | result                              |
//! |---|-----------|-----------------|-------------------------------------|
//! | 6 | —         | —               | config rules, first match wins      |
//! | 7 | —         | any `v`         | `v` (namespace)                     |
//! | 8 | `false`   | any             | not injected (pod)                  |
//! | 9 | `<name>`  | any             | `<name>` (pod)                      |
//! |10 | `true`    | —               | `true` (pod)                        |
//! |11 | `true`    | `false`         | `true` (pod)                        |
//! |12 | `true`    | `true`          | `true` (namespace)                  |
//! |13 | `true`    | `<name>`        | `<name>` (namespace refines)        |
//!
//! Rules (row 6): a rule matches when its `podSelector` matches the pod's
//! labels and its `namespaceSelector` matches the namespace's labels. A rule
//! **without** a `namespaceSelector` matches only namespaces labelled
//! `otel-admission.io/inject: enabled`: that label is how a namespace opts in
//! to "the matching rules from the config" (SPEC §4.3). The same precedence
//! applies to `container-names`, `<lang>-container-names`,
//! `otel-python-platform` and `otel-dotnet-auto-runtime`; `otel-go-auto-target-exe`
//! is read from pod annotations only, as the operator does.
//!
//! Auto-detection (SPEC §4) is opt-in only: `otel-admission.io/inject-auto:
//! "true"` (pod, then namespace, same precedence) or a matching rule listing
//! `auto`. It adds the one language [`crate::inject::detect`] finds in the
//! target containers, unless a setting above already decided that language;
//! none or several found is reported as `not_selected`, never denied.
//!
//! The pod features follow the same pod/namespace combination (rows 7–13),
//! then the matching rule's flag; `false` only prevents injection:
//!
//! | # | key (pod, then namespace)              | value            | result                                        |
//! |---|----------------------------------------|------------------|-----------------------------------------------|
//! |14 | `sidecar.opentelemetry.io/inject`      | `true`           | collector with the config's source            |
//! |15 | `sidecar.opentelemetry.io/inject`      | `<name>`, `<ns>/<name>` | ConfigMap `<name>`; another ns: `invalid_annotation` |
//! |16 | `sidecar.opentelemetry.io/inject`      | `false`          | no sidecar; an existing `otc-container` stays |
//! |17 | `otel-admission.io/probes`             | `true`/`false`   | probes on/off; other: `invalid_annotation`   |
//! |18 | `otel-admission.io/istio`              | `true`/`false`   | annotations on/off; other: `invalid_annotation` |
//! |19 | none of the above                      | —                | rule `sidecar`/`probes`/`annotations: true`   |
//!
//! A pod that already has an `otc-container` gets no second one
//! (`already_injected` for the sidecar feature). `sidecar.native: auto` is
//! native when [`Context::server_version`] is ≥ 1.29 or unknown.
//!
//! Instrumentation values: `true` takes the namespace's only Instrumentation,
//! the config `defaults` when it has none (the operator fails instead), and
//! skips as `ambiguous_instrumentation` when it has several; `<name>` and
//! `<ns>/<name>` look it up, `no_instrumentation` when unknown.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::config::{CollectorConfigSource, Config, NativeSidecar, Rule};
use crate::inject::cluster_view::{ClusterView, NamespaceMeta};
use crate::inject::language::Language;
use crate::inject::plan::{
    AnnotationsPlan, CollectorSource, Decision, Failure, Feature, LanguagePlan, Libc, Owner,
    PhpBuild, Plan, Resolved, SidecarPlan, Skip, SkipReason,
};
use crate::inject::{selector, service_name, status};
use crate::instrumentation::Instrumentation;

/// Prefix of the operator's keys.
pub const OPERATOR_PREFIX: &str = "instrumentation.opentelemetry.io/";
/// Our opt-out (pod) and opt-in/out (namespace label) key.
pub const INJECT_KEY: &str = "otel-admission.io/inject";
/// The kubelet marks static pods' mirrors with this annotation.
pub const MIRROR_KEY: &str = "kubernetes.io/config.mirror";
pub const GO_TARGET_EXE_KEY: &str = "instrumentation.opentelemetry.io/otel-go-auto-target-exe";
pub const PYTHON_PLATFORM_KEY: &str = "instrumentation.opentelemetry.io/otel-python-platform";
pub const DOTNET_RUNTIME_KEY: &str = "instrumentation.opentelemetry.io/otel-dotnet-auto-runtime";
pub const CONTAINER_NAMES_KEY: &str = "instrumentation.opentelemetry.io/container-names";
pub const PHP_API_VERSION_KEY: &str = "instrumentation.opentelemetry.io/otel-php-api-version";
pub const PHP_PLATFORM_KEY: &str = "instrumentation.opentelemetry.io/otel-php-platform";
pub const PHP_THREAD_SAFETY_KEY: &str = "instrumentation.opentelemetry.io/otel-php-thread-safety";
/// The Zend API versions the operator's PHP image carries, with their PHP.
pub const PHP_API_VERSIONS: [(&str, &str); 5] = [
    ("20210902", "8.1"),
    ("20220829", "8.2"),
    ("20230831", "8.3"),
    ("20240924", "8.4"),
    ("20250925", "8.5"),
];
/// Our opt-in to language auto-detection.
pub const AUTO_KEY: &str = "otel-admission.io/inject-auto";
/// The operator's collector sidecar key: `true`, `false`, `<name>` or `<ns>/<name>`.
pub const SIDECAR_KEY: &str = "sidecar.opentelemetry.io/inject";
/// Our opt-in to default probes.
pub const PROBES_KEY: &str = "otel-admission.io/probes";
/// Our opt-in to the Prometheus and Istio annotations.
pub const ISTIO_KEY: &str = "otel-admission.io/istio";
/// Istio's per-pod injection switch (label or annotation).
pub const ISTIO_INJECT_KEY: &str = "sidecar.istio.io/inject";
/// Istio's namespace label; `enabled` puts the namespace in the mesh.
pub const ISTIO_NS_LABEL: &str = "istio-injection";
/// The sidecar's container name, as the operator names it.
pub const SIDECAR_NAME: &str = "otc-container";
/// The volume holding a ConfigMap collector config.
pub const SIDECAR_CONFIG_VOLUME: &str = "otc-container-config";

/// Containers that are never a default target (operator issue #2243).
pub const KNOWN_SIDECARS: [&str; 5] = [
    "istio-proxy",
    "linkerd-proxy",
    "otc-container",
    "opentelemetry-auto-instrumentation",
    "cloudsql-proxy",
];

/// What decide reads besides the pod.
pub struct Context<'a> {
    /// The pod's namespace: `request.namespace`, since `metadata.namespace` may be empty.
    pub namespace: &'a str,
    pub config: &'a Config,
    pub view: &'a dyn ClusterView,
    /// The owning workload when known from outside the pod (the CLI's Deployment).
    pub owner_hint: Option<&'a Owner>,
    /// The API server's `(major, minor)`, read once at start; decides
    /// `sidecar.native: auto`. `None` (offline `inject`, `--cluster off`)
    /// counts as native: every supported Kubernetes (≥ 1.29) has it.
    pub server_version: Option<(u32, u32)>,
}

/// The first version where native sidecars (`restartPolicy: Always` init
/// containers) are on by default; the operator uses the same threshold.
pub const NATIVE_SIDECAR_VERSION: (u32, u32) = (1, 29);

/// `major`/`minor` of the API server's version info; providers add suffixes
/// such as `29+`, which are ignored.
pub fn parse_server_version(major: &str, minor: &str) -> Option<(u32, u32)> {
    let digits = |s: &str| -> Option<u32> {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        d.parse().ok()
    };
    Some((digits(major)?, digits(minor)?))
}

/// Where a value was read from, for `explain` and warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    PodLabel,
    PodAnnotation,
    NamespaceLabel,
    NamespaceAnnotation,
}

/// A non-empty value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    pub value: &'a str,
    pub origin: Origin,
    pub key: &'a str,
}

/// The annotation key a language is enabled with.
pub fn inject_key(lang: Language) -> String {
    format!("{OPERATOR_PREFIX}inject-{}", lang.key())
}

/// The per-language container list key; nginx's has an odd `inject-` prefix upstream.
pub fn container_names_key(lang: Language) -> String {
    match lang {
        Language::Nginx => format!("{OPERATOR_PREFIX}inject-nginx-container-names"),
        l => format!("{OPERATOR_PREFIX}{}-container-names", l.key()),
    }
}

/// Decides what `pod` gets. Pure: reads only its arguments.
pub fn decide(pod: &Pod, ctx: &Context<'_>) -> Decision {
    if let Some(skip) = hard_exclusion(pod, ctx) {
        return Decision::Skip(skip);
    }
    let ns_meta = ctx.view.namespace(ctx.namespace).unwrap_or_default();
    let containers: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.as_str())
        .collect();
    if containers.is_empty() {
        return Decision::Skip(Skip {
            reason: SkipReason::NotSelected,
            message: "pod has no containers".into(),
        });
    }
    let rule = first_rule(pod, &ns_meta, ctx.config);
    let mut plan = Plan {
        namespace: ctx.namespace.to_string(),
        owner: service_name::owner(pod, ctx.owner_hint),
        ..Plan::default()
    };
    let mut explicitly_off = Vec::new();
    // Languages an annotation, label or rule already decided, on or off.
    let mut decided = Vec::new();
    for lang in Language::ALL {
        let key = inject_key(lang);
        let chosen = combine(ns_value(&ns_meta, &key), pod_value(pod, &key));
        let (value, decided_by) = match &chosen {
            Some(f) if f.value.eq_ignore_ascii_case("false") => {
                explicitly_off.push(describe(f));
                decided.push(lang);
                continue;
            }
            Some(f) => (f.value.to_string(), describe(f)),
            None => match rule {
                Some(r) if rule_wants(r, lang) => (
                    r.instrumentation.clone().unwrap_or_else(|| "true".into()),
                    format!("config rule {:?}", r.name),
                ),
                _ => continue,
            },
        };
        decided.push(lang);
        match plan_language(pod, ctx, &ns_meta, lang, &value, decided_by, &containers) {
            Ok(lp) => plan.languages.push(lp),
            Err(f) => plan.failures.push(f),
        }
    }
    if let Some((value, decided_by)) = auto_source(pod, &ns_meta, rule) {
        match detect_language(pod, ctx, &ns_meta, &containers) {
            Ok((lang, evidence)) if !decided.contains(&lang) => {
                let by = format!("{decided_by}, detected {lang} ({})", evidence.join("; "));
                match plan_language(pod, ctx, &ns_meta, lang, &value, by, &containers) {
                    Ok(lp) => plan.languages.push(lp),
                    Err(f) => plan.failures.push(f),
                }
            }
            Ok((lang, _)) => plan.notes.push(format!(
                "auto-detection found {lang}, which an inject-{lang} setting already decides"
            )),
            Err(message) => plan.failures.push(Failure {
                feature: Feature::AutoDetect,
                reason: SkipReason::NotSelected,
                message,
            }),
        }
    }
    require_names_for_several(pod, &ns_meta, &mut plan);
    pod_features(pod, ctx, &ns_meta, rule, &mut plan);
    explicitly_off.extend(plan.declined.iter().map(|(_, by)| by.clone()));
    let nothing = plan.languages.is_empty()
        && plan.failures.is_empty()
        && plan.sidecar.is_none()
        && plan.probes.is_none()
        && plan.annotations.is_none();
    if nothing {
        return Decision::Skip(if explicitly_off.is_empty() {
            Skip {
                reason: SkipReason::NotSelected,
                message: "no annotation, label, namespace setting or config rule selects this pod"
                    .into(),
            }
        } else {
            Skip {
                reason: SkipReason::OptedOut,
                message: format!("disabled by {}", explicitly_off.join(", ")),
            }
        });
    }
    Decision::Inject(Box::new(plan))
}

/// Several languages need container names for each (the operator's
/// `areInstrumentedContainersCorrect`): otherwise it cannot tell which
/// container runs which, and it refuses them all, as we do.
fn require_names_for_several(pod: &Pod, ns: &NamespaceMeta, plan: &mut Plan) {
    if plan.languages.len() < 2 {
        return;
    }
    let unnamed: Vec<Language> = plan
        .languages
        .iter()
        .map(|lp| lp.language)
        .filter(|&l| {
            ![
                Some(CONTAINER_NAMES_KEY.to_string()),
                Some(container_names_key(l)),
            ]
            .into_iter()
            .flatten()
            .any(|k| combine(ns_value(ns, &k), pod_value(pod, &k)).is_some())
        })
        .collect();
    if unnamed.is_empty() {
        return;
    }
    let all: Vec<String> = plan
        .languages
        .iter()
        .map(|l| l.language.to_string())
        .collect();
    let missing: Vec<String> = unnamed.iter().map(|l| container_names_key(*l)).collect();
    for lp in std::mem::take(&mut plan.languages) {
        plan.failures.push(failure(
            lp.language,
            SkipReason::InvalidAnnotation,
            format!(
                "{}: several languages are selected ({}) but not the containers of each; set {}",
                lp.language,
                all.join(", "),
                missing.join(", ")
            ),
        ));
    }
}

/// A pod feature's switch: pod and namespace values combined as for the
/// languages (rows 7–13), else the rule's flag: `(value, what decided)`, or
/// `None` when nothing asks for the feature.
fn switch(
    pod: &Pod,
    ns: &NamespaceMeta,
    key: &'static str,
    rule: Option<&Rule>,
    rule_flag: fn(&Rule) -> bool,
) -> Option<(String, String)> {
    if let Some(f) = combine(ns_value(ns, key), pod_value(pod, key)) {
        return Some((f.value.to_string(), describe(&f)));
    }
    rule.filter(|r| rule_flag(r))
        .map(|r| ("true".to_string(), format!("config rule {:?}", r.name)))
}

/// The collector sidecar, probes and annotations (rows 14–19).
fn pod_features(
    pod: &Pod,
    ctx: &Context<'_>,
    ns_meta: &NamespaceMeta,
    rule: Option<&Rule>,
    plan: &mut Plan,
) {
    let fail = |feature, reason, message| Failure {
        feature,
        reason,
        message,
    };
    if let Some((value, by)) = switch(pod, ns_meta, SIDECAR_KEY, rule, |r| r.inject.sidecar) {
        if value.eq_ignore_ascii_case("false") {
            plan.declined.push((Feature::Sidecar, by));
        } else {
            match plan_sidecar(pod, ctx, &value, by) {
                Ok(sp) => plan.sidecar = Some(sp),
                Err(f) => plan.failures.push(f),
            }
        }
    }
    for (feature, key, flag) in [
        (
            Feature::Probes,
            PROBES_KEY,
            (|r: &Rule| r.inject.probes) as fn(&Rule) -> bool,
        ),
        (Feature::Annotations, ISTIO_KEY, |r: &Rule| {
            r.inject.annotations
        }),
    ] {
        let Some((value, by)) = switch(pod, ns_meta, key, rule, flag) else {
            continue;
        };
        if value.eq_ignore_ascii_case("false") {
            plan.declined.push((feature, by));
        } else if !value.eq_ignore_ascii_case("true") {
            plan.failures.push(fail(
                feature,
                SkipReason::InvalidAnnotation,
                format!("{feature}: {by} must be \"true\" or \"false\""),
            ));
        } else if feature == Feature::Probes {
            plan.probes = Some(by);
        } else {
            plan.annotations = Some(AnnotationsPlan {
                decided_by: by,
                mesh: istio_mesh(pod, ns_meta),
            });
        }
    }
}

/// Rows 14–16: `true` uses the config's source (built-in, inline or ConfigMap);
/// `<name>` is ConfigMap `<name>`; `<ns>/<name>` must name the pod's own
/// namespace, since a pod can only mount ConfigMaps from its namespace.
/// `false` prevents injection and removes nothing. An existing
/// `otc-container` is kept and no second one is added.
fn plan_sidecar(
    pod: &Pod,
    ctx: &Context<'_>,
    value: &str,
    decided_by: String,
) -> Result<SidecarPlan, Failure> {
    let fail = |reason, message| Failure {
        feature: Feature::Sidecar,
        reason,
        message,
    };
    let spec = pod.spec.as_ref();
    let has = |name: &str| {
        spec.iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .any(|c| c.name == name)
    };
    if has(SIDECAR_NAME) {
        return Err(fail(
            SkipReason::AlreadyInjected,
            format!(
                "sidecar: pod already has a container named {SIDECAR_NAME}; no second one is added"
            ),
        ));
    }
    let source = if value.eq_ignore_ascii_case("true") {
        let mut found = ctx.view.sidecar_collectors(ctx.namespace);
        match found.len() {
            1 => CollectorSource::Resource(found.remove(0)),
            0 => template_source(ctx).ok_or_else(|| {
                fail(
                    SkipReason::NotSelected,
                    format!(
                        "sidecar: {decided_by}, but namespace {} has no OpenTelemetryCollector with mode: sidecar and the config defines no sidecar template; nothing injected",
                        ctx.namespace
                    ),
                )
            })?,
            n => {
                let names: Vec<&str> = found.iter().map(|c| c.name.as_str()).collect();
                return Err(fail(
                    SkipReason::AmbiguousInstrumentation,
                    format!(
                        "sidecar: namespace {} has {n} OpenTelemetryCollectors with mode: sidecar ({}); name one in {SIDECAR_KEY}",
                        ctx.namespace,
                        names.join(", ")
                    ),
                ));
            }
        }
    } else {
        // `<ns>/<name>` may name a collector in another namespace: it is a
        // template for the container, as in the operator.
        let (ns, name) = value.split_once('/').unwrap_or((ctx.namespace, value));
        match ctx.view.collector(ns, name) {
            Some(c) if c.is_sidecar() => CollectorSource::Resource(c),
            Some(c) => {
                return Err(fail(
                    SkipReason::InvalidAnnotation,
                    format!(
                        "sidecar: {decided_by} names OpenTelemetryCollector {ns}/{name}, whose mode is {}, not sidecar",
                        c.spec.mode.as_deref().unwrap_or("deployment")
                    ),
                ));
            }
            None => {
                return Err(fail(
                    SkipReason::InvalidAnnotation,
                    format!("sidecar: {decided_by}: OpenTelemetryCollector {ns}/{name} not found"),
                ));
            }
        }
    };
    if matches!(source, CollectorSource::ConfigMap(_))
        && spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| v.name == SIDECAR_CONFIG_VOLUME)
    {
        return Err(fail(
            SkipReason::Error,
            format!("sidecar: pod already has a volume named {SIDECAR_CONFIG_VOLUME}"),
        ));
    }
    let (native, native_by) = match (ctx.config.sidecar.native, ctx.server_version) {
        (NativeSidecar::On, _) => (true, "config sidecar.native: true".to_string()),
        (NativeSidecar::Off, _) => (false, "config sidecar.native: false".to_string()),
        (NativeSidecar::Auto, Some(v)) => {
            let on = v >= NATIVE_SIDECAR_VERSION;
            let cmp = if on { ">=" } else { "<" };
            (
                on,
                format!(
                    "config sidecar.native: auto, API server {}.{} {cmp} 1.29",
                    v.0, v.1
                ),
            )
        }
        (NativeSidecar::Auto, None) => (
            true,
            "config sidecar.native: auto, API server version unknown (offline or --cluster off): native".to_string(),
        ),
    };
    Ok(SidecarPlan {
        decided_by,
        source,
        native,
        native_by,
    })
}

/// The config's sidecar template, when the config file defines one (SPEC §5:
/// only then does a namespace without a sidecar-mode collector get a sidecar).
fn template_source(ctx: &Context<'_>) -> Option<CollectorSource> {
    if !ctx.config.sidecar.defined {
        return None;
    }
    Some(match &ctx.config.sidecar.config {
        Some(CollectorConfigSource {
            config_map: Some(name),
            ..
        }) => CollectorSource::ConfigMap(name.clone()),
        Some(CollectorConfigSource {
            inline: Some(text), ..
        }) => CollectorSource::Inline(text.clone()),
        _ => CollectorSource::Builtin,
    })
}

/// Whether the pod is in an Istio mesh, and why: pod label or annotation
/// `sidecar.istio.io/inject` wins (`false` takes the pod out of an enabled
/// namespace, as in Istio), else namespace label `istio-injection=enabled`
/// or a revision label `istio.io/rev`.
pub fn istio_mesh(pod: &Pod, ns: &NamespaceMeta) -> Option<String> {
    if let Some(f) = pod_value(pod, ISTIO_INJECT_KEY) {
        return f.value.eq_ignore_ascii_case("true").then(|| describe(&f));
    }
    if let Some(v) = ns.labels.get(ISTIO_NS_LABEL)
        && v == "enabled"
    {
        return Some(format!("namespace label {ISTIO_NS_LABEL}=enabled"));
    }
    ns.labels
        .get("istio.io/rev")
        .filter(|v| !v.is_empty())
        .map(|v| format!("namespace label istio.io/rev={v}"))
}

/// Rows 1–5 of the precedence table.
fn hard_exclusion(pod: &Pod, ctx: &Context<'_>) -> Option<Skip> {
    let ns = ctx.namespace;
    let cfg = ctx.config;
    if cfg.excluded_namespaces.iter().any(|n| n == ns) {
        return Some(Skip {
            reason: SkipReason::ExcludedNamespace,
            message: format!("namespace {ns} is in excludedNamespaces"),
        });
    }
    if cfg.server.namespace.as_deref() == Some(ns) {
        return Some(Skip {
            reason: SkipReason::ExcludedNamespace,
            message: format!("namespace {ns} is otel-admission's own namespace"),
        });
    }
    if let Some(f) = pod_value(pod, INJECT_KEY)
        && f.value.eq_ignore_ascii_case("false")
    {
        return Some(Skip {
            reason: SkipReason::OptedOut,
            message: format!("disabled by {}", describe(&f)),
        });
    }
    let annotations = pod.metadata.annotations.as_ref();
    if annotations.is_some_and(|a| a.contains_key(MIRROR_KEY)) {
        return Some(Skip {
            reason: SkipReason::OptedOut,
            message: "mirror (static) pods cannot be changed".into(),
        });
    }
    if let Some(meta) = ctx.view.namespace(ns)
        && let Some(v) = meta.labels.get(INJECT_KEY)
        && (v.eq_ignore_ascii_case("disabled") || v.eq_ignore_ascii_case("false"))
    {
        return Some(Skip {
            reason: SkipReason::OptedOut,
            message: format!("disabled by namespace label {INJECT_KEY}={v}"),
        });
    }
    if annotations.is_some_and(|a| a.contains_key(status::STATUS_KEY)) {
        return Some(Skip {
            reason: SkipReason::AlreadyInjected,
            message: format!("pod already carries {}", status::STATUS_KEY),
        });
    }
    if let Some(what) = operator_injected(pod) {
        return Some(Skip {
            reason: SkipReason::AlreadyInjected,
            message: format!("already instrumented by the OpenTelemetry Operator ({what})"),
        });
    }
    None
}

/// The operator's `isAutoInstrumentationInjected` guard (reference §6).
fn operator_injected(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    const INIT: [&str; 8] = [
        "opentelemetry-auto-instrumentation-dotnet",
        "opentelemetry-auto-instrumentation-java",
        "opentelemetry-auto-instrumentation-nodejs",
        "opentelemetry-auto-instrumentation-php",
        "opentelemetry-auto-instrumentation-python",
        "opentelemetry-auto-instrumentation-ruby",
        "otel-agent-attach-apache",
        "otel-agent-source-container-clone",
    ];
    for c in spec.init_containers.iter().flatten() {
        if INIT.contains(&c.name.as_str()) {
            return Some(format!("init container {}", c.name));
        }
    }
    for c in &spec.containers {
        if c.name == "opentelemetry-auto-instrumentation" {
            return Some(format!("container {}", c.name));
        }
        if c.name != "otc-container"
            && c.env
                .iter()
                .flatten()
                .any(|e| e.name == "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME")
        {
            return Some(format!(
                "container {} has OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
                c.name
            ));
        }
    }
    None
}

/// Label first, then annotation; empty values count as absent.
pub fn pod_value<'a>(pod: &'a Pod, key: &'a str) -> Option<Found<'a>> {
    lookup(
        pod.metadata.labels.as_ref(),
        pod.metadata.annotations.as_ref(),
        key,
        Origin::PodLabel,
        Origin::PodAnnotation,
    )
}

/// Namespace label first, then annotation.
pub fn ns_value<'a>(ns: &'a NamespaceMeta, key: &'a str) -> Option<Found<'a>> {
    lookup(
        Some(&ns.labels),
        Some(&ns.annotations),
        key,
        Origin::NamespaceLabel,
        Origin::NamespaceAnnotation,
    )
}

fn lookup<'a>(
    labels: Option<&'a BTreeMap<String, String>>,
    annotations: Option<&'a BTreeMap<String, String>>,
    key: &'a str,
    label_origin: Origin,
    annotation_origin: Origin,
) -> Option<Found<'a>> {
    let get = |m: Option<&'a BTreeMap<String, String>>, origin| {
        m.and_then(|m| m.get(key))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(|value| Found { value, origin, key })
    };
    get(labels, label_origin).or_else(|| get(annotations, annotation_origin))
}

/// Rows 7–13: the operator's `annotationValue(ns, pod)`.
pub fn combine<'a>(ns: Option<Found<'a>>, pod: Option<Found<'a>>) -> Option<Found<'a>> {
    match (ns, pod) {
        (None, p) => p,
        (n, None) => n,
        (Some(n), Some(p)) => {
            if !p.value.eq_ignore_ascii_case("true") || n.value.eq_ignore_ascii_case("false") {
                Some(p)
            } else {
                Some(n)
            }
        }
    }
}

/// `pod annotation instrumentation.opentelemetry.io/inject-python="true"`.
pub fn describe(f: &Found<'_>) -> String {
    let origin = match f.origin {
        Origin::PodLabel => "pod label",
        Origin::PodAnnotation => "pod annotation",
        Origin::NamespaceLabel => "namespace label",
        Origin::NamespaceAnnotation => "namespace annotation",
    };
    format!("{origin} {}={:?}", f.key, f.value)
}

fn first_rule<'c>(pod: &Pod, ns: &NamespaceMeta, config: &'c Config) -> Option<&'c Rule> {
    let empty = BTreeMap::new();
    let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let ns_enabled = ns
        .labels
        .get(INJECT_KEY)
        .is_some_and(|v| v.eq_ignore_ascii_case("enabled"));
    config.rules.iter().find(|r| {
        let ns_ok = match &r.namespace_selector {
            Some(sel) => selector::matches(sel, &ns.labels),
            None => ns_enabled,
        };
        ns_ok
            && r.pod_selector
                .as_ref()
                .is_none_or(|sel| selector::matches(sel, pod_labels))
    })
}

/// A config rule whose `podSelector` selects the pod, and whether it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCheck {
    pub rule: String,
    /// `None` when this rule is the one that applies; else why not, in words.
    pub not_applied: Option<String>,
}

/// Every rule whose `podSelector` matches the pod, in config order, with why
/// it did not apply (SPEC §4: `explain` names near misses, so a user looks
/// at the namespace label, not the selector). Pure, like [`decide`].
pub fn rule_checks(
    pod: &Pod,
    namespace: &str,
    ns: &NamespaceMeta,
    config: &Config,
) -> Vec<RuleCheck> {
    let empty = BTreeMap::new();
    let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let ns_enabled = ns
        .labels
        .get(INJECT_KEY)
        .is_some_and(|v| v.eq_ignore_ascii_case("enabled"));
    let mut applied: Option<&str> = None;
    let mut out = Vec::new();
    for r in &config.rules {
        if !r
            .pod_selector
            .as_ref()
            .is_none_or(|sel| selector::matches(sel, pod_labels))
        {
            continue;
        }
        let ns_reason = match &r.namespace_selector {
            Some(sel) if !selector::matches(sel, &ns.labels) => Some(format!(
                "its namespaceSelector does not match namespace {namespace}'s labels"
            )),
            None if !ns_enabled => Some(format!(
                "namespace {namespace} is not labelled {INJECT_KEY}=enabled (a rule without namespaceSelector needs it)"
            )),
            _ => None,
        };
        let not_applied = match (ns_reason, applied) {
            (Some(why), _) => Some(why),
            (None, Some(first)) => Some(format!("rule {first:?} matched first (first match wins)")),
            (None, None) => {
                applied = Some(r.name.as_str());
                None
            }
        };
        out.push(RuleCheck {
            rule: r.name.clone(),
            not_applied,
        });
    }
    out
}

/// `otel-admission.io/inject-auto: "true"` (pod, then namespace), else a
/// matching rule that lists `auto`: the Instrumentation value and the reason.
fn auto_source(pod: &Pod, ns: &NamespaceMeta, rule: Option<&Rule>) -> Option<(String, String)> {
    if let Some(f) = combine(ns_value(ns, AUTO_KEY), pod_value(pod, AUTO_KEY)) {
        return f
            .value
            .eq_ignore_ascii_case("true")
            .then(|| ("true".to_string(), describe(&f)));
    }
    rule.filter(|r| r.inject.languages.iter().any(|l| l.language().is_none()))
        .map(|r| {
            (
                r.instrumentation.clone().unwrap_or_else(|| "true".into()),
                format!("config rule {:?}", r.name),
            )
        })
}

/// Detects the language of the containers `container-names` names, else of
/// the default target.
fn detect_language(
    pod: &Pod,
    ctx: &Context<'_>,
    ns_meta: &NamespaceMeta,
    containers: &[&str],
) -> Result<(Language, Vec<String>), String> {
    let (names, _) = targets(pod, ctx, ns_meta, None, containers).map_err(|f| f.message)?;
    let all = pod.spec.iter().flat_map(|s| s.containers.iter());
    let chosen: Vec<&k8s_openapi::api::core::v1::Container> =
        all.filter(|c| names.contains(&c.name)).collect();
    crate::inject::detect::detect(&chosen)
}

fn rule_wants(rule: &Rule, lang: Language) -> bool {
    rule.inject
        .languages
        .iter()
        .any(|c| c.language() == Some(lang))
}

fn failure(lang: Language, reason: SkipReason, message: String) -> Failure {
    Failure {
        feature: Feature::Instrumentation(lang),
        reason,
        message,
    }
}

fn plan_language(
    pod: &Pod,
    ctx: &Context<'_>,
    ns_meta: &NamespaceMeta,
    lang: Language,
    value: &str,
    decided_by: String,
    containers: &[&str],
) -> Result<LanguagePlan, Failure> {
    let instrumentation = resolve_instrumentation(ctx, lang, value)?;
    let (targets, containers_by) = targets(pod, ctx, ns_meta, Some(lang), containers)?;
    let mut libc = Libc::Glibc;
    let mut go_target_exe = None;
    let mut php = None;
    match lang {
        Language::Php => php = Some(php_build(pod, ns_meta)?),
        Language::Python => {
            let key = PYTHON_PLATFORM_KEY;
            if let Some(f) = combine(ns_value(ns_meta, key), pod_value(pod, key)) {
                libc = match f.value {
                    "glibc" => Libc::Glibc,
                    "musl" => Libc::Musl,
                    other => {
                        return Err(failure(
                            lang,
                            SkipReason::InvalidAnnotation,
                            format!("python: {key}={other:?} is not glibc or musl"),
                        ));
                    }
                };
            }
        }
        Language::Dotnet => {
            let key = DOTNET_RUNTIME_KEY;
            if let Some(f) = combine(ns_value(ns_meta, key), pod_value(pod, key)) {
                libc = match f.value {
                    "linux-x64" => Libc::Glibc,
                    "linux-musl-x64" => Libc::Musl,
                    other => {
                        return Err(failure(
                            lang,
                            SkipReason::InvalidAnnotation,
                            format!("dotnet: {key}={other:?} is not linux-x64 or linux-musl-x64"),
                        ));
                    }
                };
            }
        }
        Language::Go => {
            if targets.len() != 1 {
                return Err(failure(
                    lang,
                    SkipReason::InvalidAnnotation,
                    format!(
                        "go: instruments exactly one container, {} named",
                        targets.len()
                    ),
                ));
            }
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.share_process_namespace)
                .is_some_and(|v| !v)
            {
                return Err(failure(
                    lang,
                    SkipReason::Error,
                    "go: the pod sets shareProcessNamespace: false, which the eBPF agent needs"
                        .into(),
                ));
            }
            let spec = &instrumentation.instrumentation.spec;
            go_target_exe = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(GO_TARGET_EXE_KEY))
                .filter(|v| !v.trim().is_empty())
                .cloned()
                .or_else(|| {
                    spec.go
                        .iter()
                        .flat_map(|g| g.env.iter())
                        .chain(spec.env.iter())
                        .find(|e| e.name == "OTEL_GO_AUTO_TARGET_EXE")
                        .and_then(|e| e.value.clone())
                });
            if go_target_exe.is_none() {
                return Err(failure(
                    lang,
                    SkipReason::InvalidAnnotation,
                    format!("go: pod annotation {GO_TARGET_EXE_KEY} is required"),
                ));
            }
        }
        _ => {}
    }
    Ok(LanguagePlan {
        language: lang,
        decided_by,
        instrumentation,
        containers: targets,
        containers_by,
        libc,
        go_target_exe,
        php,
    })
}

/// PHP's three annotations (pod, then namespace, as the operator's
/// `annotationValue`): the API version is required, since the extension is
/// built per PHP minor version; platform and thread safety have defaults.
fn php_build(pod: &Pod, ns: &NamespaceMeta) -> Result<PhpBuild, Failure> {
    let lang = Language::Php;
    fn get<'a>(pod: &'a Pod, ns: &'a NamespaceMeta, key: &'a str) -> Option<&'a str> {
        combine(ns_value(ns, key), pod_value(pod, key)).map(|f| f.value)
    }
    let known: Vec<String> = PHP_API_VERSIONS
        .iter()
        .map(|(v, php)| format!("{v} (PHP {php})"))
        .collect();
    let api_version = match get(pod, ns, PHP_API_VERSION_KEY) {
        Some(v) if PHP_API_VERSIONS.iter().any(|(k, _)| *k == v) => v.to_string(),
        Some(v) => {
            return Err(failure(
                lang,
                SkipReason::InvalidAnnotation,
                format!(
                    "php: {PHP_API_VERSION_KEY}={v:?} is not one of {}",
                    known.join(", ")
                ),
            ));
        }
        None => {
            return Err(failure(
                lang,
                SkipReason::InvalidAnnotation,
                format!(
                    "php: {PHP_API_VERSION_KEY} is required: one of {}",
                    known.join(", ")
                ),
            ));
        }
    };
    let platform = match get(pod, ns, PHP_PLATFORM_KEY) {
        None | Some("glibc") => "glibc",
        Some("musl") => "musl",
        Some(other) => {
            return Err(failure(
                lang,
                SkipReason::InvalidAnnotation,
                format!("php: {PHP_PLATFORM_KEY}={other:?} is not glibc or musl"),
            ));
        }
    };
    let thread_safety = match get(pod, ns, PHP_THREAD_SAFETY_KEY) {
        None | Some("non-zts") => "non-zts",
        Some("zts") => "zts",
        Some(other) => {
            return Err(failure(
                lang,
                SkipReason::InvalidAnnotation,
                format!("php: {PHP_THREAD_SAFETY_KEY}={other:?} is not zts or non-zts"),
            ));
        }
    };
    Ok(PhpBuild {
        api_version,
        platform,
        thread_safety,
    })
}

/// `true`, `<name>` or `<ns>/<name>` to an Instrumentation.
fn resolve_instrumentation(
    ctx: &Context<'_>,
    lang: Language,
    value: &str,
) -> Result<Resolved, Failure> {
    let ns = ctx.namespace;
    if value.eq_ignore_ascii_case("true") {
        let mut all = ctx.view.instrumentations_in(ns);
        return match all.len() {
            0 => Ok(Resolved {
                label: "config defaults".into(),
                instrumentation: Arc::new(Instrumentation {
                    metadata: Default::default(),
                    spec: ctx.config.defaults.clone(),
                }),
            }),
            1 => {
                let inst = all.remove(0);
                Ok(Resolved {
                    label: format!("{ns}/{}", inst.metadata.name.as_deref().unwrap_or("")),
                    instrumentation: inst,
                })
            }
            _ => {
                let names: Vec<&str> = all
                    .iter()
                    .map(|i| i.metadata.name.as_deref().unwrap_or(""))
                    .collect();
                Err(failure(
                    lang,
                    SkipReason::AmbiguousInstrumentation,
                    format!(
                        "{lang}: namespace {ns} has {} Instrumentations ({}); name one in {}",
                        names.len(),
                        names.join(", "),
                        inject_key(lang)
                    ),
                ))
            }
        };
    }
    let (inst_ns, name) = value.split_once('/').unwrap_or((ns, value));
    match ctx.view.instrumentation(inst_ns, name) {
        Some(inst) => Ok(Resolved {
            label: format!("{inst_ns}/{name}"),
            instrumentation: inst,
        }),
        None => Err(failure(
            lang,
            SkipReason::NoInstrumentation,
            format!("{lang}: Instrumentation {inst_ns}/{name} not found"),
        )),
    }
}

/// Whether a container-names value is acceptable (the operator's regex `^[a-zA-Z0-9-,]+$`).
pub fn valid_container_names(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b',')
}

/// Target containers: the per-language list, else the common list, else the
/// first container that is not a known sidecar. As in the operator, named init
/// containers can be targets for java, nodejs, python, dotnet and sdk; the
/// agent's init container then runs just before the first of them.
fn targets(
    pod: &Pod,
    ctx: &Context<'_>,
    ns_meta: &NamespaceMeta,
    language: Option<Language>,
    containers: &[&str],
) -> Result<(Vec<String>, String), Failure> {
    let feature = language.map_or(Feature::AutoDetect, Feature::Instrumentation);
    let lang = feature;
    let fail = |reason, message| Failure {
        feature,
        reason,
        message,
    };
    let lang_key = language.map(container_names_key);
    // The operator (multi-instrumentation, its default) takes the common
    // `container-names` list followed by the language's own list.
    let lists: Vec<Found<'_>> = [
        combine(
            ns_value(ns_meta, CONTAINER_NAMES_KEY),
            pod_value(pod, CONTAINER_NAMES_KEY),
        ),
        lang_key
            .as_deref()
            .and_then(|k| combine(ns_value(ns_meta, k), pod_value(pod, k))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !lists.is_empty() {
        let mut out: Vec<String> = Vec::new();
        for f in &lists {
            if !valid_container_names(f.value) {
                return Err(fail(
                    SkipReason::InvalidAnnotation,
                    format!(
                        "{lang}: {} {}={:?} must match ^[a-zA-Z0-9-,]+$",
                        origin_word(f.origin),
                        f.key,
                        f.value
                    ),
                ));
            }
            for name in f.value.split(',').filter(|s| !s.is_empty()) {
                let is_init = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.init_containers.iter().flatten())
                    .any(|c| c.name == name);
                let init_ok = matches!(
                    language,
                    Some(
                        Language::Java
                            | Language::Nodejs
                            | Language::Php
                            | Language::Python
                            | Language::Ruby
                            | Language::Dotnet
                            | Language::Sdk
                    )
                );
                if is_init && !init_ok {
                    return Err(fail(
                        SkipReason::InvalidAnnotation,
                        format!(
                            "{lang}: {} names init container {name:?}; {lang} cannot instrument init containers",
                            f.key
                        ),
                    ));
                }
                if !is_init && !containers.contains(&name) {
                    return Err(fail(
                        SkipReason::InvalidAnnotation,
                        format!(
                            "{lang}: {} names container {name:?}, which the pod does not have",
                            f.key
                        ),
                    ));
                }
                if out.iter().any(|o| o == name) {
                    return Err(fail(
                        SkipReason::InvalidAnnotation,
                        format!("{lang}: container {name:?} is named twice ({})", f.key),
                    ));
                }
                out.push(name.to_string());
            }
        }
        let by: Vec<String> = lists.iter().map(describe).collect();
        return Ok((out, by.join(" and ")));
    }
    let skip = &ctx.config.skip_containers;
    match containers
        .iter()
        .find(|c| !KNOWN_SIDECARS.contains(c) && !skip.iter().any(|s| s == *c))
    {
        Some(c) => Ok((
            vec![c.to_string()],
            "the first container that is not a known sidecar".into(),
        )),
        None => Err(fail(
            SkipReason::NotSelected,
            format!(
                "{lang}: every container is a known sidecar; name one in {}",
                lang_key.as_deref().unwrap_or(CONTAINER_NAMES_KEY)
            ),
        )),
    }
}

fn origin_word(o: Origin) -> &'static str {
    match o {
        Origin::PodLabel => "pod label",
        Origin::PodAnnotation => "pod annotation",
        Origin::NamespaceLabel => "namespace label",
        Origin::NamespaceAnnotation => "namespace annotation",
    }
}
