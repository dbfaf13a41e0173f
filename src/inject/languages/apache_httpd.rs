//! Apache httpd: the OpenTelemetry webserver module, loaded through an
//! `Include` appended to a copy of the app's config (operator `apachehttpd.go`
//! and `scripts/apache_httpd_agent.sh`; the script here does the same steps).

use k8s_openapi::api::core::v1::Pod;

use super::{LangResult, WebServer, inject_webserver, resources, webserver_endpoint};
use crate::inject::apply::Editor;
use crate::inject::env::{field_ref, plain};
use crate::inject::plan::{LanguagePlan, Plan};
use crate::inject::service_name;

pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-apache-httpd:1.0.4";
pub const ATTACH_CONTAINER: &str = "otel-agent-attach-apache";
pub const CONF_VOLUME: &str = "otel-apache-conf-dir";
pub const AGENT_VOLUME: &str = "otel-apache-agent";
pub const DEFAULT_CONF_DIR: &str = "/usr/local/apache2/conf";
/// Sic: the operator's file name.
pub const AGENT_CONF_FILE: &str = "opentemetry_agent.conf";

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
        .and_then(|a| a.config_path.clone())
        .unwrap_or_else(|| DEFAULT_CONF_DIR.into());
    let module = if a.and_then(|a| a.version.as_deref()) == Some("2.2") {
        "libmod_apache_otel22.so"
    } else {
        "libmod_apache_otel.so"
    };
    let endpoint = webserver_endpoint(spec, plan, lp.language, warnings);
    let app = lp
        .containers
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let lib = "/opt/opentelemetry-webserver/agent/sdk_lib/lib";
    let mut conf = String::from("#Load the Otel Webserver SDK\n");
    for so in [
        "libopentelemetry_common.so",
        "libopentelemetry_resources.so",
        "libopentelemetry_trace.so",
        "libopentelemetry_otlp_recordable.so",
        "libopentelemetry_exporter_ostream_span.so",
        "libopentelemetry_exporter_otlp_grpc.so",
        "libopentelemetry_webserver_sdk.so",
    ] {
        conf.push_str(&format!("LoadFile {lib}/{so}\n"));
    }
    conf.push_str(&format!(
        "LoadModule otel_apache_module /opt/opentelemetry-webserver/agent/WebServerModule/Apache/{module}\n\
         ApacheModuleEnabled ON\n\
         ApacheModuleOtelSpanExporter otlp\n\
         ApacheModuleOtelExporterEndpoint {endpoint}\n\
         ApacheModuleServiceName {}\n\
         ApacheModuleServiceNamespace {}\n\
         ApacheModuleServiceInstanceId <<SID-PLACEHOLDER>>\n\
         ApacheModuleResolveBackends ON\n\
         ApacheModuleTraceAsError ON\n",
        service_name::service_name(pod, plan.owner.as_ref(), app),
        plan.namespace,
    ));
    for attr in a.map(|a| a.attrs.as_slice()).unwrap_or_default() {
        conf.push_str(&format!(
            "{} {}\n",
            attr.name,
            attr.value.as_deref().unwrap_or_default()
        ));
    }
    let src = super::WEBSERVER_SOURCE_CONF_DIR;
    let script = format!(
        "cp -r /opt/opentelemetry/* {agent} && \
         agentLogDir=$(echo \"{agent}/logs\" | sed 's,/,\\\\/,g') && \
         cat {agent}/conf/opentelemetry_sdk_log4cxx.xml.template | sed 's/__agent_log_dir__/'${{agentLogDir}}'/g' > {agent}/conf/opentelemetry_sdk_log4cxx.xml && \
         echo \"$OTEL_APACHE_AGENT_CONF\" > {src}/{AGENT_CONF_FILE} && \
         sed -i 's/<<SID-PLACEHOLDER>>/'${{APACHE_SERVICE_INSTANCE_ID}}'/g' {src}/{AGENT_CONF_FILE} && \
         echo 'Include {conf_dir}/{AGENT_CONF_FILE}' >> {src}/httpd.conf",
        agent = super::WEBSERVER_AGENT_DIR,
    );
    let w = WebServer {
        attach_name: ATTACH_CONTAINER,
        conf_volume: CONF_VOLUME,
        agent_volume: AGENT_VOLUME,
        clone_script: format!("cp -r {conf_dir}/. {src}"),
        conf_dir,
        image: a
            .and_then(|a| a.image.clone())
            .unwrap_or_else(|| DEFAULT_IMAGE.into()),
        script,
        attach_env: vec![
            plain("OTEL_APACHE_AGENT_CONF", conf),
            field_ref("APACHE_SERVICE_INSTANCE_ID", "metadata.name"),
        ],
        size: a.and_then(|a| a.volume_limit_size.as_ref()),
        resources: resources(
            a.and_then(|a| a.resource_requirements.as_ref()),
            ("500m", "256Mi"),
            ("1m", "128Mi"),
        ),
    };
    inject_webserver(ed, pod, plan, lp, warnings, w, &|_, _| Ok(()))
}
