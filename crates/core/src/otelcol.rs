//! The OpenTelemetry Operator's `OpenTelemetryCollector`: the fields a
//! sidecar-mode collector is built from (`opentelemetry.io/v1beta1`, with a
//! structured `spec.config`, and `v1alpha1`, with the config as a YAML string).
//!
//! Read from the cluster cache (SPEC §6) and from files (`inject
//! --instrumentation`). Unknown fields are ignored: the Operator's schema is
//! much larger than what a sidecar uses.

pub mod defaults;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, Lifecycle, ResourceRequirements, SecurityContext, Volume,
    VolumeMount,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "opentelemetry.io";
pub const KIND: &str = "OpenTelemetryCollector";
pub const PLURAL: &str = "opentelemetrycollectors";
/// The version we watch; the API server serves `v1alpha1` objects through it.
pub const VERSION: &str = "v1beta1";

/// A sidecar-mode collector, ready to build `otc-container` from.
#[derive(Clone, Debug, PartialEq)]
pub struct Collector {
    pub namespace: String,
    pub name: String,
    pub spec: CollectorSpec,
    /// `spec.config` as an object, with the Operator's defaults applied
    /// ([`crate::otelcol::defaults`]).
    pub config: Value,
}

/// The parts of `spec` the sidecar uses.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CollectorSpec {
    pub mode: Option<String>,
    pub image: Option<String>,
    pub command: Vec<String>,
    /// `--<key>=<value>` flags.
    pub args: BTreeMap<String, String>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<EnvFromSource>,
    pub resources: Option<ResourceRequirements>,
    pub security_context: Option<SecurityContext>,
    pub image_pull_policy: Option<String>,
    pub lifecycle: Option<Lifecycle>,
    pub volumes: Vec<Volume>,
    pub volume_mounts: Vec<VolumeMount>,
    pub init_containers: Vec<Container>,
    pub ports: Vec<CollectorPort>,
    pub configmaps: Vec<ConfigMapMount>,
    pub liveness_probe: Option<ProbeSettings>,
    pub readiness_probe: Option<ProbeSettings>,
    pub startup_probe: Option<ProbeSettings>,
    /// An object (v1beta1) or a YAML string (v1alpha1).
    pub config: Value,
}

/// `spec.ports[]`: a Service port, of which the container takes name, port,
/// protocol and hostPort.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CollectorPort {
    pub name: Option<String>,
    pub port: i32,
    pub protocol: Option<String>,
    pub host_port: Option<i32>,
}

/// `spec.configmaps[]`: a ConfigMap mounted under `/var/conf/<mountpath>`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ConfigMapMount {
    pub name: String,
    pub mountpath: String,
}

/// `spec.<kind>Probe`: timings over the probe the config's `health_check` gives.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProbeSettings {
    pub initial_delay_seconds: Option<i32>,
    pub period_seconds: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub success_threshold: Option<i32>,
    pub failure_threshold: Option<i32>,
    pub termination_grace_period_seconds: Option<i64>,
}

/// Why a collector object cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CollectorError {
    pub field: String,
    pub message: String,
}

// === impl Collector ===

impl Collector {
    /// Reads one object (`metadata` and `spec`), either version. A v1alpha1
    /// config string that does not parse becomes the empty config, as the
    /// Operator's conversion does.
    pub fn from_object(obj: &Value, default_ns: &str) -> Result<Self, CollectorError> {
        let meta = &obj["metadata"];
        let name = meta["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| CollectorError {
                field: "metadata.name".into(),
                message: "missing".into(),
            })?
            .to_string();
        let namespace = meta["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(default_ns)
            .to_string();
        let spec_value = obj.get("spec").cloned().unwrap_or(Value::Null);
        let spec: CollectorSpec = if spec_value.is_null() {
            CollectorSpec::default()
        } else {
            serde_path_to_error::deserialize(&spec_value).map_err(|e| CollectorError {
                field: format!("spec.{}", e.path()),
                message: e.inner().to_string(),
            })?
        };
        let config = crate::otelcol::defaults::normalize(&spec.config);
        Ok(Self {
            namespace,
            name,
            spec,
            config,
        })
    }

    /// `mode: sidecar`, case-insensitively as the Operator's enum is written.
    pub fn is_sidecar(&self) -> bool {
        self.spec
            .mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("sidecar"))
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The `OpenTelemetryCollector` CRD, for clusters without the Operator: both
/// versions served, v1beta1 stored, every field kept (the Operator's own CRD
/// carries the full schema; we read only what a sidecar needs).
pub const CRD_YAML: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: opentelemetrycollectors.opentelemetry.io
spec:
  group: opentelemetry.io
  names:
    categories:
    - opentelemetry
    kind: OpenTelemetryCollector
    listKind: OpenTelemetryCollectorList
    plural: opentelemetrycollectors
    shortNames:
    - otelcol
    - otelcols
    singular: opentelemetrycollector
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
    subresources:
      status: {}
  - name: v1beta1
    served: true
    storage: true
    additionalPrinterColumns:
    - jsonPath: .spec.mode
      name: Mode
      type: string
    - jsonPath: .metadata.creationTimestamp
      name: Age
      type: date
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
    subresources:
      status: {}
"#;
