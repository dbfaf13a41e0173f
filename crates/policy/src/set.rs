//! Compiling a policy directory once, and evaluating every policy per request.
//!
//! A [`PolicySet`] holds one regorus engine with every native module and every
//! template compiled in. A request clones it (cheap: the modules are shared)
//! and evaluates each enforced rule on the clone, under one deadline enforced
//! by regorus' cooperative execution timer. The files come from
//! [`super::files`]; the root package's `policy::serving` serves the set at `/validate`.
//!
//! Memory (SPEC §10): `/validate` parses the body once, straight into a
//! regorus value ([`review_value`]). Its arrays and objects are reference
//! counted, so every policy shares it: native modules get it as `input`, and
//! each constraint's `{review, parameters}` wraps the same request. A 3 MiB
//! pod costs about 30 MiB of peak RSS (`tests/policy.rs`,
//! `validate_memory_is_bounded`, bound 64 MiB).
//!
//! What the policies of one request may build is bounded by a memory
//! budget ([`super::budget`], 64 MiB by default), charged by the builtins
//! that can build a large value in one call; past it an evaluation fails as
//! the time limit fails it.
//!
//! Errors: what regorus says names the module by its label, the file's
//! path; [`PolicySet::public_error`] makes it name the file's base name,
//! for what kubectl users see, while the server log keeps the path.

use std::collections::BTreeMap;
use std::hash::Hasher as _;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::PolicyError;
use super::calls::{Origin, Origins, check_calls};
use super::files::{files_under, hash_file, is_rego, is_test_rego, is_yaml, parse_documents};
use super::gatekeeper::{self, Action, Constraint, NamespaceLabels, Template};
use super::native::{self, Module};

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
    /// The memory budget of one evaluation, in bytes ([`super::budget`]).
    memory_limit: u64,
    /// Files it was built from, for reload change detection.
    fingerprint: u64,
    /// The policies (packages, template kinds) whose Rego reads
    /// `data.inventory`, to say so when nothing is synced.
    reads_inventory: Vec<String>,
    /// ExpansionTemplates: workloads judged as the pods they create.
    expansions: Vec<super::expansion::Expansion>,
    /// Whether the engine has [`PolicySet::batch_module`] (added once, by
    /// the first warm-up).
    batched: bool,
    /// The labels regorus knows the modules by (their files' paths), to
    /// take them out of what users see ([`Self::public_error`]).
    labels: std::sync::Arc<Vec<String>>,
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

/// Whether Rego source reads `data.inventory` (a token scan: strings and
/// comments do not count).
fn reads_inventory(src: &str) -> bool {
    let toks = super::compat::tokens(src);
    toks.windows(3).any(|w| {
        &src[w[0].start..w[0].end] == "data"
            && &src[w[1].start..w[1].end] == "."
            && &src[w[2].start..w[2].end] == "inventory"
    })
}

/// The package of [`PolicySet::batch_module`]: a name no policy pack uses.
const BATCH_PACKAGE: &str = "otel_admission_internal.native_rules";
const BATCH_RULE: &str = "data.otel_admission_internal.native_rules.all";
const BATCH_FILE: &str = "otel-admission-internal/native-rules.rego";

