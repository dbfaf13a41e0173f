//! `spec.config` as the Operator stores it: restricted to the collector
//! config's known sections and with the defaults its CR webhook writes
//! (`otelconfig.ApplyDefaults`): receiver and exporter endpoints on
//! `0.0.0.0:<default port>`, `health_check` on `0.0.0.0:13133` with path `/`,
//! and a Prometheus reader for the collector's own metrics on 8888.
//!
//! Applied to every collector we read, so the sidecar is the same whether or
//! not the Operator's webhook defaulted the object; on a defaulted config it
//! changes nothing.

use serde_json::{Map, Value, json};

/// One protocol of a receiver: `(protocol, default port, k8s protocol)`.
pub type Protocol = (&'static str, i32, &'static str);

/// Receivers with one endpoint per protocol: `(type, protocols)`.
pub const MULTI_PROTOCOL: [(&str, &[Protocol]); 4] = [
    ("otlp", &[("grpc", 4317, ""), ("http", 4318, "")]),
    (
        "jaeger",
        &[
            ("grpc", 14250, "TCP"),
            ("thrift_http", 14268, "TCP"),
            ("thrift_compact", 6831, "UDP"),
            ("thrift_binary", 6832, "UDP"),
        ],
    ),
    ("skywalking", &[("grpc", 11800, ""), ("http", 12800, "")]),
    ("loki", &[("grpc", 9095, ""), ("http", 3100, "")]),
];

/// Receivers with one endpoint and a default port: `(type, port, k8s protocol)`.
pub const SINGLE_PORT: [(&str, i32, &str); 12] = [
    ("awsxray", 2000, "UDP"),
    ("carbon", 2003, ""),
    ("collectd", 8081, ""),
    ("fluent_forward", 8006, ""),
    ("fluentforward", 8006, ""),
    ("influxdb", 8086, ""),
    ("sapm", 7276, ""),
    ("signalfx", 9943, ""),
    ("splunk_hec", 8088, ""),
    ("statsd", 8125, "UDP"),
    ("wavefront", 2003, ""),
    ("zipkin", 9411, "TCP"),
];

pub const HEALTH_CHECK_PORT: i32 = 13133;
pub const METRICS_PORT: i32 = 8888;
const DEFAULT_ADDR: &str = "0.0.0.0";

