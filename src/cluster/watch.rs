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
//!
//! A kind the API server refuses before it ever listed (404: not served, no
//! such CRD; 403: RBAC) is not an outage: [`run`] marks it absent in its
//! [`Presence`], which readiness counts as synced and empty, logs it once,
//! and looks it up again every `retry_absent`. Once a list succeeds the kind
//! is listed for good: a later failure is an outage, and the last list
//! keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::runtime::utils::Backoff as _;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
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

/// Why a list or watch failed, as `cluster_watch_errors_total{reason}`
/// counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 404: the API server does not serve the resource (no such CRD or
    /// group version).
    NotServed,
    /// 403: RBAC grants the ServiceAccount no list or watch on it.
    Forbidden,
    /// Anything else: the API server away, a timeout, a 5xx, a 410.
    Other,
}

/// What the API server last told a watch about its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// No answer yet.
    Unknown,
    /// A list succeeded.
    Listed,
    /// Refused (404 or 403) and never listed: synced and empty.
    Absent(Failure),
}

/// A kind's [`Availability`], written by its watch loop and read by
/// readiness and the metrics.
#[derive(Debug, Default)]
pub struct Presence(AtomicU8);

/// One watched kind, as its loop names, reports and retries it.
#[derive(Debug)]
pub struct Watched {
    /// Names the watch in its logs.
    pub what: &'static str,
    /// The resource in the absent-kind logs, e.g.
    /// `opentelemetrycollectors.opentelemetry.io`.
    pub resource: String,
    /// What users get while the kind is absent, for the log.
    pub absent_means: &'static str,
    /// How often an absent kind is looked up again.
    pub retry_absent: Duration,
    pub presence: Arc<Presence>,
}

/// Past the backoff's own cap, should it ever end.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

// === impl Failure ===

impl Failure {
    pub const ALL: [Self; 3] = [Self::NotServed, Self::Forbidden, Self::Other];

    /// Reads the API server's status out of a watcher error.
    pub fn of(e: &watcher::Error) -> Self {
        let Some(status) = api_status(e) else {
            return Self::Other;
        };
        // The code too: kube-rs reads only the reason when it knows it, and
        // a 404 from a bare path may carry plain text, not a `Status`.
        if status.code == 404 || status.is_not_found() {
            Self::NotServed
        } else if status.code == 403 || status.is_forbidden() {
            Self::Forbidden
        } else {
            Self::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotServed => "not_served",
            Self::Forbidden => "forbidden",
            Self::Other => "other",
        }
    }
}

/// The API server's answer in a watcher error, when it answered.
fn api_status(e: &watcher::Error) -> Option<&kube::core::Status> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => Some(s),
        _ => None,
    }
}

// === impl Presence ===

impl Presence {
    pub fn get(&self) -> Availability {
        Self::decode(self.0.load(Ordering::SeqCst))
    }

    /// Refused before it ever listed: readiness counts it as synced and empty.
    pub fn is_absent(&self) -> bool {
        matches!(self.get(), Availability::Absent(_))
    }

    /// Sets `to`, returning what it was.
    pub(super) fn set(&self, to: Availability) -> Availability {
        let v = match to {
            Availability::Unknown | Availability::Absent(Failure::Other) => 0,
            Availability::Listed => 1,
            Availability::Absent(Failure::NotServed) => 2,
            Availability::Absent(Failure::Forbidden) => 3,
        };
        Self::decode(self.0.swap(v, Ordering::SeqCst))
    }

    fn decode(v: u8) -> Availability {
        match v {
            1 => Availability::Listed,
            2 => Availability::Absent(Failure::NotServed),
            3 => Availability::Absent(Failure::Forbidden),
            _ => Availability::Unknown,
        }
    }
}

// === impl Watched ===

impl Watched {
    /// A refusal before any list: marked absent, logged when that is new.
    fn absent(&self, failure: Failure, error: &watcher::Error) {
        if self.presence.set(Availability::Absent(failure)) == Availability::Absent(failure) {
            return;
        }
        let (what, resource, means, every) = (
            self.what,
            &self.resource,
            self.absent_means,
            self.retry_absent,
        );
        // The API server's own message says who was refused what.
        let answer = api_status(error).map_or_else(|| error.to_string(), |s| s.message.clone());
        match failure {
            Failure::NotServed => tracing::warn!(
                what,
                answer,
                "the API server does not serve {resource} (404): {means}; looked up again every {every:?}"
            ),
            Failure::Forbidden => tracing::error!(
                what,
                answer,
                "RBAC forbids list/watch on {resource} (403): grant get/list/watch on it to the otel-admission ServiceAccount; until then {means}; looked up again every {every:?}"
            ),
            Failure::Other => {}
        }
    }

