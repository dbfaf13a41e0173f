//! The offline twin of `/mutate` (`otel-admission inject` and `explain`):
//! finds pod templates in multi-document manifests, runs [`run`] on a Pod
//! built from each, applies the patch, and writes the template back (or,
//! for `inject -o pod`, keeps the Pod the API server would create). Offline
//! it also sees what `/mutate` cannot: injection keys on a workload's own
//! metadata, and which inputs were not given and so were assumed.

use std::fmt::Write as _;

use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::config::{Config, NativeSidecar};
use crate::inject::applied::Applied;
use crate::inject::cluster_view::ClusterView;
use crate::inject::keys::{
    ISTIO_KEY, KeyCheck, PROBES_KEY, SIDECAR_KEY, SIDECAR_NAME, Use, check_key,
};
use crate::inject::outcome::{Outcome, PREFIX, run, unknown_key_warning};
use crate::inject::plan::{Decision, Feature, Owner, Plan, SkipReason};
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
    /// What the user gave besides the manifest, so `explain` can say what it
    /// assumed in its place.
    pub given: Given,
    /// Inject the Pod the API server would create from each template
    /// ([`Report::pod`]) instead of the bare template: `inject -o pod`.
    pub as_pods: bool,
}

/// Which of `inject`'s inputs the user gave (`--namespace`,
/// `--instrumentation`); what is missing is assumed empty, and `explain`
/// says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Given {
    pub namespaces: bool,
    /// Instrumentations and OpenTelemetryCollectors (one flag takes both).
    pub instrumentations: bool,
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
    /// What `explain` assumed for inputs the user did not give, in words.
    pub assumptions: Vec<String>,
    /// With [`Inputs::as_pods`]: the Pod the API server would create from
    /// the template, injected.
    pub pod: Option<Value>,
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
    let raw_name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    // A pod with only `generateName` is shown by its stem, as kubectl would.
    let name = raw_name
        .clone()
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
    let misplaced = own_metadata_keys(doc, &kind, &format!("{kind}/{name}"), path);
    let pointer = PointerBuf::from_tokens(path.iter().copied());
    let Some(template) = doc.pointer_mut(pointer.as_str()) else {
        return Err(field_err(location, "missing pod template".into()));
    };
    if !template.is_object() {
        return Err(field_err(location, "pod template is not an object".into()));
    }
    let mut metadata = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if inputs.as_pods {
        as_created(&mut metadata, &kind, raw_name.as_deref(), &namespace);
    }
    let mut pod_json = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
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
    let mut outcome = run(&pod, &ctx);
    note_misplaced(&mut outcome, &misplaced, path);
    let ns_meta = inputs.view.namespace(&namespace).unwrap_or_default();
    let rules = rule_checks(&pod, &namespace, &ns_meta, inputs.config);
    let assumptions = assumptions(inputs, &namespace, &outcome);
    if let Some(patch) = outcome.patch() {
        let fail = |e: &dyn std::fmt::Display| {
            field_err(
                location.clone(),
                format!("internal error applying the patch: {e}"),
            )
        };
        let patch = patch.to_json_patch().map_err(|e| fail(&e))?;
        json_patch::patch(&mut pod_json, &patch.0).map_err(|e| fail(&e))?;
        // As a Pod the template is printed apart (`inject -o pod`); the
        // manifest keeps its own template as written.
        if !inputs.as_pods
            && let (Some(t), Value::Object(p)) = (template.as_object_mut(), &mut pod_json)
        {
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
        assumptions,
        pod: inputs.as_pods.then_some(pod_json),
    });
    Ok(())
}

/// A key under the operator's or our prefixes on a workload's own metadata
/// (or a CronJob's `spec.jobTemplate.metadata`), where no pod sees it.
#[derive(Debug)]
struct OwnKey {
    key: String,
    /// `label` or `annotation`.
    what: &'static str,
    /// `Deployment/checkout's own metadata`.
    place: String,
    /// Known and read from pods: it belongs in the template. Otherwise
    /// unknown (a key for the workload itself, such as `rollout`, is not
    /// listed at all).
    pod_key: bool,
}

