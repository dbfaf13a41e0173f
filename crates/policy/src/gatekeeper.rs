//! Gatekeeper ConstraintTemplates and Constraints.
//!
//! Like Gatekeeper, each template's Rego is isolated: its package is renamed
//! to `gatekeeper.templates.<kind>` and its libs (`package lib...`, used as
//! `data.lib...`) to `gatekeeper.libs.<kind>.lib...`, so two templates may
//! ship different libs under the same name. The renaming works on the tokens
//! of `compat::tokens`, so a string or comment is never rewritten.
//!
//! Documents are read by `serde` into the few fields used: a required field
//! that is absent is "missing", and a field of the wrong type is an error
//! naming its path (``t.yaml: document 0: spec.targets[0].rego: invalid type:
//! integer `1`, expected a string``).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use super::compat::{self, Token, TokenKind};
use super::{PolicyError, rego_message};
use crate::selector;

pub const TEMPLATE_API_GROUP: &str = "templates.gatekeeper.sh";
pub const CONSTRAINT_API_GROUP: &str = "constraints.gatekeeper.sh";
const TARGET: &str = "admission.k8s.gatekeeper.sh";

/// What a constraint does with its violations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Deny,
    Warn,
    Dryrun,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Warn => "warn",
            Self::Dryrun => "dryrun",
        }
    }
}

/// A parsed ConstraintTemplate.
#[derive(Clone, Debug)]
pub struct Template {
    pub name: String,
    /// The Constraint kind it defines (`spec.crd.spec.names.kind`).
    pub kind: String,
    /// The renamed entry package, without `data.`.
    pub package: String,
    /// `(label, rego, is_v0)` for the entry module and each lib.
    pub modules: Vec<(String, String, bool)>,
    pub path: PathBuf,
}

/// A parsed Constraint.
#[derive(Clone, Debug)]
pub struct Constraint {
    pub name: String,
    pub kind: String,
    pub action: Action,
    pub parameters: Json,
    /// `parameters` as the regorus value each evaluation's `input` shares.
    pub parameters_value: regorus::Value,
    pub matcher: Match,
    pub path: PathBuf,
}

/// `spec.match`.
#[derive(Clone, Debug, Default)]
pub struct Match {
    /// `(apiGroups, kinds)` pairs; empty means every kind.
    pub kinds: Vec<(Vec<String>, Vec<String>)>,
    pub namespaces: Option<Vec<String>>,
    pub excluded_namespaces: Vec<String>,
    pub label_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    /// `*`, `Cluster` or `Namespaced`.
    pub scope: String,
}

/// Labels of a namespace by name, from the cluster cache when there is one.
pub type NamespaceLabels<'a> = &'a dyn Fn(&str) -> Option<BTreeMap<String, String>>;

fn doc_err(path: &Path, doc: usize, field: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Document {
        path: path.to_path_buf(),
        doc,
        field: field.to_string(),
        message: message.into(),
    }
}

fn str_at<'a>(v: &'a Json, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Json::as_str)
}

/// Whether a YAML/JSON document is a ConstraintTemplate.
pub fn is_template(doc: &Json) -> bool {
    doc.get("kind").and_then(Json::as_str) == Some("ConstraintTemplate")
        && str_at(doc, "/apiVersion").is_some_and(|a| a.starts_with(TEMPLATE_API_GROUP))
}

/// Whether a document is a Constraint.
pub fn is_constraint(doc: &Json) -> bool {
    str_at(doc, "/apiVersion").is_some_and(|a| a.starts_with(CONSTRAINT_API_GROUP))
}

// === The documents as serde reads them ===
//
// Only the fields read are declared; the others are ignored. A field that is
// absent or null is `None`, reported as missing where it is required; a field
// of the wrong type is an error that names its path (`from_json`).

