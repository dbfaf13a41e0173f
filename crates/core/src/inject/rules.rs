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

pub(crate) fn first_rule<'c>(
    pod: &Pod,
    ns: &NamespaceMeta,
    config: &'c Config,
) -> Option<&'c Rule> {
    let empty = BTreeMap::new();
    let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let ns_enabled = ns
        .labels
        .get(INJECT_KEY)
        .is_some_and(|v| v.eq_ignore_ascii_case("enabled"));
    config.rules.iter().find(|r| {
        let ns_ok = match &r.namespace_selector {
            Some(sel) => selector::matches(sel, &ns.labels),
            None => ns_enabled,
        };
        ns_ok
            && r.pod_selector
                .as_ref()
                .is_none_or(|sel| selector::matches(sel, pod_labels))
    })
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
    let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let ns_enabled = ns
        .labels
        .get(INJECT_KEY)
        .is_some_and(|v| v.eq_ignore_ascii_case("enabled"));
    let mut applied: Option<&str> = None;
    let mut out = Vec::new();
    for r in &config.rules {
        if !r
            .pod_selector
            .as_ref()
            .is_none_or(|sel| selector::matches(sel, pod_labels))
        {
            continue;
        }
        let ns_reason = match &r.namespace_selector {
            Some(sel) if !selector::matches(sel, &ns.labels) => Some(format!(
                "its namespaceSelector does not match namespace {namespace}'s labels"
            )),
            None if !ns_enabled => Some(format!(
                "namespace {namespace} is not labelled {INJECT_KEY}=enabled (a rule without namespaceSelector needs it)"
            )),
            _ => None,
        };
        let not_applied = match (ns_reason, applied) {
            (Some(why), _) => Some(why),
            (None, Some(first)) => Some(format!("rule {first:?} matched first (first match wins)")),
            (None, None) => {
                applied = Some(r.name.as_str());
                None
            }
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
