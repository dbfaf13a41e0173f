//! Python: the auto-instrumentation on `PYTHONPATH`, glibc or musl build
//! chosen by `otel-python-platform` (operator `python.go`).

use super::{ByLibc, CopiedAgent, EnvStep};
use crate::inject::env_var::ListRule;
use crate::language::Language;

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.64b0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-python";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-python";
pub const MOUNT: &str = "/otel-auto-instrumentation-python";
pub const PYTHONPATH_PREFIX: &str =
    "/otel-auto-instrumentation-python/opentelemetry/instrumentation/auto_instrumentation";
pub const PYTHONPATH_SUFFIX: &str = "/otel-auto-instrumentation-python";

/// The agent, as data ([`super::inject_copied`] applies it).
pub const AGENT: CopiedAgent = CopiedAgent {
    language: Language::Python,
    default_image: DEFAULT_IMAGE,
    name: INIT_CONTAINER,
    mount: MOUNT,
    source: ByLibc::Builds {
        glibc: "/autoinstrumentation/.",
        musl: "/autoinstrumentation-musl/.",
    },
    requests: ("50m", "64Mi"),
    mount_per_container: false,
    early: &[EnvStep::Compose(
        "PYTHONPATH",
        ListRule::Wrap(PYTHONPATH_PREFIX, PYTHONPATH_SUFFIX),
    )],
    vars: &[
        EnvStep::Set("OTEL_EXPORTER_OTLP_PROTOCOL", ByLibc::Same("http/protobuf")),
        EnvStep::Set("OTEL_TRACES_EXPORTER", ByLibc::Same("otlp")),
        EnvStep::Set("OTEL_METRICS_EXPORTER", ByLibc::Same("otlp")),
        EnvStep::Set("OTEL_LOGS_EXPORTER", ByLibc::Same("otlp")),
    ],
};
