//! What `check` found: one line per check, as `linkerd check` prints them
//! (✓ passed, ‼ a warning, × a failure with a one-line hint), grouped,
//! then a summary; or the same as JSON.

use serde::Serialize;

/// The result of one check. Closed: the symbol, the JSON word and the exit
/// code all come from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Error,
}

impl Status {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Ok => "✓",
            Self::Warning => "‼",
            Self::Error => "×",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The section: `kubernetes-api`, `webhooks`, ...
    pub group: &'static str,
    pub status: Status,
    /// What was found, in one line.
    pub message: String,
    /// What to do, for a warning or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Finding {
    pub fn ok(group: &'static str, message: impl Into<String>) -> Self {
        Self {
            group,
            status: Status::Ok,
            message: message.into(),
            hint: None,
        }
    }
    pub fn warn(group: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            group,
            status: Status::Warning,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
    pub fn fail(group: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            group,
            status: Status::Error,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Every finding, in the order the checks ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Finding>,
}

#[derive(Serialize)]
struct Summary {
    ok: usize,
    warning: usize,
    error: usize,
}

impl Report {
    pub fn push(&mut self, f: Finding) {
        self.checks.push(f);
    }

    fn count(&self, s: Status) -> usize {
        self.checks.iter().filter(|f| f.status == s).count()
    }

    /// No check failed (warnings pass, as in `linkerd check`).
    pub fn passed(&self) -> bool {
        self.count(Status::Error) == 0
    }

    /// The text report: a heading per group, a line per check, the hint
    /// under it, and the summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut group = "";
        for f in &self.checks {
            if f.group != group {
                if !group.is_empty() {
                    out.push('\n');
                }
                group = f.group;
                out.push_str(group);
                out.push('\n');
                out.push_str(&"-".repeat(group.chars().count()));
                out.push('\n');
            }
            out.push_str(f.status.symbol());
            out.push(' ');
            out.push_str(&f.message);
            out.push('\n');
            if let Some(h) = &f.hint {
                out.push_str("    hint: ");
                out.push_str(h);
                out.push('\n');
            }
        }
        let (ok, warning, error) = (
            self.count(Status::Ok),
            self.count(Status::Warning),
            self.count(Status::Error),
        );
        let overall = if error > 0 {
            Status::Error
        } else if warning > 0 {
            Status::Warning
        } else {
            Status::Ok
        };
        out.push_str(&format!(
            "\nStatus check results are {} ({ok} passed, {warning} warning{}, {error} failed)\n",
            overall.symbol(),
            if warning == 1 { "" } else { "s" },
        ));
        out
    }

    /// `-o json`: `{"checks": [...], "summary": {...}, "success": bool}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "checks": self.checks,
            "summary": Summary {
                ok: self.count(Status::Ok),
                warning: self.count(Status::Warning),
                error: self.count(Status::Error),
            },
            "success": self.passed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_groups_lines_hints_and_summary() {
        let mut r = Report::default();
        r.push(Finding::ok(
            "kubernetes-api",
            "can reach the API server: v1.33.0",
        ));
        r.push(Finding::warn(
            "crds",
            "no OpenTelemetryCollector CRD",
            "apply it",
        ));
        r.push(Finding::fail(
            "webhooks",
            "no MutatingWebhookConfiguration otel-admission",
            "install",
        ));
        let text = r.text();
        assert_eq!(
            text,
            "kubernetes-api\n--------------\n✓ can reach the API server: v1.33.0\n\ncrds\n----\n‼ no OpenTelemetryCollector CRD\n    hint: apply it\n\nwebhooks\n--------\n× no MutatingWebhookConfiguration otel-admission\n    hint: install\n\nStatus check results are × (1 passed, 1 warning, 1 failed)\n"
        );
        assert!(!r.passed());
        let j = r.json();
        assert_eq!(j["summary"]["warning"], 1);
        assert_eq!(j["checks"][1]["status"], "warning");
        assert_eq!(j["success"], false);
        assert!(j["checks"][0].get("hint").is_none());
    }
}
