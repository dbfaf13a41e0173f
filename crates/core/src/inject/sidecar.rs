//! The OpenTelemetry Collector sidecar `otc-container` (SPEC §5, reference §5).
//!
//! Layout follows the operator: args `--config=env:OTEL_CONFIG` with the
//! rendered YAML in `OTEL_CONFIG` (built-in or inline config), `POD_NAME`,
//! `GOMEMLIMIT`/`GOMAXPROCS` from the container's own limits, ports 4317,
//! 4318 and 8888. A ConfigMap config is mounted at `/conf` instead and read
//! with `--config=/conf/collector.yaml`.
//!
//! Two sources: a sidecar-mode `OpenTelemetryCollector` the cluster cache
//! holds (the Operator's own path, built in `inject/collector/` with no API
//! call on admission: the cache is filled by a watch), else the config's
//! `sidecar:` template, whose config is built in, inline or a ConfigMap.
//!
//! Differences from the operator in the template, and why:
//! - Health probes come only with a config that enables `health_check` (the
//!   built-in one always does; an inline one when it mentions it). With a
//!   ConfigMap we cannot see the config, and a probe against a port nobody
//!   listens on would restart the collector forever.
//! - A restricted security context and default resources are always set, so
//!   the pod still passes the `restricted` profile.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, Pod, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::SidecarConfig;
use crate::inject::editor::{ApplyError, Editor};
use crate::inject::env_var::resource_ref;
use crate::inject::env_var::{field_ref, plain};
use crate::inject::keys::{SIDECAR_CONFIG_VOLUME, SIDECAR_NAME};
use crate::inject::plan::{CollectorSource, Plan, SidecarPlan};

pub const OTLP_GRPC_PORT: i32 = 4317;
pub const OTLP_HTTP_PORT: i32 = 4318;
/// The collector's own Prometheus metrics.
pub const METRICS_PORT: i32 = 8888;
/// The `health_check` extension's default port.
pub const HEALTH_PORT: i32 = 13133;
/// Where a ConfigMap config is mounted, and the key it is read from.
pub const CONFIG_DIR: &str = "/conf";
pub const CONFIG_KEY: &str = "collector.yaml";

/// The app's endpoint when the sidecar is present: localhost, on the port
/// for the SDK's protocol (`grpc` → 4317, `http/*` → 4318).
pub fn local_endpoint(grpc: bool) -> String {
    let port = if grpc { OTLP_GRPC_PORT } else { OTLP_HTTP_PORT };
    format!("http://localhost:{port}")
}

/// The built-in collector config: OTLP gRPC and HTTP on localhost, then
/// `memory_limiter` and `batch`, then OTLP to the gateway; `health_check` for
/// the probes and the collector's metrics on 8888. Hand-written YAML, so the
/// output is stable and readable in `kubectl get pod -o yaml`.
pub fn builtin_config(gateway: &str) -> String {
    // A JSON string is a valid YAML scalar, so this quotes any gateway safely.
    let endpoint = serde_json::to_string(gateway).unwrap_or_else(|_| "\"\"".into());
    let insecure = !gateway.starts_with("https://");
    format!(
        "extensions:
  health_check:
    endpoint: 0.0.0.0:{HEALTH_PORT}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: localhost:{OTLP_GRPC_PORT}
      http:
        endpoint: localhost:{OTLP_HTTP_PORT}
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 25
  batch: {{}}
exporters:
  otlp:
    endpoint: {endpoint}
    tls:
      insecure: {insecure}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 0.0.0.0
                port: {METRICS_PORT}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp]
"
    )
}

fn port(name: &str, n: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: n,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn health_probe(period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".into()),
            port: IntOrString::Int(HEALTH_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// The `otc-container` for `plan`. Pure, so tests can compare it whole.
/// A collector resource is built as the Operator builds it
/// ([`crate::inject::collector::container`]); the rest is the config's template.
pub fn container(cfg: &SidecarConfig, plan: &SidecarPlan, pod: &Pod, pod_plan: &Plan) -> Container {
    let mut env = vec![
        field_ref("POD_NAME", "metadata.name"),
        resource_ref("GOMEMLIMIT", "limits.memory"),
        resource_ref("GOMAXPROCS", "limits.cpu"),
    ];
    let (args, mounts, health) = match &plan.source {
        CollectorSource::Builtin => {
            env.push(plain("OTEL_CONFIG", builtin_config(&cfg.gateway)));
            (vec!["--config=env:OTEL_CONFIG".to_string()], None, true)
        }
        CollectorSource::Inline(text) => {
            env.push(plain("OTEL_CONFIG", text.clone()));
            (
                vec!["--config=env:OTEL_CONFIG".to_string()],
                None,
                text.contains("health_check"),
            )
        }
        CollectorSource::Resource(c) => {
            return crate::inject::collector::container(c, pod, pod_plan, plan.native);
        }
        CollectorSource::ConfigMap(_) => (
            vec![format!("--config={CONFIG_DIR}/{CONFIG_KEY}")],
            Some(vec![VolumeMount {
                name: SIDECAR_CONFIG_VOLUME.into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]),
            false,
        ),
    };
    let uid = crate::inject::security::restricted_uid(pod);
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(cfg.image.clone()),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![
            port("otlp-grpc", OTLP_GRPC_PORT),
            port("otlp-http", OTLP_HTTP_PORT),
            port("metrics", METRICS_PORT),
        ]),
        resources: Some(crate::inject::resources::resources(
            cfg.resources.as_ref(),
            ("500m", "256Mi"),
            ("50m", "64Mi"),
        )),
        security_context: Some(crate::inject::security::restricted(uid)),
        volume_mounts: mounts,
        liveness_probe: health.then(|| health_probe(10, 3)),
        readiness_probe: health.then(|| health_probe(10, 3)),
        // A native sidecar's startup probe holds back the app until the
        // collector listens, so early spans are not dropped.
        startup_probe: (health && plan.native).then(|| health_probe(1, 30)),
        restart_policy: plan.native.then(|| "Always".to_string()),
        ..Default::default()
    }
}

/// Adds the sidecar (and its ConfigMap volume). Decide already checked that
/// neither the container nor the volume exists.
pub fn inject(
    ed: &mut Editor<'_>,
    cfg: &SidecarConfig,
    plan: &SidecarPlan,
    pod: &Pod,
    pod_plan: &Plan,
) -> Result<(), ApplyError> {
    if let CollectorSource::Resource(c) = &plan.source {
        // Its init containers, volumes and label come with it.
        return crate::inject::collector::inject(ed, c, pod, pod_plan, plan.native);
    }
    if let CollectorSource::ConfigMap(name) = &plan.source {
        ed.push_volume(Volume {
            name: SIDECAR_CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })?;
    }
    let c = container(cfg, plan, pod, pod_plan);
    if plan.native {
        ed.push_init_container(c)
    } else {
        ed.push_container(c).map(|_| ())
    }
}
