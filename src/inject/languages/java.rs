//! Java: the javaagent, attached through `JAVA_TOOL_OPTIONS` (operator `javaagent.go`).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{Agent, LangResult, inject_agent, mount, resources};
use crate::inject::editor::Editor;
use crate::inject::env_var::ListRule;
use crate::inject::plan::{LanguagePlan, Plan};

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-java:2.30.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-java";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-java";
pub const INIT_MOUNT: &str = "/otel-auto-instrumentation-java";

/// Each app container mounts the agent at its own path, as the operator does.
pub fn app_mount(container: &str) -> String {
    format!("{INIT_MOUNT}-{container}")
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

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let spec = &lp.instrumentation.instrumentation.spec;
    let java = spec.java.as_ref();
    let res = resources(
        java.and_then(|j| j.resources()),
        ("500m", "256Mi"),
        ("50m", "64Mi"),
    );
    let extensions: Vec<Container> = java
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
            resources: Some(res.clone()),
            volume_mounts: Some(vec![mount(VOLUME, INIT_MOUNT)]),
            ..Default::default()
        })
        .collect();
    let has_extensions = !extensions.is_empty();
    let agent = Agent {
        init_name: INIT_CONTAINER,
        volume: VOLUME,
        image: java
            .and_then(|j| j.common.image.clone())
            .unwrap_or_else(|| DEFAULT_IMAGE.into()),
        command: [
            "cp",
            "/javaagent.jar",
            "/otel-auto-instrumentation-java/javaagent.jar",
        ]
        .map(String::from)
        .to_vec(),
        args: None,
        init_mount: INIT_MOUNT,
        resources: res,
        size: java.and_then(|j| j.common.volume_limit_size.as_ref()),
        claim: java.and_then(|j| j.common.volume_claim_template.as_ref()),
        extra_inits: extensions,
    };
    inject_agent(
        ed,
        pod,
        plan,
        lp,
        warnings,
        agent,
        &app_mount,
        &|_, _| Ok(()),
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
