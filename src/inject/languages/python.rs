//! Python: the auto-instrumentation on `PYTHONPATH`, glibc or musl build
//! chosen by `otel-python-platform` (operator `python.go`).

use k8s_openapi::api::core::v1::Pod;

use super::{Agent, LangResult, inject_agent};
use crate::inject::editor::Editor;
use crate::inject::env_var::{ListRule, plain};
use crate::inject::plan::{LanguagePlan, Libc, Plan};

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.64b0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-python";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-python";
pub const MOUNT: &str = "/otel-auto-instrumentation-python";
pub const PYTHONPATH_PREFIX: &str =
    "/otel-auto-instrumentation-python/opentelemetry/instrumentation/auto_instrumentation";
pub const PYTHONPATH_SUFFIX: &str = "/otel-auto-instrumentation-python";

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let l = lp.instrumentation.instrumentation.spec.python.as_ref();
    let source = match lp.libc {
        Libc::Glibc => "/autoinstrumentation/.",
        Libc::Musl => "/autoinstrumentation-musl/.",
    };
    let agent = Agent::copied(
        l,
        INIT_CONTAINER,
        MOUNT,
        DEFAULT_IMAGE,
        source,
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
            crate::inject::env_var::compose_list(
                ed,
                ci,
                "PYTHONPATH",
                ListRule::Wrap(PYTHONPATH_PREFIX, PYTHONPATH_SUFFIX),
            )
        },
        &|ed, ci, _| {
            for (k, v) in [
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_TRACES_EXPORTER", "otlp"),
                ("OTEL_METRICS_EXPORTER", "otlp"),
                ("OTEL_LOGS_EXPORTER", "otlp"),
            ] {
                crate::inject::env_var::set_if_absent(ed, ci, plain(k, v))?;
            }
            Ok(())
        },
    )
}
