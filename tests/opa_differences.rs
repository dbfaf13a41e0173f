//! Where regorus and OPA could disagree, pinned to OPA's answer (SPEC §7).
//!
//! The cases live in `tests/opa/cases.json`, each with OPA 1.x's answer, so
//! that `scripts/opa-oracle.py` can check the same cases against real OPA
//! (the engine in the `opa-golib-python-bindings` wheel). Here each is
//! loaded the way `serve` loads policies and must answer `want`; every
//! failing case is reported, by name. `docs/POLICIES.md` lists how each
//! difference is handled (an engine option, pre-processing, an extension).

use std::path::Path;

use otel_admission::policy::set::new_engine;
use otel_admission::policy::{calls, native};
use serde_json::Value as Json;

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    modules: std::collections::BTreeMap<String, String>,
    query: String,
    input: Json,
    /// OPA's answer; `null` is undefined.
    want: Json,
}

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

/// Loads the modules the way `serve` does and evaluates the query; `Null`
/// is undefined.
fn eval(case: &Case) -> Result<Json, String> {
    let mut e = new_engine();
    let mut origins = calls::Origins::new();
    for (path, src) in &case.modules {
        native::add_module(&mut e, Path::new(path), src).map_err(|e| format!("load: {e}"))?;
        origins.insert(
            path.clone(),
            calls::Origin {
                path: path.into(),
                what: None,
            },
        );
    }
    // As `serve` does: a call nothing defines is refused at load.
    calls::check_calls(&e, &origins).map_err(|e| format!("load: {e}"))?;
    e.set_input(serde_json::from_value(case.input.clone()).map_err(|e| e.to_string())?);
    let v = e
        .eval_rule(case.query.clone())
        .map_err(|err| format!("OPA would not raise: {err:#}"))?;
    if v == regorus::Value::Undefined {
        return Ok(Json::Null);
    }
    serde_json::to_value(&v).map_err(|e| e.to_string())
}

#[test]
fn every_case_answers_as_opa() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/opa/cases.json"))
            .expect("cases.json");
    let cases: Cases = serde_json::from_str(&text).expect("cases.json parses");
    assert!(cases.cases.len() >= 30, "{} cases", cases.cases.len());
    let wrong: Vec<String> = cases
        .cases
        .iter()
        .filter_map(|c| match eval(c) {
            Ok(got) if got == c.want => None,
            Ok(got) => Some(format!("{}: got {got}, OPA answers {}", c.name, c.want)),
            Err(e) => Some(format!("{}: {e}", c.name)),
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ from OPA:\n{}",
        wrong.len(),
        cases.cases.len(),
        wrong.join("\n")
    );
}

/// Without the `not` rewrite, regorus answers true where OPA is undefined:
/// the cases above would catch a regression, this shows the rewrite is
/// what makes the difference (and that the engine itself still differs).
#[test]
fn the_not_cases_differ_without_the_rewrite() {
    let mut e = regorus::Engine::new();
    e.add_policy(
        "t.rego".into(),
        "package t\nimport rego.v1\nf(x) if x == 1\nr if { not f(input.missing) }\n".into(),
    )
    .expect("loads");
    e.set_input(regorus::Value::new_object());
    assert_eq!(
        e.eval_rule("data.t.r".into()).expect("eval"),
        regorus::Value::from(true),
        "regorus alone: the `not` of an undefined call is true"
    );
}
