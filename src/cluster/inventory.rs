//! `data.inventory` (SPEC §7): the kinds `policies.sync` lists, mirrored
//! by kube-rs watchers and laid out as Gatekeeper lays them out:
//! `namespace[<ns>][<groupversion>][<kind>][<name>]` for namespaced kinds,
//! `cluster[<groupversion>][<kind>][<name>]` for cluster-scoped ones.
//!
//! Each kind is found by discovery (its plural and scope), then watched
//! whole (policies read any field) into a per-namespace index of the same
//! kubert-style [`Store`] the other caches use, as regorus values, so that
//! building the document shares every object instead of copying it.
//! `metadata.managedFields` is dropped: no policy reads it, and it is often
//! the largest part of an object.
//!
//! A kind the API server does not serve (discovery fails, or its first list
//! answers 404) or that RBAC forbids (its first list answers 403) is logged
//! and counted (`inventory_errors_total{kind,reason="not_served"}`,
//! `reason="forbidden"`), counts as synced-and-empty for readiness, and is
//! looked up again every [`super::RETRY_ABSENT`]; the other kinds serve
//! meanwhile. An object that does not convert is logged, counted
//! (`reason="decode"`) and left out.
//!
//! The inventory only says when it is synced ([`Inventory::is_ready`]) and
//! moves its version on every change; the composition root hands the
//! document to the policies and turns readiness on once they hold one built
//! from a synced inventory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use tokio::sync::watch as signal;

use super::index::{ByNamespace, Store, Writer};
use super::watch::{self, Failure, Presence, Watched};
use crate::config::SyncKind;
use crate::metrics::{InventoryErrorLabels, InventoryLabels, Metrics};

/// The kinds a Gatekeeper `Config` (`config.gatekeeper.sh/v1alpha1`, named
/// `config`) in `namespace` lists in `spec.sync.syncOnly`, read once at
/// start-up; none when there is no such resource (or no such CRD). An entry
/// without a version or kind is logged and skipped.
pub async fn gatekeeper_sync_only(client: &kube::Client, namespace: &str) -> Vec<SyncKind> {
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("config.gatekeeper.sh", "v1alpha1", "Config"),
        "configs",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let obj = match api.get_opt("config").await {
        Ok(Some(o)) => o,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::debug!(error = %e, "no Gatekeeper Config to read spec.sync.syncOnly from");
            return Vec::new();
        }
    };
    let entries = obj.data["spec"]["sync"]["syncOnly"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match serde_json::from_value::<SyncKind>(e.clone()) {
            Ok(k) if !k.version.is_empty() && !k.kind.is_empty() => out.push(k),
            Ok(_) => {
                tracing::error!(field = %format!("Config {namespace}/config: spec.sync.syncOnly[{i}]"), "needs a version and a kind; skipped")
            }
            Err(err) => {
                tracing::error!(field = %format!("Config {namespace}/config: spec.sync.syncOnly[{i}]"), error = %err, "skipped")
            }
        }
    }
    out
}

/// One synced kind.
#[derive(Debug)]
struct Synced {
    kind: SyncKind,
    /// Filled once discovery found it; cluster-scoped objects sit under "".
    store: Arc<Store<ByNamespace<regorus::Value>>>,
    namespaced: AtomicBool,
    /// Discovery failed: synced, empty, until it is listed.
    not_served: AtomicBool,
    /// Its watch's answers: a 404 or 403 before any list is synced, empty.
    presence: Arc<Presence>,
}

impl Synced {
    fn ready(&self) -> bool {
        self.not_served.load(Ordering::SeqCst) || self.store.is_ready() || self.presence.is_absent()
    }
}

/// The mirrored kinds, and a version that moves on every change.
#[derive(Debug)]
pub struct Inventory {
    kinds: Vec<Arc<Synced>>,
    version: signal::Sender<u64>,
}

fn key(v: &str) -> regorus::Value {
    regorus::Value::from(v)
}

/// Inserts `value` at `path` in nested regorus objects, creating them.
fn insert(root: &mut regorus::Value, path: &[&str], value: regorus::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = root;
    for p in parents {
        let Ok(map) = at.as_object_mut() else { return };
        let k = key(p);
        if map.get(&k).is_none() {
            map.insert(k.clone(), regorus::Value::new_object());
        }
        let Some(next) = map.get_mut(&k) else { return };
        at = next;
    }
    if let Ok(map) = at.as_object_mut() {
        map.insert(key(last), value);
    }
}