/// Deserializes `v`, whose path in the document is `under` (empty for the
/// document itself); an error names the field path, as
/// `otel_admission_core::config` does.
fn from_json<'de, T: Deserialize<'de>>(
    v: &'de Json,
    path: &Path,
    idx: usize,
    under: &str,
) -> Result<T, PolicyError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let at = e.path().to_string();
        let field = match (under, at.as_str()) {
            ("", ".") => "(document)".to_string(),
            ("", _) => at,
            (_, ".") => under.to_string(),
            (_, _) if at.starts_with('[') => format!("{under}{at}"),
            (_, _) => format!("{under}.{at}"),
        };
        doc_err(path, idx, &field, e.into_inner().to_string())
    })
}

/// A field that may be absent but not null: `None` when absent (with
/// `#[serde(default)]`), `Some(None)` when null.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(expecting = "an object")]
struct Metadata {
    name: Option<String>,
}

/// A ConstraintTemplate.
#[derive(Deserialize)]
#[serde(expecting = "an object")]
struct TemplateDoc {
    metadata: Option<Metadata>,
    spec: Option<TemplateSpec>,
}

#[derive(Default, Deserialize)]
#[serde(expecting = "an object")]
struct TemplateSpec {
    crd: Option<Crd>,
    targets: Option<Vec<Target>>,
}

#[derive(Deserialize)]
#[serde(expecting = "an object")]
struct Crd {
    spec: Option<CrdSpec>,
}

#[derive(Deserialize)]
#[serde(expecting = "an object")]
struct CrdSpec {
    names: Option<CrdNames>,
}

#[derive(Deserialize)]
#[serde(expecting = "an object")]
struct CrdNames {
    kind: Option<String>,
}

/// `spec.targets[]`: the legacy `rego` + `libs`, or `code[]` by engine.
#[derive(Deserialize)]
#[serde(expecting = "an object")]
struct Target {
    target: Option<String>,
    rego: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    libs: Option<Option<Vec<String>>>,
    code: Option<Vec<Code>>,
}

/// `code[]`: the source's shape is the engine's, so only a `Rego` source is
/// read, as [`RegoSource`].
#[derive(Deserialize)]
#[serde(expecting = "an object")]
struct Code {
    engine: Option<String>,
    source: Option<Json>,
}

#[derive(Default, Deserialize)]
#[serde(expecting = "an object")]
struct RegoSource {
    rego: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    libs: Option<Option<Vec<String>>>,
    version: Option<String>,
}