    /// A list completed; says so if the kind was absent.
    fn listed(&self) {
        let resource = &self.resource;
        match self.presence.set(Availability::Listed) {
            Availability::Absent(Failure::NotServed) => tracing::info!(
                what = self.what,
                "the API server now serves {resource}: its objects are in use"
            ),
            Availability::Absent(Failure::Forbidden) => tracing::info!(
                what = self.what,
                "RBAC now allows list/watch on {resource}: its objects are in use"
            ),
            _ => {}
        }
    }
}

/// Runs one watch until `stop`: each event goes to `apply_event`, then
/// `on_change` runs; each failure goes to `on_error`. `stream` is a bare
/// watcher: this loop backs off itself, because kube-rs' `StreamBackoff`
/// resets on every `Ok`, and the watcher yields `Event::Init` before each
/// list attempt, so a list that always fails would be retried every 0.8 s.
/// Here only progress (anything but `Init`) resets the backoff.
///
/// An outage is logged once; the last good cache keeps serving meanwhile.
/// A kind refused before it ever listed is marked absent instead (see the
/// module doc) and retried every `retry_absent`.
pub async fn run<K, S>(
    kind: Watched,
    stream: S,
    mut stop: watch::Receiver<bool>,
    on_error: impl Fn(Failure) + Send + 'static,
    on_change: impl Fn() + Send + 'static,
    mut apply_event: impl FnMut(Event<K>) + Send + 'static,
) where
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    K: Send,
{
    let mut stream = std::pin::pin!(stream);
    let mut backoff = DefaultBackoff::default();
    let what = kind.what;
    let mut failing = false;
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = stop.wait_for(|s| *s) => return,
        };
        let delay = match next {
            Some(Ok(ev)) => {
                let progress = !matches!(ev, Event::Init);
                let listed = matches!(ev, Event::InitDone);
                apply_event(ev);
                if progress {
                    backoff.reset();
                    if failing {
                        tracing::info!(what, "watch recovered");
                        failing = false;
                    }
                }
                if listed {
                    kind.listed();
                }
                on_change();
                continue;
            }
            Some(Err(e)) => {
                let failure = Failure::of(&e);
                on_error(failure);
                let now = kind.presence.get();
                if failure != Failure::Other && now != Availability::Listed {
                    kind.absent(failure, &e);
                    on_change();
                    kind.retry_absent
                } else {
                    if !failing {
                        match now {
                            Availability::Listed => {
                                tracing::warn!(what, error = %e, "watch failed; retrying with backoff, serving from the last cache")
                            }
                            Availability::Unknown => {
                                tracing::warn!(what, error = %e, "first list failed; retrying with backoff, readiness waits for it")
                            }
                            Availability::Absent(_) => {
                                tracing::warn!(what, error = %e, "watch failed; retrying with backoff")
                            }
                        }
                        failing = true;
                    }
                    backoff.next().unwrap_or(MAX_BACKOFF)
                }
            }
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
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
    match parse_collector(&obj) {
        Ok(c) => Some(((c.namespace.clone(), c.name.clone()), c)),
        Err(e) => {
            tracing::warn!(collector = %super::object_name(&obj.metadata), error = %e, "invalid OpenTelemetryCollector ignored");
            None
        }
    }
}

/// One OpenTelemetryCollector as the server reads it, or why it is ignored
/// (the field and the reason). `check` and live `explain` report the same.
pub fn parse_collector(obj: &DynamicObject) -> Result<Collector, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    Collector::from_object(&value, "").map_err(|e| e.to_string())
}

/// Parses and validates one Instrumentation; invalid ones are logged and left out.
pub fn convert_instrumentation(obj: DynamicObject) -> Option<(NamespacedKey, Instrumentation)> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    match parse_instrumentation(obj) {
        Ok(inst) => Some(((ns, name), inst)),
        Err(why) => {
            tracing::warn!(instrumentation = %format!("{ns}/{name}"), problems = %why, "invalid Instrumentation ignored");
            None
        }
    }
}

