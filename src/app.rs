//! The composition root: one place that turns a [`Config`] into the running
//! parts of `serve` (cluster caches, Events, policies, the rollout loop, the
//! `/mutate` and `/validate` handlers) and wires them together. `serve`
//! builds the server through [`App::from_config`], and so do the tests that
//! check the wiring (`tests/common`'s `start_app`, `tests/policy.rs`,
//! `tests/cluster_admission.rs`, `tests/cli_live.rs`); tests of one part
//! (the listeners, a handler) build that part alone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::inventory::Inventory;
use crate::cluster::{Caches, ClusterError};
use crate::config::{ClusterMode, Config};
use crate::events::{EventReason, EventSettings, Events};
use crate::inject::cluster_view::{ClusterView, StaticView};
use crate::metrics::Metrics;
use crate::mutate::Injector;
use crate::policy::{Policies, PolicyError};
use crate::rollout::Cause;
use crate::rollout::controller::Controller;
use crate::rollout::lease::Elector;
use crate::server::admin::{Gate, Readiness};
use crate::server::{self, Server, ServerError, Services, Settings};

/// Why the server could not be assembled or started.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Only `--cluster on` makes connecting an error: the message says so.
    #[error("--cluster on: {0}")]
    Cluster(#[from] ClusterError),
    /// Not `#[source]` (nor `#[from]`, which implies it): the message is
    /// already in ours, and the CLI's `{:#}` printed it twice.
    #[error("policies: {0}")]
    Policies(PolicyError),
    /// A policy directory named by `--policies` or the config that is not
    /// there: `--policies /mistyped: no such directory`.
    #[error(transparent)]
    PolicyDir(#[from] crate::policy::files::DirError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl From<PolicyError> for AppError {
    fn from(e: PolicyError) -> Self {
        Self::Policies(e)
    }
}

/// The policy directory `serve` uses, and where it was named: `--policies`
/// (flag or `OTEL_ADMISSION_POLICIES`), else the config's `policies.dir`,
/// else the default. `None` for the default, the only one that may be
/// absent (`cargo run -- serve` on a laptop with no `policies/`).
///
/// `policies.dir` counts as named when it differs from the default
/// (`PoliciesConfig::default().dir`): the config does not record whether
/// the file set it, so a file that writes the default out (`dir:
/// policies`) is read as the default.
fn policies_dir(
    flag: Option<PathBuf>,
    config: &crate::config::PoliciesConfig,
    config_path: Option<&std::path::Path>,
) -> (PathBuf, Option<String>) {
    if let Some(dir) = flag {
        return (dir, Some("--policies".into()));
    }
    if config.dir != crate::config::PoliciesConfig::default().dir {
        let origin = config_path.map_or_else(|| "config".into(), |p| p.display().to_string());
        return (config.dir.clone(), Some(format!("{origin}: policies.dir")));
    }
    (config.dir.clone(), None)
}

/// How long the start-up compile of the policy directory may take. The
/// shipped pack compiles in milliseconds; the bound only turns a hostile
/// file into an error well inside the startup probe's minute.
pub const COMPILE_LIMIT: Duration = Duration::from_secs(20);

/// How to reach the cluster.
pub enum Cluster {
    /// Infer a kubeconfig or in-cluster account, as `--cluster` says.
    Mode(ClusterMode),
    /// A client built by the caller (tests: a local list/watch server), and
    /// the API server's `(major, minor)`.
    Client(kube::Client, Option<(u32, u32)>),
}

/// What `serve` takes besides the config file's contents.
pub struct Options {
    /// The file the config came from, reloaded on change.
    pub config_path: Option<PathBuf>,
    /// `--policies`, over `policies.dir`.
    pub policies_dir: Option<PathBuf>,
    /// `--policy-enforcement`, over `policies.enforcement`.
    pub policy_enforcement: Option<crate::config::Enforcement>,
    pub cluster: Cluster,
    /// The Lease holder's identity for the rollout loop.
    pub identity: String,
    /// Where the Lease lives when `server.namespace` is unset.
    pub namespace: String,
    pub events: EventSettings,
    pub policy_reload_poll: Duration,
    /// How often a watched kind the API server does not serve, or RBAC
    /// forbids, is looked up again ([`crate::cluster::RETRY_ABSENT`]; tests
    /// shorten it).
    pub retry_absent: Duration,
}

impl Options {
    /// Defaults for `cluster`, with the identity and namespace from the
    /// pod's environment (`POD_NAME`/`HOSTNAME`, `POD_NAMESPACE`).
    pub fn from_env(cluster: Cluster) -> Self {
        let identity = format!(
            "{}-{}",
            std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "otel-admission".into()),
            std::process::id()
        );
        Self {
            config_path: None,
            policies_dir: None,
            policy_enforcement: None,
            cluster,
            identity,
            namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "otel-admission".into()),
            events: EventSettings::default(),
            policy_reload_poll: server::defaults::RELOAD_POLL,
            retry_absent: crate::cluster::RETRY_ABSENT,
        }
    }
}

