//! `spec.exporter.tls`: the Operator mounts the named Secret and ConfigMap
//! into each target and points the SDK's certificate variables at them
//! (`internal/instrumentation/exporter.go`).
//!
//! The Operator first reads both objects and leaves the pod alone when one is
//! missing, because a pod mounting a missing Secret or ConfigMap never starts:
//! the kubelet keeps the whole pod, application included, in
//! `ContainerCreating`. We make no API call on the admission path (a stalled
//! API server must not stall pod creation), so we cannot know; instead both
//! volumes are `optional: true`. A missing object then leaves the directory
//! empty, the pod starts, the application runs, and only the agent's export
//! fails (it reports the missing certificate file in its own log). The
//! Operator's check also holds only at admission: a Secret deleted later
//! blocks every later pod with its volumes, ours never does.
//! docs/INJECTION.md, "Exporter TLS", says so for users.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, SecretVolumeSource, Volume, VolumeMount,
};

use crate::inject::editor::{ApplyError, Editor, Slot};
use crate::inject::env_var::plain;
use crate::instrumentation::InstrumentationSpec;

pub fn secret_volume(name: &str) -> String {
    format!("otel-auto-secret-{name}")
}
pub fn secret_mount(name: &str) -> String {
    format!("/otel-auto-instrumentation-secret-{name}")
}
pub fn config_map_volume(name: &str) -> String {
    format!("otel-auto-configmap-{name}")
}
pub fn config_map_mount(name: &str) -> String {
    format!("/otel-auto-instrumentation-configmap-{name}")
}

fn join(dir: &str, file: &str) -> String {
    if file.starts_with('/') {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    }
}

/// Adds the volumes (once per pod) and read-only mounts (once per container),
/// and returns the certificate variables for container `ci`.
pub fn apply(
    ed: &mut Editor<'_>,
    ci: Slot,
    spec: &InstrumentationSpec,
) -> Result<Vec<EnvVar>, ApplyError> {
    let Some(tls) = spec.exporter.as_ref().and_then(|e| e.tls.as_ref()) else {
        return Ok(Vec::new());
    };
    let secret = tls.secret_name.as_deref().filter(|s| !s.is_empty());
    let config_map = tls.config_map_name.as_deref().filter(|s| !s.is_empty());
    let mut mounts = Vec::new();
    if let Some(s) = secret {
        let vol = secret_volume(s);
        if !ed.has_volume(&vol) {
            ed.push_volume(Volume {
                name: vol.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(s.into()),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            })?;
        }
        mounts.push((vol, secret_mount(s)));
    }
    if let Some(c) = config_map {
        let vol = config_map_volume(c);
        if !ed.has_volume(&vol) {
            ed.push_volume(Volume {
                name: vol.clone(),
                config_map: Some(ConfigMapVolumeSource {
                    name: c.into(),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            })?;
        }
        mounts.push((vol, config_map_mount(c)));
    }
    for (vol, path) in mounts {
        let present = ed
            .container(ci)
            .and_then(|c| c.volume_mounts.as_ref())
            .is_some_and(|ms| ms.iter().any(|m| m.mount_path == path || m.name == vol));
        if !present {
            ed.push_mount(
                ci,
                VolumeMount {
                    name: vol,
                    mount_path: path,
                    read_only: Some(true),
                    ..Default::default()
                },
            )?;
        }
    }
    let secret_dir = secret.map(secret_mount).unwrap_or_default();
    let mut env = Vec::new();
    if let Some(ca) = tls.ca_file.as_deref().filter(|s| !s.is_empty()) {
        let dir = config_map
            .map(config_map_mount)
            .unwrap_or(secret_dir.clone());
        env.push(plain("OTEL_EXPORTER_OTLP_CERTIFICATE", join(&dir, ca)));
    }
    if let Some(cert) = tls.cert_file.as_deref().filter(|s| !s.is_empty()) {
        env.push(plain(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            join(&secret_dir, cert),
        ));
    }
    if let Some(key) = tls.key_file.as_deref().filter(|s| !s.is_empty()) {
        env.push(plain(
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            join(&secret_dir, key),
        ));
    }
    Ok(env)
}