/// A Constraint.
#[derive(Deserialize)]
#[serde(expecting = "an object")]
struct ConstraintDoc {
    kind: Option<String>,
    metadata: Option<Metadata>,
    spec: Option<ConstraintSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an object")]
struct ConstraintSpec {
    enforcement_action: Option<String>,
    #[serde(rename = "match")]
    matcher: Option<MatchSpec>,
    /// Absent is `{}`; null stays null.
    #[serde(default = "empty_object")]
    parameters: Json,
}

impl Default for ConstraintSpec {
    fn default() -> Self {
        Self {
            enforcement_action: None,
            matcher: None,
            parameters: empty_object(),
        }
    }
}

fn empty_object() -> Json {
    Json::Object(Default::default())
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an object")]
struct MatchSpec {
    /// A null entry is an empty one: every kind.
    kinds: Option<Vec<Option<KindsSpec>>>,
    namespaces: Option<Vec<String>>,
    excluded_namespaces: Option<Vec<String>>,
    label_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    scope: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an object")]
struct KindsSpec {
    api_groups: Option<Vec<String>>,
    kinds: Option<Vec<String>>,
}

// === Parsing ===

/// Parses a ConstraintTemplate document.
pub fn parse_template(doc: &Json, path: &Path, idx: usize) -> Result<Template, PolicyError> {
    let d: TemplateDoc = from_json(doc, path, idx, "")?;
    let name = d
        .metadata
        .and_then(|m| m.name)
        .ok_or_else(|| doc_err(path, idx, "metadata.name", "missing"))?;
    let spec = d.spec.unwrap_or_default();
    let kind = spec
        .crd
        .and_then(|c| c.spec)
        .and_then(|s| s.names)
        .and_then(|n| n.kind)
        .ok_or_else(|| doc_err(path, idx, "spec.crd.spec.names.kind", "missing"))?;
    let targets = spec
        .targets
        .ok_or_else(|| doc_err(path, idx, "spec.targets", "missing or not a list"))?;
    let (ti, target) = targets
        .into_iter()
        .enumerate()
        .find(|(_, t)| t.target.as_deref().is_none_or(|s| s == TARGET))
        .ok_or_else(|| doc_err(path, idx, "spec.targets", format!("no target {TARGET}")))?;
    // `code[]` with engine Rego wins over the legacy `rego` + `libs`.
    let code = target
        .code
        .into_iter()
        .flatten()
        .enumerate()
        .find(|(_, c)| c.engine.as_deref() == Some("Rego"));
    let (rego, libs, v0, field) = match code {
        Some((ci, c)) => {
            let field = format!("spec.targets[{ti}].code[{ci}].source");
            let source: RegoSource = match &c.source {
                Some(s) => from_json(s, path, idx, &field)?,
                None => RegoSource::default(),
            };
            let v0 = match source.version.as_deref().unwrap_or("v0") {
                "v0" => true,
                "v1" => false,
                other => {
                    return Err(doc_err(
                        path,
                        idx,
                        &format!("{field}.version"),
                        format!("must be v0 or v1, got {other:?}"),
                    ));
                }
            };
            (source.rego, source.libs, v0, field)
        }
        None => (
            target.rego,
            target.libs,
            true,
            format!("spec.targets[{ti}]"),
        ),
    };
    let rego = rego.ok_or_else(|| doc_err(path, idx, &format!("{field}.rego"), "missing"))?;
    let lower = kind.to_ascii_lowercase();
    let package = format!("gatekeeper.templates.{lower}");
    let mut modules = vec![(
        format!("{}#{name}", path.display()),
        isolate(&rego, &lower, Some(&package)),
        v0,
    )];
    match libs {
        None => {}
        Some(None) => {
            return Err(doc_err(
                path,
                idx,
                &format!("{field}.libs"),
                "must be a list",
            ));
        }
        Some(Some(libs)) => {
            for (li, src) in libs.iter().enumerate() {
                modules.push((
                    format!("{}#{name}.libs[{li}]", path.display()),
                    isolate(src, &lower, None),
                    v0,
                ));
            }
        }
    }
    Ok(Template {
        name,
        kind,
        package,
        modules,
        path: path.to_path_buf(),
    })
}

/// Renames one module of the template of kind `lower` (lowercase) for
/// isolation: its `package` (to `entry`, the template's package, or for a
/// lib from `lib...` to `gatekeeper.libs.<lower>.lib...`) and each root
/// `data.lib` reference, imports included, to
/// `data.gatekeeper.libs.<lower>.lib`. It works on [`compat::tokens`], so
/// nothing inside a string or a comment changes, and `input.data.lib` (a
/// field, not `data`) stays.
fn isolate(src: &str, lower: &str, entry: Option<&str>) -> String {
    let toks = compat::tokens(src);
    let is_word = |t: &Token, w: &str| t.kind == TokenKind::Word && &src[t.start..t.end] == w;
    let is_dot = |t: &Token| t.kind == TokenKind::Punct(b'.');
    // A name right after a `.` is a field, not the root of a reference.
    let is_root = |i: usize| i == 0 || !(is_dot(&toks[i - 1]) && toks[i - 1].touches(&toks[i]));
    let in_path = |t: &Token| {
        matches!(
            t.kind,
            TokenKind::Word | TokenKind::Str | TokenKind::Punct(b'.' | b'[' | b']')
        )
    };
    // `(start, end, replacement)`, in source order, not overlapping.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    // The package: the first `package` keyword, a space, and a path.
    for (i, t) in toks.iter().enumerate() {
        if !(is_word(t, "package") && t.depth == 0 && is_root(i)) {
            continue;
        }
        let Some(first) = toks.get(i + 1).filter(|p| p.start > t.end && in_path(p)) else {
            continue;
        };
        let mut last = first;
        for next in &toks[i + 2..] {
            if !(last.touches(next) && in_path(next)) {
                break;
            }
            last = next;
        }
        let renamed = match entry {
            Some(package) => package.to_string(),
            None => {
                let orig = &src[first.start..last.end];
                let rest = orig.strip_prefix("lib").unwrap_or(orig);
                format!("gatekeeper.libs.{lower}.lib{rest}")
            }
        };
        edits.push((t.start, last.end, format!("package {renamed}")));
        break;
    }
    let package = edits.first().map(|e| e.0..e.1);
    let lib_root = format!("data.gatekeeper.libs.{lower}.lib");
    for (i, w) in toks.windows(3).enumerate() {
        let [data, dot, lib] = w else { continue };
        if package.as_ref().is_none_or(|p| !p.contains(&data.start))
            && is_word(data, "data")
            && is_root(i)
            && is_dot(dot)
            && data.touches(dot)
            && dot.touches(lib)
            && is_word(lib, "lib")
        {
            edits.push((data.start, lib.end, lib_root.clone()));
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(src.len() + 64);
    let mut done = 0;
    for (start, end, with) in edits {
        out.push_str(&src[done..start]);
        out.push_str(&with);
        done = end;
    }
    out.push_str(&src[done..]);
    out
}

impl Template {
    /// Which of the template's Rego its `i`th module is: `template k8sx`
    /// (the entry `rego`) or `template k8sx, libs[0]`.
    fn part(&self, i: usize) -> String {
        match i.checked_sub(1) {
            None => format!("template {}", self.name),
            Some(lib) => format!("template {}, libs[{lib}]", self.name),
        }
    }

    /// Where each of its modules comes from, by regorus label.
    pub fn origins(&self) -> impl Iterator<Item = (String, super::calls::Origin)> + '_ {
        self.modules.iter().enumerate().map(|(i, (label, _, _))| {
            (
                label.clone(),
                super::calls::Origin {
                    path: self.path.clone(),
                    what: Some(self.part(i)),
                },
            )
        })
    }

    /// Compiles the template's modules into `engine`. A Rego source nested
    /// too deep for regorus' parser is refused first
    /// ([`super::limits::check_nesting`]).
    pub fn add_to(&self, engine: &mut regorus::Engine) -> Result<(), PolicyError> {
        for (i, (_, src, _)) in self.modules.iter().enumerate() {
            super::limits::check_nesting(src).map_err(|e| PolicyError::Rego {
                path: self.path.clone(),
                message: format!("{}: {e}", self.part(i)),
            })?;
        }
        for (label, src, v0) in &self.modules {
            engine.set_rego_v0(*v0);
            let r = engine.add_policy(label.clone(), compat::preprocess(src, *v0));
            engine.set_rego_v0(false);
            r.map_err(|e| PolicyError::Rego {
                path: self.path.clone(),
                message: format!("template {}: {}", self.name, rego_message(&e)),
            })?;
        }
        Ok(())
    }
}

/// A label selector that [`selector::problems`] accepts, as `field`.
fn checked_selector(
    sel: Option<LabelSelector>,
    path: &Path,
    idx: usize,
    field: &str,
) -> Result<Option<LabelSelector>, PolicyError> {
    if let Some(p) = sel
        .as_ref()
        .and_then(|s| selector::problems(s).into_iter().next())
    {
        return Err(doc_err(
            path,
            idx,
            &format!("{field}.{p}"),
            "invalid selector",
        ));
    }
    Ok(sel)
}

/// Parses a Constraint document.
pub fn parse_constraint(doc: &Json, path: &Path, idx: usize) -> Result<Constraint, PolicyError> {
    let d: ConstraintDoc = from_json(doc, path, idx, "")?;
    let name = d
        .metadata
        .and_then(|m| m.name)
        .ok_or_else(|| doc_err(path, idx, "metadata.name", "missing"))?;
    let kind = d
        .kind
        .ok_or_else(|| doc_err(path, idx, "kind", "missing"))?;
    let spec = d.spec.unwrap_or_default();
    let action = match spec.enforcement_action.as_deref().unwrap_or("deny") {
        "deny" => Action::Deny,
        "warn" => Action::Warn,
        "dryrun" => Action::Dryrun,
        other => {
            return Err(doc_err(
                path,
                idx,
                "spec.enforcementAction",
                format!("must be deny, warn or dryrun, got {other:?}"),
            ));
        }
    };
    let m = spec.matcher.unwrap_or_default();
    let kinds = m
        .kinds
        .into_iter()
        .flatten()
        .map(|k| {
            let k = k.unwrap_or_default();
            (
                k.api_groups.unwrap_or_default(),
                k.kinds.unwrap_or_default(),
            )
        })
        .collect();
    let scope = m.scope.unwrap_or_else(|| "*".to_string());
    if !matches!(scope.as_str(), "*" | "Cluster" | "Namespaced") {
        return Err(doc_err(
            path,
            idx,
            "spec.match.scope",
            format!("must be *, Cluster or Namespaced, got {scope:?}"),
        ));
    }
    let parameters = spec.parameters;
    let parameters_value = serde::Deserialize::deserialize(&parameters)
        .map_err(|e: serde_json::Error| doc_err(path, idx, "spec.parameters", e.to_string()))?;
    Ok(Constraint {
        name,
        kind,
        action,
        parameters,
        parameters_value,
        matcher: Match {
            kinds,
            namespaces: m.namespaces,
            excluded_namespaces: m.excluded_namespaces.unwrap_or_default(),
            label_selector: checked_selector(
                m.label_selector,
                path,
                idx,
                "spec.match.labelSelector",
            )?,
            namespace_selector: checked_selector(
                m.namespace_selector,
                path,
                idx,
                "spec.match.namespaceSelector",
            )?,
            scope,
        },
        path: path.to_path_buf(),
    })
}

/// Gatekeeper's namespace globs: a `*` at the start or the end only.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        name.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        name.ends_with(suffix)
    } else {
        pattern == name
    }
}

/// The string at `path` under `v`, if it is one.
fn str_in<'a>(v: &'a regorus::Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = &cur[&regorus::Value::from(*k)];
    }
    match cur {
        regorus::Value::String(s) => Some(s.as_ref()),
        _ => None,
    }
}

