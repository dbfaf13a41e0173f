//! Environment rules (SPEC §5), applied through the [`Editor`].
//!
//! - A variable the container defines is never overridden.
//! - List-like variables compose: a plain value gets ours appended (or
//!   wrapped, for `PYTHONPATH`); a `valueFrom` value is kept under
//!   `OTEL_ADMISSION_ORIG_<NAME>`, defined just before, and the variable
//!   becomes a composition with `$(OTEL_ADMISSION_ORIG_<NAME>)`. The operator
//!   skips such containers instead (#1814, #3166).
//! - `OTEL_RESOURCE_ATTRIBUTES` goes last, after the downward-API variables
//!   its `$(VAR)`s use: Kubernetes only expands variables defined earlier.

use crate::inject::editor::{ApplyError, Editor, Slot};
use crate::inject::env_var::{append_if_absent, field_ref, keep_original, plain, set_if_absent};
use crate::inject::plan::{LanguagePlan, Plan};
use crate::inject::service_name;
use crate::instrumentation::InstrumentationSpec;
use crate::language::Language;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use std::collections::BTreeMap;

pub const POD_NAME_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES_POD_NAME";

pub const NODE_NAME_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME";

pub const POD_UID_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES_POD_UID";

pub const RESOURCE_ATTRIBUTES_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";

const RESOURCE_PREFIX: &str = "resource.opentelemetry.io/";

/// The OTLP protocol each agent uses when nothing sets one: http/protobuf
/// for every SDK-based agent (the OpenTelemetry default), gRPC for the
/// apache-httpd and nginx modules. Only Python gets it written into its env,
/// as the operator does; the others are named here for the port warning.
pub fn default_protocol(lang: Language) -> &'static str {
    match lang {
        Language::ApacheHttpd | Language::Nginx => "grpc",
        _ => "http/protobuf",
    }
}

/// Whether the container's SDK exports OTLP over gRPC: its own plain
/// `OTEL_EXPORTER_OTLP_PROTOCOL` when set, else the agent's default.
pub fn speaks_grpc(env: &[EnvVar], lang: Language) -> bool {
    if let Some(p) = env
        .iter()
        .find(|e| e.name == "OTEL_EXPORTER_OTLP_PROTOCOL")
        .and_then(|e| e.value.as_deref())
    {
        return p.trim() == "grpc";
    }
    default_protocol(lang) == "grpc"
}

/// The `spec.<lang>.env` of the Instrumentation.
pub fn language_env(spec: &InstrumentationSpec, lang: Language) -> &[EnvVar] {
    spec.language(lang)
        .map(|l| l.env.as_slice())
        .unwrap_or_default()
}

/// The downward-API IP variables, in the operator's order (`OTEL_POD_IP`,
/// then `OTEL_NODE_IP`, as `initContainerUserEnv` appends them).
pub fn pod_node_ip() -> [EnvVar; 2] {
    [
        field_ref("OTEL_POD_IP", "status.podIP"),
        field_ref("OTEL_NODE_IP", "status.hostIP"),
    ]
}

/// `OTEL_NODE_IP` then `OTEL_POD_IP` (each unless defined) ahead of every
/// variable of the container, so that a `$(OTEL_NODE_IP)` in the user's
/// env, `spec.<lang>.env` or `spec.env` expands: the operator prepends
/// `defaultPodNodeEnvVars` one by one.
pub fn node_pod_ip(ed: &mut Editor<'_>, ci: Slot) -> Result<(), ApplyError> {
    for var in pod_node_ip() {
        if ed.find_env(ci, &var.name).is_none() {
            ed.prepend_env(ci, var)?;
        }
    }
    Ok(())
}

/// The operator's `injectCommonEnvVar`: the node and pod IPs first, then
/// `spec.env` where the container does not define the name.
pub fn common(ed: &mut Editor<'_>, ci: Slot, spec: &InstrumentationSpec) -> Result<(), ApplyError> {
    node_pod_ip(ed, ci)?;
    append_if_absent(ed, ci, &spec.env)
}

