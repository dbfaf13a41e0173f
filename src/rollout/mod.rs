//! Rollout (SPEC §6a): which running workloads carry stale instrumentation.
//!
//! - [`assess`]: pure. A workload's pod template goes through the same
//!   decide/apply as `/mutate`, with the owner its pods will have; the
//!   fingerprint it would get is compared with the ones its running pods
//!   carry in the `otel-admission.io/injected` label.
//! - [`cluster`]: the kube-rs reads behind `otel-admission rollout plan`.
//!
//! | running pods carry | the template would get | state                                   |
//! |--------------------|------------------------|-----------------------------------------|
//! | nothing            | nothing                | up to date                              |
//! | fingerprint `a`    | `a`                    | up to date                              |
//! | nothing            | `a`                    | stale: not instrumented, now selected   |
//! | `a`                | nothing                | stale: instrumented, no longer selected |
//! | `a` (or a mix)     | `b`                    | stale: what decided the injection changed |

pub mod cluster;
pub mod controller;
pub mod lease;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde::Serialize;

use crate::config::Config;
use crate::inject::cluster_view::ClusterView;
use crate::inject::context::Context;
use crate::inject::outcome::run;
use crate::inject::plan::{Decision, Owner};
use crate::inject::status::INJECTED_LABEL;

/// The label that keeps a workload out of rollouts (one of the keys the
/// core knows, so a misspelling of it gets a did-you-mean).
pub use crate::inject::keys::ROLLOUT_KEY;

/// The kinds rollout restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// A workload as the plan sees it.
#[derive(Clone, Debug)]
pub struct Workload {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub template: PodTemplateSpec,
    /// `otel-admission.io/rollout: "false"` on the workload.
    pub opted_out: bool,
    pub paused: bool,
    /// `spec.replicas == 0` (DaemonSets have none).
    pub scaled_to_zero: bool,
    /// A rollout is still in progress (generation not observed, or not all
    /// replicas updated and available).
    pub rolling: bool,
}

/// Why a workload is stale. Closed: the `rollout_restarts_total{reason}` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    NewlySelected,
    NoLongerSelected,
    Changed,
}

impl Cause {
    pub const ALL: [Cause; 3] = [Self::NewlySelected, Self::NoLongerSelected, Self::Changed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewlySelected => "newly_selected",
            Self::NoLongerSelected => "no_longer_selected",
            Self::Changed => "changed",
        }
    }
}

/// What the plan says about one workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// The fingerprints its running pods carry (`""` for none), sorted.
    pub current: Vec<String>,
    /// The fingerprint the template would get now (`""` for none).
    pub wanted: String,
    pub stale: bool,
    pub cause: Option<Cause>,
    /// In words, for a stale workload.
    pub reason: String,
    /// Why it will not be restarted, when it will not.
    pub not_restartable: Option<String>,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

/// What the template would get, and what decided it, in words.
fn wanted(
    w: &Workload,
    config: &Config,
    view: &dyn ClusterView,
    server_version: Option<(u32, u32)>,
) -> (String, String) {
    let pod = Pod {
        metadata: w.template.metadata.clone().unwrap_or_default(),
        spec: w.template.spec.clone(),
        status: None,
    };
    let owner = Owner {
        kind: w.kind.as_str().into(),
        name: w.name.clone(),
        via: None,
    };
    let ctx = Context {
        namespace: &w.namespace,
        config,
        view,
        owner_hint: Some(&owner),
        server_version,
    };
    let outcome = run(&pod, &ctx);
    let fingerprint = outcome
        .applied
        .as_ref()
        .and_then(|a| {
            a.pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(INJECTED_LABEL).cloned())
        })
        .unwrap_or_default();
    let why = match &outcome.decision {
        Decision::Inject(plan) => {
            let mut parts: Vec<String> = plan
                .languages
                .iter()
                .map(|lp| {
                    format!(
                        "{} by {} (Instrumentation {})",
                        lp.language, lp.decided_by, lp.instrumentation.label
                    )
                })
                .collect();
            if let Some(sp) = &plan.sidecar {
                parts.push(format!("collector sidecar by {}", sp.decided_by));
            }
            parts.join("; ")
        }
        Decision::Skip(s) => s.message.clone(),
    };
    (fingerprint, why)
}

