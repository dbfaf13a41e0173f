//! The YAML configuration file; every key is in `docs/CONFIG.md`, and
//! `examples/config.yaml` sets them all (`tests/config_reference.rs` keeps
//! both in step with these types).
//!
//! Parsing is strict: an unknown key or a wrong type is an error that names the
//! field path (`rules[0].inject.languages[1]: unknown variant ...`), and every
//! mistake serde lets us find is reported in one pass, not one per run (see
//! [`Config::from_yaml`]). The file may also be the ConfigMap manifest that
//! holds it under `data."config.yaml"`. A running server reloads the file on
//! change and keeps the previous config when the new one is bad (see
//! [`crate::server::reload`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Deserializer, Serialize};

use crate::instrumentation::{Exporter, Instrumentation, InstrumentationSpec, Propagator};
use crate::language::{Language, LanguageChoice};

/// Pinned default OpenTelemetry Collector image for the sidecar.
pub const DEFAULT_COLLECTOR_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector:0.133.0";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not valid YAML: {message}")]
    Yaml { origin: String, message: String },
    #[error("{origin}: refused before parsing: {message}")]
    TooComplex { origin: String, message: String },
    /// Every mistake found, each `path: reason`, in file order: wrong
    /// types, unknown keys (with the nearest known key), then the semantic
    /// checks of the sections that parsed.
    #[error("{origin}: {}", list_problems(problems))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

/// One problem on the same line as the file; several one per line, so a
/// list of ten stays readable on a terminal (log formats escape the newlines).
fn list_problems(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => format!("{} problems:\n  {}", many.len(), many.join("\n  ")),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    /// The cluster default Instrumentation spec, used when a namespace has none.
    pub defaults: Defaults,
    /// Cluster-wide injection rules; the first match wins.
    pub rules: Vec<Rule>,
    /// The Operator's `--enable-<lang>-instrumentation` switches: a
    /// language that is off is never injected (`language_disabled`).
    pub languages: LanguageSwitches,
    /// The Operator's `--enable-multi-instrumentation`: off, a pod that asks
    /// for more than one language gets none of them.
    pub multi_instrumentation: bool,
    pub sidecar: SidecarConfig,
    pub probes: ProbesConfig,
    pub excluded_namespaces: Vec<String>,
    /// Containers never targeted, on top of the built-in list of known sidecars.
    pub skip_containers: Vec<String>,
    pub failure_mode: FailureMode,
    pub policies: PoliciesConfig,
    pub rollout: RolloutConfig,
    pub server: ServerConfig,
}

/// The config's `defaults`: read and written as an Instrumentation spec,
/// kept as the Instrumentation a pod with none in its namespace uses. Built
/// once per config and shared by every request: an Instrumentation is a
/// large struct, and a clone per pod would be the largest copy of a
/// `/mutate`.
#[derive(Clone, Debug, Default)]
pub struct Defaults(std::sync::Arc<Instrumentation>);

impl Defaults {
    pub fn new(spec: InstrumentationSpec) -> Self {
        Self(std::sync::Arc::new(Instrumentation {
            metadata: Default::default(),
            spec,
        }))
    }

    /// The Instrumentation itself, shared.
    pub fn instrumentation(&self) -> &std::sync::Arc<Instrumentation> {
        &self.0
    }

    /// The spec, to change it (copied first when it is shared).
    pub fn spec_mut(&mut self) -> &mut InstrumentationSpec {
        &mut std::sync::Arc::make_mut(&mut self.0).spec
    }
}

impl std::ops::Deref for Defaults {
    type Target = InstrumentationSpec;

    fn deref(&self) -> &InstrumentationSpec {
        &self.0.spec
    }
}

impl PartialEq for Defaults {
    fn eq(&self, other: &Self) -> bool {
        self.0.spec == other.0.spec
    }
}

impl From<InstrumentationSpec> for Defaults {
    fn from(spec: InstrumentationSpec) -> Self {
        Self::new(spec)
    }
}

impl Serialize for Defaults {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.spec.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Defaults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        InstrumentationSpec::deserialize(d).map(Self::new)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default)]
    pub inject: RuleInject,
    /// `name` or `namespace/name` of the Instrumentation to use; else the namespace's or the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instrumentation: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuleInject {
    pub languages: Vec<LanguageChoice>,
    pub sidecar: bool,
    pub probes: bool,
    pub annotations: bool,
}

/// `languages:` one switch per language the Operator gates behind an
/// `--enable-<lang>-instrumentation` flag, with the Operator's defaults (Go
/// and nginx off). `sdk` has no switch: it adds env only, and the Operator
/// never gates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LanguageSwitches {
    pub java: bool,
    pub nodejs: bool,
    pub python: bool,
    pub dotnet: bool,
    pub go: bool,
    pub apache_httpd: bool,
    pub nginx: bool,
    pub php: bool,
    pub ruby: bool,
}

impl Default for LanguageSwitches {
    /// The Operator's defaults: every flag on but Go's and nginx's.
    fn default() -> Self {
        Self {
            java: true,
            nodejs: true,
            python: true,
            dotnet: true,
            go: false,
            apache_httpd: true,
            nginx: false,
            php: true,
            ruby: true,
        }
    }
}

impl LanguageSwitches {
    /// Every switch on: an Operator run with every `--enable-*` flag.
    pub fn all() -> Self {
        Self {
            java: true,
            nodejs: true,
            python: true,
            dotnet: true,
            go: true,
            apache_httpd: true,
            nginx: true,
            php: true,
            ruby: true,
        }
    }

    /// Whether `lang` may be injected (`sdk` always may).
    pub fn enabled(&self, lang: Language) -> bool {
        match lang {
            Language::Java => self.java,
            Language::Nodejs => self.nodejs,
            Language::Python => self.python,
            Language::Dotnet => self.dotnet,
            Language::Go => self.go,
            Language::ApacheHttpd => self.apache_httpd,
            Language::Nginx => self.nginx,
            Language::Php => self.php,
            Language::Ruby => self.ruby,
            Language::Sdk => true,
        }
    }

