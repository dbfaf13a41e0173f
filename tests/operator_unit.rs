//! The Operator's Go unit tests at whole-pod depth (issue 29).
//!
//! Each file in `tests/operator_unit/*.yaml` is one case of one of the
//! OpenTelemetry Operator's unit tests in `internal/instrumentation/`
//! (`podmutator_test.go`, `sdk_test.go`, the per-language tests): its inputs
//! (the Operator's config as ours, the Namespace, the Instrumentations, the
//! Pod exactly as the test hands it to the mutator) and the whole Pod the
//! Operator gives back, written by us from the Operator's code. Each case is
//! its own test (libtest-mimic), so a failure names the case.
//!
//! # Case format
//!
//! ```yaml
//! source: podmutator_test.go TestMutatePod "javaagent injection, true"
//! config: {languages: {go: true}}        # the Operator's config, as ours; absent = our defaults
//! namespace: {name: javaagent, labels: {}, annotations: {}}
//! instrumentations: [...]                # opentelemetry.io/v1alpha1; no namespace = the case's
//! pod: {...}                             # sent as is: no defaulting, no ServiceAccount plugin
//! expect: {...}                          # the whole Pod the Operator returns; absent = the pod as sent
//! warnings: ["substring", ...]           # each must be in some admission warning
//! differences:                           # what we do on purpose, each checked to still differ
//! - path: /spec/initContainers/0/securityContext   # JSON pointer into `expect`
//!   ours: {...}                          # our value there (or `remove: true`)
//!   why: the restricted securityContext (docs/INJECTION.md)
//! ```
//!
//! # What is checked
//!
//! The Pod goes through `/mutate` over TLS (the composition of the real
//! [`Injector`] and server), through the `inject` binary (`-o pod`), and
//! through the core; the three results must be the same Pod. That Pod, minus
//! our own status annotation and `otel-admission.io/injected` label, must
//! equal `expect` with `differences` applied: every field, lists in order,
//! nothing extra. Also: the patch applies, the result is a `k8s_openapi` Pod,
//! and sending it again changes nothing.
//!
//! `OPERATOR_UNIT_CASE=<substring>` or libtest's own filter runs some cases.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use libtest_mimic::{Arguments, Failed, Trial};
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::{NamespaceMeta, StaticView};
use otel_admission::inject::context::Context;
use otel_admission::inject::outcome::run;
use otel_admission::instrumentation::Instrumentation;
use otel_admission::metrics::Metrics;
use otel_admission::mutate::Injector;
use serde::Deserialize;
use serde_json::{Value, json};

const STATUS_ANNOTATION: &str = "otel-admission.io/status";
const INJECTED_LABEL: &str = "otel-admission.io/injected";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// The Go test file, function and case name.
    source: String,
    #[serde(default)]
    config: Option<Value>,
    namespace: NamespaceIn,
    #[serde(default)]
    instrumentations: Vec<Value>,
    pod: Value,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    differences: Vec<Difference>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceIn {
    name: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Difference {
    path: String,
    #[serde(default)]
    ours: Option<Value>,
    #[serde(default)]
    remove: bool,
    why: String,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/operator_unit")
}

fn load(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("not a valid case: {e}"))
}

fn main() {
    let args = Arguments::from_args();
    let filter = std::env::var("OPERATOR_UNIT_CASE").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/operator_unit exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in tests/operator_unit");
    let mut trials: Vec<Trial> = files
        .into_iter()
        .filter(|p| {
            filter
                .as_deref()
                .is_none_or(|f| p.to_string_lossy().contains(f))
        })
        .map(|path| {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            Trial::test(name, move || {
                let case =
                    load(&path).map_err(|e| Failed::from(format!("{}: {e}", path.display())))?;
                run_case(&case).map_err(|problems| {
                    Failed::from(format!("{}\n  {}", case.source, problems.join("\n  ")))
                })
            })
        })
        .collect();
    trials.extend(harness_self_tests());
    libtest_mimic::run(&args, trials).exit();
}

