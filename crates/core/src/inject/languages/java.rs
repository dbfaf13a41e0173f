//! Java: the javaagent, attached through `JAVA_TOOL_OPTIONS` (operator `javaagent.go`).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{ByLibc, CopiedAgent, LangResult, inject_copied, mount, resources};
use crate::inject::editor::Editor;
use crate::inject::env_var::ListRule;
use crate::inject::plan::{LanguagePlan, Plan};
use crate::language::Language;

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-java:2.30.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-java";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-java";
pub const INIT_MOUNT: &str = "/otel-auto-instrumentation-java";

/// Each app container mounts the agent at its own path, as the operator does.
pub fn app_mount(container: &str) -> String {
    AGENT.app_mount(container)
}

/// The flags appended to `JAVA_TOOL_OPTIONS`, with the operator's leading space.
pub fn agent_flag(container: &str, extensions: bool) -> String {
    let mount = app_mount(container);
    let mut flag = format!(" -javaagent:{mount}/javaagent.jar");
    if extensions {
        flag.push_str(&format!(" -Dotel.javaagent.extensions={mount}/extensions"));
    }
    flag
}

/// The agent, as data; its init container copies the one jar (the
/// operator's command), and the extensions' init containers follow it.
pub const AGENT: CopiedAgent = CopiedAgent {
    language: Language::Java,
    default_image: DEFAULT_IMAGE,
    name: INIT_CONTAINER,
    mount: INIT_MOUNT,
    source: ByLibc::Same("/javaagent.jar"),
    requests: ("50m", "64Mi"),
    mount_per_container: true,
    early: &[],
    vars: &[],
};

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let spec = &lp.instrumentation.instrumentation.spec;
    let java = spec.java.as_ref();
    let mut agent = AGENT.agent(spec.language(Language::Java), lp.libc);
    // The operator's name for Java's requests and limits comes first.
    agent.resources = resources(
        java.and_then(|j| j.resources()),
        ("500m", "256Mi"),
        AGENT.requests,
    );
    agent.command = [
        "cp",
        "/javaagent.jar",
        "/otel-auto-instrumentation-java/javaagent.jar",
    ]
    .map(String::from)
    .to_vec();
    agent.extra_inits = java
        .map(|j| j.extensions.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, ext)| Container {
            name: format!("opentelemetry-auto-instrumentation-extension-{i}"),
            image: Some(ext.image.clone()),
            command: Some(vec![
                "cp".into(),
                "-r".into(),
                format!("{}/.", ext.dir),
                format!("{INIT_MOUNT}/extensions"),
            ]),
            resources: Some(agent.resources.clone()),
            volume_mounts: Some(vec![mount(VOLUME, INIT_MOUNT)]),
            ..Default::default()
        })
        .collect();
    let has_extensions = !agent.extra_inits.is_empty();
    inject_copied(
        ed,
        pod,
        plan,
        lp,
        warnings,
        &AGENT,
        agent,
        &|ed, ci, name| {
            let flag = agent_flag(name, has_extensions);
            crate::inject::env_var::compose_list(
                ed,
                ci,
                "JAVA_TOOL_OPTIONS",
                ListRule::Suffix(&flag),
            )
        },
    )
}
