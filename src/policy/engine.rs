//! Compiling a policy directory once, and evaluating every policy per request.
//!
//! A [`PolicySet`] holds one regorus engine with every native module and every
//! template compiled in. A request clones it (cheap: the modules are shared)
//! and evaluates each enforced rule on the clone, under one deadline enforced
//! by regorus' cooperative execution timer.
//!
//! Memory (SPEC §10): `/validate` parses the body once, straight into a
//! regorus value ([`review_value`]). Its arrays and objects are reference
//! counted, so every policy shares it: native modules get it as `input`, and
//! each constraint's `{review, parameters}` wraps the same request. A 3 MiB
//! pod costs about 30 MiB of peak RSS (`tests/policy.rs`,
//! `validate_memory_is_bounded`, bound 64 MiB).
//!
//! regorus 0.14.1 has allocator-level memory limits only behind its
//! `allocator-memory-limits` feature, which installs its own mimalloc as the
//! global allocator (clashing with the binary's) and sets one process-wide
//! budget, not one per evaluation; this build does not enable it.

use std::collections::BTreeMap;
use std::hash::{Hash as _, Hasher as _};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::Value as Json;

use super::PolicyError;
use super::gatekeeper::{self, Action, Constraint, NamespaceLabels, Template};
use super::native::{self, Module};
use crate::admission::{Decoded, Validate, Verdict};
use crate::config::FailureMode;
use crate::metrics::Metrics;

/// One violation found for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Package path (native) or constraint name (Gatekeeper).
    pub policy: String,
    pub action: Action,
    pub message: String,
}

/// Everything one evaluation found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub violations: Vec<Violation>,
    /// `(policy, error)` for each policy that could not be evaluated.
    pub errors: Vec<(String, String)>,
    /// `(policy, result)` for metrics: allow, deny, warn, dryrun or error.
    pub results: Vec<(String, &'static str)>,
    pub elapsed: Duration,
}

/// A compiled policy directory.
#[derive(Clone)]
pub struct PolicySet {
    engine: regorus::Engine,
    native: Vec<Module>,
    templates: BTreeMap<String, Template>,
    constraints: Vec<Constraint>,
    eval_timeout: Duration,
    /// Files it was built from, for reload change detection.
    fingerprint: u64,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("native", &self.native)
            .field("templates", &self.templates.keys())
            .field("constraints", &self.constraints.len())
            .finish_non_exhaustive()
    }
}

/// Every file under `dir` (recursively, sorted), skipping dot-names such as
/// the kubelet's `..data` so a ConfigMap mount is read once.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| PolicyError::Read {
            path: d.clone(),
            source,
        })?;
        for entry in rd {
            let entry = entry.map_err(|source| PolicyError::Read {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // A dangling symlink is a file the kubelet's `..data` swap has
            // just dropped (the link goes a moment after its target): it is
            // no longer part of the set, not a read error.
            if std::fs::metadata(&path).is_err() && std::fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Directories under `dir` (itself included), for watching.
pub fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

pub(crate) fn is_rego(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "rego")
}

pub(crate) fn is_test_rego(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with("_test.rego"))
}

pub(crate) fn is_yaml(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
}

/// Reads a multi-document YAML (or JSON) file as JSON values.
pub fn read_documents(path: &Path) -> Result<Vec<Json>, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_documents(&text, path)
}

/// Parses multi-document YAML (JSON is YAML) text; empty documents are skipped.
pub fn parse_documents(text: &str, path: &Path) -> Result<Vec<Json>, PolicyError> {
    crate::yaml::documents(text).map_err(|e| PolicyError::Document {
        path: path.to_path_buf(),
        doc: e.index,
        field: "(document)".into(),
        message: e.message,
    })
}

/// A regorus engine with OPA's builtin behaviour: non-strict errors and
/// Go's `sprintf` (see [`super::compat`]).
pub fn new_engine() -> regorus::Engine {
    let mut e = regorus::Engine::new();
    e.set_strict_builtin_errors(false);
    super::compat::install(&mut e);
    e
}

/// A JSON value as a regorus value, read in place (no copy of `v` first).
fn to_value(v: &Json) -> Result<regorus::Value, String> {
    serde::Deserialize::deserialize(v).map_err(|e: serde_json::Error| e.to_string())
}

