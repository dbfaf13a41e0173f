//! The sidecar's container ports, inferred from the enabled receivers,
//! exporters and extensions as the Operator infers them, plus `metrics` and
//! the CR's own `spec.ports`, sorted by name.

use k8s_openapi::api::core::v1::ContainerPort;
use serde_json::Value;

use crate::otelcol::CollectorPort;
use crate::otelcol::defaults::{
    HEALTH_CHECK_PORT, METRICS_PORT, MULTI_PROTOCOL, SINGLE_PORT, component_type, enabled,
    enabled_extensions,
};

/// The first `:<digits>` of an endpoint.
fn port_of(endpoint: Option<&str>) -> Option<i32> {
    let e = endpoint?;
    let mut rest = e;
    while let Some(i) = rest.find(':') {
        let digits: String = rest[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(p) = digits.parse::<i32>()
            && p > 0
        {
            return Some(p);
        }
        rest = &rest[i + 1..];
    }
    None
}

/// The Operator's `naming.PortName`: `/` and `_` become `-`; a name over
/// 15 characters, or one that is not a DNS label, becomes `port-<n>`.
pub fn port_name(name: &str, port: i32) -> String {
    if name.len() > 15 {
        return format!("port-{port}");
    }
    let n = name.replace(['/', '_'], "-");
    let ok = n.is_empty()
        || (n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.ends_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
    if ok { n } else { format!("port-{port}") }
}

/// IANA service names, as Kubernetes validates container port names.
fn valid_port_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && n.bytes().any(|b| b.is_ascii_lowercase())
        && !n.starts_with('-')
        && !n.ends_with('-')
        && !n.contains("--")
}

fn port(name: String, number: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name),
        container_port: number,
        protocol: (!protocol.is_empty()).then(|| protocol.to_string()),
        ..Default::default()
    }
}

/// The metrics port: the first Prometheus pull reader's, else 8888.
pub fn metrics_port(config: &Value) -> i32 {
    let readers = config
        .pointer("/service/telemetry/metrics/readers")
        .and_then(Value::as_array);
    for r in readers.into_iter().flatten() {
        if let Some(p) = r.pointer("/pull/exporter/prometheus") {
            return p
                .get("port")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(METRICS_PORT);
        }
    }
    METRICS_PORT
}