fn present(v: &regorus::Value) -> Option<&regorus::Value> {
    (!matches!(v, regorus::Value::Null | regorus::Value::Undefined)).then_some(v)
}

fn labels_of(obj: Option<&regorus::Value>) -> BTreeMap<String, String> {
    let Some(labels) = obj
        .map(|o| &o[&regorus::Value::from("metadata")][&regorus::Value::from("labels")])
        .and_then(|l| l.as_object().ok())
    else {
        return BTreeMap::new();
    };
    labels
        .iter()
        .filter_map(|(k, v)| match (k, v) {
            (regorus::Value::String(k), regorus::Value::String(v)) => {
                Some((k.to_string(), v.to_string()))
            }
            _ => None,
        })
        .collect()
}

impl Match {
    /// Whether the AdmissionRequest `review` (as the engine shares it) is in
    /// scope.
    pub fn matches(&self, review: &regorus::Value, ns_labels: NamespaceLabels<'_>) -> bool {
        let group = str_in(review, &["kind", "group"]).unwrap_or("");
        let kind = str_in(review, &["kind", "kind"]).unwrap_or("");
        let obj = present(&review[&regorus::Value::from("object")])
            .or_else(|| present(&review[&regorus::Value::from("oldObject")]));
        if !self.kinds.is_empty()
            && !self.kinds.iter().any(|(groups, kinds)| {
                let any = |l: &[String], v: &str| l.iter().any(|x| x == "*" || x == v);
                (groups.is_empty() || any(groups, group)) && (kinds.is_empty() || any(kinds, kind))
            })
        {
            return false;
        }
        let namespace = str_in(review, &["namespace"])
            .filter(|s| !s.is_empty())
            .or_else(|| obj.and_then(|o| str_in(o, &["metadata", "namespace"])));
        // A Namespace object is matched by its own name, as in Gatekeeper.
        let is_namespace = group.is_empty() && kind == "Namespace";
        let ns_name = if is_namespace {
            obj.and_then(|o| str_in(o, &["metadata", "name"]))
                .or_else(|| str_in(review, &["name"]))
        } else {
            namespace
        };
        match self.scope.as_str() {
            "Cluster" if namespace.is_some() => return false,
            "Namespaced" if namespace.is_none() => return false,
            _ => {}
        }
        if let Some(ns) = ns_name {
            if let Some(list) = &self.namespaces
                && !list.iter().any(|p| glob_match(p, ns))
            {
                return false;
            }
            if self.excluded_namespaces.iter().any(|p| glob_match(p, ns)) {
                return false;
            }
        }
        if let Some(sel) = &self.label_selector
            && !selector::matches(sel, &labels_of(obj))
        {
            return false;
        }
        if let Some(sel) = &self.namespace_selector {
            let labels = if is_namespace {
                Some(labels_of(obj))
            } else {
                ns_name.and_then(ns_labels)
            };
            // An unknown namespace cannot be shown to match.
            match labels {
                Some(l) if selector::matches(sel, &l) => {}
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_match("kube-*", "kube-system"));
        assert!(glob_match("*-system", "kube-system"));
        assert!(!glob_match("kube-*", "default"));
        assert!(glob_match("default", "default"));
        assert!(!glob_match("default", "default2"));
    }

    fn constraint(spec: Json) -> Constraint {
        let doc = json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sX",
            "metadata": {"name": "c"}, "spec": spec});
        parse_constraint(&doc, Path::new("c.yaml"), 0).expect("constraint")
    }

    fn review(ns: &str, labels: Json) -> regorus::Value {
        regorus::Value::from(
            json!({"kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": ns,
            "object": {"metadata": {"name": "p", "labels": labels}}}),
        )
    }

    /// Gatekeeper's `match` on a Pod in namespace `pay` labelled `app: a`;
    /// `known` says whether the namespace's labels (`team: pay`) are in the
    /// cache.
    #[rstest::rstest]
    #[case::empty_match_matches(json!({}), false, true)]
    #[case::other_kind(json!({"match": {"kinds": [{"apiGroups": [""], "kinds": ["Deployment"]}]}}), false, false)]
    #[case::any_group_pod(json!({"match": {"kinds": [{"apiGroups": ["*"], "kinds": ["Pod"]}]}}), false, true)]
    #[case::namespace_glob(json!({"match": {"namespaces": ["p*"]}}), false, true)]
    #[case::excluded_namespace_glob(json!({"match": {"excludedNamespaces": ["*ay"]}}), false, false)]
    #[case::label_selector_mismatch(json!({"match": {"labelSelector": {"matchLabels": {"app": "b"}}}}), false, false)]
    #[case::namespace_selector_known(json!({"match": {"namespaceSelector": {"matchLabels": {"team": "pay"}}}}), true, true)]
    #[case::namespace_selector_unknown_namespace(json!({"match": {"namespaceSelector": {"matchLabels": {"team": "pay"}}}}), false, false)]
    #[case::cluster_scope_only(json!({"match": {"scope": "Cluster"}}), false, false)]
    fn match_table(#[case] spec: serde_json::Value, #[case] known: bool, #[case] want: bool) {
        let labels = |n: &str| {
            (known && n == "pay").then(|| BTreeMap::from([("team".into(), "pay".into())]))
        };
        let pod = review("pay", json!({"app": "a"}));
        assert_eq!(constraint(spec).matcher.matches(&pod, &labels), want);
    }

    #[test]
    fn a_bad_enforcement_action_names_its_field() {
        let doc = json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sX",
            "metadata": {"name": "c"}, "spec": {"enforcementAction": "block"}});
        let err = parse_constraint(&doc, Path::new("c.yaml"), 2).expect_err("bad action");
        assert!(
            err.to_string()
                .contains("c.yaml: document 2: spec.enforcementAction"),
            "{err}"
        );
    }

    #[test]
    fn template_packages_are_isolated() {
        let doc = json!({"apiVersion": "templates.gatekeeper.sh/v1", "kind": "ConstraintTemplate",
            "metadata": {"name": "k8sx"},
            "spec": {"crd": {"spec": {"names": {"kind": "K8sX"}}},
              "targets": [{"target": "admission.k8s.gatekeeper.sh",
                "rego": "package k8sx\nimport data.lib.util\nviolation[{\"msg\": m}] { m := util.msg }",
                "libs": ["package lib.util\nmsg := \"hi\""]}]}});
        let t = parse_template(&doc, Path::new("t.yaml"), 0).expect("template");
        assert_eq!(t.package, "gatekeeper.templates.k8sx");
        assert!(
            t.modules[0]
                .1
                .contains("import data.gatekeeper.libs.k8sx.lib.util")
        );
        assert!(
            t.modules[1]
                .1
                .starts_with("package gatekeeper.libs.k8sx.lib.util")
        );
        let mut e = regorus::Engine::new();
        t.add_to(&mut e).expect("compiles");
        e.set_input(regorus::Value::new_object());
        let v = e
            .eval_rule("data.gatekeeper.templates.k8sx.violation".into())
            .expect("eval");
        assert_eq!(super::super::native::messages(&v), vec!["hi".to_string()]);
    }

    fn template(target: Json) -> Json {
        json!({"apiVersion": "templates.gatekeeper.sh/v1", "kind": "ConstraintTemplate",
            "metadata": {"name": "k8sx"},
            "spec": {"crd": {"spec": {"names": {"kind": "K8sX"}}}, "targets": [target]}})
    }

    fn template_err(target: Json) -> String {
        parse_template(&template(target), Path::new("t.yaml"), 0)
            .expect_err("bad template")
            .to_string()
    }

    fn constraint_err(spec: Json) -> String {
        let doc = json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sX",
            "metadata": {"name": "c"}, "spec": spec});
        parse_constraint(&doc, Path::new("c.yaml"), 1)
            .expect_err("bad constraint")
            .to_string()
    }

    /// `package` and `data.lib` in strings and comments are text, not Rego:
    /// only the package declaration and the `data.lib` references change.
    #[test]
    fn renaming_skips_strings_and_comments() {
        let entry = "# package foo, import data.lib.x\npackage k8sx\nimport data.lib.util\n\
            said := \"package foo; import data.lib.x\"\n\
            raw := `\npackage foo\nimport data.lib.y`\n\
            field := input.data.lib\n\
            violation[{\"msg\": m}] { m := concat(\" \", [data.lib.util.msg, said]) }\n";
        assert_eq!(
            isolate(entry, "k8sx", Some("gatekeeper.templates.k8sx")),
            "# package foo, import data.lib.x\npackage gatekeeper.templates.k8sx\n\
            import data.gatekeeper.libs.k8sx.lib.util\n\
            said := \"package foo; import data.lib.x\"\n\
            raw := `\npackage foo\nimport data.lib.y`\n\
            field := input.data.lib\n\
            violation[{\"msg\": m}] { m := concat(\" \", [data.gatekeeper.libs.k8sx.lib.util.msg, said]) }\n"
        );
        let lib = "# import data.lib.x\npackage lib.util\nmsg := \"import data.lib.x\"\n";
        assert_eq!(
            isolate(lib, "k8sx", None),
            "# import data.lib.x\npackage gatekeeper.libs.k8sx.lib.util\nmsg := \"import data.lib.x\"\n"
        );
        let doc = template(json!({"target": "admission.k8s.gatekeeper.sh",
            "rego": entry, "libs": [lib]}));
        let t = parse_template(&doc, Path::new("t.yaml"), 0).expect("template");
        let mut e = regorus::Engine::new();
        t.add_to(&mut e).expect("compiles");
        e.set_input(regorus::Value::new_object());
        let v = e
            .eval_rule("data.gatekeeper.templates.k8sx.violation".into())
            .expect("eval");
        assert_eq!(
            super::super::native::messages(&v),
            vec!["import data.lib.x package foo; import data.lib.x".to_string()]
        );
    }

    /// A template field of the wrong type is an error naming its path; an
    /// absent required field is still "missing".
    #[test]
    fn template_errors_name_the_field_path() {
        let err = template_err(json!({"target": "admission.k8s.gatekeeper.sh", "rego": 5}));
        assert_eq!(
            err,
            "t.yaml: document 0: spec.targets[0].rego: invalid type: integer `5`, expected a string"
        );
        let err = template_err(json!({"code": [{"engine": "K8sNativeValidation",
            "source": {"validations": []}}, {"engine": "Rego",
            "source": {"rego": "package x", "libs": ["package lib.a", 7]}}]}));
        assert_eq!(
            err,
            "t.yaml: document 0: spec.targets[0].code[1].source.libs[1]: invalid type: integer `7`, expected a string"
        );
        let err = template_err(json!({"code": [{"engine": "Rego", "source": "package x"}]}));
        assert_eq!(
            err,
            "t.yaml: document 0: spec.targets[0].code[0].source: invalid type: string \"package x\", expected an object"
        );
        let err = template_err(json!({"libs": ["package lib.a"]}));
        assert_eq!(err, "t.yaml: document 0: spec.targets[0].rego: missing");
        let err = template_err(json!({"rego": "package x", "libs": null}));
        assert_eq!(
            err,
            "t.yaml: document 0: spec.targets[0].libs: must be a list"
        );
        let mut doc = template(json!({"rego": "package x"}));
        doc["spec"]["targets"] = json!("all");
        let err = parse_template(&doc, Path::new("t.yaml"), 0).expect_err("targets");
        assert_eq!(
            err.to_string(),
            "t.yaml: document 0: spec.targets: invalid type: string \"all\", expected a sequence"
        );
    }

    /// A constraint field of the wrong type is an error naming its path.
    #[test]
    fn constraint_errors_name_the_field_path() {
        assert_eq!(
            constraint_err(json!({"match": "everything"})),
            "c.yaml: document 1: spec.match: invalid type: string \"everything\", expected an object"
        );
        assert_eq!(
            constraint_err(json!({"match": {"kinds": [{"kinds": "Pod"}]}})),
            "c.yaml: document 1: spec.match.kinds[0].kinds: invalid type: string \"Pod\", expected a sequence"
        );
        assert_eq!(
            constraint_err(json!({"match": {"excludedNamespaces": ["a", 1]}})),
            "c.yaml: document 1: spec.match.excludedNamespaces[1]: invalid type: integer `1`, expected a string"
        );
        let err = constraint_err(json!({"match": {"labelSelector": {"matchLabels": {"app": 1}}}}));
        assert!(
            err.starts_with("c.yaml: document 1: spec.match.labelSelector.matchLabels.app: "),
            "{err}"
        );
        assert_eq!(
            constraint_err(json!({"enforcementAction": 1})),
            "c.yaml: document 1: spec.enforcementAction: invalid type: integer `1`, expected a string"
        );
        let doc = json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sX",
            "metadata": {}, "spec": {}});
        let err = parse_constraint(&doc, Path::new("c.yaml"), 0).expect_err("no name");
        assert_eq!(
            err.to_string(),
            "c.yaml: document 0: metadata.name: missing"
        );
    }

    /// What is absent or null reads as before: defaults, and null
    /// parameters stay null.
    #[test]
    fn absent_and_null_fields_are_defaults() {
        let doc = json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sX",
            "metadata": {"name": "c"}, "spec": {"parameters": null, "enforcementAction": null,
            "match": {"kinds": [null, {"apiGroups": null, "kinds": ["Pod"]}], "scope": null,
            "namespaces": null, "labelSelector": null}}});
        let c = parse_constraint(&doc, Path::new("c.yaml"), 0).expect("constraint");
        assert_eq!(c.action, Action::Deny);
        assert_eq!(c.parameters, Json::Null);
        assert_eq!(
            c.matcher.kinds,
            vec![(vec![], vec![]), (vec![], vec!["Pod".to_string()])]
        );
        assert_eq!(c.matcher.scope, "*");
        assert!(c.matcher.namespaces.is_none() && c.matcher.label_selector.is_none());
        let doc = json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sX",
            "metadata": {"name": "c"}});
        let c = parse_constraint(&doc, Path::new("c.yaml"), 0).expect("constraint");
        assert_eq!(c.parameters, json!({}));
    }
}
