//! Live `explain` and `inject`: `explain -n shop deploy/checkout` (or every
//! workload of a namespace) reads the workload, its Namespace, the
//! cluster's Instrumentations and OpenTelemetryCollectors and the live
//! config (the `otel-admission-config` ConfigMap) from the cluster of the
//! kubeconfig, then answers with the offline core ([`manifest::process`]
//! over a [`StaticView`]), so the answer is `/mutate`'s for the same
//! cluster state. Instrumentations and collectors are read as the server's
//! watch reads them; one the server rejects is left out and named on
//! stderr. `explain` also says whether the running pods carry what they
//! would get now, through [`crate::rollout::assess`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::{Value, json};

use crate::cli::args::InjectArgs;
use crate::cli::offline::{Format, output, write_out};
use crate::config::{ClusterMode, Config};
use crate::inject::cluster_view::{NamespaceMeta, StaticView};
use crate::inject::manifest;
use crate::inject::status::{INJECTED_LABEL, STATUS_KEY, Status};
use crate::rollout::{Assessment, Kind, Workload, assess};

/// The ConfigMap the manifests install (`manifests/base/config.yaml`).
pub const CONFIG_MAP: &str = "otel-admission-config";
/// Its key holding the config file.
pub const CONFIG_KEY: &str = "config.yaml";

/// The longest one read may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Objects per list request.
const PAGE: u32 = 500;

/// What `explain` calls the objects it read (`cluster[0] Deployment/...`).
const ORIGIN: &str = "cluster";

/// Whether the arguments ask for the live mode: a `KIND/NAME` or `-n`.
pub(crate) fn is_live(args: &InjectArgs) -> bool {
    args.target.is_some() || args.in_namespace.is_some()
}

/// The workload kinds live mode reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    Job,
    Pod,
}

impl WorkloadKind {
    /// The order of a namespace's listing.
    const ALL: [Self; 6] = [
        Self::Deployment,
        Self::StatefulSet,
        Self::DaemonSet,
        Self::CronJob,
        Self::Job,
        Self::Pod,
    ];

    /// `deploy`, `deployment`, `deployments`, `deployment.apps`, as kubectl
    /// reads them, in any case.
    fn parse(word: &str) -> Option<Self> {
        let w = word.to_ascii_lowercase();
        let w = w
            .strip_suffix(".apps")
            .or_else(|| w.strip_suffix(".batch"))
            .unwrap_or(&w);
        Some(match w {
            "deploy" | "deployment" | "deployments" => Self::Deployment,
            "sts" | "statefulset" | "statefulsets" => Self::StatefulSet,
            "ds" | "daemonset" | "daemonsets" => Self::DaemonSet,
            "cj" | "cronjob" | "cronjobs" => Self::CronJob,
            "job" | "jobs" => Self::Job,
            "po" | "pod" | "pods" => Self::Pod,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::CronJob => "CronJob",
            Self::Job => "Job",
            Self::Pod => "Pod",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            Self::Deployment => ApiResource::erase::<Deployment>(&()),
            Self::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Self::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Self::CronJob => ApiResource::erase::<CronJob>(&()),
            Self::Job => ApiResource::erase::<Job>(&()),
            Self::Pod => ApiResource::erase::<Pod>(&()),
        }
    }

    /// The rollout kind whose staleness rules apply. `assess` uses the kind
    /// only as the template's owner, which no fingerprint includes; Jobs,
    /// CronJobs and Pods are assessed as a Deployment's template would be.
    fn rollout_kind(self) -> Kind {
        match self {
            Self::StatefulSet => Kind::StatefulSet,
            Self::DaemonSet => Kind::DaemonSet,
            _ => Kind::Deployment,
        }
    }
}

/// `KIND/NAME`, as kubectl spells it.
fn parse_target(target: &str) -> anyhow::Result<(WorkloadKind, String)> {
    let (kind, name) = target.split_once('/').unwrap_or(("", target));
    let Some(k) = WorkloadKind::parse(kind) else {
        anyhow::bail!(
            "{target}: give KIND/NAME, KIND one of deploy, sts, ds, cronjob, job, pod (e.g. deploy/checkout)"
        );
    };
    if name.is_empty() || name.contains('/') {
        anyhow::bail!("{target}: give KIND/NAME (e.g. deploy/checkout)");
    }
    Ok((k, name.to_string()))
}

/// `f`, failed after [`REQUEST_TIMEOUT`].
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    crate::cluster::within(REQUEST_TIMEOUT, f).await
}