/// A regorus engine with OPA's builtin behaviour: non-strict errors and
/// Go's `sprintf` (see [`super::compat`]), and the builtins that can build
/// a large value in one call charging the evaluation's memory budget
/// ([`super::budget`]).
pub fn new_engine() -> regorus::Engine {
    let mut e = regorus::Engine::new();
    e.set_strict_builtin_errors(false);
    super::compat::install(&mut e);
    super::budget::install(&mut e);
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
            memory_limit: super::budget::DEFAULT_MEMORY_LIMIT,
            fingerprint: 0,
            reads_inventory: Vec::new(),
            expansions: Vec::new(),
            batched: false,
            labels: Default::default(),
        }
    }

    /// Compiles every policy under `dir`: `.rego` modules (not `*_test.rego`),
    /// ConstraintTemplates and Constraints. Other YAML documents (Suites,
    /// test objects) are ignored. A source nested too deep for regorus'
    /// parser, or a call nothing defines, is refused, naming the file.
    pub fn load_dir(dir: &Path, eval_timeout: Duration) -> Result<Self, PolicyError> {
        let files = files_under(dir)?;
        let mut set = Self::empty(eval_timeout);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut constraints = Vec::new();
        let mut origins = Origins::new();
        for path in &files {
            if !(is_rego(path) || is_yaml(path)) {
                continue;
            }
            let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
                path: path.clone(),
                source,
            })?;
            hash_file(&mut hasher, path, &text);
            if is_rego(path) {
                if !is_test_rego(path) {
                    let m = native::add_module(&mut set.engine, path, &text)?;
                    origins.insert(
                        path.display().to_string(),
                        Origin {
                            path: path.clone(),
                            what: None,
                        },
                    );
                    if reads_inventory(&text) && !set.reads_inventory.contains(&m.package) {
                        set.reads_inventory.push(m.package.clone());
                    }
                    if native::is_enforced(&m.package) && (m.deny || m.warn) {
                        // A package split across files (OPA allows it) is one
                        // policy: evaluated and counted once, its rules merged.
                        match set.native.iter_mut().find(|o| o.package == m.package) {
                            Some(o) => {
                                o.deny |= m.deny;
                                o.warn |= m.warn;
                            }
                            None => set.native.push(m),
                        }
                    }
                }
                continue;
            }
            for (i, doc) in parse_documents(&text, path)?.iter().enumerate() {
                if gatekeeper::is_template(doc) {
                    let t = gatekeeper::parse_template(doc, path, i)?;
                    if t.modules.iter().any(|(_, rego, _)| reads_inventory(rego)) {
                        set.reads_inventory.push(t.kind.clone());
                    }
                    origins.extend(t.origins());
                    set.add_template(t, i)?;
                } else if super::expansion::is_expansion(doc) {
                    set.expansions.push(super::expansion::parse(doc, path, i)?);
                } else if gatekeeper::is_constraint(doc) {
                    constraints.push((gatekeeper::parse_constraint(doc, path, i)?, i));
                }
            }
        }
        for (c, i) in constraints {
            set.add_constraint(c, i)?;
        }
        set.fingerprint = hasher.finish();
        set.check_calls(&origins)?;
        set.warm_up(dir)?;
        Ok(set)
    }

    /// This set with another memory budget per evaluation (bytes; the
    /// default is [`super::budget::DEFAULT_MEMORY_LIMIT`]).
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Refuses a call that neither the set's modules nor regorus define
    /// ([`super::calls`]), naming the file by `origins`; remembers the
    /// modules' labels for [`Self::public_error`].
    pub fn check_calls(&mut self, origins: &Origins) -> Result<(), PolicyError> {
        check_calls(&self.engine, origins)?;
        self.labels = std::sync::Arc::new(origins.keys().cloned().collect());
        Ok(())
    }

    /// An evaluation error as kubectl users see it: one line, naming the
    /// file by its base name, never a directory of the server. regorus'
    /// `\n--> /etc/.../native.probes.rego:12:3\n  |\n12 | ...\nerror: rule
    /// conflicts with rule at /etc/.../native.probes.rego:3:1` becomes
    /// `native.probes.rego:12:3: rule conflicts with rule at
    /// native.probes.rego:3:1`. The full message is what the server logs.
    pub fn public_error(&self, message: &str) -> String {
        public_error(message, &self.labels)
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

    /// This set with `data.inventory` (Gatekeeper's referential data) in its
    /// engine, prepared again, so per-request clones share the document.
    pub fn with_inventory(&self, inventory: &regorus::Value) -> Result<Self, String> {
        let mut set = self.clone();
        let mut data = regorus::Value::new_object();
        if let Ok(map) = data.as_object_mut() {
            map.insert(key("inventory"), inventory.clone());
        }
        set.engine
            .add_data(data)
            .map_err(|e| super::rego_message(&e))?;
        set.engine.set_input(regorus::Value::new_object());
        set.engine
            .eval_query("true".into(), false)
            .map_err(|e| super::rego_message(&e))?;
        Ok(set)
    }

    /// Prepares the engine (analysis, scheduling, imports) once, so that
    /// per-request clones start prepared and whole-program errors fail the
    /// load rather than a request.
    pub fn warm_up(&mut self, dir: &Path) -> Result<(), PolicyError> {
        if let Some(batch) = (!self.batched).then(|| self.batch_module()).flatten() {
            self.batched = true;
            self.engine
                .add_policy(BATCH_FILE.into(), batch)
                .map_err(|e| PolicyError::Rego {
                    path: dir.to_path_buf(),
                    message: super::rego_message(&e),
                })?;
        }
        self.engine.set_input(regorus::Value::new_object());
        self.engine
            .eval_query("true".into(), false)
            .map(drop)
            .map_err(|e| PolicyError::Rego {
                path: dir.to_path_buf(),
                message: super::rego_message(&e),
            })
    }

    pub fn expansions(&self) -> &[super::expansion::Expansion] {
        &self.expansions
    }

    /// [`Self::evaluate_value`], then, for each ExpansionTemplate that
    /// applies, the same on the resource it generates (injected first, when
    /// a Pod, by `inject`), its findings naming the pod: `in the Pod that
    /// Deployment/checkout creates: ...`, with the template's
    /// `enforcementAction` when it sets one.
    pub fn evaluate_expanded(
        &self,
        review_json: &Json,
        review: &regorus::Value,
        ns_labels: NamespaceLabels<'_>,
        inject: Option<&super::expansion::Injection>,
    ) -> Outcome {
        let mut out = self.evaluate_value(review, ns_labels);
        for e in &self.expansions {
            let Some(x) = e.expand(review_json, inject) else {
                continue;
            };
            let found = self.evaluate(&x.review, ns_labels);
            let kind = e.generated.kind.as_str();
            for mut v in found.violations {
                // What the workload as written already shows is said once.
                if out
                    .violations
                    .iter()
                    .any(|o| o.policy == v.policy && o.message == v.message)
                {
                    continue;
                }
                v.message = format!("in the {kind} that {} creates: {}", x.parent, v.message);
                if let Some(a) = e.action {
                    v.action = a;
                }
                out.violations.push(v);
            }
            for (p, err) in found.errors {
                out.errors
                    .push((p, format!("in the {kind} that {} creates: {err}", x.parent)));
            }
            out.elapsed += found.elapsed;
        }
        out
    }

    /// [`Self::evaluate_expanded`] on a review given as JSON (`policy eval`).
    pub fn evaluate_json_expanded(
        &self,
        review: &Json,
        ns_labels: NamespaceLabels<'_>,
        inject: Option<&super::expansion::Injection>,
    ) -> Outcome {
        match to_value(review) {
            Ok(v) => self.evaluate_expanded(review, &v, ns_labels, inject),
            Err(e) => self.input_error(&e),
        }
    }

    /// The policies (native packages, template kinds) that read
    /// `data.inventory`.
    pub fn reads_inventory(&self) -> &[String] {
        &self.reads_inventory
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

    /// Whether there is nothing to enforce: every request is allowed.
    pub fn is_empty(&self) -> bool {
        self.native.is_empty() && self.constraints.is_empty()
    }

    /// The content hash of the files the set was built from (see
    /// [`super::files::fingerprint`]).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
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
        // What the policies of this request may build together.
        let _budget = super::budget::Scope::new(self.memory_limit);
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
            } else if super::budget::is_over_budget(&m) {
                super::budget::over_budget_message(&m)
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
        // Counted, not formatted: this runs on every request.
        let rules: usize = self
            .native
            .iter()
            .map(|m| usize::from(m.deny) + usize::from(m.warn))
            .sum();
        let value = engine.eval_rule(BATCH_RULE.into()).ok()?;
        let items: Vec<regorus::Value> = value.as_array().ok()?.to_vec();
        (items.len() == rules).then_some(items)
    }

    /// Every native `deny` and `warn`, in the order of [`Self::native`].
    fn native_rules(&self) -> impl Iterator<Item = String> + '_ {
        self.native.iter().flat_map(|m| {
            [("deny", m.deny), ("warn", m.warn)]
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(r, _)| format!("data.{}.{r}", m.package))
        })
    }

    /// The module whose one rule is every native `deny` and `warn`, as an
    /// array: evaluated as a rule, it is compiled once with the policies,
    /// where a query naming them would be parsed and analysed on every
    /// request. An undefined member makes the array undefined, which
    /// falls back to one evaluation per rule, as an error does.
    fn batch_module(&self) -> Option<String> {
        if self.native.is_empty() {
            return None;
        }
        let rules: Vec<String> = self.native_rules().collect();
        Some(format!(
            "package {BATCH_PACKAGE}\n\nall := [{}]\n",
            rules.join(", ")
        ))
    }
}

