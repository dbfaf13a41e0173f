//! `otel-admission check [--pre]` against the local list/watch API server:
//! a sound install passes, and each broken one (a wrong caBundle, no ready
//! endpoint, the Operator's webhook overlapping ours, an Instrumentation the
//! server rejects, a missing CRD, a missing right, no API server) is found
//! with a hint. The real binary, with a kubeconfig pointing at the fake
//! server; the replica's certificate is served by a real TLS listener.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::apiserver::any::gvr;
use common::apiserver::{
    DEPLOYMENTS, FakeApiServer, INSTRUMENTATIONS, LEASES, NAMESPACES, namespace,
};
use otel_admission::certs::Bundle;
use serde::Deserialize as _;
use serde_json::{Value, json};

const NS: &str = "otel-admission";
const DNS: &str = "otel-admission.otel-admission.svc";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_otel-admission")
}

/// A replica's TLS listener on 127.0.0.1: it completes handshakes with the
/// bundle's serving pair, which is all `check` asks of it.
async fn serve_tls(bundle: &Bundle) -> u16 {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(bundle.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    port
}

fn crd(plural: &str, kind: &str, versions: &[&str]) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.opentelemetry.io"),
                     "labels": {"app.kubernetes.io/name": "otel-admission"}},
        "spec": {"group": "opentelemetry.io", "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural},
                 "versions": versions.iter().enumerate().map(|(i, v)| json!({
                     "name": v, "served": true, "storage": i == 0})).collect::<Vec<_>>()}
    })
}

fn webhook_config(kind: &str, hook: &str, ca: &str, selector: Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": "otel-admission"},
        "webhooks": [{
            "name": hook, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"namespace": NS, "name": "otel-admission", "port": 443,
                                         "path": "/mutate"},
                             "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)},
            "namespaceSelector": selector
        }]
    })
}

/// Both of our webhook configurations, with `ca` as their caBundle.
fn both_webhooks(api: &FakeApiServer, ca: &str) {
    for (kind, hook, res) in [
        (
            "MutatingWebhookConfiguration",
            "mutate.otel-admission.io",
            "mutatingwebhookconfigurations",
        ),
        (
            "ValidatingWebhookConfiguration",
            "validate.otel-admission.io",
            "validatingwebhookconfigurations",
        ),
    ] {
        api.put(
            &gvr("admissionregistration.k8s.io", "v1", res),
            webhook_config(kind, hook, ca, our_selector()),
        );
    }
}

fn our_selector() -> Value {
    json!({"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": ["kube-system", "kube-public", "kube-node-lease", NS]},
        {"key": "otel-admission.io/inject", "operator": "NotIn", "values": ["disabled"]}
    ]})
}

fn endpoint_slice(port: u16, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "otel-admission-abcde", "namespace": NS,
                     "labels": {"kubernetes.io/service-name": "otel-admission"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]
    })
}

fn ns_named(name: &str, labels: Value) -> Value {
    let mut l = labels;
    l["kubernetes.io/metadata.name"] = json!(name);
    namespace(name, l)
}

/// A sound install: both webhook configurations with the CA that signed
/// the served certificate, the Service with one ready endpoint (the TLS
/// listener), two ready replicas, the CRDs, one valid Instrumentation and a
/// live rollout leader.
struct Install {
    api: FakeApiServer,
    bundle: Bundle,
    port: u16,
    dir: tempfile::TempDir,
}

