//! The OpenTelemetry Operator's `Instrumentation` schema (`opentelemetry.io/v1alpha1`).
//!
//! One set of types serves both the cluster resource and the config file's
//! `defaults`, so a spec that works in one place works in the other. Field names
//! follow the operator exactly, including its inconsistencies (`java.resources`
//! but `resourceRequirements` elsewhere; `ca_file` in snake case).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, PersistentVolumeClaimTemplate, ResourceRequirements, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "opentelemetry.io/v1alpha1";
pub const KIND: &str = "Instrumentation";

/// The spec of an `Instrumentation`. The derive also generates the
/// `Instrumentation` resource type and its CRD (`otel-admission crd`).
///
/// The CRD keeps unknown spec fields (`x-kubernetes-preserve-unknown-fields`):
/// objects written for a newer operator are stored intact, not pruned, even
/// where we do not read a field.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "opentelemetry.io",
    version = "v1alpha1",
    kind = "Instrumentation",
    namespaced,
    shortname = "otelinst",
    shortname = "otelinsts",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.exporter.endpoint"}"#,
    printcolumn = r#"{"name":"Sampler","type":"string","jsonPath":".spec.sampler.type"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
#[serde(rename_all = "camelCase")]
pub struct InstrumentationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<Exporter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub propagators: Vec<Propagator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<Sampler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Common env for every language; never overrides the container's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_container_security_context: Option<SecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub java: Option<Java>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodejs: Option<Language>,
    /// Operator 0.162+: the PHP extension (annotation `otel-php-api-version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub php: Option<Language>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<Language>,
    /// Operator 0.162+: Ruby's auto-instrumentation on `RUBYOPT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruby: Option<Language>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dotnet: Option<Language>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<Go>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apache_httpd: Option<ApacheHttpd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<Nginx>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exporter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ExporterTls>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExporterTls {
    #[serde(
        default,
        rename = "secretName",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_name: Option<String>,
    #[serde(
        default,
        rename = "configMapName",
        skip_serializing_if = "Option::is_none"
    )]
    pub config_map_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// The operator's propagator enum; anything else is rejected with the field path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Propagator {
    Tracecontext,
    Baggage,
    B3,
    B3multi,
    Jaeger,
    Xray,
    Ottrace,
    None,
}

