//! The commands and flags (clap), and how `serve`'s flags, env and config
//! file resolve into [`Settings`]: flag/env over the file over defaults.
//!
//! Environment variables are `OTEL_ADMISSION_<FLAG>`, one meaning each
//! across every command: where the same flag takes a file in one command
//! and a value in another, the file's variable says so with `_FILE`
//! (`inject --namespace FILE` is `OTEL_ADMISSION_NAMESPACE_FILE`, since
//! `OTEL_ADMISSION_NAMESPACE` is `rollout`'s namespace filter). Path
//! arguments carry a `value_hint` (file or directory), which the shell
//! completions use and `tests/cli_args.rs` compares to find a variable
//! that means two things.

use crate::cli::ensure_dev_pair;
use crate::config::ClusterMode;
use crate::config::ServerConfig;
use crate::server::{Settings, defaults};
use clap::{Args, Subcommand, ValueHint};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server: /mutate injects, /validate evaluates the
    /// policies; health, readiness and metrics on the admin listener.
    Serve(Box<ServeArgs>),
    /// Write a development CA, a serving pair and cabundle-patch.yaml; print
    /// the caBundle.
    Certs(CertsArgs),
    /// Print the Instrumentation CRD this server reads and the
    /// OpenTelemetryCollector CRD (for clusters without the Operator), as YAML.
    Crd,
    /// Test, verify, evaluate and bundle Rego policies offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inject instrumentation into the pod templates of a manifest (offline,
    /// -f) or of workloads read from the cluster (live, -n NS [KIND/NAME]);
    /// YAML to stdout (or -o), warnings to stderr.
    Inject(InjectArgs),
    /// Explain, per workload and feature, what would be injected and which
    /// annotation, label, namespace setting or rule decided it: offline (-f)
    /// or live (-n NS [KIND/NAME]), live also whether running pods are stale.
    Explain(InjectArgs),
    /// Instrument what already runs: `plan` lists the workloads whose pods
    /// carry stale instrumentation, `apply` restarts them.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Check an install (or, with --pre, a cluster before one) and say
    /// what to fix: one line per check, ✓ ‼ ×, a hint per problem; exit 1
    /// when a check fails.
    Check(CheckArgs),
    /// Print the version, the git commit and the build date.
    Version,
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Before an install: the API server, the rights the manifests need,
    /// the CRDs, the Operator's webhook, the namespaces it would touch.
    #[arg(long, env = "OTEL_ADMISSION_PRE")]
    pub pre: bool,
    /// The namespace the install lives in (an overlay's `namespace:`).
    #[arg(
        long,
        env = "OTEL_ADMISSION_INSTALL_NAMESPACE",
        default_value = "otel-admission"
    )]
    pub install_namespace: String,
    /// `text` (the default) or `json`.
    #[arg(
        short = 'o',
        long = "output",
        env = "OTEL_ADMISSION_OUTPUT",
        default_value = "text"
    )]
    pub output: CheckOutput,
    /// The limit of each API call and TLS handshake, e.g. `5s`.
    #[arg(long, env = "OTEL_ADMISSION_CALL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub call_timeout: std::time::Duration,
}

/// `check -o`; see [`PlanOutput`] for the alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckOutput {
    #[value(alias = "table")]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for, e.g. `source <(otel-admission completion bash)`.
    pub shell: clap_complete::Shell,
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
    // The scope only, not plan's `-o`: apply printed text whatever `-o`
    // said, a flag that silently did nothing.
    #[command(flatten)]
    pub scope: RolloutScope,
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
    #[command(flatten)]
    pub scope: RolloutScope,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        env = "OTEL_ADMISSION_OUTPUT",
        default_value = "table"
    )]
    pub output: PlanOutput,
}

/// What `rollout plan` and `rollout apply` look at.
#[derive(Debug, Args)]
pub struct RolloutScope {
    /// The same config file as `serve` (or its ConfigMap manifest; keys in docs/CONFIG.md).
    #[arg(long, env = "OTEL_ADMISSION_CONFIG", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// Only these namespaces (names); repeatable. All when absent.
    #[arg(
        long = "namespace",
        short = 'n',
        env = "OTEL_ADMISSION_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
}

