//! Default health probes (SPEC §5): startup, liveness and readiness `httpGet`
//! probes on the app containers, each kind only where the container has
//! none, on the configured port (a number, or a port name, default `health`).
//!
//! A container that does not expose that port gets nothing and a warning: a
//! probe against a closed port would restart the app forever. Known sidecars,
//! `skipContainers` and init containers never get probes; they are not the app.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::{Config, ProbesConfig};
use crate::inject::editor::ProbeKind;
use crate::inject::editor::{ApplyError, Editor, Slot};
use crate::inject::keys::KNOWN_SIDECARS;

/// The container port the probes use, when `c` exposes it. A number-like
/// port name (`"8080"`) counts as the number.
pub fn exposed_port(c: &Container, port: &IntOrString) -> Option<i32> {
    let ports = c.ports.iter().flatten();
    match port {
        IntOrString::Int(n) => ports.map(|p| p.container_port).find(|p| p == n),
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => exposed_port(c, &IntOrString::Int(n)),
            Err(_) => ports
                .filter(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .next(),
        },
    }
}

/// One probe of `kind` on `port`, with the config's path and timings.
pub fn probe(cfg: &ProbesConfig, kind: ProbeKind, port: i32) -> Probe {
    let path = match kind {
        ProbeKind::Startup => &cfg.startup,
        ProbeKind::Liveness => &cfg.liveness,
        ProbeKind::Readiness => &cfg.readiness,
    };
    let failures = match kind {
        ProbeKind::Startup => cfg.startup_failure_threshold,
        _ => cfg.failure_threshold,
    };
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.clone()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        initial_delay_seconds: Some(cfg.initial_delay_seconds),
        period_seconds: Some(cfg.period_seconds),
        timeout_seconds: Some(cfg.timeout_seconds),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// What [`inject`] did: the kinds added per container, and each app
/// container left without probes because it does not expose the port.
#[derive(Debug, Default)]
pub struct ProbesDone {
    pub added: BTreeMap<String, Vec<String>>,
    /// One warning per container left out.
    pub skipped: Vec<String>,
}

/// Adds the missing probes to every app container.
pub fn inject(ed: &mut Editor<'_>, config: &Config) -> Result<ProbesDone, ApplyError> {
    let cfg = &config.probes;
    let mut added = BTreeMap::new();
    let mut skipped = Vec::new();
    let apps: Vec<(usize, Container)> = ed
        .spec()
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            !KNOWN_SIDECARS.contains(&c.name.as_str())
                && !config.skip_containers.iter().any(|s| s == &c.name)
        })
        .map(|(i, c)| (i, probe_view(c)))
        .collect();
    for (i, c) in apps {
        let missing: Vec<ProbeKind> = ProbeKind::ALL
            .into_iter()
            .filter(|k| k.get(&c).is_none())
            .collect();
        if missing.is_empty() {
            continue;
        }
        let Some(port) = exposed_port(&c, &cfg.port) else {
            skipped.push(format!(
                "probes: container {} does not expose port {}; no probes added to it",
                c.name,
                port_label(&cfg.port)
            ));
            continue;
        };
        for kind in &missing {
            ed.set_probe(Slot::Main(i), *kind, probe(cfg, *kind, port))?;
        }
        added.insert(
            c.name.clone(),
            missing.iter().map(|k| k.as_str().into()).collect(),
        );
    }
    Ok(ProbesDone { added, skipped })
}

/// What probe decisions read, without copying env vars.
fn probe_view(c: &Container) -> Container {
    Container {
        name: c.name.clone(),
        ports: c.ports.clone(),
        startup_probe: c.startup_probe.clone(),
        liveness_probe: c.liveness_probe.clone(),
        readiness_probe: c.readiness_probe.clone(),
        ..Default::default()
    }
}

pub fn port_label(p: &IntOrString) -> String {
    match p {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}
