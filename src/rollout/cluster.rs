//! The cluster reads behind `otel-admission rollout plan`: workloads and
//! their pods' metadata (never whole pods), through kube-rs, and the same
//! caches `serve` keeps, so the plan decides as `/mutate` would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};

use super::{Assessment, Kind, ROLLOUT_KEY, Workload};
use crate::cluster::Caches;
use crate::config::Config;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot restart {kind} {namespace}/{name}: {source}")]
    Patch {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("the cluster caches did not sync within {0:?}")]
    NotSynced(Duration),
}

fn list_err(what: &'static str) -> impl Fn(kube::Error) -> PlanError {
    move |source| PlanError::List { what, source }
}

fn opted_out(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(ROLLOUT_KEY))
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// The longest one request of a plan or a restart may take. A request in
/// flight when the API server goes away can otherwise hang the rollout loop
/// for minutes (seen in the outage test under load); cut, it fails the round,
/// and the next round starts over.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// `f`, failed with a timeout error after [`REQUEST_TIMEOUT`].
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    crate::cluster::within(REQUEST_TIMEOUT, f).await
}

/// Objects per list request: lists are read a page at a time (as kube's
/// watcher pages), so the largest list is never in memory whole.
const PAGE: u32 = 500;

/// Calls `f` with every object `list` returns (`Api::list` or
/// `Api::list_metadata`), a page at a time.
async fn each<T: Clone, Fut>(
    what: &'static str,
    list: impl Fn(ListParams) -> Fut,
    mut f: impl FnMut(T),
) -> Result<(), PlanError>
where
    Fut: std::future::Future<Output = Result<kube::core::ObjectList<T>, kube::Error>>,
{
    let mut lp = ListParams::default().limit(PAGE);
    loop {
        let list = bounded(list(lp.clone())).await.map_err(list_err(what))?;
        let next = list.metadata.continue_.clone().filter(|c| !c.is_empty());
        list.items.into_iter().for_each(&mut f);
        match next {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Whether a Deployment's or StatefulSet's rollout is still going on, from
/// its status (their status fields share names).
fn rolling(
    generation: Option<i64>,
    observed: Option<i64>,
    updated: i32,
    available: i32,
    replicas: i32,
) -> bool {
    (generation != observed || updated < replicas || available < replicas) && replicas > 0
}

/// One workload of the plan, moved out of its listed object.
fn workload(
    kind: Kind,
    meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    template: k8s_openapi::api::core::v1::PodTemplateSpec,
    selector: LabelSelector,
    (paused, scaled_to_zero, rolling): (bool, bool, bool),
) -> Option<(Workload, LabelSelector)> {
    let opted_out = opted_out(meta.labels.as_ref());
    Some((
        Workload {
            kind,
            namespace: meta.namespace.unwrap_or_default(),
            name: meta.name?,
            template,
            opted_out,
            paused,
            scaled_to_zero,
            rolling,
        },
        selector,
    ))
}

/// The list scopes for `namespaces`: the whole cluster when empty.
fn scopes(namespaces: &[String]) -> Vec<Option<&str>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    }
}

fn from_deployment(d: Deployment) -> Option<(Workload, LabelSelector)> {
    let spec = d.spec?;
    let st = d.status.unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rolling = rolling(
        d.metadata.generation,
        st.observed_generation,
        st.updated_replicas.unwrap_or(0),
        st.available_replicas.unwrap_or(0),
        replicas,
    );
    let flags = (spec.paused == Some(true), replicas == 0, rolling);
    workload(
        Kind::Deployment,
        d.metadata,
        spec.template,
        spec.selector,
        flags,
    )
}

fn from_stateful_set(s: StatefulSet) -> Option<(Workload, LabelSelector)> {
    let spec = s.spec?;
    let st = s.status.unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rolling = rolling(
        s.metadata.generation,
        st.observed_generation,
        st.updated_replicas.unwrap_or(0),
        st.available_replicas.unwrap_or(0),
        replicas,
    );
    let flags = (false, replicas == 0, rolling);
    workload(
        Kind::StatefulSet,
        s.metadata,
        spec.template,
        spec.selector,
        flags,
    )
}

fn from_daemon_set(d: DaemonSet) -> Option<(Workload, LabelSelector)> {
    let spec = d.spec?;
    let st = d.status.unwrap_or_default();
    let rolling = d.metadata.generation != st.observed_generation
        || st.updated_number_scheduled.unwrap_or(0) < st.desired_number_scheduled;
    let flags = (false, false, rolling);
    workload(
        Kind::DaemonSet,
        d.metadata,
        spec.template,
        spec.selector,
        flags,
    )
}

/// Calls `out` with each workload in `namespaces` as its page arrives, so
/// only one page of workload objects is ever in memory.
async fn workloads(
    client: &kube::Client,
    namespaces: &[String],
    mut out: impl FnMut(Option<(Workload, LabelSelector)>),
) -> Result<(), PlanError> {
    for ns in scopes(namespaces) {
        let api = scoped::<Deployment>(client, ns);
        each(
            "deployments",
            |lp| {
                let api = api.clone();
                async move { api.list(&lp).await }
            },
            |d| out(from_deployment(d)),
        )
        .await?;
        let api = scoped::<StatefulSet>(client, ns);
        each(
            "statefulsets",
            |lp| {
                let api = api.clone();
                async move { api.list(&lp).await }
            },
            |s| out(from_stateful_set(s)),
        )
        .await?;
        let api = scoped::<DaemonSet>(client, ns);
        each(
            "daemonsets",
            |lp| {
                let api = api.clone();
                async move { api.list(&lp).await }
            },
            |d| out(from_daemon_set(d)),
        )
        .await?;
    }
    Ok(())
}

/// The workload of `a` read again: why it must not be restarted now
/// (rolling, paused, scaled to zero, opted out, deleted), or `None`.
pub async fn recheck(client: &kube::Client, a: &Assessment) -> Result<Option<String>, kube::Error> {
    let got = match read(client, a).await {
        Ok(Read::Deployment(d)) => from_deployment(d),
        Ok(Read::StatefulSet(s)) => from_stateful_set(s),
        Ok(Read::DaemonSet(d)) => from_daemon_set(d),
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Some("deleted".into())),
        Err(e) => return Err(e),
    };
    Ok(match got {
        Some((w, _)) => super::not_restartable(&w),
        None => Some("it has no spec".into()),
    })
}