/// `rollout plan -o`. `OTEL_ADMISSION_OUTPUT` is also `policy eval -o`'s
/// variable, so each accepts the other's name for the human format
/// (`text`, `table`): one exported value works for both commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanOutput {
    #[value(alias = "text")]
    Table,
    Json,
}

/// `policy eval -o`; see [`PlanOutput`] for the alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalOutput {
    #[value(alias = "table")]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run every `test_` rule in the directory's Rego (`opa test` conventions);
    /// exit 1 on a failure.
    Test(PolicyTestArgs),
    /// Run Gatekeeper Suite files (`gator verify` conventions); exit 1 on a
    /// failed assertion.
    Verify(PolicyVerifyArgs),
    /// Print the violations of the policies for objects or AdmissionReviews
    /// (a workload is also judged as the Pod it creates), with each policy's
    /// action; exit 1 on a deny.
    Eval(PolicyEvalArgs),
    /// Print what a server loads from the policy directory (Rego modules,
    /// templates, constraints, expansions; no tests or suites) as the
    /// ConfigMap the manifests mount (manifests/base/policies.yaml).
    Bundle(PolicyBundleArgs),
}

#[derive(Debug, Args)]
pub struct PolicyBundleArgs {
    /// Policy directory.
    #[arg(default_value = "policies", value_hint = ValueHint::DirPath)]
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
    #[arg(default_value = "policies", value_hint = ValueHint::AnyPath)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PolicyVerifyArgs {
    /// Suite files, or directories searched for them.
    #[arg(default_value = "policies", value_hint = ValueHint::AnyPath)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PolicyEvalArgs {
    /// YAML or JSON input, `-` for stdin: objects (multi-document) or AdmissionReviews.
    #[arg(short = 'f', long, env = "OTEL_ADMISSION_FILE", value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// Policy directory.
    #[arg(
        long,
        env = "OTEL_ADMISSION_POLICIES",
        default_value = "policies",
        value_hint = ValueHint::DirPath
    )]
    pub policies: PathBuf,
    /// YAML config file (or its ConfigMap manifest; keys in docs/CONFIG.md): the injection an expanded Pod gets
    /// before it is judged (ExpansionTemplates).
    #[arg(long, env = "OTEL_ADMISSION_CONFIG", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// Output format: `text` (a line per violation) or `json` (one document:
    /// every violation and a summary).
    #[arg(
        short = 'o',
        long = "output",
        env = "OTEL_ADMISSION_OUTPUT",
        default_value = "text"
    )]
    pub output: EvalOutput,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Live: the workload to read from the cluster, `KIND/NAME` (deploy,
    /// sts, ds, cronjob, job, pod); with -n and no target, every workload of
    /// the namespace.
    #[arg(value_name = "KIND/NAME")]
    pub target: Option<String>,
    /// Offline: manifest to read (multi-document YAML or JSON); `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        env = "OTEL_ADMISSION_FILENAME",
        value_hint = ValueHint::FilePath
    )]
    pub filename: Option<PathBuf>,
    /// Live: the namespace (a name) to read the workloads from, in the
    /// cluster of the kubeconfig [default: the kubeconfig context's].
    #[arg(
        short = 'n',
        long = "in-namespace",
        env = "OTEL_ADMISSION_IN_NAMESPACE"
    )]
    pub in_namespace: Option<String>,
    /// Live: the namespace otel-admission is installed in, whose ConfigMap
    /// otel-admission-config (key config.yaml) is the config unless --config is given.
    #[arg(
        long,
        env = "OTEL_ADMISSION_INSTALL_NAMESPACE",
        default_value = "otel-admission"
    )]
    pub install_namespace: String,
    /// YAML config file (or its ConfigMap manifest): rules, defaults, exclusions; every key in docs/CONFIG.md.
    #[arg(long, env = "OTEL_ADMISSION_CONFIG", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// Offline: Namespace objects (YAML file: one or more, or a List) whose labels and
    /// annotations the pods see; the first one's name is the namespace of
    /// objects that name none.
    // `_FILE`: `OTEL_ADMISSION_NAMESPACE` is `rollout`'s namespace filter
    // (a name); read here it made `inject` fail with "cannot read shop".
    #[arg(
        long,
        env = "OTEL_ADMISSION_NAMESPACE_FILE",
        value_hint = ValueHint::FilePath
    )]
    pub namespace: Option<PathBuf>,
    /// Offline: Instrumentation and OpenTelemetryCollector objects (YAML
    /// file: multi-document or a List); repeatable.
    #[arg(
        long,
        env = "OTEL_ADMISSION_INSTRUMENTATION",
        value_delimiter = ',',
        value_hint = ValueHint::FilePath
    )]
    pub instrumentation: Vec<PathBuf>,
    /// `inject`: `yaml` (the default) or `pod` (the Pod each template
    /// makes); `explain`: `text` (the default) or `json`; to stdout. Anything
    /// else is a file to write instead (`./json` for a file named json).
    // A variable of its own: `OTEL_ADMISSION_OUTPUT` is `rollout plan`'s and
    // `policy eval`'s format, and read here `=json` wrote a file named
    // `json` (`=table` still would). `_FILE` for what it mostly names.
    #[arg(
        short = 'o',
        long = "output",
        env = "OTEL_ADMISSION_OUTPUT_FILE",
        value_hint = ValueHint::FilePath
    )]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// YAML config file, or the ConfigMap manifest holding it under data.config.yaml; every key in docs/CONFIG.md. Reloaded on change.
    #[arg(long, env = "OTEL_ADMISSION_CONFIG", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// TLS listener for /mutate and /validate [default: 127.0.0.1:8443].
    #[arg(long, env = "OTEL_ADMISSION_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP listener for /healthz, /readyz, /metrics [default: 127.0.0.1:8080].
    #[arg(long, env = "OTEL_ADMISSION_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// PEM certificate chain; reloaded on change. Without it, a development pair is made under --dev-certs.
    #[arg(
        long,
        env = "OTEL_ADMISSION_TLS_CERT",
        requires = "tls_key",
        value_hint = ValueHint::FilePath
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(
        long,
        env = "OTEL_ADMISSION_TLS_KEY",
        requires = "tls_cert",
        value_hint = ValueHint::FilePath
    )]
    pub tls_key: Option<PathBuf>,
    /// Watch Namespaces, Instrumentations and OpenTelemetryCollectors in the
    /// cluster; `auto` when a kubeconfig or service account is found [default: auto].
    #[arg(long, env = "OTEL_ADMISSION_CLUSTER", value_parser = one_of::<ClusterMode>(ClusterMode::ALL.map(ClusterMode::as_str)))]
    pub cluster: Option<ClusterMode>,
    /// Where the development pair is kept when no certificate is given.
    #[arg(
        long,
        env = "OTEL_ADMISSION_DEV_CERTS",
        default_value = "certs/dev",
        value_hint = ValueHint::DirPath
    )]
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
    #[arg(long, env = "OTEL_ADMISSION_POLICIES", value_hint = ValueHint::DirPath)]
    pub policies: Option<PathBuf>,
    /// `audit`: a policy's deny is a warning; `enforce`: it denies
    /// [default: policies.enforcement of the config, `audit`].
    #[arg(long, env = "OTEL_ADMISSION_POLICY_ENFORCEMENT", value_parser = one_of::<crate::config::Enforcement>(crate::config::Enforcement::ALL.map(crate::config::Enforcement::as_str)))]
    pub policy_enforcement: Option<crate::config::Enforcement>,
    /// After --shutdown-delay, how long in-flight requests get to finish [default: 25s].
    #[arg(long, env = "OTEL_ADMISSION_SHUTDOWN_GRACE", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key and cabundle-patch.yaml into.
    #[arg(long, env = "OTEL_ADMISSION_OUT", value_hint = ValueHint::DirPath)]
    pub out: PathBuf,
    /// DNS name or IP of the serving certificate; repeatable [default: the in-cluster Service names].
    #[arg(long = "dns", env = "OTEL_ADMISSION_DNS", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// Validity of the serving certificate in days.
    #[arg(long, env = "OTEL_ADMISSION_DAYS", default_value_t = 365)]
    pub days: i64,
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

/// A flag whose value is one of a core enum's words: clap lists them in
/// `--help` and refuses any other, and the enum parses itself (the core
/// crate does not know clap).
fn one_of<T>(
    words: impl IntoIterator<Item = &'static str>,
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(words).try_map(|s| s.parse::<T>())
}
