//! `check`: the install itself, as the API server and the kubelet see it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams};
use rustls::pki_types::{CertificateDer, UnixTime};

use super::served;
use super::{
    Ctx, Finding, NAME, OPERATOR_POD_WEBHOOK, Report, TLS_SECRET, get_opt, list_opt, plural,
};

const WEBHOOKS: &str = "webhooks";
const SERVING: &str = "serving";
const REPLICAS: &str = "replicas";
const OPERATOR: &str = "operator";
const INSTRUMENTATIONS: &str = "instrumentations";
const COLLECTORS: &str = "collectors";
const ROLLOUT: &str = "rollout";

/// Warn this long before the served certificate ends.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// One webhook of our two configurations, as the API server calls it.
struct Hook {
    /// `mutate.otel-admission.io`, ...
    name: String,
    /// `namespace/name` and port of the Service.
    service: Option<(String, String, i32)>,
    ca_bundle: Vec<u8>,
    namespace_selector: Option<LabelSelector>,
}

pub(super) async fn run(ctx: &Ctx, r: &mut Report) {
    let hooks = webhooks(ctx, r).await;
    serving(ctx, r, &hooks).await;
    replicas(ctx, r).await;
    operator_overlap(ctx, r, &hooks).await;
    instrumentations(ctx, r).await;
    collectors(ctx, r).await;
    rollout(ctx, r).await;
}

// === The webhook configurations ===

async fn webhooks(ctx: &Ctx, r: &mut Report) -> Vec<Hook> {
    let mut hooks = Vec::new();
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    match get_opt(ctx, &mutating, NAME).await {
        Err(e) => r.push(cannot_read("MutatingWebhookConfiguration", &e)),
        Ok(None) => r.push(missing_config("MutatingWebhookConfiguration")),
        Ok(Some(c)) => {
            let inject_from = inject_ca_from(&c.metadata);
            let found: Vec<Hook> = c
                .webhooks
                .into_iter()
                .flatten()
                .map(|w| hook(w.name, w.client_config, w.namespace_selector))
                .collect();
            report_config(
                r,
                "MutatingWebhookConfiguration",
                &found,
                inject_from.as_deref(),
            );
            hooks.extend(found);
        }
    }
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(ctx.client.clone());
    match get_opt(ctx, &validating, NAME).await {
        Err(e) => r.push(cannot_read("ValidatingWebhookConfiguration", &e)),
        Ok(None) => r.push(missing_config("ValidatingWebhookConfiguration")),
        Ok(Some(c)) => {
            let inject_from = inject_ca_from(&c.metadata);
            let found: Vec<Hook> = c
                .webhooks
                .into_iter()
                .flatten()
                .map(|w| hook(w.name, w.client_config, w.namespace_selector))
                .collect();
            report_config(
                r,
                "ValidatingWebhookConfiguration",
                &found,
                inject_from.as_deref(),
            );
            hooks.extend(found);
        }
    }
    hooks
}

fn hook(
    name: String,
    cc: k8s_openapi::api::admissionregistration::v1::WebhookClientConfig,
    namespace_selector: Option<LabelSelector>,
) -> Hook {
    Hook {
        name,
        service: cc
            .service
            .map(|s| (s.namespace, s.name, s.port.unwrap_or(443))),
        ca_bundle: cc.ca_bundle.map(|b| b.0).unwrap_or_default(),
        namespace_selector,
    }
}

fn inject_ca_from(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get("cert-manager.io/inject-ca-from"))
        .cloned()
}

fn cannot_read(kind: &str, e: &str) -> Finding {
    Finding::fail(
        WEBHOOKS,
        format!("cannot read {kind} {NAME}: {e}"),
        format!("check needs get on {}s", kind.to_lowercase()),
    )
}

fn missing_config(kind: &str) -> Finding {
    Finding::fail(
        WEBHOOKS,
        format!("no {kind} {NAME}: the API server sends us nothing"),
        "install it: kubectl apply -k manifests/overlays/cert-manager (README, Install), or your own overlay",
    )
}