/// The common SDK configuration (the operator's `injectCommonSDKConfig`),
/// after the language's variables, in its order: service name, endpoint,
/// TLS, the downward-API variables, propagators, sampler, and
/// `OTEL_RESOURCE_ATTRIBUTES` last.
///
/// `ci` is where the variables go; `app` is the container they describe (the
/// same one, except for Go's sidecar). Returns warnings.
pub fn sdk_config(
    ed: &mut Editor<'_>,
    ci: Slot,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    app: &Container,
) -> Result<Vec<String>, ApplyError> {
    let spec = &lp.instrumentation.instrumentation.spec;
    let mut warnings = Vec::new();
    let ours = resource_attributes(pod, plan, spec, app);
    let user = ed
        .find_env(ci, RESOURCE_ATTRIBUTES_VAR)
        .and_then(|j| ed.env(ci)[j].value.as_deref());
    let name = service_name::service_name(
        pod,
        plan.owner.as_ref(),
        &ours,
        &user_keys(user.unwrap_or_default()),
        spec,
        &app.name,
    );
    set_if_absent(ed, ci, plain("OTEL_SERVICE_NAME", name))?;
    let from_resource = lp.instrumentation.instrumentation.metadata.name.is_some();
    if let Some(ep) = endpoint(
        spec,
        from_resource,
        plan,
        speaks_grpc(ed.env(ci), lp.language),
    ) {
        set_if_absent(ed, ci, plain("OTEL_EXPORTER_OTLP_ENDPOINT", ep))?;
    }
    for var in crate::inject::exporter_tls::apply(ed, ci, spec)? {
        set_if_absent(ed, ci, var)?;
    }
    set_if_absent(ed, ci, field_ref(POD_NAME_VAR, "metadata.name"))?;
    if uid_attributes(spec) && pod_uid(pod).is_none() {
        set_if_absent(ed, ci, field_ref(POD_UID_VAR, "metadata.uid"))?;
    }
    if node_name(pod).is_none() {
        set_if_absent(ed, ci, field_ref(NODE_NAME_VAR, "spec.nodeName"))?;
    }
    if !spec.propagators.is_empty() {
        let joined: Vec<&str> = spec.propagators.iter().map(|p| p.as_str()).collect();
        set_if_absent(ed, ci, plain("OTEL_PROPAGATORS", joined.join(",")))?;
    }
    if let Some(sampler) = &spec.sampler
        && let Some(t) = sampler.type_
        && ed.find_env(ci, "OTEL_TRACES_SAMPLER").is_none()
        && ed.find_env(ci, "OTEL_TRACES_SAMPLER_ARG").is_none()
    {
        ed.push_env(ci, plain("OTEL_TRACES_SAMPLER", t.as_str()))?;
        if let Some(arg) = sampler.argument.as_deref().filter(|a| !a.is_empty()) {
            ed.push_env(ci, plain("OTEL_TRACES_SAMPLER_ARG", arg))?;
        }
    }
    merge_resource_attributes(ed, ci, &ours)?;
    if let Some(w) = grpc_port_mismatch(ed.env(ci), lp.language) {
        warnings.push(w);
    }
    Ok(warnings)
}

/// The exporter endpoint. An Instrumentation resource's own endpoint wins
/// (SPEC §5: the sidecar's localhost only when nothing else sets one); the
/// config's `defaults` are no resource, and their gateway is where the
/// sidecar itself exports, so with a sidecar the app exports to localhost.
pub fn endpoint(
    spec: &InstrumentationSpec,
    from_resource: bool,
    plan: &Plan,
    grpc: bool,
) -> Option<String> {
    let own = spec
        .exporter
        .as_ref()
        .and_then(|e| e.endpoint.clone())
        .filter(|e| !e.is_empty());
    let local = plan
        .sidecar
        .as_ref()
        .map(|_| crate::inject::sidecar::local_endpoint(grpc));
    match (own, local) {
        (Some(own), _) if from_resource => Some(own),
        (_, Some(local)) => Some(local),
        (own, None) => own,
    }
}

fn pod_uid(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref().filter(|u| !u.is_empty())
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn uid_attributes(spec: &InstrumentationSpec) -> bool {
    spec.resource
        .as_ref()
        .is_some_and(|r| r.add_k8s_uid_attributes)
}

/// The keys a user's `OTEL_RESOURCE_ATTRIBUTES` value sets (`k=v,…`): ours
/// never override them, and the Operator names the service without them.
pub fn user_keys(value: &str) -> Vec<&str> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim()))
        .collect()
}

