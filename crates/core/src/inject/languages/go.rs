//! Go: an eBPF agent in a sidecar container (operator `golang.go`).
//!
//! # Privileges
//!
//! The agent attaches eBPF uprobes to the app's process, so the sidecar
//! `opentelemetry-auto-instrumentation` runs **privileged as root**
//! (`privileged: true, runAsUser: 0`) unless the Instrumentation sets
//! `spec.go.securityContext`; it mounts the host's `/sys/kernel/debug`
//! (hostPath volume `kernel-debug`); and the pod gets
//! `shareProcessNamespace: true` so the agent can see the app. Such a pod
//! cannot pass Pod Security Standards `baseline` or `restricted`: this is the
//! documented exception of SPEC §5. It instruments exactly one container,
//! found by `otel-go-auto-target-exe`.

use k8s_openapi::api::core::v1::{Container, HostPathVolumeSource, Pod, SecurityContext, Volume};

use super::{LangError, LangResult, clash, mount, resources};
use crate::inject::editor::{Editor, Slot};
use crate::inject::plan::{LanguagePlan, Plan};
use crate::inject::{
    env::{self},
    env_var::plain,
};

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-go-instrumentation/autoinstrumentation-go:v0.24.0";
pub const SIDECAR: &str = "opentelemetry-auto-instrumentation";
pub const KERNEL_DEBUG_VOLUME: &str = "kernel-debug";
pub const KERNEL_DEBUG_PATH: &str = "/sys/kernel/debug";

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let spec = &lp.instrumentation.instrumentation.spec;
    let g = spec.go.as_ref();
    // The operator instruments the first named container; decide has
    // refused a pod naming several, or an init container.
    let Some(app_ci) = lp.containers.first().and_then(|n| ed.find_slot(n)) else {
        return Err(LangError::NotInjected("go: no target container".into()));
    };
    if matches!(app_ci, Slot::Init(_)) {
        return Err(LangError::NotInjected(
            "go: cannot instrument an init container".into(),
        ));
    }
    if let Some(msg) = clash(ed, lp.language, &[SIDECAR], &[KERNEL_DEBUG_VOLUME], &[]) {
        return Err(LangError::NotInjected(msg));
    }
    let Some(app) = ed.container(app_ci).map(super::identity) else {
        return Err(LangError::NotInjected("go: no target container".into()));
    };
    ed.push_volume(Volume {
        name: KERNEL_DEBUG_VOLUME.into(),
        host_path: Some(HostPathVolumeSource {
            path: KERNEL_DEBUG_PATH.into(),
            type_: None,
        }),
        ..Default::default()
    })?;
    ed.set_share_process_namespace()?;
    // The annotation's path first; otherwise it comes from `spec.go.env` or
    // `spec.env` in their place, as in the operator.
    let mut sidecar_env: Vec<_> = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::inject::keys::GO_TARGET_EXE_KEY))
        .map(|exe| vec![plain("OTEL_GO_AUTO_TARGET_EXE", exe.clone())])
        .unwrap_or_default();
    for var in env::language_env(spec, lp.language) {
        if !sidecar_env.iter().any(|e| e.name == var.name) {
            sidecar_env.push(var.clone());
        }
    }
    let ci = ed.push_container(Container {
        name: SIDECAR.into(),
        image: Some(
            g.and_then(|g| g.common.image.clone())
                .unwrap_or_else(|| DEFAULT_IMAGE.into()),
        ),
        image_pull_policy: spec.image_pull_policy.clone(),
        resources: Some(resources(
            g.and_then(|g| g.common.resource_requirements.as_ref()),
            ("500m", "256Mi"),
            ("50m", "64Mi"),
        )),
        security_context: Some(
            g.and_then(|g| g.security_context.clone())
                .unwrap_or_else(|| SecurityContext {
                    privileged: Some(true),
                    run_as_user: Some(0),
                    ..Default::default()
                }),
        ),
        volume_mounts: Some(vec![mount(KERNEL_DEBUG_VOLUME, KERNEL_DEBUG_PATH)]),
        env: Some(sidecar_env).filter(|e| !e.is_empty()),
        ..Default::default()
    })?;
    env::common(ed, ci, spec)?;
    warnings.extend(env::sdk_config(ed, ci, pod, plan, lp, &app)?);
    Ok(())
}
