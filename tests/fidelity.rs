//! Operator fidelity suite (issue 11, item 5).
//!
//! Every file in `tests/fidelity/*.yaml` is one assert of one of the
//! OpenTelemetry Operator's chainsaw tests that checks a Pod: the inputs the
//! test applies (namespace, Instrumentations, OpenTelemetryCollectors, the
//! workload) and the Pod the Operator's webhook produces, written from the
//! Operator's Go code (`internal/instrumentation`, `pkg/sidecar`). The suite
//! sends the Pod the API server would send through our core
//! ([`otel_admission::inject::outcome::run`]) and compares the result.
//!
//! # Case format
//!
//! ```yaml
//! name: instrumentation-python          # = the file name
//! namespace: {name: chainsaw-python, labels: {}, annotations: {}}
//! instrumentations: [...]               # opentelemetry.io/v1alpha1; no namespace = the case's
//! collectors: [...]                     # OpenTelemetryCollectors (v1beta1 or v1alpha1); no namespace = the case's
//! config: {...}                         # otel-admission config (crates/core/src/config.rs), or absent
//! sidecar: true                         # a collector-sidecar case (e2e-sidecar, e2e-prometheuscr)
//! known_difference: "reason"            # must still differ; not counted
//! workload: {...}                       # Deployment, StatefulSet, DaemonSet, Job, CronJob or Pod
//! expect: {...}                         # a partial Pod
//! ```
//!
//! # Comparison
//!
//! chainsaw's assert rules, strictly: a map in `expect` matches when each of
//! its keys matches (extra keys in the actual Pod are fine); a list matches a
//! list of the same length, element by element, in order; scalars are equal.
//! Extensions:
//! - `{$contains: [s1, s2]}` matches a string that contains every `si`;
//! - a map key `field[name=X]` (e.g. `containers[name=myapp]`, `env[name=FOO]`)
//!   matches the element of the list `field` whose `name` is `X` against the
//!   value (a partial map); the list's length is not checked, as with
//!   chainsaw's `(containers[?name == 'X'])` projection;
//! - `null` matches only a missing key (or `null`): "the webhook adds nothing here".
//!
//! Each case is its own test (libtest-mimic, `harness = false`), so a failure
//! names the case and lists every mismatch with its path. After the run the
//! report (every case's verdict; printed with `--nocapture` or when a case
//! fails) ends with `N of M cases match`, and the run fails unless N = M.
//! Besides the expected Pod, every case checks:
//! the patch applies, the result is a valid `Pod`, and the mutated Pod sent
//! through the core again yields no patch (reinvocation).
//!
//! The Pod sent is built by [`pod_from_workload`] (controller fields, the
//! ServiceAccount plugin, defaulting); the core runs with the case's config
//! and `server_version: None`, so `sidecar.native: auto` means native. After
//! the patch the API server's re-run of its in-tree plugins and defaulting is
//! applied again before comparing.
//!
//! `FIDELITY_CASE=<substring>` or libtest's own filter runs some cases (the
//! comparator's and the harness's self-tests are `comparator::*` and
//! `harness::*`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Pod;
use libtest_mimic::{Arguments, Failed, Trial};
use otel_admission::config::Config;
use otel_admission::inject::cluster_view::{NamespaceMeta, StaticView};
use otel_admission::inject::context::Context;
use otel_admission::inject::outcome::run;
use otel_admission::instrumentation::Instrumentation;
use serde::Deserialize;
use serde_json::{Map, Value, json};

// === Case files ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    namespace: NamespaceIn,
    #[serde(default)]
    instrumentations: Vec<Value>,
    /// Sidecar-mode OpenTelemetryCollectors of the test (and other modes, when
    /// the Operator's decision depends on their absence). Not passed to the
    /// core until it has an input for them.
    #[serde(default)]
    collectors: Vec<Value>,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    sidecar: bool,
    #[serde(default)]
    known_difference: Option<String>,
    /// With `known_difference`: every mismatch must be at a path containing
    /// this, so the rest of the case is still compared strictly.
    #[serde(default)]
    known_difference_at: Option<String>,
    workload: Value,
    expect: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceIn {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fidelity")
}