/// Why a workload must not be restarted, if it must not.
pub fn not_restartable(w: &Workload) -> Option<String> {
    if w.opted_out {
        Some(format!("labelled {ROLLOUT_KEY}=false"))
    } else if w.paused {
        Some("paused".into())
    } else if w.scaled_to_zero {
        Some("scaled to zero".into())
    } else if w.rolling {
        Some("a rollout is in progress".into())
    } else {
        None
    }
}

/// Assesses one workload against the fingerprints its pods carry.
pub fn assess(
    w: &Workload,
    pods: &[Option<String>],
    config: &Config,
    view: &dyn ClusterView,
    server_version: Option<(u32, u32)>,
) -> Assessment {
    let (wanted, why) = wanted(w, config, view, server_version);
    let mut current: Vec<String> = pods.iter().map(|p| p.clone().unwrap_or_default()).collect();
    current.sort();
    current.dedup();
    let stale = current.iter().any(|c| *c != wanted);
    let none_now = current.iter().all(String::is_empty);
    let cause = match (stale, none_now, wanted.is_empty()) {
        (false, _, _) => None,
        (true, true, false) => Some(Cause::NewlySelected),
        (true, _, true) => Some(Cause::NoLongerSelected),
        (true, false, false) => Some(Cause::Changed),
    };
    let reason = match cause {
        None => String::new(),
        Some(Cause::NewlySelected) => format!("not instrumented; now {why}"),
        Some(Cause::NoLongerSelected) => format!("instrumented, but no longer selected: {why}"),
        Some(Cause::Changed) => format!("what decided the injection changed; now {why}"),
    };
    let not_restartable = not_restartable(w);
    Assessment {
        kind: w.kind,
        namespace: w.namespace.clone(),
        name: w.name.clone(),
        current,
        wanted,
        stale,
        cause,
        reason,
        not_restartable,
    }
}

/// Pod labels by namespace, as the plan reads them (metadata only).
pub type PodLabels =
    std::collections::BTreeMap<String, Vec<std::collections::BTreeMap<String, String>>>;

/// Every workload assessed against the pods its selector matches, sorted by
/// namespace, kind and name. Pure: the cluster reads happen before.
pub fn assess_all(
    found: &[(
        Workload,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    )],
    pods: &PodLabels,
    config: &Config,
    view: &dyn ClusterView,
    server_version: Option<(u32, u32)>,
) -> Vec<Assessment> {
    let mut out: Vec<Assessment> = found
        .iter()
        .map(|(w, sel)| assess_selected(w, sel, pods, config, view, server_version))
        .collect();
    sort(&mut out);
    out
}

/// One workload assessed against the pods of its namespace that `sel` matches.
pub fn assess_selected(
    w: &Workload,
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    pods: &PodLabels,
    config: &Config,
    view: &dyn ClusterView,
    server_version: Option<(u32, u32)>,
) -> Assessment {
    let fingerprints: Vec<Option<String>> = pods
        .get(&w.namespace)
        .into_iter()
        .flatten()
        .filter(|labels| crate::selector::matches(sel, labels))
        .map(|labels| labels.get(INJECTED_LABEL).cloned())
        .collect();
    assess(w, &fingerprints, config, view, server_version)
}

/// The plan's order: namespace, kind, name.
pub fn sort(all: &mut [Assessment]) {
    all.sort_by(|a, b| {
        (&a.namespace, a.kind.as_str(), &a.name).cmp(&(&b.namespace, b.kind.as_str(), &b.name))
    });
}