/// A component's type: its name up to the first `/` (`otlp/internal` → `otlp`).
pub fn component_type(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// The config as an object with the known sections only, then defaulted.
pub fn normalize(config: &Value) -> Value {
    let parsed = match config {
        Value::String(text) => serde_yaml_ng::from_str::<Value>(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let mut out = restrict(&parsed);
    apply_defaults(&mut out);
    out
}

/// The Operator's typed `Config`: unknown keys are dropped, and `receivers`,
/// `exporters` and `service.pipelines` are always present.
fn restrict(v: &Value) -> Value {
    let mut out = Map::new();
    for key in ["receivers", "exporters"] {
        out.insert(key.into(), object_or_empty(v.get(key)));
    }
    for key in ["processors", "connectors", "extensions"] {
        if let Some(x) = v.get(key).filter(|x| !x.is_null()) {
            out.insert(key.into(), x.clone());
        }
    }
    let svc = v.get("service");
    let mut service = Map::new();
    if let Some(x) = svc
        .and_then(|s| s.get("extensions"))
        .filter(|x| !x.is_null())
    {
        service.insert("extensions".into(), x.clone());
    }
    if let Some(x) = svc
        .and_then(|s| s.get("telemetry"))
        .filter(|x| !x.is_null())
    {
        service.insert("telemetry".into(), x.clone());
    }
    let mut pipelines = Map::new();
    if let Some(Value::Object(ps)) = svc.and_then(|s| s.get("pipelines")) {
        for (name, p) in ps {
            let mut pipe = Map::new();
            for key in ["exporters", "processors", "receivers"] {
                if let Some(x) = p.get(key).filter(|x| !x.is_null()) {
                    pipe.insert(key.into(), x.clone());
                }
            }
            pipelines.insert(name.clone(), Value::Object(pipe));
        }
    }
    service.insert("pipelines".into(), Value::Object(pipelines));
    out.insert("service".into(), Value::Object(service));
    Value::Object(out)
}

fn object_or_empty(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => json!({}),
    }
}

/// Names listed in any pipeline's `receivers` or `exporters`, in first-seen order.
pub fn enabled(config: &Value, kind: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(Value::Object(ps)) = config.pointer("/service/pipelines") {
        for p in ps.values() {
            for n in p.get(kind).and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = n.as_str()
                    && !out.iter().any(|o| o == n)
                {
                    out.push(n.to_string());
                }
            }
        }
    }
    out
}

/// Extensions listed in `service.extensions`.
pub fn enabled_extensions(config: &Value) -> Vec<String> {
    config
        .pointer("/service/extensions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// The Operator's `AddressDefaulter`: an empty endpoint, or one without a
/// host, gets `0.0.0.0` and the port.
pub fn default_address(endpoint: Option<&str>, port: i32) -> String {
    match endpoint.filter(|e| !e.is_empty()) {
        None => format!("{DEFAULT_ADDR}:{port}"),
        Some(e) => {
            let parts: Vec<&str> = e.split(':').collect();
            if parts.len() < 2 || parts[0].is_empty() {
                format!("{DEFAULT_ADDR}:{}", parts[parts.len() - 1])
            } else {
                e.to_string()
            }
        }
    }
}

fn apply_defaults(config: &mut Value) {
    default_telemetry(config);
    for name in enabled(config, "receivers") {
        let ty = component_type(&name).to_string();
        let Some(receivers) = config.get_mut("receivers").and_then(Value::as_object_mut) else {
            continue;
        };
        let entry = receivers.entry(name.clone()).or_insert(Value::Null);
        if let Some((_, protocols)) = MULTI_PROTOCOL.iter().find(|(t, _)| *t == ty) {
            if !entry.is_object() {
                *entry = json!({"protocols": {}});
            }
            if let Some(Value::Object(ps)) = entry.get_mut("protocols") {
                for (p, cfg) in ps.iter_mut() {
                    let Some((_, port, _)) = protocols.iter().find(|(n, _, _)| n == p) else {
                        continue;
                    };
                    set_endpoint(cfg, *port);
                }
            }
        } else if let Some((_, port, _)) = SINGLE_PORT.iter().find(|(t, _, _)| *t == ty) {
            set_endpoint(entry, *port);
        }
    }
    for name in enabled(config, "exporters") {
        if component_type(&name) != "prometheus" {
            continue;
        }
        if let Some(e) = config
            .get_mut("exporters")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.get_mut(&name))
        {
            set_endpoint(e, METRICS_PORT);
        }
    }
    if config.get("extensions").is_none() {
        return;
    }
    for name in enabled_extensions(config) {
        let ty = component_type(&name).to_string();
        let Some(exts) = config.get_mut("extensions").and_then(Value::as_object_mut) else {
            continue;
        };
        let entry = exts.entry(name.clone()).or_insert(Value::Null);
        match ty.as_str() {
            "health_check" => {
                if !entry.is_object() {
                    *entry = json!({});
                }
                let endpoint = entry
                    .get("endpoint")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let fixed = match endpoint.as_deref() {
                    None | Some("") => format!("{DEFAULT_ADDR}:{HEALTH_CHECK_PORT}"),
                    Some(e) => match e.rsplit_once(':') {
                        Some(("", port)) => format!("{DEFAULT_ADDR}:{port}"),
                        _ => e.to_string(),
                    },
                };
                entry["endpoint"] = Value::String(fixed);
                if entry
                    .get("path")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    entry["path"] = Value::String("/".into());
                }
            }
            "jaeger_query" => {
                if !entry.is_object() {
                    *entry = json!({});
                }
                if !entry.get("http").is_some_and(Value::is_object) {
                    entry["http"] = json!({});
                }
                let ep = entry["http"]
                    .get("endpoint")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                entry["http"]["endpoint"] = Value::String(default_address(ep.as_deref(), 16686));
            }
            _ => {}
        }
    }
}

fn set_endpoint(cfg: &mut Value, port: i32) {
    if !cfg.is_object() {
        *cfg = json!({});
    }
    let current = cfg
        .get("endpoint")
        .and_then(Value::as_str)
        .map(str::to_string);
    cfg["endpoint"] = Value::String(default_address(current.as_deref(), port));
}

/// `service.telemetry.metrics`: a pull reader on `0.0.0.0:8888` unless an
/// address or a reader is set; existing keys win.
fn default_telemetry(config: &mut Value) {
    let Some(service) = config.get_mut("service").and_then(Value::as_object_mut) else {
        return;
    };
    let telemetry = service.entry("telemetry").or_insert_with(|| json!({}));
    if !telemetry.is_object() {
        *telemetry = json!({});
    }
    let metrics = telemetry.get("metrics");
    let has_address = metrics
        .and_then(|m| m.get("address"))
        .and_then(Value::as_str)
        .is_some_and(|a| !a.is_empty());
    let has_readers = metrics
        .and_then(|m| m.get("readers"))
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    if has_address || has_readers {
        return;
    }
    let default = json!({"metrics": {"readers": [{"pull": {"exporter": {"prometheus": {
        "host": DEFAULT_ADDR, "port": METRICS_PORT}}}}]}});
    merge_missing(telemetry, &default);
}

/// Adds what `dst` lacks from `src`, recursively; `dst`'s values win.
fn merge_missing(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(existing) if !existing.is_null() => merge_missing(existing, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d @ Value::Array(_), s @ Value::Array(_)) if d.as_array().is_some_and(Vec::is_empty) => {
            *d = s.clone();
        }
        _ => {}
    }
}
