//! The security contexts of what we add, one rule for agents and sidecars
//! alike: Pod Security Standards `restricted`, with the pod's non-root
//! `runAsUser` when it has one.
//!
//! Those contexts, and the images they go with, are Linux-only: on a pod
//! bound for Windows nodes the API server refuses `capabilities`,
//! `seccompProfile`, `readOnlyRootFilesystem`, `allowPrivilegeEscalation`,
//! `runAsUser` and the like (its `validateWindows`), and a Linux image does
//! not start on a Windows node. [`windows`] tells such a pod, and
//! [`unsupported_on_windows`] is the one answer every Linux-only feature
//! gives it when it is planned.

use crate::inject::keys::{OS_LABELS, SIDECAR_NAME};
use crate::inject::plan::{Failure, Feature, SkipReason};
use crate::instrumentation::InstrumentationSpec;
use crate::language::Language;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, NodeSelectorTerm, Pod, SeccompProfile, SecurityContext,
};

/// The OS name of Windows, in `spec.os.name` and in the node label.
const WINDOWS: &str = "windows";

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

/// Why the pod runs on Windows nodes, in words, or `None` when it may run on
/// Linux. Matching is exact, as the API server's and the scheduler's is.
///
/// - `spec.os.name`, when set, decides: it is what the API server validates
///   the security fields against and the kubelet checks against its node.
/// - Else a `nodeSelector` on the OS label with value `windows`.
/// - Else a required node affinity whose every term requires the OS label
///   `In` values that are all `windows` (terms are ORed, so one term that
///   admits Linux is enough to keep today's injection). A term with no
///   requirement matches no node, so it lets no Linux node in either.
///
/// A `runtimeClassName` whose RuntimeClass schedules onto Windows is not
/// seen: reading it would be an API call.
pub fn windows(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(os) = &spec.os {
        return (os.name == WINDOWS).then(|| format!("spec.os.name: {WINDOWS}"));
    }
    let selector = spec.node_selector.as_ref();
    if let Some(key) = OS_LABELS.iter().find(|k| {
        selector
            .and_then(|s| s.get(**k))
            .is_some_and(|v| v == WINDOWS)
    }) {
        return Some(format!("nodeSelector {key}={WINDOWS}"));
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let mut live = terms.iter().filter(|t| !empty_term(t)).peekable();
    live.peek()?;
    live.all(requires_windows).then(|| {
        format!(
            "required node affinity admits only {} In [{WINDOWS}]",
            OS_LABELS[0]
        )
    })
}

fn empty_term(t: &NodeSelectorTerm) -> bool {
    t.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && t.match_fields.as_ref().is_none_or(Vec::is_empty)
}

/// One of the term's requirements is the OS label `In` only `windows`.
fn requires_windows(t: &NodeSelectorTerm) -> bool {
    t.match_expressions.iter().flatten().any(|e| {
        OS_LABELS.contains(&e.key.as_str())
            && e.operator == "In"
            && e.values
                .as_ref()
                .is_some_and(|v| !v.is_empty() && v.iter().all(|x| x == WINDOWS))
    })
}

/// The failure of `feature` on a Windows pod (see [`windows`]), or `None`
/// when the pod may run on Linux or the feature is OS-neutral: `sdk` (env
/// only, which Windows SDKs read the same), probes and annotations. The
/// language agents are Linux init containers (Go's a privileged eBPF
/// sidecar), as the Operator builds them: its .NET runtimes are
/// `linux-x64` and `linux-musl-x64` only. The collector sidecar gets the
/// Linux `restricted` context and a Linux image.
pub fn unsupported_on_windows(pod: &Pod, feature: Feature) -> Option<Failure> {
    // Static words, so a Linux pod (every pod, nearly) allocates nothing here.
    let (noun, is) = match feature {
        Feature::Instrumentation(Language::Sdk)
        | Feature::AutoDetect
        | Feature::Probes
        | Feature::Annotations => return None,
        Feature::Instrumentation(Language::Go) => ("agent", "a Linux eBPF sidecar"),
        Feature::Instrumentation(_) => ("agent", "a Linux init container"),
        Feature::Sidecar => (SIDECAR_NAME, "a Linux container"),
    };
    let why = windows(pod)?;
    Some(Failure {
        feature,
        reason: SkipReason::UnsupportedOs,
        message: format!(
            "{feature}: pod runs on Windows ({why}): the {feature} {noun} is {is}; not injected"
        ),
    })
}
