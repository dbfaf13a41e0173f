//! A real server on 127.0.0.1:0 with rcgen certificates, and clients that
//! trust only the test CA.

#![allow(dead_code)]

pub mod apiserver;
pub mod replica;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use otel_admission::admission::{Mutate, Validate};
use otel_admission::certs::Bundle;
use otel_admission::config::Config;
use otel_admission::metrics::Metrics;
use otel_admission::server::admin::Readiness;
use otel_admission::server::webhook::AllowAll;
use otel_admission::server::{Server, Services, Settings};
use serde_json::{Value, json};

pub struct TestServer {
    pub server: Server,
    pub bundle: Bundle,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub config: Arc<ArcSwap<Config>>,
}

pub struct Options {
    pub mutator: Arc<dyn Mutate>,
    pub validator: Arc<dyn Validate>,
    pub config_yaml: Option<String>,
    /// Shared with the validator when it records metrics of its own.
    pub metrics: Option<Arc<Metrics>>,
    pub tweak: Box<dyn FnOnce(&mut Settings)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mutator: Arc::new(AllowAll),
            validator: Arc::new(AllowAll),
            config_yaml: None,
            metrics: None,
            tweak: Box::new(|_| {}),
        }
    }
}

pub fn names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// The settings a test server runs with: ephemeral loopback ports, the
/// serving pair in `dir`, and `serve`'s defaults otherwise.
pub fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        tls_cert: dir.join("tls.crt"),
        tls_key: dir.join("tls.key"),
        body_limit: 6 * 1024 * 1024,
        header_read_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(4),
        shutdown_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(10),
        reload_poll: Duration::from_millis(500),
    }
}

/// The composition root `serve` uses, with the cluster off, the policies
/// in `policies` and `--policy-enforcement` as given, behind the real
/// server.
pub async fn start_app(
    config: Config,
    policies: PathBuf,
    enforcement: Option<otel_admission::config::Enforcement>,
) -> (otel_admission::app::App, TestServer) {
    let mut opts = otel_admission::app::Options::from_env(otel_admission::app::Cluster::Mode(
        otel_admission::config::ClusterMode::Off,
    ));
    opts.policies_dir = Some(policies);
    opts.policy_enforcement = enforcement;
    let app = otel_admission::app::App::from_config(config, opts)
        .await
        .expect("app");
    let server = start(Options {
        mutator: app.injector.clone(),
        validator: app.policies.clone(),
        metrics: Some(app.metrics.clone()),
        ..Default::default()
    })
    .await;
    (app, server)
}

pub async fn start(opts: Options) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = Bundle::generate(&names(), 10).expect("certs");
    bundle.write(dir.path()).expect("write certs");
    let (config, config_path) = match &opts.config_yaml {
        Some(yaml) => {
            let p = dir.path().join("config.yaml");
            std::fs::write(&p, yaml).expect("write config");
            (Config::load(&p).expect("valid config"), Some(p))
        }
        None => (Config::default(), None),
    };
    let mut settings = settings(dir.path());
    (opts.tweak)(&mut settings);
    let metrics = opts.metrics.unwrap_or_else(|| Arc::new(Metrics::new()));
    let readiness = Arc::new(Readiness::default());
    let config = Arc::new(ArcSwap::from_pointee(config));
    let app = Services {
        config: config.clone(),
        config_path,
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        mutator: opts.mutator,
        validator: opts.validator,
    };
    let server = Server::start(settings, app).await.expect("server starts");
    let client = client_for(&bundle);
    TestServer {
        server,
        bundle,
        dir,
        client,
        metrics,
        readiness,
        config,
    }
}

pub fn client_for(bundle: &Bundle) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(bundle.ca_cert_pem.as_bytes()).expect("ca"),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}{path}",
            self.server.webhook_addr.port()
        )
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.admin_addr)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let v: Value = r.json().await.expect("json response");
        (status, v)
    }

    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(self.admin_url(path)).await.expect("admin get");
        (r.status().as_u16(), r.text().await.expect("text"))
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }
}

pub fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9f8-", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.2.3"}]}
    })
}

pub fn review(uid: &str, operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// A raw TLS stream to the server, for tests that need to misbehave.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    bundle: &Bundle,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    tls_connector(bundle, &[&rustls::version::TLS13, &rustls::version::TLS12])
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            stream,
        )
        .await
        .expect("tls handshake")
}

pub fn tls_connector(
    bundle: &Bundle,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(bundle.ca_cert_pem.as_bytes()).expect("ca der"))
        .expect("add root");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// The leaf certificate the server presents right now, whoever signed it.
pub async fn served_cert(addr: std::net::SocketAddr) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(InspectOnly(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    let (_, conn) = s.get_ref();
    conn.peer_certificates().expect("peer certs")[0].to_vec()
}

/// Accepts any certificate: only for reading which one is served.
#[derive(Debug)]
struct InspectOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for InspectOnly {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
