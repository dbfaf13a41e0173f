//! `OTEL_CONFIG`: the collector config rendered as the Operator renders it
//! (its `Config.Yaml()`, goccy/go-yaml with indented sequences), so the
//! sidecar's env is byte for byte the Operator's.
//!
//! Hand-written: no YAML crate writes this dialect (sequence indentation
//! under their key, Go's float formatting of numbers, goccy's quoting rules),
//! and a generic writer would change the value on every library update.
//!
//! Order: the top level in the Operator's struct order (`receivers`,
//! `exporters`, `processors`, `connectors`, `extensions`, `service`), then
//! `service.extensions`, `telemetry`, `pipelines`, and in each pipeline
//! `exporters`, `processors`, `receivers`; every other map sorted by key.

use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

const TOP: [&str; 6] = [
    "receivers",
    "exporters",
    "processors",
    "connectors",
    "extensions",
    "service",
];

/// The config as the Operator's `OTEL_CONFIG` value, ending in one newline.
pub fn render(config: &Value) -> String {
    let mut out = String::new();
    for key in TOP {
        let Some(v) = config.get(key) else { continue };
        if key == "service" {
            write_key(&mut out, 0, key);
            out.push('\n');
            render_service(&mut out, v);
        } else {
            entry(&mut out, 0, key, v);
        }
    }
    out
}

fn render_service(out: &mut String, service: &Value) {
    if let Some(ext) = service
        .get("extensions")
        .filter(|e| e.as_array().is_some_and(|a| !a.is_empty()))
    {
        entry(out, 2, "extensions", ext);
    }
    if let Some(t) = service.get("telemetry") {
        entry(out, 2, "telemetry", t);
    }
    let pipelines = service.get("pipelines").cloned().unwrap_or(Value::Null);
    match pipelines.as_object().filter(|p| !p.is_empty()) {
        None => {
            out.push_str("  pipelines: {}\n");
        }
        Some(ps) => {
            out.push_str("  pipelines:\n");
            let mut names: Vec<&String> = ps.keys().collect();
            names.sort();
            for name in names {
                let p = &ps[name.as_str()];
                write_key(out, 4, name);
                out.push('\n');
                for key in ["exporters", "processors", "receivers"] {
                    match p.get(key) {
                        Some(v)
                            if key == "processors" && v.as_array().is_none_or(Vec::is_empty) => {}
                        Some(v) => entry(out, 6, key, v),
                        None if key != "processors" => {
                            let _ = writeln!(out, "      {key}: []");
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

fn pad(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn write_key(out: &mut String, indent: usize, key: &str) {
    pad(out, indent);
    out.push_str(&scalar_str(key));
    out.push(':');
}

/// `key: value` at `indent`, nested values below it.
fn entry(out: &mut String, indent: usize, key: &str, v: &Value) {
    write_key(out, indent, key);
    value_after_key(out, indent, v);
}

/// What follows `key:` (or `- ` for list items handled elsewhere).
fn value_after_key(out: &mut String, indent: usize, v: &Value) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Array(a) if a.is_empty() => out.push_str(" []\n"),
        Value::Object(_) => {
            out.push('\n');
            map_body(out, indent + 2, v);
        }
        Value::Array(a) => {
            out.push('\n');
            for item in a {
                list_item(out, indent + 2, item);
            }
        }
        Value::String(s) if s.contains('\n') => {
            block(out, indent + 2, s);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn sorted(v: &Value) -> Vec<(&String, &Value)> {
    let mut kv: Vec<(&String, &Value)> = v.as_object().into_iter().flatten().collect();
    kv.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    kv
}

fn map_body(out: &mut String, indent: usize, v: &Value) {
    for (k, val) in sorted(v) {
        entry(out, indent, k, val);
    }
}

/// `- item` at `indent`; a map's first key shares the dash's line.
fn list_item(out: &mut String, indent: usize, item: &Value) {
    pad(out, indent);
    out.push_str("- ");
    match item {
        Value::Object(m) if !m.is_empty() => {
            for (i, (k, val)) in sorted(item).into_iter().enumerate() {
                if i == 0 {
                    out.push_str(&scalar_str(k));
                    out.push(':');
                    value_after_key(out, indent + 2, val);
                } else {
                    entry(out, indent + 2, k, val);
                }
            }
        }
        Value::Object(_) => out.push_str("{}\n"),
        Value::Array(a) if a.is_empty() => out.push_str("[]\n"),
        Value::Array(a) => {
            out.push('\n');
            for x in a {
                list_item(out, indent + 2, x);
            }
        }
        Value::String(s) if s.contains('\n') => {
            out.pop();
            block(out, indent + 2, s);
        }
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// A multi-line string as a literal block: `|` keeps one final newline, `|-` none.
fn block(out: &mut String, indent: usize, s: &str) {
    let (header, body) = match s.strip_suffix('\n') {
        Some(b) => (" |", b),
        None => (" |-", s),
    };
    out.push_str(header);
    out.push('\n');
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => scalar_str(s),
        _ => String::new(),
    }
}

/// Numbers as Go prints a float64 with `%g`-shortest: the Operator reads the
/// config through JSON into `float64`, so 1000000 prints as `1e+06`.
pub fn number(n: &serde_json::Number) -> String {
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        return "0".into();
    }
    let sci = format!("{:e}", f); // shortest digits, e.g. "1.5e6", "1e-5"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    format!("{f}")
}

// Literal patterns: `ok()` only to keep a panic off the request path.
static NUMBER_LIKE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^[-+]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|\.[0-9_]+([eE][-+]?[0-9]+)?)$",
    )
    .ok()
});

static TIMESTAMP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[-+]\d{2}:\d{2})| \d{2}:\d{2}:\d{2})?|\d{1,2}:\d{1,2})$",
    )
    .ok()
});