/// Every object `api` lists, a page at a time.
async fn list_all(api: &Api<DynamicObject>) -> Result<Vec<DynamicObject>, kube::Error> {
    let mut lp = ListParams::default().limit(PAGE);
    let mut out = Vec::new();
    loop {
        let list = bounded(api.list(&lp)).await?;
        let next = list.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(list.items);
        match next {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// The controller among `meta`'s owners.
fn controller(meta: &ObjectMeta) -> Option<(&str, &str)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.as_str(), o.name.as_str()))
}

/// One object read from the cluster, as the manifest core takes it.
struct Found {
    kind: WorkloadKind,
    name: String,
    /// The object as JSON, without `status` and `metadata.managedFields`.
    object: Value,
}

fn found(kind: WorkloadKind, obj: DynamicObject) -> anyhow::Result<Found> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut object = serde_json::to_value(&obj).context("cannot convert an object to JSON")?;
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
        o.insert("apiVersion".into(), json!(kind.resource().api_version));
        o.insert("kind".into(), json!(kind.name()));
    }
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    Ok(Found { kind, name, object })
}

/// The live inputs: the client, the namespace, and what it read.
struct Cluster {
    client: kube::Client,
    namespace: String,
    /// As admission has it: the fingerprint depends on it.
    server_version: Option<(u32, u32)>,
}

