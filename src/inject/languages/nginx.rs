//! nginx: the OpenTelemetry webserver module, `load_module`d into a copy of
//! the app's config (operator `nginx.go`, `scripts/nginx_clone.sh` and
//! `scripts/nginx_agent.sh`; the scripts here do the same steps). It reuses
//! the apache-httpd image, as the operator does.
//!
//! Deviation: the operator's nginx volumes have no `sizeLimit`; ours get the
//! same 200Mi limit as every other agent volume.

use k8s_openapi::api::core::v1::Pod;

use super::{LangResult, WebServer, inject_webserver, resources, webserver_endpoint};
use crate::inject::apply::Editor;
use crate::inject::env::{self, ListRule, field_ref, plain};
use crate::inject::plan::{LanguagePlan, Plan};
use crate::inject::service_name;

/// The operator ships nginx's module in the apache-httpd image.
pub const DEFAULT_IMAGE: &str = super::apache_httpd::DEFAULT_IMAGE;
pub const ATTACH_CONTAINER: &str = "otel-agent-attach-nginx";
pub const CONF_VOLUME: &str = "otel-nginx-conf-dir";
pub const AGENT_VOLUME: &str = "otel-nginx-agent";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/nginx/nginx.conf";
pub const LD_LIBRARY_PATH: &str = "/opt/opentelemetry-webserver/agent/sdk_lib/lib";

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
        .unwrap_or_else(|| DEFAULT_CONFIG_FILE.into());
    let (conf_dir, conf_name) = match config_file.rsplit_once('/') {
        Some((d, f)) if !d.is_empty() => (d.to_string(), f.to_string()),
        _ => ("/etc/nginx".to_string(), "nginx.conf".to_string()),
    };
    let endpoint = webserver_endpoint(spec, plan, lp.language, warnings);
    let app = lp
        .containers
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let mut conf = format!(
        "NginxModuleEnabled ON;\n\
         NginxModuleOtelSpanExporter otlp;\n\
         NginxModuleOtelExporterEndpoint {endpoint};\n\
         NginxModuleServiceName {};\n\
         NginxModuleServiceNamespace {};\n\
         NginxModuleServiceInstanceId <<SID-PLACEHOLDER>>;\n\
         NginxModuleResolveBackends ON;\n\
         NginxModuleTraceAsError ON;\n",
        service_name::service_name(pod, plan.owner.as_ref(), app),
        plan.namespace,
    );
    for attr in n.map(|n| n.attrs.as_slice()).unwrap_or_default() {
        conf.push_str(&format!(
            "{} {};\n",
            attr.name,
            attr.value.as_deref().unwrap_or_default()
        ));
    }
    let src = super::WEBSERVER_SOURCE_CONF_DIR;
    let agent = super::WEBSERVER_AGENT_DIR;
    let clone_script = format!(
        "cp -r {conf_dir}/. {src} && NGINX_VERSION=$( {{ nginx -v ; }} 2>&1 ) && echo ${{NGINX_VERSION##*/}} > {src}/version.txt"
    );
    let script = format!(
        "echo \"$OTEL_NGINX_AGENT_CONF\" > {src}/opentelemetry_agent.conf && \
         sed -i \"s,<<SID-PLACEHOLDER>>,${{OTEL_NGINX_SERVICE_INSTANCE_ID}},g\" {src}/opentelemetry_agent.conf && \
         cp -r /opt/opentelemetry/* {agent} && \
         NGINX_VERSION=$(cat {src}/version.txt) && \
         sed -i \"1s,^,load_module {agent}/WebServerModule/Nginx/${{NGINX_VERSION}}/ngx_http_opentelemetry_module.so;\\n,g\" {src}/{conf_name} && \
         sed -i \"1s,^,env OTEL_RESOURCE_ATTRIBUTES;\\n,g\" {src}/{conf_name} && \
         mkdir -p {src}/conf.d && mv {src}/opentelemetry_agent.conf {src}/conf.d"
    );
    let w = WebServer {
        attach_name: ATTACH_CONTAINER,
        conf_volume: CONF_VOLUME,
        agent_volume: AGENT_VOLUME,
        conf_dir,
        clone_script,
        image: n
            .and_then(|n| n.image.clone())
            .unwrap_or_else(|| DEFAULT_IMAGE.into()),
        script,
        attach_env: vec![
            plain("OTEL_NGINX_AGENT_CONF", conf),
            field_ref("OTEL_NGINX_SERVICE_INSTANCE_ID", "metadata.name"),
        ],
        size: n.and_then(|n| n.volume_limit_size.as_ref()),
        resources: resources(
            n.and_then(|n| n.resource_requirements.as_ref()),
            ("500m", "256Mi"),
            ("1m", "128Mi"),
        ),
    };
    inject_webserver(ed, pod, plan, lp, warnings, w, &|ed, ci| {
        env::compose_list(
            ed,
            ci,
            "LD_LIBRARY_PATH",
            ListRule::PathAppend(LD_LIBRARY_PATH),
        )
    })
}
