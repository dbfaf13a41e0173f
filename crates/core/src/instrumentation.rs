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

use crate::language::Language;

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
    pub nodejs: Option<LanguageSpec>,
    /// Operator 0.162+: the PHP extension (annotation `otel-php-api-version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub php: Option<LanguageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<LanguageSpec>,
    /// Operator 0.162+: Ruby's auto-instrumentation on `RUBYOPT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruby: Option<LanguageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dotnet: Option<LanguageSpec>,
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

impl Instrumentation {
    /// Reads an Instrumentation object, with the field path of what does
    /// not parse. An object without `spec` (or with `spec: null`) has an
    /// empty spec, as the API server and the Operator accept it (its
    /// `TestSDKInjection` "Empty instrumentation spec"): the derive's own
    /// `Deserialize` cannot say so, because `kube(attr)` refuses serde
    /// attributes and the `spec` field is generated, so every reader of
    /// Instrumentation objects (the `--instrumentation` files, the cluster
    /// watch) comes through here.
    pub fn from_object(
        obj: &serde_json::Value,
    ) -> Result<Self, serde_path_to_error::Error<serde_json::Error>> {
        let missing = obj
            .as_object()
            .is_some_and(|m| m.get("spec").is_none_or(serde_json::Value::is_null));
        if missing {
            let mut obj = obj.clone();
            if let Some(m) = obj.as_object_mut() {
                m.insert("spec".into(), serde_json::Value::Object(Default::default()));
            }
            return serde_path_to_error::deserialize(&obj);
        }
        serde_path_to_error::deserialize(obj)
    }
}

impl InstrumentationSpec {
    /// The block of `lang` (`spec.<lang>`), in its common shape; `None` for
    /// the SDK, which has none, and for a language the spec leaves out.
    pub fn language(&self, lang: Language) -> Option<&LanguageSpec> {
        match lang {
            Language::Java => self.java.as_ref().map(|l| &l.common),
            Language::Nodejs => self.nodejs.as_ref(),
            Language::Php => self.php.as_ref(),
            Language::Python => self.python.as_ref(),
            Language::Ruby => self.ruby.as_ref(),
            Language::Dotnet => self.dotnet.as_ref(),
            Language::Go => self.go.as_ref().map(|l| &l.common),
            Language::ApacheHttpd => self.apache_httpd.as_ref().map(|l| &l.common),
            Language::Nginx => self.nginx.as_ref().map(|l| &l.common),
            Language::Sdk => None,
        }
    }
}

impl Java {
    /// The init containers' requests and limits: `resources`, the operator's
    /// name for Java, else the common `resourceRequirements`.
    pub fn resources(&self) -> Option<&ResourceRequirements> {
        self.resources
            .as_ref()
            .or(self.common.resource_requirements.as_ref())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_labels_for_resource_attributes: bool,
}

// What every language's block has in the operator's schema. Node.js,
// Python, .NET, PHP and Ruby are exactly this; Java, Go, Apache HTTPD and
// nginx add their own fields beside it (`#[serde(flatten)]`), so each field
// is declared, defaulted and validated once. (A `//` comment: a doc comment
// would become the description of every language in the CRD.)
/// The image, volume, env and resources of a language's auto-instrumentation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LanguageSpec {
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
    #[serde(flatten)]
    pub common: LanguageSpec,
    /// Named `resources` for Java only, as in the operator; the common
    /// `resourceRequirements` is read when it is unset.
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
    #[serde(flatten)]
    pub common: LanguageSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApacheHttpd {
    #[serde(flatten)]
    pub common: LanguageSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Nginx {
    #[serde(flatten)]
    pub common: LanguageSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
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
        let vct_and_size = Language::ALL.into_iter().filter_map(|l| {
            let block = self.language(l)?;
            Some((
                l.spec_field(),
                (&block.volume_claim_template, &block.volume_limit_size),
            ))
        });
        for (lang, pair) in vct_and_size {
            if let (Some(_), Some(_)) = pair {
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

    /// One common block for every language, flattened beside each one's own
    /// fields: `language()` finds it, and Java's `resources` wins over the
    /// common `resourceRequirements`, which it falls back to.
    #[test]
    fn every_language_block_has_the_common_shape() {
        let spec: InstrumentationSpec = serde_json::from_value(serde_json::json!({
            "java": {"image": "j", "resourceRequirements": {"limits": {"cpu": "1"}}, "extensions": [{"image": "e", "dir": "/d"}]},
            "nodejs": {"image": "n"},
            "go": {"image": "g", "securityContext": {"privileged": true}},
            "apacheHttpd": {"image": "a", "version": "2.2"},
            "nginx": {"image": "x", "configFile": "/etc/nginx/nginx.conf"},
        }))
        .expect("spec");
        for (lang, image) in [
            (Language::Java, Some("j")),
            (Language::Nodejs, Some("n")),
            (Language::Go, Some("g")),
            (Language::ApacheHttpd, Some("a")),
            (Language::Nginx, Some("x")),
            (Language::Python, None),
            (Language::Sdk, None),
        ] {
            assert_eq!(
                spec.language(lang).and_then(|l| l.image.as_deref()),
                image,
                "{lang}"
            );
        }
        let java = spec.java.as_ref().expect("java");
        assert_eq!(java.extensions.len(), 1);
        let cpu = |r: Option<&ResourceRequirements>| {
            r.and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("cpu"))
                .map(|q| q.0.clone())
        };
        assert_eq!(cpu(java.resources()), Some("1".into()));
        let own: Java = serde_json::from_value(serde_json::json!({
            "resources": {"limits": {"cpu": "2"}}, "resourceRequirements": {"limits": {"cpu": "1"}}
        }))
        .expect("java");
        assert_eq!(cpu(own.resources()), Some("2".into()));
        // Serialized back, the common fields sit beside the language's own.
        let back = serde_json::to_value(&spec).expect("json");
        assert_eq!(back["go"]["image"], "g");
        assert_eq!(back["go"]["securityContext"]["privileged"], true);
    }

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

    /// No `spec`, or `spec: null`, reads as an empty spec; a bad field in a
    /// spec that is there still names its path.
    #[test]
    fn an_object_without_spec_has_an_empty_spec() {
        let meta = serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "empty"}});
        let mut null = meta.clone();
        null["spec"] = serde_json::Value::Null;
        for obj in [meta, null] {
            let inst = Instrumentation::from_object(&obj).expect("parses");
            assert_eq!(inst.metadata.name.as_deref(), Some("empty"));
            assert_eq!(inst.spec, InstrumentationSpec::default());
        }
        let bad = serde_json::json!({"metadata": {"name": "x"}, "spec": {"propagators": ["w3c"]}});
        let err = Instrumentation::from_object(&bad).unwrap_err();
        assert_eq!(err.path().to_string(), "spec.propagators[0]");
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
