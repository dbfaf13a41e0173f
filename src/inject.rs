//! The injection core: deciding what a pod gets, and building the patch.
//!
//! - [`decide`]: opt-in precedence, to a [`plan::Plan`] or a [`plan::Skip`].
//! - [`apply`]: the plan to a mutated pod and its JSON Patch.
//! - [`languages`]: one file per language (init containers, volumes, env).
//! - [`env`](mod@env): environment rules; [`service_name`]: names without API calls;
//!   [`exporter_tls`]: the exporter's Secret/ConfigMap mounts.
//! - [`detect`]: language auto-detection, opt-in.
//! - [`sidecar`], [`probes`], [`annotations`]: the pod features (collector
//!   sidecar, default probes, Prometheus/Istio annotations).
//! - [`status`]: the `otel-admission.io/status` annotation.
//! - [`cluster_view`]: namespaces and Instrumentations, from memory only.
//! - [`mutate`]: [`mutate::run`], shared by `/mutate`, `inject` and `explain`,
//!   and the [`mutate::Injector`] the server dispatches to.
//! - [`manifest`]: pod templates in manifests, for `inject` and `explain`.
//!
//! `docs/INJECTION.md` maps questions to files and lists where we differ from
//! the OpenTelemetry Operator.

pub mod annotations;
pub mod apply;
pub mod cluster_view;
pub mod collector;
pub mod decide;
pub mod detect;
pub mod env;
pub mod exporter_tls;
pub mod language;
pub mod languages;
pub mod manifest;
pub mod mutate;
pub mod plan;
pub mod probes;
pub mod selector;
pub mod sent_pod;
pub mod service_name;
pub mod sidecar;
pub mod status;

#[cfg(test)]
mod feature_tests;
#[cfg(test)]
mod tests;
