//! Which languages a pod gets, into which containers, with which
//! Instrumentation (rows 6–13 of the table in [`crate::inject::decide`], per
//! language), and auto-detection.

use crate::config::{Config, LanguageSwitches};
use crate::inject::cluster_view::NamespaceMeta;
use crate::inject::context::Context;
use crate::inject::keys::{
    CONTAINER_NAMES_KEY, DOTNET_RUNTIME_KEY, GO_TARGET_EXE_KEY, KNOWN_SIDECARS,
    PHP_API_VERSION_KEY, PHP_PLATFORM_KEY, PHP_THREAD_SAFETY_KEY, PYTHON_PLATFORM_KEY,
    container_names_key, inject_key,
};
use crate::inject::languages::dotnet;
use crate::inject::plan::{
    Failure, Feature, LanguagePlan, Libc, PhpBuild, Plan, Resolved, SkipReason,
};
use crate::inject::precedence::{Found, combine, describe, ns_value, origin_word, pod_value};
use crate::inject::security::unsupported_on_windows;
use crate::language::Language;
use k8s_openapi::api::core::v1::Pod;

/// The Zend API versions the operator's PHP image carries, with their PHP.
pub const PHP_API_VERSIONS: [(&str, &str); 5] = [
    ("20210902", "8.1"),
    ("20220829", "8.2"),
    ("20230831", "8.3"),
    ("20240924", "8.4"),
    ("20250925", "8.5"),
];

/// `languages.<lang>: false` (the Operator's `--enable-<lang>-instrumentation`
/// off): the language is asked for but not injected, whatever asked for it
/// (annotation, label, namespace, rule or auto-detection): the switch is
/// global, as the Operator's flag is.
pub(crate) fn disabled(config: &Config, lang: Language) -> Option<Failure> {
    if config.languages.enabled(lang) {
        return None;
    }
    let key = LanguageSwitches::key(lang)?;
    let flag = LanguageSwitches::operator_flag(lang)?;
    Some(failure(
        lang,
        SkipReason::LanguageDisabled,
        format!(
            "{lang}: not injected: languages.{key} is off (the Operator's {flag}); set languages.{key}: true in the config to inject it"
        ),
    ))
}

/// `multiInstrumentation: false` (the Operator's
/// `--enable-multi-instrumentation=false`): a pod that asks for more than
/// one language (`sdk` counts, as in the Operator) gets none of them, as the
/// Operator did before 0.108 ("multiple injection annotations present").
pub(crate) fn refuse_several_without_multi(config: &Config, plan: &mut Plan) {
    if config.multi_instrumentation || plan.languages.len() < 2 {
        return;
    }
    let all: Vec<String> = plan
        .languages
        .iter()
        .map(|l| l.language.to_string())
        .collect();
    for lp in std::mem::take(&mut plan.languages) {
        plan.failures.push(failure(
            lp.language,
            SkipReason::LanguageDisabled,
            format!(
                "{}: not injected: the pod asks for several languages ({}) and multiInstrumentation is off (the Operator's --enable-multi-instrumentation=false); ask for one, or set multiInstrumentation: true in the config",
                lp.language,
                all.join(", ")
            ),
        ));
    }
}

/// Several languages need container names for each (the operator's
/// `areInstrumentedContainersCorrect`): otherwise it cannot tell which
/// container runs which, and it refuses them all, as we do.
pub(crate) fn require_names_for_several(pod: &Pod, ns: &NamespaceMeta, plan: &mut Plan) {
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

/// Detects the language of the containers `container-names` names, else of
/// the default target.
pub(crate) fn detect_language(
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

fn failure(lang: Language, reason: SkipReason, message: String) -> Failure {
    Failure {
        feature: Feature::Instrumentation(lang),
        reason,
        message,
    }
}

pub(crate) fn plan_language(
    pod: &Pod,
    ctx: &Context<'_>,
    ns_meta: &NamespaceMeta,
    lang: Language,
    value: &str,
    decided_by: String,
    containers: &[&str],
) -> Result<LanguagePlan, Failure> {
    // First: on a Windows pod a Linux agent cannot run whatever else is
    // asked, and a missing Instrumentation would be a misleading warning.
    if let Some(f) = unsupported_on_windows(pod, Feature::Instrumentation(lang)) {
        return Err(f);
    }
    let instrumentation = resolve_instrumentation(ctx, lang, value)?;
    let (mut targets, containers_by) = targets(pod, ctx, ns_meta, Some(lang), containers)?;
    let mut notes = Vec::new();
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
            let spec = instrumentation.instrumentation.spec.language(lang);
            let label = &instrumentation.label;
            (targets, notes) = dotnet::keep_targets(pod, spec, label, targets)
                .map_err(|message| failure(lang, SkipReason::AgentConfigured, message))?;
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
                        .flat_map(|g| g.common.env.iter())
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
        notes,
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
                instrumentation: ctx.config.defaults.instrumentation().clone(),
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