/// Every port, in the Operator's order (sorted by name).
pub fn container_ports(config: &Value, spec_ports: &[CollectorPort]) -> Vec<ContainerPort> {
    let mut inferred: Vec<ContainerPort> = Vec::new();
    for name in enabled(config, "receivers") {
        let ty = component_type(&name);
        let cfg = config.get("receivers").and_then(|r| r.get(&name));
        if let Some((_, protocols)) = MULTI_PROTOCOL.iter().find(|(t, _)| *t == ty) {
            let configured = cfg
                .and_then(|c| c.get("protocols"))
                .and_then(Value::as_object);
            for (p, pcfg) in configured.into_iter().flatten() {
                let Some((_, default, proto)) = protocols.iter().find(|(n, _, _)| n == p) else {
                    continue;
                };
                let number =
                    port_of(pcfg.get("endpoint").and_then(Value::as_str)).unwrap_or(*default);
                inferred.push(port(
                    port_name(&format!("{name}-{p}"), number),
                    number,
                    proto,
                ));
            }
        } else if let Some((_, default, proto)) = SINGLE_PORT.iter().find(|(t, _, _)| *t == ty) {
            let ep = cfg
                .and_then(|c| c.get("endpoint").or_else(|| c.get("listen_address")))
                .and_then(Value::as_str);
            let number = port_of(ep).unwrap_or(*default);
            inferred.push(port(port_name(&name, number), number, proto));
        } else if ty != "prometheus" && !ty.starts_with("k8s") && !ty.contains("kubelet") {
            let ep = cfg
                .and_then(|c| c.get("endpoint").or_else(|| c.get("listen_address")))
                .and_then(Value::as_str);
            if let Some(number) = port_of(ep) {
                let proto = match ty {
                    "tcp_log" => "TCP",
                    "udp_log" => "UDP",
                    _ => "",
                };
                inferred.push(port(port_name(&name, number), number, proto));
            }
        }
    }
    for name in enabled(config, "exporters") {
        if component_type(&name) != "prometheus" {
            continue;
        }
        let ep = config
            .get("exporters")
            .and_then(|e| e.get(&name))
            .and_then(|c| c.get("endpoint"))
            .and_then(Value::as_str);
        let number = port_of(ep).unwrap_or(METRICS_PORT);
        inferred.push(port(port_name(&name, number), number, ""));
    }
    if config.get("extensions").is_some() {
        for name in enabled_extensions(config) {
            if component_type(&name) != "health_check" {
                continue;
            }
            let ep = config
                .get("extensions")
                .and_then(|e| e.get(&name))
                .and_then(|c| c.get("endpoint"))
                .and_then(Value::as_str);
            let number = port_of(ep).unwrap_or(HEALTH_CHECK_PORT);
            inferred.push(port(port_name("health_check", number), number, ""));
        }
    }
    inferred.sort_by(|a, b| a.name.cmp(&b.name));
    let mut inferred: Vec<ContainerPort> = inferred
        .into_iter()
        .filter_map(|mut p| {
            let n = p.name.clone().unwrap_or_default();
            let n = if n.len() > 15 {
                n[..15].to_string()
            } else {
                n.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_string()
            };
            (valid_port_name(&n) && (1..=65535).contains(&p.container_port)).then(|| {
                p.name = Some(n);
                p
            })
        })
        .collect();
    inferred.push(port("metrics".into(), metrics_port(config), "TCP"));
    let mut out: Vec<ContainerPort> = Vec::new();
    for sp in spec_ports {
        let mut name = sp.name.clone().unwrap_or_default();
        if out.iter().any(|p| p.name.as_deref() == Some(name.as_str())) {
            name = format!("port-{}", sp.port);
            if out.iter().any(|p| p.name.as_deref() == Some(name.as_str())) {
                continue;
            }
        }
        out.push(ContainerPort {
            name: Some(name),
            container_port: sp.port,
            protocol: sp.protocol.clone(),
            host_port: sp.host_port,
            ..Default::default()
        });
    }
    let tcp = |p: &Option<String>| p.clone().unwrap_or_else(|| "TCP".into());
    let spec_count = out.len();
    for mut p in inferred {
        let taken = out[..spec_count]
            .iter()
            .any(|s| s.container_port == p.container_port && tcp(&s.protocol) == tcp(&p.protocol));
        if taken {
            continue;
        }
        if out.iter().any(|s| s.name == p.name) {
            let renamed = format!("port-{}", p.container_port);
            if out
                .iter()
                .any(|s| s.name.as_deref() == Some(renamed.as_str()))
            {
                continue;
            }
            p.name = Some(renamed);
        }
        out.push(p);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_operator() {
        assert_eq!(port_name("otlp-grpc", 4317), "otlp-grpc");
        assert_eq!(port_name("jaeger-thrift_http", 14268), "port-14268");
        assert_eq!(port_name("prometheus/dev", 8885), "prometheus-dev");
        assert_eq!(port_name("otlp/internal-grpc", 4317), "port-4317");
    }

    #[test]
    fn prometheus_exporters_and_otlp() {
        let cfg = crate::otelcol::defaults::normalize(&json!({
            "receivers": {"otlp": {"protocols": {"grpc": {}, "http": {}}}},
            "exporters": {"prometheus/prod": {"endpoint": "0.0.0.0:8884"}, "prometheus/dev": {"endpoint": "0.0.0.0:8885"}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["prometheus/dev", "prometheus/prod"]}}}
        }));
        let got: Vec<(String, i32, Option<String>)> = container_ports(&cfg, &[])
            .into_iter()
            .map(|p| (p.name.unwrap_or_default(), p.container_port, p.protocol))
            .collect();
        assert_eq!(
            got,
            vec![
                ("metrics".into(), 8888, Some("TCP".into())),
                ("otlp-grpc".into(), 4317, None),
                ("otlp-http".into(), 4318, None),
                ("prometheus-dev".into(), 8885, None),
                ("prometheus-prod".into(), 8884, None),
            ]
        );
    }

    #[test]
    fn a_spec_port_replaces_the_inferred_one_on_the_same_port() {
        let cfg = crate::otelcol::defaults::normalize(&json!({
            "receivers": {"filelog": {"include": ["/var/log/*.log"]}},
            "exporters": {"debug": {}},
            "service": {"pipelines": {"logs": {"receivers": ["filelog"], "exporters": ["debug"]}}}
        }));
        let spec = [CollectorPort {
            name: Some("metrics".into()),
            port: 8888,
            protocol: Some("TCP".into()),
            host_port: None,
        }];
        let got = container_ports(&cfg, &spec);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name.as_deref(), Some("metrics"));
    }
}