fn case_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/fidelity exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}

fn load(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let case: Case =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("not a valid case: {e}"))?;
    if case.name != stem(path) {
        return Err(format!(
            "`name` must equal the file name: {:?} is not {:?}",
            case.name,
            stem(path)
        ));
    }
    Ok(case)
}

// === The Pod the API server sends ===

/// The fixed `pod-template-hash` of every Deployment's ReplicaSet.
const TEMPLATE_HASH: &str = "5f8d7c9b6d";
/// The fixed `controller-revision-hash` of StatefulSets and DaemonSets.
const REVISION_HASH: &str = "7c9d8b5f6";
/// A CronJob's Job is `<cronjob>-<scheduled time in minutes>`.
const CRONJOB_SUFFIX: &str = "29000000";
const SA_VOLUME: &str = "kube-api-access-abcde";
const SA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The Pod the API server sends to the webhook for `workload`, as the
/// controllers create it and the admission chain has it before webhooks:
///
/// - Deployment: the ReplicaSet `<deploy>-5f8d7c9b6d`'s pod: `generateName:
///   <deploy>-5f8d7c9b6d-`, label `pod-template-hash`, owner ReplicaSet.
/// - StatefulSet: `<sts>-0`, labels `statefulset.kubernetes.io/pod-name`,
///   `controller-revision-hash`, `apps.kubernetes.io/pod-index`, owner StatefulSet.
/// - DaemonSet: `generateName: <ds>-`, labels `controller-revision-hash`,
///   `pod-template-generation`, owner DaemonSet.
/// - Job: `generateName: <job>-`, labels `batch.kubernetes.io/job-name`,
///   `job-name`, `batch.kubernetes.io/controller-uid`, `controller-uid`, owner Job.
/// - CronJob: its Job `<cronjob>-29000000` (owned by the CronJob), then as a Job.
/// - Pod: as written.
///
/// Every owner reference is `controller: true` with a fixed uid. The
/// namespace is not set in `metadata`: the webhook reads `request.namespace`.
/// Then the ServiceAccount admission plugin ([`service_account_admission`])
/// and the API server's defaulting ([`api_defaults`]).
fn pod_from_workload(workload: &Value) -> Value {
    let kind = workload["kind"].as_str().unwrap_or_default();
    let name = workload["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let parts = match kind {
        "Pod" => PodParts {
            meta: workload["metadata"].clone(),
            spec: workload["spec"].clone(),
            ..PodParts::default()
        },
        "Deployment" => {
            let rs = format!("{name}-{TEMPLATE_HASH}");
            PodParts {
                generate_name: Some(format!("{rs}-")),
                labels: vec![("pod-template-hash".into(), TEMPLATE_HASH.into())],
                owner: Some(("apps/v1", "ReplicaSet", rs)),
                ..PodParts::template(workload)
            }
        }
        "StatefulSet" => {
            let pod = format!("{name}-0");
            PodParts {
                name: Some(pod.clone()),
                labels: vec![
                    (
                        "controller-revision-hash".into(),
                        format!("{name}-{REVISION_HASH}"),
                    ),
                    ("statefulset.kubernetes.io/pod-name".into(), pod),
                    ("apps.kubernetes.io/pod-index".into(), "0".into()),
                ],
                owner: Some(("apps/v1", "StatefulSet", name.clone())),
                ..PodParts::template(workload)
            }
        }
        "DaemonSet" => PodParts {
            generate_name: Some(format!("{name}-")),
            labels: vec![
                ("controller-revision-hash".into(), REVISION_HASH.into()),
                ("pod-template-generation".into(), "1".into()),
            ],
            owner: Some(("apps/v1", "DaemonSet", name.clone())),
            ..PodParts::template(workload)
        },
        "Job" => PodParts::job(workload, &name),
        "CronJob" => {
            let job_name = format!("{name}-{CRONJOB_SUFFIX}");
            let job = json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": job_name,
                    "ownerReferences": [owner_ref("batch/v1", "CronJob", &name)],
                },
                "spec": workload["spec"]["jobTemplate"]["spec"].clone(),
            });
            PodParts::job(&job, &job_name)
        }
        other => panic!("workload kind {other:?} is not supported"),
    };
    let mut pod = parts.into_pod();
    service_account_admission(&mut pod);
    api_defaults(&mut pod);
    pod
}

