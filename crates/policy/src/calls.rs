//! Refusing, at load, a call that nothing defines.
//!
//! regorus 0.14.1 resolves a function only when it evaluates the call: a
//! module calling `http.send`, `opa.runtime` or a typo (`contians(x, "a")`)
//! loads, and then every evaluation of it fails, which `failureMode: allow`
//! answers by admitting the pod with "policy ... not enforced". OPA refuses
//! such a module at compile time ("undefined function"). regorus' RVM
//! compiler would too, but it does not support `with` (every test uses it),
//! so this walks regorus' own AST ([`regorus::Engine::get_ast_as_json`],
//! the `ast` feature) after every module is added, and resolves each call
//! the way the interpreter will (`Modules::resolves`): an import alias, a
//! function of the loaded modules (default functions included), `print`,
//! then regorus' builtins, asked of regorus itself ([`is_builtin`]).
//! Network and runtime-introspection builtins are named as unsupported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use serde_json::Value as Json;

use super::PolicyError;

/// Builtins OPA has and otel-admission refuses, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "http.send",
        "otel-admission never makes network calls from policies",
    ),
    (
        "net.lookup_ip_addr",
        "otel-admission never makes network calls from policies",
    ),
    (
        "opa.runtime",
        "policies see the request and data, not the server's runtime",
    ),
];

/// Where a module handed to regorus comes from: its file and, for a
/// ConstraintTemplate, which of its Rego (`template k8sx`, `template k8sx,
/// libs[0]`). Keyed by the label regorus knows the module by.
#[derive(Clone, Debug)]
pub struct Origin {
    pub path: PathBuf,
    pub what: Option<String>,
}

pub type Origins = BTreeMap<String, Origin>;

/// Whether `name` (a dotted path of identifiers) is one of regorus'
/// builtins in this build. regorus does not export its table, so it is
/// asked: a call of a name it does not know fails with "could not find
/// function" before anything else, and a builtin called without its
/// arguments fails otherwise (no builtin of this build has side effects).
/// Answers are cached: the table is fixed for the process.
pub fn is_builtin(name: &str) -> bool {
    static KNOWN: LazyLock<Mutex<HashMap<String, bool>>> = LazyLock::new(Default::default);
    if !is_dotted_identifier(name) {
        return false;
    }
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = known.get(name) {
        return *b;
    }
    let mut e = regorus::Engine::new();
    let builtin = match e.eval_query(format!("{name}()"), false) {
        Err(err) => !format!("{err:#}").contains("could not find function"),
        Ok(_) => true,
    };
    known.insert(name.to_string(), builtin);
    builtin
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_dotted_identifier(s: &str) -> bool {
    s.split('.').all(is_identifier)
}

/// regorus' `append_path_component`: `.name`, or `["..."]` for a component
/// that is not an identifier.
fn push_component(path: &mut String, c: &str) {
    if is_identifier(c) {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(c);
    } else {
        path.push('[');
        path.push_str(&Json::from(c).to_string());
        path.push(']');
    }
}

/// The path of a reference expression of the AST (`Var`, `RefDot`, and
/// `RefBrack` with a string index), as regorus' `get_path_string` writes it.
fn path_of(expr: &Json) -> Option<String> {
    let mut components: Vec<&str> = Vec::new();
    let mut cur = expr;
    loop {
        if let Some(v) = cur.get("Var") {
            components.push(v.get("value")?.as_str()?);
            break;
        } else if let Some(d) = cur.get("RefDot") {
            components.push(d.get("field")?.get(1)?.as_str()?);
            cur = d.get("refr")?;
        } else if let Some(b) = cur.get("RefBrack") {
            if let Some(s) = b.get("index")?.get("String") {
                components.push(s.get("value")?.as_str()?);
            }
            cur = b.get("refr")?;
        } else {
            return None;
        }
    }
    let mut path = String::new();
    for c in components.iter().rev() {
        push_component(&mut path, c);
    }
    Some(path)
}

/// One module as the checker needs it.
struct ModuleInfo<'a> {
    label: &'a str,
    /// `data.<package>`.
    package: String,
    /// Import alias → the imported path.
    aliases: BTreeMap<String, String>,
    ast: &'a Json,
}

/// Every module's functions, and how to resolve a call.
struct Modules<'a> {
    modules: Vec<ModuleInfo<'a>>,
    /// Full paths of every function and default function.
    functions: BTreeSet<String>,
}

