//! The `otel-admission.io/status` annotation: what was injected and what
//! failed, as compact JSON. Its presence also makes mutation idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::inject::applied::{Injected, SidecarDone};
use crate::inject::plan::Failure;

/// Spelled in `keys.rs`, with every key we read or write.
pub use crate::inject::keys::{INJECTED_LABEL, STATUS_KEY};
/// Bumped whenever the same inputs would produce a different pod, so pods
/// injected by an older layout read as stale (SPEC §6a).
pub const LAYOUT_VERSION: u32 = 2;

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
    /// [`fingerprint`] of what decided the injection; also the value of
    /// the [`INJECTED_LABEL`] label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
}

/// What decided one pod's injection, in a canonical form: the plan's
/// choices and the specs they came from, never the pod's own name or the
/// ReplicaSet's hash, so every replica of a template, and a workload's
/// template seen by `rollout plan`, gets the same fingerprint.
#[derive(Serialize)]
struct Inputs<'a> {
    layout: u32,
    languages: Vec<LanguageInputs<'a>>,
    sidecar: Option<SidecarInputs<'a>>,
    probes: Option<(&'a str, &'a crate::config::ProbesConfig)>,
    annotations: Option<(&'a str, Option<&'a str>)>,
}

#[derive(Serialize)]
struct LanguageInputs<'a> {
    language: &'a str,
    decided_by: &'a str,
    instrumentation: &'a str,
    spec: &'a crate::instrumentation::InstrumentationSpec,
    containers: &'a [String],
    musl: bool,
    go_target_exe: Option<&'a str>,
    php: Option<(&'a str, &'a str, &'a str)>,
}

#[derive(Serialize)]
struct SidecarInputs<'a> {
    decided_by: &'a str,
    native: bool,
    collector: Option<(
        String,
        &'a crate::otelcol::CollectorSpec,
        &'a serde_json::Value,
    )>,
    template: Option<&'a crate::config::SidecarConfig>,
}

/// A short, stable hash of what decided the injection (SPEC §5): equal
/// inputs give equal fingerprints across restarts, replicas and versions
/// that do not change the output. FNV-1a, hand-written because it must not
/// change with a library or the standard library's hasher.
pub fn fingerprint(plan: &crate::inject::plan::Plan, config: &crate::config::Config) -> String {
    use crate::inject::plan::{CollectorSource, Libc};
    let inputs = Inputs {
        layout: LAYOUT_VERSION,
        languages: plan
            .languages
            .iter()
            .map(|lp| LanguageInputs {
                language: lp.language.key(),
                decided_by: &lp.decided_by,
                instrumentation: &lp.instrumentation.label,
                spec: &lp.instrumentation.instrumentation.spec,
                containers: &lp.containers,
                musl: lp.libc == Libc::Musl,
                go_target_exe: lp.go_target_exe.as_deref(),
                php: lp
                    .php
                    .as_ref()
                    .map(|p| (p.api_version.as_str(), p.platform, p.thread_safety)),
            })
            .collect(),
        sidecar: plan.sidecar.as_ref().map(|sp| SidecarInputs {
            decided_by: &sp.decided_by,
            native: sp.native,
            collector: match &sp.source {
                CollectorSource::Resource(c) => Some((c.key(), &c.spec, &c.config)),
                _ => None,
            },
            template: (!matches!(sp.source, CollectorSource::Resource(_)))
                .then_some(&config.sidecar),
        }),
        probes: plan.probes.as_deref().map(|by| (by, &config.probes)),
        annotations: plan
            .annotations
            .as_ref()
            .map(|a| (a.decided_by.as_str(), a.mesh.as_deref())),
    };
    // Hashed as it is serialized: the same bytes, no buffer.
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let _ = serde_json::to_writer(&mut h, &inputs);
    format!("{:016x}", h.0)
}

/// FNV-1a over the bytes written to it.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