/// Parses an AdmissionReview body once, straight into the regorus value every
/// policy shares (object keys interned, arrays and objects reference-counted).
pub fn review_value(body: &[u8]) -> Result<regorus::Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    regorus::Value::from_json_str(text).map_err(|e| super::rego_message(&e))
}

fn key(k: &str) -> regorus::Value {
    regorus::Value::from(k)
}

fn is_absent(v: &regorus::Value) -> bool {
    matches!(v, regorus::Value::Null | regorus::Value::Undefined)
}

/// The AdmissionRequest of a review as Gatekeeper shows it: a DELETE's
/// `oldObject` is also its `object`. Shares the review's storage: at most the
/// request's top-level map is copied, never the objects in it.
fn gatekeeper_request(review: &regorus::Value) -> regorus::Value {
    let mut request = match &review[&key("request")] {
        // A review without a request shows `input.review` as null.
        regorus::Value::Undefined => regorus::Value::Null,
        r => r.clone(),
    };
    let old = &request[&key("oldObject")];
    if request[&key("operation")] == key("DELETE")
        && is_absent(&request[&key("object")])
        && !is_absent(old)
    {
        let old = old.clone();
        if let Ok(obj) = request.as_object_mut() {
            obj.insert(key("object"), old);
        }
    }
    request
}

/// Gatekeeper's `input`: `{review, parameters}`, wrapping the shared request.
fn gatekeeper_input(request: &regorus::Value, parameters: &regorus::Value) -> regorus::Value {
    regorus::Value::from(BTreeMap::from([
        (key("review"), request.clone()),
        (key("parameters"), parameters.clone()),
    ]))
}

// === impl PolicySet ===

impl PolicySet {
    /// An empty set: everything is allowed.
    pub fn empty(eval_timeout: Duration) -> Self {
        Self {
            engine: new_engine(),
            native: Vec::new(),
            templates: BTreeMap::new(),
            constraints: Vec::new(),
            eval_timeout,
            fingerprint: 0,
        }
    }