impl Propagator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tracecontext => "tracecontext",
            Self::Baggage => "baggage",
            Self::B3 => "b3",
            Self::B3multi => "b3multi",
            Self::Jaeger => "jaeger",
            Self::Xray => "xray",
            Self::Ottrace => "ottrace",
            Self::None => "none",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sampler {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<SamplerType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argument: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SamplerType {
    AlwaysOn,
    AlwaysOff,
    Traceidratio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    ParentbasedTraceidratio,
    JaegerRemote,
    ParentbasedJaegerRemote,
    Xray,
}

impl SamplerType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlwaysOn => "always_on",
            Self::AlwaysOff => "always_off",
            Self::Traceidratio => "traceidratio",
            Self::ParentbasedAlwaysOn => "parentbased_always_on",
            Self::ParentbasedAlwaysOff => "parentbased_always_off",
            Self::ParentbasedTraceidratio => "parentbased_traceidratio",
            Self::JaegerRemote => "jaeger_remote",
            Self::ParentbasedJaegerRemote => "parentbased_jaeger_remote",
            Self::Xray => "xray",
        }
    }

    fn takes_ratio(self) -> bool {
        matches!(self, Self::Traceidratio | Self::ParentbasedTraceidratio)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Resource {
    #[serde(
        default,
        rename = "resourceAttributes",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub resource_attributes: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "addK8sUIDAttributes",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub add_k8s_uid_attributes: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_labels_for_resource_attributes: bool,
}

/// Node.js, Python and .NET share this shape in the operator's schema.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Language {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<PersistentVolumeClaimTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_limit_size: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Java {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<PersistentVolumeClaimTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_limit_size: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Named `resources` for Java only, as in the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<JavaExtension>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JavaExtension {
    pub image: String,
    pub dir: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Go {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<PersistentVolumeClaimTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_limit_size: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApacheHttpd {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<PersistentVolumeClaimTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_limit_size: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Nginx {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<PersistentVolumeClaimTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_limit_size: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
}

/// A semantic problem in a spec that parsed; the path is relative to `spec`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SpecProblem {
    pub path: String,
    pub reason: String,
}

// === impl InstrumentationSpec ===

impl InstrumentationSpec {
    /// Checks what the schema cannot express: the rules of the operator's
    /// validating webhook. Every problem is reported, not just the first.
    pub fn validate(&self) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        if let Some(sampler) = &self.sampler
            && let (Some(t), Some(arg)) = (sampler.type_, sampler.argument.as_deref())
            && t.takes_ratio()
        {
            match arg.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => {}
                Ok(_) => out.push(SpecProblem {
                    path: "sampler.argument".into(),
                    reason: format!("ratio {arg:?} must lie in [0, 1] for {}", t.as_str()),
                }),
                Err(_) => out.push(SpecProblem {
                    path: "sampler.argument".into(),
                    reason: format!("{arg:?} is not a number, {} needs a ratio", t.as_str()),
                }),
            }
        }
        let vct_and_size = [
            (
                "java",
                self.java
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
            (
                "nodejs",
                self.nodejs
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
            (
                "php",
                self.php
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
            (
                "python",
                self.python
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
            (
                "ruby",
                self.ruby
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
            (
                "dotnet",
                self.dotnet
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
            (
                "go",
                self.go
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
            (
                "apacheHttpd",
                self.apache_httpd
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
            (
                "nginx",
                self.nginx
                    .as_ref()
                    .map(|l| (&l.volume_claim_template, &l.volume_limit_size)),
            ),
        ];
        for (lang, pair) in vct_and_size {
            if let Some((Some(_), Some(_))) = pair {
                out.push(SpecProblem {
                    path: format!("{lang}.volumeClaimTemplate"),
                    reason: "volumeClaimTemplate and volumeLimitSize cannot both be set".into(),
                });
            }
        }
        if let Some(v) = self
            .apache_httpd
            .as_ref()
            .and_then(|a| a.version.as_deref())
            && v != "2.4"
            && v != "2.2"
        {
            out.push(SpecProblem {
                path: "apacheHttpd.version".into(),
                reason: format!("{v:?} is not supported; use \"2.4\" or \"2.2\""),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_example_round_trips() {
        let yaml = r#"
apiVersion: opentelemetry.io/v1alpha1
kind: Instrumentation
metadata:
  name: my-instrumentation
spec:
  exporter:
    endpoint: http://otel-collector:4317
  propagators: [tracecontext, baggage, b3]
  sampler:
    type: parentbased_traceidratio
    argument: "0.25"
  resource:
    addK8sUIDAttributes: true
  java:
    resources:
      limits: { cpu: 500m }
  python:
    env:
      - name: OTEL_EXPORTER_OTLP_ENDPOINT
        value: http://otel-collector:4318
"#;
        let inst: Instrumentation = serde_yaml_ng::from_str(yaml).expect("parses");
        assert_eq!(inst.metadata.name.as_deref(), Some("my-instrumentation"));
        assert_eq!(
            serde_json::to_value(&inst).expect("ser")["apiVersion"],
            API_VERSION
        );
        assert_eq!(inst.spec.propagators.len(), 3);
        assert!(
            inst.spec
                .resource
                .as_ref()
                .is_some_and(|r| r.add_k8s_uid_attributes)
        );
        assert!(inst.spec.validate().is_empty());
        let back: Instrumentation =
            serde_json::from_value(serde_json::to_value(&inst).expect("ser")).expect("de");
        assert_eq!(back, inst);
    }

    #[test]
    fn ratio_out_of_range_is_reported() {
        let spec: InstrumentationSpec = serde_json::from_value(serde_json::json!({
            "sampler": {"type": "traceidratio", "argument": "1.5"},
            "python": {"volumeLimitSize": "100Mi", "volumeClaimTemplate": {"spec": {}}},
        }))
        .expect("parses");
        let problems = spec.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].path, "sampler.argument");
        assert_eq!(problems[1].path, "python.volumeClaimTemplate");
    }

    #[test]
    fn unknown_propagator_is_an_error() {
        let err = serde_json::from_value::<InstrumentationSpec>(serde_json::json!({
            "propagators": ["w3c"]
        }))
        .unwrap_err();
        assert!(err.to_string().contains("w3c"), "{err}");
    }
}