impl Install {
    async fn new() -> Self {
        let api = FakeApiServer::start().await;
        let bundle = Bundle::generate(&[DNS.to_string()], 90).expect("bundle");
        let port = serve_tls(&bundle).await;
        for (name, labels) in [
            (NS, json!({})),
            ("kube-system", json!({})),
            ("shop", json!({"otel-admission.io/inject": "enabled"})),
            ("web", json!({})),
        ] {
            api.apply(NAMESPACES, ns_named(name, labels));
        }
        let crds = gvr("apiextensions.k8s.io", "v1", "customresourcedefinitions");
        api.put(
            &crds,
            crd("instrumentations", "Instrumentation", &["v1alpha1"]),
        );
        api.put(
            &crds,
            crd(
                "opentelemetrycollectors",
                "OpenTelemetryCollector",
                &["v1beta1", "v1alpha1"],
            ),
        );
        let ca = bundle.ca_cert_pem.clone();
        both_webhooks(&api, &ca);
        api.put(
            &gvr("", "v1", "services"),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "otel-admission", "namespace": NS},
                   "spec": {"ports": [{"name": "https", "port": 443, "targetPort": "https"}]}}),
        );
        api.put(
            &gvr("discovery.k8s.io", "v1", "endpointslices"),
            endpoint_slice(port, true),
        );
        api.apply(
            DEPLOYMENTS,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "otel-admission", "namespace": NS},
                   "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "otel-admission"}},
                            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "otel-admission"}},
                                         "spec": {"containers": [{"name": "server", "image": "otel-admission:dev"}],
                                                  "volumes": [{"name": "tls", "secret": {"secretName": "otel-admission-tls"}}]}}},
                   "status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}}),
        );
        api.apply(
            INSTRUMENTATIONS,
            common::apiserver::instrumentation(
                "shop",
                "tracing",
                json!({"exporter": {"endpoint": "http://collector:4318"}}),
            ),
        );
        let now = k8s_openapi::jiff::Timestamp::now();
        api.apply(
            LEASES,
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": "otel-admission-rollout", "namespace": NS},
                   "spec": {"holderIdentity": "otel-admission-7d9f8-abcde", "leaseDurationSeconds": 15,
                            "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}}),
        );
        Self {
            api,
            bundle,
            port,
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    /// Runs `check` with `args`; (exit code, stdout). The binary blocks, so
    /// it runs off the runtime that serves the fake API server.
    async fn check(&self, args: &[&str]) -> (i32, String) {
        let kubeconfig = common::replica::kubeconfig_for(&self.api, self.dir.path());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(bin())
                .arg("check")
                .args(["--call-timeout", "3s"])
                .args(&args)
                .env("KUBECONFIG", kubeconfig)
                .env_remove("OTEL_ADMISSION_INSTALL_NAMESPACE")
                .output()
                .expect("run check");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
        .await
        .expect("join")
    }
}

/// The line of `text` that contains `needle`, and the hint under it.
fn line<'a>(text: &'a str, needle: &str) -> (&'a str, Option<&'a str>) {
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"));
    let hint = lines.get(i + 1).and_then(|h| h.strip_prefix("    hint: "));
    (lines[i], hint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_install_passes_every_check() {
    let i = Install::new().await;
    let (code, out) = i.check(&[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('×') && !out.contains('‼'), "{out}");
    let served = format!(
        "✓ the caBundle of mutate.otel-admission.io verifies the certificate served by 127.0.0.1:{} for {DNS}",
        i.port
    );
    for want in [
        "✓ can reach the API server: v1.33.0",
        "✓ native sidecars",
        "✓ Instrumentation CRD serves v1alpha1 (installed from manifests/crds)",
        "✓ MutatingWebhookConfiguration otel-admission: webhook mutate.otel-admission.io calls Service otel-admission/otel-admission:443",
        "✓ ValidatingWebhookConfiguration otel-admission: webhook validate.otel-admission.io calls Service otel-admission/otel-admission:443",
        "✓ Service otel-admission/otel-admission has 1 ready endpoint",
        served.as_str(),
        "✓ the certificate served by 127.0.0.1:",
        "✓ 2 of 2 replicas ready",
        "✓ the OpenTelemetry Operator's pod webhook is not installed",
        "✓ 1 Instrumentation read as the server reads them",
        "✓ 0 sidecar-mode OpenTelemetryCollectors read as the server reads them",
        "✓ the rollout controller is led by otel-admission-7d9f8-abcde",
        "Status check results are ✓",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(want)),
            "{want:?} missing in:\n{out}"
        );
    }
    let (valid, _) = line(&out, "is valid until");
    assert!(
        valid.contains("(89 days)") || valid.contains("(90 days)"),
        "{valid}"
    );

    // The same as JSON.
    let (code, json) = i.check(&["-o", "json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["success"], true);
    assert_eq!(v["summary"]["error"], 0);
    assert!(
        v["checks"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["status"] == "ok"))
    );
}

/// A caBundle from another CA: the API server could not call the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_bundle_fails_with_what_to_do() {
    let i = Install::new().await;
    let other = Bundle::generate(&[DNS.to_string()], 90).expect("other");
    i.api.put(
        &gvr(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
        ),
        webhook_config(
            "MutatingWebhookConfiguration",
            "mutate.otel-admission.io",
            &other.ca_cert_pem,
            our_selector(),
        ),
    );
    let (code, out) = i.check(&[]).await;
    assert_eq!(code, 1, "{out}");
    let (l, hint) = line(&out, "the caBundle of mutate.otel-admission.io");
    assert!(
        l.starts_with("× ") && l.ends_with("the caBundle did not sign the served certificate"),
        "{l}"
    );
    assert!(
        hint.is_some_and(|h| h.contains("the CA that signed tls.crt")),
        "{hint:?}"
    );
    // The validating webhook's caBundle is still right.
    assert!(
        out.contains("✓ the caBundle of validate.otel-admission.io verifies"),
        "{out}"
    );
    assert!(out.contains("Status check results are ×"), "{out}");
}

/// A certificate for another name (an overlay moved the namespace but not
/// the certificate) is refused as the API server would refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_fails() {
    let i = Install::new().await;
    let wrong = Bundle::generate(&["otel-admission.default.svc".to_string()], 90).expect("bundle");
    let port = serve_tls(&wrong).await;
    i.api.put(
        &gvr("discovery.k8s.io", "v1", "endpointslices"),
        endpoint_slice(port, true),
    );
    both_webhooks(&i.api, &wrong.ca_cert_pem);
    let (code, out) = i.check(&[]).await;
    assert_eq!(code, 1, "{out}");
    let (l, hint) = line(&out, "the caBundle of mutate.otel-admission.io");
    assert!(
        l.ends_with(&format!("the served certificate is not for {DNS}")),
        "{l}"
    );
    assert!(hint.is_some_and(|h| h.contains(DNS)), "{hint:?}");
}

