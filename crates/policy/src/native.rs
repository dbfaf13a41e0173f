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

/// The Rego syntax a module declares, as far as its text says.
///
/// OPA 1.x reads v1 and takes v0 behind `--v0-compatible`; our loader
/// accepts both, so a module is parsed as v1 and, when that fails, as v0.
/// What the module declares decides which attempts are made and, when
/// both fail, which error is reported: one, never both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// `import rego.v1`, or a v1 keyword (`if`, `contains`, `in`, `every`)
    /// used without its `future.keywords` import: only v1 reads it. A v0
    /// parse would fail too, after regorus printed a warning of its own
    /// (`` `if` will be treated as identifier ``) straight to stderr.
    V1,
    /// `import future.keywords...` (and no v1 keyword it did not import):
    /// written for OPA 0.x. Its v0 error is reported.
    V0,
    /// Neither: both are tried, and the error of the attempt that got
    /// further into the file is reported (v0 on a tie: a module with a
    /// rule body and no `if` is v0).
    Either,
}

/// The keywords Rego v1 has and v0 imports from `future.keywords`.
const V1_KEYWORDS: [&str; 4] = ["if", "contains", "in", "every"];

/// What `src` declares, from its tokens (strings and comments skipped).
pub(crate) fn declared_syntax(src: &str) -> Syntax {
    use super::compat::TokenKind::{Punct, Word};
    let toks = super::compat::tokens(src);
    let word = |i: usize| {
        toks.get(i)
            .filter(|t| t.kind == Word)
            .map(|t| &src[t.start..t.end])
    };
    let punct = |i: usize, c: u8| toks.get(i).is_some_and(|t| t.kind == Punct(c));
    let (mut future, mut all) = (false, false);
    let mut imported: Vec<&str> = Vec::new();
    for i in 0..toks.len() {
        if word(i) != Some("import") || !punct(i + 2, b'.') {
            continue;
        }
        match (word(i + 1), word(i + 3)) {
            (Some("rego"), Some("v1")) => return Syntax::V1,
            (Some("future"), Some("keywords")) => {
                future = true;
                match word(i + 5).filter(|_| punct(i + 4, b'.')) {
                    // As regorus (and OPA) do: `every` brings `in` along.
                    Some("every") => imported.extend(["every", "in"]),
                    Some(kw) => imported.push(kw),
                    None => all = true,
                }
            }
            _ => {}
        }
    }
    let uses_unimported_keyword = (0..toks.len()).any(|i| {
        word(i).is_some_and(|w| {
            V1_KEYWORDS.contains(&w)
                // `x.if` is a field, `contains(s, t)` the builtin.
                && !(i > 0 && punct(i - 1, b'.'))
                && !(w == "contains" && punct(i + 1, b'('))
                && !(all || imported.contains(&w))
        })
    });
    if uses_unimported_keyword {
        Syntax::V1
    } else if future {
        Syntax::V0
    } else {
        Syntax::Either
    }
}

/// Where regorus' error for the module labelled `label` points, as
/// `(line, column)`: its message starts `\n--> LABEL:LINE:COL`.
fn error_position(message: &str, label: &str) -> Option<(u32, u32)> {
    let at = message.split_once("--> ")?.1.strip_prefix(label)?;
    let at = at.strip_prefix(':')?;
    let (line, rest) = at.split_once(':')?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.parse().ok()?, col.parse().ok()?))
}

/// regorus' error, saying which syntax it was read as.
fn parse_error(path: &Path, version: &str, e: &anyhow::Error) -> PolicyError {
    let message = rego_message(e);
    // regorus' message starts with a newline (`\n--> file:line:col`).
    let sep = if message.starts_with('\n') { "" } else { " " };
    PolicyError::Rego {
        path: path.to_path_buf(),
        message: format!("as Rego {version}:{sep}{message}"),
    }
}

