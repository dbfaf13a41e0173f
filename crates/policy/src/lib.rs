//! The policy validation engine (SPEC §7): Rego evaluated in-process by
//! [regorus](https://github.com/microsoft/regorus), in two forms.
//!
//! - [`native`]: OPA kube-mgmt style modules under `kubernetes.admission`,
//!   `input` = the whole AdmissionReview, `deny`/`warn` sets.
//! - [`gatekeeper`]: ConstraintTemplates and Constraints, `input =
//!   {review, parameters}`, `violation[{"msg": ...}]`.
//!
//! Code map, each module depending only on those above it:
//! - [`budget`]: the memory an evaluation may build (the builtins that can
//!   build a large value in one call charge it); [`calls`]: a call nothing
//!   defines (a typo, `http.send`) refused at load, as OPA refuses it.
//! - [`compat`]: the Rego scanner and tokenizer, and the rewrites and the
//!   `sprintf` that make regorus answer as OPA does.
//! - [`limits`]: nesting refused before regorus parses it (its parser is
//!   exponential in it).
//! - [`native`], [`gatekeeper`]: the two forms, parsed and compiled;
//!   [`expansion`]: Gatekeeper's ExpansionTemplates, a workload judged as the
//!   (injected) pod it will create.
//! - [`files`]: finding and reading policy files (the kubelet's `..data`
//!   snapshot, change fingerprints, ConfigMap bundles).
//! - [`set`]: a directory compiled once into a [`PolicySet`], and every
//!   policy evaluated per request on a clone of the compiled engine.
//! - Serving a set at `/validate` (hot reload, metrics, the admission
//!   answer) is the adapter's: the root package's `policy::serving`.
//! - [`testing`] is `policy test`, [`suite`] is `policy verify`.
//!
//! ## Differences from OPA, and what we do about them
//!
//! Pinned by `tests/opa_differences.rs`; also described in `docs/POLICIES.md`.
//! - **Builtin errors**: OPA makes a failing builtin (`object.get` on null,
//!   `to_number("x")`) undefined; regorus raises by default. Engine option:
//!   `set_strict_builtin_errors(false)`.
//! - **`sprintf`**: OPA's is Go's `fmt.Sprintf` (`%!s(MISSING)`); regorus
//!   raises. A Go-compatible extension replaces it ([`compat`]).
//! - **v0 multi-body rules** and **a line starting with `(`**: regorus rejects
//!   or misreads them; a lexical pre-processing step rewrites them ([`compat`]).
//! - **`not` with an undefined argument** already agrees; a test pins it.
//! - **v0 vs v1**: a native module is parsed as v1 and, when that fails, as
//!   v0 (OPA's `--v0-compatible`); Gatekeeper Rego follows `source.version`.
//! - **Undefined functions**: OPA refuses them at compile time; regorus
//!   fails each evaluation. A load check on regorus' AST refuses them
//!   ([`calls`]).

#![forbid(unsafe_code)]

// The core's vocabularies, at the paths the engine's modules name them.
use otel_admission_core::{config, selector, yaml};

pub mod budget;
pub mod calls;
pub mod compat;
pub mod expansion;
pub mod files;
pub mod gatekeeper;
pub mod limits;
pub mod native;
pub mod set;
pub mod suite;
pub mod testing;

use std::path::PathBuf;
use std::time::Duration;

pub use set::{Outcome, PolicySet, Violation};

/// Why a policy directory, file or document cannot be used. Every variant
/// names the file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: Rego does not compile: {message}")]
    Rego { path: PathBuf, message: String },
    #[error("{path}: document {doc}: {field}: {message}")]
    Document {
        path: PathBuf,
        doc: usize,
        field: String,
        message: String,
    },
    #[error(
        "{path}: document {doc}: constraint {name:?} refers to kind {kind:?}, which no ConstraintTemplate defines"
    )]
    UnknownTemplate {
        path: PathBuf,
        doc: usize,
        name: String,
        kind: String,
    },
    #[error("{path}: document {doc}: duplicate {what} {name:?}")]
    Duplicate {
        path: PathBuf,
        doc: usize,
        what: &'static str,
        name: String,
    },
    #[error("{path}: compiling took longer than {limit:?}; refused")]
    CompileTimeout { path: PathBuf, limit: Duration },
    #[error("{path}: compiling failed unexpectedly: {message}")]
    CompilePanicked { path: PathBuf, message: String },
}

/// Formats regorus' error chain on one line.
pub(crate) fn rego_message(e: &anyhow::Error) -> String {
    format!("{e:#}")
}
