//! `policy verify`: Gatekeeper `Suite` files (`test.gatekeeper.sh/v1alpha1`),
//! run like `gator verify`. Each test pairs a template with a constraint; each
//! case evaluates one object (with an optional inventory) and checks
//! assertions `violations: yes|no|N`, optionally only counting violations
//! whose message matches a regex.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::PolicyError;
use super::files::{files_under, is_yaml, parse_documents, read_documents};
use super::gatekeeper;
use super::set::PolicySet;

pub const SUITE_API_VERSION: &str = "test.gatekeeper.sh/v1alpha1";

/// One case's outcome.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub suite: PathBuf,
    pub test: String,
    pub case: String,
    /// Empty when it passed; otherwise why not.
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub cases: Vec<CaseResult>,
}

fn is_suite(doc: &Json) -> bool {
    doc.get("kind").and_then(Json::as_str) == Some("Suite")
        && doc.get("apiVersion").and_then(Json::as_str) == Some(SUITE_API_VERSION)
}

/// Suite files among `paths` (files as given; directories searched).
pub fn find_suites(paths: &[PathBuf]) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            for f in files_under(p)?.into_iter().filter(|f| is_yaml(f)) {
                // Unreadable or non-YAML files are not suites; skip them quietly.
                let Ok(text) = std::fs::read_to_string(&f) else {
                    continue;
                };
                if text.contains(SUITE_API_VERSION)
                    && parse_documents(&text, &f).is_ok_and(|d| d.iter().any(is_suite))
                {
                    out.push(f);
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn field_err(path: &Path, field: String, message: impl Into<String>) -> PolicyError {
    PolicyError::Document {
        path: path.to_path_buf(),
        doc: 0,
        field,
        message: message.into(),
    }
}

fn one_doc(path: &Path) -> Result<Json, PolicyError> {
    read_documents(path)?
        .into_iter()
        .next()
        .ok_or_else(|| field_err(path, "(document)".into(), "file holds no document"))
}

/// An AdmissionRequest for `obj`: an AdmissionReview's request is used as
/// is; a bare object becomes a CREATE.
pub fn request_for(obj: &Json) -> Json {
    if obj.get("kind").and_then(Json::as_str) == Some("AdmissionReview") {
        return obj.get("request").cloned().unwrap_or(Json::Null);
    }
    let api_version = obj.get("apiVersion").and_then(Json::as_str).unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = obj.get("kind").and_then(Json::as_str).unwrap_or("");
    let name = obj
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or("");
    let namespace = obj.pointer("/metadata/namespace").and_then(Json::as_str);
    let resource = format!("{}s", kind.to_ascii_lowercase());
    let mut req = json!({
        "uid": "otel-admission-offline",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "name": name,
        "operation": "CREATE",
        "userInfo": {"username": "otel-admission"},
        "object": obj,
        "dryRun": true,
    });
    if kind != "Namespace" {
        req["namespace"] = json!(namespace.unwrap_or("default"));
    }
    req
}

/// Wraps a request in an AdmissionReview.
pub fn review_for(obj: &Json) -> Json {
    if obj.get("kind").and_then(Json::as_str) == Some("AdmissionReview") {
        return obj.clone();
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request_for(obj)})
}

/// Gatekeeper's `data.inventory` layout, plus namespace labels for
/// namespaceSelector.
fn inventory(objs: &[Json]) -> (Json, BTreeMap<String, BTreeMap<String, String>>) {
    let mut inv = json!({"cluster": {}, "namespace": {}});
    let mut labels = BTreeMap::new();
    for o in objs {
        let s = |p: &str| {
            o.pointer(p)
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (gv, kind, name, ns) = (
            s("/apiVersion"),
            s("/kind"),
            s("/metadata/name"),
            s("/metadata/namespace"),
        );
        if kind == "Namespace" {
            let l = o
                .pointer("/metadata/labels")
                .and_then(Json::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            labels.insert(name.clone(), l);
        }
        let slot = if ns.is_empty() {
            &mut inv["cluster"]
        } else {
            &mut inv["namespace"][ns.as_str()]
        };
        slot[gv.as_str()][kind.as_str()][name.as_str()] = o.clone();
    }
    (inv, labels)
}

/// What an assertion expects.
fn expected(a: &Json, path: &Path, field: &str) -> Result<(Option<usize>, bool), PolicyError> {
    // (exact count, or None for "at least one" when `yes`); bool = `no`
    match a.get("violations") {
        None => Ok((None, false)),
        Some(Json::Bool(true)) => Ok((None, false)),
        Some(Json::Bool(false)) => Ok((Some(0), true)),
        Some(Json::String(s)) if s == "yes" => Ok((None, false)),
        Some(Json::String(s)) if s == "no" => Ok((Some(0), true)),
        Some(Json::Number(n)) if n.as_u64().is_some() => {
            Ok((n.as_u64().map(|n| n as usize), false))
        }
        Some(Json::String(s)) if s.parse::<usize>().is_ok() => Ok((s.parse().ok(), false)),
        Some(other) => Err(field_err(
            path,
            format!("{field}.violations"),
            format!("must be yes, no or a count, got {other}"),
        )),
    }
}

/// Runs one suite file.
pub fn run_suite(path: &Path, report: &mut Report) -> Result<(), PolicyError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let docs = read_documents(path)?;
    let suite = docs.iter().find(|d| is_suite(d)).ok_or_else(|| {
        field_err(
            path,
            "kind".into(),
            format!("no Suite ({SUITE_API_VERSION})"),
        )
    })?;
    let tests = suite
        .get("tests")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    for (ti, t) in tests.iter().enumerate() {
        let tf = format!("tests[{ti}]");
        let test_name = t
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        let file = |k: &str| -> Result<PathBuf, PolicyError> {
            t.get(k)
                .and_then(Json::as_str)
                .map(|p| base.join(p))
                .ok_or_else(|| field_err(path, format!("{tf}.{k}"), "missing"))
        };
        let tpath = file("template")?;
        let cpath = file("constraint")?;
        let tdoc = one_doc(&tpath)?;
        let cdoc = one_doc(&cpath)?;
        if !gatekeeper::is_template(&tdoc) {
            return Err(field_err(&tpath, "kind".into(), "not a ConstraintTemplate"));
        }
        let mut set = PolicySet::empty(Duration::from_secs(10));
        let template = gatekeeper::parse_template(&tdoc, &tpath, 0)?;
        let origins = template.origins().collect();
        set.add_template(template, 0)?;
        set.add_constraint(gatekeeper::parse_constraint(&cdoc, &cpath, 0)?, 0)?;
        set.check_calls(&origins)?;
        let cases = t
            .get("cases")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for (ci, c) in cases.iter().enumerate() {
            let cf = format!("{tf}.cases[{ci}]");
            let case_name = c
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            let opath = c
                .get("object")
                .and_then(Json::as_str)
                .map(|p| base.join(p))
                .ok_or_else(|| field_err(path, format!("{cf}.object"), "missing"))?;
            let obj = one_doc(&opath)?;
            let mut inv_objs = Vec::new();
            for (ii, p) in c
                .get("inventory")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let p = p.as_str().ok_or_else(|| {
                    field_err(path, format!("{cf}.inventory[{ii}]"), "must be a path")
                })?;
                inv_objs.extend(read_documents(&base.join(p))?);
            }
            let (inv, ns_labels) = inventory(&inv_objs);
            let mut s = set.clone();
            s.add_data(&json!({"inventory": inv}))
                .map_err(|m| field_err(path, format!("{cf}.inventory"), m))?;
            s.warm_up(&tpath)?;
            let lookup = |n: &str| ns_labels.get(n).cloned();
            let outcome = s.evaluate(&review_for(&obj), &lookup);
            let mut failures: Vec<String> = outcome
                .errors
                .iter()
                .map(|(p, e)| format!("{p}: evaluation error: {e}"))
                .collect();
            let assertions = c
                .get("assertions")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            for (ai, a) in assertions.iter().enumerate() {
                let af = format!("{cf}.assertions[{ai}]");
                let (want, _) = expected(a, path, &af)?;
                let re = match a.get("message").and_then(Json::as_str) {
                    Some(m) => Some(
                        regex::Regex::new(m)
                            .map_err(|e| field_err(path, format!("{af}.message"), e.to_string()))?,
                    ),
                    None => None,
                };
                let got = outcome
                    .violations
                    .iter()
                    .filter(|v| re.as_ref().is_none_or(|r| r.is_match(&v.message)))
                    .count();
                let what = re
                    .as_ref()
                    .map(|r| format!(" matching {:?}", r.as_str()))
                    .unwrap_or_default();
                match want {
                    None if got == 0 => failures.push(format!(
                        "assertions[{ai}]: got 0 violations{what}, want at least 1"
                    )),
                    Some(n) if got != n => failures.push(format!(
                        "assertions[{ai}]: got {got} violations{what}, want {n}; messages: {:?}",
                        outcome
                            .violations
                            .iter()
                            .map(|v| &v.message)
                            .collect::<Vec<_>>()
                    )),
                    _ => {}
                }
            }
            report.cases.push(CaseResult {
                suite: path.to_path_buf(),
                test: test_name.clone(),
                case: case_name,
                failures,
            });
        }
    }
    Ok(())
}

impl Report {
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.failures.is_empty()).count()
    }

    /// `gator verify -v` style text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.cases {
            if c.failures.is_empty() {
                let _ = writeln!(out, "ok    {}: {}/{}", c.suite.display(), c.test, c.case);
            } else {
                let _ = writeln!(out, "FAIL  {}: {}/{}", c.suite.display(), c.test, c.case);
                for f in &c.failures {
                    let _ = writeln!(out, "        {f}");
                }
            }
        }
        let n = self.cases.len();
        let _ = writeln!(out, "{}", "-".repeat(80));
        let _ = writeln!(out, "PASS: {}/{n}", n - self.failed());
        if self.failed() > 0 {
            let _ = writeln!(out, "FAIL: {}/{n}", self.failed());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8suniquename}
