//! Where regorus and OPA could disagree, pinned to OPA's answer (SPEC §7).
//! Each test names OPA's behaviour; `docs/POLICIES.md` lists how each is
//! handled (an engine option, pre-processing, or nothing needed).

use std::path::Path;

use otel_admission::policy::native;
use otel_admission::policy::set::new_engine;
use serde_json::{Value as Json, json};

/// Loads `src` the way `serve` does and evaluates `rule` against `input`.
/// `None` is undefined.
fn eval(src: &str, rule: &str, input: Json) -> Option<Json> {
    let mut e = new_engine();
    native::add_module(&mut e, Path::new("t.rego"), src).expect("module loads");
    e.set_input(serde_json::from_value(input).expect("input"));
    let v = e
        .eval_rule(format!("data.t.{rule}"))
        .unwrap_or_else(|err| panic!("{rule}: OPA would not raise: {err:#}"));
    if v == regorus::Value::Undefined {
        return None;
    }
    Some(serde_json::to_value(&v).expect("json"))
}

// === v0 multi-body rules ===

/// OPA v0: `head { body1 } { body2 }` is two definitions of the rule (an OR),
/// as in OPA's "Incremental Definitions" docs.
#[test]
fn v0_multi_body_partial_set_is_a_union() {
    let src = r#"package t
deny[msg] { input.a == 1; msg := "a" } { input.b == 1; msg := "b" }
"#;
    assert_eq!(
        eval(src, "deny", json!({"a": 1, "b": 1})),
        Some(json!(["a", "b"]))
    );
    assert_eq!(eval(src, "deny", json!({"b": 1})), Some(json!(["b"])));
}

#[test]
fn v0_multi_body_complete_rule_is_an_or() {
    let src = "package t\nallow { input.a == 1 } { input.b == 1 }\n";
    assert_eq!(eval(src, "allow", json!({"b": 1})), Some(json!(true)));
    assert_eq!(eval(src, "allow", json!({"c": 1})), None);
}

// === a line starting with `(` ===

/// OPA: a call needs `(` right after the name, so a `(` that starts a line
/// starts a new expression; it does not call the previous line's term.
#[test]
fn a_line_starting_with_a_paren_is_a_new_expression() {
    let v1 = "package t\nimport rego.v1\np if {\n\tx := input.a\n\t(x + 1) == 2\n}\n";
    assert_eq!(eval(v1, "p", json!({"a": 1})), Some(json!(true)));
    assert_eq!(eval(v1, "p", json!({"a": 5})), None);
    let v0 = "package t\np {\n\tx := input.a\n\t(x + 1) == 2\n}\n";
    assert_eq!(eval(v0, "p", json!({"a": 1})), Some(json!(true)));
}

// === `not` with an undefined argument ===

/// OPA: `not` of an expression that is undefined, including a call whose
/// argument is undefined, is true.
#[test]
fn not_with_undefined_arguments_is_true() {
    let src = r#"package t
import rego.v1
f(x) if x == 1
ref_missing if not input.missing.field
builtin_missing if not startswith(input.missing, "x")
func_missing if not f(input.missing)
compare_missing if not input.missing == 1
count_missing if not count(input.missing) > 0
"#;
    for rule in [
        "ref_missing",
        "builtin_missing",
        "func_missing",
        "compare_missing",
        "count_missing",
    ] {
        assert_eq!(eval(src, rule, json!({})), Some(json!(true)), "{rule}");
    }
    assert_eq!(eval(src, "func_missing", json!({"missing": 1})), None);
}

// === builtin errors are not strict in OPA ===

/// OPA's `sprintf` is Go's `fmt.Sprintf`: missing arguments render as
/// `%!s(MISSING)` rather than failing.
#[test]
fn sprintf_with_missing_args_renders_like_go() {
    let src = r#"package t
import rego.v1
msg := sprintf("%s needs %s", ["app"])
"#;
    assert_eq!(
        eval(src, "msg", json!({})),
        Some(json!("app needs %!s(MISSING)"))
    );
}

/// OPA's `sprintf` bounds widths as Go's `fmt` does: a literal width past
/// 10^6 stops the format (`%!(NOVERB)`), a `*` width past it is
/// `%!(BADWIDTH)`. Neither allocates the width, so neither aborts.
#[test]
fn sprintf_with_huge_widths_renders_like_go() {
    let src = r#"package t
import rego.v1
literal := sprintf("[%99999999999999999999d]", [1])
star := sprintf("[%*d]", [10000000, 1])
"#;
    assert_eq!(
        eval(src, "literal", json!({})),
        Some(json!("[%!(NOVERB)%!(EXTRA int=1)"))
    );
    assert_eq!(eval(src, "star", json!({})), Some(json!("[%!(BADWIDTH)1]")));
}

/// OPA (non-strict): a builtin error makes its expression undefined; it does
/// not abort the query, so other rules and other bodies still answer.
#[test]
fn object_get_on_null_is_undefined_not_an_error() {
    let src = r#"package t
import rego.v1
got := object.get(input.x, "k", "default")
deny contains "from a good body" if true
deny contains v if v := object.get(input.x, "k", "default")
deny contains v if v := to_number("not a number")
"#;
    assert_eq!(eval(src, "got", json!({"x": null})), None);
    assert_eq!(eval(src, "got", json!({"x": {"k": "v"}})), Some(json!("v")));
    assert_eq!(
        eval(src, "deny", json!({"x": null})),
        Some(json!(["from a good body"]))
    );
}
