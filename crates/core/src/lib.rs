//! The core of otel-admission: what to inject into a pod, and the JSON
//! Patch that does it, for `/mutate`, `inject`, `explain`, the rollout's
//! fingerprints and the policies' expansion alike. Pure: no async runtime,
//! no Kubernetes client, no HTTP, no metrics (the crate has none of them as
//! dependencies).
//!
//! - [`inject`], decide (a [`inject::plan::Plan`] or a skip, with the reason)
//!   and apply (the mutated pod and its patch), one outcome from both;
//! - [`config`]: the config file's schema, its defaults and its checks;
//! - [`instrumentation`] and [`otelcol`]: the Operator's `Instrumentation`
//!   and `OpenTelemetryCollector`, as the server reads them;
//! - [`language`], [`selector`], [`spelling`], [`yaml`], [`warnings`]: the
//!   small vocabularies they share;
//! - [`patch`], [`json_text`]: the patch as the text the answer sends.
#![forbid(unsafe_code)]

pub mod config;
pub mod inject;
pub mod instrumentation;
pub mod json_text;
pub mod language;
pub mod otelcol;
pub mod patch;
pub mod selector;
pub mod spelling;
pub mod warnings;
pub mod yaml;
