//! `OTEL_SERVICE_NAME`, `service.version` and the owning workload, derived
//! from the pod alone: no API call (the operator GETs ReplicaSets and Jobs,
//! with a retry loop that can outlast the webhook timeout).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::inject::plan::Owner;
use crate::instrumentation::InstrumentationSpec;

pub const SERVICE_NAME_KEY: &str = "resource.opentelemetry.io/service.name";
pub const SERVICE_VERSION_KEY: &str = "resource.opentelemetry.io/service.version";
pub const APP_NAME_LABEL: &str = "app.kubernetes.io/name";
/// The labels the operator reads for the service name, in its order.
pub const APP_NAME_LABELS: [&str; 2] = ["app.kubernetes.io/instance", APP_NAME_LABEL];
pub const APP_VERSION_LABEL: &str = "app.kubernetes.io/version";

/// The owning workload. A ReplicaSet whose name ends in `-<pod-template-hash>`
/// belongs to a Deployment (Argo Rollouts use `rollouts-pod-template-hash`);
/// a Job whose name ends in `-<digits>` belongs to a CronJob.
pub fn owner(pod: &Pod, hint: Option<&Owner>) -> Option<Owner> {
    if let Some(h) = hint {
        return Some(h.clone());
    }
    let refs = pod.metadata.owner_references.as_deref().unwrap_or_default();
    let r = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())?;
    let labels = pod.metadata.labels.as_ref();
    let name = r.name.clone();
    let owner = match r.kind.as_str() {
        "ReplicaSet" => {
            let hash = labels.and_then(|l| {
                l.get("pod-template-hash")
                    .map(|h| (h, "Deployment"))
                    .or_else(|| l.get("rollouts-pod-template-hash").map(|h| (h, "Rollout")))
            });
            match hash.and_then(|(h, kind)| {
                name.strip_suffix(h.as_str())
                    .and_then(|s| s.strip_suffix('-'))
                    .filter(|s| !s.is_empty())
                    .map(|s| (s.to_string(), kind))
            }) {
                Some((stem, kind)) => Owner {
                    kind: kind.into(),
                    name: stem,
                    via: Some(("ReplicaSet".into(), name)),
                },
                None => Owner {
                    kind: "ReplicaSet".into(),
                    name,
                    via: None,
                },
            }
        }
        "Job" => match cronjob_stem(&name) {
            Some(stem) => Owner {
                kind: "CronJob".into(),
                name: stem.to_string(),
                via: Some(("Job".into(), name)),
            },
            None => Owner {
                kind: "Job".into(),
                name,
                via: None,
            },
        },
        kind => Owner {
            kind: kind.into(),
            name,
            via: None,
        },
    };
    Some(owner)
}

/// CronJob-made Jobs are named `<cronjob>-<scheduled time in minutes>`.
fn cronjob_stem(job: &str) -> Option<&str> {
    let (stem, suffix) = job.rsplit_once('-')?;
    (suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()) && !stem.is_empty())
        .then_some(stem)
}

/// The workload names the Operator's `chooseServiceName` reads from its
/// resource map, in its order.
const NAME_ATTRIBUTES: [&str; 6] = [
    "k8s.deployment.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// The Operator's `chooseServiceName` order (SPEC §5): the annotation; the
/// `app.kubernetes.io/instance`, then `name`, labels when the Instrumentation
/// sets `defaults.useLabelsForResourceAttributes`; the workload names of the
/// resource map `attrs` (the Instrumentation's `resource.resourceAttributes`,
/// the owners, the `resource.opentelemetry.io/k8s.*.name` annotations), less
/// the `user` keys the container's own `OTEL_RESOURCE_ATTRIBUTES` sets,
/// before which an Argo Rollout
/// owner names the service (ours: the Operator names its hashed ReplicaSet,
/// #3887); the pod's name; the
/// `generateName` stem (ours: the Operator has no owner to ask here); the
/// container name.
pub fn service_name(
    pod: &Pod,
    owner: Option<&Owner>,
    attrs: &BTreeMap<String, String>,
    user: &[&str],
    spec: &InstrumentationSpec,
    container: &str,
) -> String {
    let meta = &pod.metadata;
    let non_empty = |s: Option<&String>| {
        s.map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    non_empty(
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(SERVICE_NAME_KEY)),
    )
    .or_else(|| {
        use_labels(spec)
            .then(|| {
                APP_NAME_LABELS
                    .iter()
                    .find_map(|k| non_empty(meta.labels.as_ref().and_then(|l| l.get(*k))))
            })
            .flatten()
    })
    .or_else(|| {
        owner
            .filter(|o| o.kind == "Rollout")
            .and_then(|o| non_empty(Some(&o.name)))
    })
    .or_else(|| {
        NAME_ATTRIBUTES
            .iter()
            .filter(|k| !user.contains(k))
            .find_map(|k| non_empty(attrs.get(*k)))
    })
    .or_else(|| non_empty(meta.name.as_ref()))
    .or_else(|| {
        meta.generate_name
            .as_deref()
            .map(|g| g.trim_end_matches('-'))
            .filter(|g| !g.is_empty())
            .map(str::to_string)
    })
    .unwrap_or_else(|| container.to_string())
}

/// `defaults.useLabelsForResourceAttributes`: the operator reads the
/// `app.kubernetes.io/*` labels only then.
pub fn use_labels(spec: &InstrumentationSpec) -> bool {
    spec.defaults
        .as_ref()
        .is_some_and(|d| d.use_labels_for_resource_attributes)
}

/// `k8s.<kind>.name` attributes of the owner chain.
pub fn owner_attributes(owner: Option<&Owner>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(o) = owner {
        if let Some((kind, name)) = &o.via {
            out.push((
                format!("k8s.{}.name", kind.to_ascii_lowercase()),
                name.clone(),
            ));
        }
        if matches!(
            o.kind.as_str(),
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob"
        ) {
            out.push((
                format!("k8s.{}.name", o.kind.to_ascii_lowercase()),
                o.name.clone(),
            ));
        }
    }
    out
}

/// `service.version`: annotation, `app.kubernetes.io/version` label (with
/// `useLabelsForResourceAttributes`), image tag or digest.
pub fn service_version(
    pod: &Pod,
    spec: &InstrumentationSpec,
    image: Option<&str>,
) -> Option<String> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(SERVICE_VERSION_KEY))
        .filter(|v| !v.is_empty())
        .or_else(|| {
            use_labels(spec)
                .then(|| meta.labels.as_ref().and_then(|l| l.get(APP_VERSION_LABEL)))
                .flatten()
        })
        .filter(|v| !v.is_empty())
        .cloned()
        .or_else(|| image.and_then(image_version))
}

/// `tag`, `digest` or `tag@digest` of an image reference, like the operator.
pub fn image_version(image: &str) -> Option<String> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last
        .split_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.is_empty());
    match (tag, digest) {
        (Some(t), Some(d)) => Some(format!("{t}@{d}")),
        (Some(t), None) => Some(t.to_string()),
        (None, Some(d)) => Some(d.to_string()),
        (None, None) => None,
    }
}
