//! The offline twin of `/mutate` (`otel-admission inject` and `explain`):
//! finds pod templates in multi-document manifests, runs [`run`] on a Pod
//! built from each, applies the patch, and writes the template back.

use std::fmt::Write as _;

use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::config::Config;
use crate::inject::applied::Applied;
use crate::inject::cluster_view::ClusterView;
use crate::inject::keys::{ISTIO_KEY, PROBES_KEY, SIDECAR_KEY, SIDECAR_NAME};
use crate::inject::outcome::{Outcome, run};
use crate::inject::plan::{Decision, Feature, Owner, Plan};
use crate::inject::{
    context::Context,
    rules::{RuleCheck, rule_checks},
};

/// An input problem, naming the file, the document index and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("{origin}: document {index}: not valid YAML or JSON: {message}")]
    Parse {
        origin: String,
        index: usize,
        message: String,
    },
    #[error("{origin}: document {index}: {field}: {message}")]
    Field {
        origin: String,
        index: usize,
        field: String,
        message: String,
    },
}

/// What the manifest is injected against.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub view: &'a dyn ClusterView,
    /// For objects without `metadata.namespace`.
    pub default_namespace: &'a str,
    /// The API server version when known; offline it is `None`, and
    /// `sidecar.native: auto` then means native.
    pub server_version: Option<(u32, u32)>,
}

/// One pod template's result.
#[derive(Debug)]
pub struct Report {
    pub index: usize,
    /// `Deployment/checkout`.
    pub workload: String,
    pub namespace: String,
    /// Where the template sits, e.g. `spec.template`.
    pub location: String,
    pub outcome: Outcome,
    /// Rules whose `podSelector` matched, and why each did not apply.
    pub rules: Vec<RuleCheck>,
}

/// The documents, mutated, and a report per pod template.
#[derive(Debug, Default)]
pub struct Processed {
    pub documents: Vec<Value>,
    pub reports: Vec<Report>,
}

/// Splits multi-document YAML (JSON is YAML) into values; empty documents are dropped.
pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<Value>, ManifestError> {
    crate::yaml::documents(text).map_err(|e| ManifestError::Parse {
        origin: origin.into(),
        index: e.index,
        message: e.message,
    })
}

/// Injects every pod template in `text`.
pub fn process(text: &str, origin: &str, inputs: &Inputs<'_>) -> Result<Processed, ManifestError> {
    let mut processed = Processed::default();
    for (index, mut doc) in parse_documents(text, origin)?.into_iter().enumerate() {
        walk(&mut doc, "", index, origin, inputs, &mut processed.reports)?;
        processed.documents.push(doc);
    }
    Ok(processed)
}

/// Where a kind keeps its pod template.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            Some(&["spec", "template"])
        }
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

fn walk(
    doc: &mut Value,
    prefix: &str,
    index: usize,
    origin: &str,
    inputs: &Inputs<'_>,
    reports: &mut Vec<Report>,
) -> Result<(), ManifestError> {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind == "List" {
        if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            for (i, item) in items.iter_mut().enumerate() {
                walk(
                    item,
                    &format!("{prefix}items[{i}]."),
                    index,
                    origin,
                    inputs,
                    reports,
                )?;
            }
        }
        return Ok(());
    }
    let Some(path) = template_path(&kind) else {
        return Ok(());
    };
    let field_err = |field: String, message: String| ManifestError::Field {
        origin: origin.into(),
        index,
        field,
        message,
    };
    // A pod with only `generateName` is shown by its stem, as kubectl would.
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| {
            doc.pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|g| format!("{} (generateName {g})", g.trim_end_matches('-')))
        })
        .unwrap_or_else(|| "<unnamed>".to_string());
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(inputs.default_namespace)
        .to_string();
    let location = if path.is_empty() {
        format!("{prefix}(pod)")
    } else {
        format!("{prefix}{}", path.join("."))
    };
    let pointer = PointerBuf::from_tokens(path.iter().copied());
    let Some(template) = doc.pointer_mut(pointer.as_str()) else {
        return Err(field_err(location, "missing pod template".into()));
    };
    if !template.is_object() {
        return Err(field_err(location, "pod template is not an object".into()));
    }
    let mut pod_json = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or(Value::Null),
    });
    let pod: Pod = serde_path_to_error::deserialize(&pod_json).map_err(|e| {
        let inner = e.path().to_string();
        let base = if path.is_empty() {
            prefix.trim_end_matches('.').to_string()
        } else {
            location.clone()
        };
        let field = [base.as_str(), inner.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty() && *s != ".")
            .collect::<Vec<_>>()
            .join(".");
        field_err(field, e.into_inner().to_string())
    })?;
    if pod.spec.is_none() {
        return Err(field_err(
            format!("{location}.spec"),
            "missing pod spec".into(),
        ));
    }
    let hint = (kind != "Pod").then(|| Owner {
        kind: kind.clone(),
        name: name.clone(),
        via: None,
    });
    let ctx = Context {
        namespace: &namespace,
        config: inputs.config,
        view: inputs.view,
        owner_hint: hint.as_ref(),
        server_version: inputs.server_version,
    };
    let outcome = run(&pod, &ctx);
    let ns_meta = inputs.view.namespace(&namespace).unwrap_or_default();
    let rules = rule_checks(&pod, &namespace, &ns_meta, inputs.config);
    if let Some(patch) = outcome.patch() {
        let fail = |e: &dyn std::fmt::Display| {
            field_err(
                location.clone(),
                format!("internal error applying the patch: {e}"),
            )
        };
        let patch = patch.to_json_patch().map_err(|e| fail(&e))?;
        json_patch::patch(&mut pod_json, &patch.0).map_err(|e| fail(&e))?;
        if let (Some(t), Value::Object(mut p)) = (template.as_object_mut(), pod_json) {
            for key in ["metadata", "spec"] {
                if let Some(v) = p.remove(key) {
                    t.insert(key.into(), v);
                }
            }
        }
    }
    reports.push(Report {
        index,
        workload: format!("{kind}/{name}"),
        namespace,
        location,
        outcome,
        rules,
    });
    Ok(())
}