/// Adds `src` to `engine`, as Rego v1 and, if that does not parse, as v0
/// (OPA's `--v0-compatible`): kube-mgmt policies are mostly v0, new ones v1.
/// A module that declares v1 ([`Syntax::V1`]) is v1 only. When no attempt
/// parses, the error reported is the one of the syntax the module declares
/// ([`declared_syntax`]), one error, never both. A source nested too deep
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
    let syntax = declared_syntax(src);
    engine.set_rego_v0(false);
    let package = match engine.add_policy(label.clone(), compat::preprocess(src, false)) {
        Ok(p) => p,
        Err(e1) if syntax == Syntax::V1 => return Err(parse_error(path, "v1", &e1)),
        Err(e1) => {
            engine.set_rego_v0(true);
            let v0 = engine.add_policy(label.clone(), compat::preprocess(src, true));
            engine.set_rego_v0(false);
            match v0 {
                Ok(p) => p,
                Err(e0) => {
                    let further = |e: &anyhow::Error| {
                        error_position(&rego_message(e), &label).unwrap_or_default()
                    };
                    let v0_declared = syntax == Syntax::V0 || further(&e0) >= further(&e1);
                    return Err(if v0_declared {
                        parse_error(path, "v0", &e0)
                    } else {
                        parse_error(path, "v1", &e1)
                    });
                }
            }
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

    /// What a module declares decides which syntax's error is reported.
    #[rstest::rstest]
    #[case::v1_import("package p\nimport rego.v1\ndeny[x] { x := 1 }", Syntax::V1)]
    #[case::v1_contains_if("package p\ndeny contains x if { x := 1 }", Syntax::V1)]
    #[case::v1_if("package p\nallow if input.x", Syntax::V1)]
    #[case::v1_some_in("package p\ndeny[x] { some x in input.xs }", Syntax::V1)]
    #[case::v0_future_keywords_in(
        "package p\nimport future.keywords.in\ndeny[x] { some x in input.xs }",
        Syntax::V0
    )]
    #[case::v0_future_keywords(
        "package p\nimport future.keywords\ndeny contains x if { x := 1 }",
        Syntax::V0
    )]
    #[case::v0_future_keywords_every(
        "package p\nimport future.keywords.every\ndeny[x] { every y in x { y } }",
        Syntax::V0
    )]
    // `contains` imported, `if` not: only v1 reads it.
    #[case::contains_imported_if_not(
        "package p\nimport future.keywords.contains\ndeny contains x if { x := 1 }",
        Syntax::V1
    )]
    #[case::keywords_as_names(
        "package p\ndeny[msg] { contains(input.x, \"if\"); msg := input.y.in }",
        Syntax::Either
    )]
    #[case::keywords_in_comments_and_strings(
        "package p\n# import rego.v1\ndeny[msg] { msg := \"contains x if\" }",
        Syntax::Either
    )]
    #[case::no_keywords("package p\nx := 1", Syntax::Either)]
    fn the_declared_syntax_is_read_from_imports_and_keywords(
        #[case] src: &str,
        #[case] want: Syntax,
    ) {
        assert_eq!(declared_syntax(src), want, "{src}");
    }

    fn broken(src: &str) -> String {
        let mut e = regorus::Engine::new();
        add_module(&mut e, Path::new("p.rego"), src)
            .expect_err("does not parse")
            .to_string()
    }

    /// One error, of the syntax the module declares; before, both
    /// attempts' errors were reported (`as Rego v1: ...; as Rego v0: ...`).
    #[test]
    fn a_syntax_error_is_reported_once_for_the_declared_syntax() {
        // v1 keywords, no import: v1 only (no v0 attempt, so no warning).
        let v1 = broken("package p\ndeny contains msg if {\n  input.x\n  msg := \"x\" +\n}\n");
        assert!(
            v1.starts_with("p.rego: Rego does not compile: as Rego v1:\n--> p.rego:5:1\n"),
            "{v1}"
        );
        assert_eq!(v1.matches("--> ").count(), 1, "{v1}");
        // Neither: v0 got further (v1 stops at the `{` that lacks `if`).
        let v0 = broken("package p\ndeny[msg] {\n  input.x\n  msg := \"x\" +\n}\n");
        assert!(
            v0.starts_with("p.rego: Rego does not compile: as Rego v0:\n--> p.rego:5:1\n"),
            "{v0}"
        );
        assert_eq!(v0.matches("--> ").count(), 1, "{v0}");
        // `import future.keywords`: v0, even where v1 got further.
        let fk = broken(
            "package p\nimport future.keywords.in\ndeny[msg] {\n  some msg in [1]\n  msg :=\n}\n",
        );
        assert!(
            fk.starts_with("p.rego: Rego does not compile: as Rego v0:\n--> p.rego:6:1\n"),
            "{fk}"
        );
        // `import rego.v1`: v1, even where v0 would get further.
        let r1 = broken("package p\nimport rego.v1\ndeny[msg] {\n  msg :=\n}\n");
        assert!(
            r1.starts_with("p.rego: Rego does not compile: as Rego v1:\n--> p.rego:3:11\n"),
            "{r1}"
        );
        assert_eq!(r1.matches("--> ").count(), 1, "{r1}");
    }
}