/// No ready endpoint: every call fails, and failurePolicy Ignore admits
/// every pod uninstrumented; the hint says where to look. An empty
/// caBundle with cert-manager's annotation names the cainjector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_endpoint_and_an_empty_ca_bundle_fail() {
    let i = Install::new().await;
    i.api.put(
        &gvr("discovery.k8s.io", "v1", "endpointslices"),
        endpoint_slice(i.port, false),
    );
    let mut config = webhook_config(
        "MutatingWebhookConfiguration",
        "mutate.otel-admission.io",
        "",
        our_selector(),
    );
    config["webhooks"][0]["clientConfig"]
        .as_object_mut()
        .expect("clientConfig")
        .remove("caBundle");
    config["metadata"]["annotations"] =
        json!({"cert-manager.io/inject-ca-from": "otel-admission/otel-admission-serving"});
    i.api.put(
        &gvr(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
        ),
        config,
    );
    let (code, out) = i.check(&[]).await;
    assert_eq!(code, 1, "{out}");
    let (l, hint) = line(&out, "has no ready endpoint");
    assert!(
        l.starts_with(
            "× Service otel-admission/otel-admission has no ready endpoint (1 not ready)"
        ),
        "{l}"
    );
    assert!(
        hint.is_some_and(|h| h.contains("kubectl -n otel-admission get pods")),
        "{hint:?}"
    );
    let (l, hint) = line(&out, "caBundle is empty");
    assert!(
        l.contains("cert-manager has not injected the CA of otel-admission/otel-admission-serving"),
        "{l}"
    );
    assert!(hint.is_some_and(|h| h.contains("cainjector")), "{hint:?}");
}

