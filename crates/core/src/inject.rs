//! The injection core: deciding what a pod gets, and building the patch.
//!
//! Pure: it depends on the config, the schemas and the shared vocabulary,
//! never on the wire protocol, metrics or cluster I/O (`tests/architecture.rs`).
//!
//! - [`decide`]: opt-in precedence, to a [`plan::Plan`] or a [`plan::Skip`];
//!   its parts: [`precedence`] (pod over namespace), [`rules`] (the config's
//!   rules), [`language_choice`] (languages, containers, Instrumentation),
//!   [`features`] (sidecar, probes, annotations); [`context`] is its input,
//!   [`keys`] the annotation keys and names.
//! - [`apply`]: the plan to a mutated pod and its JSON Patch, every edit
//!   through the [`editor::Editor`]; [`applied`] records what was done.
//! - [`languages`]: one file per language (init containers, volumes, env).
//! - [`env_var`]: the env rules every feature shares; [`env`](mod@env): the SDK
//!   env block; [`service_name`]: names without API calls; [`exporter_tls`]:
//!   the exporter's Secret/ConfigMap mounts; [`security`], [`resources`]: what
//!   every added container gets.
//! - [`detect`]: language auto-detection, opt-in.
//! - [`sidecar`], [`collector`], [`probes`], [`annotations`]: the pod features
//!   (collector sidecar, default probes, Prometheus/Istio annotations).
//! - [`status`]: the `otel-admission.io/status` annotation and fingerprint.
//! - [`cluster_view`]: namespaces and Instrumentations, from memory only.
//! - [`outcome`]: [`outcome::run`], shared by `/mutate` ([`crate::mutate`]),
//!   `inject`, `explain` and `rollout plan`.
//! - [`manifest`]: pod templates in manifests, for `inject` and `explain`.
//!
//! `docs/INJECTION.md` maps questions to files and lists where we differ from
//! the OpenTelemetry Operator.

pub mod annotations;
pub mod applied;
pub mod apply;
pub mod cluster_view;
pub mod collector;
pub mod context;
pub mod decide;
pub mod detect;
pub mod editor;
pub mod env;
pub mod env_var;
pub mod exporter_tls;
pub mod features;
pub mod keys;
pub mod language_choice;
pub mod languages;
pub mod manifest;
pub mod outcome;
pub mod plan;
pub mod precedence;
pub mod probes;
pub mod resources;
pub mod rules;
pub mod security;
pub mod sent_pod;
pub mod service_name;
pub mod sidecar;
pub mod status;

#[cfg(test)]
mod feature_tests;
#[cfg(test)]
mod tests;