/// A workload of the plan, as the API server has it now.
enum Read {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
}

/// One GET of `a`'s workload, bounded like every rollout request.
async fn read(client: &kube::Client, a: &Assessment) -> Result<Read, kube::Error> {
    let (c, ns, name) = (client.clone(), a.namespace.as_str(), a.name.as_str());
    match a.kind {
        Kind::Deployment => bounded(Api::namespaced(c, ns).get(name))
            .await
            .map(Read::Deployment),
        Kind::StatefulSet => bounded(Api::namespaced(c, ns).get(name))
            .await
            .map(Read::StatefulSet),
        Kind::DaemonSet => bounded(Api::namespaced(c, ns).get(name))
            .await
            .map(Read::DaemonSet),
    }
}

/// `Api::namespaced` for `Some(ns)`, `Api::all` for `None`.
fn scoped<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match ns {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    }
}

/// The plan: every workload in `namespaces` (all when empty), assessed.
pub async fn plan(
    client: kube::Client,
    namespaces: &[String],
    config: &Config,
    sync_timeout: Duration,
) -> Result<Vec<Assessment>, PlanError> {
    // The same caches as `serve`, so the plan reads what admission reads.
    let caches = Arc::new(Caches::new());
    let readiness = crate::server::admin::Readiness::default();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    caches.start(
        client.clone(),
        Arc::new(Metrics::new()),
        readiness.gate("cluster"),
        stop_rx,
    );
    let start = tokio::time::Instant::now();
    while !caches.is_ready() {
        if start.elapsed() > sync_timeout {
            stop.send_replace(true);
            return Err(PlanError::NotSynced(sync_timeout));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The version admission sees: `sidecar.native: auto` depends on it, and
    // so does the fingerprint a pod gets.
    let version = client
        .apiserver_version()
        .await
        .ok()
        .and_then(|v| crate::inject::context::parse_server_version(&v.major, &v.minor));
    let out = plan_with(&client, namespaces, config, caches.as_ref(), version).await;
    stop.send_replace(true);
    out
}

/// The plan against a view that is already synced (the server's caches).
/// Pods' labels are read first (metadata only); then each page of workloads
/// is assessed as it arrives and dropped, so a round holds the pods' labels
/// and one page of workloads, not every workload's template at once.
pub async fn plan_with(
    client: &kube::Client,
    namespaces: &[String],
    config: &Config,
    view: &dyn crate::inject::cluster_view::ClusterView,
    server_version: Option<(u32, u32)>,
) -> Result<Vec<Assessment>, PlanError> {
    let pods = pod_labels(client, namespaces).await?;
    let mut out = Vec::new();
    workloads(client, namespaces, |found| {
        if let Some((w, sel)) = found {
            out.push(super::assess_selected(
                &w,
                &sel,
                &pods,
                config,
                view,
                server_version,
            ));
        }
    })
    .await?;
    super::sort(&mut out);
    Ok(out)
}

/// Every pod's labels in `namespaces`, by namespace, a page at a time.
async fn pod_labels(
    client: &kube::Client,
    namespaces: &[String],
) -> Result<super::PodLabels, PlanError> {
    let mut pods = super::PodLabels::new();
    for ns in scopes(namespaces) {
        let api: Api<Pod> = scoped(client, ns);
        each(
            "pods",
            |lp| {
                let api = api.clone();
                async move { api.list_metadata(&lp).await }
            },
            |p| {
                let ns = p.metadata.namespace.unwrap_or_default();
                pods.entry(ns)
                    .or_default()
                    .push(p.metadata.labels.unwrap_or_default());
            },
        )
        .await?;
    }
    Ok(pods)
}

/// The annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// How one restart ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Restart {
    /// Patched, and available again after this many seconds.
    Done(u64),
    /// Patched, but not available within the timeout.
    NotAvailable,
    Failed(String),
    /// `--dry-run`: would be restarted.
    Planned,
}

pub async fn patch_restart(
    client: &kube::Client,
    a: &Assessment,
    at: &str,
) -> Result<(), kube::Error> {
    use kube::api::{Patch, PatchParams};
    let body = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}});
    let pp = PatchParams::default();
    match a.kind {
        Kind::Deployment => bounded(
            Api::<Deployment>::namespaced(client.clone(), &a.namespace).patch(
                &a.name,
                &pp,
                &Patch::Merge(&body),
            ),
        )
        .await
        .map(|_| ()),
        Kind::StatefulSet => bounded(
            Api::<StatefulSet>::namespaced(client.clone(), &a.namespace).patch(
                &a.name,
                &pp,
                &Patch::Merge(&body),
            ),
        )
        .await
        .map(|_| ()),
        Kind::DaemonSet => bounded(
            Api::<DaemonSet>::namespaced(client.clone(), &a.namespace).patch(
                &a.name,
                &pp,
                &Patch::Merge(&body),
            ),
        )
        .await
        .map(|_| ()),
    }
}

