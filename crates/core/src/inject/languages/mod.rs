//! One file per language: the operator's init container, volume, mounts and
//! variables for that language (reference §2). Java, Node.js, Python, .NET,
//! Ruby and PHP are data (a [`CopiedAgent`] each) applied by
//! [`inject_copied`], PHP and Java with an init container of their own (a
//! script; a file copy and the extensions) and Java with one env step of its
//! own; Go (an eBPF sidecar), Apache HTTPD and nginx (config rewriting) are
//! code over the same [`inject_agent`]. This module holds what they share: volumes, mounts, the
//! clash check and the agent layout.

pub mod apache_httpd;
pub mod dotnet;
pub mod go;
pub mod java;
pub mod nginx;
pub mod nodejs;
pub mod php;
pub mod python;
pub mod ruby;
pub mod sdk;
use crate::inject::editor::{ApplyError, Editor, Slot};
use crate::inject::env;
use crate::inject::env_var::{self, ListRule};
use crate::inject::plan::{LanguagePlan, Libc, Plan};
use crate::inject::resources::resources;
use crate::inject::security::init_security_context;
use crate::instrumentation::LanguageSpec;
use crate::language::Language;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EphemeralVolumeSource, PersistentVolumeClaimTemplate,
    Pod, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The operator's default `emptyDir.sizeLimit` for agent volumes.
pub const DEFAULT_VOLUME_SIZE: &str = "200Mi";

/// Why a language was not injected.
#[derive(Debug, thiserror::Error)]
pub enum LangError {
    /// This language cannot be injected into this pod (a name clash, an
    /// init container Go cannot instrument): a one-fact message, reported
    /// as the language's `error` failure; the rest of the pod goes on.
    #[error("{0}")]
    NotInjected(String),
    /// Internal: the whole pod fails.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// What injecting one language gives.
pub type LangResult = Result<(), LangError>;

/// A value that depends on the libc build a pod gets (Python's and .NET's
/// musl builds).
#[derive(Clone, Copy, Debug)]
pub enum ByLibc {
    Same(&'static str),
    Builds {
        glibc: &'static str,
        musl: &'static str,
    },
}

impl ByLibc {
    pub fn get(self, libc: Libc) -> &'static str {
        match (self, libc) {
            (Self::Same(v), _) => v,
            (Self::Builds { glibc, .. }, Libc::Glibc) => glibc,
            (Self::Builds { musl, .. }, Libc::Musl) => musl,
        }
    }
}

/// One env step of an agent, in each target container.
#[derive(Clone, Copy, Debug)]
pub enum EnvStep {
    /// Set unless the container already defines it.
    Set(&'static str, ByLibc),
    /// Compose a list-like variable with the user's value.
    Compose(&'static str, ListRule<'static>),
}

/// An agent in the operator's common shape, as data: an init container named
/// like its volume copies `source` into it (`cp -r`), every target mounts it
/// at `mount`, and the env steps run in order. Node.js, Python, .NET, Ruby and
/// PHP are each one value of this type, applied by [`inject_copied`].
#[derive(Clone, Copy, Debug)]
pub struct CopiedAgent {
    pub language: Language,
    pub default_image: &'static str,
    /// The init container's and the volume's name.
    pub name: &'static str,
    pub mount: &'static str,
    pub source: ByLibc,
    /// The init container's requests; the limits are the operator's 500m/256Mi.
    pub requests: (&'static str, &'static str),
    /// Each target mounts the agent at `<mount>-<container>` (Java, as the
    /// operator does), not at `mount`.
    pub mount_per_container: bool,
    /// Before the mount and the common block (the operator's order for
    /// `PYTHONPATH` and `RUBYOPT`).
    pub early: &'static [EnvStep],
    /// After the common block.
    pub vars: &'static [EnvStep],
}

impl CopiedAgent {
    /// Where a target container mounts the agent.
    pub fn app_mount(&self, container: &str) -> String {
        if self.mount_per_container {
            format!("{}-{container}", self.mount)
        } else {
            self.mount.into()
        }
    }

    /// The init container, from the Instrumentation's block of the language.
    pub fn agent<'a>(&'a self, spec: Option<&'a LanguageSpec>, libc: Libc) -> Agent<'a> {
        Agent::copied(
            spec,
            self.name,
            self.mount,
            self.default_image,
            self.source.get(libc),
            self.requests,
        )
    }