/// The Operator's pod webhook beside ours: the namespaces both see are
/// named, with what that means.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_webhook_overlapping_ours_is_named() {
    let i = Install::new().await;
    let mut theirs = webhook_config(
        "MutatingWebhookConfiguration",
        "mpod.kb.io",
        &i.bundle.ca_cert_pem,
        json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop", "kube-system"]}]}),
    );
    theirs["metadata"]["name"] = json!("opentelemetry-operator-mutation");
    i.api.put(
        &gvr(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
        ),
        theirs,
    );
    let (code, out) = i.check(&[]).await;
    assert_eq!(code, 0, "a warning does not fail: {out}");
    let (l, hint) = line(&out, "pod webhook (opentelemetry-operator-mutation)");
    assert_eq!(
        l,
        "‼ the OpenTelemetry Operator's pod webhook (opentelemetry-operator-mutation) and ours both see pods in 1 namespace: shop"
    );
    assert!(
        hint.is_some_and(|h| h.contains("docs/MIGRATING.md")),
        "{hint:?}"
    );
    // `--pre` says it is there.
    let (_, pre) = i.check(&["--pre"]).await;
    assert!(pre.contains("‼ the OpenTelemetry Operator's pod webhook mpod.kb.io is installed (MutatingWebhookConfiguration opentelemetry-operator-mutation)"), "{pre}");
}

/// An Instrumentation the server ignores is named with its field and
/// reason; a missing CRD is a warning with the command that installs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_instrumentation_and_a_missing_crd_are_found() {
    let i = Install::new().await;
    i.api.apply(
        INSTRUMENTATIONS,
        common::apiserver::instrumentation(
            "shop",
            "broken",
            json!({"sampler": {"type": "traceidratio", "argument": "1.5"}}),
        ),
    );
    i.api.remove(
        &gvr("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
        "",
        "opentelemetrycollectors.opentelemetry.io",
    );
    let (code, out) = i.check(&[]).await;
    assert_eq!(code, 1, "{out}");
    let (l, hint) = line(&out, "Instrumentation shop/broken");
    assert!(
        l.starts_with("× Instrumentation shop/broken is ignored by the server: spec.sampler"),
        "{l}"
    );
    assert!(
        hint.is_some_and(|h| h.contains("no_instrumentation")),
        "{hint:?}"
    );
    let (l, hint) = line(&out, "no OpenTelemetryCollector CRD");
    assert!(l.starts_with("‼ "), "{l}");
    assert_eq!(
        hint,
        Some("kubectl apply -k manifests/crds (or keep the OpenTelemetry Operator's CRDs)")
    );
}

/// `--pre` on a clean cluster passes; a right the install needs that the
/// user lacks fails, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_passes_on_a_clean_cluster_and_names_a_missing_right() {
    let i = Install::new().await;
    let (code, out) = i.check(&["--pre"]).await;
    assert_eq!(code, 0, "{out}");
    for want in [
        "✓ can reach the API server",
        "✓ can create the 15 kinds the install applies",
        "✓ the OpenTelemetry Operator's pod webhook is not installed",
        "✓ the webhook would see pods in 2 of 4 namespaces",
        "✓ the shipped config's rule labelled-namespaces-sdk injects SDK settings in shop",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(want)),
            "{want:?} missing in:\n{out}"
        );
    }
    assert!(
        !out.contains("webhooks\n"),
        "--pre checks no install: {out}"
    );
    i.api
        .deny("create", "rbac.authorization.k8s.io", "clusterroles");
    i.api.deny("create", "admissionregistration.k8s.io", "*");
    let (code, out) = i.check(&["--pre"]).await;
    assert_eq!(code, 1, "{out}");
    let (l, hint) = line(&out, "cannot create");
    assert_eq!(
        l,
        "× cannot create clusterroles.rbac.authorization.k8s.io, mutatingwebhookconfigurations.admissionregistration.k8s.io, validatingwebhookconfigurations.admissionregistration.k8s.io"
    );
    assert!(
        hint.is_some_and(|h| h.contains("cluster-admin")),
        "{hint:?}"
    );
}

/// No API server: one failure, with the kubeconfig to look at; nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_one_clear_failure() {
    let i = Install::new().await;
    i.api.set_down(true);
    let (code, out) = i.check(&[]).await;
    assert_eq!(code, 1, "{out}");
    let (l, hint) = line(&out, "cannot reach the API server");
    assert!(l.starts_with("× "), "{l}");
    assert!(
        hint.is_some_and(|h| h.contains("kubectl config current-context")),
        "{hint:?}"
    );
    assert_eq!(
        out.matches('×').count(),
        2,
        "the line and the summary only: {out}"
    );
}

