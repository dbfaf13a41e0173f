//! The knobs that make the fake API server misbehave (down, a resource
//! unavailable or refused, slow rollouts, failing patches) and the answers
//! it gives then.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::FakeApiServer;
use super::store::Inner;

/// How the API server answers a list or watch of a resource it will not
/// list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 404 NotFound, as for a group/version or CRD it does not serve.
    NotServed,
    /// 403 Forbidden, as when RBAC grants the client no list/watch on it.
    Forbidden,
    /// 500 InternalError (an etcd timeout, say): an outage, which kube-rs'
    /// client does not retry itself as it does a 503.
    Internal,
}

impl FakeApiServer {
    /// Takes the API server away (503 on every route, open watches end) or
    /// brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// Makes one resource's list and watch answer 503 (or answer again).
    pub fn set_unavailable(&self, resource: &'static str, unavailable: bool) {
        let mut inner = self.inner.lock().expect("lock");
        if unavailable {
            inner.unavailable.insert(resource);
        } else {
            inner.unavailable.remove(resource);
        }
    }

    /// Makes one resource's list and watch answer as the API server does for
    /// a resource it does not serve (404), that RBAC forbids (403), or on an
    /// internal error (500), or, with `None`, serves it again; objects
    /// applied meanwhile are kept.
    pub fn set_refused(&self, resource: &'static str, refusal: Option<Refusal>) {
        let mut inner = self.inner.lock().expect("lock");
        match refusal {
            Some(r) => inner.refused.insert(resource, r),
            None => inner.refused.remove(resource),
        };
    }

    /// The 503 every request gets while [`FakeApiServer::set_down`] holds.
    pub(super) fn when_down(&self) -> Option<Response> {
        if *self.down.borrow() {
            return Some((StatusCode::SERVICE_UNAVAILABLE, "down").into_response());
        }
        None
    }

    /// The failure a workload PATCH gets while
    /// [`FakeApiServer::fail_patches`] is set.
    pub(super) fn patch_failure(&self) -> Option<Response> {
        let fail = self.fail_patches.load(Ordering::SeqCst);
        if fail == 0 {
            return None;
        }
        let code = StatusCode::from_u16(fail).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Some(
            (
                code,
                axum::Json(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "injected failure", "reason": "InternalError", "code": fail}),
                ),
            )
                .into_response(),
        )
    }

    /// Whether a PATCHed workload reports its rollout done at once (unless
    /// [`FakeApiServer::slow_rollouts`] is set).
    pub(super) fn rollouts_finish(&self) -> bool {
        !self.slow_rollouts.load(Ordering::SeqCst)
    }
}

/// The answer to a list or watch of `resource` while it is made unavailable
/// (503) or refused, if it is.
pub(super) fn list_refusal(inner: &Inner, resource: &'static str) -> Option<Response> {
    if inner.unavailable.contains(resource) {
        return Some((StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response());
    }
    inner.refused.get(resource).map(|r| refused(resource, *r))
}

/// The API server's answers for a resource it does not serve (its
/// NotFound handler), for one RBAC forbids (the authorizer's message) and
/// on an internal error.
pub(super) fn refused(resource: &str, refusal: Refusal) -> Response {
    let (code, reason, message) = match refusal {
        Refusal::NotServed => (
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".to_string(),
        ),
        Refusal::Forbidden => (
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{resource} is forbidden: User \"system:serviceaccount:otel-admission:otel-admission\" cannot list resource \"{resource}\" at the cluster scope"
            ),
        ),
        Refusal::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out".to_string(),
        ),
    };
    (
        code,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": {}, "code": code.as_u16()}),
        ),
    )
        .into_response()
}
