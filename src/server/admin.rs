//! The plain-HTTP admin listener: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;

/// Readiness is the AND of named gates (TLS loaded, policies compiled, caches
/// synced), and false once shutdown starts.
#[derive(Debug, Default)]
pub struct Readiness {
    gates: std::sync::RwLock<Vec<(&'static str, Arc<AtomicBool>)>>,
    draining: AtomicBool,
}

/// One condition readiness waits for.
#[derive(Clone, Debug)]
pub struct Gate(Arc<AtomicBool>);

// === impl Readiness ===

impl Readiness {
    /// Adds a condition, initially not met.
    pub fn gate(&self, name: &'static str) -> Gate {
        let flag = Arc::new(AtomicBool::new(false));
        self.gates
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, flag.clone()));
        Gate(flag)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready; otherwise the reasons.
    pub fn check(&self) -> Result<(), String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        let gates = self.gates.read().unwrap_or_else(|p| p.into_inner());
        let waiting: Vec<&str> = gates
            .iter()
            .filter(|(_, f)| !f.load(Ordering::SeqCst))
            .map(|(n, _)| *n)
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("waiting for: {}", waiting.join(", ")))
        }
    }
}

impl Gate {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { readiness, metrics })
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_every_gate_and_drops_on_drain() {
        let r = Readiness::default();
        assert!(r.check().is_ok(), "no gates: ready");
        let tls = r.gate("tls");
        let pol = r.gate("policies");
        assert_eq!(r.check().unwrap_err(), "waiting for: tls, policies");
        tls.set(true);
        pol.set(true);
        assert!(r.check().is_ok());
        r.start_draining();
        assert_eq!(r.check().unwrap_err(), "shutting down");
    }
}
