//! Workloads judged as the pods they will create (SPEC §7).
//!
//! Gatekeeper's `ExpansionTemplate` (`expansion.gatekeeper.sh/v1beta1`):
//! for an object whose group, version and kind `spec.applyTo` lists, the
//! value at `spec.templateSource` (a dotted path: `spec.template`,
//! `spec.jobTemplate.spec.template`) becomes a resource of
//! `spec.generatedGVK` in the object's namespace, and is judged by every
//! policy as if it were created; `spec.enforcementAction`, when set,
//! replaces the action of what it finds.
//!
//! Our step beyond Gatekeeper: before it is judged, the expanded Pod goes
//! through the same injection as `/mutate` (the [`Injection`] hook, wired
//! by the composition root to `inject::outcome::run` with the live config
//! and the cluster caches, the workload as the pods' owner), so a policy on
//! what injection adds fails at `kubectl apply`, not later at pod creation
//! where nobody sees it. Messages name the pod: `in the Pod that
//! Deployment/checkout creates: ...`.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::PolicyError;
use super::gatekeeper::Action;

/// The API group of ExpansionTemplates.
pub const API_GROUP: &str = "expansion.gatekeeper.sh/";

/// Whether a document is an ExpansionTemplate.
pub fn is_expansion(doc: &Json) -> bool {
    doc.get("kind").and_then(Json::as_str) == Some("ExpansionTemplate")
        && doc
            .get("apiVersion")
            .and_then(Json::as_str)
            .is_some_and(|a| a.starts_with(API_GROUP))
}

/// What the pod gets before it is judged: `(pod, namespace, owner kind,
/// owner name)` to the mutated pod (or the pod itself when nothing is
/// injected).
pub type Injection = dyn Fn(Json, &str, &str, &str) -> Json + Send + Sync;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    metadata: Option<Meta>,
    spec: Option<SpecDoc>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecDoc {
    apply_to: Option<Vec<ApplyTo>>,
    template_source: Option<String>,
    #[serde(rename = "generatedGVK")]
    generated_gvk: Option<Gvk>,
    enforcement_action: Option<String>,
}

/// One `applyTo` entry: every listed group, kind and version combination
/// (`*` matches any).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ApplyTo {
    pub groups: Vec<String>,
    pub kinds: Vec<String>,
    pub versions: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// A parsed ExpansionTemplate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expansion {
    pub name: String,
    pub apply_to: Vec<ApplyTo>,
    /// `templateSource` split at dots.
    pub source: Vec<String>,
    pub generated: Gvk,
    pub action: Option<Action>,
}

fn err(path: &Path, doc: usize, field: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Document {
        path: path.to_path_buf(),
        doc,
        field: field.to_string(),
        message: message.into(),
    }
}

/// Parses an ExpansionTemplate document; an error names the field.
pub fn parse(doc: &Json, path: &Path, idx: usize) -> Result<Expansion, PolicyError> {
    let d: Doc = serde_path_to_error::deserialize(doc)
        .map_err(|e| err(path, idx, &e.path().to_string(), e.inner().to_string()))?;
    let name = d
        .metadata
        .and_then(|m| m.name)
        .ok_or_else(|| err(path, idx, "metadata.name", "missing"))?;
    let spec = d.spec.ok_or_else(|| err(path, idx, "spec", "missing"))?;
    let apply_to = spec.apply_to.unwrap_or_default();
    if apply_to.is_empty() {
        return Err(err(
            path,
            idx,
            "spec.applyTo",
            "must list at least one kind",
        ));
    }
    for (i, a) in apply_to.iter().enumerate() {
        for (field, list) in [
            ("groups", &a.groups),
            ("kinds", &a.kinds),
            ("versions", &a.versions),
        ] {
            if list.is_empty() {
                return Err(err(
                    path,
                    idx,
                    &format!("spec.applyTo[{i}].{field}"),
                    "must not be empty",
                ));
            }
        }
    }
    let source: Vec<String> = spec
        .template_source
        .unwrap_or_default()
        .split('.')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if source.is_empty() {
        return Err(err(
            path,
            idx,
            "spec.templateSource",
            "must be a field path such as spec.template",
        ));
    }
    let generated = spec
        .generated_gvk
        .ok_or_else(|| err(path, idx, "spec.generatedGVK", "missing"))?;
    if generated.kind.is_empty() || generated.version.is_empty() {
        return Err(err(
            path,
            idx,
            "spec.generatedGVK",
            "needs a version and a kind",
        ));
    }
    let action = match spec.enforcement_action.as_deref() {
        None | Some("") => None,
        Some("deny") => Some(Action::Deny),
        Some("warn") => Some(Action::Warn),
        Some("dryrun") => Some(Action::Dryrun),
        Some(other) => {
            return Err(err(
                path,
                idx,
                "spec.enforcementAction",
                format!("must be deny, warn or dryrun, got {other:?}"),
            ));
        }
    };
    Ok(Expansion {
        name,
        apply_to,
        source,
        generated,
        action,
    })
}

