//! .NET: the CLR profiler and startup hook, glibc or musl build chosen by
//! `otel-dotnet-auto-runtime` (operator `dotnet.go`).

use k8s_openapi::api::core::v1::Pod;

use super::{Agent, LangResult, inject_agent, target_slots};
use crate::inject::editor::Editor;
use crate::inject::env_var::{ListRule, plain};
use crate::inject::plan::{LanguagePlan, Libc, Plan};

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-dotnet:1.16.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-dotnet";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-dotnet";
pub const MOUNT: &str = "/otel-auto-instrumentation-dotnet";
pub const PROFILER_ID: &str = "{918728DD-259F-4A6A-AC2B-B85E1B658318}";

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    // A container with its own OTEL_DOTNET_AUTO_HOME runs its own agent.
    for slot in target_slots(ed, lp) {
        if ed.find_env(slot, "OTEL_DOTNET_AUTO_HOME").is_some() {
            let name = ed.container(slot).map(|c| c.name.as_str()).unwrap_or("");
            return Ok(Err(format!(
                "dotnet: container {name} already sets OTEL_DOTNET_AUTO_HOME"
            )));
        }
    }
    let l = lp.instrumentation.instrumentation.spec.dotnet.as_ref();
    let agent = Agent::copied(
        l,
        INIT_CONTAINER,
        MOUNT,
        DEFAULT_IMAGE,
        "/autoinstrumentation/.",
        ("50m", "128Mi"),
    );
    let platform = match lp.libc {
        Libc::Glibc => "linux",
        Libc::Musl => "linux-musl",
    };
    let profiler_path = format!("{MOUNT}/{platform}/OpenTelemetry.AutoInstrumentation.Native.so");
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
            crate::inject::env_var::set_if_absent(ed, ci, plain("CORECLR_ENABLE_PROFILING", "1"))?;
            crate::inject::env_var::set_if_absent(ed, ci, plain("CORECLR_PROFILER", PROFILER_ID))?;
            crate::inject::env_var::set_if_absent(
                ed,
                ci,
                plain("CORECLR_PROFILER_PATH", profiler_path.clone()),
            )?;
            crate::inject::env_var::compose_list(
                ed,
                ci,
                "DOTNET_STARTUP_HOOKS",
                ListRule::PathAppend(
                    "/otel-auto-instrumentation-dotnet/net/OpenTelemetry.AutoInstrumentation.StartupHook.dll",
                ),
            )?;
            crate::inject::env_var::compose_list(
                ed,
                ci,
                "DOTNET_ADDITIONAL_DEPS",
                ListRule::PathAppend("/otel-auto-instrumentation-dotnet/AdditionalDeps"),
            )?;
            crate::inject::env_var::set_if_absent(ed, ci, plain("OTEL_DOTNET_AUTO_HOME", MOUNT))?;
            crate::inject::env_var::compose_list(
                ed,
                ci,
                "DOTNET_SHARED_STORE",
                ListRule::PathAppend("/otel-auto-instrumentation-dotnet/store"),
            )
        },
    )
}