fn report_config(r: &mut Report, kind: &str, hooks: &[Hook], inject_from: Option<&str>) {
    for h in hooks {
        match &h.service {
            None => r.push(Finding::warn(
                WEBHOOKS,
                format!("{kind} {NAME}: webhook {} calls a URL, not a Service", h.name),
                "check reads the Service behind a webhook; with a URL it cannot check the serving side",
            )),
            Some((ns, svc, port)) => r.push(Finding::ok(
                WEBHOOKS,
                format!("{kind} {NAME}: webhook {} calls Service {ns}/{svc}:{port}", h.name),
            )),
        }
        if h.ca_bundle.is_empty() {
            r.push(match inject_from {
                Some(from) => Finding::fail(
                    WEBHOOKS,
                    format!("webhook {}: caBundle is empty: cert-manager has not injected the CA of {from}", h.name),
                    "is cert-manager's cainjector running (kubectl -n cert-manager get pods)? Is the Certificate ready (kubectl get certificate -A)?",
                ),
                None => Finding::fail(
                    WEBHOOKS,
                    format!("webhook {}: caBundle is empty: the API server cannot trust the webhook", h.name),
                    "use components/cert-manager, or components/dev-certs on a dev cluster, or set caBundle to the CA that signed the serving certificate",
                ),
            });
        }
    }
}

// === The Service, its endpoints, the certificate served ===

async fn serving(ctx: &Ctx, r: &mut Report, hooks: &[Hook]) {
    let mut services: Vec<(String, String, i32)> =
        hooks.iter().filter_map(|h| h.service.clone()).collect();
    services.sort();
    services.dedup();
    for (ns, svc, port) in services {
        let Some(addrs) = endpoints(ctx, r, &ns, &svc, port).await else {
            continue;
        };
        let dns = format!("{svc}.{ns}.svc");
        let Some((chain, from)) = served_chain(ctx, r, &ns, &addrs, &dns).await else {
            continue;
        };
        for h in hooks
            .iter()
            .filter(|h| h.service.as_ref().is_some_and(|s| s.0 == ns && s.1 == svc))
            .filter(|h| !h.ca_bundle.is_empty())
        {
            match served::verify(&h.ca_bundle, &chain, &dns, UnixTime::now()) {
                Ok(()) => r.push(Finding::ok(
                    SERVING,
                    format!(
                        "the caBundle of {} verifies the certificate {from} for {dns}",
                        h.name
                    ),
                )),
                Err(why) => r.push(Finding::fail(
                    SERVING,
                    format!(
                        "the caBundle of {} does not verify the certificate {from}: {why}",
                        h.name
                    ),
                    tls_hint(&why, &dns),
                )),
            }
        }
        expiry(r, &chain, &from);
    }
}

fn tls_hint(why: &str, dns: &str) -> String {
    if why.contains("did not sign") {
        "the caBundle must be the CA that signed tls.crt: with cert-manager, check the webhooks' cert-manager.io/inject-ca-from annotation and the cainjector; with your own certificates, put their CA in caBundle".into()
    } else if why.contains("is not for") {
        format!(
            "reissue the serving certificate with the DNS name {dns} (the Certificate's dnsNames; the namespace of an overlay)"
        )
    } else if why.contains("expired") {
        "renew the serving certificate (cert-manager renews it itself; check the Certificate's status)".into()
    } else {
        "the caBundle must hold PEM CA certificates".into()
    }
}

