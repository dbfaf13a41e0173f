//! otel-admission: a Kubernetes admission webhook that gives a cluster
//! OpenTelemetry with zero code changes, and validates pods with Rego.
//!
//! The crates are the layers (docs/ARCHITECTURE.md):
//! - `otel-admission-core` (`crates/core`): [`inject`] (what to inject, and
//!   the patch; pure), [`config`], [`instrumentation`] and [`otelcol`] (the
//!   Operator's schemas), [`language`], [`selector`], [`yaml`],
//!   [`warnings`], [`patch`], [`json_text`]; re-exported here.
//! - `otel-admission-policy` (`crates/policy`): the Rego engine, re-exported
//!   as [`policy`] with its `/validate` adapter, [`policy::serving`].
//! - here, the adapters: [`admission`] (the wire protocol and the dispatch
//!   traits), [`mutate`] (the `/mutate` handler), [`server`] (TLS and admin
//!   listeners, reload, drain), [`cluster`] (watch caches), [`events`],
//!   [`metrics`], [`rollout`], [`check`]; [`app`], the composition root
//!   `serve` and the tests share; [`cli`], the command line, the only place
//!   that uses `anyhow` for its own errors; [`certs`], development
//!   certificates.
#![forbid(unsafe_code)]

// The core crate's modules, at the paths the adapters, the tests and the
// benches use.
pub use otel_admission_core::{
    config, inject, instrumentation, json_text, language, otelcol, patch, selector, spelling,
    warnings, yaml,
};

pub mod admission;
pub mod app;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod events;
pub mod metrics;
pub mod mutate;
pub mod policy;
pub mod rollout;
pub mod server;
#[cfg(test)]
mod test_log;
