//! One entry point for every caller: [`run`] decides, applies and turns the
//! result into warnings, denials and metrics, so `/mutate`, `inject` and
//! `explain` cannot drift apart.

use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Pod;

use crate::admission::{Decoded, Mutate, Verdict};
use crate::config::{Config, FailureMode};
use crate::events::{EventReason, EventRequest, Events};
use crate::inject::apply::{Applied, apply};
use crate::inject::cluster_view::ClusterView;
use crate::inject::decide::{Context, decide};
use crate::inject::plan::{Decision, Failure, Feature, Skip, SkipReason};
use crate::metrics::Metrics;

const PREFIX: &str = "otel-admission: ";

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
/// of the first pass). Those are still counted in `skips_total`.
pub fn run(pod: &Pod, ctx: &Context<'_>) -> Outcome {
    run_with(pod, ctx, |plan| apply(pod, plan, ctx.config))
}

/// [`run`] on a pod the caller gives up (the webhook's own copy): no second
/// copy of it is made for the edit.
pub fn run_owned(pod: Pod, ctx: &Context<'_>) -> Outcome {
    let decision = decide(&pod, ctx);
    let mut pod = Some(pod);
    finish(decision, ctx, |plan| match pod.take() {
        Some(p) => crate::inject::apply::apply_owned(p, plan, ctx.config),
        None => Err(crate::inject::apply::ApplyError::NoSpec),
    })
}

fn run_with(
    pod: &Pod,
    ctx: &Context<'_>,
    apply_plan: impl FnOnce(
        &crate::inject::plan::Plan,
    ) -> Result<Applied, crate::inject::apply::ApplyError>,
) -> Outcome {
    finish(decide(pod, ctx), ctx, apply_plan)
}

fn finish(
    decision: Decision,
    ctx: &Context<'_>,
    apply_plan: impl FnOnce(
        &crate::inject::plan::Plan,
    ) -> Result<Applied, crate::inject::apply::ApplyError>,
) -> Outcome {
    let mut warnings = Vec::new();
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
                crate::inject::decide::SIDECAR_NAME,
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
    /// The one place injection metrics are counted.
    pub fn record(&self, metrics: &Metrics) {
        if let Some(s) = &self.skip {
            metrics.skip(s.reason.as_str());
        }
        if let Some(a) = &self.applied {
            for i in &a.injected {
                let f = Feature::Instrumentation(i.language);
                metrics.injection(f.as_str(), f.language());
            }
            for f in a.features_done() {
                metrics.injection(f.as_str(), f.language());
            }
            for Failure { reason, .. } in &a.failures {
                metrics.skip(reason.as_str());
            }
        }
    }

    /// The Event this outcome calls for (SPEC §6), from the same skip and
    /// failures as its warnings and metrics: a skip other than the normal
    /// states of most pods, or a feature that failed.
    pub fn event(&self) -> Option<(EventReason, String)> {
        if let Some(s) = &self.skip
            && !matches!(
                s.reason,
                SkipReason::NotSelected
                    | SkipReason::ExcludedNamespace
                    | SkipReason::AlreadyInjected
            )
        {
            return Some((EventReason::InjectionSkipped, s.message.clone()));
        }
        let failures: Vec<&str> = self
            .applied
            .iter()
            .flat_map(|a| a.failures.iter())
            .map(|f| f.message.as_str())
            .collect();
        (!failures.is_empty()).then(|| (EventReason::InjectionFailed, failures.join("; ")))
    }

    /// The patch to send, if any.
    pub fn patch(&self) -> Option<&json_patch::Patch> {
        self.applied.as_ref().map(|a| &a.patch)
    }
}

/// The `/mutate` implementation.
pub struct Injector {
    pub config: Arc<ArcSwap<Config>>,
    pub view: Arc<dyn ClusterView>,
    pub metrics: Arc<Metrics>,
    /// The API server's `(major, minor)` read at start; see [`Context::server_version`].
    pub server_version: Option<(u32, u32)>,
    /// Where skipped and failed injections are reported, when the cluster is on.
    pub events: Option<Arc<Events>>,
}

/// The pod's controlling owner, which its Events are about: the pod itself
/// has no name yet.
fn controller_owner(
    pod: &Pod,
    namespace: &str,
) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    Some(k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(owner.api_version.clone()),
        kind: Some(owner.kind.clone()),
        name: Some(owner.name.clone()),
        namespace: Some(namespace.to_string()),
        uid: Some(owner.uid.clone()),
        ..Default::default()
    })
}

/// Queues the outcome's Event, if it calls for one.
fn report(
    events: &Events,
    outcome: &Outcome,
    regarding: k8s_openapi::api::core::v1::ObjectReference,
    namespace: &str,
) {
    let Some((reason, note)) = outcome.event() else {
        return;
    };
    events.offer(EventRequest {
        namespace: namespace.to_string(),
        regarding,
        reason,
        note,
    });
}

impl Mutate for Injector {
    fn mutate(&self, review: &Decoded<'_>) -> Verdict {
        let r = &review.request;
        if !r.is_pod_create() {
            return Verdict::default();
        }
        let config = self.config.load();
        let namespace = r.namespace.as_deref().unwrap_or_default();
        let raw = r.object.map(|o| o.get()).unwrap_or("null");
        let parsed = crate::inject::sent_pod::parse(raw).map(|p| (p.pod, p.has_metadata));
        let (outcome, has_metadata) = match parsed {
            Ok((pod, has_metadata)) => {
                let ctx = Context {
                    namespace,
                    config: &config,
                    view: self.view.as_ref(),
                    owner_hint: None,
                    server_version: self.server_version,
                };
                let owner = controller_owner(&pod, namespace);
                let outcome = run_owned(pod, &ctx);
                if let (Some(events), Some(owner)) = (&self.events, owner)
                    && !r.dry_run
                {
                    report(events, &outcome, owner, namespace);
                }
                (outcome, has_metadata)
            }
            Err(e) => (
                unreadable(
                    format!("request.object is not a Pod: {e}"),
                    config.failure_mode,
                ),
                true,
            ),
        };
        outcome.record(&self.metrics);
        if let Some(s) = &outcome.skip
            && s.reason.is_failure()
        {
            tracing::warn!(uid = %r.uid, namespace, reason = s.reason.as_str(), detail = %s.message, "injection skipped");
        }
        if let Some(a) = &outcome.applied {
            for f in &a.failures {
                tracing::warn!(uid = %r.uid, namespace, feature = %f.feature, reason = f.reason.as_str(), detail = %f.message, "injection failed");
            }
        }
        let Outcome {
            applied,
            warnings,
            denials,
            ..
        } = outcome;
        let patch = applied.map(|a| {
            let mut patch = a.patch;
            if !has_metadata {
                patch.0.insert(
                    0,
                    json_patch::PatchOperation::Add(json_patch::AddOperation {
                        path: json_patch::jsonptr::PointerBuf::from_tokens(["metadata"]),
                        value: serde_json::json!({}),
                    }),
                );
            }
            patch
        });
        Verdict {
            patch,
            warnings,
            denials,
            audit_annotations: Default::default(),
        }
    }
}