impl Cluster {
    fn api(&self, kind: WorkloadKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &kind.resource())
    }

    /// The target, or every workload of the namespace: Deployments,
    /// StatefulSets, DaemonSets, CronJobs, Jobs no CronJob owns, and Pods
    /// no controller owns.
    async fn workloads(
        &self,
        target: Option<(WorkloadKind, String)>,
    ) -> anyhow::Result<Vec<Found>> {
        let ns = &self.namespace;
        if let Some((kind, name)) = target {
            let obj = match bounded(self.api(kind).get(&name)).await {
                Ok(o) => o,
                Err(e) if is_not_found(&e) => anyhow::bail!(
                    "{} {name} not found in namespace {ns}",
                    kind.name().to_ascii_lowercase()
                ),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot read {} {ns}/{name}",
                            kind.name().to_ascii_lowercase()
                        )
                    });
                }
            };
            return Ok(vec![found(kind, obj)?]);
        }
        let mut out = Vec::new();
        for kind in WorkloadKind::ALL {
            let what = || format!("cannot list the {}s of namespace {ns}", kind.name());
            let mut objects = if kind == WorkloadKind::Pod {
                // Metadata first: only the pods no controller owns are read whole.
                let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                let metas = bounded(api.list_metadata(&ListParams::default()))
                    .await
                    .with_context(what)?;
                let mut pods = Vec::new();
                for m in metas.items {
                    if controller(&m.metadata).is_some() {
                        continue;
                    }
                    let Some(name) = m.metadata.name else {
                        continue;
                    };
                    match bounded(self.api(kind).get(&name)).await {
                        Ok(p) => pods.push(p),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e).with_context(what),
                    }
                }
                pods
            } else {
                list_all(&self.api(kind)).await.with_context(what)?
            };
            objects.retain(|o| {
                kind != WorkloadKind::Job
                    || controller(&o.metadata).is_none_or(|(k, _)| k != "CronJob")
            });
            objects.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            for o in objects {
                out.push(found(kind, o)?);
            }
        }
        Ok(out)
    }

    /// The namespace's labels and annotations.
    async fn namespace_meta(&self) -> anyhow::Result<NamespaceMeta> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match bounded(api.get(&self.namespace)).await {
            Ok(ns) => Ok(NamespaceMeta::from(&ns)),
            Err(e) if is_not_found(&e) => {
                anyhow::bail!("namespace {} not found", self.namespace)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read namespace {}", self.namespace)),
        }
    }

    /// Every Instrumentation and OpenTelemetryCollector of the cluster, as
    /// the server's watch converts them; the ones of the namespace it
    /// rejects are named in `warnings`. A kind the API server does not
    /// serve is none, as for the server.
    async fn view(
        &self,
        meta: NamespaceMeta,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<StaticView> {
        let mut view = StaticView::new().with_namespace(self.namespace.clone(), meta);
        let in_ns = |o: &DynamicObject| o.metadata.namespace.as_deref() == Some(&self.namespace);
        let label = |o: &DynamicObject| crate::cluster::object_name(&o.metadata);
        let insts = self
            .all(&crate::cluster::instrumentation_resource(), warnings)
            .await?;
        for obj in insts {
            let (mine, at) = (in_ns(&obj), label(&obj));
            match crate::cluster::parse_instrumentation(obj) {
                Ok(inst) => view = view.with_instrumentation(inst, ""),
                Err(why) if mine => warnings.push(format!(
                    "Instrumentation {at} is rejected by the server, left out: {why}"
                )),
                Err(_) => {}
            }
        }
        let collectors = self
            .all(&crate::cluster::collector_resource(), warnings)
            .await?;
        for obj in collectors {
            match crate::cluster::parse_collector(&obj) {
                Ok(c) => view = view.with_collector(c),
                Err(why) if in_ns(&obj) => warnings.push(format!(
                    "OpenTelemetryCollector {} is rejected by the server, left out: {why}",
                    label(&obj)
                )),
                Err(_) => {}
            }
        }
        Ok(view)
    }

    /// Every object of a custom resource, cluster-wide; none when the API
    /// server does not serve it (no CRD), with a warning when RBAC forbids.
    async fn all(
        &self,
        resource: &ApiResource,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<Vec<DynamicObject>> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), resource);
        let what = format!("{}.{}", resource.plural, resource.group);
        match list_all(&api).await {
            Ok(v) => Ok(v),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) if is_forbidden(&e) => {
                warnings.push(format!(
                    "cannot list {what} (403): answered as if there were none; grant list on {what}"
                ));
                Ok(Vec::new())
            }
            Err(e) => Err(e).with_context(|| format!("cannot list {what}")),
        }
    }

    /// The ConfigMap `otel-admission-config` of the install namespace, as
    /// the server mounts it; the defaults when there is none (said on stderr).
    async fn config(&self, install_ns: &str) -> anyhow::Result<Config> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), install_ns);
        let origin = format!("ConfigMap {install_ns}/{CONFIG_MAP}");
        match bounded(api.get(CONFIG_MAP)).await {
            Ok(cm) => {
                let data = cm.data.unwrap_or_default();
                let Some(text) = data.get(CONFIG_KEY) else {
                    anyhow::bail!(
                        "{origin} has no key {CONFIG_KEY}; the server reads its config from there (give --config FILE to use another)"
                    );
                };
                Ok(Config::from_yaml(
                    text,
                    &format!("{origin} data.{CONFIG_KEY}"),
                )?)
            }
            Err(e) if is_not_found(&e) => {
                eprintln!(
                    "note: no {origin} (--install-namespace {install_ns}): using the default config; give --config FILE to use another"
                );
                Ok(Config::default())
            }
            Err(e) => Err(e).with_context(|| {
                format!("cannot read {origin}; give --config FILE, or --install-namespace where otel-admission runs")
            }),
        }
    }

    /// The labels of the namespace's pods that are not being deleted
    /// (metadata only), with each pod's name.
    async fn pods(&self) -> anyhow::Result<Vec<PodSeen>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = bounded(api.list_metadata(&ListParams::default()))
            .await
            .with_context(|| format!("cannot list the pods of namespace {}", self.namespace))?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| PodSeen {
                name: p.metadata.name.clone().unwrap_or_default(),
                fingerprint: fingerprint(&p.metadata),
                owner: controller(&p.metadata).map(|(k, n)| (k.to_string(), n.to_string())),
                labels: p.metadata.labels.unwrap_or_default(),
            })
            .collect())
    }

    /// A typed read of `name`; `None` when it is not there.
    async fn get<K>(&self, name: &str) -> anyhow::Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        match bounded(api.get(name)).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot read {} {}/{name}",
                    K::kind(&Default::default()),
                    self.namespace
                )
            }),
        }
    }
}