impl<'a> Modules<'a> {
    fn read(ast: &'a Json) -> Self {
        let mut modules = Vec::new();
        let mut functions = BTreeSet::new();
        for m in ast.as_array().into_iter().flatten() {
            let (Some(label), Some(tree)) = (
                m.pointer("/source/file").and_then(Json::as_str),
                m.get("ast"),
            ) else {
                continue;
            };
            let contents = m
                .pointer("/source/contents")
                .and_then(Json::as_str)
                .unwrap_or("");
            let mut package = "data".to_string();
            if let Some(p) = tree.pointer("/package/refr").and_then(path_of) {
                package.push('.');
                package.push_str(&p);
            }
            let mut aliases = BTreeMap::new();
            for i in tree
                .get("imports")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let Some(target) = i.get("refr").and_then(path_of) else {
                    continue;
                };
                let alias = match i.get("as") {
                    Some(span) => span_text(contents, span),
                    None => last_component(&target),
                };
                if let Some(alias) = alias {
                    aliases.insert(alias.to_string(), target.clone());
                }
            }
            for rule in tree
                .get("rules")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let refr = if let Some(f) = rule.pointer("/Spec/head/Func") {
                    f.get("refr")
                } else if let Some(d) = rule.get("Default") {
                    d.get("args")
                        .and_then(Json::as_array)
                        .is_some_and(|a| !a.is_empty())
                        .then(|| d.get("refr"))
                        .flatten()
                } else {
                    None
                };
                if let Some(p) = refr.and_then(path_of) {
                    let mut full = package.clone();
                    full.push('.');
                    full.push_str(&p);
                    functions.insert(full);
                }
            }
            modules.push(ModuleInfo {
                label,
                package,
                aliases,
                ast: tree,
            });
        }
        Self { modules, functions }
    }

    /// Whether a call of `path` in module `m` finds a function, in the
    /// interpreter's order: an import alias whose target is a function,
    /// the functions of the loaded modules (by full path, or relative to
    /// the module's package), `print`, a builtin.
    fn resolves(&self, m: &ModuleInfo<'_>, path: &str) -> bool {
        let root_end = path.find(['.', '[']).unwrap_or(path.len());
        let (root, suffix) = path.split_at(root_end);
        if root != "data"
            && let Some(target) = m.aliases.get(root)
            && self.functions.contains(&format!("{target}{suffix}"))
        {
            return true;
        }
        let full = if path.starts_with("data.") {
            path.to_string()
        } else {
            format!("{}.{path}", m.package)
        };
        self.functions.contains(&full) || path == "print" || is_builtin(path)
    }
}

fn span_text<'a>(contents: &'a str, span: &Json) -> Option<&'a str> {
    let start = usize::try_from(span.get("start")?.as_u64()?).ok()?;
    let end = usize::try_from(span.get("end")?.as_u64()?).ok()?;
    contents.get(start..end)
}

fn last_component(path: &str) -> Option<&str> {
    path.rsplit('.').next().filter(|c| is_identifier(c))
}

/// Every call in an AST subtree: `(line, path)`.
fn calls(node: &Json, out: &mut Vec<(u64, String)>) {
    match node {
        Json::Object(o) => {
            if let Some(call) = o.get("Call")
                && let Some(path) = call.get("fcn").and_then(path_of)
            {
                let line = call
                    .pointer("/span/line")
                    .and_then(Json::as_u64)
                    .unwrap_or(0);
                out.push((line, path));
            }
            o.values().for_each(|v| calls(v, out));
        }
        Json::Array(a) => a.iter().for_each(|v| calls(v, out)),
        _ => {}
    }
}

/// What is wrong with an unresolved call of `name`.
fn problem(name: &str, line: u64) -> String {
    match UNSUPPORTED.iter().find(|(n, _)| *n == name) {
        Some((_, why)) => format!("{name} at line {line} is unsupported: {why}"),
        None => format!("undefined function {name} at line {line}"),
    }
}

