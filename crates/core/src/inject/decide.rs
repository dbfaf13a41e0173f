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
//! The config's switches come next, per language, whatever selected it
//! (annotation, label, namespace, rule or auto-detection): a language whose
//! `languages.<lang>` is off (the Operator's `--enable-<lang>-instrumentation`;
//! Go and nginx are off by default, as there) is a `language_disabled`
//! failure of that language, and with `multiInstrumentation: false` a pod
//! that still asks for more than one language gets none of them, each a
//! `language_disabled` failure. A config rule naming a disabled language
//! does not override the switch.
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
//! A pod bound for Windows nodes ([`crate::inject::security::windows`]) gets
//! no Linux-only feature, whatever the rows above say: every language but
//! `sdk`, and the sidecar, is `unsupported_os` for that feature, decided
//! first in `plan_language` and `plan_sidecar`; `sdk`, probes and
//! annotations are OS-neutral.
//!
//! A pod that already has an `otc-container` gets no second one
//! (`already_injected` for the sidecar feature). `sidecar.native: auto` is
//! native when [`Context::server_version`] is ≥ 1.29 or unknown.
//!
//! Instrumentation values: `true` takes the namespace's only Instrumentation,
//! the config `defaults` when it has none (the operator fails instead), and
//! skips as `ambiguous_instrumentation` when it has several; `<name>` and
//! `<ns>/<name>` look it up, `no_instrumentation` when unknown.

use crate::inject::context::Context;
use crate::inject::features::pod_features;
use crate::inject::keys::{INJECT_KEY, MIRROR_KEY, inject_key};
use crate::inject::language_choice::{
    detect_language, disabled, plan_language, refuse_several_without_multi,
    require_names_for_several,
};
use crate::inject::plan::{Decision, Failure, Feature, Plan, Skip, SkipReason};
use crate::inject::precedence::{combine, describe, ns_value, pod_value};
use crate::inject::rules::{auto_source, first_rule, rule_wants};
use crate::inject::{service_name, status};
use crate::language::Language;
use k8s_openapi::api::core::v1::Pod;

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
        let chosen = combine(ns_value(&ns_meta, key), pod_value(pod, key));
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
        if let Some(f) = disabled(ctx.config, lang) {
            plan.failures.push(f);
            continue;
        }
        match plan_language(pod, ctx, &ns_meta, lang, &value, decided_by, &containers) {
            Ok(lp) => plan.add_language(lp),
            Err(f) => plan.failures.push(f),
        }
    }
    if let Some((value, decided_by)) = auto_source(pod, &ns_meta, rule) {
        match detect_language(pod, ctx, &ns_meta, &containers) {
            Ok((lang, _)) if !decided.contains(&lang) && !ctx.config.languages.enabled(lang) => {
                plan.failures.extend(disabled(ctx.config, lang));
            }
            Ok((lang, evidence)) if !decided.contains(&lang) => {
                let by = format!("{decided_by}, detected {lang} ({})", evidence.join("; "));
                match plan_language(pod, ctx, &ns_meta, lang, &value, by, &containers) {
                    Ok(lp) => plan.add_language(lp),
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
    refuse_several_without_multi(ctx.config, &mut plan);
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