/// The rights `--pre` asks about cover every kind the base and the CRDs
/// apply, and the namespaces it says the webhook skips are the shipped
/// webhook's: both read from `kubectl kustomize`.
#[test]
fn pre_knows_what_the_shipped_manifests_apply() {
    let render = |dir: &str| {
        let out = std::process::Command::new("kubectl")
            .args(["kustomize", dir])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("kubectl kustomize (kubectl is installed by .ci/run)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut kinds = std::collections::BTreeSet::new();
    let mut selector = None;
    for dir in ["manifests/base", "manifests/crds"] {
        for doc in serde_yaml_ng::Deserializer::from_str(&render(dir)) {
            let v = Value::deserialize(doc).expect("yaml");
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            if kind == "MutatingWebhookConfiguration" {
                selector = Some(v["webhooks"][0]["namespaceSelector"].clone());
            }
            kinds.insert(kind);
        }
    }
    let known: Vec<&str> = otel_admission::check::PERMISSIONS
        .iter()
        .map(|p| p.kind)
        .collect();
    for k in &kinds {
        assert!(
            known.contains(&k.as_str()),
            "{k} is applied but check --pre does not ask for it"
        );
    }
    let selector = selector.expect("the base has a MutatingWebhookConfiguration");
    let names = &selector["matchExpressions"][0];
    assert_eq!(names["key"], "kubernetes.io/metadata.name");
    let mut want: Vec<String> = otel_admission::check::SHIPPED_EXCLUDED_NAMESPACES
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.push("otel-admission".into());
    assert_eq!(names["values"], json!(want));
    assert_eq!(
        selector["matchExpressions"][1],
        json!({"key": "otel-admission.io/inject", "operator": "NotIn", "values": ["disabled"]})
    );
}

/// Replicas out of reach (a laptop outside the pod network): the
/// certificate is read from the Secret the Deployment mounts, and one that
/// ends within 30 days is a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_stands_in_for_unreachable_replicas_and_expiry_warns() {
    let i = Install::new().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    i.api.put(
        &gvr("discovery.k8s.io", "v1", "endpointslices"),
        endpoint_slice(closed, true),
    );
    let short = Bundle::generate(&[DNS.to_string()], 10).expect("bundle");
    both_webhooks(&i.api, &short.ca_cert_pem);
    i.api.put(
        &gvr("", "v1", "secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "otel-admission-tls", "namespace": NS},
               "data": {"tls.crt": base64::engine::general_purpose::STANDARD.encode(&short.cert_pem),
                        "tls.key": base64::engine::general_purpose::STANDARD.encode(&short.key_pem)}}),
    );
    let (code, out) = i.check(&[]).await;
    assert_eq!(code, 0, "{out}");
    let (l, _) = line(&out, "the caBundle of mutate.otel-admission.io");
    assert_eq!(
        l,
        format!(
            "✓ the caBundle of mutate.otel-admission.io verifies the certificate in Secret otel-admission/otel-admission-tls (the replicas were not reachable from here) for {DNS}"
        )
    );
    let (l, hint) = line(&out, "expires on");
    assert!(
        l.starts_with("‼ the certificate in Secret otel-admission/otel-admission-tls"),
        "{l}"
    );
    assert!(l.ends_with("in 9 days") || l.ends_with("in 10 days"), "{l}");
    assert!(hint.is_some_and(|h| h.contains("renew")), "{hint:?}");
}

/// Prints what a user sees (run with `--nocapture`): the report of a sound
/// install and of a broken one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "shows the output; run by hand"]
async fn show() {
    let i = Install::new().await;
    println!("{}", i.check(&[]).await.1);
    i.api.put(
        &gvr("discovery.k8s.io", "v1", "endpointslices"),
        endpoint_slice(i.port, false),
    );
    println!("{}", i.check(&["--pre"]).await.1);
    println!("{}", i.check(&[]).await.1);
}
