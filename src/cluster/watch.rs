//! The watchers' side of [`super::Caches`]: each watcher event is converted
//! to an [`Update`] of one index, the watch loop serves until stopped, and
//! the objects are turned into what admission reads.
//!
//! Namespaces are watched metadata-only (`Api<PartialObjectMeta<Namespace>>`,
//! which kube-rs sends as `PartialObjectMetadata` list/watch requests): the
//! API server sends no spec or status, and only the labels and annotations
//! are kept. Instrumentations and collectors need their spec, so they are
//! watched whole, untyped: a typed watcher would fail the whole list on one
//! object that does not parse, so each object is converted on its own, and
//! one that does not convert is logged and left out.

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use super::index::Update;
use crate::inject::cluster_view::NamespaceMeta;
use crate::instrumentation::{Instrumentation, InstrumentationSpec};
use crate::otelcol::Collector;

/// `(namespace, name)`.
pub type NamespacedKey = (String, String);

/// One watcher event as an update of an index. `convert` returns `None` for
/// an object to leave out; `key_of` names an object even when it does not
/// convert, so a now-invalid update removes the old entry. An object of a
/// list that does not convert is simply not in the new list.
pub fn update<K, Key, V>(
    ev: Event<K>,
    convert: impl FnOnce(K) -> Option<(Key, V)>,
    key_of: impl FnOnce(&K) -> Option<Key>,
) -> Option<Update<Key, V>> {
    match ev {
        Event::Init => Some(Update::Init),
        Event::InitApply(obj) => convert(obj).map(|(k, v)| Update::InitApply(k, v)),
        Event::InitDone => Some(Update::InitDone),
        Event::Apply(obj) => {
            let key = key_of(&obj);
            match convert(obj) {
                Some((k, v)) => Some(Update::Apply(k, v)),
                None => key.map(Update::Delete),
            }
        }
        Event::Delete(obj) => key_of(&obj).map(Update::Delete),
    }
}

/// Runs one watch until `stop`: each event goes to `apply_event`, then
/// `on_change` runs. Errors are logged once per outage; the stream's backoff
/// retries and the last good cache keeps serving meanwhile.
pub async fn run<K, S>(
    what: &'static str,
    stream: S,
    mut stop: watch::Receiver<bool>,
    on_change: impl Fn() + Send + 'static,
    mut apply_event: impl FnMut(Event<K>) + Send + 'static,
) where
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    K: Send,
{
    let mut stream = std::pin::pin!(stream);
    let mut healthy = true;
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = stop.wait_for(|s| *s) => return,
        };
        match next {
            Some(Ok(ev)) => {
                if !healthy {
                    tracing::info!(what, "watch recovered");
                    healthy = true;
                }
                apply_event(ev);
                on_change();
            }
            Some(Err(e)) => {
                // The backoff wrapper retries; the last good cache keeps serving.
                if healthy {
                    tracing::warn!(what, error = %e, "watch failed; retrying with backoff, serving from the last cache");
                }
                healthy = false;
            }
            None => return,
        }
    }
}

/// A namespace's name, labels and annotations; nothing else is kept.
pub fn convert_namespace(ns: PartialObjectMeta<Namespace>) -> Option<(String, NamespaceMeta)> {
    let meta = ns.metadata;
    Some((
        meta.name?,
        NamespaceMeta {
            labels: meta.labels.unwrap_or_default(),
            annotations: meta.annotations.unwrap_or_default(),
        },
    ))
}

pub fn namespace_key(ns: &PartialObjectMeta<Namespace>) -> Option<String> {
    ns.metadata.name.clone()
}

pub fn object_key(obj: &DynamicObject) -> Option<NamespacedKey> {
    Some((
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone().unwrap_or_default(),
    ))
}

