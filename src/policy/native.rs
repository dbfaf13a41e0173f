//! Native (OPA kube-mgmt style) Rego modules: packages under
//! `kubernetes.admission`, `input` = the whole AdmissionReview, rules `deny`
//! and `warn` as sets of strings or `{msg: ...}` objects.

use std::path::Path;

use super::{PolicyError, compat, rego_message};

/// The package prefix whose modules are enforced.
pub const ROOT: &str = "kubernetes.admission";

/// One loaded module: its package (without `data.`) and which of the
/// enforced rules it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub package: String,
    pub deny: bool,
    pub warn: bool,
}

/// Adds `src` to `engine`, as Rego v1 and, if that does not parse, as v0
/// (OPA's `--v0-compatible`): kube-mgmt policies are mostly v0, new ones v1.
/// A module that imports `rego.v1` is v1 only. A source nested too deep
/// for regorus' parser is refused first ([`super::limits::check_nesting`]).
pub fn add_module(
    engine: &mut regorus::Engine,
    path: &Path,
    src: &str,
) -> Result<Module, PolicyError> {
    super::limits::check_nesting(src).map_err(|message| PolicyError::Rego {
        path: path.to_path_buf(),
        message,
    })?;
    let label = path.display().to_string();
    engine.set_rego_v0(false);
    let v1 = engine.add_policy(label.clone(), compat::preprocess(src, false));
    let package = match v1 {
        Ok(p) => p,
        Err(e1) if !src.contains("import rego.v1") => {
            engine.set_rego_v0(true);
            let v0 = engine.add_policy(label.clone(), compat::preprocess(src, true));
            engine.set_rego_v0(false);
            match v0 {
                Ok(p) => p,
                Err(e0) => {
                    return Err(PolicyError::Rego {
                        path: path.to_path_buf(),
                        message: format!(
                            "as Rego v1: {}; as Rego v0: {}",
                            rego_message(&e1),
                            rego_message(&e0)
                        ),
                    });
                }
            }
        }
        Err(e) => {
            return Err(PolicyError::Rego {
                path: path.to_path_buf(),
                message: rego_message(&e),
            });
        }
    };
    let package = package
        .strip_prefix("data.")
        .unwrap_or(&package)
        .to_string();
    let declares = |rule: &str| {
        engine
            .has_declared_rule_rooted_at(&label, rule)
            .unwrap_or(false)
    };
    Ok(Module {
        deny: declares("deny"),
        warn: declares("warn"),
        package,
    })
}

/// Whether a package is enforced at admission (others are helpers).
pub fn is_enforced(package: &str) -> bool {
    package == ROOT
        || package
            .strip_prefix(ROOT)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The messages of a `deny`/`warn` value: a set (or array) of strings or of
/// objects with `msg`. Anything else is reported by its JSON.
pub fn messages(value: &regorus::Value) -> Vec<String> {
    let items: Vec<&regorus::Value> = match value {
        regorus::Value::Set(s) => s.iter().collect(),
        regorus::Value::Array(a) => a.iter().collect(),
        regorus::Value::Undefined => return Vec::new(),
        other => vec![other],
    };
    items.into_iter().map(message_of).collect()
}

/// The `msg` of one violation value, or its JSON when it has none.
pub fn message_of(v: &regorus::Value) -> String {
    if let regorus::Value::String(s) = v {
        return s.to_string();
    }
    if let Ok(obj) = v.as_object()
        && let Some(regorus::Value::String(s)) = obj.get(&regorus::Value::from("msg"))
    {
        return s.to_string();
    }
    v.to_json_str().unwrap_or_else(|_| format!("{v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforced_packages() {
        assert!(is_enforced("kubernetes.admission"));
        assert!(is_enforced("kubernetes.admission.images"));
        assert!(!is_enforced("kubernetes.admissionx"));
        assert!(!is_enforced("lib.k8s"));
    }

    #[test]
    fn v0_and_v1_modules_load_and_declare_rules() {
        let mut e = regorus::Engine::new();
        let v1 = add_module(
            &mut e,
            Path::new("a.rego"),
            "package kubernetes.admission.a\ndeny contains \"x\" if { true }\n",
        )
        .expect("v1");
        assert_eq!(v1.package, "kubernetes.admission.a");
        assert!(v1.deny && !v1.warn);
        let v0 = add_module(
            &mut e,
            Path::new("b.rego"),
            "package kubernetes.admission.b\nwarn[msg] { msg := \"y\" }\n",
        )
        .expect("v0");
        assert!(!v0.deny && v0.warn);
        let err =
            add_module(&mut e, Path::new("c.rego"), "package x\ndeny[ {").expect_err("broken");
        assert!(
            err.to_string().starts_with("c.rego: Rego does not compile"),
            "{err}"
        );
    }
}