// === One case ===

struct Inputs {
    config: Config,
    view: StaticView,
}

fn inputs(case: &Case) -> Result<Inputs, Vec<String>> {
    let ns = &case.namespace.name;
    let config = match &case.config {
        None => Config::default(),
        Some(v) => {
            let text = serde_yaml_ng::to_string(v).expect("config to YAML");
            Config::from_yaml(&text, "case config").map_err(|e| vec![format!("config: {e}")])?
        }
    };
    let mut view = StaticView::new().with_namespace(
        ns.clone(),
        NamespaceMeta {
            labels: case.namespace.labels.clone(),
            annotations: case.namespace.annotations.clone(),
        },
    );
    for (i, inst) in case.instrumentations.iter().enumerate() {
        // As the server reads them: no `spec` is an empty one.
        let inst = Instrumentation::from_object(inst)
            .map_err(|e| vec![format!("instrumentations[{i}]: {e}")])?;
        view = view.with_instrumentation(inst, ns);
    }
    Ok(Inputs { config, view })
}

fn run_case(case: &Case) -> Result<(), Vec<String>> {
    let ns = case.namespace.name.as_str();
    let mut problems = Vec::new();

    // The core, as `/mutate` and `inject` call it.
    let Inputs { config, view } = inputs(case)?;
    let pod: Pod = serde_json::from_value(case.pod.clone())
        .map_err(|e| vec![format!("input is not a Pod: {e}")])?;
    let ctx = Context {
        namespace: ns,
        config: &config,
        view: &view,
        owner_hint: None,
        server_version: None,
    };
    let outcome = run(&pod, &ctx);
    let mut core = case.pod.clone();
    if let Some(patch) = outcome.patch() {
        let ops = patch
            .to_json_patch()
            .map_err(|e| vec![format!("patch: {e}")])?;
        if let Err(e) = json_patch::patch(&mut core, &ops.0) {
            return Err(vec![format!("the core's patch does not apply: {e}")]);
        }
    }
    match serde_json::from_value::<Pod>(core.clone()) {
        Err(e) => problems.push(format!("the mutated object is not a Pod: {e}")),
        Ok(mutated) => {
            if let Some(p) = run(&mutated, &ctx).patch().filter(|p| !p.is_empty()) {
                problems.push(format!(
                    "sending the mutated pod again is not a no-op: {}",
                    serde_json::to_string(p).unwrap_or_default()
                ));
            }
        }
    }
    for w in &case.warnings {
        if !outcome.warnings.iter().any(|got| got.contains(w.as_str())) {
            problems.push(format!(
                "no warning contains {w:?}; warnings: {:?}",
                outcome.warnings
            ));
        }
    }

    // `/mutate` over TLS.
    match mutate_over_http(case) {
        Ok(http) if http != core => problems.push(format!(
            "/mutate and the core differ:\n    /mutate: {http}\n    core:    {core}"
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("/mutate: {e}")),
    }
    // `inject -o pod`.
    match inject_cli(case) {
        Ok(cli) if strip_namespace(cli.clone()) != strip_namespace(core.clone()) => problems.push(
            format!("`inject` and the core differ:\n    inject: {cli}\n    core:   {core}"),
        ),
        Ok(_) => {}
        Err(e) => problems.push(format!("inject: {e}")),
    }

    // Against the Operator's pod.
    let actual = without_our_marks(core, &case.pod);
    let mut expected = case.expect.clone().unwrap_or_else(|| case.pod.clone());
    for d in &case.differences {
        if let Err(e) = apply_difference(&mut expected, d) {
            problems.push(e);
        }
    }
    let mut diffs = Vec::new();
    strict_diff(&expected, &actual, "", &mut diffs);
    problems.extend(diffs);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Our status annotation and fingerprint label come off (they are ours, on
/// every pod we touch, and documented); a map that held only them and was
/// not in the pod as sent goes with them.
fn without_our_marks(mut pod: Value, sent: &Value) -> Value {
    for (map, key) in [
        ("annotations", STATUS_ANNOTATION),
        ("labels", INJECTED_LABEL),
    ] {
        let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        if let Some(m) = meta.get_mut(map).and_then(Value::as_object_mut) {
            m.remove(key);
            if m.is_empty() && sent["metadata"].get(map).is_none() {
                meta.remove(map);
            }
        }
    }
    pod
}

/// `inject` writes the namespace it was told into the Pod's metadata; the
/// webhook's pod has it from the request. Compared without it.
fn strip_namespace(mut pod: Value) -> Value {
    if let Some(m) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("namespace");
    }
    pod
}

/// Puts our value at `d.path` in the Operator's pod, after checking that the
/// Operator's value there is still different (else the difference is gone
/// and the entry must go too).
fn apply_difference(expected: &mut Value, d: &Difference) -> Result<(), String> {
    let operator = expected.pointer(d.path.as_str()).cloned();
    if d.remove {
        if operator.is_none() {
            return Err(format!(
                "difference {} ({}): the Operator's pod has nothing there to remove",
                d.path, d.why
            ));
        }
        let (parent, last) = d.path.rsplit_once('/').unwrap_or(("", &d.path));
        match expected.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.remove(last);
            }
            Some(Value::Array(a)) => {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("{}: not an index", d.path))?;
                a.remove(i);
            }
            _ => return Err(format!("difference {}: no parent", d.path)),
        }
        return Ok(());
    }
    let ours = d.ours.clone().unwrap_or(Value::Null);
    if operator.as_ref() == Some(&ours) {
        return Err(format!(
            "difference {} ({}): the Operator's pod already has our value; remove the entry",
            d.path, d.why
        ));
    }
    let (parent, last) = d.path.rsplit_once('/').unwrap_or(("", &d.path));
    match expected.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last.replace("~1", "/").replace("~0", "~"), ours);
        }
        Some(Value::Array(a)) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("{}: not an index", d.path))?;
            if i < a.len() {
                a[i] = ours;
            } else if i == a.len() {
                a.push(ours);
            } else {
                return Err(format!("difference {}: index past the end", d.path));
            }
        }
        _ => {
            return Err(format!(
                "difference {}: no parent in the Operator's pod",
                d.path
            ));
        }
    }
    Ok(())
}

