//! The pod/namespace precedence engine (rows 7–13 of the table in
//! [`crate::inject::decide`]): where a value is read from, and how the pod's
//! and the namespace's values combine.

use crate::config::Rule;
use crate::inject::cluster_view::NamespaceMeta;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// Where a value was read from, for `explain` and warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    PodLabel,
    PodAnnotation,
    NamespaceLabel,
    NamespaceAnnotation,
}

/// A non-empty value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    pub value: &'a str,
    pub origin: Origin,
    pub key: &'a str,
}

/// A pod feature's switch: pod and namespace values combined as for the
/// languages (rows 7–13), else the rule's flag: `(value, what decided)`, or
/// `None` when nothing asks for the feature.
pub(crate) fn switch(
    pod: &Pod,
    ns: &NamespaceMeta,
    key: &'static str,
    rule: Option<&Rule>,
    rule_flag: fn(&Rule) -> bool,
) -> Option<(String, String)> {
    if let Some(f) = combine(ns_value(ns, key), pod_value(pod, key)) {
        return Some((f.value.to_string(), describe(&f)));
    }
    rule.filter(|r| rule_flag(r))
        .map(|r| ("true".to_string(), format!("config rule {:?}", r.name)))
}

/// Label first, then annotation; empty values count as absent.
pub fn pod_value<'a>(pod: &'a Pod, key: &'a str) -> Option<Found<'a>> {
    lookup(
        pod.metadata.labels.as_ref(),
        pod.metadata.annotations.as_ref(),
        key,
        Origin::PodLabel,
        Origin::PodAnnotation,
    )
}

/// Namespace label first, then annotation.
pub fn ns_value<'a>(ns: &'a NamespaceMeta, key: &'a str) -> Option<Found<'a>> {
    lookup(
        Some(&ns.labels),
        Some(&ns.annotations),
        key,
        Origin::NamespaceLabel,
        Origin::NamespaceAnnotation,
    )
}

fn lookup<'a>(
    labels: Option<&'a BTreeMap<String, String>>,
    annotations: Option<&'a BTreeMap<String, String>>,
    key: &'a str,
    label_origin: Origin,
    annotation_origin: Origin,
) -> Option<Found<'a>> {
    let get = |m: Option<&'a BTreeMap<String, String>>, origin| {
        m.and_then(|m| m.get(key))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(|value| Found { value, origin, key })
    };
    get(labels, label_origin).or_else(|| get(annotations, annotation_origin))
}

/// Rows 7–13: the operator's `annotationValue(ns, pod)`.
pub fn combine<'a>(ns: Option<Found<'a>>, pod: Option<Found<'a>>) -> Option<Found<'a>> {
    match (ns, pod) {
        (None, p) => p,
        (n, None) => n,
        (Some(n), Some(p)) => {
            if !p.value.eq_ignore_ascii_case("true") || n.value.eq_ignore_ascii_case("false") {
                Some(p)
            } else {
                Some(n)
            }
        }
    }
}

/// `pod annotation instrumentation.opentelemetry.io/inject-python="true"`.
pub fn describe(f: &Found<'_>) -> String {
    let origin = match f.origin {
        Origin::PodLabel => "pod label",
        Origin::PodAnnotation => "pod annotation",
        Origin::NamespaceLabel => "namespace label",
        Origin::NamespaceAnnotation => "namespace annotation",
    };
    format!("{origin} {}={:?}", f.key, f.value)
}

pub(crate) fn origin_word(o: Origin) -> &'static str {
    match o {
        Origin::PodLabel => "pod label",
        Origin::PodAnnotation => "pod annotation",
        Origin::NamespaceLabel => "namespace label",
        Origin::NamespaceAnnotation => "namespace annotation",
    }
}