/// What a controller puts in the Pod it creates from a template.
#[derive(Default)]
struct PodParts {
    meta: Value,
    spec: Value,
    generate_name: Option<String>,
    name: Option<String>,
    labels: Vec<(String, String)>,
    /// `(apiVersion, kind, name)` of the controller.
    owner: Option<(&'static str, &'static str, String)>,
}

impl PodParts {
    fn template(workload: &Value) -> Self {
        let t = &workload["spec"]["template"];
        Self {
            meta: t["metadata"].clone(),
            spec: t["spec"].clone(),
            ..Self::default()
        }
    }

    fn job(job: &Value, name: &str) -> Self {
        let uid = fake_uid("Job", name);
        Self {
            generate_name: Some(format!("{name}-")),
            labels: vec![
                ("batch.kubernetes.io/controller-uid".into(), uid.clone()),
                ("batch.kubernetes.io/job-name".into(), name.into()),
                ("controller-uid".into(), uid),
                ("job-name".into(), name.into()),
            ],
            owner: Some(("batch/v1", "Job", name.to_string())),
            ..Self::template(job)
        }
    }

    fn into_pod(self) -> Value {
        let mut meta = if self.meta.is_object() {
            self.meta
        } else {
            json!({})
        };
        let m = meta.as_object_mut().expect("metadata is a map");
        m.remove("namespace");
        if let Some(g) = self.generate_name {
            m.insert("generateName".into(), json!(g));
        }
        if let Some(n) = self.name {
            m.insert("name".into(), json!(n));
        }
        if !self.labels.is_empty() {
            let labels = m
                .entry("labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("labels is a map");
            for (k, v) in self.labels {
                labels.insert(k, json!(v));
            }
        }
        if let Some((api, kind, name)) = self.owner {
            m.insert(
                "ownerReferences".into(),
                json!([owner_ref(api, kind, &name)]),
            );
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": self.spec})
    }
}

fn fake_uid(kind: &str, name: &str) -> String {
    // Stable, distinct per owner, and shaped like a UID.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes().chain(name.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let s = format!("{h:016x}{:016x}", h.rotate_left(17));
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

fn owner_ref(api: &str, kind: &str, name: &str) -> Value {
    json!({
        "apiVersion": api,
        "kind": kind,
        "name": name,
        "uid": fake_uid(kind, name),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The ServiceAccount admission plugin: `serviceAccountName: default`, the
/// projected token volume, and its read-only mount appended to every
/// container and init container that has none at that path. Skipped with
/// `automountServiceAccountToken: false`.
///
/// It runs before the webhooks and, because the API server reinvokes the
/// in-tree plugins after a webhook changed the object, again after our patch:
/// containers the webhook adds get the mount too (the Operator's Go sidecar
/// and agent init containers have it in its asserts).
fn service_account_admission(pod: &mut Value) {
    let spec = pod["spec"].as_object_mut().expect("pod spec is a map");
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    spec.entry("serviceAccountName")
        .or_insert_with(|| json!("default"));
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("volumes is a list");
    if !volumes.iter().any(|v| v["name"] == SA_VOLUME) {
        volumes.push(json!({
            "name": SA_VOLUME,
            "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]},
        }));
    }
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            let c = c.as_object_mut().expect("container is a map");
            let mounts = c
                .entry("volumeMounts")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("volumeMounts is a list");
            if !mounts.iter().any(|m| m["mountPath"] == SA_PATH) {
                mounts.push(json!({"name": SA_VOLUME, "mountPath": SA_PATH, "readOnly": true}));
            }
        }
    }
}

/// The API server's defaulting that the Operator's asserts see: container
/// ports get `protocol: TCP`, `fieldRef`s get `apiVersion: v1`. Applied before
/// the webhook and again after the patch (the API server defaults the mutated
/// object).
fn api_defaults(pod: &mut Value) {
    let Some(spec) = pod["spec"].as_object_mut() else {
        return;
    };
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if let Some(p) = p.as_object_mut() {
                        p.entry("protocol").or_insert_with(|| json!("TCP"));
                    }
                }
            }
            if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
                for e in env {
                    if let Some(f) = e
                        .get_mut("valueFrom")
                        .and_then(|v| v.get_mut("fieldRef"))
                        .and_then(Value::as_object_mut)
                    {
                        f.entry("apiVersion").or_insert_with(|| json!("v1"));
                    }
                }
            }
        }
    }
}

