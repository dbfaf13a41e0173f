//! `check --pre`: what an install needs before there is one.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ListParams, PostParams};

use super::{Ctx, Finding, OPERATOR_POD_WEBHOOK, Report, call, list_opt};

const RIGHTS: &str = "permissions";
const OPERATOR: &str = "operator";
const NAMESPACES: &str = "namespaces";

/// One right `kubectl apply -k` of the base and the CRDs needs.
#[derive(Clone, Copy, Debug)]
pub struct Permission {
    /// The kind the manifests hold (tests compare the rendered base with
    /// this table).
    pub kind: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub namespaced: bool,
}

/// `create` on every kind of `manifests/base` and `manifests/crds`.
pub const PERMISSIONS: [Permission; 15] = [
    p("Namespace", "", "namespaces", false),
    p("ServiceAccount", "", "serviceaccounts", true),
    p("ConfigMap", "", "configmaps", true),
    p("Service", "", "services", true),
    p("ResourceQuota", "", "resourcequotas", true),
    p("Deployment", "apps", "deployments", true),
    p(
        "PodDisruptionBudget",
        "policy",
        "poddisruptionbudgets",
        true,
    ),
    p(
        "HorizontalPodAutoscaler",
        "autoscaling",
        "horizontalpodautoscalers",
        true,
    ),
    p(
        "ClusterRole",
        "rbac.authorization.k8s.io",
        "clusterroles",
        false,
    ),
    p(
        "ClusterRoleBinding",
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        false,
    ),
    p("Role", "rbac.authorization.k8s.io", "roles", true),
    p(
        "RoleBinding",
        "rbac.authorization.k8s.io",
        "rolebindings",
        true,
    ),
    p(
        "MutatingWebhookConfiguration",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        false,
    ),
    p(
        "ValidatingWebhookConfiguration",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        false,
    ),
    p(
        "CustomResourceDefinition",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        false,
    ),
];

const fn p(
    kind: &'static str,
    group: &'static str,
    resource: &'static str,
    namespaced: bool,
) -> Permission {
    Permission {
        kind,
        group,
        resource,
        namespaced,
    }
}

/// The namespaces the shipped `MutatingWebhookConfiguration`'s
/// `namespaceSelector` leaves out by name (`kubernetes.io/metadata.name
/// NotIn`), besides the install's own; and the label value that opts a
/// namespace out. `tests/check.rs` compares them with manifests/base.
pub const SHIPPED_EXCLUDED_NAMESPACES: [&str; 3] =
    ["kube-system", "kube-public", "kube-node-lease"];
const INJECT_LABEL: &str = "otel-admission.io/inject";

pub(super) async fn run(ctx: &Ctx, r: &mut Report) {
    permissions(ctx, r).await;
    operator_webhook(ctx, r).await;
    namespaces(ctx, r).await;
}

/// Asks the API server, for each right, whether the current user has it.
async fn permissions(ctx: &Ctx, r: &mut Report) {
    let api: Api<SelfSubjectAccessReview> = Api::all(ctx.client.clone());
    let mut missing = Vec::new();
    for perm in PERMISSIONS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("create".into()),
                    group: Some(perm.group.into()),
                    resource: Some(perm.resource.into()),
                    namespace: perm.namespaced.then(|| ctx.opts.namespace.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match call(ctx, api.create(&PostParams::default(), &review)).await {
            Err(e) => {
                r.push(Finding::warn(
                    RIGHTS,
                    format!("cannot ask the API server about rights: {e}"),
                    "kubectl auth can-i create clusterroles tells the same by hand",
                ));
                return;
            }
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => missing.push(if perm.group.is_empty() {
                perm.resource.to_string()
            } else {
                format!("{}.{}", perm.resource, perm.group)
            }),
        }
    }
    if missing.is_empty() {
        r.push(Finding::ok(
            RIGHTS,
            format!(
                "can create the {} kinds the install applies",
                PERMISSIONS.len()
            ),
        ));
    } else {
        r.push(Finding::fail(
            RIGHTS,
            format!("cannot create {}", missing.join(", ")),
            "install with an account that has these rights (cluster-admin has them): the webhook configurations and ClusterRoles are cluster-wide",
        ));
    }
}

