//! .NET: the CLR profiler and startup hook, glibc or musl build chosen by
//! `otel-dotnet-auto-runtime` (operator `dotnet.go`).

use super::{ByLibc, CopiedAgent, EnvStep, LangResult};
use crate::inject::editor::Editor;
use crate::inject::env_var::ListRule;
use crate::inject::plan::{LanguagePlan, Plan};
use crate::instrumentation::LanguageSpec;
use crate::language::Language;
use k8s_openapi::api::core::v1::Pod;

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-dotnet:1.16.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-dotnet";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-dotnet";
pub const MOUNT: &str = "/otel-auto-instrumentation-dotnet";
pub const PROFILER_ID: &str = "{918728DD-259F-4A6A-AC2B-B85E1B658318}";
/// Where the agent lives; set by us, and a sign of an agent of its own when
/// the container or the Instrumentation's `spec.dotnet.env` already sets it.
pub const HOME_VAR: &str = "OTEL_DOTNET_AUTO_HOME";

/// The agent, as data ([`super::inject_copied`] applies it, through
/// [`inject`]). A container with its own `OTEL_DOTNET_AUTO_HOME` runs its own
/// agent: .NET is refused; [`inject`] also refuses it when the
/// Instrumentation's `spec.dotnet.env` sets it.
pub const AGENT: CopiedAgent = CopiedAgent {
    language: Language::Dotnet,
    default_image: DEFAULT_IMAGE,
    name: INIT_CONTAINER,
    mount: MOUNT,
    source: ByLibc::Same("/autoinstrumentation/."),
    requests: ("50m", "128Mi"),
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

/// Which targets keep .NET, decided before anything is applied: the
/// Operator's `injectDotNetSDKToContainer` refuses a container that sets
/// [`HOME_VAR`] itself, and every container when the Instrumentation's
/// `spec.dotnet.env` sets it (by name, whatever its value), taking either to
/// mean the agent is configured already. It asks per container, the
/// container first.
///
/// | the target sets it | `spec.dotnet.env` sets it | the target           |
/// |--------------------|---------------------------|----------------------|
/// | no                 | no                        | injected             |
/// | yes                | either                    | skipped, a warning   |
/// | no                 | yes                       | skipped, a warning   |
///
/// The other targets are still injected. When none is left, .NET is
/// `agent_configured` for the pod, which never denies: where the Operator
/// still adds the init container and its volume though nothing mounts them,
/// we add nothing (docs/INJECTION.md).
pub fn keep_targets(
    pod: &Pod,
    spec: Option<&LanguageSpec>,
    instrumentation: &str,
    targets: Vec<String>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let spec_sets = spec.is_some_and(|s| s.env.iter().any(|e| e.name == HOME_VAR));
    let sets = |name: &str| {
        pod.spec.iter().any(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .filter(|c| c.name == name)
                .any(|c| c.env.iter().flatten().any(|e| e.name == HOME_VAR))
        })
    };
    let mut kept = Vec::new();
    let mut notes = Vec::new();
    for t in targets {
        if sets(&t) {
            notes.push(format!(
                "dotnet: container {t} already sets {HOME_VAR}, so it runs its own agent: not injected into {t}"
            ));
        } else if spec_sets {
            notes.push(format!(
                "dotnet: Instrumentation {instrumentation} sets {HOME_VAR} in spec.dotnet.env, so container {t} is taken to run its own agent: not injected into {t}"
            ));
        } else {
            kept.push(t);
        }
    }
    if kept.is_empty() {
        return Err(notes.join("; "));
    }
    Ok((kept, notes))
}

/// Injects .NET into the targets [`keep_targets`] kept.
pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let spec = lp
        .instrumentation
        .instrumentation
        .spec
        .language(Language::Dotnet);
    let agent = AGENT.agent(spec, lp.libc);
    super::inject_copied(ed, pod, plan, lp, warnings, &AGENT, agent, &super::no_step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The table of [`keep_targets`], each row a named case: targets `app`
    /// and `worker`; which of them set the variable, whether the spec does.
    #[test]
    fn dotnet_keeps_the_targets_the_operator_keeps() {
        let home = |v: &str| json!([{"name": HOME_VAR, "value": v}]);
        let other = json!([{"name": "OTEL_DOTNET_AUTO_LOG_DIRECTORY", "value": "/tmp"}]);
        type Row = (
            &'static str,
            Value,
            Value,
            Value,
            Result<&'static [&'static str], ()>,
        );
        let rows: [Row; 8] = [
            (
                "nothing set",
                json!([]),
                json!([]),
                json!([]),
                Ok(&["app", "worker"]),
            ),
            (
                "another variable in spec.dotnet.env",
                json!([]),
                json!([]),
                other,
                Ok(&["app", "worker"]),
            ),
            (
                "one target sets it: the other is kept",
                home("/mine"),
                json!([]),
                json!([]),
                Ok(&["worker"]),
            ),
            (
                "both targets set it",
                home("/mine"),
                home("/mine"),
                json!([]),
                Err(()),
            ),
            (
                "spec.dotnet.env sets it",
                json!([]),
                json!([]),
                home("/theirs"),
                Err(()),
            ),
            (
                "spec.dotnet.env sets it to our own home",
                json!([]),
                json!([]),
                home(MOUNT),
                Err(()),
            ),
            (
                "spec.dotnet.env sets it from a ConfigMap",
                json!([]),
                json!([]),
                json!([{"name": HOME_VAR, "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]),
                Err(()),
            ),
            (
                "container and spec both",
                home("/mine"),
                json!([]),
                home("/theirs"),
                Err(()),
            ),
        ];
        for (name, app_env, worker_env, spec_env, want) in rows {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": "checkout", "namespace": "shop"},
                "spec": {"containers": [
                    {"name": "app", "image": "app:1", "env": app_env},
                    {"name": "worker", "image": "app:1", "env": worker_env},
                ]}
            }))
            .unwrap_or_else(|e| panic!("{name}: pod: {e}"));
            let spec: LanguageSpec = serde_json::from_value(json!({"env": spec_env}))
                .unwrap_or_else(|e| panic!("{name}: spec: {e}"));
            let got = keep_targets(
                &pod,
                Some(&spec),
                "shop/tracing",
                vec!["app".into(), "worker".into()],
            );
            match (want, got) {
                (Ok(kept), Ok((got, notes))) => {
                    assert_eq!(got, kept, "{name}");
                    assert_eq!(
                        notes.len(),
                        2 - kept.len(),
                        "{name}: one note per skipped target"
                    );
                }
                (Err(()), Err(msg)) => assert!(msg.contains(HOME_VAR), "{name}: {msg}"),
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}