    fn run(steps: &[EnvStep], ed: &mut Editor<'_>, ci: Slot, libc: Libc) -> Result<(), ApplyError> {
        for step in steps {
            match *step {
                EnvStep::Set(name, value) => {
                    env_var::set_if_absent(ed, ci, env_var::plain(name, value.get(libc)))?
                }
                EnvStep::Compose(name, rule) => env_var::compose_list(ed, ci, name, rule)?,
            }
        }
        Ok(())
    }
}

/// A language's own step after its [`CopiedAgent::vars`], in each target
/// (given its name): Java's `JAVA_TOOL_OPTIONS` flag names the target's path.
pub type TargetStep<'a> = &'a dyn Fn(&mut Editor<'_>, Slot, &str) -> Result<(), ApplyError>;

/// No step of a language's own.
pub fn no_step(_: &mut Editor<'_>, _: Slot, _: &str) -> Result<(), ApplyError> {
    Ok(())
}

/// Applies a [`CopiedAgent`], with `agent` as its init container (PHP gives
/// one running its script, Java one copying a file and its extensions) and
/// `then` after the agent's own variables.
#[allow(clippy::too_many_arguments)]
pub fn inject_copied(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
    data: &CopiedAgent,
    agent: Agent<'_>,
    then: TargetStep<'_>,
) -> LangResult {
    let libc = lp.libc;
    inject_agent(
        ed,
        pod,
        plan,
        lp,
        warnings,
        agent,
        &|c| data.app_mount(c),
        &|ed, ci| CopiedAgent::run(data.early, ed, ci, libc),
        &|ed, ci, name| {
            CopiedAgent::run(data.vars, ed, ci, libc)?;
            then(ed, ci, name)
        },
    )
}

/// [`inject_copied`] with the agent's own init container.
fn copied(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
    data: &CopiedAgent,
) -> LangResult {
    let spec = lp
        .instrumentation
        .instrumentation
        .spec
        .language(data.language);
    let agent = data.agent(spec, lp.libc);
    inject_copied(ed, pod, plan, lp, warnings, data, agent, &no_step)
}

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
        Language::Nodejs => copied(ed, pod, plan, lp, warnings, &nodejs::AGENT),
        Language::Php => php::inject(ed, pod, plan, lp, warnings),
        Language::Python => copied(ed, pod, plan, lp, warnings, &python::AGENT),
        Language::Ruby => copied(ed, pod, plan, lp, warnings, &ruby::AGENT),
        Language::Dotnet => dotnet::inject(ed, pod, plan, lp, warnings),
        Language::Go => go::inject(ed, pod, plan, lp, warnings),
        Language::ApacheHttpd => apache_httpd::inject(ed, pod, plan, lp, warnings),
        Language::Nginx => nginx::inject(ed, pod, plan, lp, warnings),
        Language::Sdk => sdk::inject(ed, pod, plan, lp, warnings),
    }
}

/// `OTEL_SERVICE_NAME` of the container named `app`, for the web servers'
/// agent configuration: as [`env::sdk_config`] names it.
pub fn service_name_of(
    pod: &Pod,
    plan: &Plan,
    spec: &crate::instrumentation::InstrumentationSpec,
    app: &str,
) -> String {
    let target = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .find(|c| c.name == app);
    let named = Container {
        name: app.into(),
        ..Default::default()
    };
    let container = target.map(identity).unwrap_or(named);
    let ours = env::resource_attributes(pod, plan, spec, &container);
    let user = target
        .and_then(|c| c.env.as_ref())
        .and_then(|e| e.iter().find(|v| v.name == env::RESOURCE_ATTRIBUTES_VAR))
        .and_then(|v| v.value.as_deref());
    crate::inject::service_name::service_name(
        pod,
        plan.owner.as_ref(),
        &ours,
        &env::user_keys(user.unwrap_or_default()),
        spec,
        app,
    )
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
                size_limit: Some(volume_size(size)),
                medium: None,
            }),
            ..Default::default()
        },
    }
}

