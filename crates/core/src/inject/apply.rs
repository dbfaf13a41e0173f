//! Plan to mutated pod plus JSON Patch, in one pass.
//!
//! Every edit goes through [`Editor`], which changes the typed pod and records
//! the matching RFC 6902 operation against the pod *as it is at that moment*.
//! Applying the operations in order to the original pod JSON therefore gives
//! the mutated pod, with work linear in what we add: no whole-pod diff (Istio's
//! diff was quadratic in env vars, #34799). Missing arrays and maps are added
//! whole, existing arrays are appended to with `/-`, so no operation can fail.

use crate::config::Config;
use crate::inject::applied::{Applied, Injected, SidecarDone};
use crate::inject::editor::{ApplyError, Editor};
use crate::inject::languages;
use crate::inject::plan::{CollectorSource, Failure, Feature, Plan, SkipReason};
use crate::inject::probes::{self};
use crate::inject::status::{self, Status};
use crate::inject::{annotations, sidecar};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use std::collections::BTreeMap;

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
    let mut ed = Editor::new(metadata, spec);
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
        match languages::inject(&mut ed, pod, plan, lp, &mut warnings) {
            Ok(()) => injected.push(Injected {
                language: lp.language,
                containers: lp.containers.clone(),
                instrumentation: lp.instrumentation.label.clone(),
            }),
            Err(languages::LangError::NotInjected(message)) => failures.push(Failure {
                feature: Feature::Instrumentation(lp.language),
                reason: SkipReason::Error,
                message,
            }),
            Err(languages::LangError::Apply(e)) => return Err(e),
        }
    }
    let mut probes_done = BTreeMap::new();
    if plan.probes.is_some() {
        let done = probes::inject(&mut ed, config)?;
        if done.added.is_empty() && done.skipped.is_empty() {
            warnings.push("probes: every app container already has all three probes".into());
        }
        warnings.extend(done.skipped);
        probes_done = done.added;
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
    let patch = ed.into_patch();
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