/// The ready endpoints of the Service, as `ip:port` for its `port`.
async fn endpoints(
    ctx: &Ctx,
    r: &mut Report,
    ns: &str,
    svc: &str,
    port: i32,
) -> Option<Vec<SocketAddr>> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let service = match get_opt(ctx, &services, svc).await {
        Err(e) => {
            r.push(Finding::fail(
                SERVING,
                format!("cannot read Service {ns}/{svc}: {e}"),
                "check needs get on services",
            ));
            return None;
        }
        Ok(None) => {
            r.push(Finding::fail(
                SERVING,
                format!("no Service {ns}/{svc}, which the webhooks call"),
                "apply the install again (kubectl apply -k ...), or fix the webhooks' clientConfig.service",
            ));
            return None;
        }
        Ok(Some(s)) => s,
    };
    // The Service port the webhook names, and the target it maps to.
    let sp = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ps| ps.iter().find(|p| p.port == port).cloned());
    let Some(sp) = sp else {
        r.push(Finding::fail(
            SERVING,
            format!("Service {ns}/{svc} has no port {port}, which the webhooks call"),
            "the webhooks' clientConfig.service.port must be a port of the Service",
        ));
        return None;
    };
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    let slices = match list_opt(ctx, &slices, &params).await {
        Err(e) => {
            r.push(Finding::warn(
                SERVING,
                format!("cannot list the EndpointSlices of {ns}/{svc}: {e}"),
                "check needs list on endpointslices.discovery.k8s.io",
            ));
            return None;
        }
        Ok(s) => s.unwrap_or_default(),
    };
    let mut ready = Vec::new();
    let mut not_ready = 0;
    for slice in &slices {
        let target = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == sp.name.as_deref().unwrap_or(""));
        let Some(target_port) = target.and_then(|p| p.port) else {
            continue;
        };
        for e in &slice.endpoints {
            let is_ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !is_ready {
                not_ready += 1;
                continue;
            }
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<std::net::IpAddr>()
                    && let Ok(port) = u16::try_from(target_port)
                {
                    ready.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    if ready.is_empty() {
        r.push(Finding::fail(
            SERVING,
            format!("Service {ns}/{svc} has no ready endpoint ({not_ready} not ready): every webhook call fails, and with failurePolicy Ignore every pod is admitted uninstrumented"),
            format!("kubectl -n {ns} get pods -l app.kubernetes.io/name={NAME}; kubectl -n {ns} logs deploy/{NAME}; /readyz says what a replica waits for"),
        ));
        return None;
    }
    r.push(Finding::ok(
        SERVING,
        format!(
            "Service {ns}/{svc} has {}",
            plural(ready.len(), "ready endpoint")
        ),
    ));
    Some(ready)
}

/// The chain a replica serves, and where it was read: from a replica
/// itself, else from the Secret the Deployment mounts.
async fn served_chain(
    ctx: &Ctx,
    r: &mut Report,
    ns: &str,
    addrs: &[SocketAddr],
    dns: &str,
) -> Option<(Vec<CertificateDer<'static>>, String)> {
    let mut errors = Vec::new();
    for a in addrs {
        match served::fetch_chain(*a, dns, ctx.opts.timeout).await {
            Ok(chain) => return Some((chain, format!("served by {a}"))),
            Err(e) => errors.push(format!("{a}: {e}")),
        }
    }
    let secret = tls_secret(ctx, ns).await;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match get_opt(ctx, &secrets, &secret).await {
        Ok(Some(s)) => {
            let pem = s
                .data
                .as_ref()
                .and_then(|d| d.get("tls.crt"))
                .map(|b| b.0.clone())
                .unwrap_or_default();
            match served::pem_chain(&pem) {
                Ok(chain) => {
                    return Some((
                        chain,
                        format!(
                            "in Secret {ns}/{secret} (the replicas were not reachable from here)"
                        ),
                    ));
                }
                Err(e) => errors.push(format!("Secret {ns}/{secret}: tls.crt: {e}")),
            }
        }
        Ok(None) => errors.push(format!("Secret {ns}/{secret}: not found")),
        Err(e) => errors.push(format!("Secret {ns}/{secret}: {e}")),
    }
    r.push(Finding::warn(
        SERVING,
        format!("cannot see the serving certificate: {}", errors.join("; ")),
        "run check where the pod network is reachable (inside the cluster), or with get on the TLS Secret",
    ));
    None
}

/// The Secret the Deployment mounts as its `tls` volume, else the shipped name.
async fn tls_secret(ctx: &Ctx, ns: &str) -> String {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let found = get_opt(ctx, &deployments, NAME)
        .await
        .ok()
        .flatten()
        .and_then(|d| {
            d.spec?
                .template
                .spec?
                .volumes?
                .into_iter()
                .find(|v| v.name == "tls")
                .and_then(|v| v.secret)
                .and_then(|s| s.secret_name)
        });
    found.unwrap_or_else(|| TLS_SECRET.into())
}

fn expiry(r: &mut Report, chain: &[CertificateDer<'static>], from: &str) {
    let Some(end) = chain.first().and_then(served::not_after) else {
        return;
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let days = (end - now) / 86_400;
    let date = k8s_openapi::jiff::Timestamp::from_second(end)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| end.to_string());
    if end <= now {
        r.push(Finding::fail(
            SERVING,
            format!("the certificate {from} expired on {date}"),
            "renew it: cert-manager renews its own; with dev-certs run otel-admission certs again",
        ));
    } else if days < EXPIRY_WARNING_DAYS {
        r.push(Finding::warn(
            SERVING,
            format!("the certificate {from} expires on {date}, in {days} days"),
            "cert-manager renews at two thirds of the lifetime: if you manage it yourself, renew it now",
        ));
    } else {
        r.push(Finding::ok(
            SERVING,
            format!("the certificate {from} is valid until {date} ({days} days)"),
        ));
    }
}

// === The replicas ===

async fn replicas(ctx: &Ctx, r: &mut Report) {
    let ns = &ctx.opts.namespace;
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    match get_opt(ctx, &api, NAME).await {
        Err(e) => r.push(Finding::warn(
            REPLICAS,
            format!("cannot read Deployment {ns}/{NAME}: {e}"),
            "check needs get on deployments",
        )),
        Ok(None) => r.push(Finding::fail(
            REPLICAS,
            format!("no Deployment {ns}/{NAME}"),
            format!("install it, or pass --install-namespace if it lives elsewhere than {ns}"),
        )),
        Ok(Some(d)) => {
            let status = d.status.unwrap_or_default();
            let want = status.replicas.unwrap_or(0);
            let ready = status.ready_replicas.unwrap_or(0);
            let what = format!(
                "{ready} of {want} replicas ready (ready: config and policies loaded, the cluster caches synced; /readyz)"
            );
            if want > 0 && ready == want {
                r.push(Finding::ok(REPLICAS, what));
            } else if ready > 0 {
                r.push(Finding::warn(
                    REPLICAS,
                    what,
                    format!("kubectl -n {ns} describe pods -l app.kubernetes.io/name={NAME}"),
                ));
            } else {
                r.push(Finding::fail(
                    REPLICAS,
                    what,
                    format!("kubectl -n {ns} describe pods -l app.kubernetes.io/name={NAME}; the logs name what /readyz waits for"),
                ));
            }
        }
    }
}

// === The Operator's webhook beside ours ===

async fn operator_overlap(ctx: &Ctx, r: &mut Report, hooks: &[Hook]) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    let configs = match list_opt(ctx, &api, &ListParams::default()).await {
        Err(e) => {
            r.push(Finding::warn(
                OPERATOR,
                format!("cannot list MutatingWebhookConfigurations: {e}"),
                "check needs list on mutatingwebhookconfigurations",
            ));
            return;
        }
        Ok(c) => c.unwrap_or_default(),
    };
    let theirs: Vec<(String, Option<LabelSelector>)> = configs
        .into_iter()
        .flat_map(|c| {
            let name = c.metadata.name.unwrap_or_default();
            c.webhooks
                .into_iter()
                .flatten()
                .filter(|w| w.name == OPERATOR_POD_WEBHOOK)
                .map(move |w| (name.clone(), w.namespace_selector))
        })
        .collect();
    let Some((config, their_selector)) = theirs.into_iter().next() else {
        r.push(Finding::ok(
            OPERATOR,
            "the OpenTelemetry Operator's pod webhook is not installed",
        ));
        return;
    };
    let Some(ours) = hooks.iter().find(|h| h.name.starts_with("mutate.")) else {
        return;
    };
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let list = match list_opt(ctx, &namespaces, &ListParams::default()).await {
        Ok(l) => l.unwrap_or_default(),
        Err(e) => {
            r.push(Finding::warn(
                OPERATOR,
                format!("cannot list namespaces: {e}"),
                "check needs list on namespaces",
            ));
            return;
        }
    };
    let sees = |sel: &Option<LabelSelector>, labels: &BTreeMap<String, String>| {
        sel.as_ref()
            .is_none_or(|s| crate::selector::matches(s, labels))
    };
    let both: Vec<String> = list
        .iter()
        .filter(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            sees(&ours.namespace_selector, &labels) && sees(&their_selector, &labels)
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    if both.is_empty() {
        r.push(Finding::ok(
            OPERATOR,
            format!("the OpenTelemetry Operator's pod webhook ({config}) sees none of the namespaces ours sees"),
        ));
    } else {
        r.push(Finding::warn(
            OPERATOR,
            format!(
                "the OpenTelemetry Operator's pod webhook ({config}) and ours both see pods in {}: {}",
                plural(both.len(), "namespace"),
                both.join(", ")
            ),
            "there the first webhook to run instruments a pod and the other leaves it alone (docs/MIGRATING.md, step 3): scope the Operator's webhook away from these namespaces, or delete its mpod.kb.io entry",
        ));
    }
}

// === Instrumentations and collectors, as the server reads them ===

async fn instrumentations(ctx: &Ctx, r: &mut Report) {
    as_the_server_reads(
        ctx,
        r,
        &crate::cluster::instrumentation_resource(),
        Read {
            group: INSTRUMENTATIONS,
            kind: "Instrumentation",
            qualifier: "",
            counted: "Instrumentation",
            keep: &|_| true,
            parse: &|o| crate::cluster::parse_instrumentation(o.clone()).map(drop),
            hint: "fix that field (docs/CONFIG.md and the Operator's CRD reference); until then a pod that names it is not instrumented (no_instrumentation)",
        },
    )
    .await;
}

async fn collectors(ctx: &Ctx, r: &mut Report) {
    as_the_server_reads(
        ctx,
        r,
        &crate::cluster::collector_resource(),
        Read {
            group: COLLECTORS,
            kind: "OpenTelemetryCollector",
            qualifier: " (mode sidecar)",
            counted: "sidecar-mode OpenTelemetryCollector",
            keep: &|o| o.data["spec"]["mode"].as_str() == Some("sidecar"),
            parse: &|o| crate::cluster::parse_collector(o).map(drop),
            hint: "fix that field; until then a pod that asks for it gets no collector sidecar (invalid_annotation)",
        },
    )
    .await;
}

/// How one kind is read as the server reads it.
struct Read<'a> {
    group: &'static str,
    /// The kind, as a failure names one object, and what follows its name.
    kind: &'a str,
    qualifier: &'a str,
    /// The kind, as the count names them.
    counted: &'a str,
    /// The objects the server uses (sidecar-mode collectors only).
    keep: &'a dyn Fn(&DynamicObject) -> bool,
    /// The server's own parsing, its reason when it ignores the object.
    parse: &'a dyn Fn(&DynamicObject) -> Result<(), String>,
    hint: &'static str,
}

/// Every object of `resource` the server uses, parsed by the code the
/// server's cluster watch runs: one failure per object it would ignore, with
/// the field and the reason, else one line with the count. A kind the API
/// server does not serve is said under `crds`.
async fn as_the_server_reads(ctx: &Ctx, r: &mut Report, resource: &ApiResource, read: Read<'_>) {
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), resource);
    let what = format!("{}.{}", resource.plural, resource.group);
    let list = match list_opt(ctx, &api, &ListParams::default()).await {
        Err(e) => {
            r.push(Finding::warn(
                read.group,
                format!("cannot list {what}: {e}"),
                format!("check needs list on {what}"),
            ));
            return;
        }
        Ok(None) => return,
        Ok(Some(l)) => l,
    };
    let used: Vec<&DynamicObject> = list.iter().filter(|o| (read.keep)(o)).collect();
    let mut bad = 0;
    for obj in &used {
        if let Err(why) = (read.parse)(obj) {
            bad += 1;
            r.push(Finding::fail(
                read.group,
                format!(
                    "{} {}{} is ignored by the server: {why}",
                    read.kind,
                    crate::cluster::object_name(&obj.metadata),
                    read.qualifier
                ),
                read.hint,
            ));
        }
    }
    if bad == 0 {
        r.push(Finding::ok(
            read.group,
            format!(
                "{} read as the server reads them",
                plural(used.len(), read.counted)
            ),
        ));
    }
}