/// `volumeLimitSize`, else the operator's 200Mi.
pub fn volume_size(size: Option<&Quantity>) -> Quantity {
    size.cloned()
        .unwrap_or_else(|| Quantity(DEFAULT_VOLUME_SIZE.into()))
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
    /// The init container's args (PHP's script and its arguments).
    pub args: Option<Vec<String>>,
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
    /// Python, .NET, Ruby, PHP): an init container named like its volume that runs
    /// `cp -r <source> <mount>`, limits 500m/256Mi, the given requests.
    pub fn copied(
        spec: Option<&'a LanguageSpec>,
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
            args: None,
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

/// Injects an [`Agent`] the operator's way: for each target, init containers
/// first, `spec.<lang>.env`, then `early` (Python's `PYTHONPATH`), the mount
/// at `app_mount`, the IPs and `spec.env`, then `vars` (the language's own
/// variables), then the common SDK configuration; only then the volume and
/// the init containers, before the first target init container or last.
#[allow(clippy::too_many_arguments)]
pub fn inject_agent(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
    agent: Agent<'_>,
    app_mount: &dyn Fn(&str) -> String,
    early: &dyn Fn(&mut Editor<'_>, Slot) -> Result<(), ApplyError>,
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
        return Err(LangError::NotInjected(msg));
    }
    let first = targets.first().and_then(|&s| ed.container(s)).map(identity);
    for (slot, path) in &mounts {
        let Some(app) = ed.container(*slot).map(identity) else {
            continue;
        };
        crate::inject::env_var::append_if_absent(ed, *slot, env::language_env(spec, lp.language))?;
        early(ed, *slot)?;
        ed.push_mount(*slot, mount(agent.volume, path))?;
        env::common(ed, *slot, spec)?;
        vars(ed, *slot, &app.name)?;
        warnings.extend(env::sdk_config(ed, *slot, pod, plan, lp, &app)?);
    }
    ed.push_volume(agent_volume(agent.volume, agent.size, agent.claim))?;
    let sc = init_security_context(spec, pod, first.as_ref());
    let mut inits = vec![Container {
        name: agent.init_name.into(),
        image: Some(agent.image),
        command: Some(agent.command),
        args: agent.args,
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
    Ok(())
}

/// The shared layout of apache-httpd and nginx (the operator's
/// `apachehttpd.go` and `nginx.go`): a clone of the first target copies its
/// config out, the attach container adds the module to that copy, and the
/// first target mounts the result over its config directory, without its own
/// mount there (which would shadow the copy). Every target, including the
/// further ones, gets the env.
pub struct WebServer<'a> {
    pub attach_name: &'a str,
    pub conf_volume: Volume,
    pub agent_volume: Volume,
    /// The server's config directory in the app image.
    pub conf_dir: String,
    /// The clone container's command and args.
    pub clone_command: Vec<String>,
    pub clone_args: Option<Vec<String>>,
    pub image: String,
    /// The attach container's args (after `/bin/sh -c`).
    pub attach_args: Vec<String>,
    /// The attach container's own variables (agent config, instance id),
    /// after the user's (the operator's `initContainerUserEnv`).
    pub attach_env: Vec<EnvVar>,
    pub resources: ResourceRequirements,
    /// Apache sets both init containers' security context after each
    /// target (the last one's wins); nginx once, from the first.
    pub security_context_per_target: bool,
}

pub const WEBSERVER_AGENT_DIR: &str = "/opt/opentelemetry-webserver/agent";

pub const WEBSERVER_SOURCE_CONF_DIR: &str = "/opt/opentelemetry-webserver/source-conf";

pub const CLONE_CONTAINER: &str = "otel-agent-source-container-clone";

/// The attach container's env: `spec.<lang>.env`, then `spec.env` and the
/// IPs where not set, then `required`, so `$(OTEL_NODE_IP)` in an endpoint
/// reaches the agent config expanded (operator 0.158, #5333).
pub fn init_container_user_env(
    required: Vec<EnvVar>,
    language: &[EnvVar],
    common: &[EnvVar],
) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = language.to_vec();
    for var in common.iter().cloned().chain(env::pod_node_ip()) {
        if !out.iter().any(|e| e.name == var.name) {
            out.push(var);
        }
    }
    out.extend(required);
    out
}

/// Injects a [`WebServer`] module; `vars` sets extra variables in the first
/// target once its attach container exists (nginx's `LD_LIBRARY_PATH`).
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
    let targets = target_slots(ed, lp);
    if let Some(Slot::Init(i)) = targets.first() {
        let name = ed
            .container(Slot::Init(*i))
            .map(|c| c.name.clone())
            .unwrap_or_default();
        return Err(LangError::NotInjected(format!(
            "{}: cannot instrument init container {name}",
            lp.language
        )));
    }
    if targets.is_empty() {
        return Err(LangError::NotInjected(format!(
            "{}: no target container",
            lp.language
        )));
    }
    if let Some(msg) = clash(
        ed,
        lp.language,
        &[CLONE_CONTAINER, w.attach_name],
        &[&w.conf_volume.name, &w.agent_volume.name],
        &[],
    ) {
        return Err(LangError::NotInjected(msg));
    }
    let lang_env = env::language_env(spec, lp.language);
    let mut attach_env = Some(w.attach_env);
    let mut clone_template = Some((w.conf_volume, w.clone_command, w.clone_args));
    let mut agent_volume = Some(w.agent_volume);
    let mut attach_args = Some(w.attach_args);
    for slot in targets {
        let Some(app) = ed.container(slot).cloned() else {
            continue;
        };
        crate::inject::env_var::append_if_absent(ed, slot, lang_env)?;
        let sc = init_security_context(spec, pod, Some(&app));
        if let Some((volume, command, args)) = clone_template.take() {
            let current = ed.container(slot).cloned().unwrap_or_default();
            let conf_name = volume.name.clone();
            ed.push_volume(volume)?;
            let mut clone_mounts = current.volume_mounts.clone().unwrap_or_default();
            clone_mounts.push(mount(&conf_name, WEBSERVER_SOURCE_CONF_DIR));
            let mut clone = Container {
                name: CLONE_CONTAINER.into(),
                image: current.image.clone(),
                command: Some(command),
                args,
                env: current.env.clone(),
                env_from: current.env_from.clone(),
                volume_mounts: Some(clone_mounts),
                resources: Some(w.resources.clone()),
                security_context: Some(sc.clone()),
                image_pull_policy: current.image_pull_policy.clone(),
                ..Default::default()
            };
            if let Some(at) = current
                .volume_mounts
                .iter()
                .flatten()
                .position(|m| m.mount_path.contains(w.conf_dir.as_str()))
            {
                ed.remove_mount(slot, at);
            }
            let agent_name = agent_volume
                .as_ref()
                .map(|v| v.name.clone())
                .unwrap_or_default();
            ed.push_mount(slot, mount(&agent_name, WEBSERVER_AGENT_DIR))?;
            ed.push_mount(slot, mount(&conf_name, &w.conf_dir))?;
            let mut attach = None;
            if let (Some(volume), Some(required), Some(args)) =
                (agent_volume.take(), attach_env.take(), attach_args.take())
            {
                let agent_name = volume.name.clone();
                ed.push_volume(volume)?;
                attach = Some(Container {
                    name: w.attach_name.into(),
                    image: Some(w.image.clone()),
                    command: Some(vec!["/bin/sh".into(), "-c".into()]),
                    args: Some(args),
                    env: Some(init_container_user_env(required, lang_env, &spec.env)),
                    resources: Some(w.resources.clone()),
                    volume_mounts: Some(vec![
                        mount(&agent_name, WEBSERVER_AGENT_DIR),
                        mount(&conf_name, WEBSERVER_SOURCE_CONF_DIR),
                    ]),
                    security_context: Some(sc.clone()),
                    image_pull_policy: spec.image_pull_policy.clone(),
                    ..Default::default()
                });
                vars(ed, slot)?;
                // The operator's clone shares the app's env list, so a value
                // `vars` changed in place (nginx's `LD_LIBRARY_PATH`) shows
                // in the clone too; a variable `vars` added does not.
                let after = ed.env(slot);
                for (i, var) in clone.env.iter_mut().flatten().enumerate() {
                    if let Some(now) = after.get(i).filter(|n| n.name == var.name) {
                        *var = now.clone();
                    }
                }
            }
            ed.push_init_container(clone)?;
            if let Some(attach) = attach {
                ed.push_init_container(attach)?;
            }
        } else if w.security_context_per_target {
            ed.set_init_security_context(CLONE_CONTAINER, sc.clone())?;
            ed.set_init_security_context(w.attach_name, sc)?;
        }
        env::common(ed, slot, spec)?;
        warnings.extend(env::sdk_config(ed, slot, pod, plan, lp, &app)?);
    }
    Ok(())
}

/// The modules export OTLP over gRPC, so a 4318 endpoint is a mistake. The
/// Instrumentation's endpoint, else the collector sidecar's, else the
/// operator's default.
pub fn webserver_endpoint(lp: &LanguagePlan, plan: &Plan, warnings: &mut Vec<String>) -> String {
    let inst = &lp.instrumentation.instrumentation;
    let lang = lp.language;
    let ep = env::endpoint(&inst.spec, inst.metadata.name.is_some(), plan, true)
        .unwrap_or_else(|| "http://localhost:4317/".into());
    if ep.trim_end_matches('/').ends_with(":4318") {
        warnings.push(format!(
            "{lang}: endpoint {ep} is the OTLP/HTTP port 4318 but the module exports gRPC; use 4317"
        ));
    }
    ep
}