/// Reads one collector; one that does not parse is logged and left out.
pub fn convert_collector(obj: DynamicObject) -> Option<(NamespacedKey, Collector)> {
    let value = serde_json::to_value(&obj).ok()?;
    match Collector::from_object(&value, "") {
        Ok(c) => Some(((c.namespace.clone(), c.name.clone()), c)),
        Err(e) => {
            tracing::warn!(collector = %format!("{}/{}", obj.metadata.namespace.as_deref().unwrap_or_default(), obj.metadata.name.as_deref().unwrap_or_default()), error = %e, "invalid OpenTelemetryCollector ignored");
            None
        }
    }
}

/// Parses and validates one Instrumentation; invalid ones are logged and left out.
pub fn convert_instrumentation(obj: DynamicObject) -> Option<(NamespacedKey, Instrumentation)> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let spec_value = obj.data.get("spec").cloned().unwrap_or_default();
    let spec: InstrumentationSpec = match serde_path_to_error::deserialize(&spec_value) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(instrumentation = %format!("{ns}/{name}"), field = %format!("spec.{}", e.path()), error = %e.inner(), "invalid Instrumentation ignored");
            return None;
        }
    };
    let problems = spec.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("spec.{p}")).collect();
        tracing::warn!(instrumentation = %format!("{ns}/{name}"), problems = %list.join("; "), "invalid Instrumentation ignored");
        return None;
    }
    Some((
        (ns, name),
        Instrumentation {
            metadata: obj.metadata,
            spec,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dynamic(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("object: {e}"))
    }

    fn inst(ns: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
        dynamic(json!({
            "apiVersion": "opentelemetry.io/v1alpha1", "kind": "Instrumentation",
            "metadata": {"name": name, "namespace": ns}, "spec": spec
        }))
    }

    fn kind<K, V>(u: &Option<Update<K, V>>) -> &'static str {
        match u {
            None => "none",
            Some(Update::Init) => "init",
            Some(Update::InitApply(..)) => "init-apply",
            Some(Update::InitDone) => "init-done",
            Some(Update::Apply(..)) => "apply",
            Some(Update::Delete(..)) => "delete",
        }
    }

    /// One object that does not parse is left out of a list, and a live
    /// update that makes an object invalid deletes it, not keeps it stale.
    #[test]
    fn an_invalid_object_is_left_out_not_fatal() {
        let bad = || inst("a", "bad", json!({"propagators": ["w3c"]}));
        let good = || inst("a", "good", json!({}));
        let u = |ev| update(ev, convert_instrumentation, object_key);
        assert_eq!(kind(&u(Event::InitApply(bad()))), "none");
        assert_eq!(kind(&u(Event::InitApply(good()))), "init-apply");
        assert_eq!(kind(&u(Event::Apply(good()))), "apply");
        match u(Event::Apply(bad())) {
            Some(Update::Delete(k)) => assert_eq!(k, ("a".to_string(), "bad".to_string())),
            other => panic!("{}", kind(&other)),
        }
        assert_eq!(kind(&u(Event::Delete(bad()))), "delete");
        assert_eq!(kind(&u(Event::Init)), "init");
        assert_eq!(kind(&u(Event::InitDone)), "init-done");
        let sampler = inst(
            "a",
            "ratio",
            json!({"sampler": {"type": "traceidratio", "argument": "1.5"}}),
        );
        assert_eq!(kind(&u(Event::InitApply(sampler))), "none");
    }

    #[test]
    fn a_namespace_keeps_only_labels_and_annotations() {
        let ns: PartialObjectMeta<Namespace> = serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "shop", "labels": {"team": "a"}, "annotations": {"x": "y"},
                "uid": "u", "resourceVersion": "7"}
        }))
        .unwrap_or_else(|e| panic!("meta: {e}"));
        let Some((name, meta)) = convert_namespace(ns) else {
            panic!("converted")
        };
        assert_eq!(name, "shop");
        assert_eq!(meta.labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(meta.annotations.get("x").map(String::as_str), Some("y"));
    }
}