/// The README's usual mistake: the injection annotation on the
/// Deployment's `metadata` instead of `spec.template.metadata`. A pod only
/// carries its template's labels and annotations, so such a key does
/// nothing. A key the template carries too is left alone: the pods have it.
fn own_metadata_keys(doc: &Value, kind: &str, workload: &str, path: &[&str]) -> Vec<OwnKey> {
    if path.is_empty() {
        return Vec::new();
    }
    let template_meta = doc.pointer(&format!("/{}/metadata", path.join("/")));
    let in_template = |key: &str| {
        ["labels", "annotations"].iter().any(|m| {
            template_meta
                .and_then(|t| t.get(m))
                .and_then(|m| m.get(key))
                .is_some()
        })
    };
    let mut places = vec![("/metadata", format!("{workload}'s own metadata"))];
    if kind == "CronJob" {
        places.push((
            "/spec/jobTemplate/metadata",
            format!("{workload}'s spec.jobTemplate.metadata"),
        ));
    }
    let mut out = Vec::new();
    for (pointer, place) in places {
        for (map, what) in [("labels", "label"), ("annotations", "annotation")] {
            let Some(keys) = doc
                .pointer(pointer)
                .and_then(|m| m.get(map))
                .and_then(Value::as_object)
            else {
                continue;
            };
            for key in keys.keys() {
                let pod_key = match check_key(key) {
                    KeyCheck::Known(Use::Pod) => true,
                    KeyCheck::Unknown { .. } => false,
                    _ => continue,
                };
                if in_template(key) {
                    continue;
                }
                out.push(OwnKey {
                    key: key.clone(),
                    what,
                    place: place.clone(),
                    pod_key,
                });
            }
        }
    }
    out
}

/// The misplaced keys as warnings, first (they are why nothing else
/// happened), and named in a `not_selected` skip, so `explain`'s "nothing
/// injected" line says where the annotation went. Offline only: `/mutate`
/// sees pods, which carry no workload metadata.
fn note_misplaced(outcome: &mut Outcome, misplaced: &[OwnKey], path: &[&str]) {
    let target = format!("{}.metadata", path.join("."));
    let mut warnings = Vec::new();
    for m in misplaced {
        if m.pod_key {
            warnings.push(format!(
                "{PREFIX}{} is on {}; move it to {target} (the pod template), where it reaches the pods",
                m.key.escape_debug(),
                m.place
            ));
        } else if let Some(w) = unknown_key_warning(&m.key, m.what, Some(&m.place)) {
            warnings.push(w);
        }
    }
    outcome.warnings.splice(0..0, warnings);
    let moved: Vec<String> = misplaced
        .iter()
        .filter(|m| m.pod_key)
        .map(|m| {
            format!(
                "{} is on {}, not on {target}",
                m.key.escape_debug(),
                m.place
            )
        })
        .collect();
    if moved.is_empty() {
        return;
    }
    let hint = format!("; {}", moved.join("; "));
    if let Some(s) = outcome
        .skip
        .as_mut()
        .filter(|s| s.reason == SkipReason::NotSelected)
    {
        s.message.push_str(&hint);
    }
    if let Decision::Skip(s) = &mut outcome.decision
        && s.reason == SkipReason::NotSelected
    {
        s.message.push_str(&hint);
    }
}

