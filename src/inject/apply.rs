//! Plan to mutated pod plus JSON Patch, in one pass.
//!
//! Every edit goes through [`Editor`], which changes the typed pod and records
//! the matching RFC 6902 operation against the pod *as it is at that moment*.
//! Applying the operations in order to the original pod JSON therefore gives
//! the mutated pod, with work linear in what we add: no whole-pod diff (Istio's
//! diff was quadratic in env vars, #34799). Missing arrays and maps are added
//! whole, existing arrays are appended to with `/-`, so no operation can fail.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

use std::collections::BTreeMap;

use crate::config::Config;
use crate::inject::language::Language;
use crate::inject::languages;
use crate::inject::plan::{CollectorSource, Failure, Feature, Plan, SkipReason};
use crate::inject::probes::{self, ProbeKind};
use crate::inject::status::{self, Status};
use crate::inject::{annotations, sidecar};

/// An internal failure while building the patch; the pod is admitted per `failureMode`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("pod has no spec")]
    NoSpec,
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

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

/// Turns a plan into the mutated pod and its patch. Pure.
///
/// Order: the sidecar (as the operator), then languages (their endpoint
/// already points at the sidecar when one is planned), then probes (which
/// never touch the sidecar), then annotations (which need to know the
/// sidecar's port).
pub fn apply(pod: &Pod, plan: &Plan, config: &Config) -> Result<Applied, ApplyError> {
    apply_owned(pod.clone(), plan, config)
}

/// What the features read from the pod as it was sent: its metadata and
/// pod-level settings. Containers are read and changed through the
/// [`Editor`] only, so this copy leaves them out.
fn header(pod: &Pod) -> Pod {
    Pod {
        metadata: pod.metadata.clone(),
        spec: pod.spec.as_ref().map(|s| PodSpec {
            security_context: s.security_context.clone(),
            node_name: s.node_name.clone(),
            share_process_namespace: s.share_process_namespace,
            ..Default::default()
        }),
        status: None,
    }
}

/// [`apply`] on a pod the caller gives up: it is edited in place, so a pod
/// with a hundred thousand variables is held once, not twice.
pub fn apply_owned(mut out: Pod, plan: &Plan, config: &Config) -> Result<Applied, ApplyError> {
    let original = header(&out);
    let pod = &original;
    let Pod { metadata, spec, .. } = &mut out;
    let spec = spec.as_mut().ok_or(ApplyError::NoSpec)?;
    let mut ed = Editor {
        meta: metadata,
        spec,
        ops: Vec::new(),
    };
    let mut injected = Vec::new();
    let mut failures = plan.failures.clone();
    let mut warnings = Vec::new();
    // The sidecar first, as the operator's sidecar mutator runs before its
    // instrumentation mutator: a native sidecar precedes the agents' init
    // containers. The languages' endpoints already know it is planned.
    let mut sidecar_done = None;
    if let Some(sp) = &plan.sidecar {
        sidecar::inject(&mut ed, &config.sidecar, sp, pod, plan)?;
        sidecar_done = Some(SidecarDone {
            mode: if sp.native { "native" } else { "container" }.into(),
            config: match &sp.source {
                CollectorSource::Resource(c) => format!("collector/{}", c.key()),
                CollectorSource::Builtin => "builtin".into(),
                CollectorSource::Inline(_) => "inline".into(),
                CollectorSource::ConfigMap(n) => format!("configmap/{n}"),
            },
        });
    }
    for lp in &plan.languages {
        match languages::inject(&mut ed, pod, plan, lp, &mut warnings)? {
            Ok(()) => injected.push(Injected {
                language: lp.language,
                containers: lp.containers.clone(),
                instrumentation: lp.instrumentation.label.clone(),
            }),
            Err(message) => failures.push(Failure {
                feature: Feature::Instrumentation(lp.language),
                reason: SkipReason::Error,
                message,
            }),
        }
    }
    let mut probes_done = BTreeMap::new();
    if plan.probes.is_some() {
        probes_done = probes::inject(&mut ed, config, &mut warnings)?;
        if probes_done.is_empty() && !warnings.iter().any(|w| w.starts_with("probes:")) {
            warnings.push("probes: every app container already has all three probes".into());
        }
    }
    let mut annotations_done = None;
    if let Some(ap) = &plan.annotations {
        match annotations::inject(&mut ed, ap, sidecar_done.is_some(), &mut warnings)? {
            Ok(keys) => annotations_done = Some(keys),
            Err(message) => failures.push(Failure {
                feature: Feature::Annotations,
                reason: SkipReason::NotSelected,
                message,
            }),
        }
    }
    let status = Status::new(&injected, &failures).with_features(
        sidecar_done.clone(),
        &probes_done,
        annotations_done.as_deref(),
    );
    let done_something = !injected.is_empty()
        || sidecar_done.is_some()
        || !probes_done.is_empty()
        || annotations_done.is_some();
    let mut status = status;
    if done_something {
        status.fingerprint = status::fingerprint(plan, config);
        ed.set_label(status::INJECTED_LABEL, status.fingerprint.clone())?;
    }
    let json = status.to_json().map_err(|source| ApplyError::Serialize {
        what: "status annotation",
        source,
    })?;
    ed.set_annotation(status::STATUS_KEY, json)?;
    let patch = Patch(ed.ops);
    Ok(Applied {
        pod: out,
        patch,
        injected,
        failures,
        warnings,
        sidecar: sidecar_done,
        probes: probes_done,
        annotations: annotations_done,
    })
}