/// The Operator's pod webhook, if it is installed: a migration runs both
/// for a while (docs/MIGRATING.md).
async fn operator_webhook(ctx: &Ctx, r: &mut Report) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    match list_opt(ctx, &api, &ListParams::default()).await {
        Err(e) => r.push(Finding::warn(
            OPERATOR,
            format!("cannot list MutatingWebhookConfigurations: {e}"),
            "check needs list on mutatingwebhookconfigurations to tell",
        )),
        Ok(list) => {
            let configs: Vec<String> = list
                .unwrap_or_default()
                .into_iter()
                .filter(|c| {
                    c.webhooks
                        .iter()
                        .flatten()
                        .any(|w| w.name == OPERATOR_POD_WEBHOOK)
                })
                .filter_map(|c| c.metadata.name)
                .collect();
            if configs.is_empty() {
                r.push(Finding::ok(
                    OPERATOR,
                    "the OpenTelemetry Operator's pod webhook is not installed",
                ));
            } else {
                r.push(Finding::warn(
                    OPERATOR,
                    format!(
                        "the OpenTelemetry Operator's pod webhook {OPERATOR_POD_WEBHOOK} is installed (MutatingWebhookConfiguration {})",
                        configs.join(", ")
                    ),
                    "migrating: follow docs/MIGRATING.md (install with components/migration, move namespaces one at a time); both webhooks at once are safe, the first to run instruments a pod",
                ));
            }
        }
    }
}

/// Which namespaces the shipped selectors would touch: the webhook's
/// (every namespace but the system ones, the install's and those labelled
/// `otel-admission.io/inject=disabled`), and the shipped config's rule
/// (namespaces labelled `otel-admission.io/inject=enabled`).
async fn namespaces(ctx: &Ctx, r: &mut Report) {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let list = match list_opt(ctx, &api, &ListParams::default()).await {
        Err(e) => {
            r.push(Finding::warn(
                NAMESPACES,
                format!("cannot list namespaces: {e}"),
                "check needs list on namespaces to tell",
            ));
            return;
        }
        Ok(l) => l.unwrap_or_default(),
    };
    let labels = |n: &Namespace| -> BTreeMap<String, String> {
        n.metadata.labels.clone().unwrap_or_default()
    };
    let name = |n: &Namespace| n.metadata.name.clone().unwrap_or_default();
    let seen: Vec<String> = list
        .iter()
        .filter(|n| {
            let nm = name(n);
            !SHIPPED_EXCLUDED_NAMESPACES.contains(&nm.as_str())
                && nm != ctx.opts.namespace
                && labels(n).get(INJECT_LABEL).map(String::as_str) != Some("disabled")
        })
        .map(name)
        .collect();
    r.push(Finding::ok(
        NAMESPACES,
        format!(
            "the webhook would see pods in {} of {} namespaces (not {}, {}, or those labelled {INJECT_LABEL}=disabled)",
            seen.len(),
            list.len(),
            SHIPPED_EXCLUDED_NAMESPACES.join(", "),
            ctx.opts.namespace
        ),
    ));
    let enabled: Vec<String> = list
        .iter()
        .filter(|n| labels(n).get(INJECT_LABEL).map(String::as_str) == Some("enabled"))
        .map(name)
        .collect();
    if enabled.is_empty() {
        r.push(Finding::ok(
            NAMESPACES,
            format!(
                "no namespace is labelled {INJECT_LABEL}=enabled yet: the shipped config injects only where pods or namespaces ask (annotations)"
            ),
        ));
    } else {
        r.push(Finding::ok(
            NAMESPACES,
            format!(
                "the shipped config's rule labelled-namespaces-sdk injects SDK settings in {}",
                enabled.join(", ")
            ),
        ));
    }
}