/// The metadata the API server gives a pod made from `kind`'s template
/// (`inject -o pod`): the template's, in the workload's namespace, named as
/// its controller names it, with the labels the controller adds whose value
/// is known without the cluster. What only the cluster knows (the
/// ReplicaSet's hash in a Deployment's `generateName`, `pod-template-hash`,
/// `controller-revision-hash`, UIDs, `ownerReferences`) is left out;
/// `docs/MIGRATING.md` lists what therefore differs.
fn as_created(meta: &mut Value, kind: &str, name: Option<&str>, namespace: &str) {
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    m.insert("namespace".into(), json!(namespace));
    let name = name.unwrap_or_default();
    if kind == "Pod" || name.is_empty() {
        return;
    }
    let mut labels: Vec<(&str, String)> = Vec::new();
    match kind {
        // The StatefulSet controller names its pods; the first is `-0`.
        "StatefulSet" => {
            let pod = format!("{name}-0");
            labels.push(("statefulset.kubernetes.io/pod-name", pod.clone()));
            labels.push(("apps.kubernetes.io/pod-index", "0".into()));
            m.insert("name".into(), json!(pod));
        }
        "Job" => {
            labels.push(("batch.kubernetes.io/job-name", name.to_string()));
            labels.push(("job-name", name.to_string()));
            m.insert("generateName".into(), json!(format!("{name}-")));
        }
        // A Deployment's pods are `<name>-<hash>-`, a CronJob's
        // `<name>-<scheduled minute>-`: the stem is what is known.
        _ => {
            m.insert("generateName".into(), json!(format!("{name}-")));
        }
    }
    if !labels.is_empty() {
        let l = m.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = l.as_object_mut() {
            for (k, v) in labels {
                l.entry(k).or_insert_with(|| json!(v));
            }
        }
    }
}