    /// The key under `languages:` that switches `lang` (`apacheHttpd`);
    /// `None` for `sdk`.
    pub fn key(lang: Language) -> Option<&'static str> {
        match lang {
            Language::Sdk => None,
            Language::ApacheHttpd => Some("apacheHttpd"),
            other => Some(other.key()),
        }
    }

    /// The Operator's flag for `lang` (`--enable-go-instrumentation`).
    /// PHP's and Ruby's are the Operator 0.162's.
    pub fn operator_flag(lang: Language) -> Option<&'static str> {
        Some(match lang {
            Language::Java => "--enable-java-instrumentation",
            Language::Nodejs => "--enable-nodejs-instrumentation",
            Language::Python => "--enable-python-instrumentation",
            Language::Dotnet => "--enable-dotnet-instrumentation",
            Language::Go => "--enable-go-instrumentation",
            Language::ApacheHttpd => "--enable-apache-httpd-instrumentation",
            Language::Nginx => "--enable-nginx-instrumentation",
            Language::Php => "--enable-php-instrumentation",
            Language::Ruby => "--enable-ruby-instrumentation",
            Language::Sdk => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SidecarConfig {
    /// Whether the config file has a `sidecar` section: only then is this a
    /// template for pods whose namespace has no sidecar-mode collector
    /// (docs/INJECTION.md; the operator injects nothing there).
    #[serde(skip)]
    pub defined: bool,
    pub image: String,
    /// Where the collector config comes from; the built-in default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<CollectorConfigSource>,
    pub native: NativeSidecar,
    /// OTLP endpoint the built-in collector config exports to.
    pub gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Exactly one of `configMap` (a ConfigMap name in the pod's namespace, key
/// `collector.yaml`) or `inline` (collector YAML).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorConfigSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// `native: true|false|auto`: whether the collector runs as a native sidecar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NativeSidecar {
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProbesConfig {
    /// A container port name or number.
    pub port: IntOrString,
    pub startup: String,
    pub liveness: String,
    pub readiness: String,
    pub initial_delay_seconds: i32,
    pub period_seconds: i32,
    pub timeout_seconds: i32,
    pub failure_threshold: i32,
    /// Startup probes get this many failures before the kubelet gives up.
    pub startup_failure_threshold: i32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Admit the pod without the failed part, with a warning.
    #[default]
    Allow,
    /// Deny the pod when injection fails.
    Deny,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PoliciesConfig {
    pub dir: PathBuf,
    #[serde(with = "humantime_serde")]
    pub eval_timeout: Duration,
    /// `audit` (the default) reports what a policy would deny as a warning
    /// and counts it; `enforce` denies. `--policy-enforcement` wins.
    pub enforcement: Enforcement,
    /// What one request's evaluation may build (strings, arrays), in bytes:
    /// an integer, or a quantity such as `64Mi`. Over it the evaluation
    /// fails and the request follows `failureMode`. Applied at the next
    /// policy reload.
    #[serde(
        deserialize_with = "bytes_quantity",
        serialize_with = "serialize_bytes"
    )]
    pub memory_limit: u64,
    /// Kinds mirrored into `data.inventory` (docs/POLICIES.md), as Gatekeeper's
    /// `Config` `spec.sync.syncOnly` lists them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sync: Vec<SyncKind>,
}

/// Whether a policy's `deny` denies (docs/POLICIES.md, "From audit to enforce").
///
/// | enforcement | policy action | the answer |
/// |---|---|---|
/// | `audit` | `deny` | allowed, warning `[policy] would deny (audit): msg`, counted as `result="audit"` |
/// | `audit` | `warn` | allowed, warning `[policy] msg` |
/// | `audit` | `dryrun` | allowed, counted and logged only |
/// | `enforce` | `deny` | denied (403) listing the message |
/// | `enforce` | `warn`, `dryrun` | as under `audit` |
///
/// Evaluation errors follow `failureMode`, whatever the enforcement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    #[default]
    Audit,
    Enforce,
}

impl Enforcement {
    /// Every value, for the command line's `--policy-enforcement`.
    pub const ALL: [Enforcement; 2] = [Self::Audit, Self::Enforce];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Enforce => "enforce",
        }
    }
}

impl std::str::FromStr for Enforcement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not audit or enforce"))
    }
}

/// One kind of `policies.sync`: `group` is empty for the core group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncKind {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl SyncKind {
    /// `networking.k8s.io/v1`, or `v1` for the core group: the inventory's key.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl std::fmt::Display for SyncKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.group_version(), self.kind)
    }
}

/// The rollout controller in `serve` (docs/CONFIG.md, "rollout"); off by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutConfig {
    pub enabled: bool,
    pub mode: RolloutMode,
    /// Cluster-wide restarts, `N/s`, `N/m` or `N/h`, spread evenly.
    pub rate_limit: String,
    /// Restarts in progress at once, per namespace.
    pub max_concurrent: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// How long the leader's `Lease` lasts without renewal.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
}

/// `restart`, or `report`: only count and send events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutMode {
    #[default]
    Restart,
    Report,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: RolloutMode::Restart,
            rate_limit: "5/m".into(),
            max_concurrent: 1,
            namespace_selector: None,
            lease_duration: Duration::from_secs(15),
        }
    }
}

impl RolloutConfig {
    /// The spacing between restarts `rateLimit` allows, or why it is invalid.
    pub fn spacing(&self) -> Result<Duration, String> {
        let (n, unit) = self
            .rate_limit
            .split_once('/')
            .ok_or_else(|| format!("{:?} is not N/s, N/m or N/h", self.rate_limit))?;
        let n: u32 = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!(
                "{:?}: the count must be a positive integer",
                self.rate_limit
            )
        })?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("{other:?} is not s, m or h")),
        };
        Ok(per / n)
    }
}

/// `serve` settings. Each can also be given by flag or env, which win.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterMode>,
    /// The namespace the server runs in; always excluded from injection.
    /// `serve` takes `POD_NAMESPACE` when the file names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit_bytes: Option<usize>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub header_read_timeout: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub shutdown_delay: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub shutdown_grace: Option<Duration>,
}

// === impl Config ===

impl Default for Config {
    fn default() -> Self {
        Self {
            defaults: Defaults::new(InstrumentationSpec {
                exporter: Some(Exporter {
                    endpoint: Some("http://otel-collector.monitoring:4318".into()),
                    tls: None,
                }),
                propagators: vec![Propagator::Tracecontext, Propagator::Baggage],
                ..Default::default()
            }),
            rules: Vec::new(),
            languages: LanguageSwitches::default(),
            multi_instrumentation: true,
            sidecar: SidecarConfig::default(),
            probes: ProbesConfig::default(),
            excluded_namespaces: vec![
                "kube-system".into(),
                "kube-public".into(),
                "kube-node-lease".into(),
            ],
            skip_containers: Vec::new(),
            failure_mode: FailureMode::Allow,
            policies: PoliciesConfig::default(),
            rollout: RolloutConfig::default(),
            server: ServerConfig::default(),
        }
    }
}

