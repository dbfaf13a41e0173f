//! Ruby (operator 0.162+): the auto-instrumentation required through
//! `RUBYOPT`, composed with the user's value like the other list variables.

use k8s_openapi::api::core::v1::Pod;

use super::{Agent, LangResult, inject_agent};
use crate::inject::editor::Editor;
use crate::inject::env_var::ListRule;
use crate::inject::plan::{LanguagePlan, Plan};

/// Overridable with `spec.ruby.image`.
pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-ruby:0.1.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-ruby";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-ruby";
pub const MOUNT: &str = "/otel-auto-instrumentation-ruby";
/// Appended to `RUBYOPT`, with the operator's leading space.
pub const RUBYOPT_FLAG: &str = " -r /otel-auto-instrumentation-ruby/src/autoinstrumentation";

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let l = lp.instrumentation.instrumentation.spec.ruby.as_ref();
    let agent = Agent::copied(
        l,
        INIT_CONTAINER,
        MOUNT,
        DEFAULT_IMAGE,
        "/autoinstrumentation/.",
        ("50m", "64Mi"),
    );
    inject_agent(
        ed,
        pod,
        plan,
        lp,
        warnings,
        agent,
        &|_| MOUNT.into(),
        &|ed, ci| {
            crate::inject::env_var::compose_list(ed, ci, "RUBYOPT", ListRule::Suffix(RUBYOPT_FLAG))
        },
        &|_, _, _| Ok(()),
    )
}