/// Every field and every list element, in order; extra keys on either side
/// are differences.
fn strict_diff(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}/{k}");
                match g.get(k) {
                    Some(gv) => strict_diff(wv, gv, &p, out),
                    None => out.push(format!("{p}: missing; the Operator has {wv}")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{path}/{k}: we add {gv}; the Operator does not"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                strict_diff(wv, gv, &format!("{path}/{i}"), out);
            }
            if w.len() != g.len() {
                let names = |l: &[Value]| -> Vec<String> {
                    l.iter()
                        .map(|v| {
                            v.get("name")
                                .map_or_else(|| v.to_string(), |n| n.to_string())
                        })
                        .collect()
                };
                out.push(format!(
                    "{path}: {} elements, the Operator has {}: ours {:?}, the Operator's {:?}",
                    g.len(),
                    w.len(),
                    names(g),
                    names(w)
                ));
            }
        }
        _ if want == got => {}
        _ => out.push(format!(
            "{}: ours {got}, the Operator's {want}",
            if path.is_empty() { "/" } else { path }
        )),
    }
}

// === The same pod through `/mutate` and `inject` ===

fn mutate_over_http(case: &Case) -> Result<Value, String> {
    let Inputs { config, view } = inputs(case).map_err(|e| e.join("; "))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let metrics = Arc::new(Metrics::new());
        let injector = Injector {
            config: Arc::new(ArcSwap::from_pointee(config)),
            view: Arc::new(view),
            metrics: metrics.clone(),
            server_version: None,
            events: None,
        };
        let server = common::start(common::Options {
            mutator: Arc::new(injector),
            metrics: Some(metrics),
            ..Default::default()
        })
        .await;
        let mut review = common::review("unit", "CREATE", case.pod.clone());
        review["request"]["namespace"] = json!(case.namespace.name);
        let (status, body) = server.post("/mutate", &review).await;
        if status != 200 || body["response"]["allowed"] != true {
            return Err(format!("status {status}: {body}"));
        }
        let mut pod = case.pod.clone();
        if let Some(p) = body["response"]["patch"].as_str() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| e.to_string())?;
            let patch: json_patch::Patch =
                serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
            json_patch::patch(&mut pod, &patch.0).map_err(|e| e.to_string())?;
        }
        Ok(pod)
    })
}

