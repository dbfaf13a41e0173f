//! The command line (SPEC §2). This is the binary's edge: it resolves flags,
//! env and the config file into settings, then calls the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app;
use crate::certs::{Bundle, DEFAULT_DNS_NAMES};
use crate::config::ClusterMode;
use crate::config::{Config, ServerConfig};
use crate::inject::cluster_view::{NamespaceMeta, StaticView};
use crate::inject::manifest;
use crate::instrumentation::Instrumentation;
use crate::policy::{self, PolicySet};
use crate::server::{self, Settings, defaults};

#[derive(Debug, Parser)]
#[command(
    name = "otel-admission",
    version,
    about = "Zero-code OpenTelemetry for Kubernetes: an admission webhook that injects instrumentation and validates pods with Rego"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "OTEL_ADMISSION_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax.
    #[arg(
        long,
        global = true,
        env = "OTEL_ADMISSION_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server.
    Serve(Box<ServeArgs>),
    /// Write a development CA and serving certificate; print the caBundle.
    Certs(CertsArgs),
    /// Print the Instrumentation CRD this server reads, as YAML.
    Crd,
    /// Test, verify and evaluate Rego policies offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inject instrumentation into the pod templates of a manifest, offline; YAML to stdout.
    Inject(InjectArgs),
    /// Explain, per workload and feature, what would be injected and why.
    Explain(InjectArgs),
    /// Instrument what already runs: list (and restart) stale workloads.
    #[command(subcommand)]
    Rollout(RolloutCommand),
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// List the Deployments, StatefulSets and DaemonSets whose running pods
    /// carry stale instrumentation; exit 3 when one can be restarted.
    Plan(RolloutPlanArgs),
    /// Restart the stale workloads as `kubectl rollout restart` does, one per
    /// namespace at a time, each waited for until available.
    Apply(RolloutApplyArgs),
}

#[derive(Debug, Args)]
pub struct RolloutApplyArgs {
    #[command(flatten)]
    pub plan: RolloutPlanArgs,
    /// Restart at most this many workloads.
    #[arg(long, env = "OTEL_ADMISSION_MAX")]
    pub max: Option<usize>,
    /// Print what would be restarted; change nothing.
    #[arg(long, env = "OTEL_ADMISSION_DRY_RUN")]
    pub dry_run: bool,
    /// How long to wait for each workload to be available again.
    #[arg(long, env = "OTEL_ADMISSION_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5m")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RolloutPlanArgs {
    /// The same config file as `serve` (rules, defaults, exclusions).
    #[arg(long, env = "OTEL_ADMISSION_CONFIG")]
    pub config: Option<PathBuf>,
    /// Only these namespaces; repeatable. All when absent.
    #[arg(
        long = "namespace",
        short = 'n',
        env = "OTEL_ADMISSION_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// `table` or `json`.
    #[arg(
        short = 'o',
        long = "output",
        env = "OTEL_ADMISSION_OUTPUT",
        default_value = "table"
    )]
    pub output: PlanOutput,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanOutput {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run every `test_` rule in the directory's Rego (`opa test` conventions).
    Test(PolicyTestArgs),
    /// Run Gatekeeper Suite files (`gator verify` conventions).
    Verify(PolicyVerifyArgs),
    /// Print the violations of the policies for an object or AdmissionReview.
    Eval(PolicyEvalArgs),
    /// Print the directory's serving files as a ConfigMap, for the Deployment to mount.
    Bundle(PolicyBundleArgs),
}

