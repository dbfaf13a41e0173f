//! One file per language: the operator's init container, volume, mounts and
//! variables for that language (reference §2). This module holds what they
//! share: resources, security contexts, volumes and the agent layout.

pub mod apache_httpd;
pub mod dotnet;
pub mod go;
pub mod java;
pub mod nginx;
pub mod nodejs;
pub mod python;
pub mod sdk;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EphemeralVolumeSource,
    PersistentVolumeClaimTemplate, Pod, ResourceRequirements, SeccompProfile, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::inject::apply::{ApplyError, Editor, Slot};
use crate::inject::env;
use crate::inject::language::Language;
use crate::inject::plan::{LanguagePlan, Plan};
use crate::instrumentation::InstrumentationSpec;

/// The operator's default `emptyDir.sizeLimit` for agent volumes.
pub const DEFAULT_VOLUME_SIZE: &str = "200Mi";
/// UID of the restricted security context; distroless's `nonroot`.
pub const NON_ROOT_UID: i64 = 65532;

/// Outer error: internal, the whole pod fails. Inner error: this language
/// cannot be injected (a name clash), with a one-fact message.
pub type LangResult = Result<Result<(), String>, ApplyError>;

/// Injects one language.
pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    match lp.language {
        Language::Java => java::inject(ed, pod, plan, lp, warnings),
        Language::Nodejs => nodejs::inject(ed, pod, plan, lp, warnings),
        Language::Python => python::inject(ed, pod, plan, lp, warnings),
        Language::Dotnet => dotnet::inject(ed, pod, plan, lp, warnings),
        Language::Go => go::inject(ed, pod, plan, lp, warnings),
        Language::ApacheHttpd => apache_httpd::inject(ed, pod, plan, lp, warnings),
        Language::Nginx => nginx::inject(ed, pod, plan, lp, warnings),
        Language::Sdk => sdk::inject(ed, pod, plan, lp, warnings),
    }
}

/// Requests and limits: the Instrumentation's, else the operator's defaults
/// (its defaulting webhook fills them per field group, reference §2).
pub fn resources(
    configured: Option<&ResourceRequirements>,
    limits: (&str, &str),
    requests: (&str, &str),
) -> ResourceRequirements {
    let pair = |(cpu, mem): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(mem.into())),
        ])
    };
    let c = configured.cloned().unwrap_or_default();
    ResourceRequirements {
        limits: Some(c.limits.unwrap_or_else(|| pair(limits))),
        requests: Some(c.requests.unwrap_or_else(|| pair(requests))),
        claims: c.claims,
    }
}

/// What the env rules need to know about a target (name, image, security
/// context), without copying its possibly thousands of env vars.
pub fn identity(c: &Container) -> Container {
    Container {
        name: c.name.clone(),
        image: c.image.clone(),
        security_context: c.security_context.clone(),
        ..Default::default()
    }
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
    let uid = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.run_as_user)
        .filter(|u| *u != 0)
        .unwrap_or(NON_ROOT_UID);
    restricted(uid)
}

/// The agent volume: an ephemeral volume from `volumeClaimTemplate`, else an
/// `emptyDir` limited to `volumeLimitSize` (default 200Mi).
pub fn agent_volume(
    name: &str,
    size: Option<&Quantity>,
    claim: Option<&PersistentVolumeClaimTemplate>,
) -> Volume {
    match claim {
        Some(t) => Volume {
            name: name.into(),
            ephemeral: Some(EphemeralVolumeSource {
                volume_claim_template: Some(t.clone()),
            }),
            ..Default::default()
        },
        None => Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(
                    size.cloned()
                        .unwrap_or_else(|| Quantity(DEFAULT_VOLUME_SIZE.into())),
                ),
                medium: None,
            }),
            ..Default::default()
        },
    }
}

pub fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

/// The targets' slots, init containers first (they run first), then in plan order.
pub fn target_slots(ed: &Editor<'_>, lp: &LanguagePlan) -> Vec<Slot> {
    let mut slots: Vec<Slot> = lp
        .containers
        .iter()
        .filter_map(|n| ed.find_slot(n))
        .collect();
    slots.sort_by_key(|s| match s {
        Slot::Init(i) => (0, *i),
        Slot::Main(_) => (1, 0),
    });
    slots
}

/// The single regular target of the languages that support only one.
pub fn single_main_target(ed: &Editor<'_>, lp: &LanguagePlan) -> Result<Slot, String> {
    match target_slots(ed, lp).as_slice() {
        [s @ Slot::Main(_)] => Ok(*s),
        [Slot::Init(_)] => Err(format!(
            "{}: cannot instrument an init container",
            lp.language
        )),
        other => Err(format!(
            "{}: instruments exactly one container, {} selected",
            lp.language,
            other.len()
        )),
    }
}

