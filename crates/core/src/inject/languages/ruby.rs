//! Ruby (operator 0.162+): the auto-instrumentation required through
//! `RUBYOPT`, composed with the user's value like the other list variables.

use super::{ByLibc, CopiedAgent, EnvStep};
use crate::inject::env_var::ListRule;
use crate::language::Language;

/// Overridable with `spec.ruby.image`.
pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-ruby:0.1.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-ruby";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-ruby";
pub const MOUNT: &str = "/otel-auto-instrumentation-ruby";
/// Appended to `RUBYOPT`, with the operator's leading space.
pub const RUBYOPT_FLAG: &str = " -r /otel-auto-instrumentation-ruby/src/autoinstrumentation";

/// The agent, as data ([`super::inject_copied`] applies it).
pub const AGENT: CopiedAgent = CopiedAgent {
    language: Language::Ruby,
    default_image: DEFAULT_IMAGE,
    name: INIT_CONTAINER,
    mount: MOUNT,
    source: ByLibc::Same("/autoinstrumentation/."),
    requests: ("50m", "64Mi"),
    mount_per_container: false,
    early: &[EnvStep::Compose("RUBYOPT", ListRule::Suffix(RUBYOPT_FLAG))],
    vars: &[],
};
