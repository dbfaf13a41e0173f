//! Prometheus scrape annotations and Istio's `excludeInboundPorts` (SPEC §5).
//!
//! The metrics port is the collector sidecar's 8888 when we inject it, else
//! the first app container port named `metrics`. User annotations always win:
//! an existing `prometheus.io/*` value is kept (with a warning when it names
//! another port), and an existing `traffic.sidecar.istio.io/excludeInboundPorts`
//! list is merged, never overwritten: entries trimmed, order kept, no duplicates.
//! Excluding the port from Istio's inbound capture lets Prometheus scrape it
//! without mesh mTLS.

use std::collections::BTreeMap;

use crate::inject::editor::{ApplyError, Editor};
use crate::inject::keys::KNOWN_SIDECARS;
use crate::inject::plan::AnnotationsPlan;
use crate::inject::sidecar::METRICS_PORT;

pub const SCRAPE_KEY: &str = "prometheus.io/scrape";
pub const PORT_KEY: &str = "prometheus.io/port";
pub const PATH_KEY: &str = "prometheus.io/path";
pub const EXCLUDE_INBOUND_KEY: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
/// The container port name looked for when there is no sidecar.
pub const METRICS_PORT_NAME: &str = "metrics";

/// `existing` with `port` appended, or `None` when it already lists it.
/// Entries are trimmed and empty ones dropped; order is kept.
pub fn merge_ports(existing: Option<&str>, port: i32) -> Option<String> {
    let port = port.to_string();
    let mut items: Vec<&str> = existing
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.contains(&port.as_str()) {
        return None;
    }
    items.push(&port);
    Some(items.join(","))
}

/// The metrics port: the sidecar's, else a container port named `metrics`.
fn metrics_port(ed: &Editor<'_>, sidecar: bool) -> Option<(i32, String)> {
    if sidecar {
        return Some((METRICS_PORT, "the collector sidecar's metrics port".into()));
    }
    ed.spec()
        .containers
        .iter()
        .filter(|c| !KNOWN_SIDECARS.contains(&c.name.as_str()))
        .find_map(|c| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(METRICS_PORT_NAME))
                .map(|p| {
                    (
                        p.container_port,
                        format!("container {} port {METRICS_PORT_NAME}", c.name),
                    )
                })
        })
}

/// Sets the annotations. `Ok(Err(message))` when there is no metrics port.
/// Returns the keys set or changed.
pub fn inject(
    ed: &mut Editor<'_>,
    plan: &AnnotationsPlan,
    sidecar: bool,
    warnings: &mut Vec<String>,
) -> Result<Result<Vec<String>, String>, ApplyError> {
    let Some((port, _)) = metrics_port(ed, sidecar) else {
        return Ok(Err(format!(
            "annotations: no metrics port: no collector sidecar and no container port named {METRICS_PORT_NAME}"
        )));
    };
    let existing: BTreeMap<String, String> = ed.annotations().cloned().unwrap_or_default();
    let mut set = Vec::new();
    for (key, value) in [
        (SCRAPE_KEY, "true".to_string()),
        (PORT_KEY, port.to_string()),
        (PATH_KEY, "/metrics".to_string()),
    ] {
        match existing.get(key) {
            None => {
                ed.set_annotation(key, value)?;
                set.push(key.to_string());
            }
            Some(v) if key == PORT_KEY && v.trim() != value => warnings.push(format!(
                "annotations: keeping the pod's {key}={v:?}; the metrics port is {port}"
            )),
            Some(_) => {}
        }
    }
    if plan.mesh.is_some()
        && let Some(merged) =
            merge_ports(existing.get(EXCLUDE_INBOUND_KEY).map(String::as_str), port)
    {
        ed.set_annotation(EXCLUDE_INBOUND_KEY, merged)?;
        set.push(EXCLUDE_INBOUND_KEY.to_string());
    }
    Ok(Ok(set))
}