/// A clash with what the pod already has, as a one-fact message.
pub fn clash(
    ed: &Editor<'_>,
    lang: Language,
    containers: &[&str],
    volumes: &[&str],
    mounts: &[(Slot, String)],
) -> Option<String> {
    if let Some(c) = containers.iter().find(|c| ed.has_container(c)) {
        return Some(format!("{lang}: pod already has a container named {c}"));
    }
    if let Some(v) = volumes.iter().find(|v| ed.has_volume(v)) {
        return Some(format!("{lang}: pod already has a volume named {v}"));
    }
    for (slot, path) in mounts {
        let Some(c) = ed.container(*slot) else {
            continue;
        };
        if c.volume_mounts
            .iter()
            .flatten()
            .any(|m| &m.mount_path == path)
        {
            return Some(format!(
                "{lang}: container {} already mounts {path}",
                c.name
            ));
        }
    }
    None
}

/// The shared layout of java, nodejs, python and dotnet: one init container
/// copying the agent into one volume, mounted in every target.
pub struct Agent<'a> {
    pub init_name: &'a str,
    pub volume: &'a str,
    pub image: String,
    pub command: Vec<String>,
    /// Where the init container mounts the volume.
    pub init_mount: &'a str,
    pub resources: ResourceRequirements,
    pub size: Option<&'a Quantity>,
    pub claim: Option<&'a PersistentVolumeClaimTemplate>,
    /// Further init containers writing into the volume (Java extensions),
    /// given without security context, which they get like the main one.
    pub extra_inits: Vec<Container>,
}

// === impl Agent ===

impl<'a> Agent<'a> {
    /// The agent of a language in the operator's common shape (Node.js,
    /// Python, .NET): an init container named like its volume that runs
    /// `cp -r <source> <mount>`, limits 500m/256Mi, the given requests.
    pub fn copied(
        spec: Option<&'a crate::instrumentation::Language>,
        name: &'a str,
        mount: &'a str,
        default_image: &str,
        source: &str,
        requests: (&str, &str),
    ) -> Self {
        Self {
            init_name: name,
            volume: name,
            image: spec
                .and_then(|l| l.image.clone())
                .unwrap_or_else(|| default_image.into()),
            command: ["cp", "-r", source, mount].map(String::from).to_vec(),
            init_mount: mount,
            resources: resources(
                spec.and_then(|l| l.resource_requirements.as_ref()),
                ("500m", "256Mi"),
                requests,
            ),
            size: spec.and_then(|l| l.volume_limit_size.as_ref()),
            claim: spec.and_then(|l| l.volume_claim_template.as_ref()),
            extra_inits: Vec::new(),
        }
    }
}

/// Injects an [`Agent`]; `app_mount` gives the mount path in a target and
/// `vars` sets the language's variables in it.
#[allow(clippy::too_many_arguments)]
pub fn inject_agent(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
    agent: Agent<'_>,
    app_mount: &dyn Fn(&str) -> String,
    vars: &dyn Fn(&mut Editor<'_>, Slot, &str) -> Result<(), ApplyError>,
) -> LangResult {
    let spec = &lp.instrumentation.instrumentation.spec;
    let targets = target_slots(ed, lp);
    let mounts: Vec<(Slot, String)> = targets
        .iter()
        .filter_map(|&s| ed.container(s).map(|c| (s, app_mount(&c.name))))
        .collect();
    if let Some(msg) = clash(
        ed,
        lp.language,
        &[agent.init_name],
        &[agent.volume],
        &mounts,
    ) {
        return Ok(Err(msg));
    }
    let first = targets.first().and_then(|&s| ed.container(s)).map(identity);
    ed.push_volume(agent_volume(agent.volume, agent.size, agent.claim))?;
    let sc = init_security_context(spec, pod, first.as_ref());
    let mut inits = vec![Container {
        name: agent.init_name.into(),
        image: Some(agent.image),
        command: Some(agent.command),
        image_pull_policy: spec.image_pull_policy.clone(),
        resources: Some(agent.resources),
        security_context: Some(sc.clone()),
        volume_mounts: Some(vec![mount(agent.volume, agent.init_mount)]),
        ..Default::default()
    }];
    for mut extra in agent.extra_inits {
        extra.security_context = Some(sc.clone());
        inits.push(extra);
    }
    // Before the first init container that uses the agent, else at the end.
    let target_names: Vec<String> = mounts
        .iter()
        .filter_map(|(s, _)| ed.container(*s).map(|c| c.name.clone()))
        .collect();
    match targets.first() {
        Some(Slot::Init(at)) => {
            for (k, c) in inits.into_iter().enumerate() {
                ed.insert_init_container(at + k, c)?;
            }
        }
        _ => {
            for c in inits {
                ed.push_init_container(c)?;
            }
        }
    }
    // Slots may have shifted: find the targets again by name.
    for (name, (_, path)) in target_names.iter().zip(mounts) {
        let Some(slot) = ed.find_slot(name) else {
            continue;
        };
        let Some(app) = ed.container(slot).map(identity) else {
            continue;
        };
        ed.push_mount(slot, mount(agent.volume, &path))?;
        env::pre_language(ed, slot, spec, lp.language)?;
        vars(ed, slot, &app.name)?;
        warnings.extend(env::sdk_config(ed, slot, pod, plan, lp, &app)?);
    }
    Ok(Ok(()))
}

/// The shared layout of apache-httpd and nginx: a clone of the app container
/// copies its config out, the agent container adds the module to it, and the
/// app mounts the result over its config directory.
pub struct WebServer<'a> {
    pub attach_name: &'a str,
    pub conf_volume: &'a str,
    pub agent_volume: &'a str,
    /// The server's config directory in the app image.
    pub conf_dir: String,
    /// The shell command of the clone container.
    pub clone_script: String,
    pub image: String,
    pub script: String,
    /// Env of the attach container (agent config, instance id).
    pub attach_env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    pub size: Option<&'a Quantity>,
    pub resources: ResourceRequirements,
}

