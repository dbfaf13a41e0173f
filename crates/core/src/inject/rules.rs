//! The config's cluster-wide rules (row 6 of the table in
//! [`crate::inject::decide`]): which rule matches a pod, and what it asks for.

use crate::config::{Config, Rule};
use crate::inject::cluster_view::NamespaceMeta;
use crate::inject::keys::{AUTO_KEY, INJECT_KEY};
use crate::inject::precedence::{combine, describe, ns_value, pod_value};
use crate::language::Language;
use crate::selector;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// How one rule meets a pod: the one match that [`first_rule`] (decide)
/// and [`rule_checks`] (`explain`) both read, so they cannot drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fit {
    /// Its `podSelector` does not select the pod.
    PodNotSelected,
    /// Its `namespaceSelector` does not select the namespace.
    NamespaceNotSelected,
    /// It has no `namespaceSelector`, and the namespace is not labelled
    /// `otel-admission.io/inject=enabled`.
    NamespaceNotEnabled,
    Fits,
}

/// A pod's and its namespace's labels, as every rule is matched against them.
struct Subject<'a> {
    pod_labels: &'a BTreeMap<String, String>,
    ns: &'a NamespaceMeta,
    ns_enabled: bool,
}

impl<'a> Subject<'a> {
    fn new(pod: &'a Pod, ns: &'a NamespaceMeta, empty: &'a BTreeMap<String, String>) -> Self {
        Self {
            pod_labels: pod.metadata.labels.as_ref().unwrap_or(empty),
            ns,
            ns_enabled: ns
                .labels
                .get(INJECT_KEY)
                .is_some_and(|v| v.eq_ignore_ascii_case("enabled")),
        }
    }

    fn fit(&self, r: &Rule) -> Fit {
        if !r
            .pod_selector
            .as_ref()
            .is_none_or(|sel| selector::matches(sel, self.pod_labels))
        {
            return Fit::PodNotSelected;
        }
        match &r.namespace_selector {
            Some(sel) if !selector::matches(sel, &self.ns.labels) => Fit::NamespaceNotSelected,
            None if !self.ns_enabled => Fit::NamespaceNotEnabled,
            _ => Fit::Fits,
        }
    }
}

/// The rule that applies to the pod: the first that fits.
pub(crate) fn first_rule<'c>(
    pod: &Pod,
    ns: &NamespaceMeta,
    config: &'c Config,
) -> Option<&'c Rule> {
    let empty = BTreeMap::new();
    let subject = Subject::new(pod, ns, &empty);
    config.rules.iter().find(|r| subject.fit(r) == Fit::Fits)
}

/// A config rule whose `podSelector` selects the pod, and whether it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCheck {
    pub rule: String,
    /// `None` when this rule is the one that applies; else why not, in words.
    pub not_applied: Option<String>,
}

/// Every rule whose `podSelector` matches the pod, in config order, with why
/// it did not apply (SPEC §4: `explain` names near misses, so a user looks
/// at the namespace label, not the selector). Pure, like [`crate::inject::decide::decide`].
pub fn rule_checks(
    pod: &Pod,
    namespace: &str,
    ns: &NamespaceMeta,
    config: &Config,
) -> Vec<RuleCheck> {
    let empty = BTreeMap::new();
    let subject = Subject::new(pod, ns, &empty);
    let mut applied: Option<&str> = None;
    let mut out = Vec::new();
    for r in &config.rules {
        let not_applied = match subject.fit(r) {
            Fit::PodNotSelected => continue,
            Fit::NamespaceNotSelected => Some(format!(
                "its namespaceSelector does not match namespace {namespace}'s labels"
            )),
            Fit::NamespaceNotEnabled => Some(format!(
                "namespace {namespace} is not labelled {INJECT_KEY}=enabled (a rule without namespaceSelector needs it)"
            )),
            Fit::Fits => match applied {
                Some(first) => Some(format!("rule {first:?} matched first (first match wins)")),
                None => {
                    applied = Some(r.name.as_str());
                    None
                }
            },
        };
        out.push(RuleCheck {
            rule: r.name.clone(),
            not_applied,
        });
    }
    out
}

/// `otel-admission.io/inject-auto: "true"` (pod, then namespace), else a
/// matching rule that lists `auto`: the Instrumentation value and the reason.
pub(crate) fn auto_source(
    pod: &Pod,
    ns: &NamespaceMeta,
    rule: Option<&Rule>,
) -> Option<(String, String)> {
    if let Some(f) = combine(ns_value(ns, AUTO_KEY), pod_value(pod, AUTO_KEY)) {
        return f
            .value
            .eq_ignore_ascii_case("true")
            .then(|| ("true".to_string(), describe(&f)));
    }
    rule.filter(|r| r.inject.languages.iter().any(|l| l.language().is_none()))
        .map(|r| {
            (
                r.instrumentation.clone().unwrap_or_else(|| "true".into()),
                format!("config rule {:?}", r.name),
            )
        })
}

pub(crate) fn rule_wants(rule: &Rule, lang: Language) -> bool {
    rule.inject
        .languages
        .iter()
        .any(|c| c.language() == Some(lang))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Decide and `explain` read one match: for every namespace label and pod
    /// label, the rule decide applies is the one `explain` says applied, and
    /// `explain` lists exactly the rules whose podSelector selects the pod.
    #[rstest::rstest]
    #[case::labelled_namespace(&[("otel-admission.io/inject", "enabled")], &[("app", "web")])]
    #[case::team_namespace(&[("team", "shop")], &[("app", "web")])]
    #[case::both(&[("otel-admission.io/inject", "enabled"), ("team", "shop")], &[("tier", "db")])]
    #[case::neither(&[], &[])]
    fn decide_and_explain_name_the_same_rule(
        #[case] ns_labels: &[(&str, &str)],
        #[case] pod_labels: &[(&str, &str)],
    ) {
        let config = Config::from_yaml(
            r#"
rules:
  - name: team-shop
    namespaceSelector: {matchLabels: {team: shop}}
    inject: {languages: [java]}
  - name: web-pods
    podSelector: {matchLabels: {app: web}}
    inject: {languages: [python]}
  - name: everyone
    inject: {languages: [sdk]}
"#,
            "rules",
        )
        .expect("config");
        let ns = NamespaceMeta {
            labels: ns_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
        };
        let labels: BTreeMap<&str, &str> = pod_labels.iter().copied().collect();
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"labels": labels}})).expect("pod");
        let decided = first_rule(&pod, &ns, &config).map(|r| r.name.clone());
        let checks = rule_checks(&pod, "shop", &ns, &config);
        let explained: Vec<&String> = checks
            .iter()
            .filter(|c| c.not_applied.is_none())
            .map(|c| &c.rule)
            .collect();
        assert_eq!(explained, decided.iter().collect::<Vec<_>>());
        let selects_pod = |name: &str| name != "web-pods" || labels.get("app") == Some(&"web");
        let listed: Vec<&str> = checks.iter().map(|c| c.rule.as_str()).collect();
        let want: Vec<&str> = ["team-shop", "web-pods", "everyone"]
            .into_iter()
            .filter(|n| selects_pod(n))
            .collect();
        assert_eq!(listed, want);
    }
}