#[derive(Debug, Args)]
pub struct PolicyBundleArgs {
    /// Policy directory.
    #[arg(default_value = "policies")]
    pub dir: PathBuf,
    /// Name of the ConfigMap.
    #[arg(
        long,
        env = "OTEL_ADMISSION_NAME",
        default_value = "otel-admission-policies"
    )]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// Directory (or single file) of Rego modules and `*_test.rego` tests.
    #[arg(default_value = "policies")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PolicyVerifyArgs {
    /// Suite files, or directories searched for them.
    #[arg(default_value = "policies")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PolicyEvalArgs {
    /// YAML or JSON input, `-` for stdin: objects (multi-document) or AdmissionReviews.
    #[arg(short = 'f', long, env = "OTEL_ADMISSION_FILE")]
    pub file: PathBuf,
    /// Policy directory.
    #[arg(long, env = "OTEL_ADMISSION_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Manifest to read (multi-document YAML or JSON); `-` for stdin.
    #[arg(short = 'f', long = "filename", env = "OTEL_ADMISSION_FILENAME")]
    pub filename: PathBuf,
    /// YAML config file (SPEC §8): rules, defaults, exclusions.
    #[arg(long, env = "OTEL_ADMISSION_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespace object (YAML) whose labels and annotations the pods see.
    #[arg(long, env = "OTEL_ADMISSION_NAMESPACE")]
    pub namespace: Option<PathBuf>,
    /// Instrumentation and OpenTelemetryCollector objects (YAML, multi-document); repeatable.
    #[arg(long, env = "OTEL_ADMISSION_INSTRUMENTATION", value_delimiter = ',')]
    pub instrumentation: Vec<PathBuf>,
    /// Write the output here instead of stdout.
    #[arg(short = 'o', long = "output", env = "OTEL_ADMISSION_OUTPUT")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// YAML config file (SPEC §8); reloaded on change.
    #[arg(long, env = "OTEL_ADMISSION_CONFIG")]
    pub config: Option<PathBuf>,
    /// TLS listener for /mutate and /validate [default: 127.0.0.1:8443].
    #[arg(long, env = "OTEL_ADMISSION_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP listener for /healthz, /readyz, /metrics [default: 127.0.0.1:8080].
    #[arg(long, env = "OTEL_ADMISSION_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// PEM certificate chain; reloaded on change. Without it, a development pair is made under --dev-certs.
    #[arg(long, env = "OTEL_ADMISSION_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "OTEL_ADMISSION_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Watch Namespaces and Instrumentations in the cluster [default: auto].
    #[arg(long, env = "OTEL_ADMISSION_CLUSTER")]
    pub cluster: Option<ClusterMode>,
    /// Where the development pair is kept when no certificate is given.
    #[arg(long, env = "OTEL_ADMISSION_DEV_CERTS", default_value = "certs/dev")]
    pub dev_certs: PathBuf,
    /// Largest request body accepted, in bytes [default: 6 MiB].
    #[arg(long, env = "OTEL_ADMISSION_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Time a client has to send request headers [default: 10s].
    #[arg(long, env = "OTEL_ADMISSION_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Option<Duration>,
    /// Deadline for answering one request; keep it under the webhook's timeoutSeconds [default: 4s].
    #[arg(long, env = "OTEL_ADMISSION_REQUEST_TIMEOUT", value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,
    /// After SIGTERM, keep accepting this long while endpoints drop us [default: 0s].
    #[arg(long, env = "OTEL_ADMISSION_SHUTDOWN_DELAY", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Option<Duration>,
    /// Policy directory, hot-reloaded [default: policies.dir of the config, `policies`].
    #[arg(long, env = "OTEL_ADMISSION_POLICIES")]
    pub policies: Option<PathBuf>,
    /// After that, how long in-flight requests get to finish [default: 25s].
    #[arg(long, env = "OTEL_ADMISSION_SHUTDOWN_GRACE", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long, env = "OTEL_ADMISSION_OUT")]
    pub out: PathBuf,
    /// DNS name or IP of the serving certificate; repeatable [default: the in-cluster Service names].
    #[arg(long = "dns", env = "OTEL_ADMISSION_DNS", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// Validity of the serving certificate in days.
    #[arg(long, env = "OTEL_ADMISSION_DAYS", default_value_t = 365)]
    pub days: i64,
}