/// Refuses the modules of `engine` when one calls a function that neither
/// they nor regorus define: the error names the file, the template and
/// part when it is one, and each such call with its line.
pub fn check_calls(engine: &regorus::Engine, origins: &Origins) -> Result<(), PolicyError> {
    let text = engine.get_ast_as_json().map_err(|e| PolicyError::Rego {
        path: PathBuf::from("(policies)"),
        message: format!("cannot read the AST: {}", super::rego_message(&e)),
    })?;
    let ast: Json = serde_json::from_str(&text).map_err(|e| PolicyError::Rego {
        path: PathBuf::from("(policies)"),
        message: format!("cannot read the AST: {e}"),
    })?;
    let modules = Modules::read(&ast);
    for m in &modules.modules {
        let mut found = Vec::new();
        calls(m.ast, &mut found);
        found.sort();
        found.dedup();
        let problems: Vec<String> = found
            .iter()
            .filter(|(_, path)| !modules.resolves(m, path))
            .map(|(line, path)| problem(path, *line))
            .collect();
        if problems.is_empty() {
            continue;
        }
        let (path, what) = match origins.get(m.label) {
            Some(o) => (o.path.clone(), o.what.clone()),
            None => (PathBuf::from(m.label), None),
        };
        let problems = problems.join("; ");
        return Err(PolicyError::Rego {
            path,
            message: match what {
                Some(w) => format!("{w}: {problems}"),
                None => problems,
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_asked_of_regorus() {
        for b in [
            "contains",
            "sprintf",
            "count",
            "regex.match",
            "trace",
            "print",
        ] {
            assert!(b == "print" || is_builtin(b), "{b}");
        }
        for n in [
            "contians",
            "http.send",
            "opa.runtime",
            "net.lookup_ip_addr",
            "a[\"b\"]",
        ] {
            assert!(!is_builtin(n), "{n}");
        }
    }

    fn check(modules: &[(&str, &str)]) -> Result<(), String> {
        let mut e = super::super::set::new_engine();
        let mut origins = Origins::new();
        for (name, src) in modules {
            let path = std::path::Path::new(name);
            super::super::native::add_module(&mut e, path, src).map_err(|e| e.to_string())?;
            origins.insert(
                path.display().to_string(),
                Origin {
                    path: path.to_path_buf(),
                    what: None,
                },
            );
        }
        check_calls(&e, &origins).map_err(|e| e.to_string())
    }

    /// Calls resolve as the interpreter resolves them: local functions, ref
    /// heads, imports with and without alias, full `data.` paths, default
    /// functions, builtins, `print`.
    #[test]
    fn what_resolves() {
        let lib = "package lib.k8s\nimport rego.v1\nname(o) := o.metadata.name\ndefault fallback(_) := \"x\"\n";
        let main = r#"package kubernetes.admission.a
import rego.v1
import data.lib.k8s
import data.lib.k8s as kk
f(x) := y if { y := contains(x, "a") }
a.b(x) := 1 if x
deny contains m if {
    some c in input.xs
    m := sprintf("%v %v %v", [k8s.name(c), kk.name(c), data.lib.k8s.name(c)])
    f(m)
    a.b(m)
    kk.fallback(1)
    print(m)
}
"#;
        assert_eq!(check(&[("lib.rego", lib), ("a.rego", main)]), Ok(()));
        let v0 = "package kubernetes.admission.b\nimport future.keywords.in\nimport data.lib.k8s\ndeny[msg] { some x in input.xs; msg := k8s.name(x) ; startswith(msg, \"a\") }\n";
        assert_eq!(check(&[("lib.rego", lib), ("b.rego", v0)]), Ok(()));
    }

    #[rstest::rstest]
    #[case::typo_v1(
        "import rego.v1\ndeny contains \"a\" if contians(input.x, \"a\")",
        "undefined function contians at line 3"
    )]
    #[case::typo_v0(
        "deny[\"a\"] { contians(input.x, \"a\") }",
        "undefined function contians at line 2"
    )]
    #[case::http_send_v1(
        "import rego.v1\ndeny contains r.body if {\n  r := http.send({\"url\": \"http://x\"})\n}",
        "http.send at line 4 is unsupported: otel-admission never makes network calls from policies"
    )]
    #[case::http_send_v0(
        "deny[r] { r := http.send({\"url\": \"http://x\"}) }",
        "http.send at line 2 is unsupported"
    )]
    #[case::lookup_v1(
        "import rego.v1\ndeny contains \"a\" if net.lookup_ip_addr(\"x\")",
        "net.lookup_ip_addr at line 3 is unsupported: otel-admission never makes network calls"
    )]
    #[case::lookup_v0(
        "deny[\"a\"] { net.lookup_ip_addr(\"x\") }",
        "net.lookup_ip_addr at line 2 is unsupported"
    )]
    #[case::runtime_v1(
        "import rego.v1\ndeny contains \"a\" if opa.runtime().env",
        "opa.runtime at line 3 is unsupported: policies see the request and data"
    )]
    #[case::runtime_v0(
        "deny[\"a\"] { opa.runtime().env }",
        "opa.runtime at line 2 is unsupported"
    )]
    #[case::missing_lib_function(
        "import rego.v1\nimport data.lib.k8s\ndeny contains \"a\" if k8s.nope(input)",
        "undefined function k8s.nope at line 4"
    )]
    #[case::missing_data_function(
        "import rego.v1\ndeny contains \"a\" if data.lib.k8s.nope(input)",
        "undefined function data.lib.k8s.nope at line 3"
    )]
    fn what_is_refused(#[case] body: &str, #[case] want: &str) {
        let lib = "package lib.k8s\nimport rego.v1\nname(o) := o.metadata.name\n";
        let src = format!("package kubernetes.admission.x\n{body}\n");
        let err = check(&[("lib.rego", lib), ("x.rego", &src)]).expect_err("refused");
        assert!(err.starts_with("x.rego: Rego does not compile: "), "{err}");
        assert!(err.contains(want), "{err}");
    }
}