/// A running pod as staleness reads it.
#[derive(Debug)]
struct PodSeen {
    name: String,
    labels: BTreeMap<String, String>,
    /// From the `otel-admission.io/injected` label, else the status annotation.
    fingerprint: Option<String>,
    /// Its controller: `(kind, name)`.
    owner: Option<(String, String)>,
}

/// The fingerprint a pod carries: the label, else the status annotation's.
fn fingerprint(meta: &ObjectMeta) -> Option<String> {
    let label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(INJECTED_LABEL))
        .filter(|f| !f.is_empty());
    label.cloned().or_else(|| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(STATUS_KEY))
            .and_then(|s| serde_json::from_str::<Status>(s).ok())
            .map(|s| s.fingerprint)
            .filter(|f| !f.is_empty())
    })
}

/// Whether the running pods carry what they would get now.
#[derive(Debug)]
enum Running {
    /// No running pod.
    None,
    /// `pods` running, `stale` of them carry another fingerprint.
    Assessed {
        pods: usize,
        stale: usize,
        assessment: Assessment,
    },
    /// Not known, and why.
    Unknown(String),
}

impl Running {
    fn text(&self) -> String {
        match self {
            Self::None => "running pods: none".into(),
            Self::Assessed {
                pods,
                stale: 0,
                assessment,
            } if !assessment.stale => format!("running pods: {pods}, up to date"),
            Self::Assessed {
                pods,
                stale,
                assessment,
            } => format!(
                "running pods: {stale} of {pods} stale: {}",
                assessment.reason
            ),
            Self::Unknown(why) => format!("running pods: cannot tell: {why}"),
        }
    }

    fn json(&self) -> Value {
        match self {
            Self::None => json!({"pods": 0, "stale": 0, "upToDate": true}),
            Self::Assessed {
                pods,
                stale,
                assessment: a,
            } => {
                let mut v = json!({
                    "pods": pods,
                    "stale": stale,
                    "upToDate": !a.stale,
                    "current": a.current,
                    "wanted": a.wanted,
                });
                if let Some(c) = a.cause {
                    v["cause"] = json!(c.as_str());
                    v["reason"] = json!(a.reason);
                }
                v
            }
            Self::Unknown(why) => json!({"unknown": why}),
        }
    }
}

/// The template and selector a workload makes its pods from.
fn template_of(
    object: &Value,
    kind: WorkloadKind,
) -> Option<(PodTemplateSpec, Option<LabelSelector>)> {
    let (template, selector) = match kind {
        WorkloadKind::CronJob => (object.pointer("/spec/jobTemplate/spec/template")?, None),
        WorkloadKind::Pod => return None,
        _ => (
            object.pointer("/spec/template")?,
            object.pointer("/spec/selector"),
        ),
    };
    let template = serde_json::from_value(template.clone()).ok()?;
    let selector = selector.and_then(|s| serde_json::from_value(s.clone()).ok());
    Some((template, selector))
}

