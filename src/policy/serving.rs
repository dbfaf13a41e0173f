//! Serving policies: [`Policies`], the hot-reloadable
//! [`crate::admission::Validate`] implementation behind `/validate`.
//!
//! It holds the current [`PolicySet`] and swaps in a new one when the
//! directory's content (or the live config's evaluation time limit) changes;
//! a set that does not compile is logged and counted, and the previous one
//! keeps serving. Each request is evaluated on the current set, observed in
//! the metrics, and turned into the admission answer by [`Outcome::verdict`],
//! which follows `failureMode`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::PolicyError;
use super::files::{dirs_under, fingerprint};
use super::gatekeeper::{Action, NamespaceLabels};
use super::set::{Outcome, PolicySet, review_value};
use crate::admission::{Decoded, Validate, Verdict};
use crate::config::{Enforcement, FailureMode};
use crate::metrics::Metrics;

/// The admission answer for an evaluation's outcome, per SPEC §3/§7 and
/// the table on [`Enforcement`]: under `enforce` deny → denials; under
/// `audit` (the default) a deny is a warning that says it would deny; warn
/// → warnings; dryrun → nothing; an evaluation error follows
/// `failureMode`. Both lists are clamped (SPEC §10, [`crate::warnings`]):
/// one line of at most 256 characters each, at most 32 of them. Here, not
/// in the engine: the answer is the admission protocol's.
pub fn verdict(outcome: &Outcome, failure_mode: FailureMode, enforcement: Enforcement) -> Verdict {
    let mut v = Verdict::default();
    for x in &outcome.violations {
        match (x.action, enforcement) {
            (Action::Deny, Enforcement::Enforce) => {
                v.denials.push(format!("[{}] {}", x.policy, x.message))
            }
            (Action::Deny, Enforcement::Audit) => v
                .warnings
                .push(format!("[{}] would deny (audit): {}", x.policy, x.message)),
            (Action::Warn, _) => v.warnings.push(format!("[{}] {}", x.policy, x.message)),
            (Action::Dryrun, _) => {}
        }
    }
    // Errors come here already public (`PolicySet::public_error` in
    // `validate`): no directory of the server in what a user reads.
    for (policy, e) in &outcome.errors {
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

/// The action a violation is counted and logged under: a `deny` that audit
/// mode turned into a warning is `audit`.
fn effective(action: Action, enforcement: Enforcement) -> &'static str {
    match (action, enforcement) {
        (Action::Deny, Enforcement::Audit) => "audit",
        _ => action.as_str(),
    }
}

/// How long a reload's compile may take; see [`Policies::reload`].
pub const RELOAD_COMPILE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `compile` on a thread of its own and waits at most `limit` for it.
/// A compile cannot be cancelled: past the limit it is left to finish
/// alone, its result dropped, and the refusal returned at once.
pub fn bounded<T: Send + 'static>(
    dir: &Path,
    limit: Duration,
    compile: impl FnOnce() -> Result<T, PolicyError> + Send + 'static,
) -> Result<T, PolicyError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("policy-compile".into())
        .spawn(move || {
            let _ = tx.send(compile());
        });
    if let Err(e) = spawned {
        return Err(PolicyError::CompilePanicked {
            path: dir.to_path_buf(),
            message: format!("cannot start the compile thread: {e}"),
        });
    }
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(PolicyError::CompileTimeout {
            path: dir.to_path_buf(),
            limit,
        }),
        // The sender went away without a result: the compile panicked.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(PolicyError::CompilePanicked {
            path: dir.to_path_buf(),
            message: "the compiler panicked".into(),
        }),
    }
}

/// The directories watched for `dir`: it and every directory under it; or,
/// while it does not exist, only its parent, to see it appear. Not the
/// parent's tree: for `/mistyped` that walked the whole file system
/// (`/proc`, `/sys`) before the server listened, and for the default
/// `policies` in a container's `/` the same.
fn watched_dirs(dir: &Path) -> Vec<PathBuf> {
    if dir.is_dir() {
        dirs_under(dir)
    } else {
        vec![crate::server::tls::parent_dir(dir)]
    }
}

/// Where [`Policies`] finds namespace labels (the cluster's namespace cache).
pub type NamespaceLookup = Box<dyn Fn(&str) -> Option<BTreeMap<String, String>> + Send + Sync>;