impl Config {
    /// Reads and validates a config file (or the ConfigMap manifest that
    /// holds one: see [`Config::from_yaml`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates YAML. `origin` names the source in errors.
    ///
    /// A `kind: ConfigMap` document is read through its `data."config.yaml"`
    /// (the form `manifests/base/config.yaml` ships in), so `--config` takes
    /// the manifest as well as the file a pod mounts from it; errors then name
    /// the origin as `FILE (ConfigMap data.config.yaml)`, with line numbers
    /// inside that key.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let value = parse_yaml(text, origin)?;
        match config_map_body(&value) {
            None => Self::from_value(value, origin),
            Some(Ok(body)) => {
                let origin = format!("{origin} (ConfigMap data.config.yaml)");
                // Not unwrapped a second time: a ConfigMap inside a
                // ConfigMap is a mistake, reported as unknown keys.
                Self::from_value(parse_yaml(body, &origin)?, &origin)
            }
            Some(Err(problem)) => Err(ConfigError::Invalid {
                origin: origin.into(),
                problems: vec![problem],
            }),
        }
    }

    /// Deserializes and checks a parsed document, collecting every problem.
    ///
    /// serde stops at a value's first type error, so each top-level section
    /// is deserialized on its own (as a config holding only that section,
    /// which keeps every path rooted at the file); a section that fails is
    /// tried again key by key (a mapping) or item by item (a sequence), so
    /// `policies.evalTimeout` and `policies.enforcement`, or `rules[0]` and
    /// `rules[3]`, are reported together. Unknown keys come from
    /// serde_ignored, which records all of them. The semantic checks
    /// ([`Config::problems`]) run over the sections that parsed: a failed
    /// section keeps its defaults, which pass them.
    fn from_value(value: serde_yaml_ng::Value, origin: &str) -> Result<Self, ConfigError> {
        use serde_yaml_ng::{Mapping, Value};
        if value.is_null() {
            return Ok(Self::default());
        }
        let has_sidecar = value.get("sidecar").is_some();
        let mut found = Problems::default();
        let sections = match value {
            Value::Mapping(m) => m,
            other => {
                // Not a mapping: the whole file is the wrong type.
                let (result, _) = attempt(other);
                found.push(result.err().unwrap_or_else(|| {
                    Located::new(String::new(), "expected a mapping of sections".into())
                }));
                return Err(found.into_error(origin));
            }
        };
        let mut good = Mapping::new();
        for (key, section) in sections {
            let alone = Mapping::from_iter([(key.clone(), section.clone())]);
            let (result, unknown) = attempt(Value::Mapping(alone));
            found.unknown(unknown);
            if key.as_str() == Some("defaults") {
                found.unknown(flattened_unknown(&section));
            }
            let Err(whole) = result else {
                good.insert(key, section);
                continue;
            };
            let name = key.as_str().unwrap_or_default().to_owned();
            let mut narrower = false;
            for (part, prefix, index) in split_section(&key, &section) {
                let (result, unknown) = attempt(part);
                let fix = |l: Located| match index {
                    Some(i) => l.reindexed(&name, i),
                    None => l,
                };
                found.unknown(unknown.into_iter().map(fix));
                if let Err(e) = result
                    && e.within(&prefix)
                {
                    narrower = true;
                    found.push(fix(e));
                }
            }
            // A mistake only the whole section shows (the section itself
            // has the wrong type): its own error.
            if !narrower {
                found.push(whole);
            }
        }
        match attempt(Value::Mapping(good)).0 {
            Ok(mut config) => {
                config.sidecar.defined = has_sidecar;
                for p in config.problems() {
                    found.push_text(p);
                }
                if found.is_empty() {
                    return Ok(config);
                }
            }
            // Each section parsed alone; together they cannot fail, but if
            // they did, say so rather than accept.
            Err(e) => found.push(e),
        }
        Err(found.into_error(origin))
    }

    /// Semantic checks the types cannot express, each as `path: reason`.
    fn problems(&self) -> Vec<String> {
        let mut rollout_problems = Vec::new();
        if let Err(e) = self.rollout.spacing() {
            rollout_problems.push(format!("rollout.rateLimit: {e}"));
        }
        if self.rollout.max_concurrent == 0 {
            rollout_problems.push("rollout.maxConcurrent: must be at least 1".into());
        }
        if self.rollout.lease_duration < Duration::from_secs(1) {
            rollout_problems.push("rollout.leaseDuration: must be at least 1s".into());
        }
        let mut out: Vec<String> = self
            .defaults
            .validate()
            .into_iter()
            .map(|p| format!("defaults.{p}"))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                out.push(format!("rules[{i}].name: must not be empty"));
            } else if !seen.insert(rule.name.as_str()) {
                out.push(format!(
                    "rules[{i}].name: duplicate rule name {:?}",
                    rule.name
                ));
            }
            let inj = &rule.inject;
            if inj.languages.is_empty() && !inj.sidecar && !inj.probes && !inj.annotations {
                out.push(format!(
                    "rules[{i}].inject: injects nothing; set languages, sidecar, probes or annotations"
                ));
            }
            for (field, sel) in [
                ("namespaceSelector", &rule.namespace_selector),
                ("podSelector", &rule.pod_selector),
            ] {
                if let Some(sel) = sel {
                    for p in crate::selector::problems(sel) {
                        out.push(format!("rules[{i}].{field}.{p}"));
                    }
                }
            }
        }
        if let Some(src) = &self.sidecar.config
            && src.config_map.is_some() == src.inline.is_some()
        {
            out.push("sidecar.config: set exactly one of configMap or inline".into());
        }
        if self.sidecar.image.trim().is_empty() {
            out.push("sidecar.image: must not be empty".into());
        }
        if self.sidecar.config.is_none() && self.sidecar.gateway.trim().is_empty() {
            out.push(
                "sidecar.gateway: must not be empty when the built-in collector config is used"
                    .into(),
            );
        }
        let p = &self.probes;
        match &p.port {
            IntOrString::Int(n) if !(1..=65535).contains(n) => {
                out.push(format!("probes.port: {n} is not a port number (1-65535)"));
            }
            IntOrString::String(s) if s.trim().is_empty() => {
                out.push("probes.port: must not be empty".into());
            }
            _ => {}
        }
        for (field, path) in [
            ("startup", &p.startup),
            ("liveness", &p.liveness),
            ("readiness", &p.readiness),
        ] {
            if !path.starts_with('/') {
                out.push(format!("probes.{field}: {path:?} must start with /"));
            }
        }
        // The kubelet rejects these at pod creation; catching them here keeps
        // a bad config from breaking every opted-in pod.
        for (field, v, min) in [
            ("initialDelaySeconds", p.initial_delay_seconds, 0),
            ("periodSeconds", p.period_seconds, 1),
            ("timeoutSeconds", p.timeout_seconds, 1),
            ("failureThreshold", p.failure_threshold, 1),
            ("startupFailureThreshold", p.startup_failure_threshold, 1),
        ] {
            if v < min {
                out.push(format!("probes.{field}: must be at least {min}"));
            }
        }
        if self.policies.eval_timeout.is_zero() {
            out.push("policies.evalTimeout: must be greater than zero".into());
        }
        if self.policies.memory_limit < 1 << 20 {
            out.push("policies.memoryLimit: must be at least 1Mi".into());
        }
        let s = &self.server;
        if s.body_limit_bytes == Some(0) {
            out.push("server.bodyLimitBytes: must be greater than zero".into());
        }
        for (field, d) in [
            ("headerReadTimeout", s.header_read_timeout),
            ("requestTimeout", s.request_timeout),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                out.push(format!("server.{field}: must be greater than zero"));
            }
        }
        if s.request_timeout
            .is_some_and(|d| d > Duration::from_secs(30))
        {
            out.push(
                "server.requestTimeout: must be at most 30s, the API server's webhook timeout limit"
                    .into(),
            );
        }
        out.extend(rollout_problems);
        let mut seen = std::collections::BTreeSet::new();
        for (i, k) in self.policies.sync.iter().enumerate() {
            let at = format!("policies.sync[{i}]");
            if k.version.trim().is_empty() {
                out.push(format!("{at}.version: must not be empty"));
            }
            if k.kind.trim().is_empty() {
                out.push(format!("{at}.kind: must not be empty"));
            }
            if !seen.insert(k) {
                out.push(format!("{at}: {k} is listed twice"));
            }
        }
        out
    }
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            defined: false,
            image: DEFAULT_COLLECTOR_IMAGE.into(),
            config: None,
            native: NativeSidecar::Auto,
            gateway: "otel-collector.monitoring:4317".into(),
            resources: None,
        }
    }
}