/// One Instrumentation as the server reads it, or why it is ignored: the
/// field (`spec.…`) and the reason, every problem of [`InstrumentationSpec::validate`]
/// joined with `; `. `check` reports the same words.
pub fn parse_instrumentation(obj: DynamicObject) -> Result<Instrumentation, String> {
    // No `spec` (or `spec: null`) is an empty spec, as the API server and
    // the Operator accept it (`Instrumentation::from_object`): not dropped.
    let spec_value = match obj.data.get("spec") {
        Some(v) if !v.is_null() => v.clone(),
        _ => serde_json::Value::Object(Default::default()),
    };
    let spec: InstrumentationSpec = serde_path_to_error::deserialize(&spec_value)
        .map_err(|e| format!("spec.{}: {}", e.path(), e.inner()))?;
    let problems = spec.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("spec.{p}")).collect();
        return Err(list.join("; "));
    }
    Ok(Instrumentation {
        metadata: obj.metadata,
        spec,
    })
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

    /// An Instrumentation without `spec`, or with `spec: null`, is kept
    /// with an empty spec (the API server accepts one, and so does the
    /// Operator), in a list and as a live update.
    #[test]
    fn an_instrumentation_without_spec_is_kept_empty() {
        let bare = |name: &str, spec: Option<serde_json::Value>| {
            let mut v = json!({
                "apiVersion": "opentelemetry.io/v1alpha1", "kind": "Instrumentation",
                "metadata": {"name": name, "namespace": "a"}
            });
            if let Some(spec) = spec {
                v["spec"] = spec;
            }
            dynamic(v)
        };
        for (name, spec) in [("no-spec", None), ("null-spec", Some(json!(null)))] {
            let Some(((ns, n), inst)) = convert_instrumentation(bare(name, spec)) else {
                panic!("{name}: dropped")
            };
            assert_eq!((ns.as_str(), n.as_str()), ("a", name));
            assert_eq!(inst.spec, InstrumentationSpec::default(), "{name}");
            assert_eq!(inst.metadata.name.as_deref(), Some(name));
            let u = |ev| update(ev, convert_instrumentation, object_key);
            assert_eq!(kind(&u(Event::InitApply(bare(name, None)))), "init-apply");
            assert_eq!(kind(&u(Event::Apply(bare(name, None)))), "apply");
        }
    }

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused", reason)
                .with_code(code)
                .boxed(),
        )
    }

    /// 404 and 403 from a list or a watch are refusals, read from the
    /// status code whether or not the body was a `Status`; anything else is
    /// an outage.
    #[rstest::rstest]
    #[case::list_not_found(
        watcher::Error::InitialListFailed(api(404, "NotFound")),
        Failure::NotServed
    )]
    #[case::list_404_unparsed(
        watcher::Error::InitialListFailed(api(404, "Failed to parse error data")),
        Failure::NotServed
    )]
    #[case::watch_forbidden(
        watcher::Error::WatchStartFailed(api(403, "Forbidden")),
        Failure::Forbidden
    )]
    #[case::list_unavailable(
        watcher::Error::InitialListFailed(api(503, "ServiceUnavailable")),
        Failure::Other
    )]
    #[case::watch_expired(
        watcher::Error::WatchError(
            kube::core::Status::failure("too old", "Expired")
                .with_code(410)
                .boxed(),
        ),
        Failure::Other
    )]
    #[case::no_resource_version(watcher::Error::NoResourceVersion, Failure::Other)]
    fn failures_are_read_from_the_api_servers_answer(
        #[case] e: watcher::Error,
        #[case] want: Failure,
    ) {
        assert_eq!(Failure::of(&e), want, "{e}");
    }

    #[test]
    fn presence_remembers_the_last_answer() {
        let p = Presence::default();
        assert_eq!(p.get(), Availability::Unknown);
        assert!(!p.is_absent());
        let absent = Availability::Absent(Failure::Forbidden);
        assert_eq!(p.set(absent), Availability::Unknown);
        assert!(p.is_absent());
        assert_eq!(p.set(absent), absent, "the same refusal again: not new");
        assert_eq!(p.set(Availability::Listed), absent);
        assert_eq!(p.get(), Availability::Listed);
        assert!(!p.is_absent());
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
