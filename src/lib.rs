//! otel-admission: a Kubernetes admission webhook that gives a cluster
//! OpenTelemetry with zero code changes, and validates pods with Rego.
//!
//! Layout:
//! - [`admission`]: the `admission.k8s.io/v1` wire protocol and the dispatch
//!   traits the server calls.
//! - [`inject`]: the injection core (what to inject, and the patch).
//! - [`server`]: TLS and admin listeners, reload, shutdown.
//! - [`config`], [`instrumentation`]: the config file and the operator's schema.
//! - [`policy`]: the Rego policy engine behind `/validate`, `policy test|verify|eval`.
//! - [`certs`]: development certificates. [`metrics`]: Prometheus metrics.
//! - [`cli`]: the command line, the only place that uses `anyhow`.
#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod events;
pub mod inject;
pub mod instrumentation;
pub mod metrics;
pub mod otelcol;
pub mod policy;
pub mod rollout;
pub mod server;
pub mod warnings;
pub mod yaml;