/// The plan as a table, one stale workload a line.
pub fn table(all: &[Assessment]) -> String {
    let mut out = String::from("KIND\tNAMESPACE\tNAME\tCURRENT\tWANTED\tRESTART\tREASON\n");
    for a in all.iter().filter(|a| a.stale) {
        let current: Vec<&str> = a
            .current
            .iter()
            .map(|c| if c.is_empty() { "-" } else { c.as_str() })
            .collect();
        let wanted = if a.wanted.is_empty() { "-" } else { &a.wanted };
        let restart = a
            .not_restartable
            .as_deref()
            .map_or("yes".to_string(), |w| format!("no ({w})"));
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            a.kind.as_str(),
            a.namespace,
            a.name,
            current.join(","),
            wanted,
            restart,
            a.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::cluster_view::{NamespaceMeta, StaticView};
    use serde_json::json;

    fn workload(annotations: serde_json::Value) -> Workload {
        Workload {
            kind: Kind::Deployment,
            namespace: "shop".into(),
            name: "web".into(),
            template: serde_json::from_value(json!({
                "metadata": {"labels": {"app": "web"}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "a:1"}]}
            }))
            .expect("template"),
            opted_out: false,
            paused: false,
            scaled_to_zero: false,
            rolling: false,
        }
    }

    /// The fingerprint depends on the API server's version (`sidecar.native:
    /// auto` makes the collector sidecar a container before 1.29): assessed
    /// with the version admission had, a pod injected on a 1.28 cluster is up
    /// to date; assessed as if native, it would be restarted forever.
    #[test]
    fn the_server_version_admission_saw_is_the_one_assessed() {
        let config = Config::from_yaml("sidecar:\n  native: auto\n", "t").expect("config");
        let view = StaticView::new().with_namespace("shop", NamespaceMeta::default());
        let w = workload(json!({"sidecar.opentelemetry.io/inject": "true"}));
        let old = Some((1, 28));
        let on_old = assess(&w, &[None], &config, &view, old).wanted;
        let on_new = assess(&w, &[None], &config, &view, Some((1, 30))).wanted;
        assert!(!on_old.is_empty());
        assert_ne!(
            on_old, on_new,
            "the sidecar's mode is part of the fingerprint"
        );
        let a = assess(&w, &[Some(on_old.clone())], &config, &view, old);
        assert!(a.cause.is_none(), "{}", a.reason);
    }

    /// The decision table above, row by row.
    #[test]
    fn staleness_rows() {
        let config = Config::default();
        let view = StaticView::new().with_namespace("shop", NamespaceMeta::default());
        let on = workload(json!({"instrumentation.opentelemetry.io/inject-python": "true"}));
        let off = workload(json!({}));
        let now = assess(&on, &[None], &config, &view, None).wanted;
        assert!(!now.is_empty());
        struct Row {
            name: &'static str,
            w: Workload,
            pods: Vec<Option<String>>,
            stale: bool,
            reason: &'static str,
        }
        let rows = [
            Row {
                name: "nothing, nothing",
                w: off.clone(),
                pods: vec![None],
                stale: false,
                reason: "",
            },
            Row {
                name: "same fingerprint",
                w: on.clone(),
                pods: vec![Some(now.clone())],
                stale: false,
                reason: "",
            },
            Row {
                name: "newly selected",
                w: on.clone(),
                pods: vec![None, None],
                stale: true,
                reason: "not instrumented; now python by pod annotation",
            },
            Row {
                name: "no longer selected",
                w: off.clone(),
                pods: vec![Some(now.clone())],
                stale: true,
                reason: "instrumented, but no longer selected",
            },
            Row {
                name: "changed",
                w: on.clone(),
                pods: vec![Some("0123456789abcdef".into())],
                stale: true,
                reason: "what decided the injection changed",
            },
            Row {
                name: "a mix mid-rollout",
                w: on.clone(),
                pods: vec![Some(now.clone()), None],
                stale: true,
                reason: "",
            },
        ];
        for r in rows {
            let a = assess(&r.w, &r.pods, &config, &view, None);
            assert_eq!(a.stale, r.stale, "{}", r.name);
            assert!(a.reason.contains(r.reason), "{}: {}", r.name, a.reason);
        }
    }

    #[test]
    fn paused_zero_rolling_and_opted_out_are_not_restartable() {
        let config = Config::default();
        let view = StaticView::new();
        for (tweak, why) in [
            (
                (|w: &mut Workload| w.paused = true) as fn(&mut Workload),
                "paused",
            ),
            (|w: &mut Workload| w.scaled_to_zero = true, "scaled to zero"),
            (|w: &mut Workload| w.rolling = true, "in progress"),
            (|w: &mut Workload| w.opted_out = true, "rollout=false"),
        ] {
            let mut w = workload(json!({"instrumentation.opentelemetry.io/inject-python": "true"}));
            tweak(&mut w);
            let a = assess(&w, &[None], &config, &view, None);
            assert!(a.stale);
            assert!(
                a.not_restartable
                    .as_deref()
                    .is_some_and(|n| n.contains(why)),
                "{a:?}"
            );
        }
    }
}