/// The hot-reloadable policy engine behind `/validate`.
pub struct Policies {
    /// What `/validate` evaluates: the loaded set with the inventory.
    current: ArcSwap<PolicySet>,
    /// The set as loaded from the directory, without the inventory.
    loaded: ArcSwap<PolicySet>,
    /// The last `data.inventory`, applied again after each reload.
    inventory: Mutex<Option<regorus::Value>>,
    dir: PathBuf,
    eval_timeout: Duration,
    /// The memory budget of one evaluation, in bytes ([`super::budget`]);
    /// applied to every set loaded.
    memory_limit: AtomicU64,
    failure_mode: FailureMode,
    /// When set, `failureMode`, `policies.enforcement` and
    /// `policies.evalTimeout` follow config reloads.
    config: Option<Arc<ArcSwap<crate::config::Config>>>,
    /// `--policy-enforcement`: wins over the config file.
    enforcement: Option<Enforcement>,
    metrics: Arc<Metrics>,
    ns_labels: Option<NamespaceLookup>,
    /// The injection an expanded Pod gets before it is judged.
    injection: Option<Arc<super::expansion::Injection>>,
    /// Fingerprint of the last content tried, good or bad, so a broken file is
    /// reported once per change rather than once per poll.
    last_tried: Mutex<u64>,
    /// Whether the directory was named (flag, env, config) rather than the
    /// default: a named one that goes away is a reload error, not an empty
    /// set ([`Self::required`]).
    required: bool,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// Compiles `dir`; a missing directory is an empty set (allow all): the
    /// default's case (`cargo run -- serve` with no `policies/`). A named
    /// directory is checked before ([`super::files::require_dir`]) and
    /// marked [`Self::required`]. Anything else that is not a directory (a
    /// file) is a load error, not an empty set.
    pub fn load(
        dir: &Path,
        eval_timeout: Duration,
        failure_mode: FailureMode,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PolicyError> {
        let set = if super::files::is_absent(dir) {
            tracing::info!(dir = %dir.display(), "no policy directory; /validate allows everything");
            PolicySet::empty(eval_timeout)
        } else {
            PolicySet::load_dir(dir, eval_timeout)?
        };
        tracing::info!(dir = %dir.display(), policies = ?set.policy_names(), "policies compiled");
        Ok(Self {
            last_tried: Mutex::new(set.fingerprint() ^ (eval_timeout.as_nanos() as u64)),
            loaded: ArcSwap::from_pointee(set.clone()),
            current: ArcSwap::from_pointee(set),
            inventory: Mutex::new(None),
            dir: dir.to_path_buf(),
            eval_timeout,
            memory_limit: AtomicU64::new(super::budget::DEFAULT_MEMORY_LIMIT),
            failure_mode,
            config: None,
            enforcement: None,
            metrics,
            ns_labels: None,
            injection: None,
            required: false,
        })
    }

    /// Marks the directory as named (a flag, the config), not the default:
    /// if it goes away while serving, the reload is refused (logged,
    /// counted) and the policies loaded keep serving, where the default's
    /// absence is an empty set.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets the memory budget of one evaluation (bytes; default
    /// [`super::budget::DEFAULT_MEMORY_LIMIT`]), `policies.memoryLimit` at
    /// start-up. A changed config reaches it through [`Self::reload`], as
    /// `evalTimeout` does.
    pub fn with_memory_limit(self, bytes: u64) -> Self {
        if self.memory_limit.swap(bytes, Ordering::Relaxed) != bytes {
            let loaded = self.loaded.load_full();
            self.loaded
                .store(Arc::new((*loaded).clone().with_memory_limit(bytes)));
            self.apply_inventory();
        }
        self
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    /// Sets where namespace labels come from (the cluster's namespace cache).
    pub fn with_namespace_labels(mut self, f: NamespaceLookup) -> Self {
        self.ns_labels = Some(f);
        self
    }

    /// Sets the injection an expanded Pod gets (`/mutate`'s, from the
    /// composition root) before the policies judge it.
    pub fn with_injection(mut self, f: Arc<super::expansion::Injection>) -> Self {
        self.injection = Some(f);
        self
    }

    /// Follows the live config for `failureMode` (per request) and
    /// `policies.evalTimeout` (applied at the next reload).
    pub fn with_config(mut self, config: Arc<ArcSwap<crate::config::Config>>) -> Self {
        self.config = Some(config);
        self
    }

    /// Sets `--policy-enforcement`, which wins over `policies.enforcement`.
    pub fn with_enforcement(mut self, enforcement: Option<Enforcement>) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// The flag, else the live config, else the default (`audit`).
    pub fn enforcement(&self) -> Enforcement {
        self.enforcement.unwrap_or_else(|| {
            self.config
                .as_ref()
                .map_or(Enforcement::default(), |c| c.load().policies.enforcement)
        })
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

    /// `policies.memoryLimit` of the live config, else the one set.
    fn configured_memory_limit(&self) -> u64 {
        self.config
            .as_ref()
            .map_or(self.memory_limit(), |c| c.load().policies.memory_limit)
    }

    /// Re-reads the directory. `Ok(true)` when a new set was swapped in; on
    /// error the previous set keeps serving, and the error is logged and counted.
    ///
    /// The compile runs on a thread of its own and is given
    /// [`RELOAD_COMPILE_LIMIT`]: a directory the compiler has not finished
    /// by then is refused and its late result dropped, so what a file costs
    /// is at most its refusal.
    pub fn reload(&self) -> Result<bool, PolicyError> {
        let timeout = self.eval_timeout();
        let memory_limit = self.configured_memory_limit();
        let fp =
            fingerprint(&self.dir) ^ (timeout.as_nanos() as u64) ^ memory_limit.rotate_left(29);
        {
            let mut last = self.last_tried.lock().unwrap_or_else(|p| p.into_inner());
            if *last == fp {
                return Ok(false);
            }
            *last = fp;
        }
        let load = || {
            let (dir, required) = (self.dir.clone(), self.required);
            bounded(&self.dir, RELOAD_COMPILE_LIMIT, move || {
                let set = if !required && super::files::is_absent(&dir) {
                    PolicySet::empty(timeout)
                } else {
                    PolicySet::load_dir(&dir, timeout)?
                };
                Ok(set.with_memory_limit(memory_limit))
            })
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
                self.memory_limit.store(memory_limit, Ordering::Relaxed);
                self.loaded.store(Arc::new(set));
                self.apply_inventory();
                Ok(true)
            }
            Err(e) => {
                self.metrics.policy_reload_errors.inc();
                tracing::error!(error = %e, "policy reload rejected; keeping the previous policies");
                Err(e)
            }
        }
    }

    /// Sets `data.inventory` for every policy (from the cluster's synced
    /// kinds); kept across reloads. On a failure (a policy file's own data
    /// conflicting with it) the previous set keeps serving, logged and
    /// counted as a reload error.
    pub fn set_inventory(&self, inventory: regorus::Value) {
        *self.inventory.lock().unwrap_or_else(|p| p.into_inner()) = Some(inventory);
        self.apply_inventory();
    }

    /// `current` = the loaded set with the last inventory, if any.
    fn apply_inventory(&self) {
        let loaded = self.loaded.load_full();
        let inventory = self
            .inventory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(inventory) = inventory else {
            self.current.store(loaded);
            return;
        };
        match loaded.with_inventory(&inventory) {
            Ok(set) => self.current.store(Arc::new(set)),
            Err(e) => {
                self.metrics.policy_reload_errors.inc();
                tracing::error!(error = %e, "data.inventory not applied; the previous policies keep serving");
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
        crate::server::reload::spawn("policies", watched_dirs(&self.dir), poll, stop, move || {
            let _ = me.reload();
        })
    }
}

impl Validate for Policies {
    fn validate(&self, review: &Decoded<'_>) -> Verdict {
        let set = self.current.load();
        if set.is_empty() {
            return Verdict::default();
        }
        let none = |_: &str| None;
        let labels: NamespaceLabels<'_> = match &self.ns_labels {
            Some(f) => f.as_ref(),
            None => &none,
        };
        let unreadable = |e: String| {
            verdict(
                &Outcome {
                    errors: vec![("otel-admission".into(), format!("cannot read review: {e}"))],
                    ..Default::default()
                },
                self.failure_mode(),
                self.enforcement(),
            )
        };
        let k = &review.request.kind;
        let expands = set
            .expansions()
            .iter()
            .any(|e| e.applies_to(&k.group, &k.version, &k.kind));
        // The body is parsed once: into the value every policy shares, or,
        // for a workload to expand, into the JSON the expansion reads and
        // that value is made from.
        let outcome = if expands {
            match serde_json::from_slice::<serde_json::Value>(review.body) {
                Ok(json) => set.evaluate_json_expanded(&json, labels, self.injection.as_deref()),
                Err(e) => return unreadable(e.to_string()),
            }
        } else {
            match review_value(review.body) {
                Ok(input) => set.evaluate_value(&input, labels),
                Err(e) => return unreadable(e),
            }
        };
        self.metrics
            .policy_evaluation_duration
            .observe(outcome.elapsed.as_secs_f64());
        let enforcement = self.enforcement();
        for (policy, result) in &outcome.results {
            let result = match (*result, enforcement) {
                ("deny", Enforcement::Audit) => "audit",
                (r, _) => r,
            };
            self.metrics.observe_policy(policy, result);
        }
        let r = &review.request;
        for v in &outcome.violations {
            tracing::info!(uid = %r.uid, namespace = r.namespace.as_deref().unwrap_or_default(),
                workload = %r.workload(), policy = %v.policy,
                action = effective(v.action, enforcement), violation = %v.message, "policy violation");
        }
        for (policy, e) in &outcome.errors {
            tracing::error!(uid = %r.uid, policy = %policy, error = %e, "policy evaluation failed");
        }
        // The log has the files' paths; the answer names the policy and, at
        // most, the file's base name.
        let mut outcome = outcome;
        for (_, e) in &mut outcome.errors {
            *e = set.public_error(e);
        }
        verdict(&outcome, self.failure_mode(), enforcement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn review(obj: Json) -> Json {
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "CREATE", "namespace": "shop",
                "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": obj}})
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
        .expect("load")
        .with_enforcement(Some(Enforcement::Enforce));
        (d, p)
    }

    /// A directory that is not there is watched through its parent alone:
    /// for `/mistyped`, `/` was walked whole (`/proc`, `/sys`) on the async
    /// runtime before the server listened.
    #[test]
    fn a_missing_directory_is_watched_through_its_parent_only() {
        assert_eq!(
            watched_dirs(Path::new("/mistyped/policies")),
            vec![PathBuf::from("/mistyped")]
        );
        assert_eq!(
            watched_dirs(Path::new("/mistyped")),
            vec![PathBuf::from("/")]
        );
        assert_eq!(
            watched_dirs(Path::new("policies-absent")),
            vec![PathBuf::from(".")]
        );
        let d = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(d.path().join("gk")).expect("mkdir");
        assert_eq!(
            watched_dirs(d.path()),
            vec![d.path().to_path_buf(), d.path().join("gk")]
        );
    }

    /// A named directory (flag, config) that goes away while serving is a
    /// reload error, and the policies loaded keep serving; the default's
    /// is an empty set, as at start-up. A file where the directory should
    /// be is an error either way.
    #[test]
    fn a_named_directory_that_goes_away_keeps_the_policies_serving() {
        let deny = "package kubernetes.admission.gone\nimport rego.v1\ndeny contains \"no\" if input.request\n";
        for required in [true, false] {
            let (d, p) = policies_from(&[("gone.rego", deny)]);
            let p = if required { p.required() } else { p };
            std::fs::remove_file(d.path().join("gone.rego")).expect("rm");
            std::fs::remove_dir(d.path()).expect("rmdir");
            let reloaded = p.reload();
            assert_eq!(reloaded.is_err(), required, "{reloaded:?}");
            assert_eq!(p.current().is_empty(), !required, "required {required}");
        }
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("policies"), "").expect("w");
        let err = Policies::load(
            &d.path().join("policies"),
            Duration::from_secs(1),
            FailureMode::Allow,
            Arc::new(Metrics::new()),
        )
        .expect_err("a file is not a directory");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    /// A compile past its limit is refused at its limit, not when it ends;
    /// one within it returns its result; one that panics is an error.
    #[test]
    fn a_compile_is_bounded() {
        let dir = Path::new("/etc/otel-admission/policies");
        let started = std::time::Instant::now();
        let slow = bounded(dir, Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(3));
            Ok(1)
        });
        assert!(started.elapsed() < Duration::from_secs(1));
        let err = slow.expect_err("refused");
        assert!(
            err.to_string()
                .contains("compiling took longer than 100ms; refused"),
            "{err}"
        );
        assert_eq!(
            bounded(dir, Duration::from_secs(5), || Ok(7)).expect("fast"),
            7
        );
        let panicked: Result<u8, _> = bounded(dir, Duration::from_secs(5), || panic!("boom"));
        assert!(matches!(panicked, Err(PolicyError::CompilePanicked { .. })));
    }