impl Default for ProbesConfig {
    fn default() -> Self {
        Self {
            port: IntOrString::String("health".into()),
            startup: "/health/startup".into(),
            liveness: "/health/live".into(),
            readiness: "/health/ready".into(),
            initial_delay_seconds: 0,
            period_seconds: 10,
            timeout_seconds: 1,
            failure_threshold: 3,
            startup_failure_threshold: 30,
        }
    }
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("policies"),
            eval_timeout: Duration::from_millis(500),
            enforcement: Enforcement::Audit,
            memory_limit: DEFAULT_POLICY_MEMORY_LIMIT,
            sync: Vec::new(),
        }
    }
}

/// The default `policies.memoryLimit`: what the guarded builtins of one
/// request's evaluation may build. A few evaluations at once still fit well
/// under the Deployment's 256 MiB.
pub const DEFAULT_POLICY_MEMORY_LIMIT: u64 = 64 << 20;

/// A byte count: an integer, or a string with a binary (`Ki`, `Mi`, `Gi`)
/// or decimal (`k`, `M`, `G`) suffix, as Kubernetes quantities are written.
fn bytes_quantity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Int(n) => return Ok(n),
        Raw::Text(t) => t,
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let unit: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not a byte count (e.g. 67108864, 64Mi, 100M)"
            )));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a byte count (e.g. 67108864, 64Mi, 100M)"
            ))
        })
}

fn serialize_bytes<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*n)
}

/// No YAML content at all: only whitespace, comments and document markers.
/// Parsed, it would be all defaults; `serve` refuses it on reload.
pub fn is_blank(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes).lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// The largest config file read: every real one is a few KiB.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// The deepest flow collection (`[`, `{`) a config file may nest.
pub const MAX_FLOW_DEPTH: usize = 64;

/// The widest indentation (spaces and `- `/`? ` indicators) a line may
/// start with: block nesting is bounded by it.
pub const MAX_INDENT: usize = 512;

/// Refuses, before parsing, a file the YAML parser would take minutes on:
/// the parser reads every event before the deserializer's recursion limit
/// applies, in time that grows with the square of the nesting (a 100,000-deep
/// flow sequence takes about a minute), so nesting is bounded by a linear scan
/// first. The scan skips quoted scalars and comments; it may overcount a
/// bracket inside a plain scalar, which only matters past the bound, where
/// no real config is.
fn check_shape(text: &str) -> Result<(), String> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
            text.len()
        ));
    }
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let indent = line
            .bytes()
            .scan(false, |dash, b| {
                // Spaces, and `- ` or `? ` block indicators, count as indentation.
                let more = matches!(b, b' ' | b'\t') || (matches!(b, b'-' | b'?') && !*dash);
                *dash = matches!(b, b'-' | b'?');
                more.then_some(())
            })
            .count();
        if indent > MAX_INDENT {
            return Err(format!(
                "line {line_no}: indented {indent} columns, over {MAX_INDENT}"
            ));
        }
        let mut quote: Option<u8> = None;
        let mut prev = b' ';
        let mut bytes = line.bytes();
        while let Some(b) = bytes.next() {
            match quote {
                Some(b'"') if b == b'\\' => {
                    bytes.next();
                }
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None => match b {
                    // A quote opens a scalar only where a token starts.
                    b'"' | b'\'' if matches!(prev, b' ' | b'\t' | b'[' | b'{' | b',' | b':') => {
                        quote = Some(b)
                    }
                    b'#' if prev == b' ' || prev == b'\t' => break,
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > MAX_FLOW_DEPTH {
                            return Err(format!(
                                "line {line_no}: flow collections nested deeper than {MAX_FLOW_DEPTH}"
                            ));
                        }
                    }
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            prev = b;
        }
        // A flow collection may span lines; a quoted scalar in block
        // context may too, but the scan resynchronises at the next line.
    }
    Ok(())
}

/// Formats a serde_ignored path the way serde_path_to_error does: `a.b[0].c`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Parses YAML after the shape check (see [`check_shape`]).
fn parse_yaml(text: &str, origin: &str) -> Result<serde_yaml_ng::Value, ConfigError> {
    check_shape(text).map_err(|message| ConfigError::TooComplex {
        origin: origin.into(),
        message,
    })?;
    serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
        origin: origin.into(),
        message: e.to_string(),
    })
}

/// `Some` when the document is a ConfigMap manifest (`kind` is no config
/// key, so this never shadows a config): the text under
/// `data."config.yaml"`, or what is wrong instead, with the keys there are.
fn config_map_body(value: &serde_yaml_ng::Value) -> Option<Result<&str, String>> {
    use serde_yaml_ng::Value;
    if value.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
        return None;
    }
    const WANT: &str = "a ConfigMap: expected the config under data.config.yaml";
    let data = value.get("data").and_then(Value::as_mapping);
    Some(match data.and_then(|d| d.get("config.yaml")) {
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(other) => Err(format!(
            "{WANT} as a string (the file's text); found {}",
            describe_value(other)
        )),
        None => {
            let keys: Vec<String> = data
                .into_iter()
                .flat_map(|d| d.keys())
                .map(|k| match k.as_str() {
                    Some(k) => k.to_owned(),
                    None => format!("{k:?}"),
                })
                .collect();
            Err(if keys.is_empty() {
                format!("{WANT}; found no keys")
            } else {
                format!("{WANT}; found keys: {}", keys.join(", "))
            })
        }
    })
}