    /// Compiles every policy under `dir`: `.rego` modules (not `*_test.rego`),
    /// ConstraintTemplates and Constraints. Other YAML documents (Suites,
    /// test objects) are ignored.
    pub fn load_dir(dir: &Path, eval_timeout: Duration) -> Result<Self, PolicyError> {
        let files = files_under(dir)?;
        let mut set = Self::empty(eval_timeout);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut constraints = Vec::new();
        for path in &files {
            if !(is_rego(path) || is_yaml(path)) {
                continue;
            }
            let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
                path: path.clone(),
                source,
            })?;
            path.hash(&mut hasher);
            text.hash(&mut hasher);
            if is_rego(path) {
                if !is_test_rego(path) {
                    let m = native::add_module(&mut set.engine, path, &text)?;
                    if native::is_enforced(&m.package) && (m.deny || m.warn) {
                        set.native.push(m);
                    }
                }
                continue;
            }
            for (i, doc) in parse_documents(&text, path)?.iter().enumerate() {
                if gatekeeper::is_template(doc) {
                    set.add_template(gatekeeper::parse_template(doc, path, i)?, i)?;
                } else if gatekeeper::is_constraint(doc) {
                    constraints.push((gatekeeper::parse_constraint(doc, path, i)?, i));
                }
            }
        }
        for (c, i) in constraints {
            set.add_constraint(c, i)?;
        }
        set.fingerprint = hasher.finish();
        set.warm_up(dir)?;
        Ok(set)
    }

    /// Adds and compiles a template.
    pub fn add_template(&mut self, t: Template, doc: usize) -> Result<(), PolicyError> {
        if self.templates.contains_key(&t.kind) {
            return Err(PolicyError::Duplicate {
                path: t.path,
                doc,
                what: "ConstraintTemplate kind",
                name: t.kind,
            });
        }
        t.add_to(&mut self.engine)?;
        self.templates.insert(t.kind.clone(), t);
        Ok(())
    }

    /// Adds a constraint whose template is already added.
    pub fn add_constraint(&mut self, c: Constraint, doc: usize) -> Result<(), PolicyError> {
        if !self.templates.contains_key(&c.kind) {
            return Err(PolicyError::UnknownTemplate {
                path: c.path,
                doc,
                name: c.name,
                kind: c.kind,
            });
        }
        if self
            .constraints
            .iter()
            .any(|o| o.kind == c.kind && o.name == c.name)
        {
            return Err(PolicyError::Duplicate {
                path: c.path,
                doc,
                what: "constraint",
                name: c.name,
            });
        }
        self.constraints.push(c);
        Ok(())
    }

    /// Adds `data` (e.g. Gatekeeper's `inventory`).
    pub fn add_data(&mut self, data: &Json) -> Result<(), String> {
        self.engine
            .add_data(to_value(data)?)
            .map_err(|e| super::rego_message(&e))
    }

    /// Prepares the engine (analysis, scheduling, imports) once, so that
    /// per-request clones start prepared and whole-program errors fail the
    /// load rather than a request.
    pub fn warm_up(&mut self, dir: &Path) -> Result<(), PolicyError> {
        self.engine.set_input(regorus::Value::new_object());
        self.engine
            .eval_query("true".into(), false)
            .map(drop)
            .map_err(|e| PolicyError::Rego {
                path: dir.to_path_buf(),
                message: super::rego_message(&e),
            })
    }

    /// The names of the enforced policies: native packages, then constraints.
    pub fn policy_names(&self) -> Vec<String> {
        self.native
            .iter()
            .map(|m| m.package.clone())
            .chain(self.constraints.iter().map(|c| c.name.clone()))
            .collect()
    }

    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// Evaluates every applicable policy against `review` (a whole
    /// AdmissionReview) within the evaluation time limit.
    pub fn evaluate(&self, review: &Json, ns_labels: NamespaceLabels<'_>) -> Outcome {
        match to_value(review) {
            Ok(v) => self.evaluate_value(&v, ns_labels),
            Err(e) => self.input_error(&e),
        }
    }

    /// Every policy failed on an input that cannot be read.
    fn input_error(&self, e: &str) -> Outcome {
        let mut out = Outcome::default();
        for p in self.policy_names() {
            out.errors.push((p.clone(), format!("input: {e}")));
            out.results.push((p, "error"));
        }
        out
    }

    /// [`Self::evaluate`] on a review already parsed into a regorus value
    /// (see [`review_value`]). Every policy reads that one value: native
    /// modules as `input`, Gatekeeper constraints through an `input` that
    /// wraps it with their parameters; nothing in it is copied.
    pub fn evaluate_value(
        &self,
        review: &regorus::Value,
        ns_labels: NamespaceLabels<'_>,
    ) -> Outcome {
        let start = Instant::now();
        let deadline = start + self.eval_timeout;
        let mut out = Outcome::default();
        let mut engine = self.engine.clone();
        let request = &gatekeeper_request(review);
        let limit = |engine: &mut regorus::Engine| -> Result<(), String> {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timeout_message(self.eval_timeout));
            }
            engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
                limit: left,
                check_interval: NonZeroU32::MIN.saturating_add(63),
            });
            Ok(())
        };
        let classify = |e: anyhow::Error| {
            let m = super::rego_message(&e);
            if m.to_ascii_lowercase().contains("time limit") {
                timeout_message(self.eval_timeout)
            } else {
                m
            }
        };

        if !self.native.is_empty() {
            engine.set_input(review.clone());
            // Fast path: every native rule in one query, so helper rules are
            // evaluated once. Any error or undefined rule falls back to one
            // evaluation per rule, which attributes the error to its policy.
            let fast = limit(&mut engine)
                .ok()
                .and_then(|()| self.eval_native_at_once(&mut engine));
            if let Some(values) = &fast {
                let mut it = values.iter();
                for m in &self.native {
                    let mut found = Vec::new();
                    for (on, action) in [(m.deny, Action::Deny), (m.warn, Action::Warn)] {
                        if let Some(v) = on.then(|| it.next()).flatten() {
                            found.extend(native::messages(v).into_iter().map(|message| {
                                Violation {
                                    policy: m.package.clone(),
                                    action,
                                    message,
                                }
                            }));
                        }
                    }
                    record(&mut out, &m.package, found, None);
                }
            }
            for m in self.native.iter().filter(|_| fast.is_none()) {
                let mut found = Vec::new();
                let mut failed = None;
                for (rule, on, action) in [
                    ("deny", m.deny, Action::Deny),
                    ("warn", m.warn, Action::Warn),
                ] {
                    if !on {
                        continue;
                    }
                    let r = limit(&mut engine).and_then(|()| {
                        engine
                            .eval_rule(format!("data.{}.{rule}", m.package))
                            .map_err(classify)
                    });
                    match r {
                        Ok(v) => found.extend(native::messages(&v).into_iter().map(|message| {
                            Violation {
                                policy: m.package.clone(),
                                action,
                                message,
                            }
                        })),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                record(&mut out, &m.package, found, failed);
            }
        }

        for c in &self.constraints {
            if !c.matcher.matches(request, ns_labels) {
                continue;
            }
            let Some(t) = self.templates.get(&c.kind) else {
                continue;
            };
            engine.set_input(gatekeeper_input(request, &c.parameters_value));
            let r = limit(&mut engine).and_then(|()| {
                engine
                    .eval_rule(format!("data.{}.violation", t.package))
                    .map_err(classify)
            });
            match r {
                Ok(v) => {
                    let found = native::messages(&v)
                        .into_iter()
                        .map(|message| Violation {
                            policy: c.name.clone(),
                            action: c.action,
                            message,
                        })
                        .collect();
                    record(&mut out, &c.name, found, None);
                }
                Err(e) => record(&mut out, &c.name, Vec::new(), Some(e)),
            }
        }
        out.elapsed = start.elapsed();
        out
    }
}