spec:
  crd: {spec: {names: {kind: K8sUniqueName}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8suniquename
        violation[{"msg": msg}] {
          name := input.review.object.metadata.name
          data.inventory.namespace[ns][_]["Pod"][name]
          ns != input.review.namespace
          msg := sprintf("pod name %v is also used in %v", [name, ns])
        }
"#;

    const CONSTRAINT: &str = "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sUniqueName\nmetadata: {name: unique}\nspec:\n  match:\n    namespaceSelector: {matchLabels: {team: pay}}\n";

    /// Inventory reaches `data.inventory`, and its Namespaces feed
    /// namespaceSelector.
    #[test]
    fn inventory_and_namespace_selector() {
        let d = tempfile::tempdir().expect("tmp");
        let w = |n: &str, s: &str| std::fs::write(d.path().join(n), s).expect("write");
        w("t.yaml", TEMPLATE);
        w("c.yaml", CONSTRAINT);
        w(
            "pod.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n",
        );
        w(
            "inv.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: pay}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: other}\n",
        );
        w(
            "ns-only.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: search}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: other}\n",
        );
        w(
            "suite.yaml",
            "kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: t\n  template: t.yaml\n  constraint: c.yaml\n  cases:\n  - name: dup\n    object: pod.yaml\n    inventory: [inv.yaml]\n    assertions: [{violations: 1, message: also used in other}]\n  - name: other-team\n    object: pod.yaml\n    inventory: [ns-only.yaml]\n    assertions: [{violations: no}]\n  - name: no-inventory\n    object: pod.yaml\n    assertions: [{violations: no}]\n",
        );
        let mut r = Report::default();
        run_suite(&d.path().join("suite.yaml"), &mut r).expect("runs");
        let failed: Vec<_> = r.cases.iter().filter(|c| !c.failures.is_empty()).collect();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(r.cases.len(), 3);
    }
}
