//! The pod features (rows 14–19 of the table in [`crate::inject::decide`]):
//! the collector sidecar, default probes and the Prometheus/Istio annotations.

use crate::config::{CollectorConfigSource, NativeSidecar, Rule};
use crate::inject::cluster_view::NamespaceMeta;
use crate::inject::context::{Context, NATIVE_SIDECAR_VERSION};
use crate::inject::keys::{
    ISTIO_INJECT_KEY, ISTIO_KEY, ISTIO_NS_LABEL, PROBES_KEY, SIDECAR_CONFIG_VOLUME, SIDECAR_KEY,
    SIDECAR_NAME,
};
use crate::inject::plan::{
    AnnotationsPlan, CollectorSource, Failure, Feature, Plan, SidecarPlan, SkipReason,
};
use crate::inject::precedence::{describe, pod_value, switch};
use crate::inject::security::unsupported_on_windows;
use k8s_openapi::api::core::v1::Pod;

/// The collector sidecar, probes and annotations (rows 14–19).
pub(crate) fn pod_features(
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
    // Before the collector is looked up: on a Windows pod none can run, so
    // a missing or ambiguous one is beside the point.
    if let Some(f) = unsupported_on_windows(pod, Feature::Sidecar) {
        return Err(f);
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