impl PolicySet {
    /// Evaluates every native `deny`/`warn` in one query on an engine whose
    /// input is set. `None` when any of them errors or is undefined.
    pub(crate) fn eval_native_at_once(
        &self,
        engine: &mut regorus::Engine,
    ) -> Option<Vec<regorus::Value>> {
        let rules: Vec<String> = self
            .native
            .iter()
            .flat_map(|m| {
                [("deny", m.deny), ("warn", m.warn)]
                    .into_iter()
                    .filter(|(_, on)| *on)
                    .map(|(r, _)| format!("data.{}.{r}", m.package))
            })
            .collect();
        let results = engine
            .eval_query(format!("[{}]", rules.join(", ")), false)
            .ok()?;
        let value = results.result.first()?.expressions.first()?.value.clone();
        let items: Vec<regorus::Value> = value.as_array().ok()?.to_vec();
        (items.len() == rules.len()).then_some(items)
    }
}

fn timeout_message(limit: Duration) -> String {
    format!("evaluation time limit of {}ms exceeded", limit.as_millis())
}

fn record(out: &mut Outcome, policy: &str, found: Vec<Violation>, failed: Option<String>) {
    let result = if failed.is_some() {
        "error"
    } else if found.iter().any(|v| v.action == Action::Deny) {
        "deny"
    } else if found.iter().any(|v| v.action == Action::Warn) {
        "warn"
    } else if !found.is_empty() {
        "dryrun"
    } else {
        "allow"
    };
    out.results.push((policy.to_string(), result));
    if let Some(e) = failed {
        out.errors.push((policy.to_string(), e));
    }
    out.violations.extend(found);
}

impl Outcome {
    /// The admission answer, per SPEC §3/§7: deny → denials, warn → warnings,
    /// dryrun → nothing; an evaluation error follows `failureMode`. Both lists
    /// are clamped (SPEC §10, [`crate::warnings`]): one line of at most 256
    /// characters each, at most 32 of them.
    pub fn verdict(&self, failure_mode: FailureMode) -> Verdict {
        let mut v = Verdict::default();
        for x in &self.violations {
            let line = format!("[{}] {}", x.policy, x.message);
            match x.action {
                Action::Deny => v.denials.push(line),
                Action::Warn => v.warnings.push(line),
                Action::Dryrun => {}
            }
        }
        for (policy, e) in &self.errors {
            match failure_mode {
                FailureMode::Deny => v
                    .denials
                    .push(format!("[{policy}] policy evaluation failed: {e}")),
                FailureMode::Allow => v
                    .warnings
                    .push(format!("otel-admission: policy {policy} not enforced: {e}")),
            }
        }
        v.denials = crate::warnings::clamp_warnings(v.denials);
        v.warnings = crate::warnings::clamp_warnings(v.warnings);
        v
    }
}

