//! The `otel-admission.io/status` annotation: what was injected and what
//! failed, as compact JSON. Its presence also makes mutation idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::inject::apply::{Injected, SidecarDone};
use crate::inject::plan::Failure;

pub const STATUS_KEY: &str = "otel-admission.io/status";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The otel-admission version that injected the pod.
    pub version: String,
    /// Language to target containers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub languages: BTreeMap<String, Vec<String>>,
    /// Language to the Instrumentation used (`ns/name` or `config defaults`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instrumentation: BTreeMap<String, String>,
    /// The collector sidecar's mode and config source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarDone>,
    /// Container to the probe kinds added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, Vec<String>>,
    /// Annotation keys set or merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Vec<String>>,
    /// Feature to skip reason, for what was asked for but not done.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, String>,
}

impl Status {
    pub fn new(injected: &[Injected], failures: &[Failure]) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").into(),
            languages: injected
                .iter()
                .map(|i| (i.language.key().to_string(), i.containers.clone()))
                .collect(),
            instrumentation: injected
                .iter()
                .map(|i| (i.language.key().to_string(), i.instrumentation.clone()))
                .collect(),
            failures: failures
                .iter()
                .map(|f| (f.feature.to_string(), f.reason.as_str().to_string()))
                .collect(),
            ..Self::default()
        }
    }

    /// Adds the pod features' results.
    pub fn with_features(
        mut self,
        sidecar: Option<SidecarDone>,
        probes: &BTreeMap<String, Vec<String>>,
        annotations: Option<&[String]>,
    ) -> Self {
        self.sidecar = sidecar;
        self.probes = probes.clone();
        self.annotations = annotations.map(<[String]>::to_vec);
        self
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