fn describe_value(v: &serde_yaml_ng::Value) -> &'static str {
    use serde_yaml_ng::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A mistake at a path of the file (`rules[0].inject`; empty for the root).
struct Located {
    path: String,
    message: String,
}

impl Located {
    fn new(path: String, message: String) -> Self {
        Self { path, message }
    }

    /// Inside `section` or one of its keys or items: `prefix` itself,
    /// `prefix.x` or `prefix[0]`.
    fn within(&self, prefix: &str) -> bool {
        self.path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    }

    /// A sequence item tried alone sits at `[0]`: back to its real index.
    fn reindexed(mut self, section: &str, index: usize) -> Self {
        if let Some(rest) = self.path.strip_prefix(&format!("{section}[0]")) {
            self.path = format!("{section}[{index}]{rest}");
        }
        self
    }

    fn render(&self) -> String {
        if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }
}

/// The problems found so far, each once, in the order found.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push_text(&mut self, problem: String) {
        if !self.0.contains(&problem) {
            self.0.push(problem);
        }
    }

    fn push(&mut self, problem: Located) {
        self.push_text(problem.render());
    }

    fn unknown(&mut self, at: impl IntoIterator<Item = Located>) {
        for l in at {
            self.push_text(unknown_field(&l.path));
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_error(self, origin: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.into(),
            problems: self.0,
        }
    }
}

/// Deserializes a whole config from `value`: its first type error, and
/// every unknown key met before it (paths from the root of the file).
fn attempt(value: serde_yaml_ng::Value) -> (Result<Config, Located>, Vec<Located>) {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| {
        unknown.push(Located::new(field_path(&path), String::new()))
    };
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let result = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // serde_path_to_error writes the root as `.`.
        let path = if path == "." { String::new() } else { path };
        Located::new(path, e.into_inner().to_string())
    });
    (result, unknown)
}

/// A failed section cut one level down, each part a config of its own:
/// `{section: {key: value}}` per key of a mapping, `{section: [item]}` per
/// item of a sequence (with the item's index, to put back in paths), each
/// with the path its errors must fall within. An error outside it (a
/// required key the part lacks) is an artefact of the cut, not a mistake.
fn split_section(
    key: &serde_yaml_ng::Value,
    section: &serde_yaml_ng::Value,
) -> Vec<(serde_yaml_ng::Value, String, Option<usize>)> {
    use serde_yaml_ng::{Mapping, Value};
    let name = key.as_str().unwrap_or_default();
    let wrap = |v: Value| Value::Mapping(Mapping::from_iter([(key.clone(), v)]));
    match section {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let prefix = format!("{name}.{}", k.as_str().unwrap_or_default());
                let one = Value::Mapping(Mapping::from_iter([(k.clone(), v.clone())]));
                (wrap(one), prefix, None)
            })
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    wrap(Value::Sequence(vec![v.clone()])),
                    format!("{name}[0]"),
                    Some(i),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The keys serde reads at a path of the config file, indices written `[]`
/// (`""`, `rules[]`, `rules[].inject`, `defaults.exporter`), taken from the
/// types' own `Deserialize` (see [`fields_of`]), so they cannot drift from
/// the code. Empty for a path that is not a struct here (maps, lists of
/// strings, the Kubernetes types this table does not name).
/// `tests/config_reference.rs` checks that every struct of the config has
/// its entry, so every level gets "did you mean" suggestions.
pub fn known_fields(path: &str) -> &'static [&'static str] {
    use crate::instrumentation as i;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    match path {
        "" => fields_of::<Config>(),
        "defaults" => fields_of::<InstrumentationSpec>(),
        "defaults.exporter" => fields_of::<Exporter>(),
        "defaults.exporter.tls" => fields_of::<i::ExporterTls>(),
        "defaults.sampler" => fields_of::<i::Sampler>(),
        "defaults.resource" => fields_of::<i::Resource>(),
        "defaults.defaults" => fields_of::<i::Defaults>(),
        "defaults.initContainerSecurityContext" => {
            fields_of::<k8s_openapi::api::core::v1::SecurityContext>()
        }
        "defaults.nodejs" | "defaults.php" | "defaults.python" | "defaults.ruby"
        | "defaults.dotnet" => fields_of::<i::LanguageSpec>(),
        "defaults.java" => flattened_fields::<i::Java>(&JAVA),
        "defaults.go" => flattened_fields::<i::Go>(&GO),
        "defaults.apacheHttpd" => flattened_fields::<i::ApacheHttpd>(&APACHE_HTTPD),
        "defaults.nginx" => flattened_fields::<i::Nginx>(&NGINX),
        "rules[]" => fields_of::<Rule>(),
        "rules[].inject" => fields_of::<RuleInject>(),
        "languages" => fields_of::<LanguageSwitches>(),
        "rules[].namespaceSelector" | "rules[].podSelector" | "rollout.namespaceSelector" => {
            fields_of::<LabelSelector>()
        }
        "rules[].namespaceSelector.matchExpressions[]"
        | "rules[].podSelector.matchExpressions[]"
        | "rollout.namespaceSelector.matchExpressions[]" => fields_of::<LabelSelectorRequirement>(),
        "sidecar" => fields_of::<SidecarConfig>(),
        "sidecar.config" => fields_of::<CollectorConfigSource>(),
        "sidecar.resources" => fields_of::<ResourceRequirements>(),
        "probes" => fields_of::<ProbesConfig>(),
        "policies" => fields_of::<PoliciesConfig>(),
        "policies.sync[]" => fields_of::<SyncKind>(),
        "rollout" => fields_of::<RolloutConfig>(),
        "server" => fields_of::<ServerConfig>(),
        _ => &[],
    }
}

static JAVA: OnceLock<Vec<&'static str>> = OnceLock::new();
static GO: OnceLock<Vec<&'static str>> = OnceLock::new();
static APACHE_HTTPD: OnceLock<Vec<&'static str>> = OnceLock::new();
static NGINX: OnceLock<Vec<&'static str>> = OnceLock::new();

/// The keys of a language block that flattens [`LanguageSpec`] in: serde
/// reads such a struct as a map, so [`fields_of`] sees nothing; its JSON
/// schema (the CRD's) lists every key. Computed once per type.
fn flattened_fields<T: schemars::JsonSchema>(
    cell: &'static OnceLock<Vec<&'static str>>,
) -> &'static [&'static str] {
    cell.get_or_init(|| {
        let schema = schemars::schema_for!(T);
        schema
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flat_map(|p| p.keys())
            // Leaked once per key of four types: `known_fields` hands out
            // `&'static str` like serde's own field lists.
            .map(|k| &*Box::leak(k.clone().into_boxed_str()))
            .collect()
    })
}