/// Documents as multi-document YAML.
pub fn to_yaml(documents: &[Value]) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for (i, d) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml_ng::to_string(d)?);
    }
    Ok(out)
}

/// The sidecar, probes and annotations lines: each feature's decision and why.
/// Failures are printed by the caller with the languages'.
fn explain_pod_features(out: &mut String, plan: &Plan, applied: &Applied) {
    let failed = |f: Feature| applied.failures.iter().any(|x| x.feature == f);
    let declined = |f: Feature| plan.declined.iter().find(|(d, _)| *d == f);
    for feature in Feature::POD_FEATURES {
        if let Some((_, by)) = declined(feature) {
            let _ = writeln!(out, "  {feature}: off, by {by}");
            continue;
        }
        if failed(feature) {
            continue;
        }
        match feature {
            Feature::Sidecar => match (&plan.sidecar, &applied.sidecar) {
                (Some(sp), Some(done)) => {
                    let place = if sp.native {
                        "native sidecar in initContainers, restartPolicy Always"
                    } else {
                        "regular container in containers"
                    };
                    let _ = writeln!(
                        out,
                        "  sidecar: injected {SIDECAR_NAME} ({place}), config {}",
                        done.config
                    );
                    let _ = writeln!(out, "    decided by: {}", sp.decided_by);
                    let _ = writeln!(out, "    mode chosen by: {}", sp.native_by);
                    if !plan.languages.is_empty() {
                        let _ = writeln!(
                            out,
                            "    app endpoint: OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 (4317 for gRPC), unless the container sets it"
                        );
                    }
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "  sidecar: not requested (no {SIDECAR_KEY} and no rule with sidecar: true)"
                    );
                }
            },
            Feature::Probes => match &plan.probes {
                Some(by) => {
                    if applied.probes.is_empty() {
                        let _ = writeln!(out, "  probes: requested, none added (see warnings)");
                    }
                    for (c, kinds) in &applied.probes {
                        let _ = writeln!(out, "  probes: added {} to {c}", kinds.join(", "));
                    }
                    let _ = writeln!(out, "    decided by: {by}");
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  probes: not requested (no {PROBES_KEY} and no rule with probes: true)"
                    );
                }
            },
            _ => match (&plan.annotations, &applied.annotations) {
                (Some(ap), Some(keys)) => {
                    let what = if keys.is_empty() {
                        "already present, nothing changed".to_string()
                    } else {
                        format!("set {}", keys.join(", "))
                    };
                    let _ = writeln!(out, "  annotations: {what}");
                    let _ = writeln!(out, "    decided by: {}", ap.decided_by);
                    let mesh = ap
                        .mesh
                        .as_deref()
                        .unwrap_or("not in an Istio mesh, excludeInboundPorts untouched");
                    let _ = writeln!(out, "    Istio: {mesh}");
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "  annotations: not requested (no {ISTIO_KEY} and no rule with annotations: true)"
                    );
                }
            },
        }
    }
}

/// `explain`: per workload and feature, what and why, in plain words.
pub fn explain(origin: &str, reports: &[Report]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        let _ = writeln!(
            out,
            "{origin}: no Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob found"
        );
    }
    for r in reports {
        let _ = writeln!(
            out,
            "{origin}[{}] {} in namespace {} ({}):",
            r.index, r.workload, r.namespace, r.location
        );
        let o = &r.outcome;
        if let Some(s) = &o.skip {
            let _ = writeln!(out, "  nothing injected ({}): {}", s.reason, s.message);
        }
        if let (Decision::Inject(plan), Some(applied)) = (&o.decision, &o.applied) {
            for lp in &plan.languages {
                let done = applied.injected.iter().any(|i| i.language == lp.language);
                let verb = if done { "injected" } else { "NOT injected" };
                let _ = writeln!(
                    out,
                    "  {}: {verb} into container(s) {}",
                    lp.language,
                    lp.containers.join(", ")
                );
                let _ = writeln!(out, "    decided by: {}", lp.decided_by);
                let _ = writeln!(out, "    containers chosen by: {}", lp.containers_by);
                let _ = writeln!(out, "    Instrumentation: {}", lp.instrumentation.label);
            }
            explain_pod_features(&mut out, plan, applied);
            for f in &applied.failures {
                let _ = writeln!(
                    out,
                    "  {}: not injected ({}): {}",
                    f.feature, f.reason, f.message
                );
            }
        }
        if !r.rules.is_empty() {
            let _ = writeln!(out, "  config rules whose podSelector selects this pod:");
            for rc in &r.rules {
                match &rc.not_applied {
                    None => {
                        let _ = writeln!(out, "    - {:?}: applies", rc.rule);
                    }
                    Some(why) => {
                        let _ = writeln!(out, "    - {:?}: does not apply: {why}", rc.rule);
                    }
                }
            }
        }
        if !o.warnings.is_empty() {
            let _ = writeln!(out, "  warnings:");
            for w in &o.warnings {
                let _ = writeln!(out, "    - {w}");
            }
        }
        if !o.denials.is_empty() {
            let _ = writeln!(out, "  failureMode deny would reject this pod");
        }
    }
    out
}
