//! The collector sidecar built from an `OpenTelemetryCollector` with
//! `mode: sidecar`, as the Operator builds it (`pkg/sidecar`,
//! `internal/manifests/collector/container.go`): the same args, env, ports,
//! probes, mounts, volumes and label, from the cluster cache, with no
//! ConfigMap and no API call (SPEC §5).
//!
//! - [`crate::otelcol::defaults`]: the config as the Operator stores it.
//! - [`render`]: `OTEL_CONFIG`, byte for byte.
//! - [`ports`]: container ports from the receivers.
//!
//! Differences, and why (docs/INJECTION.md): the Deployment's UID is not in
//! `OTEL_RESOURCE_ATTRIBUTES` (the Operator GETs the ReplicaSet for it; the
//! Deployment name comes from the ReplicaSet's name); without a
//! `securityContext` in the CR the sidecar gets the restricted one, so the
//! pod still passes the `restricted` profile.

pub mod ports;
pub mod render;

use std::collections::BTreeMap;

use crate::otelcol::defaults;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, HTTPGetAction, Pod, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::inject::editor::{ApplyError, Editor};
use crate::inject::env_var::resource_ref;
use crate::inject::env_var::{field_ref, plain};
use crate::inject::keys::SIDECAR_NAME;
use crate::inject::plan::Plan;
use crate::otelcol::{Collector, ProbeSettings};

/// The pod label naming the collector it got, `<namespace>.<name>`
/// (spelled in `keys.rs`, with every key we read or write).
pub use crate::inject::keys::SIDECAR_INJECTED_LABEL as INJECTED_LABEL;
/// The Operator 0.158's default collector image.
pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector:0.158.0";

/// `configmap-<name>` as a DNS label of at most 63 characters (the Operator's
/// `naming.ConfigMapExtra`).
pub fn config_map_volume(name: &str) -> String {
    let raw = format!("configmap-{name}");
    let mut s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    if s.ends_with('-') {
        s.pop();
        s.push('a');
    }
    s
}