/// What `explain` assumed for inputs the user did not give, each when it
/// bears on this workload: the namespace's labels always (opt-in and rules
/// read them), Instrumentations when a language was asked for, collectors
/// and the cluster version when a sidecar was.
fn assumptions(inputs: &Inputs<'_>, namespace: &str, outcome: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    let unread = "assumed no labels or annotations, so namespace opt-in and namespaceSelector rules were not evaluated against real labels";
    if inputs.view.namespace(namespace).is_none() {
        out.push(if inputs.given.namespaces {
            format!("namespace {namespace}: not in the --namespace file; {unread}")
        } else {
            format!("namespace {namespace}: no --namespace given; {unread}")
        });
    }
    let Decision::Inject(plan) = &outcome.decision else {
        return out;
    };
    let failed = |f: fn(&Feature) -> bool| plan.failures.iter().any(|x| f(&x.feature));
    let languages = !plan.languages.is_empty()
        || failed(|f| matches!(f, Feature::Instrumentation(_) | Feature::AutoDetect));
    if languages && inputs.view.instrumentations_in(namespace).is_empty() {
        let why = if inputs.given.instrumentations {
            format!("none in the --instrumentation files for namespace {namespace}")
        } else {
            "no --instrumentation given".to_string()
        };
        out.push(format!(
            "Instrumentations: {why}; assumed none in namespace {namespace}, so \"true\" uses the config defaults and a named Instrumentation is not found"
        ));
    }
    let sidecar = plan.sidecar.is_some() || failed(|f| *f == Feature::Sidecar);
    if sidecar && inputs.view.sidecar_collectors(namespace).is_empty() {
        let why = if inputs.given.instrumentations {
            format!(
                "none with mode: sidecar in the --instrumentation files for namespace {namespace}"
            )
        } else {
            "no --instrumentation given (it takes OpenTelemetryCollectors too)".to_string()
        };
        out.push(format!(
            "OpenTelemetryCollectors: {why}; assumed none in namespace {namespace}, so \"true\" uses the config's sidecar template, if it has one"
        ));
    }
    if plan.sidecar.is_some()
        && inputs.server_version.is_none()
        && inputs.config.sidecar.native == NativeSidecar::Auto
    {
        out.push("cluster version: unknown offline; sidecar.native: auto taken as native (Kubernetes 1.29 or later); on an older cluster the sidecar is a regular container".to_string());
    }
    out
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

/// One feature's decision as `explain` shows it: the text prints
/// `  <feature>: <line>` for each line, then `    <label>: <value>` for each
/// detail; the JSON has the same facts under names.
#[derive(Debug)]
struct FeatureLine {
    feature: String,
    /// `injected`, `not_injected`, `nothing_added`, `off`, `not_requested` or `failed`.
    result: &'static str,
    /// The skip reason of a failed feature.
    reason: Option<SkipReason>,
    lines: Vec<String>,
    /// `(text label, JSON key, value)`.
    details: Vec<(&'static str, &'static str, String)>,
}

impl FeatureLine {
    fn new(feature: impl ToString, result: &'static str, line: String) -> Self {
        Self {
            feature: feature.to_string(),
            result,
            reason: None,
            lines: vec![line],
            details: Vec::new(),
        }
    }

    fn detail(mut self, label: &'static str, key: &'static str, value: String) -> Self {
        self.details.push((label, key, value));
        self
    }
}

/// Every feature's line, in the order `explain` prints them: the languages,
/// the pod features (sidecar, probes, annotations), then every failure.
fn feature_lines(plan: &Plan, applied: &Applied) -> Vec<FeatureLine> {
    let mut out = Vec::new();
    for lp in &plan.languages {
        let done = applied.injected.iter().any(|i| i.language == lp.language);
        let (result, verb) = if done {
            ("injected", "injected")
        } else {
            ("not_injected", "NOT injected")
        };
        out.push(
            FeatureLine::new(
                lp.language.key(),
                result,
                format!("{verb} into container(s) {}", lp.containers.join(", ")),
            )
            .detail("decided by", "decidedBy", lp.decided_by.clone())
            .detail(
                "containers chosen by",
                "containersChosenBy",
                lp.containers_by.clone(),
            )
            .detail(
                "Instrumentation",
                "instrumentation",
                lp.instrumentation.label.clone(),
            ),
        );
    }
    pod_feature_lines(&mut out, plan, applied);
    for f in &applied.failures {
        let mut line = FeatureLine::new(
            f.feature,
            "failed",
            format!("not injected ({}): {}", f.reason, f.message),
        );
        line.reason = Some(f.reason);
        out.push(line);
    }
    out
}

/// The sidecar, probes and annotations lines: each feature's decision and why.
/// Failures are added by the caller with the languages'.
fn pod_feature_lines(out: &mut Vec<FeatureLine>, plan: &Plan, applied: &Applied) {
    let failed = |f: Feature| applied.failures.iter().any(|x| x.feature == f);
    let declined = |f: Feature| plan.declined.iter().find(|(d, _)| *d == f);
    for feature in Feature::POD_FEATURES {
        if let Some((_, by)) = declined(feature) {
            out.push(FeatureLine::new(feature, "off", format!("off, by {by}")));
            continue;
        }
        if failed(feature) {
            continue;
        }
        let line = match feature {
            Feature::Sidecar => match (&plan.sidecar, &applied.sidecar) {
                (Some(sp), Some(done)) => {
                    let place = if sp.native {
                        "native sidecar in initContainers, restartPolicy Always"
                    } else {
                        "regular container in containers"
                    };
                    let mut line = FeatureLine::new(
                        feature,
                        "injected",
                        format!("injected {SIDECAR_NAME} ({place}), config {}", done.config),
                    )
                    .detail("decided by", "decidedBy", sp.decided_by.clone())
                    .detail(
                        "mode chosen by",
                        "modeChosenBy",
                        sp.native_by.clone(),
                    );
                    if !plan.languages.is_empty() {
                        line = line.detail(
                            "app endpoint",
                            "appEndpoint",
                            "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 (4317 for gRPC), unless the container sets it".into(),
                        );
                    }
                    line
                }
                _ => FeatureLine::new(
                    feature,
                    "not_requested",
                    format!("not requested (no {SIDECAR_KEY} and no rule with sidecar: true)"),
                ),
            },
            Feature::Probes => match &plan.probes {
                Some(by) => {
                    let mut line = FeatureLine::new(feature, "injected", String::new()).detail(
                        "decided by",
                        "decidedBy",
                        by.clone(),
                    );
                    line.lines = applied
                        .probes
                        .iter()
                        .map(|(c, kinds)| format!("added {} to {c}", kinds.join(", ")))
                        .collect();
                    if line.lines.is_empty() {
                        line.result = "nothing_added";
                        line.lines = vec!["requested, none added (see warnings)".into()];
                    }
                    line
                }
                None => FeatureLine::new(
                    feature,
                    "not_requested",
                    format!("not requested (no {PROBES_KEY} and no rule with probes: true)"),
                ),
            },
            _ => match (&plan.annotations, &applied.annotations) {
                (Some(ap), Some(keys)) => {
                    let (result, what) = if keys.is_empty() {
                        (
                            "nothing_added",
                            "already present, nothing changed".to_string(),
                        )
                    } else {
                        ("injected", format!("set {}", keys.join(", ")))
                    };
                    let mesh = ap
                        .mesh
                        .as_deref()
                        .unwrap_or("not in an Istio mesh, excludeInboundPorts untouched");
                    FeatureLine::new(feature, result, what)
                        .detail("decided by", "decidedBy", ap.decided_by.clone())
                        .detail("Istio", "istio", mesh.to_string())
                }
                _ => FeatureLine::new(
                    feature,
                    "not_requested",
                    format!("not requested (no {ISTIO_KEY} and no rule with annotations: true)"),
                ),
            },
        };
        out.push(line);
    }
}

/// The feature lines of a report: none for a pod left alone as a whole.
fn report_lines(r: &Report) -> Vec<FeatureLine> {
    match (&r.outcome.decision, &r.outcome.applied) {
        (Decision::Inject(plan), Some(applied)) => feature_lines(plan, applied),
        _ => Vec::new(),
    }
}

/// What `explain` prints when the manifest has no pod template.
pub fn nothing_found(origin: &str) -> String {
    format!(
        "{origin}: no Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob found"
    )
}

/// `explain`: per workload and feature, what and why, in plain words.
pub fn explain(origin: &str, reports: &[Report]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        let _ = writeln!(out, "{}", nothing_found(origin));
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
        for line in report_lines(r) {
            for l in &line.lines {
                let _ = writeln!(out, "  {}: {l}", line.feature);
            }
            for (label, _, value) in &line.details {
                let _ = writeln!(out, "    {label}: {value}");
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
        if !r.assumptions.is_empty() {
            let _ = writeln!(out, "  assumed:");
            for a in &r.assumptions {
                let _ = writeln!(out, "    - {a}");
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

/// `explain -o json`: one JSON document per workload, a line each (so `jq`
/// reads the stream), with the same facts as the text: the pod-level skip,
/// every feature's result and what decided it, the config rules, what was
/// assumed, the warnings, and whether `failureMode: deny` would reject it.
/// A manifest without pod templates gives no line; the caller says so on
/// stderr.
pub fn explain_json(origin: &str, reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let o = &r.outcome;
        let features: Vec<Value> = report_lines(r)
            .into_iter()
            .map(|l| {
                let mut v = json!({
                    "feature": l.feature,
                    "result": l.result,
                    "summary": l.lines.join("; "),
                });
                if let Some(reason) = l.reason {
                    v["reason"] = json!(reason.as_str());
                }
                for (_, key, value) in l.details {
                    v[key] = json!(value);
                }
                v
            })
            .collect();
        let rules: Vec<Value> = r
            .rules
            .iter()
            .map(|rc| match &rc.not_applied {
                None => json!({"rule": rc.rule, "applies": true}),
                Some(why) => json!({"rule": rc.rule, "applies": false, "why": why}),
            })
            .collect();
        let mut doc = json!({
            "file": origin,
            "index": r.index,
            "workload": r.workload,
            "namespace": r.namespace,
            "location": r.location,
            "injected": o
                .applied
                .as_ref()
                .is_some_and(|a| !a.injected.is_empty() || !a.features_done().is_empty()),
            "features": features,
            "rules": rules,
            "assumptions": r.assumptions,
            "warnings": o.warnings,
            "denied": !o.denials.is_empty(),
        });
        if let Some(s) = &o.skip {
            doc["skip"] = json!({"reason": s.reason.as_str(), "message": s.message});
        }
        out.push_str(&doc.to_string());
        out.push('\n');
    }
    out
}

/// `inject -o pod`: the Pod the API server would create from each
/// workload's template, injected, as multi-document YAML (keys sorted, as
/// `kubectl get pod -o yaml` prints them, so `diff` lines them up).
pub fn pods_yaml(reports: &[Report]) -> Result<String, serde_yaml_ng::Error> {
    let pods: Vec<Value> = reports.iter().filter_map(|r| r.pod.clone()).collect();
    Ok(kubectl_quotes(&to_yaml(&pods)?))
}

/// kubectl's YAML printer (go-yaml) double-quotes a string that would read
/// as another type (`"true"`, `"8080"`, `""`), where serde_yaml
/// single-quotes it: rewritten, so `diff` against `kubectl get pod -o yaml`
/// shows no quoting noise on every `inject-python: "true"`. Only a whole
/// single-quoted scalar ending its line, with no quote or backslash inside,
/// is touched: the same text in double quotes is the same string.
fn kubectl_quotes(yaml: &str) -> String {
    // go-yaml reads YAML 1.1, where these are booleans too; serde_yaml
    // quotes them, and reads them back as strings (YAML 1.2).
    const YAML_1_1_BOOLS: [&str; 16] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        // Where the value starts: after `key: `, or after the `- ` of an item.
        let start = match body.rfind(": '") {
            Some(i) => Some(i + 2),
            None if body.trim_start().starts_with("- '") => body.find("- '").map(|i| i + 2),
            None => None,
        };
        let rewritten = start.and_then(|i| {
            let inner = body[i..].strip_prefix('\'')?.strip_suffix('\'')?;
            if inner.contains(['\'', '"', '\\']) {
                return None;
            }
            let other_type = YAML_1_1_BOOLS.contains(&inner)
                || !serde_yaml_ng::from_str::<Value>(inner).ok()?.is_string();
            other_type.then(|| format!("{}\"{inner}\"", &body[..i]))
        });
        match rewritten {
            Some(r) => {
                out.push_str(&r);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod kubectl_quotes_tests {
    use rstest::rstest;

    #[rstest]
    #[case::bool("  a: 'true'\n", "  a: \"true\"\n")]
    #[case::number("  port: '8080'\n", "  port: \"8080\"\n")]
    #[case::empty("  a: ''\n", "  a: \"\"\n")]
    #[case::null("  a: 'null'\n", "  a: \"null\"\n")]
    #[case::yaml_1_1_bool("  a: 'yes'\n", "  a: \"yes\"\n")]
    #[case::item("  - '1'\n", "  - \"1\"\n")]
    #[case::json_stays_single("  s: '{\"a\":1}'\n", "  s: '{\"a\":1}'\n")]
    #[case::inner_quote_stays("  s: 'it''s'\n", "  s: 'it''s'\n")]
    #[case::plain_string_stays("  s: '*star'\n", "  s: '*star'\n")]
    #[case::unquoted_stays("  s: true\n", "  s: true\n")]
    #[case::no_newline("a: '1'", "a: \"1\"")]
    fn strings_that_read_as_another_type_get_double_quotes(
        #[case] input: &str,
        #[case] want: &str,
    ) {
        assert_eq!(super::kubectl_quotes(input), want);
    }
}
