//! `policy test`: runs every `test_` rule, with `opa test` conventions: a
//! test passes when its rule is defined and not `false`, fails when it is
//! false or undefined, and errors when evaluation raises.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use super::PolicyError;
use super::files::{files_under, is_rego, is_test_rego};
use super::native;
use super::set::new_engine;

/// The outcome of one test rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Error(String),
}

/// One test rule's result.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub file: PathBuf,
    /// `data.<package>.<rule>`.
    pub name: String,
    pub status: Status,
    pub elapsed: Duration,
}

/// Every result, in file order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub results: Vec<TestResult>,
}

static TEST_RULE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?m)^\s*(test_[A-Za-z0-9_]*)\s*(?:if\b|\{|:=|=|\[|contains\b)")
        .unwrap_or_else(|_| unreachable!())
});

/// The `test_` rule names declared in a module's source, in order.
pub fn test_rules(src: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    TEST_RULE
        .captures_iter(src)
        .filter_map(|c| {
            let n = c[1].to_string();
            seen.insert(n.clone()).then_some(n)
        })
        .collect()
}

/// Loads every `.rego` file under `dir` (a file is accepted too) and runs
/// the tests in `*_test.rego` files. A module that does not compile is an
/// error for the whole run: no test result could be trusted.
pub fn run(dir: &Path, timeout: Duration) -> Result<Report, PolicyError> {
    let files = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        files_under(dir)?
    };
    let mut engine = new_engine();
    let mut tests = Vec::new();
    let mut origins = super::calls::Origins::new();
    for path in files.iter().filter(|p| is_rego(p)) {
        let src = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        let m = native::add_module(&mut engine, path, &src)?;
        origins.insert(
            path.display().to_string(),
            super::calls::Origin {
                path: path.clone(),
                what: None,
            },
        );
        if is_test_rego(path) || dir.is_file() {
            for rule in test_rules(&src) {
                tests.push((path.clone(), format!("data.{}.{rule}", m.package)));
            }
        }
    }
    // A call nothing defines fails every test that reaches it, and the
    // policy at admission: refused here, as `serve` refuses it.
    super::calls::check_calls(&engine, &origins)?;
    engine.set_input(regorus::Value::new_object());
    engine
        .eval_query("true".into(), false)
        .map_err(|e| PolicyError::Rego {
            path: dir.to_path_buf(),
            message: super::rego_message(&e),
        })?;
    let mut report = Report::default();
    for (file, name) in tests {
        let start = Instant::now();
        let mut e = engine.clone();
        let _budget = super::budget::Scope::new(super::budget::DEFAULT_MEMORY_LIMIT);
        e.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: timeout,
            check_interval: std::num::NonZeroU32::MIN.saturating_add(63),
        });
        let status = match e.eval_rule(name.clone()) {
            Ok(regorus::Value::Bool(false) | regorus::Value::Undefined) => Status::Fail,
            Ok(_) => Status::Pass,
            Err(err) => Status::Error(super::rego_message(&err)),
        };
        report.results.push(TestResult {
            file,
            name,
            status,
            elapsed: start.elapsed(),
        });
    }
    Ok(report)
}

impl Report {
    pub fn passed(&self) -> usize {
        self.count(|s| *s == Status::Pass)
    }

    pub fn failed(&self) -> usize {
        self.count(|s| *s == Status::Fail)
    }

    pub fn errored(&self) -> usize {
        self.count(|s| matches!(s, Status::Error(_)))
    }

    fn count(&self, f: impl Fn(&Status) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.status)).count()
    }

    /// True when there were tests and all passed.
    pub fn ok(&self) -> bool {
        !self.results.is_empty() && self.passed() == self.results.len()
    }

    /// `opa test -v` style text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut file: Option<&Path> = None;
        for r in &self.results {
            if file != Some(r.file.as_path()) {
                if file.is_some() {
                    out.push('\n');
                }
                let _ = writeln!(out, "{}:", r.file.display());
                file = Some(&r.file);
            }
            let took = format!("{:.3}ms", r.elapsed.as_secs_f64() * 1000.0);
            let _ = match &r.status {
                Status::Pass => writeln!(out, "{}: PASS ({took})", r.name),
                Status::Fail => writeln!(out, "{}: FAIL ({took})", r.name),
                Status::Error(e) => writeln!(out, "{}: ERROR ({took})\n  {e}", r.name),
            };
        }
        let _ = writeln!(out, "{}", "-".repeat(80));
        let n = self.results.len();
        if n == 0 {
            let _ = writeln!(out, "no test cases found");
            return out;
        }
        if self.passed() > 0 {
            let _ = writeln!(out, "PASS: {}/{n}", self.passed());
        }
        if self.failed() > 0 {
            let _ = writeln!(out, "FAIL: {}/{n}", self.failed());
        }
        if self.errored() > 0 {
            let _ = writeln!(out, "ERROR: {}/{n}", self.errored());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_rules_in_v0_and_v1() {
        let src = "package p\ntest_a if { true }\ntest_b { true }\n  test_c := true\ntest_a if { false }\nnot_test_d { true }\n";
        assert_eq!(test_rules(src), ["test_a", "test_b", "test_c"]);
    }

    #[test]
    fn pass_fail_error() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("p.rego"),
            "package kubernetes.admission.p\nimport rego.v1\ndeny contains \"no\" if input.x == 1\n",
        )
        .expect("w");
        std::fs::write(
            dir.path().join("p_test.rego"),
            "package kubernetes.admission.p_test\nimport rego.v1\nimport data.kubernetes.admission.p\n\
             test_pass if { \"no\" in p.deny with input as {\"x\": 1} }\n\
             test_fail if { \"no\" in p.deny with input as {\"x\": 2} }\n\
             test_error if { 1 / 0 == 1 }\n",
        )
        .expect("w");
        let r = run(dir.path(), Duration::from_secs(5)).expect("runs");
        let status: Vec<_> = r
            .results
            .iter()
            .map(|r| {
                (
                    r.name.rsplit('.').next().unwrap_or("").to_string(),
                    r.status.clone(),
                )
            })
            .collect();
        assert_eq!(status[0], ("test_pass".into(), Status::Pass));
        assert_eq!(status[1], ("test_fail".into(), Status::Fail));
        assert_eq!(status.len(), 3);
        assert!(!r.ok());
        let text = r.render();
        assert!(text.contains("PASS: 1/3"), "{text}");
        assert!(text.contains("FAIL:"), "{text}");
    }
}