fn inject_cli(case: &Case) -> Result<Value, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let write = |name: &str, v: &Value| -> Result<PathBuf, String> {
        let p = dir.path().join(name);
        let text = serde_yaml_ng::to_string(v).map_err(|e| e.to_string())?;
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        Ok(p)
    };
    let ns = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": case.namespace.name, "labels": case.namespace.labels,
                     "annotations": case.namespace.annotations}
    });
    let mut pod = case.pod.clone();
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_otel-admission"));
    cmd.arg("inject")
        .arg("-f")
        .arg(write("pod.yaml", &pod)?)
        .arg("--namespace")
        .arg(write("namespace.yaml", &ns)?)
        .args(["-o", "yaml"]);
    if !case.instrumentations.is_empty() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": case.instrumentations});
        cmd.arg("--instrumentation")
            .arg(write("instrumentations.yaml", &list)?);
    }
    if let Some(c) = &case.config {
        cmd.arg("--config").arg(write("config.yaml", c)?);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut got: Value = serde_yaml_ng::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    // As sent: the apiVersion/kind we added for the file are not the pod's.
    if let Some(m) = got.as_object_mut() {
        for k in ["apiVersion", "kind"] {
            if case.pod.get(k).is_none() {
                m.remove(k);
            }
        }
    }
    Ok(got)
}

// === The harness, trusted ===

fn harness_self_tests() -> Vec<Trial> {
    vec![
        Trial::test(
            "harness::strict_diff_sees_extra_and_missing_keys_and_order",
            || {
                let mut out = Vec::new();
                strict_diff(
                    &json!({"a": 1, "l": [{"name": "x"}, {"name": "y"}]}),
                    &json!({"b": 1, "l": [{"name": "y"}, {"name": "x"}]}),
                    "",
                    &mut out,
                );
                let want = ["/a: missing", "/l/0/name", "/l/1/name", "/b: we add"];
                for w in want {
                    if !out.iter().any(|o| o.starts_with(w)) {
                        return Err(format!("{w} not reported: {out:?}").into());
                    }
                }
                let mut same = Vec::new();
                strict_diff(&json!({"a": [1, 2]}), &json!({"a": [1, 2]}), "", &mut same);
                if same.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{same:?}").into())
                }
            },
        ),
        Trial::test("harness::a_difference_that_no_longer_differs_fails", || {
            let mut pod = json!({"spec": {"x": 1}});
            let stale = Difference {
                path: "/spec/x".into(),
                ours: Some(json!(1)),
                remove: false,
                why: "test".into(),
            };
            if apply_difference(&mut pod, &stale).is_ok() {
                return Err("a stale difference was accepted".into());
            }
            let real = Difference {
                ours: Some(json!(2)),
                ..stale
            };
            apply_difference(&mut pod, &real)?;
            if pod != json!({"spec": {"x": 2}}) {
                return Err(format!("{pod}").into());
            }
            Ok(())
        }),
        Trial::test("harness::our_marks_come_off_and_nothing_else", || {
            let sent = json!({"metadata": {"labels": {"app": "a"}}});
            let got = json!({"metadata": {
                "labels": {"app": "a", INJECTED_LABEL: "f"},
                "annotations": {STATUS_ANNOTATION: "{}"}}});
            let clean = without_our_marks(got, &sent);
            if clean != json!({"metadata": {"labels": {"app": "a"}}}) {
                return Err(format!("{clean}").into());
            }
            Ok(())
        }),
    ]
}