/// Everything `serve` runs, assembled and started except the listeners.
pub struct App {
    pub config: Arc<ArcSwap<Config>>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// Present with the cluster on.
    pub caches: Option<Arc<Caches>>,
    pub injector: Arc<Injector>,
    pub policies: Arc<Policies>,
    config_path: Option<PathBuf>,
    stop_caches: watch::Sender<bool>,
    stop_reload: watch::Sender<bool>,
    stop_rollout: watch::Sender<bool>,
    reloader: JoinHandle<()>,
    rollout: Option<JoinHandle<()>>,
}

/// The cluster caches as injection reads them, or an empty view.
fn view_of(caches: &Option<Arc<Caches>>) -> Arc<dyn ClusterView> {
    match caches {
        Some(c) => c.clone(),
        None => Arc::new(StaticView::new()),
    }
}

/// An expanded Pod (policy expansion) through `/mutate`'s decide and apply,
/// with its workload as the owner; the pod as it was when it does not
/// parse or nothing is injected.
pub fn inject_expanded(
    pod: serde_json::Value,
    namespace: &str,
    kind: &str,
    name: &str,
    config: &Config,
    view: &dyn ClusterView,
    server_version: Option<(u32, u32)>,
) -> serde_json::Value {
    // Read from the JSON in place: the pod as it was is the fallback.
    let Ok(typed) = <k8s_openapi::api::core::v1::Pod as serde::Deserialize>::deserialize(&pod)
    else {
        return pod;
    };
    let owner = crate::inject::plan::Owner {
        kind: kind.into(),
        name: name.into(),
        via: None,
    };
    let ctx = crate::inject::context::Context {
        namespace,
        config,
        view,
        owner_hint: Some(&owner),
        server_version,
    };
    match crate::inject::outcome::run_owned(typed, &ctx).applied {
        Some(applied) => serde_json::to_value(&applied.pod).unwrap_or(pod),
        None => pod,
    }
}

/// How long inventory changes are gathered before `data.inventory` is
/// rebuilt: a burst of watch events costs one rebuild.
const INVENTORY_SETTLE: Duration = Duration::from_millis(100);

