//! The security contexts of what we add, one rule for agents and sidecars
//! alike: Pod Security Standards `restricted`, with the pod's non-root
//! `runAsUser` when it has one.

use crate::instrumentation::InstrumentationSpec;
use k8s_openapi::api::core::v1::{Capabilities, Container, Pod, SeccompProfile, SecurityContext};

/// UID of the restricted security context; distroless's `nonroot`.
pub const NON_ROOT_UID: i64 = 65532;

/// The UID of the restricted context: the pod's `runAsUser` when it is
/// non-root, else [`NON_ROOT_UID`]. One rule for agents and sidecars alike.
pub fn restricted_uid(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.run_as_user)
        .filter(|u| *u != 0)
        .unwrap_or(NON_ROOT_UID)
}

/// A security context that passes Pod Security Standards `restricted`.
pub fn restricted(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// `initContainerSecurityContext`, else the first target's, else restricted.
/// The restricted UID follows the pod's `runAsUser` when it is non-root.
///
/// Deviation: the operator leaves it empty when the target has none, which
/// fails `restricted` admission and runAsNonRoot policies (#2272).
pub fn init_security_context(
    spec: &InstrumentationSpec,
    pod: &Pod,
    target: Option<&Container>,
) -> SecurityContext {
    if let Some(sc) = &spec.init_container_security_context {
        return sc.clone();
    }
    if let Some(sc) = target.and_then(|c| c.security_context.clone()) {
        return sc;
    }
    restricted(restricted_uid(pod))
}
