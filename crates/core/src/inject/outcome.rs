//! One entry point for every caller: [`run`] decides, applies and turns the
//! result into warnings and denials, so `/mutate`, `inject`, `explain` and
//! `rollout plan` cannot drift apart. Metrics and Events are counted from the
//! [`Outcome`] by the `/mutate` adapter ([`crate::mutate`]).

use k8s_openapi::api::core::v1::Pod;

use crate::config::FailureMode;
use crate::inject::keys::{KeyCheck, check_key};
use crate::inject::plan::{Decision, Skip, SkipReason};
use crate::inject::{applied::Applied, apply::apply};
use crate::inject::{context::Context, decide::decide};

pub(crate) const PREFIX: &str = "otel-admission: ";

/// Everything one pod's injection produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// Set when something was injected or recorded in the status annotation.
    pub applied: Option<Applied>,
    /// Set when the whole pod is left alone (including an internal error).
    pub skip: Option<Skip>,
    /// Short, one fact each, already prefixed.
    pub warnings: Vec<String>,
    /// Non-empty only with `failureMode: deny` and a failure.
    pub denials: Vec<String>,
}

/// Decides and applies for one pod. Pure apart from reading `ctx.view`.
///
/// Warnings: one per injected language, one per failure, one per note, and one
/// for a pod-level skip, except `not_selected` and `excluded_namespace` (the
/// normal state of most pods; a warning on each would drown kubectl) and
/// `already_injected` (a reinvocation would contradict the "injected" warning
/// of the first pass). Those are still counted in `skips_total`. Before them
/// all, one per unknown key under the operator's or our prefixes
/// ([`unknown_key_warnings`]), except in an excluded namespace, whose pods
/// are not ours to comment on.
pub fn run(pod: &Pod, ctx: &Context<'_>) -> Outcome {
    run_with(pod, ctx, |plan| apply(pod, plan, ctx.config))
}

/// One warning per label or annotation key, on the pod or its namespace,
/// that sits under the operator's or our prefixes and that neither reads
/// (`keys::check_key`): a misspelt `inject-jvm` otherwise leaves the pod
/// uninstrumented without a word. First among the warnings, as the likely
/// cause of the rest; they change nothing that is injected.
pub fn unknown_key_warnings(pod: &Pod, ctx: &Context<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let meta = &pod.metadata;
    for (map, what) in [
        (meta.labels.as_ref(), "label"),
        (meta.annotations.as_ref(), "annotation"),
    ] {
        for key in map.into_iter().flat_map(|m| m.keys()) {
            if let Some(w) = unknown_key_warning(key, what, None) {
                out.push(w);
            }
        }
    }
    if let Some(ns) = ctx.view.namespace(ctx.namespace) {
        let place = format!("namespace {}", ctx.namespace);
        for (map, what) in [(&ns.labels, "label"), (&ns.annotations, "annotation")] {
            for key in map.keys() {
                if let Some(w) = unknown_key_warning(key, what, Some(&place)) {
                    out.push(w);
                }
            }
        }
    }
    out
}

/// `otel-admission: unknown annotation <key>; did you mean <nearest>?`, or
/// `None` for a known or foreign key. `what` is `label` or `annotation`;
/// `place` says where it sits when not on the pod (`namespace shop`). The
/// key is written escaped: offline, a manifest's key may hold any character.
pub fn unknown_key_warning(key: &str, what: &str, place: Option<&str>) -> Option<String> {
    let KeyCheck::Unknown { nearest } = check_key(key) else {
        return None;
    };
    let place = place.map(|p| format!(" on {p}")).unwrap_or_default();
    let key = key.escape_debug();
    Some(match nearest {
        Some(n) => format!("{PREFIX}unknown {what} {key}{place}; did you mean {n}?"),
        None => format!(
            "{PREFIX}unknown {what} {key}{place}; neither otel-admission nor the OpenTelemetry Operator reads it"
        ),
    })
}

/// [`run`] on a pod the caller gives up (the webhook's own copy): no second
/// copy of it is made for the edit.
pub fn run_owned(pod: Pod, ctx: &Context<'_>) -> Outcome {
    let decision = decide(&pod, ctx);
    let keys = unknown_key_warnings(&pod, ctx);
    let mut pod = Some(pod);
    finish(decision, keys, ctx, |plan| match pod.take() {
        Some(p) => crate::inject::apply::apply_owned(p, plan, ctx.config),
        None => Err(crate::inject::editor::ApplyError::NoSpec),
    })
}