/// Runs the CLI; exit codes per SPEC §2.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held until exit, so buffered log lines are written before we return.
    let _log_guard = init_logging(cli.log_format, &cli.log_level);
    let result = match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|rt| rt.block_on(serve(*args))),
        Command::Certs(args) => certs(args),
        Command::Crd => crd_yaml().map(|y| print!("{y}")),
        Command::Policy(cmd) => match policy(cmd) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Inject(args) => inject_cmd(&args, false),
        Command::Explain(args) => inject_cmd(&args, true),
        Command::Rollout(cmd) => {
            let run = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")
                .and_then(|rt| {
                    rt.block_on(async {
                        match cmd {
                            RolloutCommand::Plan(a) => rollout_plan(&a).await,
                            RolloutCommand::Apply(a) => rollout_apply(&a).await,
                        }
                    })
                });
            match run {
                Ok(code) => return code,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr through a writer thread: the per-admission line costs a
/// write syscall, which should not sit on the request path (about 14% of
/// throughput when it did). Not lossy: every admission keeps its line.
fn init_logging(format: LogFormat, level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("warning: --log-level {level:?} is invalid ({e}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

// === rollout ===

async fn rollout_inputs(
    args: &RolloutPlanArgs,
) -> anyhow::Result<(kube::Client, Vec<crate::rollout::Assessment>)> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let Some((client, _)) = crate::cluster::connect(ClusterMode::On).await? else {
        anyhow::bail!("rollout needs a cluster (kubeconfig or in-cluster service account)");
    };
    let all = crate::rollout::cluster::plan(
        client.clone(),
        &args.namespaces,
        &config,
        Duration::from_secs(30),
    )
    .await?;
    Ok((client, all))
}

async fn rollout_apply(args: &RolloutApplyArgs) -> anyhow::Result<ExitCode> {
    use crate::rollout::cluster::Restart;
    use std::io::IsTerminal as _;
    let (client, all) = rollout_inputs(&args.plan).await?;
    let terminal = std::io::stderr().is_terminal();
    let progress = |a: &crate::rollout::Assessment, r: Option<&Restart>| {
        let what = format!("{} {}/{}", a.kind.as_str(), a.namespace, a.name);
        match r {
            None if terminal => eprint!("\r\x1b[K… restarting {what}"),
            None => {}
            Some(r) => {
                let end = match r {
                    Restart::Done(s) => format!("restarted {what}, available after {s}s"),
                    Restart::NotAvailable => {
                        format!("restarted {what}, NOT available within the timeout")
                    }
                    Restart::Failed(e) => format!("FAILED {what}: {e}"),
                    Restart::Planned => format!("would restart {what} ({})", a.reason),
                };
                if terminal {
                    eprintln!("\r\x1b[K{end}");
                } else {
                    eprintln!("{end}");
                }
            }
        }
    };
    let results = crate::rollout::cluster::apply(
        &client,
        &all,
        args.max,
        args.dry_run,
        args.timeout,
        &progress,
    )
    .await;
    let count = |f: fn(&Restart) -> bool| results.iter().filter(|(_, r)| f(r)).count();
    let done = count(|r| matches!(r, Restart::Done(_)));
    let slow = count(|r| matches!(r, Restart::NotAvailable));
    let failed = count(|r| matches!(r, Restart::Failed(_)));
    let planned = count(|r| matches!(r, Restart::Planned));
    let skipped = all
        .iter()
        .filter(|a| a.stale && a.not_restartable.is_some())
        .count();
    println!(
        "rollout: {done} restarted, {slow} not available in time, {failed} failed, {planned} planned (dry run), {skipped} stale but not restartable"
    );
    Ok(if failed + slow > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn rollout_plan(args: &RolloutPlanArgs) -> anyhow::Result<ExitCode> {
    let (_, all) = rollout_inputs(args).await?;
    match args.output {
        PlanOutput::Table => print!("{}", crate::rollout::table(&all)),
        PlanOutput::Json => println!("{}", serde_json::to_string_pretty(&all)?),
    }
    let restartable = all.iter().any(|a| a.stale && a.not_restartable.is_none());
    Ok(if restartable {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

// === serve ===

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let settings = args.settings(&config.server)?;
    let cluster = args.cluster.or(config.server.cluster).unwrap_or_default();
    let mut opts = app::Options::from_env(app::Cluster::Mode(cluster));
    opts.config_path = args.config.clone();
    opts.policies_dir = args.policies.clone();
    opts.policy_reload_poll = settings.reload_poll;
    app::App::from_config(config, opts)
        .await?
        .serve(settings, server::shutdown_signal())
        .await?;
    Ok(())
}

impl ServeArgs {
    /// Flag/env (already merged by clap) over the config file over defaults.
    pub fn settings(&self, file: &ServerConfig) -> anyhow::Result<Settings> {
        let parse = |s: &str| s.parse::<SocketAddr>();
        let (tls_cert, tls_key) = match (
            self.tls_cert.clone().or(file.tls_cert.clone()),
            self.tls_key.clone().or(file.tls_key.clone()),
        ) {
            (Some(c), Some(k)) => (c, k),
            (None, None) => ensure_dev_pair(&self.dev_certs)?,
            (Some(_), None) => {
                anyhow::bail!("--tls-cert is set but --tls-key (or server.tlsKey) is not")
            }
            (None, Some(_)) => {
                anyhow::bail!("--tls-key is set but --tls-cert (or server.tlsCert) is not")
            }
        };
        let request_timeout = self
            .request_timeout
            .or(file.request_timeout)
            .unwrap_or(defaults::REQUEST_TIMEOUT);
        if request_timeout.is_zero() || request_timeout > Duration::from_secs(30) {
            anyhow::bail!("--request-timeout must be between 1ms and 30s, got {request_timeout:?}");
        }
        let body_limit = self
            .body_limit
            .or(file.body_limit_bytes)
            .unwrap_or(defaults::BODY_LIMIT);
        if body_limit == 0 {
            anyhow::bail!("--body-limit must be greater than zero");
        }
        Ok(Settings {
            listen: match self.listen.or(file.listen) {
                Some(a) => a,
                None => parse(defaults::LISTEN)?,
            },
            admin_listen: match self.admin_listen.or(file.admin_listen) {
                Some(a) => a,
                None => parse(defaults::ADMIN_LISTEN)?,
            },
            tls_cert,
            tls_key,
            body_limit,
            header_read_timeout: self
                .header_read_timeout
                .or(file.header_read_timeout)
                .unwrap_or(defaults::HEADER_READ_TIMEOUT),
            request_timeout,
            shutdown_delay: self
                .shutdown_delay
                .or(file.shutdown_delay)
                .unwrap_or(defaults::SHUTDOWN_DELAY),
            shutdown_grace: self
                .shutdown_grace
                .or(file.shutdown_grace)
                .unwrap_or(defaults::SHUTDOWN_GRACE),
            reload_poll: defaults::RELOAD_POLL,
        })
    }
}

/// Reuses the development pair in `dir` while it is valid for another day;
/// otherwise writes a new one for localhost.
pub fn ensure_dev_pair(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert), std::fs::read(&key))
        && let Ok(pair) = server::tls::parse_pair(&c, &k)
        && pair.not_after > time::OffsetDateTime::now_utc().unix_timestamp() + 86_400
    {
        tracing::info!(dir = %dir.display(), "using the development certificate");
        return Ok((cert, key));
    }
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    names.extend(DEFAULT_DNS_NAMES.iter().map(|s| s.to_string()));
    Bundle::generate(&names, 30)?.write(dir).with_context(|| {
        format!(
            "cannot write the development certificate to {}",
            dir.display()
        )
    })?;
    tracing::warn!(
        dir = %dir.display(),
        "no --tls-cert given: generated a self-signed development certificate (ca.crt in the same directory)"
    );
    Ok((cert, key))
}

/// The Instrumentation CRD, generated from [`crate::instrumentation`]'s types.
pub fn crd_yaml() -> anyhow::Result<String> {
    use kube::CustomResourceExt as _;
    let crd = crate::instrumentation::Instrumentation::crd();
    Ok(format!(
        "# Generated by `otel-admission crd`; do not edit.\n{}---\n{}",
        serde_yaml_ng::to_string(&crd)?,
        crate::otelcol::CRD_YAML
    ))
}

// === policy ===

/// Offline runs get a generous limit: a laptop is not an API server deadline.
const OFFLINE_EVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit 0 when everything passed, 1 on test failures or denials, 2 (via
/// `Err`) on unusable input.
fn policy(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Test(a) => {
            let report = policy::testing::run(&a.dir, OFFLINE_EVAL_TIMEOUT)?;
            print!("{}", report.render());
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PolicyCommand::Verify(a) => {
            let suites = policy::suite::find_suites(&a.paths)?;
            if suites.is_empty() {
                anyhow::bail!("no Suite files found in {:?}", a.paths);
            }
            let mut report = policy::suite::Report::default();
            for s in &suites {
                policy::suite::run_suite(s, &mut report)?;
            }
            print!("{}", report.render());
            Ok(if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PolicyCommand::Eval(a) => policy_eval(&a),
        PolicyCommand::Bundle(a) => {
            print!("{}", policy_bundle(&a)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The ConfigMap `manifests/base/policies.yaml` is generated with.
pub fn policy_bundle(a: &PolicyBundleArgs) -> anyhow::Result<String> {
    let entries = policy::engine::bundle_entries(&a.dir)?;
    if entries.is_empty() {
        anyhow::bail!("{}: no policies to bundle", a.dir.display());
    }
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": a.name,
            "labels": {"app.kubernetes.io/name": "otel-admission"}
        },
        "data": entries,
    });
    Ok(format!(
        "# Generated by `otel-admission policy bundle {}`; do not edit.\n{}",
        a.dir.display(),
        serde_yaml_ng::to_string(&cm)?
    ))
}

fn policy_eval(a: &PolicyEvalArgs) -> anyhow::Result<ExitCode> {
    let set = if a.policies.is_dir() {
        PolicySet::load_dir(&a.policies, OFFLINE_EVAL_TIMEOUT)?
    } else {
        anyhow::bail!("--policies {}: not a directory", a.policies.display());
    };
    let (text, name) = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        (s, PathBuf::from("<stdin>"))
    } else {
        (
            std::fs::read_to_string(&a.file)
                .with_context(|| format!("{}: cannot read", a.file.display()))?,
            a.file.clone(),
        )
    };
    let docs = policy::engine::parse_documents(&text, &name)?;
    let mut denied = false;
    let mut errors = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let review = policy::suite::review_for(doc);
        let req = &review["request"];
        let what = format!(
            "{}/{}",
            req.pointer("/kind/kind")
                .and_then(|v| v.as_str())
                .unwrap_or(""),
            req.pointer("/object/metadata/name")
                .and_then(|v| v.as_str())
                .unwrap_or("<generated>")
        );
        let outcome = set.evaluate(&review, &|_: &str| None);
        for v in &outcome.violations {
            denied |= v.action == policy::gatekeeper::Action::Deny;
            println!(
                "{}: document {i} {what}: {} [{}] {}",
                name.display(),
                v.action.as_str(),
                v.policy,
                v.message
            );
        }
        for (p, e) in &outcome.errors {
            errors.push(format!(
                "{}: document {i} {what}: [{p}] {e}",
                name.display()
            ));
        }
        if outcome.violations.is_empty() && outcome.errors.is_empty() {
            eprintln!("{}: document {i} {what}: no violations", name.display());
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("policy evaluation failed:\n{}", errors.join("\n"));
    }
    Ok(if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

// === inject, explain ===

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Builds the config and view `inject` and `explain` run against.
fn offline_inputs(args: &InjectArgs) -> anyhow::Result<(Config, StaticView, String)> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut view = StaticView::new();
    let mut default_ns = "default".to_string();
    if let Some(p) = &args.namespace {
        let origin = p.display().to_string();
        let text = read_input(p)?;
        let docs = manifest::parse_documents(&text, &origin)?;
        let doc = docs
            .into_iter()
            .next()
            .with_context(|| format!("{origin}: no Namespace document"))?;
        let ns: k8s_openapi::api::core::v1::Namespace = serde_path_to_error::deserialize(&doc)
            .map_err(|e| anyhow::anyhow!("{origin}: document 0: {}: {}", e.path(), e.inner()))?;
        let name = ns.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            anyhow::bail!("{origin}: document 0: metadata.name: a Namespace needs a name");
        }
        view = view.with_namespace(name.clone(), NamespaceMeta::from(&ns));
        default_ns = name;
    }
    for p in &args.instrumentation {
        let origin = p.display().to_string();
        let text = read_input(p)?;
        for (i, doc) in manifest::parse_documents(&text, &origin)?
            .into_iter()
            .enumerate()
        {
            if doc.get("kind").and_then(|k| k.as_str()) == Some(crate::otelcol::KIND) {
                let c = crate::otelcol::Collector::from_object(&doc, &default_ns)
                    .map_err(|e| anyhow::anyhow!("{origin}: document {i}: {e}"))?;
                view = view.with_collector(c);
                continue;
            }
            let inst: Instrumentation = serde_path_to_error::deserialize(&doc).map_err(|e| {
                anyhow::anyhow!("{origin}: document {i}: {}: {}", e.path(), e.inner())
            })?;
            if inst.metadata.name.as_deref().unwrap_or_default().is_empty() {
                anyhow::bail!(
                    "{origin}: document {i}: metadata.name: an Instrumentation needs a name"
                );
            }
            let problems = inst.spec.validate();
            if let Some(pr) = problems.first() {
                anyhow::bail!("{origin}: document {i}: spec.{pr}");
            }
            view = view.with_instrumentation(inst, &default_ns);
        }
    }
    Ok((config, view, default_ns))
}

fn inject_cmd(args: &InjectArgs, explain: bool) -> anyhow::Result<()> {
    let (config, view, default_ns) = offline_inputs(args)?;
    let origin = if args.filename.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        args.filename.display().to_string()
    };
    let text = read_input(&args.filename)?;
    let inputs = manifest::Inputs {
        config: &config,
        view: &view,
        default_namespace: &default_ns,
        // Offline: `sidecar.native: auto` means native (SPEC §5, docs/INJECTION.md).
        server_version: None,
    };
    let processed = manifest::process(&text, &origin, &inputs)?;
    let out = if explain {
        manifest::explain(&origin, &processed.reports)
    } else {
        for r in &processed.reports {
            for w in &r.outcome.warnings {
                eprintln!("{origin}[{}] {}: {w}", r.index, r.workload);
            }
        }
        manifest::to_yaml(&processed.documents).context("cannot write YAML")?
    };
    match &args.output {
        Some(p) => {
            std::fs::write(p, out).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(out.as_bytes())
                .context("cannot write to stdout")?;
        }
    }
    Ok(())
}

// === certs ===

fn certs(args: CertsArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if args.dns.is_empty() {
        DEFAULT_DNS_NAMES.iter().map(|s| s.to_string()).collect()
    } else {
        args.dns
    };
    let bundle = Bundle::generate(&names, args.days)?;
    bundle.write(&args.out)?;
    eprintln!(
        "wrote ca.crt, ca.key, tls.crt, tls.key, cabundle-patch.yaml to {} for {}; caBundle follows",
        args.out.display(),
        names.join(", ")
    );
    println!("{}", bundle.ca_bundle());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_certs(dir: &Path) -> ServeArgs {
        ServeArgs {
            tls_cert: Some(dir.join("tls.crt")),
            tls_key: Some(dir.join("tls.key")),
            ..Default::default()
        }
    }

    /// flag > file > default, for each setting.
    #[test]
    fn precedence_table() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = ServerConfig {
            listen: Some("0.0.0.0:9443".parse().expect("addr")),
            request_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let none = ServerConfig::default();
        let mut flags = with_certs(dir.path());
        flags.listen = Some("127.0.0.1:7443".parse().expect("addr"));

        let s = flags.settings(&file).expect("ok");
        assert_eq!(s.listen.to_string(), "127.0.0.1:7443", "flag beats file");
        assert_eq!(
            s.request_timeout,
            Duration::from_secs(2),
            "file beats default"
        );
        assert_eq!(
            s.admin_listen.to_string(),
            defaults::ADMIN_LISTEN,
            "default"
        );

        let s = with_certs(dir.path()).settings(&file).expect("ok");
        assert_eq!(s.listen.to_string(), "0.0.0.0:9443", "file beats default");
        let s = with_certs(dir.path()).settings(&none).expect("ok");
        assert_eq!(s.listen.to_string(), defaults::LISTEN);
        assert_eq!(s.body_limit, 6 * 1024 * 1024);
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_settings_name_the_flag() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut a = with_certs(dir.path());
        a.request_timeout = Some(Duration::from_secs(60));
        let err = a.settings(&ServerConfig::default()).expect_err("too long");
        assert!(err.to_string().contains("--request-timeout"), "{err}");
        let a = ServeArgs {
            tls_cert: Some(dir.path().join("x")),
            ..Default::default()
        };
        let err = a.settings(&ServerConfig::default()).expect_err("half pair");
        assert!(err.to_string().contains("--tls-key"), "{err}");
    }

    #[test]
    fn dev_pair_is_generated_then_reused() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path().join("dev");
        let (c, _) = ensure_dev_pair(&d).expect("gen");
        let first = std::fs::read(&c).expect("read");
        ensure_dev_pair(&d).expect("reuse");
        assert_eq!(
            std::fs::read(&c).expect("read"),
            first,
            "reused, not regenerated"
        );
        std::fs::write(&c, "garbage").expect("w");
        ensure_dev_pair(&d).expect("regen");
        assert_ne!(std::fs::read(&c).expect("read"), b"garbage");
    }

    #[test]
    fn cli_parses_and_every_flag_has_an_env_var() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().to_string());
                let want = format!(
                    "OTEL_ADMISSION_{}",
                    arg.get_long()
                        .unwrap_or_default()
                        .replace('-', "_")
                        .to_uppercase()
                );
                assert_eq!(
                    env.as_deref(),
                    Some(want.as_str()),
                    "{} --{:?}",
                    sub.get_name(),
                    arg.get_long()
                );
            }
        }
    }
}
