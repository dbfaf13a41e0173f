//! The vocabulary shared by decide, apply, status, metrics and `explain`:
//! closed enums for what can be injected and why something was not.

use std::sync::Arc;

use crate::instrumentation::Instrumentation;
use crate::language::Language;

/// One thing that can be injected. Closed, so metric labels, warnings and the
/// status annotation all come from the same `as_str`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Feature {
    /// A language's auto-instrumentation (or SDK env only for `sdk`).
    Instrumentation(Language),
    /// Language auto-detection, when it finds no single language.
    AutoDetect,
    /// The OpenTelemetry Collector sidecar `otc-container`.
    Sidecar,
    /// Default startup, liveness and readiness probes.
    Probes,
    /// Prometheus scrape and Istio `excludeInboundPorts` annotations.
    Annotations,
}

impl Feature {
    /// The features without a language, in the order decide and apply handle them.
    pub const POD_FEATURES: [Feature; 3] = [Self::Sidecar, Self::Probes, Self::Annotations];
}

/// Why a pod, or one feature of it, was not injected. These are the
/// `skips_total{reason}` label values (SPEC §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    ExcludedNamespace,
    OptedOut,
    NotSelected,
    AlreadyInjected,
    NoInstrumentation,
    AmbiguousInstrumentation,
    InvalidAnnotation,
    /// The pod runs on Windows and the feature's container is Linux-only
    /// (every language agent but `sdk`, and the collector sidecar).
    UnsupportedOs,
    /// The config switches the language off: `languages.<lang>: false` (the
    /// Operator's `--enable-<lang>-instrumentation`), or
    /// `multiInstrumentation: false` and the pod asks for several languages.
    LanguageDisabled,
    /// The container already runs an agent of its own for the language: .NET
    /// with `OTEL_DOTNET_AUTO_HOME` set in the container or in the
    /// Instrumentation's `spec.dotnet.env` (the Operator's refusal, which
    /// takes it to mean the agent is configured already).
    AgentConfigured,
    Error,
}

/// A feature that was asked for but could not be injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub feature: Feature,
    pub reason: SkipReason,
    /// One short fact, shown as a warning.
    pub message: String,
}

/// The Instrumentation a language uses, with the name shown to users.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// `namespace/name`, or `config defaults` for the cluster default.
    pub label: String,
    pub instrumentation: Arc<Instrumentation>,
}

/// `otel-python-platform` / `otel-dotnet-auto-runtime`: which libc the agent is built for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Libc {
    #[default]
    Glibc,
    Musl,
}

/// What to inject for one language.
#[derive(Clone, Debug)]
pub struct LanguagePlan {
    pub language: Language,
    /// In plain words: which annotation, label, namespace setting or rule decided.
    pub decided_by: String,
    pub instrumentation: Resolved,
    /// Names of the target containers (regular or, for some languages, init).
    pub containers: Vec<String>,
    /// How the targets were chosen, for `explain`.
    pub containers_by: String,
    pub libc: Libc,
    /// Go only: the `otel-go-auto-target-exe` path.
    pub go_target_exe: Option<String>,
    /// PHP only: which build of the extension to copy.
    pub php: Option<PhpBuild>,
    /// Targets left out, each a warning (.NET's containers that run their
    /// own agent).
    pub notes: Vec<String>,
}

/// The PHP extension build the annotations select (operator 0.162):
/// `otel-php-api-version` (required), `otel-php-platform`, `otel-php-thread-safety`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhpBuild {
    /// The Zend API version, e.g. `20240924` for PHP 8.4.
    pub api_version: String,
    /// `glibc` or `musl`.
    pub platform: &'static str,
    /// `non-zts` or `zts`.
    pub thread_safety: &'static str,
}

/// The owning workload as far as it can be told without an API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `Deployment`, `ReplicaSet`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`.
    pub kind: String,
    pub name: String,
    /// The intermediate ReplicaSet of a Deployment, or Job of a CronJob.
    pub via: Option<(String, String)>,
}

/// Everything decided for a pod that is (at least partly) selected.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub namespace: String,
    /// The owning workload, for service name and resource attributes.
    pub owner: Option<Owner>,
    pub languages: Vec<LanguagePlan>,
    /// Features that were selected but cannot be injected.
    pub failures: Vec<Failure>,
    /// Notes for `explain` and warnings that are not failures.
    pub notes: Vec<String>,
    /// The collector sidecar, when asked for and possible.
    pub sidecar: Option<SidecarPlan>,
    /// Probes, when asked for: what decided it.
    pub probes: Option<String>,
    /// Prometheus/Istio annotations, when asked for.
    pub annotations: Option<AnnotationsPlan>,
    /// Pod features explicitly turned off (`"false"`), with what said so, for `explain`.
    pub declined: Vec<(Feature, String)>,
}