    fn one(action: Action) -> Outcome {
        use crate::policy::set::Violation;
        Outcome {
            violations: vec![Violation {
                policy: "p".into(),
                action,
                message: "m".into(),
            }],
            ..Default::default()
        }
    }

    fn error() -> Outcome {
        Outcome {
            errors: vec![("p".into(), "e".into())],
            ..Default::default()
        }
    }

    /// The table on [`Enforcement`], case by case: what one violation of
    /// each action becomes under each enforcement, and an evaluation error
    /// under each `failureMode` whatever the enforcement.
    #[rstest::rstest]
    #[rustfmt::skip]
    //     name                       outcome               mode                enforcement           denials, warnings
    #[case::audit_deny_warns(         one(Action::Deny),    FailureMode::Allow, Enforcement::Audit,   &[], &["[p] would deny (audit): m"])]
    #[case::audit_warn_warns(         one(Action::Warn),    FailureMode::Allow, Enforcement::Audit,   &[], &["[p] m"])]
    #[case::audit_dryrun_is_silent(   one(Action::Dryrun),  FailureMode::Allow, Enforcement::Audit,   &[], &[])]
    #[case::enforce_deny_denies(      one(Action::Deny),    FailureMode::Allow, Enforcement::Enforce, &["[p] m"], &[])]
    #[case::enforce_warn_warns(       one(Action::Warn),    FailureMode::Allow, Enforcement::Enforce, &[], &["[p] m"])]
    #[case::enforce_dryrun_silent(    one(Action::Dryrun),  FailureMode::Allow, Enforcement::Enforce, &[], &[])]
    #[case::error_allow_audit(        error(),              FailureMode::Allow, Enforcement::Audit,   &[], &["otel-admission: policy p not enforced: e"])]
    #[case::error_allow_enforce(      error(),              FailureMode::Allow, Enforcement::Enforce, &[], &["otel-admission: policy p not enforced: e"])]
    #[case::error_deny_audit(         error(),              FailureMode::Deny,  Enforcement::Audit,   &["[p] policy evaluation failed: e"], &[])]
    #[case::error_deny_enforce(       error(),              FailureMode::Deny,  Enforcement::Enforce, &["[p] policy evaluation failed: e"], &[])]
    fn verdict_follows_the_enforcement_table(
        #[case] outcome: Outcome,
        #[case] mode: FailureMode,
        #[case] enforcement: Enforcement,
        #[case] denials: &[&str],
        #[case] warnings: &[&str],
    ) {
        let v = verdict(&outcome, mode, enforcement);
        assert_eq!(v.denials, denials);
        assert_eq!(v.warnings, warnings);
    }