/// One object as policies read it, without `metadata.managedFields`.
fn convert(obj: DynamicObject) -> Result<((String, String), regorus::Value), String> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut json = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
    if let Some(meta) = json.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    let value: regorus::Value = serde_json::from_value(json).map_err(|e| e.to_string())?;
    Ok(((ns, name), value))
}

impl Inventory {
    /// An inventory of `kinds`, empty and not ready until started.
    pub fn new(kinds: &[SyncKind]) -> Arc<Self> {
        let (version, _) = signal::channel(0);
        Arc::new(Self {
            kinds: kinds
                .iter()
                .map(|k| {
                    Arc::new(Synced {
                        kind: k.clone(),
                        store: Arc::default(),
                        namespaced: AtomicBool::new(true),
                        not_served: AtomicBool::new(false),
                        presence: Arc::default(),
                    })
                })
                .collect(),
            version,
        })
    }

    /// True once every kind is listed (or known not to be served, or
    /// forbidden). Once true it stays true: a kind found later keeps
    /// counting as synced until its first list is done.
    pub fn is_ready(&self) -> bool {
        self.kinds.iter().all(|k| k.ready())
    }

    /// Moves on every change; `data.inventory` is rebuilt from it.
    pub fn subscribe(&self) -> signal::Receiver<u64> {
        self.version.subscribe()
    }

