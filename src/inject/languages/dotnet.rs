//! .NET: the CLR profiler and startup hook, glibc or musl build chosen by
//! `otel-dotnet-auto-runtime` (operator `dotnet.go`).

use super::{ByLibc, CopiedAgent, EnvStep, LangResult};
use crate::inject::editor::Editor;
use crate::inject::env_var::ListRule;
use crate::inject::plan::{LanguagePlan, Plan};
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
    own_agent_var: Some(HOME_VAR),
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

/// Injects .NET, refused as the Operator's `injectDotNetSDKToContainer`
/// refuses it: a target container that sets [`HOME_VAR`] itself ([`AGENT`]'s
/// `own_agent_var`), else an Instrumentation whose `spec.dotnet.env` sets it
/// ("already set in the .NET instrumentation spec"). The Operator asks both
/// per container, the container first; the spec's answer is the same for
/// every target, so the first target decides which of the two is reported.
/// Where the Operator then skips each container but still adds the init
/// container and its volume, which nothing mounts, we add nothing.
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
    if spec.is_some_and(|s| s.env.iter().any(|e| e.name == HOME_VAR)) {
        let first = super::target_slots(ed, lp).into_iter().next();
        let first_sets = first.is_some_and(|slot| ed.find_env(slot, HOME_VAR).is_some());
        if !first_sets {
            return Ok(Err(format!(
                "{}: Instrumentation {} already sets {HOME_VAR} in spec.dotnet.env, so the containers are taken to run their own agent",
                Language::Dotnet,
                lp.instrumentation.label
            )));
        }
    }
    let agent = AGENT.agent(spec, lp.libc);
    super::inject_copied(ed, pod, plan, lp, warnings, &AGENT, agent, &super::no_step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::plan::{Libc, Resolved};
    use crate::instrumentation::{Instrumentation, InstrumentationSpec};
    use serde_json::{Value, json};
    use std::sync::Arc;

    /// What one case expects: injected, or refused with this message.
    enum Want {
        Injected,
        Refused(&'static str),
    }

    /// The Operator's refusals of `injectDotNetSDKToContainer` that concern
    /// `OTEL_DOTNET_AUTO_HOME`, each a named case: the container's own, the
    /// Instrumentation's `spec.dotnet.env` (by name, whatever its value),
    /// both (the container's is reported, as the Operator asks it first),
    /// and what is not a refusal. A refused pod is left as it was.
    #[test]
    fn dotnet_refusals_follow_the_operator() {
        let home = |v: &str| json!({"name": HOME_VAR, "value": v});
        let cases: [(&str, Value, Value, &[&str], Want); 8] = [
            (
                "nothing set",
                json!([]),
                json!(null),
                &["app"],
                Want::Injected,
            ),
            (
                "another variable in spec.dotnet.env",
                json!([]),
                json!({"env": [{"name": "OTEL_DOTNET_AUTO_LOG_DIRECTORY", "value": "/tmp"}]}),
                &["app"],
                Want::Injected,
            ),
            (
                "the container sets it",
                json!([home("/mine")]),
                json!(null),
                &["app"],
                Want::Refused("dotnet: container app already sets OTEL_DOTNET_AUTO_HOME"),
            ),
            (
                "spec.dotnet.env sets it",
                json!([]),
                json!({"env": [home("/theirs")]}),
                &["app"],
                Want::Refused(
                    "dotnet: Instrumentation shop/tracing already sets OTEL_DOTNET_AUTO_HOME in spec.dotnet.env, so the containers are taken to run their own agent",
                ),
            ),
            (
                "spec.dotnet.env sets it from a ConfigMap",
                json!([]),
                json!({"env": [{"name": HOME_VAR, "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]}),
                &["app"],
                Want::Refused(
                    "dotnet: Instrumentation shop/tracing already sets OTEL_DOTNET_AUTO_HOME in spec.dotnet.env, so the containers are taken to run their own agent",
                ),
            ),
            (
                "spec.dotnet.env sets it to our own home",
                json!([]),
                json!({"env": [home(MOUNT)]}),
                &["app"],
                Want::Refused(
                    "dotnet: Instrumentation shop/tracing already sets OTEL_DOTNET_AUTO_HOME in spec.dotnet.env, so the containers are taken to run their own agent",
                ),
            ),
            (
                "both: the container's is reported",
                json!([home("/mine")]),
                json!({"env": [home("/theirs")]}),
                &["app"],
                Want::Refused("dotnet: container app already sets OTEL_DOTNET_AUTO_HOME"),
            ),
            (
                "both, on the second target: the first reports the spec's",
                json!([]),
                json!({"env": [home("/theirs")]}),
                &["app", "worker"],
                Want::Refused(
                    "dotnet: Instrumentation shop/tracing already sets OTEL_DOTNET_AUTO_HOME in spec.dotnet.env, so the containers are taken to run their own agent",
                ),
            ),
        ];
        for (name, app_env, dotnet, targets, want) in cases {
            let worker_env = if name.starts_with("both, on the second") {
                json!([home("/mine")])
            } else {
                json!([])
            };
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": "checkout", "namespace": "shop"},
                "spec": {"containers": [
                    {"name": "app", "image": "app:1", "env": app_env},
                    {"name": "worker", "image": "app:1", "env": worker_env},
                ]}
            }))
            .unwrap_or_else(|e| panic!("{name}: pod: {e}"));
            let mut spec = json!({});
            if !dotnet.is_null() {
                spec["dotnet"] = dotnet;
            }
            let spec: InstrumentationSpec =
                serde_json::from_value(spec).unwrap_or_else(|e| panic!("{name}: spec: {e}"));
            let mut inst = Instrumentation::new("tracing", spec);
            inst.metadata.namespace = Some("shop".into());
            let plan = Plan {
                namespace: "shop".into(),
                ..Default::default()
            };
            let lp = LanguagePlan {
                language: Language::Dotnet,
                decided_by: "test".into(),
                instrumentation: Resolved {
                    label: "shop/tracing".into(),
                    instrumentation: Arc::new(inst),
                },
                containers: targets.iter().map(|t| t.to_string()).collect(),
                containers_by: "test".into(),
                libc: Libc::Glibc,
                go_target_exe: None,
                php: None,
            };
            let mut edited = pod.clone();
            let (meta, pod_spec) = (&mut edited.metadata, edited.spec.as_mut());
            let Some(pod_spec) = pod_spec else {
                panic!("{name}: no spec")
            };
            let mut ed = Editor::new(meta, pod_spec);
            let mut warnings = Vec::new();
            let got = inject(&mut ed, &pod, &plan, &lp, &mut warnings)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let patch = ed.into_patch();
            let inits = edited
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .map_or(0, Vec::len);
            match (want, got) {
                (Want::Injected, Ok(())) => {
                    assert_eq!(inits, 1, "{name}: the agent's init container");
                    let app = &edited.spec.as_ref().map(|s| &s.containers[0]);
                    let own = app
                        .and_then(|c| c.env.as_ref())
                        .and_then(|e| e.iter().find(|v| v.name == HOME_VAR))
                        .and_then(|v| v.value.as_deref());
                    assert_eq!(own, Some(MOUNT), "{name}");
                }
                (Want::Refused(msg), Err(got)) => {
                    assert_eq!(got, msg, "{name}");
                    assert!(patch.is_empty(), "{name}: a refused pod is left as it was");
                    assert_eq!(edited, pod, "{name}");
                }
                (Want::Injected, Err(got)) => panic!("{name}: refused: {got}"),
                (Want::Refused(msg), Ok(())) => panic!("{name}: injected, wanted {msg:?}"),
            }
        }
    }
}