/// Unknown keys in the language blocks serde reads through
/// `#[serde(flatten)]` (`defaults.java`, `go`, `apacheHttpd`, `nginx`):
/// a flattened struct drops what it does not know without serde_ignored
/// ever seeing it, so `defaults.java.imagee` would pass in silence. Each
/// block is read again as the common [`LanguageSpec`] under serde_ignored,
/// and what that ignores, less the block's own keys (`extensions`,
/// `securityContext`, ...), is unknown. (Inside those own keys nothing is
/// checked: they are Kubernetes types, rarely written here.)
fn flattened_unknown(section: &serde_yaml_ng::Value) -> Vec<Located> {
    let mut out = Vec::new();
    for block in ["java", "go", "apacheHttpd", "nginx"] {
        let Some(value) = section.get(block) else {
            continue;
        };
        let own = known_fields(&format!("defaults.{block}"));
        let mut ignored = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| ignored.push(field_path(&path));
        let de = serde_ignored::Deserializer::new(value.clone(), &mut record);
        // A type error here is the real parse's to report.
        let _ = crate::instrumentation::LanguageSpec::deserialize(de);
        for path in ignored {
            let first = path.split(['.', '[']).next().unwrap_or_default();
            if !own.contains(&first) {
                out.push(Located::new(
                    format!("defaults.{block}.{path}"),
                    String::new(),
                ));
            }
        }
    }
    out
}

/// The field names `T`'s `Deserialize` passes to `deserialize_struct`
/// (serde's derive and k8s-openapi's impls both do), captured by a
/// deserializer that records them and stops; empty for anything else
/// (a map, or a struct with `#[serde(flatten)]`, which reads as a map).
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor, value::Error as Stop};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// `unknown field `a.b``, with the nearest known key at that level when one
/// is close enough to be a typo.
fn unknown_field(path: &str) -> String {
    let shape = index_free(path);
    let (parent, key) = shape.rsplit_once('.').unwrap_or(("", &shape));
    match nearest(key, known_fields(parent)) {
        Some(known) => format!("unknown field `{path}`; did you mean `{known}`?"),
        None => format!("unknown field `{path}`"),
    }
}