/// The template the pod's controller would make it from now: a
/// ReplicaSet's Deployment's, a StatefulSet's, a DaemonSet's, a Job's.
async fn owner_template(
    cluster: &Cluster,
    kind: &str,
    name: &str,
) -> anyhow::Result<Result<(WorkloadKind, PodTemplateSpec), String>> {
    let missing = |what: &str| Ok(Err(format!("its controller {what} {name} is gone")));
    let got = match kind {
        "ReplicaSet" => {
            let Some(rs) = cluster.get::<ReplicaSet>(name).await? else {
                return missing(kind);
            };
            // A Deployment's pod is replaced from the Deployment's template.
            if let Some(("Deployment", d)) = controller(&rs.metadata) {
                let Some(d) = cluster.get::<Deployment>(d).await? else {
                    return missing("Deployment");
                };
                d.spec.map(|s| (WorkloadKind::Deployment, s.template))
            } else {
                rs.spec
                    .and_then(|s| s.template)
                    .map(|t| (WorkloadKind::Deployment, t))
            }
        }
        "StatefulSet" => {
            let Some(s) = cluster.get::<StatefulSet>(name).await? else {
                return missing(kind);
            };
            s.spec.map(|s| (WorkloadKind::StatefulSet, s.template))
        }
        "DaemonSet" => {
            let Some(d) = cluster.get::<DaemonSet>(name).await? else {
                return missing(kind);
            };
            d.spec.map(|s| (WorkloadKind::DaemonSet, s.template))
        }
        "Job" => {
            let Some(j) = cluster.get::<Job>(name).await? else {
                return missing(kind);
            };
            j.spec.map(|s| (WorkloadKind::Job, s.template))
        }
        other => {
            return Ok(Err(format!(
                "its controller is a {other}, whose template is not read"
            )));
        }
    };
    Ok(got.ok_or_else(|| format!("its controller {kind} {name} has no pod template")))
}

/// The running pods of one object, assessed as `rollout plan` assesses
/// them: the fingerprint its template would get now against theirs.
async fn running(
    cluster: &Cluster,
    found: &Found,
    pods: &[PodSeen],
    jobs: &[(String, Option<LabelSelector>, Option<String>)],
    config: &Config,
    view: &StaticView,
) -> anyhow::Result<Running> {
    let workload = |kind: WorkloadKind, name: &str, template: PodTemplateSpec| Workload {
        kind: kind.rollout_kind(),
        namespace: cluster.namespace.clone(),
        name: name.to_string(),
        template,
        opted_out: false,
        paused: false,
        scaled_to_zero: false,
        rolling: false,
    };
    let judge = |w: Workload, mine: Vec<&PodSeen>| {
        if mine.is_empty() {
            return Running::None;
        }
        let prints: Vec<Option<String>> = mine.iter().map(|p| p.fingerprint.clone()).collect();
        let assessment = assess(&w, &prints, config, view, cluster.server_version);
        let stale = prints
            .iter()
            .filter(|f| f.as_deref().unwrap_or_default() != assessment.wanted)
            .count();
        Running::Assessed {
            pods: mine.len(),
            stale,
            assessment,
        }
    };
    if found.kind == WorkloadKind::Pod {
        let Some(pod) = pods.iter().find(|p| p.name == found.name) else {
            return Ok(Running::None);
        };
        let template = match &pod.owner {
            Some((kind, name)) => match owner_template(cluster, kind, name).await? {
                Ok((kind, t)) => (kind, t),
                Err(why) => return Ok(Running::Unknown(why)),
            },
            // Un-owned and never injected: the pod as it is is what a
            // new one would be sent as.
            None if pod.fingerprint.is_none()
                && found
                    .object
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(STATUS_KEY))
                    .is_none() =>
            {
                let t = serde_json::from_value(json!({
                    "metadata": found.object.get("metadata").cloned().unwrap_or(Value::Null),
                    "spec": found.object.get("spec").cloned().unwrap_or(Value::Null),
                }))
                .context("the pod does not parse")?;
                (WorkloadKind::Pod, t)
            }
            None => {
                return Ok(Running::Unknown(
                    "an injected pod with no controller has no template to compare with".into(),
                ));
            }
        };
        return Ok(judge(
            workload(template.0, &found.name, template.1),
            vec![pod],
        ));
    }
    let Some((template, selector)) = template_of(&found.object, found.kind) else {
        return Ok(Running::Unknown("no pod template".into()));
    };
    let mine: Vec<&PodSeen> = match (found.kind, selector) {
        // A CronJob's pods are those of the Jobs it owns.
        (WorkloadKind::CronJob, _) => pods
            .iter()
            .filter(|p| {
                jobs.iter().any(|(_, sel, owner)| {
                    owner.as_deref() == Some(found.name.as_str())
                        && sel
                            .as_ref()
                            .is_some_and(|s| crate::selector::matches(s, &p.labels))
                })
            })
            .collect(),
        (_, Some(sel)) => pods
            .iter()
            .filter(|p| crate::selector::matches(&sel, &p.labels))
            .collect(),
        (_, None) => Vec::new(),
    };
    Ok(judge(workload(found.kind, &found.name, template), mine))
}