fn run_with(
    pod: &Pod,
    ctx: &Context<'_>,
    apply_plan: impl FnOnce(
        &crate::inject::plan::Plan,
    ) -> Result<Applied, crate::inject::editor::ApplyError>,
) -> Outcome {
    finish(
        decide(pod, ctx),
        unknown_key_warnings(pod, ctx),
        ctx,
        apply_plan,
    )
}

/// `warnings` starts as the unknown-key warnings.
fn finish(
    decision: Decision,
    mut warnings: Vec<String>,
    ctx: &Context<'_>,
    apply_plan: impl FnOnce(
        &crate::inject::plan::Plan,
    ) -> Result<Applied, crate::inject::editor::ApplyError>,
) -> Outcome {
    if matches!(&decision, Decision::Skip(s) if s.reason == SkipReason::ExcludedNamespace) {
        warnings.clear();
    }
    let (applied, skip) = match &decision {
        Decision::Skip(s) => (None, Some(s.clone())),
        Decision::Inject(plan) => {
            warnings.extend(plan.notes.iter().map(|n| format!("{PREFIX}{n}")));
            match apply_plan(plan) {
                Ok(a) => (Some(a), None),
                Err(e) => (
                    None,
                    Some(Skip {
                        reason: SkipReason::Error,
                        message: format!("internal error, nothing injected: {e}"),
                    }),
                ),
            }
        }
    };
    if let Some(s) = &skip
        && !matches!(
            s.reason,
            SkipReason::NotSelected | SkipReason::ExcludedNamespace | SkipReason::AlreadyInjected
        )
    {
        warnings.push(format!("{PREFIX}not injected: {}", s.message));
    }
    let mut denials = Vec::new();
    let deny = ctx.config.failure_mode == FailureMode::Deny;
    if let Some(a) = &applied {
        for i in &a.injected {
            warnings.push(format!(
                "{PREFIX}injected {} into {} (Instrumentation {})",
                i.language,
                i.containers.join(", "),
                i.instrumentation
            ));
        }
        if let Some(sc) = &a.sidecar {
            warnings.push(format!(
                "{PREFIX}injected collector sidecar {} ({}, config {})",
                crate::inject::keys::SIDECAR_NAME,
                sc.mode,
                sc.config
            ));
        }
        for (c, kinds) in &a.probes {
            warnings.push(format!("{PREFIX}added {} probes to {c}", kinds.join(", ")));
        }
        if let Some(keys) = a.annotations.as_ref().filter(|k| !k.is_empty()) {
            warnings.push(format!("{PREFIX}set annotations {}", keys.join(", ")));
        }
        for f in &a.failures {
            warnings.push(format!("{PREFIX}{}", f.message));
            if deny && f.reason.is_failure() {
                denials.push(format!("{PREFIX}{}", f.message));
            }
        }
        warnings.extend(a.warnings.iter().map(|w| format!("{PREFIX}{w}")));
    }
    if deny
        && let Some(s) = &skip
        && s.reason.is_failure()
    {
        denials.push(format!("{PREFIX}{}", s.message));
    }
    Outcome {
        decision,
        applied,
        skip,
        warnings,
        denials,
    }
}

/// An outcome for a pod that could not even be read.
pub fn unreadable(message: String, mode: FailureMode) -> Outcome {
    let skip = Skip {
        reason: SkipReason::Error,
        message,
    };
    Outcome {
        decision: Decision::Skip(skip.clone()),
        applied: None,
        warnings: vec![format!("{PREFIX}not injected: {}", skip.message)],
        denials: if mode == FailureMode::Deny {
            vec![format!("{PREFIX}{}", skip.message)]
        } else {
            Vec::new()
        },
        skip: Some(skip),
    }
}

// === impl Outcome ===

impl Outcome {
    /// The patch to send, if any.
    pub fn patch(&self) -> Option<&crate::patch::Patch> {
        self.applied.as_ref().map(|a| &a.patch)
    }
}