/// Whether the workload has rolled out its latest generation everywhere.
async fn available(client: &kube::Client, a: &Assessment) -> Result<bool, kube::Error> {
    Ok(match read(client, a).await? {
        Read::Deployment(d) => {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let st = d.status.unwrap_or_default();
            d.metadata.generation <= st.observed_generation
                && st.updated_replicas.unwrap_or(0) >= want
                && st.available_replicas.unwrap_or(0) >= want
        }
        Read::StatefulSet(s) => {
            let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let st = s.status.unwrap_or_default();
            s.metadata.generation <= st.observed_generation
                && st.updated_replicas.unwrap_or(0) >= want
                && st.available_replicas.unwrap_or(0) >= want
        }
        Read::DaemonSet(d) => {
            let st = d.status.unwrap_or_default();
            d.metadata.generation <= st.observed_generation
                && st.updated_number_scheduled.unwrap_or(0) >= st.desired_number_scheduled
                && st.number_available.unwrap_or(0) >= st.desired_number_scheduled
        }
    })
}

/// Restarts the restartable stale workloads as `kubectl rollout restart`
/// does, one per namespace at a time (namespaces side by side), waiting for
/// each to be available before the next; at most `max` in all.
/// `progress` is told each start and end.
pub async fn apply(
    client: &kube::Client,
    plan: &[Assessment],
    max: Option<usize>,
    dry_run: bool,
    timeout: Duration,
    progress: &(dyn Fn(&Assessment, Option<&Restart>) + Sync),
) -> Vec<(Assessment, Restart)> {
    let mut todo: Vec<&Assessment> = plan
        .iter()
        .filter(|a| a.stale && a.not_restartable.is_none())
        .collect();
    if let Some(m) = max {
        todo.truncate(m);
    }
    let mut by_ns: BTreeMap<&str, Vec<&Assessment>> = BTreeMap::new();
    for a in todo {
        by_ns.entry(a.namespace.as_str()).or_default().push(a);
    }
    let at = k8s_openapi::jiff::Timestamp::now().to_string();
    let lanes = by_ns.into_values().map(|list| {
        let at = at.clone();
        async move {
            let mut done = Vec::new();
            for a in list {
                progress(a, None);
                let r = if dry_run {
                    Restart::Planned
                } else {
                    match patch_restart(client, a, &at).await {
                        Err(e) => Restart::Failed(e.to_string()),
                        Ok(()) => {
                            let start = tokio::time::Instant::now();
                            loop {
                                match available(client, a).await {
                                    Ok(true) => break Restart::Done(start.elapsed().as_secs()),
                                    Err(kube::Error::Api(s)) if s.code == 404 => {
                                        break Restart::Failed("deleted while restarting".into());
                                    }
                                    Ok(false) | Err(_) if start.elapsed() >= timeout => {
                                        break Restart::NotAvailable;
                                    }
                                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                                }
                            }
                        }
                    }
                };
                progress(a, Some(&r));
                done.push((a.clone(), r));
            }
            done
        }
    });
    futures::future::join_all(lanes)
        .await
        .into_iter()
        .flatten()
        .collect()
}