/// Rebuilds `data.inventory` for the policies on every inventory change,
/// and opens `gate` once the policies hold a document built from a synced
/// inventory: a referential policy sees every synced object from the first
/// request readiness lets in.
async fn feed_inventory(
    inventory: Arc<Inventory>,
    policies: Arc<Policies>,
    gate: Gate,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = inventory.subscribe();
    loop {
        changes.borrow_and_update();
        // Read before the document is built: each kind's list is swapped in
        // whole before it reports synced, so this document holds them all.
        let synced = inventory.is_ready();
        // Building the document and the policies over it is CPU work that
        // grows with the cluster: off the async workers.
        let (inv, pol) = (Arc::clone(&inventory), Arc::clone(&policies));
        let built = tokio::task::spawn_blocking(move || pol.set_inventory(inv.value()))
            .await
            .is_ok();
        if !built {
            tracing::error!("data.inventory rebuild panicked; the previous document keeps serving");
        }
        if built && synced {
            gate.set(true);
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::time::sleep(INVENTORY_SETTLE).await;
    }
}

impl App {
    /// Connects to the cluster (per `opts.cluster`), starts the caches,
    /// Events, the policy reloader and the rollout loop, and builds the two
    /// admission handlers over them.
    pub async fn from_config(config: Config, opts: Options) -> Result<Self, AppError> {
        let (dir, named_by) = policies_dir(
            opts.policies_dir.clone(),
            &config.policies,
            opts.config_path.as_deref(),
        );
        // A named directory that is not there is a typo: stop before
        // anything starts, rather than serve with validation silently off.
        if let Some(named_by) = &named_by {
            crate::policy::files::require_dir(&dir, named_by)?;
        }
        let metrics = Arc::new(Metrics::new());
        metrics.zero_events(EventReason::ALL.map(EventReason::as_str));
        metrics.zero_rollout_restarts(Cause::ALL.map(Cause::as_str));
        let readiness = Arc::new(Readiness::default());
        let (stop_caches, stop_rx) = watch::channel(false);
        let connected = match opts.cluster {
            Cluster::Mode(mode) => crate::cluster::connect(mode).await?,
            Cluster::Client(client, version) => Some((client, version)),
        };
        let mut server_version = None;
        let mut events = None;
        let mut cluster = None;
        if let Some((client, version)) = connected {
            server_version = version;
            let caches = Arc::new(Caches::with_absent_retry(opts.retry_absent));
            let gate = readiness.gate("cluster");
            caches.start(client.clone(), metrics.clone(), gate, stop_rx.clone());
            // Events only with the cluster on (SPEC §6).
            let (sender, _task) = Events::start(
                client.clone(),
                opts.events,
                metrics.clone(),
                stop_rx.clone(),
            );
            events = Some(sender);
            cluster = Some((client, caches));
        }
        let caches = cluster.as_ref().map(|(_, c)| Arc::clone(c));

        let policies_gate = readiness.gate("policies");
        let (eval_timeout, failure_mode, memory_limit) = (
            config.policies.eval_timeout,
            config.failure_mode,
            config.policies.memory_limit,
        );
        let config = Arc::new(ArcSwap::from_pointee(config));
        // Compiled off the async workers and within a bound: a policy file
        // the compiler would take minutes on stops the start with its
        // reason instead of a server that never listens.
        let load = {
            let (dir, metrics) = (dir.clone(), metrics.clone());
            tokio::task::spawn_blocking(move || {
                let at = dir.clone();
                crate::policy::bounded(&at, COMPILE_LIMIT, move || {
                    Policies::load(&dir, eval_timeout, failure_mode, metrics)
                })
            })
        };
        let loaded = load.await.map_err(|e| PolicyError::CompilePanicked {
            path: dir.clone(),
            message: e.to_string(),
        })??;
        let loaded = if named_by.is_some() {
            loaded.required()
        } else {
            loaded
        };
        let mut policies = loaded
            .with_config(config.clone())
            .with_memory_limit(memory_limit)
            .with_enforcement(opts.policy_enforcement);
        match policies.enforcement() {
            crate::config::Enforcement::Audit => tracing::info!(
                enforcement = "audit",
                "policies in audit mode: what a policy would deny is a warning, nothing is denied"
            ),
            crate::config::Enforcement::Enforce => tracing::info!(
                enforcement = "enforce",
                "policies enforced: a policy's deny denies"
            ),
        }
        if let Some(caches) = caches.clone() {
            // Gatekeeper namespaceSelector reads the same in-memory cache as injection.
            policies = policies.with_namespace_labels(Box::new(move |ns| {
                caches.namespace(ns).map(|m| m.labels.clone())
            }));
        }
        // An expanded Pod is judged with what `/mutate` will add to it.
        {
            let (config, view) = (Arc::clone(&config), view_of(&caches));
            policies = policies.with_injection(Arc::new(move |pod, ns, kind, name| {
                inject_expanded(
                    pod,
                    ns,
                    kind,
                    name,
                    &config.load(),
                    view.as_ref(),
                    server_version,
                )
            }));
        }
        let policies = Arc::new(policies);
        let mut sync = config.load().policies.sync.clone();
        if let Some((client, _)) = cluster.as_ref() {
            // A Gatekeeper `Config` in the server's namespace adds its kinds.
            let ns = config
                .load()
                .server
                .namespace
                .clone()
                .unwrap_or_else(|| opts.namespace.clone());
            for k in crate::cluster::inventory::gatekeeper_sync_only(client, &ns).await {
                if !sync.contains(&k) {
                    sync.push(k);
                }
            }
        }
        match cluster.as_ref() {
            Some((client, _)) if !sync.is_empty() => {
                let inventory = Inventory::new(&sync);
                inventory.start(
                    client.clone(),
                    metrics.clone(),
                    opts.retry_absent,
                    stop_rx.clone(),
                );
                tokio::spawn(feed_inventory(
                    inventory,
                    Arc::clone(&policies),
                    readiness.gate("inventory"),
                    stop_rx.clone(),
                ));
            }
            _ => {
                for policy in policies.current().reads_inventory() {
                    tracing::warn!(policy = %policy, "reads data.inventory, which is empty: policies.sync lists no kinds (or the cluster is off), so referential checks allow everything");
                }
            }
        }
        policies_gate.set(true);
        let (stop_reload, _) = watch::channel(false);
        let reloader = policies.spawn_reload(opts.policy_reload_poll, stop_reload.subscribe());

        // The rollout loop runs on every replica; it acts only while it holds
        // the Lease, and only with `rollout.enabled` (checked each round).
        let (stop_rollout, stop_rollout_rx) = watch::channel(false);
        let rollout = cluster.map(|(client, caches)| {
            let current = config.load();
            let namespace = current
                .server
                .namespace
                .clone()
                .unwrap_or_else(|| opts.namespace.clone());
            let controller = Controller {
                elector: Elector::new(
                    client.clone(),
                    &namespace,
                    opts.identity.clone(),
                    current.rollout.lease_duration,
                ),
                client,
                config: Arc::clone(&config),
                view: caches,
                metrics: Arc::clone(&metrics),
                events: events.clone(),
                server_version,
            };
            tokio::spawn(controller.run(stop_rollout_rx))
        });

        let view = view_of(&caches);
        let injector = Arc::new(Injector {
            config: Arc::clone(&config),
            view,
            metrics: Arc::clone(&metrics),
            server_version,
            events,
        });
        Ok(Self {
            config,
            metrics,
            readiness,
            caches,
            injector,
            policies,
            config_path: opts.config_path,
            stop_caches,
            stop_reload,
            stop_rollout,
            reloader,
            rollout,
        })
    }

    /// What the listeners dispatch to.
    pub fn services(&self) -> Services {
        Services {
            config: Arc::clone(&self.config),
            config_path: self.config_path.clone(),
            metrics: Arc::clone(&self.metrics),
            readiness: Arc::clone(&self.readiness),
            mutator: self.injector.clone(),
            validator: self.policies.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then drains (SPEC §10): the Lease is
    /// handed over first, so another replica takes the rollout loop at once,
    /// then the listeners drain, then the watchers and the reloader stop.
    pub async fn serve(
        mut self,
        settings: Settings,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AppError> {
        let server = Server::start(settings, self.services()).await?;
        shutdown.await;
        self.stop_rollout.send_replace(true);
        if let Some(t) = self.rollout.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        server.shutdown();
        server.wait().await;
        self.stop_caches.send_replace(true);
        self.stop_reload.send_replace(true);
        self.reloader.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoliciesConfig;

    /// Where the directory was named: the flag, else a `policies.dir` the
    /// config sets, else the default, the only one that may be absent.
    #[test]
    fn the_policy_directory_and_where_it_was_named() {
        let default = PoliciesConfig::default();
        let set = PoliciesConfig {
            dir: "/mistyped".into(),
            ..Default::default()
        };
        let cfg = Some(std::path::Path::new("config.yaml"));
        assert_eq!(
            policies_dir(Some("/x".into()), &set, cfg),
            ("/x".into(), Some("--policies".into()))
        );
        assert_eq!(
            policies_dir(None, &set, cfg),
            ("/mistyped".into(), Some("config.yaml: policies.dir".into()))
        );
        assert_eq!(policies_dir(None, &default, cfg), ("policies".into(), None));
    }
}
