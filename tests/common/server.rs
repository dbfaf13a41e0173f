//! Starting the webhook server for a test: a real `Server` on loopback
//! ports with fresh certificates, and the requests tests send it.

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
use serde_json::Value;

use super::tls::{client_for, names};

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