pub const WEBSERVER_AGENT_DIR: &str = "/opt/opentelemetry-webserver/agent";
pub const WEBSERVER_SOURCE_CONF_DIR: &str = "/opt/opentelemetry-webserver/source-conf";
pub const CLONE_CONTAINER: &str = "otel-agent-source-container-clone";

/// Injects a [`WebServer`] module into the single target container; `vars`
/// sets extra app variables.
#[allow(clippy::too_many_arguments)]
pub fn inject_webserver(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
    w: WebServer<'_>,
    vars: &dyn Fn(&mut Editor<'_>, Slot) -> Result<(), ApplyError>,
) -> LangResult {
    let spec = &lp.instrumentation.instrumentation.spec;
    let ci = match single_main_target(ed, lp) {
        Ok(s) => s,
        Err(msg) => return Ok(Err(msg)),
    };
    let mounts = [
        (ci, w.conf_dir.clone()),
        (ci, WEBSERVER_AGENT_DIR.to_string()),
    ];
    if let Some(msg) = clash(
        ed,
        lp.language,
        &[CLONE_CONTAINER, w.attach_name],
        &[w.conf_volume, w.agent_volume],
        &mounts,
    ) {
        return Ok(Err(msg));
    }
    let Some(app) = ed.container(ci).cloned() else {
        return Ok(Err(format!("{}: no target container", lp.language)));
    };
    let sc = init_security_context(spec, pod, Some(&app));
    ed.push_volume(agent_volume(w.conf_volume, w.size, None))?;
    ed.push_volume(agent_volume(w.agent_volume, w.size, None))?;
    let mut clone_mounts = app.volume_mounts.clone().unwrap_or_default();
    clone_mounts.push(mount(w.conf_volume, WEBSERVER_SOURCE_CONF_DIR));
    ed.push_init_container(Container {
        name: CLONE_CONTAINER.into(),
        image: app.image.clone(),
        image_pull_policy: app.image_pull_policy.clone(),
        command: Some(vec!["/bin/sh".into(), "-c".into()]),
        args: Some(vec![w.clone_script]),
        env: app.env.clone(),
        env_from: app.env_from.clone(),
        volume_mounts: Some(clone_mounts),
        resources: Some(w.resources.clone()),
        security_context: Some(sc.clone()),
        ..Default::default()
    })?;
    ed.push_init_container(Container {
        name: w.attach_name.into(),
        image: Some(w.image),
        image_pull_policy: spec.image_pull_policy.clone(),
        command: Some(vec!["/bin/sh".into(), "-c".into()]),
        args: Some(vec![w.script]),
        env: Some(w.attach_env),
        volume_mounts: Some(vec![
            mount(w.agent_volume, WEBSERVER_AGENT_DIR),
            mount(w.conf_volume, WEBSERVER_SOURCE_CONF_DIR),
        ]),
        resources: Some(w.resources),
        security_context: Some(sc),
        ..Default::default()
    })?;
    ed.push_mount(ci, mount(w.conf_volume, &w.conf_dir))?;
    ed.push_mount(ci, mount(w.agent_volume, WEBSERVER_AGENT_DIR))?;
    env::pre_language(ed, ci, spec, lp.language)?;
    vars(ed, ci)?;
    warnings.extend(env::sdk_config(ed, ci, pod, plan, lp, &app)?);
    Ok(Ok(()))
}

/// The modules export OTLP over gRPC, so a 4318 endpoint is a mistake.
/// With the collector sidecar they export to it on localhost:4317.
pub fn webserver_endpoint(
    spec: &InstrumentationSpec,
    plan: &Plan,
    lang: Language,
    warnings: &mut Vec<String>,
) -> String {
    if plan.sidecar.is_some() {
        return crate::inject::sidecar::local_endpoint(true);
    }
    let ep = spec
        .exporter
        .as_ref()
        .and_then(|e| e.endpoint.clone())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "http://localhost:4317/".into());
    if ep.trim_end_matches('/').ends_with(":4318") {
        warnings.push(format!(
            "{lang}: endpoint {ep} is the OTLP/HTTP port 4318 but the module exports gRPC; use 4317"
        ));
    }
    ep
}