/// The namespace's Jobs: name, selector and owning CronJob.
async fn jobs(
    cluster: &Cluster,
) -> anyhow::Result<Vec<(String, Option<LabelSelector>, Option<String>)>> {
    let list = list_all(&cluster.api(WorkloadKind::Job))
        .await
        .with_context(|| format!("cannot list the Jobs of namespace {}", cluster.namespace))?;
    Ok(list
        .into_iter()
        .map(|j| {
            let owner = controller(&j.metadata)
                .filter(|(k, _)| *k == "CronJob")
                .map(|(_, n)| n.to_string());
            let sel = j
                .data
                .pointer("/spec/selector")
                .and_then(|s| serde_json::from_value(s.clone()).ok());
            (j.metadata.name.unwrap_or_default(), sel, owner)
        })
        .collect())
}

/// `inject` or `explain` against the cluster.
pub(crate) fn live_cmd(args: &InjectArgs, explain: bool) -> anyhow::Result<()> {
    let command = if explain { "explain" } else { "inject" };
    if args.filename.is_some() {
        let ns = args.in_namespace.as_deref().unwrap_or("NAMESPACE");
        anyhow::bail!(
            "{command}: -f reads a manifest offline, -n/KIND/NAME read the cluster: give one. For a workload in the cluster: {command} -n {ns} KIND/NAME; for a file against the cluster's namespace, export it (kubectl get namespace {ns} -o yaml > ns.yaml) and give -f FILE --namespace ns.yaml"
        );
    }
    if args.namespace.is_some() || !args.instrumentation.is_empty() {
        anyhow::bail!(
            "{command}: --namespace and --instrumentation are files for the offline mode (-f); live, the Namespace, Instrumentations and collectors are read from the cluster"
        );
    }
    let target = args.target.as_deref().map(parse_target).transpose()?;
    let (format, file) = output(args, explain)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(live(args, target, explain, format, file))
}

