//! The `otel-admission.io/status` annotation: what was injected and what
//! failed, as compact JSON. Its presence also makes mutation idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::inject::apply::Injected;
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
        }
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
