//! The env rules every feature shares, written once: `EnvVar`
//! constructors, set-if-absent, composing a list-like variable with the
//! user's value, and keeping a user's `valueFrom` variable as
//! `OTEL_ADMISSION_ORIG_<name>`.

use crate::inject::editor::{ApplyError, Editor, Slot};
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, ResourceFieldSelector,
};

pub const ORIG_PREFIX: &str = "OTEL_ADMISSION_ORIG_";

/// How ours combines with a user's list-like value.
#[derive(Clone, Copy, Debug)]
pub enum ListRule<'a> {
    /// `<user><ours>`; ours carries its own leading space (`JAVA_TOOL_OPTIONS`, `NODE_OPTIONS`).
    Suffix(&'a str),
    /// `<user>:<ours>` (the .NET hooks).
    PathAppend(&'a str),
    /// `<prefix>:<user>:<suffix>` (`PYTHONPATH`).
    Wrap(&'a str, &'a str),
}

impl ListRule<'_> {
    pub fn compose(self, user: Option<&str>) -> String {
        match (self, user) {
            (Self::Suffix(s), u) => format!("{}{s}", u.unwrap_or("")),
            (Self::PathAppend(s), Some(u)) if !u.is_empty() => format!("{u}:{s}"),
            (Self::PathAppend(s), _) => s.to_string(),
            (Self::Wrap(p, s), Some(u)) if !u.is_empty() => format!("{p}:{u}:{s}"),
            (Self::Wrap(p, s), _) => format!("{p}:{s}"),
        }
    }
}

pub fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub fn field_ref(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.into(),
            }),
            ..Default::default()
        }),
    }
}

/// Adds `var` unless the container already defines the name.
pub fn set_if_absent(ed: &mut Editor<'_>, ci: Slot, var: EnvVar) -> Result<(), ApplyError> {
    if ed.find_env(ci, &var.name).is_none() {
        ed.push_env(ci, var)?;
    }
    Ok(())
}

/// Composes a list-like variable with the user's value.
pub fn compose_list(
    ed: &mut Editor<'_>,
    ci: Slot,
    name: &str,
    rule: ListRule<'_>,
) -> Result<(), ApplyError> {
    let Some(j) = ed.find_env(ci, name) else {
        return ed.push_env(ci, plain(name, rule.compose(None)));
    };
    let existing = ed.env(ci)[j].clone();
    match existing.value_from {
        None => ed.replace_env(ci, j, plain(name, rule.compose(existing.value.as_deref()))),
        Some(source) => match keep_original(ed, ci, j, name, source)? {
            Some(orig) => ed.insert_env(ci, j + 1, plain(name, rule.compose(Some(&orig)))),
            None => Ok(()),
        },
    }
}

/// The one rule for a user's variable that comes from a Secret, ConfigMap or
/// field (`valueFrom`), which we cannot read: it moves, unchanged, to
/// `OTEL_ADMISSION_ORIG_<name>` at the same index, and ours refers to it as
/// `$(OTEL_ADMISSION_ORIG_<name>)`, which the kubelet expands. Returns that
/// reference, or `None` when an earlier pass already did it (idempotent).
pub fn keep_original(
    ed: &mut Editor<'_>,
    ci: Slot,
    j: usize,
    name: &str,
    source: EnvVarSource,
) -> Result<Option<String>, ApplyError> {
    let orig = format!("{ORIG_PREFIX}{name}");
    if ed.find_env(ci, &orig).is_some() {
        return Ok(None);
    }
    let reference = format!("$({orig})");
    ed.replace_env(
        ci,
        j,
        EnvVar {
            name: orig,
            value: None,
            value_from: Some(source),
        },
    )?;
    Ok(Some(reference))
}

/// The operator's `appendIfNotSet`: each variable the container lacks, in order.
pub fn append_if_absent(ed: &mut Editor<'_>, ci: Slot, vars: &[EnvVar]) -> Result<(), ApplyError> {
    for var in vars {
        set_if_absent(ed, ci, var.clone())?;
    }
    Ok(())
}

/// `name` from the sidecar's own limit (`GOMEMLIMIT`, `GOMAXPROCS`).
pub fn resource_ref(name: &str, resource: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some(crate::inject::keys::SIDECAR_NAME.into()),
                resource: resource.into(),
                divisor: None,
            }),
            ..Default::default()
        }),
    }
}
