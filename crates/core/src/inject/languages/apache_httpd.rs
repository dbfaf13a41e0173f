//! Apache httpd: the OpenTelemetry webserver module, loaded through an
//! `Include` appended to a copy of the app's config (operator `apachehttpd.go`;
//! the attach script here does the same steps as its `apache_httpd_agent.sh`,
//! with the config directory passed as `$1`, never parsed by the shell).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, Volume};

use super::{
    LangResult, WEBSERVER_AGENT_DIR, WEBSERVER_SOURCE_CONF_DIR, WebServer, agent_volume,
    inject_webserver, resources, volume_size, webserver_endpoint,
};
use crate::inject::editor::Editor;
use crate::inject::env_var::{field_ref, plain};
use crate::inject::plan::{LanguagePlan, Plan};

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-apache-httpd:1.0.4";
pub const ATTACH_CONTAINER: &str = "otel-agent-attach-apache";
pub const CONF_VOLUME: &str = "otel-apache-conf-dir";
pub const AGENT_VOLUME: &str = "otel-apache-agent";
pub const DEFAULT_CONF_DIR: &str = "/usr/local/apache2/conf";
/// Sic: the operator's file name.
pub const AGENT_CONF_FILE: &str = "opentemetry_agent.conf";

/// The attach container's script: copy the agent, render its log config,
/// write the module config with the pod name as instance id, and include it.
pub const ATTACH_SCRIPT: &str = r#"set -e
conf_dir="$1"
agent=/opt/opentelemetry-webserver/agent
src=/opt/opentelemetry-webserver/source-conf
cp -r /opt/opentelemetry/* "$agent"
log_dir=$(echo "$agent/logs" | sed 's,/,\\/,g')
sed "s/__agent_log_dir__/${log_dir}/g" "$agent/conf/opentelemetry_sdk_log4cxx.xml.template" > "$agent/conf/opentelemetry_sdk_log4cxx.xml"
echo "${OTEL_APACHE_AGENT_CONF}" > "$src/opentemetry_agent.conf"
sed -i "s/<<SID-PLACEHOLDER>>/${APACHE_SERVICE_INSTANCE_ID}/g" "$src/opentemetry_agent.conf"
printf '\nInclude %s/opentemetry_agent.conf\n' "$conf_dir" >> "$src/httpd.conf"
"#;

/// The module's config, as the operator renders it: the load lines, then
/// every directive sorted by name (`spec.apacheHttpd.attrs` override ours).
pub fn agent_config(
    version: Option<&str>,
    endpoint: &str,
    service_name: &str,
    namespace: &str,
    attrs: &[k8s_openapi::api::core::v1::EnvVar],
) -> String {
    let a = WEBSERVER_AGENT_DIR;
    let suffix = if version == Some("2.2") { "22" } else { "" };
    let mut out = format!(
        "\n#Load the Otel Webserver SDK\n\
         LoadFile {a}/sdk_lib/lib/libopentelemetry_common.so\n\
         LoadFile {a}/sdk_lib/lib/libopentelemetry_resources.so\n\
         LoadFile {a}/sdk_lib/lib/libopentelemetry_trace.so\n\
         LoadFile {a}/sdk_lib/lib/libopentelemetry_otlp_recordable.so\n\
         LoadFile {a}/sdk_lib/lib/libopentelemetry_exporter_ostream_span.so\n\
         LoadFile {a}/sdk_lib/lib/libopentelemetry_exporter_otlp_grpc.so\n\
         #Load the Otel ApacheModule SDK\n\
         LoadFile {a}/sdk_lib/lib/libopentelemetry_webserver_sdk.so\n\
         #Load the Apache Module. In this example for Apache 2.4\n\
         #LoadModule otel_apache_module {a}/WebServerModule/Apache/libmod_apache_otel.so\n\
         #Load the Apache Module. In this example for Apache 2.2\n\
         #LoadModule otel_apache_module {a}/WebServerModule/Apache/libmod_apache_otel22.so\n\
         LoadModule otel_apache_module {a}/WebServerModule/Apache/libmod_apache_otel{suffix}.so\n\
         #Attributes\n"
    );
    let mut directives: BTreeMap<String, String> = [
        ("ApacheModuleEnabled", "ON"),
        ("ApacheModuleOtelSpanExporter", "otlp"),
        ("ApacheModuleOtelExporterEndpoint", endpoint),
        ("ApacheModuleServiceName", service_name),
        ("ApacheModuleServiceNamespace", namespace),
        ("ApacheModuleServiceInstanceId", "<<SID-PLACEHOLDER>>"),
        // Sic: the operator's values carry a leading space.
        ("ApacheModuleResolveBackends", " ON"),
        ("ApacheModuleTraceAsError", " ON"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for attr in attrs {
        directives.insert(attr.name.clone(), attr.value.clone().unwrap_or_default());
    }
    for (k, v) in directives {
        out.push_str(&format!("{k} {v}\n"));
    }
    out
}

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let spec = &lp.instrumentation.instrumentation.spec;
    let a = spec.apache_httpd.as_ref();
    let conf_dir = a
        .and_then(|a| a.config_path.as_deref())
        .filter(|p| !p.is_empty())
        .map(|p| p.strip_suffix('/').unwrap_or(p).to_string())
        .unwrap_or_else(|| DEFAULT_CONF_DIR.into());
    let endpoint = webserver_endpoint(lp, plan, warnings);
    let app = lp
        .containers
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let conf = agent_config(
        a.and_then(|a| a.version.as_deref()),
        &endpoint,
        &super::service_name_of(pod, plan, spec, app),
        &plan.namespace,
        a.map(|a| a.attrs.as_slice()).unwrap_or_default(),
    );
    let size = a.and_then(|a| a.common.volume_limit_size.as_ref());
    let w = WebServer {
        attach_name: ATTACH_CONTAINER,
        conf_volume: Volume {
            name: CONF_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(volume_size(size)),
                medium: None,
            }),
            ..Default::default()
        },
        agent_volume: agent_volume(
            AGENT_VOLUME,
            size,
            a.and_then(|a| a.common.volume_claim_template.as_ref()),
        ),
        clone_command: vec![
            "cp".into(),
            "-r".into(),
            format!("{conf_dir}/."),
            WEBSERVER_SOURCE_CONF_DIR.into(),
        ],
        clone_args: None,
        attach_args: vec![ATTACH_SCRIPT.into(), "--".into(), conf_dir.clone()],
        conf_dir,
        image: a
            .and_then(|a| a.common.image.clone())
            .unwrap_or_else(|| DEFAULT_IMAGE.into()),
        attach_env: vec![
            plain("OTEL_APACHE_AGENT_CONF", conf),
            field_ref("APACHE_SERVICE_INSTANCE_ID", "metadata.name"),
        ],
        resources: resources(
            a.and_then(|a| a.common.resource_requirements.as_ref()),
            ("500m", "256Mi"),
            ("1m", "128Mi"),
        ),
        security_context_per_target: true,
    };
    inject_webserver(ed, pod, plan, lp, warnings, w, &|_, _| Ok(()))
}