/// `rules[2].podSelector` as `rules[].podSelector`, the form
/// [`known_fields`] takes.
fn index_free(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// The known key `key` most likely meant: compared without case, `_` or
/// `-` (so `excluded_namespaces` finds `excludedNamespaces`), within a
/// third of the known key's length (at least one edit), the first of equals.
fn nearest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let key = fold(key);
    known
        .iter()
        .map(|k| (crate::spelling::edit_distance(&key, &fold(k)), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

// === impl NativeSidecar ===

impl Serialize for NativeSidecar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::On => s.serialize_bool(true),
            Self::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for NativeSidecar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NativeSidecar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(if v {
                    NativeSidecar::On
                } else {
                    NativeSidecar::Off
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "auto" => Ok(NativeSidecar::Auto),
                    "true" => Ok(NativeSidecar::On),
                    "false" => Ok(NativeSidecar::Off),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `--cluster`: whether to watch the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// Use the cluster when a kubeconfig or in-cluster account is found.
    #[default]
    Auto,
    /// Require the cluster; fail to start without it.
    On,
    /// Never contact the cluster; run from the config file alone.
    Off,
}

impl ClusterMode {
    /// Every value, for the command line's `--cluster`.
    pub const ALL: [ClusterMode; 3] = [Self::Auto, Self::On, Self::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

impl std::str::FromStr for ClusterMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not auto, on or off"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `policies.memoryLimit` takes bytes or a Kubernetes-style quantity.
    #[test]
    fn memory_limits_read_as_quantities() {
        for (text, want) in [
            ("67108864", 64u64 << 20),
            ("'64Mi'", 64 << 20),
            ("1Gi", 1 << 30),
            ("100M", 100_000_000),
            ("2048Ki", 2 << 20),
        ] {
            let c = Config::from_yaml(&format!("policies: {{memoryLimit: {text}}}"), "t")
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.policies.memory_limit, want, "{text}");
        }
        assert_eq!(
            Config::default().policies.memory_limit,
            DEFAULT_POLICY_MEMORY_LIMIT
        );
    }

    /// A file the YAML parser would spend minutes on is refused at once,
    /// with the line and the reason; ordinary nesting passes.
    #[test]
    fn deep_or_huge_files_are_refused_before_parsing() {
        let started = std::time::Instant::now();
        let n = 100_000;
        let deep = format!("rules: {}{}\n", "[".repeat(n), "]".repeat(n));
        let err = Config::from_yaml(&deep, "cfg.yaml").expect_err("refused");
        assert_eq!(
            err.to_string(),
            "cfg.yaml: refused before parsing: line 1: flow collections nested deeper than 64"
        );
        let dashes = format!("rules:\n{}x\n", "- ".repeat(n));
        let err = Config::from_yaml(&dashes, "cfg.yaml").expect_err("refused");
        assert!(err.to_string().contains("line 2: indented"), "{err}");
        let huge = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
        let err = Config::from_yaml(&huge, "cfg.yaml").expect_err("refused");
        assert!(
            err.to_string().contains("over the 1048576-byte limit"),
            "{err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Brackets in quotes and comments, and nesting a config really has,
        // are not counted against it.
        let fine = format!(
            "# {}\nrules:\n  - name: \"{}\"\n    namespaceSelector: {{matchExpressions: [{{key: a, operator: In, values: [x]}}]}}\n    inject: {{languages: [python]}}\n",
            "[".repeat(200),
            "[".repeat(200)
        );
        Config::from_yaml(&fine, "cfg.yaml").expect("accepted");
        // A quote inside a plain scalar opens nothing: the brackets after
        // it still count.
        let sneaky = format!("rules: [a' {}\n", "[".repeat(100));
        assert!(Config::from_yaml(&sneaky, "cfg.yaml").is_err());
    }

    const SPEC_EXAMPLE: &str = r#"
defaults:
  exporter: { endpoint: http://otel-collector.monitoring:4318 }
  propagators: [tracecontext, baggage]
  sampler: { type: parentbased_traceidratio, argument: "0.1" }
  python: { image: registry.example/python:1 }
rules:
  - name: payments-python
    namespaceSelector: { matchLabels: { team: payments } }
    podSelector: { matchExpressions: [{ key: app.kubernetes.io/name, operator: Exists }] }
    inject: { languages: [python], sidecar: false, probes: true, annotations: true }
sidecar: { image: otel/col:1, config: { configMap: otel-sidecar }, native: auto }
probes: { port: health, startup: /health/startup, liveness: /health/live, readiness: /health/ready }
excludedNamespaces: [kube-system, kube-public, kube-node-lease]
skipContainers: [istio-proxy, linkerd-proxy]
failureMode: allow
policies: { dir: policies, evalTimeout: 500ms }
"#;

    #[test]
    fn the_spec_example_parses() {
        let c = Config::from_yaml(SPEC_EXAMPLE, "example").expect("valid");
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].inject.languages, vec![LanguageChoice::Python]);
        assert_eq!(
            c.sidecar.config,
            Some(CollectorConfigSource {
                config_map: Some("otel-sidecar".into()),
                inline: None
            })
        );
        assert_eq!(c.sidecar.native, NativeSidecar::Auto);
        assert_eq!(c.policies.eval_timeout, Duration::from_millis(500));
        assert_eq!(
            c.defaults.python.as_ref().and_then(|p| p.image.as_deref()),
            Some("registry.example/python:1")
        );
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_yaml("", "x").expect("ok"), Config::default());
        assert_eq!(
            Config::from_yaml("# only a comment\n", "x").expect("ok"),
            Config::default()
        );
    }

    /// Each bad input must name the field path and the reason.
    #[rstest::rstest]
    #[case::unknown_language(
        "rules: [{name: a, inject: {languages: [cobol]}}]",
        "rules[0].inject.languages[0]"
    )]
    #[case::failure_mode("failureMode: maybe", "failureMode")]
    #[case::eval_timeout("policies: {evalTimeout: soon}", "policies.evalTimeout")]
    #[case::memory_limit_word("policies: {memoryLimit: lots}", "policies.memoryLimit")]
    #[case::memory_limit_bad_unit("policies: {memoryLimit: 64Mb}", "policies.memoryLimit")]
    #[case::memory_limit_too_small(
        "policies: {memoryLimit: 1000}",
        "policies.memoryLimit: must be at least 1Mi"
    )]
    #[case::enforcement("policies: {enforcement: strict}", "policies.enforcement")]
    #[case::sidecar_native("sidecar: {native: sometimes}", "sidecar.native")]
    #[case::unknown_rule_field("rules: [{name: a, injekt: {}}]", "rules[0].injekt")]
    #[case::sampler_argument(
        "defaults: {sampler: {type: traceidratio, argument: '2'}}",
        "defaults.sampler.argument"
    )]
    #[case::propagator("defaults: {propagators: [w3c]}", "defaults.propagators[0]")]
    #[case::rule_injects_nothing(
        "rules: [{name: a, inject: {}}]",
        "rules[0].inject: injects nothing"
    )]
    #[case::duplicate_rule_name(
        "rules: [{name: a, inject: {probes: true}}, {name: a, inject: {probes: true}}]",
        "rules[1].name: duplicate"
    )]
    #[case::in_without_values(
        "rules: [{name: a, inject: {probes: true}, podSelector: {matchExpressions: [{key: x, operator: In}]}}]",
        "rules[0].podSelector.matchExpressions[0].values"
    )]
    #[case::request_timeout("server: {requestTimeout: 45s}", "server.requestTimeout")]
    #[case::sidecar_config_empty("sidecar: {config: {}}", "sidecar.config: set exactly one")]
    #[case::sidecar_image_empty("sidecar: {image: ''}", "sidecar.image")]
    #[case::sidecar_gateway_empty("sidecar: {gateway: ''}", "sidecar.gateway")]
    #[case::probes_port("probes: {port: 0}", "probes.port")]
    #[case::probes_liveness("probes: {liveness: health}", "probes.liveness")]
    #[case::probes_period("probes: {periodSeconds: 0}", "probes.periodSeconds")]
    #[case::unknown_top_level_key("unknownTop: 1", "unknownTop")]
    #[case::not_yaml("rules: [1, 2", "not valid YAML")]
    fn errors_name_the_field(#[case] yaml: &str, #[case] needle: &str) {
        let err = Config::from_yaml(yaml, "cfg.yaml")
            .expect_err(yaml)
            .to_string();
        assert!(
            err.contains(needle),
            "{yaml:?}: {err:?} should mention {needle:?}"
        );
        assert!(err.starts_with("cfg.yaml"), "{err}");
    }

    #[rstest::rstest]
    #[case::on("true", NativeSidecar::On)]
    #[case::off("false", NativeSidecar::Off)]
    #[case::auto("auto", NativeSidecar::Auto)]
    fn native_accepts_bools_and_auto(#[case] text: &str, #[case] want: NativeSidecar) {
        let c = Config::from_yaml(&format!("sidecar: {{native: {text}}}"), "x").expect(text);
        assert_eq!(c.sidecar.native, want);
    }

    #[test]
    fn rollout_settings_parse_and_are_checked() {
        let c = Config::from_yaml(
            "rollout: {enabled: true, mode: report, rateLimit: 30/m, maxConcurrent: 2, leaseDuration: 10s}\n",
            "t",
        )
        .expect("valid");
        assert!(c.rollout.enabled);
        assert_eq!(c.rollout.mode, RolloutMode::Report);
        assert_eq!(
            c.rollout.spacing(),
            Ok(Duration::from_secs(2)),
            "30/m is one every 2 s"
        );
        assert_eq!(
            Config::default().rollout.spacing(),
            Ok(Duration::from_secs(12))
        );
        for (yaml, field) in [
            ("rollout: {rateLimit: fast}", "rollout.rateLimit"),
            ("rollout: {rateLimit: 0/m}", "rollout.rateLimit"),
            ("rollout: {rateLimit: 5/d}", "rollout.rateLimit"),
            ("rollout: {maxConcurrent: 0}", "rollout.maxConcurrent"),
            ("rollout: {mode: sometimes}", "rollout.mode"),
        ] {
            let err = Config::from_yaml(yaml, "t").expect_err(yaml).to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        }
    }

    /// `policies.sync` (docs/CONFIG.md): the kinds of `data.inventory`, each named
    /// by its group (empty for core), version and kind; a bad entry names
    /// its index and field.
    #[rstest::rstest]
    #[case::missing_kind("policies: {sync: [{group: apps, version: v1}]}", "policies.sync[0]")]
    #[case::empty_version(
        "policies: {sync: [{version: '', kind: Service}]}",
        "policies.sync[0].version: must not be empty"
    )]
    #[case::unknown_field(
        "policies: {sync: [{version: v1, kind: Service, plural: services}]}",
        "policies.sync[0]"
    )]
    #[case::twice(
        "policies: {sync: [{version: v1, kind: Service}, {version: v1, kind: Service}]}",
        "policies.sync[1]: v1/Service is listed twice"
    )]
    fn bad_sync_entries_name_their_field(#[case] yaml: &str, #[case] want: &str) {
        let err = Config::from_yaml(yaml, "t").expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }

    #[test]
    fn sync_kinds_name_their_group_version() {
        let c = Config::from_yaml(
            "policies: {sync: [{group: networking.k8s.io, version: v1, kind: Ingress}, {version: v1, kind: Namespace}]}",
            "t",
        )
        .expect("valid");
        let gvs: Vec<String> = c
            .policies
            .sync
            .iter()
            .map(SyncKind::group_version)
            .collect();
        assert_eq!(gvs, ["networking.k8s.io/v1", "v1"]);
        assert_eq!(
            c.policies.sync[0].to_string(),
            "networking.k8s.io/v1/Ingress"
        );
    }

    fn manifest(path: &str) -> PathBuf {
        // The repository root, two levels above this crate.
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path)
    }

    /// `--config manifests/base/config.yaml` (the ConfigMap manifest) reads
    /// the config its `data."config.yaml"` holds, exactly what the server in
    /// the cluster reads from the mounted key.
    #[test]
    fn the_shipped_configmap_manifest_loads_as_its_config_yaml() {
        let path = manifest("manifests/base/config.yaml");
        let from_manifest = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        let body = doc["data"]["config.yaml"]
            .as_str()
            .expect("data.config.yaml");
        let mounted = Config::from_yaml(body, "mounted").expect("the mounted file parses");
        assert_eq!(from_manifest, mounted);
        assert_eq!(from_manifest.rules[0].name, "labelled-namespaces-sdk");
    }

    /// A ConfigMap that does not hold the config where it belongs says so,
    /// with the keys it does have, instead of "unknown field `apiVersion`".
    #[rstest::rstest]
    #[case::other_keys(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {collector.yaml: a, rules.yaml: b}\n",
        "cm.yaml: a ConfigMap: expected the config under data.config.yaml; found keys: collector.yaml, rules.yaml"
    )]
    #[case::no_data(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        "cm.yaml: a ConfigMap: expected the config under data.config.yaml; found no keys"
    )]
    #[case::not_text(
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  config.yaml:\n    failureMode: deny\n",
        "cm.yaml: a ConfigMap: expected the config under data.config.yaml as a string (the file's text); found a mapping"
    )]
    #[case::mistake_inside(
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  config.yaml: |\n    failureMode: maybe\n",
        "cm.yaml (ConfigMap data.config.yaml): failureMode: unknown variant `maybe`, expected `allow` or `deny`"
    )]
    fn a_configmap_without_its_config_says_what_it_holds(#[case] yaml: &str, #[case] want: &str) {
        let err = Config::from_yaml(yaml, "cm.yaml").expect_err(yaml);
        assert_eq!(err.to_string(), want);
    }

    /// One run reports every mistake serde can find (one wrong type per key
    /// of a section, per item of a list), every unknown key, and the checks
    /// of the sections that parsed.
    #[test]
    fn every_mistake_is_reported_in_one_pass() {
        let yaml = "\
excludeNamespaces: [kube-system]
failureMode: maybe
policies: {evalTimeout: soon, enforcement: strict}
rules:
  - {name: ok, inject: {probes: true}}
  - {name: b, inject: {languages: [cobol]}}
  - {name: c, injekt: {probes: true}}
  - {name: d, inject: {languages: [fortran]}}
probes: {periodSeconds: 0}
";
        let err = Config::from_yaml(yaml, "cfg.yaml").expect_err("bad");
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{err}");
        };
        let want = [
            "unknown field `excludeNamespaces`; did you mean `excludedNamespaces`?",
            "failureMode: unknown variant `maybe`",
            "policies.evalTimeout: invalid value: string \"soon\"",
            "policies.enforcement: unknown variant `strict`",
            "rules[1].inject.languages[0]: unknown variant `cobol`",
            "unknown field `rules[2].injekt`; did you mean `inject`?",
            // The item tried alone keeps its own index.
            "rules[3].inject.languages[0]: unknown variant `fortran`",
            // A section that parsed is still checked.
            "probes.periodSeconds: must be at least 1",
        ];
        assert_eq!(problems.len(), want.len(), "{err}");
        for (got, want) in problems.iter().zip(want) {
            assert!(
                got.starts_with(want),
                "{got:?} should start {want:?}\n{err}"
            );
        }
        assert!(
            err.to_string()
                .starts_with("cfg.yaml: 8 problems:\n  unknown field"),
            "{err}"
        );
    }

    /// Each unknown key with the nearest known key at its level, when one is
    /// a likely typo; all of them, not the first.
    #[rstest::rstest]
    #[case::top_level(
        "excludeNamespaces: []",
        "unknown field `excludeNamespaces`; did you mean `excludedNamespaces`?"
    )]
    #[case::snake_case(
        "failure_mode: deny",
        "unknown field `failure_mode`; did you mean `failureMode`?"
    )]
    #[case::in_a_rule(
        "rules: [{name: a, inject: {probes: true}, podselector: {}}]",
        "unknown field `rules[0].podselector`; did you mean `podSelector`?"
    )]
    #[case::in_rule_inject(
        "rules: [{name: a, inject: {probes: true, sidecars: true}}]",
        "unknown field `rules[0].inject.sidecars`; did you mean `sidecar`?"
    )]
    #[case::in_a_selector(
        "rules: [{name: a, inject: {probes: true}, podSelector: {matchLabel: {a: b}}}]",
        "unknown field `rules[0].podSelector.matchLabel`; did you mean `matchLabels`?"
    )]
    #[case::in_a_section(
        "policies: {evalTimout: 1s}",
        "unknown field `policies.evalTimout`; did you mean `evalTimeout`?"
    )]
    #[case::in_server(
        "server: {adminListener: '127.0.0.1:1'}",
        "unknown field `server.adminListener`; did you mean `adminListen`?"
    )]
    #[case::in_the_spec(
        "defaults: {exporter: {endpiont: 'http://x:4318'}}",
        "unknown field `defaults.exporter.endpiont`; did you mean `endpoint`?"
    )]
    // `java` flattens the common language keys in, which serde_ignored
    // never sees: this was accepted in silence.
    #[case::in_a_flattened_language_block(
        "defaults: {java: {imagee: registry.example/java:1}}",
        "unknown field `defaults.java.imagee`; did you mean `image`?"
    )]
    #[case::java_own_key(
        "defaults: {java: {extension: []}}",
        "unknown field `defaults.java.extension`; did you mean `extensions`?"
    )]
    #[case::nothing_close("unknownTop: 1", "unknown field `unknownTop`")]
    fn unknown_keys_name_the_nearest_known_key(#[case] yaml: &str, #[case] want: &str) {
        let err = Config::from_yaml(yaml, "t").expect_err(yaml).to_string();
        assert_eq!(err, format!("t: {want}"));
    }

    /// The keys a flattened block does know pass, its own and the common ones.
    #[test]
    fn flattened_language_blocks_accept_their_keys() {
        Config::from_yaml(
            "defaults:\n  java: {image: j, env: [], resources: {}, extensions: [{image: e, dir: /d}]}\n  go: {image: g, securityContext: {privileged: true}}\n  apacheHttpd: {version: '2.4', configPath: /c, attrs: []}\n  nginx: {configFile: /n, attrs: []}\n",
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
