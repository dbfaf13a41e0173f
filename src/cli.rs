//! The command line (SPEC §2). This is the binary's edge: it resolves flags,
//! env and the config file into settings, then calls the library.

pub mod args;
mod json_line;
mod live;
mod log_sink;
mod offline;
mod policy;
mod rollout;
mod text_fields;

use crate::app;
use crate::certs::{Bundle, DEFAULT_DNS_NAMES};
use crate::cli::args::{CertsArgs, Command, CompletionArgs, RolloutCommand, ServeArgs};
use crate::cli::offline::inject_cmd;
use crate::cli::policy::policy;
use crate::cli::rollout::{rollout_apply, rollout_plan};
use crate::config::Config;
use crate::server::{self};
use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// What `--version` and `version` print after the name, and what the
/// `otel_admission_build_info` gauge carries: the crate version, the git
/// commit and the build date, stamped by build.rs (`unknown` commit when
/// built outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OTEL_ADMISSION_GIT_COMMIT"),
    ", built ",
    env!("OTEL_ADMISSION_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "otel-admission",
    version = VERSION,
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
        Command::Check(args) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|rt| rt.block_on(check(&args)))
        {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Version => {
            println!("otel-admission {VERSION}");
            Ok(())
        }
        Command::Completion(args) => completion(&args),
        Command::Inject(args) if live::is_live(&args) => live::live_cmd(&args, false),
        Command::Explain(args) if live::is_live(&args) => live::live_cmd(&args, true),
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
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// `check`: exit 0 when no check failed, 1 when one did, 2 when it could
/// not run at all (no kubeconfig).
async fn check(args: &crate::cli::args::CheckArgs) -> anyhow::Result<ExitCode> {
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!("check needs a cluster: no kubeconfig or in-cluster service account ({e})")
    })?;
    let client = kube::Client::try_from(config).context("cannot build a cluster client")?;
    let report = crate::check::run(
        client,
        crate::check::Options {
            namespace: args.install_namespace.clone(),
            pre: args.pre,
            timeout: args.call_timeout,
        },
    )
    .await;
    match args.output {
        crate::cli::args::CheckOutput::Text => print!("{}", report.text()),
        crate::cli::args::CheckOutput::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).context("cannot write JSON")?
        ),
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The error and its causes on one line, as anyhow's `{:#}` writes them,
/// but each cause once. Many error types put `{source}` in their own
/// Display *and* return it from `source()`, so `{:#}` printed
/// "No such file or directory (os error 2): No such file or directory (os
/// error 2)". Fixed here, at the edge, so it holds whatever an error type
/// in the library does: a cause whose text the last printed message
/// already contains adds nothing, and is left out.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || last.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}

/// Writes the completion script for `args.shell` to stdout. Generated into
/// memory first: `clap_complete` panics on a write error (`| head`), where
/// we want the usual `error:` line.
fn completion(args: &CompletionArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("cannot write to stdout")
}

/// Logs go to stderr through a writer thread ([`log_sink`]): the
/// per-admission line costs a write syscall, which should not sit on the
/// request path, nor wake a thread per line. Not lossy: every admission
/// keeps its line. In the text format every field value is escaped
/// ([`text_fields`]): a request's uid or a policy's message cannot forge a
/// line.
fn init_logging(format: LogFormat, level: &str) -> Option<log_sink::Guard> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("warning: --log-level {level:?} is invalid ({e}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let (sink, guard) = match log_sink::spawn(std::io::stderr()) {
        Ok((sink, guard)) => (Some(sink), Some(guard)),
        Err(e) => {
            eprintln!("warning: cannot start the log writer thread ({e}); logging directly");
            (None, None)
        }
    };
    match (format, sink) {
        (LogFormat::Text, Some(s)) => builder
            .fmt_fields(text_fields::TextFields)
            .with_writer(s)
            .init(),
        (LogFormat::Json, Some(s)) => builder
            .event_format(json_line::JsonLine)
            .with_writer(s)
            .init(),
        (LogFormat::Text, None) => builder
            .fmt_fields(text_fields::TextFields)
            .with_writer(std::io::stderr)
            .init(),
        (LogFormat::Json, None) => builder
            .event_format(json_line::JsonLine)
            .with_writer(std::io::stderr)
            .init(),
    }
    guard
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    // In a pod (the manifests set POD_NAMESPACE from the downward API) the
    // server's own namespace is excluded from injection without being
    // written in the config, so the install can move by kustomize alone.
    if config.server.namespace.is_none() {
        config.server.namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|ns| !ns.is_empty());
    }
    let settings = args.settings(&config.server)?;
    let cluster = args.cluster.or(config.server.cluster).unwrap_or_default();
    let mut opts = app::Options::from_env(app::Cluster::Mode(cluster));
    opts.config_path = args.config.clone();
    opts.policies_dir = args.policies.clone();
    opts.policy_enforcement = args.policy_enforcement;
    opts.policy_reload_poll = settings.reload_poll;
    app::App::from_config(config, opts)
        .await?
        .serve(settings, server::shutdown_signal())
        .await?;
    Ok(())
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

/// The Instrumentation CRD, generated from [`crate::instrumentation`]'s
/// types, then the OpenTelemetryCollector CRD for clusters without the
/// Operator ([`crate::otelcol::CRD_YAML`]).
pub fn crd_yaml() -> anyhow::Result<String> {
    use kube::CustomResourceExt as _;
    let crd = crate::instrumentation::Instrumentation::crd();
    Ok(format!(
        "# Generated by `otel-admission crd`; do not edit.\n{}---\n{}",
        serde_yaml_ng::to_string(&crd)?,
        crate::otelcol::CRD_YAML
    ))
}

/// Offline runs get a generous limit: a laptop is not an API server deadline.
pub(crate) const OFFLINE_EVAL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn certs(args: CertsArgs) -> anyhow::Result<()> {
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
    use crate::config::ServerConfig;
    use crate::server::defaults;

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

    /// A library error that, like many, writes its source into its own
    /// message and also returns it from `source()`.
    #[derive(Debug)]
    struct Echoes(std::io::Error);
    impl std::fmt::Display for Echoes {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read config file x: {}", self.0)
        }
    }
    impl std::error::Error for Echoes {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn error_text_prints_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Echoes(io())).context("loading");
        assert_eq!(
            format!("{e:#}"),
            "loading: cannot read config file x: no such file: no such file",
            "anyhow alone repeats the cause"
        );
        assert_eq!(
            error_text(&e),
            "loading: cannot read config file x: no such file"
        );
        // A cause the message does not already hold is kept.
        let e = anyhow::Error::new(io()).context("cannot read x");
        assert_eq!(error_text(&e), "cannot read x: no such file");
    }
}
