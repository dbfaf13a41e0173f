//! `otel-admission check [--pre]`: the cluster's own answer to "is the
//! install sound, and why would a pod not be instrumented?", one check per
//! line as `linkerd check` prints them.
//!
//! `--pre` asks what an install needs before there is one
//! ([`pre`]): the API server and its version, the rights to apply the
//! manifests, the CRDs, the Operator's pod webhook, the namespaces the
//! shipped selectors would touch. Without it, the install itself
//! ([`install`]): the webhook configurations, the Service and its ready
//! endpoints, the `caBundle` against the certificate actually served, its
//! expiry, the replicas' readiness, the Operator's webhook overlapping ours,
//! every Instrumentation and sidecar collector as the server parses them,
//! the rollout controller's leader. It only reads (and asks
//! `SelfSubjectAccessReview`s); it never changes the cluster.

mod install;
mod pre;
mod report;
mod served;

use std::time::Duration;

use kube::Api;
use kube::api::ListParams;

pub use pre::{PERMISSIONS, Permission, SHIPPED_EXCLUDED_NAMESPACES};
pub use report::{Finding, Report, Status};

/// The names the shipped manifests give the install's objects.
pub const NAME: &str = "otel-admission";
/// The TLS Secret the shipped Deployment mounts (`tls` volume).
pub const TLS_SECRET: &str = "otel-admission-tls";
/// The Operator's pod-mutating webhook, in its `MutatingWebhookConfiguration`.
pub const OPERATOR_POD_WEBHOOK: &str = "mpod.kb.io";

/// What `check` looks at.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the install lives (its Namespace).
    pub namespace: String,
    /// Before an install: [`pre`]; else [`install`].
    pub pre: bool,
    /// Each API call's and each TLS handshake's limit.
    pub timeout: Duration,
}

/// What every check reads through.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub opts: Options,
}

/// Runs the checks; the API server's reachability first, and nothing else
/// when it cannot be reached.
pub async fn run(client: kube::Client, opts: Options) -> Report {
    let mut report = Report::default();
    let ctx = Ctx { client, opts };
    if !api_server(&ctx, &mut report).await {
        return report;
    }
    crds(&ctx, &mut report).await;
    if ctx.opts.pre {
        pre::run(&ctx, &mut report).await;
    } else {
        install::run(&ctx, &mut report).await;
    }
    report
}

const API: &str = "kubernetes-api";

/// The API server answers, and whether it has native sidecars (1.29+),
/// which `sidecar.native: auto` uses.
async fn api_server(ctx: &Ctx, r: &mut Report) -> bool {
    match call(ctx, ctx.client.apiserver_version()).await {
        Err(e) => {
            r.push(Finding::fail(
                API,
                format!("cannot reach the API server: {e}"),
                "check the kubeconfig's current context (kubectl config current-context) and that kubectl get ns works",
            ));
            false
        }
        Ok(v) => {
            r.push(Finding::ok(
                API,
                format!("can reach the API server: {}", v.git_version),
            ));
            match crate::inject::context::parse_server_version(&v.major, &v.minor) {
                Some(ver) if ver >= crate::inject::context::NATIVE_SIDECAR_VERSION => {
                    r.push(Finding::ok(
                        API,
                        "native sidecars: the collector sidecar runs as a restartable init container (sidecar.native: auto)",
                    ))
                }
                Some(_) => r.push(Finding::warn(
                    API,
                    "no native sidecars before Kubernetes 1.29: the collector sidecar is a regular container, which keeps Jobs from completing",
                    "upgrade to 1.29 or later, or do not inject the collector sidecar into Jobs",
                )),
                None => r.push(Finding::warn(
                    API,
                    format!("cannot read the version {}.{}", v.major, v.minor),
                    "sidecar.native: auto takes native sidecars; set sidecar.native explicitly",
                )),
            }
            true
        }
    }
}

const CRDS: &str = "crds";

/// The two CRDs the server reads, whoever installed them: present, and
/// serving the version the server asks for.
async fn crds(ctx: &Ctx, r: &mut Report) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let wanted = [
        (
            "instrumentations.opentelemetry.io",
            "Instrumentation",
            &["v1alpha1"][..],
            "Instrumentations cannot be created; pods get the config's defaults only",
        ),
        (
            "opentelemetrycollectors.opentelemetry.io",
            "OpenTelemetryCollector",
            &["v1beta1"][..],
            "sidecar-mode collectors cannot be created; the collector sidecar comes from the config's template only",
        ),
    ];
    for (name, kind, versions, without) in wanted {
        match get_opt(ctx, &api, name).await {
            Err(e) => r.push(Finding::warn(
                CRDS,
                format!("cannot read the {kind} CRD: {e}"),
                "check needs get on customresourcedefinitions to tell",
            )),
            Ok(None) => r.push(Finding::warn(
                CRDS,
                format!("no {kind} CRD: {without}"),
                "kubectl apply -k manifests/crds (or keep the OpenTelemetry Operator's CRDs)",
            )),
            Ok(Some(crd)) => {
                let served: Vec<&str> = crd
                    .spec
                    .versions
                    .iter()
                    .filter(|v| v.served)
                    .map(|v| v.name.as_str())
                    .collect();
                let by = crd_owner(&crd.metadata);
                if versions.iter().any(|v| served.contains(v)) {
                    r.push(Finding::ok(
                        CRDS,
                        format!("{kind} CRD serves {} ({by})", served.join(", ")),
                    ));
                } else {
                    r.push(Finding::fail(
                        CRDS,
                        format!(
                            "{kind} CRD serves {} but not {}, which the server reads ({by})",
                            if served.is_empty() {
                                "nothing".into()
                            } else {
                                served.join(", ")
                            },
                            versions.join(", ")
                        ),
                        "apply a CRD that serves it: kubectl apply -k manifests/crds",
                    ));
                }
            }
        }
    }
}

/// Who installed a CRD, from its labels and annotations.
fn crd_owner(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    if label("app.kubernetes.io/name").as_deref() == Some(NAME) {
        return "installed from manifests/crds".into();
    }
    if let Some(release) = annotation("meta.helm.sh/release-name") {
        return format!("installed by Helm release {release}");
    }
    match label("app.kubernetes.io/managed-by") {
        Some(m) => format!("managed by {m}"),
        None => "installed by hand or by the Operator".into(),
    }
}

/// `n word` or `n words`.
pub(crate) fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

// === API helpers ===

/// One API call within the timeout, its error in words.
pub(crate) async fn call<T>(
    ctx: &Ctx,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    crate::cluster::within(ctx.opts.timeout, fut)
        .await
        .map_err(|e| api_error(&e))
}

fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!("forbidden: {}", s.message),
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// GET, with 404 as `None`.
pub(crate) async fn get_opt<K>(ctx: &Ctx, api: &Api<K>, name: &str) -> Result<Option<K>, String>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    call(ctx, api.get_opt(name)).await
}

/// LIST, with 404 (a kind not served) as `None`.
pub(crate) async fn list_opt<K>(
    ctx: &Ctx,
    api: &Api<K>,
    params: &ListParams,
) -> Result<Option<Vec<K>>, String>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match crate::cluster::within(ctx.opts.timeout, api.list(params)).await {
        Ok(list) => Ok(Some(list.items)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(api_error(&e)),
    }
}