const RESERVED: [&str; 31] = [
    "null", "Null", "NULL", "~", "true", "True", "TRUE", "false", "False", "FALSE", "y", "Y",
    "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "-",
    "", "<<", ".inf", ".nan",
];

/// goccy's `IsNeedQuoted`, as far as collector configs reach.
pub fn needs_quote(s: &str) -> bool {
    let matches = |re: &Option<Regex>| re.as_ref().is_some_and(|r| r.is_match(s));
    if RESERVED.contains(&s) || matches(&NUMBER_LIKE) || matches(&TIMESTAMP) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "*&[{}],!|>%'\"@ `".contains(first) {
        return true;
    }
    s.ends_with(':')
        || s.ends_with(' ')
        || s.contains('#')
        || s.contains('\\')
        || s.contains(": ")
        || s.contains("- ")
        || s.contains('\t')
}

fn scalar_str(s: &str) -> String {
    if needs_quote(s) {
        go_quote(s)
    } else {
        s.to_string()
    }
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smoke_sidecar_config_renders_as_the_operator() {
        let cfg = crate::otelcol::defaults::normalize(&json!({
            "receivers": {"jaeger": {"protocols": {"grpc": {}}}},
            "processors": {},
            "exporters": {"debug": {}},
            "service": {"pipelines": {"traces": {"receivers": ["jaeger"], "exporters": ["debug"]}}}
        }));
        assert_eq!(
            render(&cfg),
            "receivers:\n  jaeger:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:14250\nexporters:\n  debug: {}\nprocessors: {}\nservice:\n  telemetry:\n    metrics:\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: 0.0.0.0\n                port: 8888\n  pipelines:\n    traces:\n      exporters:\n        - debug\n      receivers:\n        - jaeger\n"
        );
    }

    #[test]
    fn a_v1alpha1_string_config_parses_and_defaults_like_v1beta1() {
        let text = "receivers:\n  otlp:\n    protocols:\n      grpc:\n      http:\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n";
        let cfg = crate::otelcol::defaults::normalize(&json!(text));
        let r = render(&cfg);
        assert!(r.starts_with("receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317\n      http:\n        endpoint: 0.0.0.0:4318\nexporters:\n  debug: null\n"), "{r}");
        // A string that does not parse is the Operator's empty config.
        let empty = crate::otelcol::defaults::normalize(&json!("{{not yaml"));
        assert!(render(&empty).starts_with("receivers: {}\nexporters: {}\nservice:\n"));
    }

    #[test]
    fn scalars_follow_go_and_goccy() {
        for (v, want) in [
            (json!(8888), "8888"),
            (json!(1000000), "1e+06"),
            (json!(1500000), "1.5e+06"),
            (json!(0.5), "0.5"),
            (json!(0.00001), "1e-05"),
            (json!("0.0.0.0:4317"), "0.0.0.0:4317"),
            (json!("${env:MY_POD_IP}:4317"), "${env:MY_POD_IP}:4317"),
            (json!("4317"), "\"4317\""),
            (json!("yes"), "\"yes\""),
            (json!("10:30"), "\"10:30\""),
            (json!("%Y-%m-%d"), "\"%Y-%m-%d\""),
            (json!("a\\d"), "\"a\\\\d\""),
            (json!(""), "\"\""),
        ] {
            assert_eq!(scalar(&v), want, "{v}");
        }
    }
}