fn listed(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

/// What one expansion made of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Expanded {
    /// `Deployment/checkout`, for the messages.
    pub parent: String,
    /// A CREATE AdmissionReview of the generated resource.
    pub review: Json,
}

impl Expansion {
    /// Whether `applyTo` lists this group, version and kind.
    pub fn applies_to(&self, group: &str, version: &str, kind: &str) -> bool {
        self.apply_to.iter().any(|a| {
            listed(&a.groups, group) && listed(&a.versions, version) && listed(&a.kinds, kind)
        })
    }

    /// Whether the request's kind is one `applyTo` lists.
    pub fn applies(&self, request: &Json) -> bool {
        let s = |k: &str| request["kind"][k].as_str().unwrap_or_default();
        self.applies_to(s("group"), s("version"), s("kind"))
    }

    /// The generated resource of a CREATE or UPDATE the template applies
    /// to, passed through `inject` when it is a Pod; `None` otherwise (or
    /// when the object has nothing at `templateSource`).
    pub fn expand(&self, review: &Json, inject: Option<&Injection>) -> Option<Expanded> {
        let request = review.get("request")?;
        if !matches!(request["operation"].as_str(), Some("CREATE" | "UPDATE"))
            || !self.applies(request)
        {
            return None;
        }
        let object = request.get("object")?;
        let template = self
            .source
            .iter()
            .try_fold(object, |at, field| at.get(field))?;
        let namespace = request["namespace"]
            .as_str()
            .or_else(|| object["metadata"]["namespace"].as_str())
            .unwrap_or_default()
            .to_string();
        let parent_kind = request["kind"]["kind"].as_str().unwrap_or_default();
        let parent_name = request["name"]
            .as_str()
            .or_else(|| object["metadata"]["name"].as_str())
            .unwrap_or_default();
        let g = &self.generated;
        let api_version = if g.group.is_empty() {
            g.version.clone()
        } else {
            format!("{}/{}", g.group, g.version)
        };
        let mut resource = template.clone();
        if !resource.is_object() {
            return None;
        }
        resource["apiVersion"] = json!(api_version);
        resource["kind"] = json!(g.kind);
        if !resource["metadata"].is_object() {
            resource["metadata"] = json!({});
        }
        resource["metadata"]["namespace"] = json!(namespace);
        if let Some(inject) = inject.filter(|_| g.kind == "Pod" && g.group.is_empty()) {
            resource = inject(resource, &namespace, parent_kind, parent_name);
        }
        let plural = format!("{}s", g.kind.to_ascii_lowercase());
        Some(Expanded {
            parent: format!("{parent_kind}/{parent_name}"),
            review: json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {
                    "uid": request["uid"],
                    "kind": {"group": g.group, "version": g.version, "kind": g.kind},
                    "resource": {"group": g.group, "version": g.version, "resource": plural},
                    "namespace": namespace,
                    "operation": "CREATE",
                    "userInfo": request["userInfo"],
                    "object": resource,
                }
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(yaml: &str) -> Result<Expansion, PolicyError> {
        let docs = crate::yaml::documents(yaml).expect("yaml");
        parse(&docs[0], Path::new("x.yaml"), 0)
    }

    const DEPLOYMENTS: &str = "apiVersion: expansion.gatekeeper.sh/v1beta1\nkind: ExpansionTemplate\nmetadata: {name: expand-deployments}\nspec:\n  applyTo: [{groups: [apps], kinds: [Deployment], versions: [v1]}]\n  templateSource: spec.template\n  generatedGVK: {kind: Pod, group: '', version: v1}\n";

    #[test]
    fn a_deployment_expands_into_its_pod_in_its_namespace() {
        let e = template(DEPLOYMENTS).expect("valid");
        let review = json!({"request": {"uid": "u", "operation": "CREATE", "namespace": "shop",
            "name": "checkout", "userInfo": {"username": "alice"},
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "object": {"metadata": {"name": "checkout"}, "spec": {"template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": "a:1"}]}}}}}});
        let inject = |mut pod: Json, ns: &str, kind: &str, name: &str| {
            pod["metadata"]["annotations"] = json!({"by": format!("{ns} {kind}/{name}")});
            pod
        };
        let got = e.expand(&review, Some(&inject)).expect("expands");
        assert_eq!(got.parent, "Deployment/checkout");
        let r = &got.review["request"];
        assert_eq!(
            r["kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(r["operation"], "CREATE");
        assert_eq!(r["object"]["apiVersion"], "v1");
        assert_eq!(r["object"]["kind"], "Pod");
        assert_eq!(r["object"]["metadata"]["namespace"], "shop");
        assert_eq!(r["object"]["metadata"]["labels"]["app"], "checkout");
        assert_eq!(
            r["object"]["metadata"]["annotations"]["by"], "shop Deployment/checkout",
            "the injection hook saw the workload as the owner"
        );
        let mut delete = review.clone();
        delete["request"]["operation"] = json!("DELETE");
        assert!(e.expand(&delete, None).is_none());
        let mut other = review;
        other["request"]["kind"]["kind"] = json!("StatefulSet");
        assert!(e.expand(&other, None).is_none());
    }

    #[rstest::rstest]
    #[case::no_apply_to(
        "spec: {templateSource: spec.template, generatedGVK: {kind: Pod, version: v1}}",
        "spec.applyTo"
    )]
    #[case::empty_kinds(
        "spec: {applyTo: [{groups: [apps], kinds: [], versions: [v1]}], templateSource: spec.template, generatedGVK: {kind: Pod, version: v1}}",
        "spec.applyTo[0].kinds"
    )]
    #[case::no_source(
        "spec: {applyTo: [{groups: [apps], kinds: [Deployment], versions: [v1]}], generatedGVK: {kind: Pod, version: v1}}",
        "spec.templateSource"
    )]
    #[case::no_gvk(
        "spec: {applyTo: [{groups: [apps], kinds: [Deployment], versions: [v1]}], templateSource: spec.template}",
        "spec.generatedGVK"
    )]
    #[case::bad_action(
        "spec: {applyTo: [{groups: [apps], kinds: [Deployment], versions: [v1]}], templateSource: spec.template, generatedGVK: {kind: Pod, version: v1}, enforcementAction: block}",
        "spec.enforcementAction"
    )]
    #[case::wrong_type(
        "spec: {applyTo: {groups: [apps]}, templateSource: spec.template, generatedGVK: {kind: Pod, version: v1}}",
        "spec.applyTo"
    )]
    fn a_broken_template_names_its_field(#[case] spec: &str, #[case] field: &str) {
        let yaml = format!(
            "apiVersion: expansion.gatekeeper.sh/v1beta1\nkind: ExpansionTemplate\nmetadata: {{name: e}}\n{spec}\n"
        );
        let e = template(&yaml).expect_err("invalid").to_string();
        assert!(e.contains(field), "{e}");
        assert!(e.contains("x.yaml"), "{e}");
    }
}