/// `path.Join("/var/conf", mountpath, volume)`, cleaned.
fn config_map_path(mountpath: &str, volume: &str) -> String {
    let parts: Vec<&str> = ["var", "conf"]
        .into_iter()
        .chain(mountpath.split('/'))
        .chain([volume])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The `<namespace>.<name>` label value, at most 63 characters, shortening
/// the namespace first as the Operator's `naming.Truncate` does.
pub fn injected_label(namespace: &str, name: &str) -> String {
    let full = format!("{namespace}.{name}");
    if full.len() <= 63 {
        return full;
    }
    let keep = 63usize.saturating_sub(name.len() + 1);
    let ns: String = namespace.chars().take(keep).collect();
    let v = format!("{ns}.{name}");
    let v: String = v.trim_start_matches('.').chars().take(63).collect();
    v.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The `health_check` probe, when the config enables that extension.
fn health_probe(config: &Value, settings: Option<&ProbeSettings>) -> Option<Probe> {
    config.get("extensions")?;
    let name = defaults::enabled_extensions(config)
        .into_iter()
        .find(|n| defaults::component_type(n) == "health_check")?;
    let cfg = config.pointer(&format!(
        "/extensions/{}",
        name.replace('~', "~0").replace('/', "~1")
    ));
    let path = cfg
        .and_then(|c| c.get("path"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let port = cfg
        .and_then(|c| c.get("endpoint"))
        .and_then(Value::as_str)
        .and_then(|e| e.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<i32>().ok())
        .unwrap_or(defaults::HEALTH_CHECK_PORT);
    let mut probe = Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(s) = settings {
        probe.initial_delay_seconds = s.initial_delay_seconds.or(probe.initial_delay_seconds);
        probe.period_seconds = s.period_seconds.or(probe.period_seconds);
        probe.failure_threshold = s.failure_threshold.or(probe.failure_threshold);
        probe.success_threshold = s.success_threshold.or(probe.success_threshold);
        probe.timeout_seconds = s.timeout_seconds.or(probe.timeout_seconds);
        probe.termination_grace_period_seconds = s.termination_grace_period_seconds;
    }
    Some(probe)
}

/// `OTEL_RESOURCE_ATTRIBUTES` of the sidecar: the pod, node, namespace and,
/// for a Deployment's pod, its ReplicaSet and Deployment, sorted by key.
fn resource_attributes(pod: &Pod, plan: &Plan) -> String {
    let mut attrs = BTreeMap::from([
        ("k8s.namespace.name".to_string(), plan.namespace.clone()),
        (
            "k8s.node.name".to_string(),
            "$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME)".to_string(),
        ),
        (
            "k8s.pod.name".to_string(),
            "$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)".to_string(),
        ),
        (
            "k8s.pod.uid".to_string(),
            "$(OTEL_RESOURCE_ATTRIBUTES_POD_UID)".to_string(),
        ),
    ]);
    if let Some(rs) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.kind == "ReplicaSet")
    {
        attrs.insert("k8s.replicaset.name".into(), rs.name.clone());
        if !rs.uid.is_empty() {
            attrs.insert("k8s.replicaset.uid".into(), rs.uid.clone());
        }
        if let Some(o) = plan.owner.as_ref().filter(|o| o.kind == "Deployment") {
            attrs.insert("k8s.deployment.name".into(), o.name.clone());
        }
    }
    attrs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `otc-container` for `collector`. Pure, so tests can compare it whole.
pub fn container(collector: &Collector, pod: &Pod, plan: &Plan, native: bool) -> Container {
    let spec = &collector.spec;
    let config = &collector.config;
    let mut env: Vec<EnvVar> = spec.env.clone();
    let has = |env: &[EnvVar], n: &str| env.iter().any(|e| e.name == n);
    for var in [
        field_ref("POD_NAME", "metadata.name"),
        resource_ref("GOMEMLIMIT", "limits.memory"),
        resource_ref("GOMAXPROCS", "limits.cpu"),
    ] {
        if !has(&spec.env, &var.name) {
            env.push(var);
        }
    }
    for name in defaults::enabled(config, "receivers") {
        if matches!(
            defaults::component_type(&name),
            "kubeletstats" | "kubelet_stats"
        ) && !has(&spec.env, "K8S_NODE_NAME")
        {
            env.push(field_ref("K8S_NODE_NAME", "spec.nodeName"));
        }
    }
    env.push(plain("OTEL_CONFIG", render::render(config)));
    if !has(&env, "OTEL_RESOURCE_ATTRIBUTES") {
        env.push(field_ref(
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
            "metadata.name",
        ));
        env.push(field_ref(
            "OTEL_RESOURCE_ATTRIBUTES_POD_UID",
            "metadata.uid",
        ));
        env.push(field_ref(
            "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
            "spec.nodeName",
        ));
        env.push(plain(
            "OTEL_RESOURCE_ATTRIBUTES",
            resource_attributes(pod, plan),
        ));
    }
    let mut args: Vec<String> = spec
        .args
        .iter()
        .map(|(k, v)| format!("--{k}={v}"))
        .collect();
    args.sort();
    args.push("--config=env:OTEL_CONFIG".into());
    let mut mounts = spec.volume_mounts.clone();
    for cm in &spec.configmaps {
        let volume = config_map_volume(&cm.name);
        mounts.push(VolumeMount {
            mount_path: config_map_path(&cm.mountpath, &volume),
            name: volume,
            ..Default::default()
        });
    }
    let liveness = health_probe(config, spec.liveness_probe.as_ref());
    let readiness = health_probe(config, spec.readiness_probe.as_ref());
    let mut startup = health_probe(config, spec.startup_probe.as_ref());
    if native && startup.is_none() {
        startup = readiness.clone();
    }
    let uid = crate::inject::security::restricted_uid(pod);
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(
            spec.image
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| DEFAULT_IMAGE.into()),
        ),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: Some(args),
        ports: Some(ports::container_ports(config, &spec.ports)),
        env_from: (!spec.env_from.is_empty()).then(|| spec.env_from.clone()),
        env: Some(env),
        resources: Some(spec.resources.clone().unwrap_or_default()),
        restart_policy: native.then(|| "Always".to_string()),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        liveness_probe: liveness,
        readiness_probe: readiness,
        startup_probe: startup,
        lifecycle: spec.lifecycle.clone(),
        image_pull_policy: spec.image_pull_policy.clone(),
        security_context: Some(
            spec.security_context
                .clone()
                .unwrap_or_else(|| crate::inject::security::restricted(uid)),
        ),
        ..Default::default()
    }
}

/// Adds the CR's init containers, the sidecar (an init container with
/// `restartPolicy: Always` when native), its volumes and the label, in the
/// Operator's order.
pub fn inject(
    ed: &mut Editor<'_>,
    collector: &Collector,
    pod: &Pod,
    plan: &Plan,
    native: bool,
) -> Result<(), ApplyError> {
    for c in &collector.spec.init_containers {
        ed.push_init_container(c.clone())?;
    }
    let c = container(collector, pod, plan, native);
    if native {
        ed.push_init_container(c)?;
    } else {
        ed.push_container(c)?;
    }
    for v in &collector.spec.volumes {
        ed.push_volume(v.clone())?;
    }
    for cm in &collector.spec.configmaps {
        ed.push_volume(Volume {
            name: config_map_volume(&cm.name),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })?;
    }
    ed.set_label(
        INJECTED_LABEL,
        injected_label(&collector.namespace, &collector.name),
    )
}
