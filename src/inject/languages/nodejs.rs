//! Node.js: `--require` of the auto-instrumentation through `NODE_OPTIONS` (operator `nodejs.go`).

use k8s_openapi::api::core::v1::Pod;

use super::{Agent, LangResult, inject_agent};
use crate::inject::editor::Editor;
use crate::inject::env_var::{ListRule, plain};
use crate::inject::plan::{LanguagePlan, Plan};

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-nodejs:0.78.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-nodejs";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-nodejs";
pub const MOUNT: &str = "/otel-auto-instrumentation-nodejs";
pub const NODE_OPTIONS_FLAG: &str =
    " --require /otel-auto-instrumentation-nodejs/autoinstrumentation.js";

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let l = lp.instrumentation.instrumentation.spec.nodejs.as_ref();
    let agent = Agent::copied(
        l,
        INIT_CONTAINER,
        MOUNT,
        DEFAULT_IMAGE,
        "/autoinstrumentation/.",
        ("50m", "128Mi"),
    );
    inject_agent(
        ed,
        pod,
        plan,
        lp,
        warnings,
        agent,
        &|_| MOUNT.into(),
        &|_, _| Ok(()),
        &|ed, ci, _| {
            crate::inject::env_var::compose_list(
                ed,
                ci,
                "NODE_OPTIONS",
                ListRule::Suffix(NODE_OPTIONS_FLAG),
            )?;
            crate::inject::env_var::set_if_absent(ed, ci, plain("OTEL_METRICS_EXPORTER", "otlp"))
        },
    )
}
