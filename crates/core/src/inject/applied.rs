//! What applying a plan did: the patch, and a record of each feature, read by
//! the status annotation, warnings, metrics and Events.

use crate::inject::plan::{Failure, Feature};
use crate::language::Language;
use crate::patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use std::collections::BTreeMap;

/// What apply produced.
#[derive(Clone, Debug)]
pub struct Applied {
    pub pod: Pod,
    pub patch: Patch,
    /// Languages injected, with their target containers and Instrumentation.
    pub injected: Vec<Injected>,
    /// The plan's failures plus those found while applying.
    pub failures: Vec<Failure>,
    /// Warnings that are not failures (e.g. the 4317 mismatch).
    pub warnings: Vec<String>,
    /// The collector sidecar, when injected.
    pub sidecar: Option<SidecarDone>,
    /// Container to the probe kinds added to it.
    pub probes: BTreeMap<String, Vec<String>>,
    /// The annotation keys set or merged, when the feature ran.
    pub annotations: Option<Vec<String>>,
}

/// The injected collector sidecar, as the status annotation records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SidecarDone {
    /// `native` (initContainers) or `container`.
    pub mode: String,
    /// `builtin`, `inline` or `configmap/<name>`.
    pub config: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    pub language: Language,
    pub containers: Vec<String>,
    pub instrumentation: String,
}

// === impl Applied ===

impl Applied {
    /// The pod features that were injected, for `injections_total`. Probes
    /// count when at least one container got one; annotations when the
    /// feature ran, even if the pod already carried every value.
    pub fn features_done(&self) -> Vec<Feature> {
        let mut out = Vec::new();
        if self.sidecar.is_some() {
            out.push(Feature::Sidecar);
        }
        if !self.probes.is_empty() {
            out.push(Feature::Probes);
        }
        if self.annotations.is_some() {
            out.push(Feature::Annotations);
        }
        out
    }
}