impl Plan {
    /// Adds a language; its notes (targets left out) join the plan's.
    pub fn add_language(&mut self, mut lp: LanguagePlan) {
        self.notes.append(&mut lp.notes);
        self.languages.push(lp);
    }
}

/// Where the collector's configuration comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum CollectorSource {
    /// An `OpenTelemetryCollector` with `mode: sidecar`, built as the operator builds it.
    Resource(Arc<crate::otelcol::Collector>),
    /// The built-in pipeline to `sidecar.gateway`, in `OTEL_CONFIG`.
    Builtin,
    /// The config's `sidecar.config.inline` YAML, in `OTEL_CONFIG`.
    Inline(String),
    /// A ConfigMap in the pod's namespace (key `collector.yaml`), mounted at `/conf`.
    ConfigMap(String),
}

/// What to inject for the collector sidecar.
#[derive(Clone, Debug)]
pub struct SidecarPlan {
    pub decided_by: String,
    pub source: CollectorSource,
    /// `initContainers` with `restartPolicy: Always`, else `containers`.
    pub native: bool,
    /// Why native or not, for `explain`.
    pub native_by: String,
}

/// What to inject for the annotations feature.
#[derive(Clone, Debug)]
pub struct AnnotationsPlan {
    pub decided_by: String,
    /// Why the pod is in an Istio mesh, when it is.
    pub mesh: Option<String>,
}

/// Why the whole pod is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub reason: SkipReason,
    /// In plain words, naming the annotation, label or setting.
    pub message: String,
}

/// The result of [`crate::inject::decide::decide`].
#[derive(Clone, Debug)]
pub enum Decision {
    Skip(Skip),
    /// Boxed: a plan is much larger than a skip, and decisions are moved around.
    Inject(Box<Plan>),
}

// === impl Feature ===

impl Feature {
    /// The `feature` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instrumentation(_) | Self::AutoDetect => "instrumentation",
            Self::Sidecar => "sidecar",
            Self::Probes => "probes",
            Self::Annotations => "annotations",
        }
    }

    /// The `language` metric label; `none` for features without one, so the
    /// label set stays the same for every series.
    pub fn language(self) -> &'static str {
        match self {
            Self::Instrumentation(l) => l.key(),
            Self::AutoDetect => "auto",
            Self::Sidecar | Self::Probes | Self::Annotations => "none",
        }
    }
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Instrumentation(l) => f.write_str(l.key()),
            Self::AutoDetect => f.write_str("auto"),
            Self::Sidecar | Self::Probes | Self::Annotations => f.write_str(self.as_str()),
        }
    }
}

// === impl SkipReason ===

impl SkipReason {
    pub const ALL: [SkipReason; 11] = [
        Self::ExcludedNamespace,
        Self::OptedOut,
        Self::NotSelected,
        Self::AlreadyInjected,
        Self::NoInstrumentation,
        Self::AmbiguousInstrumentation,
        Self::InvalidAnnotation,
        Self::UnsupportedOs,
        Self::LanguageDisabled,
        Self::AgentConfigured,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExcludedNamespace => "excluded_namespace",
            Self::OptedOut => "opted_out",
            Self::NotSelected => "not_selected",
            Self::AlreadyInjected => "already_injected",
            Self::NoInstrumentation => "no_instrumentation",
            Self::AmbiguousInstrumentation => "ambiguous_instrumentation",
            Self::InvalidAnnotation => "invalid_annotation",
            Self::UnsupportedOs => "unsupported_os",
            Self::LanguageDisabled => "language_disabled",
            Self::AgentConfigured => "agent_configured",
            Self::Error => "error",
        }
    }

    /// Whether `failureMode: deny` turns this into a denial: the user asked for
    /// something and we could not do it. Plain non-selection never denies, nor
    /// does `unsupported_os`: the pod as sent is valid and runs, and denying it
    /// would lock every Windows pod out of a namespace that opts in to a
    /// language. Nor does `language_disabled`: the cluster's own config
    /// declines the language, and the Operator admits such a pod too. Nor
    /// does `agent_configured`: the container has the agent it asked for.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::NoInstrumentation
                | Self::AmbiguousInstrumentation
                | Self::InvalidAnnotation
                | Self::Error
        )
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