async fn live(
    args: &InjectArgs,
    target: Option<(WorkloadKind, String)>,
    explain: bool,
    format: Format,
    file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let command = if explain { "explain" } else { "inject" };
    let needs = || {
        format!(
            "{command} -n/KIND/NAME reads the cluster of the kubeconfig (offline, give -f FILE)"
        )
    };
    let Some((client, server_version)) = crate::cluster::connect(ClusterMode::On)
        .await
        .with_context(needs)?
    else {
        anyhow::bail!(
            "{command} -n needs a cluster (kubeconfig or in-cluster service account); offline, give -f FILE"
        );
    };
    let namespace = args
        .in_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let cluster = Cluster {
        client,
        namespace,
        server_version,
    };
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => cluster.config(&args.install_namespace).await?,
    };
    // As `serve` in its pod: its own namespace is excluded from injection.
    if config.server.namespace.is_none() {
        config.server.namespace = Some(args.install_namespace.clone());
    }
    let meta = cluster.namespace_meta().await?;
    let mut warnings = Vec::new();
    let view = cluster.view(meta, &mut warnings).await?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let found = cluster.workloads(target).await?;
    let ns = &cluster.namespace;
    if found.is_empty() {
        let none = format!(
            "namespace {ns}: no Deployment, StatefulSet, DaemonSet, CronJob, Job or Pod without a controller"
        );
        if format == Format::Text {
            return write_out(file, &format!("{none}\n"));
        }
        eprintln!("{none}");
        return write_out(file, "");
    }
    let text = found
        .iter()
        .map(|f| f.object.to_string())
        .collect::<Vec<_>>()
        .join("\n---\n");
    let inputs = manifest::Inputs {
        config: &config,
        view: &view,
        default_namespace: ns,
        server_version,
        given: manifest::Given {
            namespaces: true,
            instrumentations: true,
        },
        as_pods: format == Format::Pod,
    };
    let mut processed = manifest::process(&text, ORIGIN, &inputs)?;
    // Nothing was assumed: every input came from the cluster.
    for r in &mut processed.reports {
        r.assumptions.clear();
    }
    if !explain {
        for r in &processed.reports {
            for w in &r.outcome.warnings {
                eprintln!("{ORIGIN}[{}] {}: {w}", r.index, r.workload);
            }
        }
    }
    let out = match format {
        Format::Yaml => manifest::to_yaml(&processed.documents).context("cannot write YAML")?,
        Format::Pod => manifest::pods_yaml(&processed.reports).context("cannot write YAML")?,
        Format::Text | Format::Json => {
            let pods = cluster.pods().await?;
            let jobs = if found.iter().any(|f| f.kind == WorkloadKind::CronJob) {
                jobs(&cluster).await?
            } else {
                Vec::new()
            };
            let mut out = String::new();
            for r in &processed.reports {
                let Some(f) = found.get(r.index) else {
                    continue;
                };
                let run = running(&cluster, f, &pods, &jobs, &config, &view).await?;
                let one = std::slice::from_ref(r);
                if format == Format::Text {
                    out.push_str(&manifest::explain(ORIGIN, one));
                    out.push_str(&format!("  {}\n", run.text()));
                } else {
                    for line in manifest::explain_json(ORIGIN, one).lines() {
                        let mut doc: Value =
                            serde_json::from_str(line).context("explain's JSON")?;
                        doc["runningPods"] = run.json();
                        out.push_str(&doc.to_string());
                        out.push('\n');
                    }
                }
            }
            out
        }
    };
    write_out(file, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_kubectl_reads_them() {
        for (t, kind, name) in [
            ("deploy/checkout", WorkloadKind::Deployment, "checkout"),
            ("deployment.apps/a", WorkloadKind::Deployment, "a"),
            ("STS/db", WorkloadKind::StatefulSet, "db"),
            ("daemonsets/agent", WorkloadKind::DaemonSet, "agent"),
            ("cj/nightly", WorkloadKind::CronJob, "nightly"),
            ("job/once", WorkloadKind::Job, "once"),
            ("po/web-1", WorkloadKind::Pod, "web-1"),
        ] {
            let (k, n) = parse_target(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!((k, n.as_str()), (kind, name), "{t}");
        }
        for bad in ["checkout", "svc/web", "deploy/", "deploy/a/b"] {
            let e = parse_target(bad).expect_err(bad).to_string();
            assert!(e.contains("KIND/NAME"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_pod_carries_its_fingerprint_in_the_label_or_the_status() {
        let meta = |v: Value| -> ObjectMeta { serde_json::from_value(v).expect("meta") };
        assert_eq!(
            fingerprint(&meta(json!({"labels": {INJECTED_LABEL: "ab"}}))).as_deref(),
            Some("ab")
        );
        let status = r#"{"version":"0.1.0","fingerprint":"cd"}"#;
        assert_eq!(
            fingerprint(&meta(json!({"annotations": {STATUS_KEY: status}}))).as_deref(),
            Some("cd")
        );
        assert_eq!(fingerprint(&meta(json!({}))), None);
    }
}