// === The rollout controller ===

async fn rollout(ctx: &Ctx, r: &mut Report) {
    let ns = &ctx.opts.namespace;
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), ns);
    let name = crate::rollout::lease::NAME;
    match get_opt(ctx, &api, name).await {
        Err(e) => r.push(Finding::warn(ROLLOUT, format!("cannot read Lease {ns}/{name}: {e}"), "check needs get on leases.coordination.k8s.io")),
        Ok(None) => r.push(Finding::ok(
            ROLLOUT,
            "the rollout controller is not running (no leader Lease): add components/rollout to re-instrument running workloads",
        )),
        Ok(Some(lease)) => {
            let spec = lease.spec.unwrap_or_default();
            let holder = spec.holder_identity.unwrap_or_default();
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let age = spec.renew_time.map(|t| {
                k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second()
            });
            match age {
                Some(age) if !holder.is_empty() && age <= duration => r.push(Finding::ok(
                    ROLLOUT,
                    format!("the rollout controller is led by {holder} (renewed {age}s ago)"),
                )),
                _ => r.push(Finding::warn(
                    ROLLOUT,
                    format!(
                        "the rollout controller has no live leader: the Lease of {} was last renewed {}",
                        if holder.is_empty() { "nobody" } else { holder.as_str() },
                        age.map_or("never".into(), |a| format!("{a}s ago")),
                    ),
                    format!("kubectl -n {ns} logs deploy/{NAME} | grep rollout; the replicas need the Role of components/rollout to renew it"),
                )),
            }
        }
    }
}