// === Running one case ===

#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    Fail(Vec<String>),
    /// A `known_difference` case that still differs (first mismatch kept).
    KnownDifference(String),
}

fn run_case(case: &Case) -> Verdict {
    let ns = &case.namespace.name;
    let config = match &case.config {
        None => Config::default(),
        Some(v) => {
            let text = serde_yaml_ng::to_string(v).expect("config to YAML");
            match Config::from_yaml(&text, "case config") {
                Ok(c) => c,
                Err(e) => return Verdict::Fail(vec![format!("config: {e}")]),
            }
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
        match serde_json::from_value::<Instrumentation>(inst.clone()) {
            Ok(inst) => view = view.with_instrumentation(inst, ns),
            Err(e) => return Verdict::Fail(vec![format!("instrumentations[{i}]: {e}")]),
        }
    }
    for (i, c) in case.collectors.iter().enumerate() {
        match otel_admission::otelcol::Collector::from_object(c, ns) {
            Ok(c) => view = view.with_collector(c),
            Err(e) => return Verdict::Fail(vec![format!("collectors[{i}]: {e}")]),
        }
    }
    let ctx = Context {
        namespace: ns,
        config: &config,
        view: &view,
        owner_hint: None,
        server_version: None,
    };

    // Broken guarantees fail every case, `known_difference` or not.
    let mut guarantees = Vec::new();
    let mut doc = pod_from_workload(&case.workload);
    let pod: Pod = match serde_json::from_value(doc.clone()) {
        Ok(p) => p,
        Err(e) => return Verdict::Fail(vec![format!("harness: input is not a Pod: {e}")]),
    };
    let outcome = run(&pod, &ctx);
    if let Some(patch) = outcome.patch()
        && let Err(e) = json_patch::patch(&mut doc, &patch.to_json_patch().expect("patch").0)
    {
        guarantees.push(format!("guarantee: the patch does not apply: {e}"));
    }
    service_account_admission(&mut doc);
    api_defaults(&mut doc);
    match serde_json::from_value::<Pod>(doc.clone()) {
        Err(e) => guarantees.push(format!("guarantee: the mutated object is not a Pod: {e}")),
        Ok(mutated) => {
            let again = run(&mutated, &ctx);
            if let Some(p) = again.patch().filter(|p| !p.is_empty()) {
                let ops = serde_json::to_string(p).unwrap_or_default();
                guarantees.push(format!(
                    "guarantee: reinvocation is not a no-op: {}",
                    truncate(&ops, 300)
                ));
            }
        }
    }
    let mut diffs = Vec::new();
    compare(&case.expect, &doc, "", &mut diffs);

    match (&case.known_difference, diffs.is_empty()) {
        _ if !guarantees.is_empty() => {
            guarantees.extend(diffs);
            Verdict::Fail(guarantees)
        }
        (None, true) => Verdict::Pass,
        (None, false) => Verdict::Fail(diffs),
        (Some(_), false) => {
            let other: Vec<String> = diffs
                .iter()
                .filter(|d| {
                    case.known_difference_at
                        .as_deref()
                        .is_some_and(|at| !d.contains(at))
                })
                .cloned()
                .collect();
            if other.is_empty() {
                Verdict::KnownDifference(diffs.swap_remove(0))
            } else {
                Verdict::Fail(other)
            }
        }
        (Some(reason), true) => Verdict::Fail(vec![format!(
            "marked known_difference ({reason}) but now matches: remove the mark"
        )]),
    }
}

// === The comparator ===

fn render(v: &Value) -> String {
    truncate(&v.to_string(), 240)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `containers[name=myapp]` → `("containers", "myapp")`.
fn name_selector(key: &str) -> Option<(&str, &str)> {
    let (field, rest) = key.split_once("[name=")?;
    let name = rest.strip_suffix(']')?;
    (!field.is_empty()).then_some((field, name))
}

/// `{$contains: [...]}`: the substrings, when `v` is one.
fn contains_expectation(v: &Map<String, Value>) -> Option<Vec<&str>> {
    if v.len() != 1 {
        return None;
    }
    let list = v.get("$contains")?.as_array()?;
    list.iter().map(Value::as_str).collect()
}

fn element_name(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

/// Appends one line per difference between `expect` and `actual` at `path`.
fn compare(expect: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    let at = if path.is_empty() { "(root)" } else { path };
    match expect {
        Value::Null => {
            if !actual.is_null() {
                out.push(format!("{at}: expected nothing, got {}", render(actual)));
            }
        }
        Value::Object(map) => {
            if let Some(parts) = contains_expectation(map) {
                match actual.as_str() {
                    Some(s) => {
                        let missing: Vec<&str> =
                            parts.iter().copied().filter(|p| !s.contains(p)).collect();
                        if !missing.is_empty() {
                            out.push(format!(
                                "{at}: expected a string containing {}, got {}",
                                render(&json!(missing)),
                                render(actual)
                            ));
                        }
                    }
                    None => out.push(format!(
                        "{at}: expected a string containing {}, got {}",
                        render(&json!(parts)),
                        render(actual)
                    )),
                }
                return;
            }
            let Some(actual_map) = actual.as_object() else {
                out.push(format!("{at}: expected a map, got {}", render(actual)));
                return;
            };
            for (key, want) in map {
                if let Some((field, name)) = name_selector(key) {
                    let p = join_path(path, key);
                    let list = actual_map.get(field).and_then(Value::as_array);
                    match list.and_then(|l| l.iter().find(|e| element_name(e) == Some(name))) {
                        Some(elem) => compare(want, elem, &p, out),
                        None => {
                            let names: Vec<&str> = list
                                .map(|l| l.iter().filter_map(element_name).collect())
                                .unwrap_or_default();
                            out.push(format!(
                                "{p}: no element named {name:?} (names: {})",
                                render(&json!(names))
                            ));
                        }
                    }
                    continue;
                }
                let p = join_path(path, key);
                match actual_map.get(key) {
                    Some(a) => compare(want, a, &p, out),
                    None if want.is_null() => {}
                    None => out.push(format!("{p}: missing, expected {}", render(want))),
                }
            }
        }
        Value::Array(want) => {
            let Some(got) = actual.as_array() else {
                out.push(format!("{at}: expected a list, got {}", render(actual)));
                return;
            };
            compare_lists(want, got, path, out);
        }
        _ => {
            if expect != actual {
                out.push(format!(
                    "{at}: expected {}, got {}",
                    render(expect),
                    render(actual)
                ));
            }
        }
    }
}

/// Same length and order. Lists of named elements (env, containers, volumes,
/// mounts with names) are reported by name: one line for a different name
/// sequence, then the differences of the elements both have.
fn compare_lists(want: &[Value], got: &[Value], path: &str, out: &mut Vec<String>) {
    let at = if path.is_empty() { "(root)" } else { path };
    let want_names: Option<Vec<&str>> = want.iter().map(element_name).collect();
    let got_names: Option<Vec<&str>> = got.iter().map(element_name).collect();
    if let (Some(wn), Some(gn)) = (&want_names, &got_names)
        && !want.is_empty()
    {
        if wn != gn {
            let first = wn
                .iter()
                .zip(gn.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(wn.len().min(gn.len()));
            let at_first = match (wn.get(first), gn.get(first)) {
                (Some(w), Some(g)) => format!("expected {w:?}, got {g:?}"),
                (Some(w), None) => format!("expected {w:?}, got the end of the list"),
                (None, Some(g)) => format!("expected the end of the list, got {g:?}"),
                (None, None) => String::new(),
            };
            let missing: Vec<&&str> = wn.iter().filter(|n| !gn.contains(n)).collect();
            let extra: Vec<&&str> = gn.iter().filter(|n| !wn.contains(n)).collect();
            let mut why = String::new();
            if !missing.is_empty() {
                let _ = write!(why, "; missing {}", render(&json!(missing)));
            }
            if !extra.is_empty() {
                let _ = write!(why, "; unexpected {}", render(&json!(extra)));
            }
            if missing.is_empty() && extra.is_empty() {
                why.push_str("; same names, other order");
            }
            // The first line is the summary; the full lists follow.
            out.push(format!(
                "{at}: names differ at [{first}]: {at_first}{why}\n  expected {}\n  got      {}",
                json!(wn),
                json!(gn)
            ));
        }
        // Element differences, pairing the k-th occurrence of a name.
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for w in want {
            let name = element_name(w).unwrap_or_default();
            let k = seen.entry(name).or_default();
            if let Some(g) = got.iter().filter(|g| element_name(g) == Some(name)).nth(*k) {
                compare(w, g, &format!("{path}[name={name}]"), out);
            }
            *k += 1;
        }
        return;
    }
    if want.len() != got.len() {
        out.push(format!(
            "{at}: expected {} elements, got {}: {}",
            want.len(),
            got.len(),
            render(&Value::Array(got.to_vec()))
        ));
        return;
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        compare(w, g, &format!("{path}[{i}]"), out);
    }
}

// === The suite ===

/// What one case's test found, for the report after the run.
struct Record {
    verdict: Verdict,
    sidecar: bool,
    known_difference: Option<String>,
}

type Records = Mutex<BTreeMap<String, Record>>;

fn main() {
    let args = Arguments::from_args();
    let filter = std::env::var("FIDELITY_CASE").ok();
    let files = case_files();
    assert!(!files.is_empty(), "no case files in tests/fidelity");
    let records: Arc<Records> = Arc::default();
    let mut trials: Vec<Trial> = files
        .into_iter()
        .filter(|p| filter.as_deref().is_none_or(|f| stem(p).contains(f)))
        .map(|path| {
            let records = Arc::clone(&records);
            Trial::test(stem(&path), move || case_test(&path, &records))
        })
        .collect();
    trials.extend(self_tests());
    let conclusion = libtest_mimic::run(&args, trials);
    if args.list {
        conclusion.exit();
    }
    let records = records.lock().unwrap_or_else(PoisonError::into_inner);
    if !records.is_empty() {
        let (report, passed, counted) = report(&records);
        if args.nocapture || passed != counted {
            println!("{report}");
        } else {
            println!(
                "{}",
                report
                    .lines()
                    .find(|l| l.contains(" cases match"))
                    .unwrap_or_default()
            );
        }
        if passed != counted {
            eprintln!("{passed} of {counted} cases match; see the report above");
            std::process::exit(101);
        }
    }
    conclusion.exit();
}

/// One case: passes when it matches, or when a `known_difference` case still
/// differs as marked; fails with every problem otherwise.
fn case_test(path: &Path, records: &Records) -> Result<(), Failed> {
    let (name, record) = match load(path) {
        Ok(case) => (
            case.name.clone(),
            Record {
                verdict: run_case(&case),
                sidecar: case.sidecar,
                known_difference: case.known_difference,
            },
        ),
        Err(e) => (
            stem(path),
            Record {
                verdict: Verdict::Fail(vec![format!("{}: {e}", path.display())]),
                sidecar: false,
                known_difference: None,
            },
        ),
    };
    let result = match &record.verdict {
        Verdict::Fail(problems) => Err(Failed::from(format!(
            "{} difference(s):\n  {}",
            problems.len(),
            problems
                .iter()
                .map(|p| p.replace('\n', "\n    "))
                .collect::<Vec<_>>()
                .join("\n  ")
        ))),
        Verdict::Pass | Verdict::KnownDifference(_) => Ok(()),
    };
    records
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name, record);
    result
}

/// The report of the cases that ran, in name order, and `(passed, counted)`.
fn report(records: &BTreeMap<String, Record>) -> (String, usize, usize) {
    let mut report = String::new();
    let (mut counted, mut passed, mut known) = (0, 0, 0);
    let sidecars = records.values().filter(|r| r.sidecar).count();
    let mut summary = Vec::new();
    for (name, record) in records {
        match &record.verdict {
            Verdict::Pass => {
                counted += 1;
                passed += 1;
                let _ = writeln!(report, "PASS {name}");
            }
            Verdict::Fail(problems) => {
                counted += 1;
                let _ = writeln!(report, "FAIL {name} ({} difference(s))", problems.len());
                for p in problems {
                    let p = p.replace('\n', "\n         ");
                    let _ = writeln!(report, "     {name}: {p}");
                }
                let first = problems[0].lines().next().unwrap_or_default();
                summary.push(format!("{name}: {}", truncate(first, 300)));
            }
            Verdict::KnownDifference(first) => {
                known += 1;
                let _ = writeln!(
                    report,
                    "KNOWN {name} ({}); differs as expected: {}",
                    record.known_difference.as_deref().unwrap_or_default(),
                    first.lines().next().unwrap_or_default()
                );
            }
        }
    }
    let _ = writeln!(
        report,
        "\n{passed} of {counted} cases match ({known} known difference(s); {sidecars} with a collector sidecar)"
    );
    if !summary.is_empty() {
        let _ = writeln!(report, "first difference of each failing case:");
        for s in &summary {
            let _ = writeln!(report, "  {s}");
        }
    }
    (report, passed, counted)
}

// === The comparator and the harness, trusted ===

fn self_tests() -> Vec<Trial> {
    let trial = |name: &str, f: fn()| {
        Trial::test(name, move || {
            f();
            Ok(())
        })
    };
    vec![
        trial("comparator::partial_maps", comparator_partial_maps),
        trial(
            "comparator::ordered_lists_and_length",
            comparator_ordered_lists_and_length,
        ),
        trial("comparator::contains", comparator_contains),
        trial("comparator::name_selector", comparator_name_selector),
        trial(
            "harness::builds_the_pod_the_api_server_sends",
            harness_builds_the_pod_the_api_server_sends,
        ),
    ]
}

fn diffs(expect: &str, actual: Value) -> Vec<String> {
    let expect: Value = serde_yaml_ng::from_str(expect).expect("yaml");
    let mut out = Vec::new();
    compare(&expect, &actual, "", &mut out);
    out
}

fn comparator_partial_maps() {
    let actual = json!({"metadata": {"name": "p", "labels": {"app": "a", "x": "y"}}});
    assert!(diffs("metadata: {labels: {app: a}}", actual.clone()).is_empty());
    assert_eq!(
        diffs("metadata: {labels: {app: b}}", actual.clone()),
        vec![r#"metadata.labels.app: expected "b", got "a""#]
    );
    assert_eq!(
        diffs("metadata: {annotations: {k: v}}", actual.clone()),
        vec![r#"metadata.annotations: missing, expected {"k":"v"}"#]
    );
    // null: nothing there.
    assert!(diffs("metadata: {annotations: null}", actual.clone()).is_empty());
    assert_eq!(
        diffs("metadata: {name: null}", actual),
        vec![r#"metadata.name: expected nothing, got "p""#]
    );
}

fn comparator_ordered_lists_and_length() {
    let actual = json!({"args": ["a", "b"], "ports": [{"containerPort": 1}, {"containerPort": 2}]});
    assert!(diffs("args: [a, b]", actual.clone()).is_empty());
    assert_eq!(
        diffs("args: [b, a]", actual.clone()),
        vec![
            r#"args[0]: expected "b", got "a""#,
            r#"args[1]: expected "a", got "b""#
        ]
    );
    assert_eq!(
        diffs("args: [a]", actual.clone()),
        vec![r#"args: expected 1 elements, got 2: ["a","b"]"#]
    );
    // Elements are partial maps.
    assert!(diffs("ports: [{}, {containerPort: 2}]", actual.clone()).is_empty());
    assert_eq!(
        diffs("ports: [{containerPort: 2}, {containerPort: 1}]", actual).len(),
        2
    );
    // Named elements: same names in the same order, then by name.
    let env = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
    assert!(diffs("env: [{name: A}, {name: B, value: '2'}]", env.clone()).is_empty());
    assert_eq!(
        diffs("env: [{name: B}, {name: A}]", env.clone()),
        vec![
            "env: names differ at [0]: expected \"B\", got \"A\"; same names, other order\n  expected [\"B\",\"A\"]\n  got      [\"A\",\"B\"]"
        ]
    );
    assert_eq!(
        diffs("env: [{name: A}, {name: C}, {name: B, value: '3'}]", env),
        vec![
            "env: names differ at [1]: expected \"C\", got \"B\"; missing [\"C\"]\n  expected [\"A\",\"C\",\"B\"]\n  got      [\"A\",\"B\"]",
            r#"env[name=B].value: expected "3", got "2""#,
        ]
    );
}

fn comparator_contains() {
    let actual = json!({"v": "k8s.pod.name=x,service.version=main"});
    assert!(
        diffs(
            "v: {$contains: [k8s.pod.name=x, version=main]}",
            actual.clone()
        )
        .is_empty()
    );
    assert_eq!(
        diffs("v: {$contains: [k8s.pod.name=x, version=1]}", actual),
        vec![
            r#"v: expected a string containing ["version=1"], got "k8s.pod.name=x,service.version=main""#
        ]
    );
    assert_eq!(
        diffs("v: {$contains: [a]}", json!({"v": 1})),
        vec![r#"v: expected a string containing ["a"], got 1"#]
    );
}

fn comparator_name_selector() {
    let actual = json!({"spec": {"containers": [
        {"name": "app", "image": "a:1"},
        {"name": "side", "image": "s:1"},
    ]}});
    // The projection does not check the list's length.
    assert!(
        diffs(
            "spec: {'containers[name=side]': {image: 's:1'}}",
            actual.clone()
        )
        .is_empty()
    );
    assert_eq!(
        diffs(
            "spec: {'containers[name=side]': {image: 's:2'}}",
            actual.clone()
        ),
        vec![r#"spec.containers[name=side].image: expected "s:2", got "s:1""#]
    );
    assert_eq!(
        diffs("spec: {'initContainers[name=side]': {}}", actual.clone()),
        vec![r#"spec.initContainers[name=side]: no element named "side" (names: [])"#]
    );
    assert_eq!(
        diffs("spec: {'containers[name=x]': {}}", actual),
        vec![r#"spec.containers[name=x]: no element named "x" (names: ["app","side"])"#]
    );
}

fn harness_builds_the_pod_the_api_server_sends() {
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "app", "image": "a:1", "ports": [{"containerPort": 80}]}
        ]}}}
    });
    let pod = pod_from_workload(&deploy);
    let want = r#"
metadata:
  generateName: web-5f8d7c9b6d-
  labels: {app: web, pod-template-hash: 5f8d7c9b6d}
  ownerReferences: [{kind: ReplicaSet, name: web-5f8d7c9b6d, controller: true}]
  namespace: null
spec:
  serviceAccountName: default
  volumes: [{name: kube-api-access-abcde}]
  containers:
  - name: app
    ports: [{containerPort: 80, protocol: TCP}]
    volumeMounts: [{name: kube-api-access-abcde, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}]
"#;
    assert_eq!(diffs(want, pod.clone()), Vec::<String>::new());
    serde_json::from_value::<Pod>(pod).expect("a valid Pod");

    let cron = json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"automountServiceAccountToken": false, "containers": [
            {"name": "app", "image": "a:1"}
        ]}}}}}
    });
    let pod = pod_from_workload(&cron);
    let want = r#"
metadata:
  generateName: nightly-29000000-
  labels: {job-name: nightly-29000000, batch.kubernetes.io/job-name: nightly-29000000}
  ownerReferences: [{kind: Job, name: nightly-29000000}]
spec:
  volumes: null
  containers: [{name: app, volumeMounts: null}]
"#;
    assert_eq!(diffs(want, pod), Vec::<String>::new());
}
