//! The config reference (`docs/CONFIG.md`) and the example config
//! (`examples/config.yaml`) against the types of `crates/core/src/config.rs` (issue 28:
//! the repository explains itself). A key added to the config without an
//! entry in the reference, a documented key that no longer exists, an
//! example that stops loading, and a README link that leaves the
//! repository all fail here.
//!
//! The set of keys is derived, never listed by hand, from two sources:
//! - serde's own field names at each level (`config::known_fields`, which
//!   the "did you mean" suggestions use too), so a key whose value is unset
//!   (an `Option` left `None`) is still found;
//! - a config with every key set, serialized to JSON and walked. Its
//!   struct literals below name every field with no `..Default::default()`,
//!   so a new field does not compile here until it is given a value, and
//!   then it is serialized, walked and looked up in the reference.
//!
//! Where the config holds a type it does not own (the Instrumentation spec
//! under `defaults`, Kubernetes label selectors and resources), the
//! reference names the key and refers to the type: the walk stops there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, SecurityContext};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use otel_admission::config::{
    ClusterMode, CollectorConfigSource, Config, Defaults, Enforcement, FailureMode,
    LanguageSwitches, NativeSidecar, PoliciesConfig, ProbesConfig, RolloutConfig, RolloutMode,
    Rule, RuleInject, ServerConfig, SidecarConfig, SyncKind, known_fields,
};
use otel_admission::instrumentation::{
    ApacheHttpd, Exporter, Go, InstrumentationSpec, Java, LanguageSpec, Nginx, Propagator,
    Resource, Sampler,
};
use otel_admission::language::LanguageChoice;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Keys whose value is a type documented by reference: the key is listed,
/// what is inside it is not walked.
fn by_reference(path: &str) -> bool {
    path.strip_prefix("defaults.")
        .is_some_and(|rest| !rest.is_empty())
        || matches!(
            path,
            "rules[].namespaceSelector"
                | "rules[].podSelector"
                | "rollout.namespaceSelector"
                | "sidecar.resources"
        )
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Every key set, every `Option` `Some`, every list non-empty. No
/// `..Default::default()` on a config type: see the module comment.
fn populated() -> Config {
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([("team".into(), "payments".into())])),
        match_expressions: None,
    };
    let env = vec![EnvVar {
        name: "OTEL_METRICS_EXPORTER".into(),
        value: Some("otlp".into()),
        value_from: None,
    }];
    let language = LanguageSpec {
        image: Some("registry.example/agent:1".into()),
        ..Default::default()
    };
    let spec = InstrumentationSpec {
        exporter: Some(Exporter {
            endpoint: Some("http://collector:4318".into()),
            tls: None,
        }),
        propagators: vec![Propagator::Tracecontext],
        sampler: Some(Sampler::default()),
        resource: Some(Resource::default()),
        env: env.clone(),
        defaults: Some(Default::default()),
        image_pull_policy: Some("IfNotPresent".into()),
        init_container_security_context: Some(SecurityContext::default()),
        java: Some(Java::default()),
        nodejs: Some(language.clone()),
        php: Some(language.clone()),
        python: Some(language.clone()),
        ruby: Some(language.clone()),
        dotnet: Some(language),
        go: Some(Go::default()),
        apache_httpd: Some(ApacheHttpd::default()),
        nginx: Some(Nginx::default()),
    };
    Config {
        defaults: Defaults::new(spec),
        rules: vec![Rule {
            name: "r".into(),
            namespace_selector: Some(selector.clone()),
            pod_selector: Some(selector.clone()),
            inject: RuleInject {
                languages: vec![LanguageChoice::Python],
                sidecar: true,
                probes: true,
                annotations: true,
            },
            instrumentation: Some("monitoring/python".into()),
        }],
        languages: LanguageSwitches {
            java: true,
            nodejs: true,
            python: true,
            dotnet: true,
            go: true,
            apache_httpd: true,
            nginx: true,
            php: true,
            ruby: true,
        },
        multi_instrumentation: false,
        sidecar: SidecarConfig {
            defined: true,
            image: "otel/col:1".into(),
            config: Some(CollectorConfigSource {
                config_map: Some("otel-sidecar".into()),
                inline: Some("receivers: {}".into()),
            }),
            native: NativeSidecar::On,
            gateway: "gateway:4317".into(),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".into(),
                    Quantity("256Mi".into()),
                )])),
                ..Default::default()
            }),
        },
        probes: ProbesConfig {
            port: IntOrString::Int(8081),
            startup: "/s".into(),
            liveness: "/l".into(),
            readiness: "/r".into(),
            initial_delay_seconds: 1,
            period_seconds: 2,
            timeout_seconds: 3,
            failure_threshold: 4,
            startup_failure_threshold: 5,
        },
        excluded_namespaces: vec!["kube-system".into()],
        skip_containers: vec!["vault-agent".into()],
        failure_mode: FailureMode::Deny,
        policies: PoliciesConfig {
            dir: "policies".into(),
            eval_timeout: Duration::from_secs(1),
            enforcement: Enforcement::Enforce,
            memory_limit: 128 << 20,
            sync: vec![SyncKind {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
            }],
        },
        rollout: RolloutConfig {
            enabled: true,
            mode: RolloutMode::Report,
            rate_limit: "1/m".into(),
            max_concurrent: 2,
            namespace_selector: Some(selector),
            lease_duration: Duration::from_secs(30),
        },
        server: ServerConfig {
            listen: Some("0.0.0.0:8443".parse().expect("addr")),
            admin_listen: Some("0.0.0.0:8080".parse().expect("addr")),
            tls_cert: Some("/tls/tls.crt".into()),
            tls_key: Some("/tls/tls.key".into()),
            cluster: Some(ClusterMode::Off),
            namespace: Some("otel-admission".into()),
            body_limit_bytes: Some(1 << 20),
            header_read_timeout: Some(Duration::from_secs(5)),
            request_timeout: Some(Duration::from_secs(4)),
            shutdown_delay: Some(Duration::from_secs(1)),
            shutdown_grace: Some(Duration::from_secs(2)),
        },
    }
}

