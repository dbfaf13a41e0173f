//! .NET: the CLR profiler and startup hook, glibc or musl build chosen by
//! `otel-dotnet-auto-runtime` (operator `dotnet.go`).

use super::{ByLibc, CopiedAgent, EnvStep};
use crate::inject::env_var::ListRule;
use crate::language::Language;

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-dotnet:1.16.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-dotnet";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-dotnet";
pub const MOUNT: &str = "/otel-auto-instrumentation-dotnet";
pub const PROFILER_ID: &str = "{918728DD-259F-4A6A-AC2B-B85E1B658318}";

/// The agent, as data ([`super::inject_copied`] applies it). A container with
/// its own `OTEL_DOTNET_AUTO_HOME` runs its own agent: .NET is refused.
pub const AGENT: CopiedAgent = CopiedAgent {
    language: Language::Dotnet,
    default_image: DEFAULT_IMAGE,
    name: INIT_CONTAINER,
    mount: MOUNT,
    source: ByLibc::Same("/autoinstrumentation/."),
    requests: ("50m", "128Mi"),
    own_agent_var: Some("OTEL_DOTNET_AUTO_HOME"),
    mount_per_container: false,
    early: &[],
    vars: &[
        EnvStep::Set("CORECLR_ENABLE_PROFILING", ByLibc::Same("1")),
        EnvStep::Set("CORECLR_PROFILER", ByLibc::Same(PROFILER_ID)),
        EnvStep::Set(
            "CORECLR_PROFILER_PATH",
            ByLibc::Builds {
                glibc: "/otel-auto-instrumentation-dotnet/linux/OpenTelemetry.AutoInstrumentation.Native.so",
                musl: "/otel-auto-instrumentation-dotnet/linux-musl/OpenTelemetry.AutoInstrumentation.Native.so",
            },
        ),
        EnvStep::Compose(
            "DOTNET_STARTUP_HOOKS",
            ListRule::PathAppend(
                "/otel-auto-instrumentation-dotnet/net/OpenTelemetry.AutoInstrumentation.StartupHook.dll",
            ),
        ),
        EnvStep::Compose(
            "DOTNET_ADDITIONAL_DEPS",
            ListRule::PathAppend("/otel-auto-instrumentation-dotnet/AdditionalDeps"),
        ),
        EnvStep::Set("OTEL_DOTNET_AUTO_HOME", ByLibc::Same(MOUNT)),
        EnvStep::Compose(
            "DOTNET_SHARED_STORE",
            ListRule::PathAppend("/otel-auto-instrumentation-dotnet/store"),
        ),
    ],
};