    /// Objects held, over all kinds.
    pub fn len(&self) -> usize {
        self.kinds.iter().map(|k| k.store.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `data.inventory` now. Objects are shared with the index, not copied.
    pub fn value(&self) -> regorus::Value {
        let mut root = regorus::Value::new_object();
        insert(&mut root, &["cluster"], regorus::Value::new_object());
        insert(&mut root, &["namespace"], regorus::Value::new_object());
        for k in &self.kinds {
            let gv = k.kind.group_version();
            let namespaced = k.namespaced.load(Ordering::SeqCst);
            let index = k.store.read();
            for (ns, name, obj) in index.iter() {
                let value = obj.as_ref().clone();
                if namespaced {
                    insert(
                        &mut root,
                        &["namespace", ns, &gv, &k.kind.kind, name],
                        value,
                    );
                } else {
                    insert(&mut root, &["cluster", &gv, &k.kind.kind, name], value);
                }
            }
        }
        root
    }

    /// Starts one watcher per kind; a kind not served or forbidden is
    /// looked up again every `retry_absent`.
    pub fn start(
        self: &Arc<Self>,
        client: kube::Client,
        metrics: Arc<Metrics>,
        retry_absent: Duration,
        stop: signal::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.kinds
            .iter()
            .map(|k| {
                let (me, k, client, metrics, stop) = (
                    self.clone(),
                    k.clone(),
                    client.clone(),
                    metrics.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move { me.sync(k, client, metrics, retry_absent, stop).await })
            })
            .collect()
    }

    /// Moves the version on, so the document and readiness are looked at again.
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Discovery, then the watch of one kind, until `stop`.
    async fn sync(
        self: Arc<Self>,
        k: Arc<Synced>,
        client: kube::Client,
        metrics: Arc<Metrics>,
        retry_absent: Duration,
        mut stop: signal::Receiver<bool>,
    ) {
        let label = InventoryLabels {
            kind: k.kind.to_string(),
        };
        let gvk = GroupVersionKind::gvk(&k.kind.group, &k.kind.version, &k.kind.kind);
        let resource = loop {
            match kube::discovery::pinned_kind(&client, &gvk).await {
                Ok((resource, caps)) => {
                    k.namespaced.store(
                        caps.scope == kube::discovery::Scope::Namespaced,
                        Ordering::SeqCst,
                    );
                    if k.not_served.load(Ordering::SeqCst) {
                        tracing::info!(kind = %k.kind, "policies.sync: the API server now serves this kind; watching it into data.inventory");
                    }
                    break resource;
                }
                Err(e) => {
                    if !k.not_served.swap(true, Ordering::SeqCst) {
                        tracing::error!(kind = %k.kind, error = %e, "policies.sync: the API server does not serve this kind; data.inventory holds none of it (looked up again every {retry_absent:?})");
                    }
                    metrics
                        .inventory_errors
                        .get_or_create(&InventoryErrorLabels {
                            kind: label.kind.clone(),
                            reason: "not_served",
                        })
                        .inc();
                    self.changed();
                    tokio::select! {
                        _ = tokio::time::sleep(retry_absent) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        // A bare watcher: `watch::run` backs off itself.
        let api: Api<DynamicObject> = Api::all_with(client, &resource);
        let stream = watcher::watcher(api, watcher::Config::default());
        let mut writer = Writer::new(k.store.clone());
        let on_change = {
            let (me, k, metrics, label) = (self.clone(), k.clone(), metrics.clone(), label.clone());
            move || {
                metrics
                    .inventory_objects
                    .get_or_create(&label)
                    .set(k.store.len() as i64);
                if k.store.is_ready() {
                    // Found and listed: counted as synced by its list now.
                    k.not_served.store(false, Ordering::SeqCst);
                }
                me.changed();
            }
        };
        let on_error = {
            let (metrics, kind) = (metrics.clone(), label.kind.clone());
            move |failure: Failure| {
                if failure != Failure::Other {
                    metrics
                        .inventory_errors
                        .get_or_create(&InventoryErrorLabels {
                            kind: kind.clone(),
                            reason: failure.as_str(),
                        })
                        .inc();
                }
            }
        };
        let watched = Watched {
            what: "inventory",
            resource: super::resource_name(&resource),
            absent_means: "data.inventory holds none of it, so referential policies find none of these objects",
            retry_absent,
            presence: k.presence.clone(),
        };
        let what = k.kind.to_string();
        let errors = metrics
            .inventory_errors
            .get_or_create(&InventoryErrorLabels {
                kind: label.kind.clone(),
                reason: "decode",
            })
            .clone();
        watch::run(watched, stream, stop, on_error, on_change, move |ev| {
            let convert = |obj: DynamicObject| match convert(obj) {
                Ok(kv) => Some(kv),
                Err(e) => {
                    tracing::warn!(kind = %what, error = %e, "synced object left out of data.inventory");
                    errors.inc();
                    None
                }
            };
            if let Some(u) = watch::update(ev, convert, watch::object_key) {
                writer.update(u);
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gatekeeper's layout: namespaced kinds under `namespace`, the others
    /// under `cluster`, each by group/version, kind and name.
    #[test]
    fn the_document_is_laid_out_as_gatekeeper_does() {
        let inv = Inventory::new(&[
            SyncKind {
                group: "networking.k8s.io".into(),
                version: "v1".into(),
                kind: "Ingress".into(),
            },
            SyncKind {
                group: String::new(),
                version: "v1".into(),
                kind: "Namespace".into(),
            },
        ]);
        inv.kinds[1].namespaced.store(false, Ordering::SeqCst);
        let mut w0 = Writer::new(inv.kinds[0].store.clone());
        w0.update(super::super::index::Update::Apply(
            ("shop".into(), "web".into()),
            regorus::Value::from("ingress"),
        ));
        let mut w1 = Writer::new(inv.kinds[1].store.clone());
        w1.update(super::super::index::Update::Apply(
            (String::new(), "shop".into()),
            regorus::Value::from("namespace"),
        ));
        let v: serde_json::Value = serde_json::to_value(inv.value()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "namespace": {"shop": {"networking.k8s.io/v1": {"Ingress": {"web": "ingress"}}}},
                "cluster": {"v1": {"Namespace": {"shop": "namespace"}}}
            })
        );
        assert_eq!(inv.len(), 2);
    }

    #[test]
    fn managed_fields_are_dropped() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "a", "namespace": "n", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"selector": {"app": "a"}}
        }))
        .expect("object");
        let ((ns, name), v) = convert(obj).expect("converts");
        assert_eq!((ns.as_str(), name.as_str()), ("n", "a"));
        let json = serde_json::to_value(v).expect("json");
        assert!(json["metadata"].get("managedFields").is_none());
        assert_eq!(json["spec"]["selector"]["app"], "a");
    }
}