/// See [`PolicySet::public_error`]: `labels` are the modules' labels.
fn public_error(message: &str, labels: &[String]) -> String {
    let base = |label: &str| {
        Path::new(label)
            .file_name()
            .map_or_else(|| label.to_string(), |n| n.to_string_lossy().into_owned())
    };
    // regorus' span errors: `\n--> FILE:LINE:COL\n<source lines>\nKIND: MSG`,
    // after the context of the error chain, if any.
    let mut out = match message.split_once("\n--> ") {
        Some((context, rest)) => {
            let (at, body) = rest.split_once('\n').unwrap_or((rest, ""));
            let last = body.lines().last().unwrap_or("");
            let what = last.strip_prefix("error: ").unwrap_or(last);
            let context = context.trim_end_matches([':', ' ']);
            let at = match at.rsplitn(3, ':').collect::<Vec<_>>().as_slice() {
                [col, line, file] => format!("{}:{line}:{col}", base(file)),
                _ => base(at),
            };
            if context.is_empty() {
                format!("{at}: {what}")
            } else {
                format!("{context}: {at}: {what}")
            }
        }
        None => message.to_string(),
    };
    for label in labels {
        if out.contains(label.as_str()) {
            out = out.replace(label.as_str(), &base(label));
        }
    }
    super::files::strip_directories(&out)
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
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies"),
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
    /// A package split across two files is one policy, as in OPA: each
    /// message appears once, and the policy is listed (and so counted) once.
    #[test]
    fn a_package_split_across_files_is_evaluated_once() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(
            d.path().join("a.rego"),
            "package kubernetes.admission.split\nimport rego.v1\ndeny contains \"from a\" if input.request\n",
        )
        .expect("w");
        std::fs::write(
            d.path().join("b.rego"),
            "package kubernetes.admission.split\nimport rego.v1\ndeny contains \"from b\" if input.request\nwarn contains \"warned in b\" if input.request\n",
        )
        .expect("w");
        let set = PolicySet::load_dir(d.path(), Duration::from_secs(5)).expect("compiles");
        assert_eq!(
            set.policy_names(),
            vec!["kubernetes.admission.split".to_string()]
        );
        let out = set.evaluate(&review(serde_json::json!({})), &|_: &str| None);
        let mut messages: Vec<(&str, Action)> = out
            .violations
            .iter()
            .map(|v| (v.message.as_str(), v.action))
            .collect();
        messages.sort_by_key(|(m, _)| *m);
        assert_eq!(
            messages,
            vec![
                ("from a", Action::Deny),
                ("from b", Action::Deny),
                ("warned in b", Action::Warn)
            ],
            "{out:?}"
        );
    }

    /// A review that is not JSON fails every policy rather than one.
    #[test]
    fn an_unreadable_review_is_an_error_of_every_policy() {
        let set = PolicySet::load_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies"),
            Duration::from_secs(5),
        )
        .expect("pack");
        assert!(review_value(b"{not json").is_err());
        assert!(review_value(b"\xff").is_err());
        let out = set.input_error("broken");
        assert_eq!(out.errors.len(), set.policy_names().len());
        assert!(out.results.iter().all(|(_, r)| *r == "error"));
    }

    /// What users see of an evaluation error names files by their base
    /// name, on one line; nothing else of the message changes.
    #[test]
    fn public_errors_name_base_names_on_one_line() {
        let label = "/etc/otel-admission/policies/..2026_x/native.probes.rego".to_string();
        let lib = "/etc/otel-admission/policies/gk/t.yaml#k8sx.libs[0]".to_string();
        let labels = vec![label.clone(), lib.clone()];
        let regorus = format!(
            "\n--> {label}:12:3\n   |\n12 |   x := f(1)\n   |   ^\nerror: rule conflicts with rule at {label}:3:1"
        );
        assert_eq!(
            public_error(&regorus, &labels),
            "native.probes.rego:12:3: rule conflicts with rule at native.probes.rego:3:1"
        );
        let with_context =
            format!("while evaluating x: \n--> {lib}:2:1\n  |\n2 | y\n  | ^\nerror: bad");
        assert_eq!(
            public_error(&with_context, &labels),
            "while evaluating x: t.yaml#k8sx.libs[0]:2:1: bad"
        );
        // A path regorus wrote some other way still loses its directories.
        assert_eq!(
            public_error("cannot use ./policies/a/b.rego here", &[]),
            "cannot use b.rego here"
        );
        assert_eq!(
            public_error("evaluation time limit of 500ms exceeded", &labels),
            "evaluation time limit of 500ms exceeded"
        );
        assert_eq!(
            public_error("image apps/v1 registry.example/x:1 is bad", &labels),
            "image apps/v1 registry.example/x:1 is bad"
        );
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
}
