//! The `/mutate` endpoint: the adapter between the wire protocol and the
//! injection core. It reads the pod from the review, runs
//! [`crate::inject::outcome::run_owned`], and is the one place an outcome
//! becomes metrics, log lines and Events.

use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Pod;

use crate::admission::{Decoded, Mutate, Verdict};
use crate::config::Config;
use crate::events::{EventReason, EventRequest, Events};
use crate::inject::cluster_view::ClusterView;
use crate::inject::context::Context;
use crate::inject::outcome::{Outcome, run_owned, unreadable};
use crate::inject::plan::{Failure, Feature, SkipReason};
use crate::metrics::Metrics;

/// The one place injection metrics are counted.
pub fn record(outcome: &Outcome, metrics: &Metrics) {
    if let Some(s) = &outcome.skip {
        metrics.skip(s.reason.as_str());
    }
    if let Some(a) = &outcome.applied {
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
pub fn event(outcome: &Outcome) -> Option<(EventReason, String)> {
    if let Some(s) = &outcome.skip
        && !matches!(
            s.reason,
            SkipReason::NotSelected | SkipReason::ExcludedNamespace | SkipReason::AlreadyInjected
        )
    {
        return Some((EventReason::InjectionSkipped, s.message.clone()));
    }
    let failures: Vec<&str> = outcome
        .applied
        .iter()
        .flat_map(|a| a.failures.iter())
        .map(|f| f.message.as_str())
        .collect();
    (!failures.is_empty()).then(|| (EventReason::InjectionFailed, failures.join("; ")))
}

/// The fields of a Pod that [`crate::inject::sent_pod::parse`] reads, with
/// the same types and defaults: what [`not_a_pod`] parses again.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // Parsed for its errors only.
struct PodShape {
    #[serde(default)]
    metadata: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    #[serde(default)]
    spec: Option<k8s_openapi::api::core::v1::PodSpec>,
    #[serde(default)]
    status: Option<k8s_openapi::api::core::v1::PodStatus>,
}

/// Why `request.object` is not a Pod, naming the field: `not a Pod:
/// request.object.spec.containers: invalid type: map, expected a sequence`. serde_json's own error said only `at
/// line 1 column 504`, of the object's text. The object is parsed again to
/// find the path, on this error path only: the fast parse stays as it is.
fn not_a_pod(raw: &str, e: &serde_json::Error) -> String {
    let why = crate::admission::object_error::<PodShape>(raw)
        .unwrap_or_else(|| format!("request.object: {}", crate::admission::json_reason(e)));
    format!("not a Pod: {why}")
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
    let Some((reason, note)) = event(outcome) else {
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
    /// Decide and apply are pure and linear in the pod (no cluster call:
    /// the caches are in memory).
    fn bounded(&self) -> bool {
        true
    }

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
            Err(e) => (unreadable(not_a_pod(raw, &e), config.failure_mode), true),
        };
        record(&outcome, &self.metrics);
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
                // An empty map always serializes.
                let _ = patch.add_first(
                    &otel_admission_core::path!["metadata"],
                    &serde_json::Map::new(),
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

#[cfg(test)]
mod tests;
