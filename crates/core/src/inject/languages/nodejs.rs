//! Node.js: `--require` of the auto-instrumentation through `NODE_OPTIONS` (operator `nodejs.go`).

use super::{ByLibc, CopiedAgent, EnvStep};
use crate::inject::env_var::ListRule;
use crate::language::Language;

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-nodejs:0.78.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-nodejs";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-nodejs";
pub const MOUNT: &str = "/otel-auto-instrumentation-nodejs";
pub const NODE_OPTIONS_FLAG: &str =
    " --require /otel-auto-instrumentation-nodejs/autoinstrumentation.js";

/// The agent, as data ([`super::inject_copied`] applies it).
pub const AGENT: CopiedAgent = CopiedAgent {
    language: Language::Nodejs,
    default_image: DEFAULT_IMAGE,
    name: INIT_CONTAINER,
    mount: MOUNT,
    source: ByLibc::Same("/autoinstrumentation/."),
    requests: ("50m", "128Mi"),
    mount_per_container: false,
    early: &[],
    vars: &[
        EnvStep::Compose("NODE_OPTIONS", ListRule::Suffix(NODE_OPTIONS_FLAG)),
        EnvStep::Set("OTEL_METRICS_EXPORTER", ByLibc::Same("otlp")),
    ],
};