/// Collects the dotted paths of a serialized config (`rules[].inject.probes`).
fn walk(value: &serde_json::Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let p = join(path, key);
                if !by_reference(&p) {
                    walk(child, &p, out);
                }
                out.insert(p);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                walk(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// The same from serde's field names, level by level.
fn from_known_fields(path: &str, out: &mut BTreeSet<String>) {
    for field in known_fields(path) {
        let p = join(path, field);
        if !by_reference(&p) {
            from_known_fields(&p, out);
            from_known_fields(&format!("{p}[]"), out);
        }
        out.insert(p);
    }
}

/// Every key of the config file, as the reference writes it.
fn config_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for config in [Config::default(), populated()] {
        let json = serde_json::to_value(&config).expect("serialize");
        walk(&json, "", &mut keys);
    }
    from_known_fields("", &mut keys);
    keys
}

/// The keys `docs/CONFIG.md` has a row for, in the tables whose header
/// starts `| key |`: each row starts `` | `key` | ``.
fn documented_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut in_key_table = false;
    for line in read("docs/CONFIG.md").lines() {
        if line.starts_with("| key |") {
            in_key_table = true;
        } else if !line.starts_with('|') {
            in_key_table = false;
        } else if in_key_table
            && let Some((key, _)) = line.strip_prefix("| `").and_then(|l| l.split_once("` |"))
        {
            keys.insert(key.to_owned());
        }
    }
    keys
}

#[test]
fn every_config_key_has_an_entry_in_the_reference() {
    let keys = config_keys();
    assert!(keys.len() > 60, "the walk found too little: {keys:?}");
    let documented = documented_keys();
    let missing: Vec<&String> = keys.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys of crates/core/src/config.rs with no row in docs/CONFIG.md (a row starts | `key` |): {missing:?}"
    );
}

#[test]
fn the_reference_documents_no_key_that_does_not_exist() {
    let keys = config_keys();
    let stale: Vec<String> = documented_keys()
        .into_iter()
        .filter(|k| !keys.contains(k))
        .collect();
    assert!(
        stale.is_empty(),
        "rows of docs/CONFIG.md that are no key of the config: {stale:?}"
    );
}

/// Every struct of the config has serde's field names in `known_fields`,
/// and they are the keys it serializes: an unknown key anywhere gets its
/// "did you mean" suggestion, and the reference derivation above sees
/// every level.
#[test]
fn every_level_of_the_config_knows_its_keys() {
    fn check(value: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                let known = known_fields(path);
                for (key, child) in map {
                    if !known.contains(&key.as_str()) {
                        bad.push(format!("{path}: `{key}` not in {known:?}"));
                    }
                    let p = join(path, key);
                    if !by_reference(&p) {
                        check(child, &p, bad);
                    } else if child.is_object() && known_fields(&p).is_empty() {
                        bad.push(format!("{p}: no known_fields entry"));
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    check(item, &format!("{path}[]"), bad);
                }
            }
            _ => {}
        }
    }
    let mut bad = Vec::new();
    check(
        &serde_json::to_value(populated()).expect("serialize"),
        "",
        &mut bad,
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

/// `examples/config.yaml` loads as `--config` would load it, sets every
/// top-level section, and names every key of the reference, set or in a
/// comment.
#[test]
fn the_example_config_loads_and_names_every_key() {
    let path = repo("examples/config.yaml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.sidecar.defined,
        "the example shows the sidecar section"
    );
    let text = read("examples/config.yaml");
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let sections: BTreeSet<&str> = value
        .as_mapping()
        .expect("mapping")
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    let all: BTreeSet<&str> = known_fields("").iter().copied().collect();
    assert_eq!(sections, all, "every section set in the example");
    let unnamed: Vec<String> = config_keys()
        .into_iter()
        .filter(|k| {
            let last = k.rsplit('.').next().unwrap_or(k).trim_end_matches("[]");
            !text.contains(&format!("{last}:"))
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "keys examples/config.yaml neither sets nor mentions: {unnamed:?}"
    );
}

/// The README and the reference point into the repository: no link to a
/// file outside it (the README named `../shared/SPEC.md`, absent from any
/// clone), every relative link resolves, and the README's config mentions
/// lead to docs/CONFIG.md.
#[test]
fn the_readme_and_the_reference_link_only_to_files_in_the_repository() {
    let root = repo("");
    let root = root.canonicalize().expect("root");
    for doc in ["README.md", "docs/CONFIG.md"] {
        let text = read(doc);
        let dir = repo(doc).parent().expect("dir").to_owned();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let target = &rest[..rest.find(')').expect("closing )")];
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap_or(target);
            let resolved = dir.join(file).canonicalize();
            assert!(
                resolved.as_ref().is_ok_and(|p| p.starts_with(&root)),
                "{doc}: link `{target}` does not resolve inside the repository"
            );
        }
    }
    let readme = read("README.md");
    assert!(!readme.contains("shared/SPEC.md"), "README links outside");
    assert!(
        readme.contains("](docs/CONFIG.md)"),
        "README links the config reference"
    );
}