/// Where [`Policies`] finds namespace labels (the cluster's namespace cache).
pub type NamespaceLookup = Box<dyn Fn(&str) -> Option<BTreeMap<String, String>> + Send + Sync>;

/// The hot-reloadable policy engine behind `/validate`.
pub struct Policies {
    current: ArcSwap<PolicySet>,
    dir: PathBuf,
    eval_timeout: Duration,
    failure_mode: FailureMode,
    /// When set, `failureMode` and `policies.evalTimeout` follow config reloads.
    config: Option<Arc<ArcSwap<crate::config::Config>>>,
    metrics: Arc<Metrics>,
    ns_labels: Option<NamespaceLookup>,
    /// Fingerprint of the last content tried, good or bad, so a broken file is
    /// reported once per change rather than once per poll.
    last_tried: Mutex<u64>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// Compiles `dir`; a missing directory is an empty set (allow all).
    pub fn load(
        dir: &Path,
        eval_timeout: Duration,
        failure_mode: FailureMode,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PolicyError> {
        let set = if dir.is_dir() {
            PolicySet::load_dir(dir, eval_timeout)?
        } else {
            tracing::info!(dir = %dir.display(), "no policy directory; /validate allows everything");
            PolicySet::empty(eval_timeout)
        };
        tracing::info!(dir = %dir.display(), policies = ?set.policy_names(), "policies compiled");
        Ok(Self {
            last_tried: Mutex::new(set.fingerprint ^ (eval_timeout.as_nanos() as u64)),
            current: ArcSwap::from_pointee(set),
            dir: dir.to_path_buf(),
            eval_timeout,
            failure_mode,
            config: None,
            metrics,
            ns_labels: None,
        })
    }

    /// Sets where namespace labels come from (the cluster's namespace cache).
    pub fn with_namespace_labels(mut self, f: NamespaceLookup) -> Self {
        self.ns_labels = Some(f);
        self
    }

    /// Follows the live config for `failureMode` (per request) and
    /// `policies.evalTimeout` (applied at the next reload).
    pub fn with_config(mut self, config: Arc<ArcSwap<crate::config::Config>>) -> Self {
        self.config = Some(config);
        self
    }

    fn failure_mode(&self) -> FailureMode {
        self.config
            .as_ref()
            .map_or(self.failure_mode, |c| c.load().failure_mode)
    }

    fn eval_timeout(&self) -> Duration {
        self.config
            .as_ref()
            .map_or(self.eval_timeout, |c| c.load().policies.eval_timeout)
    }

    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory. `Ok(true)` when a new set was swapped in; on
    /// error the previous set keeps serving, and the error is logged and counted.
    pub fn reload(&self) -> Result<bool, PolicyError> {
        let timeout = self.eval_timeout();
        let fp = fingerprint(&self.dir) ^ (timeout.as_nanos() as u64);
        {
            let mut last = self.last_tried.lock().unwrap_or_else(|p| p.into_inner());
            if *last == fp {
                return Ok(false);
            }
            *last = fp;
        }
        let load = || {
            if self.dir.is_dir() {
                PolicySet::load_dir(&self.dir, timeout)
            } else {
                Ok(PolicySet::empty(timeout))
            }
        };
        // A file vanishing mid-read is a swap in progress: read again.
        let mut loaded = load();
        for _ in 0..3 {
            match &loaded {
                Err(PolicyError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                    loaded = load();
                }
                _ => break,
            }
        }
        match loaded {
            Ok(set) => {
                tracing::info!(dir = %self.dir.display(), policies = ?set.policy_names(), "policies reloaded");
                self.current.store(Arc::new(set));
                Ok(true)
            }
            Err(e) => {
                self.metrics.policy_reload_errors.inc();
                tracing::error!(error = %e, "policy reload rejected; keeping the previous policies");
                Err(e)
            }
        }
    }

    /// Watches the directory and reloads on change until `stop`.
    pub fn spawn_reload(
        self: &Arc<Self>,
        poll: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let watch_root = if self.dir.is_dir() {
            self.dir.clone()
        } else {
            crate::server::tls::parent_dir(&self.dir)
        };
        crate::server::reload::spawn("policies", dirs_under(&watch_root), poll, stop, move || {
            let _ = me.reload();
        })
    }
}

/// A cheap content hash of every policy file, for change detection.
fn fingerprint(dir: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(files) = files_under(dir) {
        for f in files.iter().filter(|p| is_rego(p) || is_yaml(p)) {
            f.hash(&mut h);
            match std::fs::read_to_string(f) {
                Ok(t) => t.hash(&mut h),
                Err(e) => e.kind().hash(&mut h),
            }
        }
    } else {
        "missing".hash(&mut h);
    }
    h.finish()
}

impl Validate for Policies {
    fn validate(&self, review: &Decoded<'_>) -> Verdict {
        let set = self.current.load();
        if set.native.is_empty() && set.constraints.is_empty() {
            return Verdict::default();
        }
        // The body is parsed once, into the value every policy shares.
        let input = match review_value(review.body) {
            Ok(v) => v,
            Err(e) => {
                return Outcome {
                    errors: vec![("otel-admission".into(), format!("cannot read review: {e}"))],
                    ..Default::default()
                }
                .verdict(self.failure_mode());
            }
        };
        let none = |_: &str| None;
        let labels: NamespaceLabels<'_> = match &self.ns_labels {
            Some(f) => f.as_ref(),
            None => &none,
        };
        let outcome = set.evaluate_value(&input, labels);
        drop(input);
        self.metrics
            .policy_evaluation_duration
            .observe(outcome.elapsed.as_secs_f64());
        for (policy, result) in &outcome.results {
            self.metrics.observe_policy(policy, result);
        }
        let r = &review.request;
        for v in &outcome.violations {
            tracing::info!(uid = %r.uid, workload = %r.workload(), policy = %v.policy,
                action = v.action.as_str(), violation = %v.message, "policy violation");
        }
        for (policy, e) in &outcome.errors {
            tracing::error!(uid = %r.uid, policy = %policy, error = %e, "policy evaluation failed");
        }
        outcome.verdict(self.failure_mode())
    }
}

