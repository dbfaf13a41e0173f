//! Kubernetes label selectors, evaluated in-process.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`, with the API server's semantics: an
/// empty selector matches everything, requirements are ANDed. An invalid
/// selector matches nothing (config validation rejects those up front).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let got = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    })
}

/// Problems with a selector, each as `field: reason`, relative to the selector.
pub fn problems(selector: &LabelSelector) -> Vec<String> {
    let mut out = Vec::new();
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let n = req.values.as_ref().map_or(0, Vec::len);
        match req.operator.as_str() {
            "In" | "NotIn" if n == 0 => out.push(format!(
                "matchExpressions[{i}].values: must be non-empty for operator {}",
                req.operator
            )),
            "Exists" | "DoesNotExist" if n > 0 => out.push(format!(
                "matchExpressions[{i}].values: must be empty for operator {}",
                req.operator
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => out.push(format!(
                "matchExpressions[{i}].operator: {other:?} is not one of In, NotIn, Exists, DoesNotExist"
            )),
        }
        if req.key.is_empty() {
            out.push(format!("matchExpressions[{i}].key: must not be empty"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|s| s.to_string()).collect()),
            }]),
            match_labels: None,
        }
    }

    #[rstest::rstest]
    #[case::empty_matches_all(LabelSelector::default(), true)]
    #[case::match_labels(
        LabelSelector {
            match_labels: Some(labels(&[("team", "payments")])),
            match_expressions: None,
        },
        true
    )]
    #[case::match_labels_other_value(
        LabelSelector {
            match_labels: Some(labels(&[("team", "search")])),
            match_expressions: None,
        },
        false
    )]
    #[case::in_values(expr("tier", "In", &["web", "api"]), true)]
    #[case::in_other_values(expr("tier", "In", &["api"]), false)]
    #[case::not_in(expr("tier", "NotIn", &["api"]), true)]
    #[case::not_in_absent_key(expr("absent", "NotIn", &["x"]), true)]
    #[case::exists(expr("team", "Exists", &[]), true)]
    #[case::exists_absent_key(expr("absent", "Exists", &[]), false)]
    #[case::does_not_exist(expr("absent", "DoesNotExist", &[]), true)]
    #[case::does_not_exist_present_key(expr("team", "DoesNotExist", &[]), false)]
    #[case::unknown_operator(expr("team", "Bogus", &[]), false)]
    fn selector_table(#[case] sel: LabelSelector, #[case] want: bool) {
        let l = labels(&[("team", "payments"), ("tier", "web")]);
        assert_eq!(matches(&sel, &l), want, "{sel:?}");
    }

    #[test]
    fn problems_are_reported() {
        assert!(problems(&expr("a", "In", &["x"])).is_empty());
        assert_eq!(problems(&expr("a", "In", &[])).len(), 1);
        assert_eq!(problems(&expr("a", "Exists", &["x"])).len(), 1);
        assert!(problems(&expr("a", "Like", &[]))[0].contains("operator"));
    }
}