/// Our attributes for `app`, lowest precedence first (reference §3). As the
/// Operator's, an attribute of the pod that is empty (a container without a
/// name) is left out, and `service.instance.id` needs all three parts.
pub fn resource_attributes(
    pod: &Pod,
    plan: &Plan,
    spec: &InstrumentationSpec,
    app: &Container,
) -> BTreeMap<String, String> {
    let ns = plan.namespace.as_str();
    let mut attrs: BTreeMap<String, String> = spec
        .resource
        .as_ref()
        .map(|r| r.resource_attributes.clone())
        .unwrap_or_default();
    let pod_name = format!("$({POD_NAME_VAR})");
    let node = node_name(pod).map_or_else(|| format!("$({NODE_NAME_VAR})"), str::to_string);
    let instance = if ns.is_empty() || app.name.is_empty() {
        String::new()
    } else {
        format!("{ns}.{pod_name}.{}", app.name)
    };
    for (k, v) in [
        ("k8s.namespace.name", ns.to_string()),
        ("k8s.container.name", app.name.clone()),
        ("k8s.pod.name", pod_name.clone()),
        ("k8s.node.name", node),
        ("service.instance.id", instance),
    ] {
        if !v.is_empty() {
            attrs.insert(k.into(), v);
        }
    }
    // The pod's own UID whenever it has one (the Operator's map holds it);
    // the downward API only when asked for and the pod has none yet.
    if let Some(uid) = pod_uid(pod) {
        attrs.insert("k8s.pod.uid".into(), uid.to_string());
    } else if uid_attributes(spec) {
        attrs.insert("k8s.pod.uid".into(), format!("$({POD_UID_VAR})"));
    }
    if uid_attributes(spec) {
        // The direct owner's UID is in the pod; its parent's would need an API call.
        for r in pod.metadata.owner_references.iter().flatten() {
            let kind = r.kind.to_ascii_lowercase();
            if matches!(
                kind.as_str(),
                "replicaset" | "deployment" | "statefulset" | "daemonset" | "job" | "cronjob"
            ) && !r.uid.is_empty()
            {
                attrs.insert(format!("k8s.{kind}.uid"), r.uid.clone());
            }
        }
    }
    for (k, v) in service_name::owner_attributes(plan.owner.as_ref()) {
        attrs.insert(k, v);
    }
    let annotations = pod.metadata.annotations.as_ref();
    for (k, v) in annotations.into_iter().flatten() {
        if let Some(attr) = k.strip_prefix(RESOURCE_PREFIX)
            && attr != "service.name"
            && !attr.is_empty()
        {
            attrs.insert(attr.to_string(), v.clone());
        }
    }
    attrs
        .entry("service.namespace".into())
        .or_insert_with(|| ns.to_string());
    if let Some(v) = service_name::service_version(pod, spec, app.image.as_deref()) {
        attrs.insert("service.version".into(), v);
    }
    attrs
}

/// `k=v,…` with every value percent-encoded (see [`encode_value`]).
fn join<'a>(attrs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut out = String::with_capacity(256);
    for (k, v) in attrs {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        encode_value(v, &mut out);
    }
    out
}

/// Appends `value` as an `OTEL_RESOURCE_ATTRIBUTES` value. The
/// specification (resource SDK) reads the variable as W3C baggage without
/// metadata: bytes outside the baggage-octet range (controls, space, `"`,
/// `,`, `;`, `\`, DEL and every non-ASCII byte, as UTF-8) must be
/// percent-encoded, and SDKs decode values. So must `%`: a literal `%2C`
/// would decode to a comma, and a stray `%` fails Node.js's decoding. `=`
/// is a baggage octet, but the Node.js SDK refuses a pair that splits into
/// more than two parts on `=`, and with it the whole variable; `%3D`
/// decodes to `=` everywhere. Everything else, `$(VAR)` references
/// included, is written as it is, so values without those characters do
/// not change. The Operator joins values raw, and `team=a,b` becomes
/// `team=a` and a stray `b`.
pub fn encode_value(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        let raw = matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
            && b != b'%'
            && b != b'=';
        if raw {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
}

/// Merges ours into the container's `OTEL_RESOURCE_ATTRIBUTES`, user keys
/// winning, and leaves it after the variables it references.
fn merge_resource_attributes(
    ed: &mut Editor<'_>,
    ci: Slot,
    ours: &BTreeMap<String, String>,
) -> Result<(), ApplyError> {
    let name = RESOURCE_ATTRIBUTES_VAR;
    let Some(j) = ed.find_env(ci, name) else {
        return ed.push_env(ci, plain(name, join(ours)));
    };
    let existing = ed.env(ci)[j].clone();
    match existing.value_from {
        None => {
            let user = existing.value.unwrap_or_default();
            let user_keys = user_keys(&user);
            let missing: Vec<(&String, &String)> = ours
                .iter()
                .filter(|(k, _)| !user_keys.contains(&k.as_str()))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            // A value already ending in `,` gets no second one (the Operator's rule).
            let value = if user.trim().is_empty() {
                join(missing)
            } else if user.ends_with(',') {
                format!("{user}{}", join(missing))
            } else {
                format!("{user},{}", join(missing))
            };
            ed.remove_env(ci, j);
            ed.push_env(ci, plain(name, value))
        }
        // The user's keys come last: SDKs keep the last duplicate key, so
        // they still win without us reading the Secret or ConfigMap.
        Some(source) => match keep_original(ed, ci, j, name, source)? {
            Some(orig) => ed.push_env(ci, plain(name, format!("{},{orig}", join(ours)))),
            None => Ok(()),
        },
    }
}

/// A gRPC port given to an http/protobuf SDK: a common silent failure (#924).
pub fn grpc_port_mismatch(env: &[EnvVar], lang: Language) -> Option<String> {
    let get = |n: &str| {
        env.iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value.as_deref())
    };
    let proto = get("OTEL_EXPORTER_OTLP_PROTOCOL")?;
    let ep = get("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let port = ep
        .trim_end_matches('/')
        .rsplit_once(':')
        .map(|(_, p)| p.split('/').next().unwrap_or(p));
    (proto.starts_with("http") && port == Some("4317")).then(|| {
        format!(
            "{lang}: endpoint {ep} is the OTLP gRPC port 4317 but the SDK uses {proto}; use 4318"
        )
    })
}
