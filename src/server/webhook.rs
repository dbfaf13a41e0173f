//! The TLS listener's routes: `POST /mutate` and `POST /validate`.
//!
//! The HTTP rules live here (content type, body limit, decode errors, the
//! deadline); what to answer is decided behind [`Mutate`] and [`Validate`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::admission::{self, Answer, Mutate, Validate, Verdict};
use crate::metrics::{Endpoint, Metrics, RequestResult};

/// Everything the admission routes need.
#[derive(Clone)]
pub struct Webhook {
    pub mutator: Arc<dyn Mutate>,
    pub validator: Arc<dyn Validate>,
    pub metrics: Arc<Metrics>,
    pub body_limit: usize,
    pub request_timeout: Duration,
}

pub fn router(hook: Webhook) -> Router {
    let timeout = hook.request_timeout;
    Router::new()
        .route(
            "/mutate",
            post(|State(h): State<Webhook>, req: Request| async move {
                h.handle(Endpoint::Mutate, req).await
            }),
        )
        .route(
            "/validate",
            post(|State(h): State<Webhook>, req: Request| async move {
                h.handle(Endpoint::Validate, req).await
            }),
        )
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "not found: use POST /mutate or POST /validate",
            )
        })
        .with_state(hook)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| deadline(timeout, req, next),
        ))
}

/// Answers before the API server gives up on us, so a slow client or a stuck
/// evaluation fails fast and the webhook's failurePolicy applies.
async fn deadline(limit: Duration, req: Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                deadline_ms = limit.as_millis() as u64,
                "request deadline exceeded"
            );
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("request deadline of {}ms exceeded", limit.as_millis()),
            )
        }
    }
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        format!("{msg}\n"),
    )
        .into_response()
}

fn is_json(headers: &HeaderMap) -> Result<(), String> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Err("Content-Type must be application/json, got none".into());
    };
    let s = v.to_str().unwrap_or("");
    let media = s.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(format!("Content-Type must be application/json, got {s:?}"))
    }
}

// === impl Webhook ===

impl Webhook {
    async fn handle(&self, endpoint: Endpoint, req: Request) -> Response {
        let start = Instant::now();
        let (result, response) = self.answer(endpoint, req).await;
        let elapsed = start.elapsed();
        self.metrics
            .observe_request(endpoint, result, elapsed.as_secs_f64());
        response
    }

    async fn answer(&self, endpoint: Endpoint, req: Request) -> (RequestResult, Response) {
        let ep = endpoint.as_str();
        let start = Instant::now();
        let bad = |status: StatusCode, msg: String| {
            tracing::warn!(endpoint = ep, status = status.as_u16(), reason = %msg, "rejected request");
            (RequestResult::BadRequest, plain(status, &msg))
        };
        if let Err(msg) = is_json(req.headers()) {
            return bad(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg);
        }
        let limit = self.body_limit;
        let too_big = || format!("request body exceeds the limit of {limit} bytes");
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > limit as u64
        {
            return bad(StatusCode::PAYLOAD_TOO_LARGE, too_big());
        }
        let body: Body = req.into_body();
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                return bad(StatusCode::PAYLOAD_TOO_LARGE, too_big());
            }
            Err(e) => {
                return bad(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                );
            }
        };
        let review = match admission::decode(&bytes) {
            Ok(r) => r,
            Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let r = &review.request;
        let dispatched = std::panic::catch_unwind(AssertUnwindSafe(|| match endpoint {
            Endpoint::Mutate => self.mutator.mutate(&review),
            Endpoint::Validate => self.validator.validate(&review),
        }));
        let (verdict, internal_error) = match dispatched {
            Ok(v) => (v, false),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(endpoint = ep, uid = %r.uid, panic = %what, "internal error; admitting unchanged");
                (
                    Verdict {
                        warnings: vec![format!(
                            "otel-admission: internal error in /{ep}; admitted unchanged"
                        )],
                        ..Default::default()
                    },
                    true,
                )
            }
        };
        let (json, answer) = match admission::encode(&r.uid, &verdict) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(endpoint = ep, uid = %r.uid, error = %e, "cannot encode response");
                return (
                    RequestResult::Error,
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode response"),
                );
            }
        };
        let result = match (internal_error, answer) {
            (true, _) => RequestResult::Error,
            (false, Answer::Allowed) => RequestResult::Allowed,
            (false, Answer::Patched) => RequestResult::Patched,
            (false, Answer::Denied) => RequestResult::Denied,
        };
        tracing::info!(
            endpoint = ep,
            uid = %r.uid,
            namespace = r.namespace.as_deref().unwrap_or(""),
            workload = %r.workload(),
            operation = ?r.operation,
            dry_run = r.dry_run,
            outcome = result.as_str(),
            warnings = verdict.warnings.len(),
            duration_us = start.elapsed().as_micros() as u64,
            "admission"
        );
        let response = (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response();
        (result, response)
    }
}

/// Answers "allowed, no change" for everything. The dispatch target until the
/// injection core or policy engine is configured.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Mutate for AllowAll {
    fn mutate(&self, _: &admission::Decoded<'_>) -> Verdict {
        Verdict::default()
    }
}

impl Validate for AllowAll {
    fn validate(&self, _: &admission::Decoded<'_>) -> Verdict {
        Verdict::default()
    }
}