    #[test]
    fn effective_action_follows_the_enforcement() {
        assert_eq!(effective(Action::Deny, Enforcement::Audit), "audit");
        assert_eq!(effective(Action::Deny, Enforcement::Enforce), "deny");
        assert_eq!(effective(Action::Warn, Enforcement::Audit), "warn");
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

    use crate::test_log::Captured;

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
        // Another test thread can cache a callsite's interest (or the max
        // level) while no subscriber is set; rebuild it under ours, or this
        // line is sometimes filtered out before it reaches the writer.
        let v = tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            p.validate(&decoded)
        });
        assert_eq!(v.denials, vec!["[kubernetes.admission.two] no pods today"]);
        let text = out.text();
        let line = text
            .lines()
            .find(|l| l.contains("policy violation"))
            .unwrap_or_else(|| panic!("no violation line in {text}"));
        assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        let json: Json = serde_json::from_str(line).expect("json line");
        assert_eq!(json["message"], "policy violation", "{line}");
        assert_eq!(json["violation"], "no pods today", "{line}");
        assert!(json.get("namespace").is_some(), "{line}");
    }
    /// An evaluation error: the answer names the policy and the file's base
    /// name; what the server logs (the outcome's errors, before the answer
    /// is made) has the file's path.
    #[test]
    fn evaluation_errors_keep_the_path_in_the_log_only() {
        let (d, p) = policies_from(&[(
            "bad.rego",
            "package kubernetes.admission.bad\nimport rego.v1\nx := 1 if true\nx := 2 if input.request\ndeny contains \"bad\" if x == 1\n",
        )]);
        let body = decoded_body();
        let decoded = crate::admission::decode(&body).expect("decodes");
        assert_eq!(
            p.validate(&decoded).warnings,
            vec![
                "otel-admission: policy kubernetes.admission.bad not enforced: bad.rego:4:1: rule conflicts with rule at bad.rego:3:1"
            ]
        );
        let logged = p
            .current()
            .evaluate_value(&review_value(&body).expect("value"), &|_: &str| None);
        let path = format!("{}/bad.rego", d.path().display());
        assert!(
            logged.errors.iter().all(|(_, e)| e.contains(&path)),
            "{:?}",
            logged.errors
        );
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