/// A container the editor can change: `spec.containers[i]` or `spec.initContainers[i]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Main(usize),
    Init(usize),
}

fn slot_mut(spec: &mut PodSpec, slot: Slot) -> Option<&mut Container> {
    match slot {
        Slot::Main(i) => spec.containers.get_mut(i),
        Slot::Init(i) => spec.init_containers.as_mut().and_then(|c| c.get_mut(i)),
    }
}

impl Slot {
    fn path(self) -> (&'static str, String) {
        match self {
            Self::Main(i) => ("containers", i.to_string()),
            Self::Init(i) => ("initContainers", i.to_string()),
        }
    }
}

/// Records typed edits as patch operations. Indices in paths refer to the pod
/// after all previous operations, exactly as RFC 6902 applies them.
pub struct Editor<'p> {
    meta: &'p mut ObjectMeta,
    spec: &'p mut PodSpec,
    ops: Vec<PatchOperation>,
}

fn ptr(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn to_value<T: Serialize>(what: &'static str, t: &T) -> Result<Value, ApplyError> {
    serde_json::to_value(t).map_err(|source| ApplyError::Serialize { what, source })
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// Appends to an optional array, adding the array when it is absent.
fn push_opt<T: Serialize>(
    ops: &mut Vec<PatchOperation>,
    slot: &mut Option<Vec<T>>,
    path: &[&str],
    what: &'static str,
    item: T,
) -> Result<(), ApplyError> {
    let v = to_value(what, &item)?;
    match slot {
        Some(list) => {
            let mut p = ptr(path);
            p.push_back("-");
            ops.push(add(p, v));
            list.push(item);
        }
        None => {
            ops.push(add(ptr(path), Value::Array(vec![v])));
            *slot = Some(vec![item]);
        }
    }
    Ok(())
}

// === impl Editor ===

impl Editor<'_> {
    pub fn spec(&self) -> &PodSpec {
        self.spec
    }

    /// A regular container by name, else an init container.
    pub fn find_slot(&self, name: &str) -> Option<Slot> {
        self.spec
            .containers
            .iter()
            .position(|c| c.name == name)
            .map(Slot::Main)
            .or_else(|| {
                self.spec
                    .init_containers
                    .iter()
                    .flatten()
                    .position(|c| c.name == name)
                    .map(Slot::Init)
            })
    }

    pub fn container(&self, slot: Slot) -> Option<&Container> {
        match slot {
            Slot::Main(i) => self.spec.containers.get(i),
            Slot::Init(i) => self.spec.init_containers.as_ref().and_then(|c| c.get(i)),
        }
    }

    fn container_mut(&mut self, slot: Slot) -> Option<&mut Container> {
        slot_mut(self.spec, slot)
    }

    /// Whether any container or init container already has this name.
    pub fn has_container(&self, name: &str) -> bool {
        self.find_slot(name).is_some()
    }

    pub fn has_volume(&self, name: &str) -> bool {
        self.spec.volumes.iter().flatten().any(|v| v.name == name)
    }

    pub fn push_init_container(&mut self, c: Container) -> Result<(), ApplyError> {
        push_opt(
            &mut self.ops,
            &mut self.spec.init_containers,
            &["spec", "initContainers"],
            "init container",
            c,
        )
    }

    /// Inserts an init container at `at` (≤ len), before an init container it serves.
    pub fn insert_init_container(&mut self, at: usize, c: Container) -> Result<(), ApplyError> {
        let v = to_value("init container", &c)?;
        match self.spec.init_containers.as_mut() {
            Some(list) if at < list.len() => {
                self.ops
                    .push(add(ptr(&["spec", "initContainers", &at.to_string()]), v));
                list.insert(at, c);
                Ok(())
            }
            _ => self.push_init_container(c),
        }
    }

    /// Appends a container and returns its slot.
    pub fn push_container(&mut self, c: Container) -> Result<Slot, ApplyError> {
        let v = to_value("container", &c)?;
        self.ops.push(add(ptr(&["spec", "containers", "-"]), v));
        self.spec.containers.push(c);
        Ok(Slot::Main(self.spec.containers.len() - 1))
    }

    /// Sets the security context of the init container named `name`, if any.
    pub fn set_init_security_context(
        &mut self,
        name: &str,
        sc: k8s_openapi::api::core::v1::SecurityContext,
    ) -> Result<(), ApplyError> {
        let Some(Slot::Init(i)) = self.find_slot(name) else {
            return Ok(());
        };
        let v = to_value("security context", &sc)?;
        if let Some(c) = slot_mut(self.spec, Slot::Init(i)) {
            c.security_context = Some(sc);
            self.ops.push(add(
                ptr(&["spec", "initContainers", &i.to_string(), "securityContext"]),
                v,
            ));
        }
        Ok(())
    }

    pub fn push_volume(&mut self, v: Volume) -> Result<(), ApplyError> {
        push_opt(
            &mut self.ops,
            &mut self.spec.volumes,
            &["spec", "volumes"],
            "volume",
            v,
        )
    }

    pub fn push_mount(&mut self, slot: Slot, m: VolumeMount) -> Result<(), ApplyError> {
        let (list, idx) = slot.path();
        let Some(c) = slot_mut(self.spec, slot) else {
            return Ok(());
        };
        push_opt(
            &mut self.ops,
            &mut c.volume_mounts,
            &["spec", list, &idx, "volumeMounts"],
            "volume mount",
            m,
        )
    }

    /// Removes the mount at `at` (the web servers drop the app's own config mount).
    pub fn remove_mount(&mut self, slot: Slot, at: usize) {
        let (list, idx) = slot.path();
        if let Some(mounts) = slot_mut(self.spec, slot).and_then(|c| c.volume_mounts.as_mut())
            && at < mounts.len()
        {
            mounts.remove(at);
            self.ops.push(PatchOperation::Remove(RemoveOperation {
                path: ptr(&["spec", list, &idx, "volumeMounts", &at.to_string()]),
            }));
        }
    }

    pub fn env(&self, slot: Slot) -> &[EnvVar] {
        self.container(slot)
            .and_then(|c| c.env.as_deref())
            .unwrap_or_default()
    }

    pub fn find_env(&self, slot: Slot, name: &str) -> Option<usize> {
        self.env(slot).iter().position(|e| e.name == name)
    }

    pub fn push_env(&mut self, slot: Slot, var: EnvVar) -> Result<(), ApplyError> {
        let (list, idx) = slot.path();
        let Some(c) = slot_mut(self.spec, slot) else {
            return Ok(());
        };
        push_opt(
            &mut self.ops,
            &mut c.env,
            &["spec", list, &idx, "env"],
            "env var",
            var,
        )
    }

    fn env_path(slot: Slot, at: usize) -> PointerBuf {
        let (list, idx) = slot.path();
        ptr(&["spec", list, &idx, "env", &at.to_string()])
    }

    /// Inserts at `at` (≤ len), shifting later entries.
    pub fn insert_env(&mut self, slot: Slot, at: usize, var: EnvVar) -> Result<(), ApplyError> {
        let v = to_value("env var", &var)?;
        let path = Self::env_path(slot, at);
        if let Some(env) = self.container_mut(slot).and_then(|c| c.env.as_mut())
            && at <= env.len()
        {
            env.insert(at, var);
            self.ops.push(add(path, v));
        }
        Ok(())
    }

    /// Puts `var` first, before every variable the container defines.
    pub fn prepend_env(&mut self, slot: Slot, var: EnvVar) -> Result<(), ApplyError> {
        if self.env(slot).is_empty() {
            return self.push_env(slot, var);
        }
        self.insert_env(slot, 0, var)
    }

    pub fn replace_env(&mut self, slot: Slot, at: usize, var: EnvVar) -> Result<(), ApplyError> {
        let value = to_value("env var", &var)?;
        let path = Self::env_path(slot, at);
        if let Some(entry) = self
            .container_mut(slot)
            .and_then(|c| c.env.as_mut())
            .and_then(|e| e.get_mut(at))
        {
            *entry = var;
            self.ops
                .push(PatchOperation::Replace(ReplaceOperation { path, value }));
        }
        Ok(())
    }

    pub fn remove_env(&mut self, slot: Slot, at: usize) {
        let path = Self::env_path(slot, at);
        if let Some(env) = self.container_mut(slot).and_then(|c| c.env.as_mut())
            && at < env.len()
        {
            env.remove(at);
            self.ops
                .push(PatchOperation::Remove(RemoveOperation { path }));
        }
    }

    pub fn annotations(&self) -> Option<&BTreeMap<String, String>> {
        self.meta.annotations.as_ref()
    }

    /// Sets a probe the container does not have (`add` on an absent member).
    pub fn set_probe(
        &mut self,
        slot: Slot,
        kind: ProbeKind,
        probe: k8s_openapi::api::core::v1::Probe,
    ) -> Result<(), ApplyError> {
        let v = to_value("probe", &probe)?;
        let (list, idx) = slot.path();
        let Some(c) = slot_mut(self.spec, slot) else {
            return Ok(());
        };
        kind.set(c, probe);
        self.ops
            .push(add(ptr(&["spec", list, &idx, kind.field()]), v));
        Ok(())
    }

    pub fn set_label(&mut self, key: &str, value: String) -> Result<(), ApplyError> {
        match &mut self.meta.labels {
            Some(map) => {
                self.ops.push(add(
                    ptr(&["metadata", "labels", key]),
                    Value::String(value.clone()),
                ));
                map.insert(key.to_string(), value);
            }
            None => {
                let map = BTreeMap::from([(key.to_string(), value)]);
                self.ops
                    .push(add(ptr(&["metadata", "labels"]), to_value("labels", &map)?));
                self.meta.labels = Some(map);
            }
        }
        Ok(())
    }

    pub fn set_annotation(&mut self, key: &str, value: String) -> Result<(), ApplyError> {
        match &mut self.meta.annotations {
            Some(map) => {
                // `add` on an existing member replaces it, so this cannot fail.
                self.ops.push(add(
                    ptr(&["metadata", "annotations", key]),
                    Value::String(value.clone()),
                ));
                map.insert(key.to_string(), value);
            }
            None => {
                let mut map = std::collections::BTreeMap::new();
                map.insert(key.to_string(), value);
                self.ops.push(add(
                    ptr(&["metadata", "annotations"]),
                    to_value("annotations", &map)?,
                ));
                self.meta.annotations = Some(map);
            }
        }
        Ok(())
    }

    /// Go's eBPF agent must see the app's processes.
    pub fn set_share_process_namespace(&mut self) {
        if self.spec.share_process_namespace != Some(true) {
            self.ops.push(add(
                ptr(&["spec", "shareProcessNamespace"]),
                Value::Bool(true),
            ));
            self.spec.share_process_namespace = Some(true);
        }
    }
}
