//! nginx: the OpenTelemetry webserver module, `load_module`d into a copy of
//! the app's config (operator `nginx.go`; the clone and attach scripts here
//! do the same steps as its `nginx_clone.sh` and `nginx_agent.sh`, with the
//! user's paths passed as `$1`, never parsed by the shell). It reuses the
//! apache-httpd image, as the operator does; its volumes have no size limit,
//! as in the operator.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, Volume};

use super::{LangResult, WebServer, inject_webserver, resources, webserver_endpoint};
use crate::inject::editor::Editor;
use crate::inject::env_var::{ListRule, field_ref, plain};
use crate::inject::plan::{LanguagePlan, Plan};

/// The operator ships nginx's module in the apache-httpd image.
pub const DEFAULT_IMAGE: &str = super::apache_httpd::DEFAULT_IMAGE;
pub const ATTACH_CONTAINER: &str = "otel-agent-attach-nginx";
pub const CONF_VOLUME: &str = "otel-nginx-conf-dir";
pub const AGENT_VOLUME: &str = "otel-nginx-agent";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/nginx/nginx.conf";
pub const LD_LIBRARY_PATH: &str = "/opt/opentelemetry-webserver/agent/sdk_lib/lib";

/// The clone container's script: copy the config directory (`$1`) out and
/// record the nginx version for the attach container.
pub const CLONE_SCRIPT: &str = r#"set -e
cp -r "$1"/* /opt/opentelemetry-webserver/source-conf
nginx_version="$( { nginx -v ; } 2>&1 )"
echo "${nginx_version##*/}" > /opt/opentelemetry-webserver/source-conf/version.txt
"#;

/// The attach container's script: copy the module, write its config with the
/// pod name as instance id, and load it at the top of the config file (`$1`).
pub const ATTACH_SCRIPT: &str = r#"set -e
conf_file="$1"
agent=/opt/opentelemetry-webserver/agent
src=/opt/opentelemetry-webserver/source-conf
cp -r /opt/opentelemetry/* "$agent"
nginx_version=$(cat "$src/version.txt")
log_dir=$(echo "$agent/logs" | sed 's,/,\\/,g')
sed "s,__agent_log_dir__,${log_dir},g" "$agent/conf/opentelemetry_sdk_log4cxx.xml.template" > "$agent/conf/opentelemetry_sdk_log4cxx.xml"
echo "${OTEL_NGINX_AGENT_CONF}" > "$src/opentelemetry_agent.conf"
sed -i "s,<<SID-PLACEHOLDER>>,${OTEL_NGINX_SERVICE_INSTANCE_ID},g" "$src/opentelemetry_agent.conf"
sed -i "1s,^,load_module $agent/WebServerModule/Nginx/${nginx_version}/ngx_http_opentelemetry_module.so;\n,g" "$src/$conf_file"
sed -i "1s,^,env OTEL_RESOURCE_ATTRIBUTES;\n,g" "$src/$conf_file"
mv "$src/opentelemetry_agent.conf" "$src/conf.d"
"#;

/// The module's config, as the operator renders it: every directive sorted
/// by name, `spec.nginx.attrs` overriding ours.
pub fn agent_config(
    endpoint: &str,
    service_name: &str,
    namespace: &str,
    attrs: &[k8s_openapi::api::core::v1::EnvVar],
) -> String {
    let mut directives: BTreeMap<String, String> = [
        ("NginxModuleEnabled", "ON"),
        ("NginxModuleOtelSpanExporter", "otlp"),
        ("NginxModuleOtelExporterEndpoint", endpoint),
        ("NginxModuleServiceName", service_name),
        ("NginxModuleServiceNamespace", namespace),
        ("NginxModuleServiceInstanceId", "<<SID-PLACEHOLDER>>"),
        ("NginxModuleResolveBackends", "ON"),
        ("NginxModuleTraceAsError", "ON"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for attr in attrs {
        directives.insert(attr.name.clone(), attr.value.clone().unwrap_or_default());
    }
    directives
        .into_iter()
        .map(|(k, v)| format!("{k} {v};\n"))
        .collect()
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let spec = &lp.instrumentation.instrumentation.spec;
    let n = spec.nginx.as_ref();
    let config_file = n
        .and_then(|n| n.config_file.clone())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| DEFAULT_CONFIG_FILE.into());
    // Go's filepath.Dir and Base.
    let (conf_dir, conf_name) = match config_file.rsplit_once('/') {
        Some(("", f)) => ("/".to_string(), f.to_string()),
        Some((d, f)) => (d.to_string(), f.to_string()),
        None => (".".to_string(), config_file.clone()),
    };
    let endpoint = webserver_endpoint(lp, plan, warnings);
    let app = lp
        .containers
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let conf = agent_config(
        &endpoint,
        &super::service_name_of(pod, plan, spec, app),
        &plan.namespace,
        n.map(|n| n.attrs.as_slice()).unwrap_or_default(),
    );
    let w = WebServer {
        attach_name: ATTACH_CONTAINER,
        conf_volume: empty_dir(CONF_VOLUME),
        agent_volume: empty_dir(AGENT_VOLUME),
        clone_command: vec!["/bin/sh".into(), "-c".into()],
        clone_args: Some(vec![CLONE_SCRIPT.into(), "--".into(), conf_dir.clone()]),
        attach_args: vec![ATTACH_SCRIPT.into(), "--".into(), conf_name],
        conf_dir,
        image: n
            .and_then(|n| n.common.image.clone())
            .unwrap_or_else(|| DEFAULT_IMAGE.into()),
        attach_env: vec![
            plain("OTEL_NGINX_AGENT_CONF", conf),
            field_ref("OTEL_NGINX_SERVICE_INSTANCE_ID", "metadata.name"),
        ],
        resources: resources(
            n.and_then(|n| n.common.resource_requirements.as_ref()),
            ("500m", "256Mi"),
            ("1m", "128Mi"),
        ),
        security_context_per_target: false,
    };
    inject_webserver(ed, pod, plan, lp, warnings, w, &|ed, ci| {
        crate::inject::env_var::compose_list(
            ed,
            ci,
            "LD_LIBRARY_PATH",
            ListRule::PathAppend(LD_LIBRARY_PATH),
        )
    })
}