/// The files of `dir` a server needs, as ConfigMap entries: Rego modules
/// (not tests) and YAML holding templates or constraints (not suites or
/// samples). Keys flatten the relative path with `.`, since ConfigMap keys
/// cannot hold `/`; the server loads a flat directory the same way.
pub fn bundle_entries(
    dir: &Path,
) -> Result<std::collections::BTreeMap<String, String>, PolicyError> {
    let mut out = std::collections::BTreeMap::new();
    for path in files_under(dir)? {
        let keep = if is_rego(&path) {
            !is_test_rego(&path)
        } else if is_yaml(&path) {
            read_documents(&path)?
                .iter()
                .any(|d| gatekeeper::is_template(d) || gatekeeper::is_constraint(d))
        } else {
            false
        };
        if !keep {
            continue;
        }
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let key = rel
            .iter()
            .map(|c| c.to_string_lossy())
            .collect::<Vec<_>>()
            .join(".");
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        out.insert(key, text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(obj: Json) -> Json {
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "CREATE", "namespace": "shop",
                "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": obj}})
    }

    /// The one-query fast path answers (empty sets are defined), and agrees
    /// with the per-rule path.
    #[test]
    fn native_rules_evaluate_in_one_query() {
        let set = PolicySet::load_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            Duration::from_secs(5),
        )
        .expect("pack");
        let pod = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/name": "a"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}});
        let mut e = set.engine.clone();
        e.set_input(to_value(&review(pod.clone())).expect("value"));
        let values = set.eval_native_at_once(&mut e).expect("fast path taken");
        assert_eq!(values.len(), 5, "4 deny + 1 warn");
        let fast = set.evaluate(&review(pod), &|_: &str| None);
        let mut slow = set.clone();
        slow.native
            .iter_mut()
            .for_each(|m| m.package.push_str(".nope"));
        assert!(
            fast.violations
                .iter()
                .any(|v| v.message.contains("has no tag"))
        );
        assert!(fast.violations.iter().any(|v| v.action == Action::Warn));
        assert!(fast.errors.is_empty(), "{:?}", fast.errors);
    }

    /// A native rule that errors falls back to per-rule evaluation, so only
    /// the broken policy reports the error.
    #[test]
    fn errors_are_attributed_to_their_policy() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(
            d.path().join("ok.rego"),
            "package kubernetes.admission.ok\nimport rego.v1\ndeny contains \"ok fired\" if input.request\n",
        )
        .expect("w");
        std::fs::write(
            d.path().join("bad.rego"),
            "package kubernetes.admission.bad\nimport rego.v1\nx = 1 if true\nx = 2 if input.request\ndeny contains \"bad\" if x == 1\n",
        )
        .expect("w");
        let set = PolicySet::load_dir(d.path(), Duration::from_secs(5)).expect("compiles");
        let out = set.evaluate(&review(serde_json::json!({})), &|_: &str| None);
        assert!(
            out.violations.iter().any(|v| v.message == "ok fired"),
            "{out:?}"
        );
        assert!(
            out.errors
                .iter()
                .all(|(p, _)| p == "kubernetes.admission.bad"),
            "{:?}",
            out.errors
        );
    }

    /// `failureMode` follows the live config: an evaluation error is a
    /// warning under `allow` and a denial under `deny`.
    #[test]
    fn failure_mode_follows_the_config() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(
            d.path().join("bad.rego"),
            "package kubernetes.admission.bad\nimport rego.v1\nx = 1 if true\nx = 2 if input.request\ndeny contains \"bad\" if x == 1\n",
        )
        .expect("w");
        let config = Arc::new(ArcSwap::from_pointee(crate::config::Config::default()));
        let p = Policies::load(
            d.path(),
            Duration::from_secs(1),
            FailureMode::Allow,
            Arc::new(Metrics::new()),
        )
        .expect("load")
        .with_config(config.clone());
        let body = serde_json::to_vec(&review(serde_json::json!({}))).expect("json");
        let body = {
            let mut v: Json = serde_json::from_slice(&body).expect("v");
            v["request"]["resource"] =
                serde_json::json!({"group": "", "version": "v1", "resource": "pods"});
            serde_json::to_vec(&v).expect("json")
        };
        let decoded = crate::admission::decode(&body).expect("decodes");
        let v = p.validate(&decoded);
        assert!(v.denials.is_empty(), "{v:?}");
        assert!(
            v.warnings[0].contains("policy kubernetes.admission.bad not enforced"),
            "{v:?}"
        );
        config.store(Arc::new(crate::config::Config {
            failure_mode: FailureMode::Deny,
            ..Default::default()
        }));
        let v = p.validate(&decoded);
        assert!(
            v.denials[0].starts_with("[kubernetes.admission.bad] policy evaluation failed"),
            "{v:?}"
        );
    }

    fn decoded_body() -> Vec<u8> {
        let mut v = review(serde_json::json!({"metadata": {"name": "p"}}));
        v["request"]["resource"] =
            serde_json::json!({"group": "", "version": "v1", "resource": "pods"});
        serde_json::to_vec(&v).expect("json")
    }

    fn policies_from(files: &[(&str, &str)]) -> (tempfile::TempDir, Policies) {
        let d = tempfile::tempdir().expect("tmp");
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).expect("w");
        }
        let p = Policies::load(
            d.path(),
            Duration::from_secs(5),
            FailureMode::Allow,
            Arc::new(Metrics::new()),
        )
        .expect("load");
        (d, p)
    }

    /// Warnings and denials are one line of at most 256 characters each, at
    /// most 32 per answer (SPEC §10), whatever the Rego produces.
    #[test]
    fn verdict_messages_are_clamped() {
        let (_d, p) = policies_from(&[(
            "loud.rego",
            "package kubernetes.admission.loud\nimport rego.v1\n\
             warn contains sprintf(\"w%03d\\nsecond line%300d\", [i, i]) if some i in numbers.range(1, 40)\n\
             deny contains sprintf(\"d%03d\\n%300d\", [i, i]) if some i in numbers.range(1, 2)\n",
        )]);
        let body = decoded_body();
        let decoded = crate::admission::decode(&body).expect("decodes");
        let v = p.validate(&decoded);
        assert_eq!(v.warnings.len(), 32, "{v:?}");
        assert_eq!(v.warnings[31], "… and 9 more");
        assert!(v.warnings[0].starts_with("[kubernetes.admission.loud] w001 second line"));
        assert_eq!(v.denials.len(), 2, "{v:?}");
        for m in v.warnings.iter().chain(&v.denials) {
            assert!(!m.contains('\n'), "{m}");
            assert!(m.chars().count() <= 256, "{m}");
        }
        assert!(v.denials[0].ends_with('…'), "{:?}", v.denials);
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A JSON log line of a policy violation has one `message` key (the
    /// event), and the violation under its own key.
    #[test]
    fn violation_log_lines_have_one_message_key() {
        let (_d, p) = policies_from(&[(
            "two.rego",
            "package kubernetes.admission.two\nimport rego.v1\ndeny contains \"no pods today\" if input.request\n",
        )]);
        let body = decoded_body();
        let decoded = crate::admission::decode(&body).expect("decodes");
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let v = tracing::subscriber::with_default(subscriber, || p.validate(&decoded));
        assert_eq!(v.denials, vec!["[kubernetes.admission.two] no pods today"]);
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        let line = text
            .lines()
            .find(|l| l.contains("policy violation"))
            .unwrap_or_else(|| panic!("no violation line in {text}"));
        assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        let json: Json = serde_json::from_str(line).expect("json line");
        assert_eq!(json["message"], "policy violation", "{line}");
        assert_eq!(json["violation"], "no pods today", "{line}");
    }

    /// A review that is not JSON fails every policy rather than one.
    #[test]
    fn an_unreadable_review_is_an_error_of_every_policy() {
        let set = PolicySet::load_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            Duration::from_secs(5),
        )
        .expect("pack");
        assert!(review_value(b"{not json").is_err());
        assert!(review_value(b"\xff").is_err());
        let out = set.input_error("broken");
        assert_eq!(out.errors.len(), set.policy_names().len());
        assert!(out.results.iter().all(|(_, r)| *r == "error"));
    }

    /// Gatekeeper sees a DELETE's oldObject as `object`; the shared review
    /// itself is not changed.
    #[test]
    fn a_delete_shows_its_old_object() {
        let review = review_value(
            br#"{"request": {"operation": "DELETE", "object": null, "oldObject": {"a": 1}}}"#,
        )
        .expect("value");
        let request = gatekeeper_request(&review);
        assert_eq!(request[&key("object")][&key("a")], regorus::Value::from(1));
        assert_eq!(
            review[&key("request")][&key("object")],
            regorus::Value::Null
        );
        let params = regorus::Value::from(serde_json::json!({"p": true}));
        let input = gatekeeper_input(&request, &params);
        assert_eq!(input[&key("review")], request);
        assert_eq!(input[&key("parameters")], params);
    }

    /// The kubelet's ConfigMap update: a new `..2026_b` directory, `..data`
    /// renamed onto it, the old directory removed, and only then the link of
    /// a file the update dropped. A reload in between sees that dangling
    /// link: it is a file leaving the set, not an error.
    #[cfg(unix)]
    #[test]
    fn a_data_swap_with_a_dropped_file_reloads_without_an_error() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path();
        let rego = |pkg: &str| {
            format!(
                "package kubernetes.admission.{pkg}\nimport rego.v1\ndeny contains \"{pkg}\" if false\n"
            )
        };
        std::fs::create_dir(root.join("..2026_a")).expect("dir");
        std::fs::write(root.join("..2026_a/a.rego"), rego("a")).expect("w");
        std::fs::write(root.join("..2026_a/b.rego"), rego("b")).expect("w");
        symlink("..2026_a", root.join("..data")).expect("link");
        symlink("..data/a.rego", root.join("a.rego")).expect("link");
        symlink("..data/b.rego", root.join("b.rego")).expect("link");
        let metrics = Arc::new(Metrics::new());
        let p = Policies::load(
            root,
            Duration::from_secs(1),
            FailureMode::Allow,
            metrics.clone(),
        )
        .expect("load");
        assert_eq!(p.current.load().policy_names().len(), 2);
        // The update drops b.rego.
        std::fs::create_dir(root.join("..2026_b")).expect("dir");
        std::fs::write(root.join("..2026_b/a.rego"), rego("a")).expect("w");
        symlink("..2026_b", root.join("..data_tmp")).expect("link");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        std::fs::remove_dir_all(root.join("..2026_a")).expect("rm");
        // b.rego still links to ..data/b.rego, which no longer exists.
        assert!(p.reload().expect("no error"), "a new set is swapped in");
        assert_eq!(metrics.policy_reload_errors.get(), 0);
        assert_eq!(p.current.load().policy_names().len(), 1);
    }
}
