//! The TLS listener's routes, `POST /mutate` and `POST /validate`, and the one
//! dispatch layer both go through (SPEC §10).
//!
//! - HTTP rules: content type, body limit (a too-large body is read and
//!   discarded so the client sees the 413), decode errors as 400.
//! - The work (decode, mutate or validate, encode) runs on the blocking pool,
//!   never on the async workers, so the admin listener cannot be starved;
//!   except a small `/mutate` body for a bounded mutator ([`INLINE_BODY`]),
//!   whose sub-millisecond work costs less than the hand-off.
//!   A semaphore sized from the cores bounds it; a bounded queue waits for a
//!   worker and anything beyond it is answered at once (`overloaded`).
//! - The deadline is on the answer, not on the work: when it passes, the
//!   request is answered per `failureMode` and counted as `timeout`, even if
//!   the CPU-bound work behind it is still running (its late result is
//!   dropped).
//! - `failureMode` is applied here, once, to internal errors, panics,
//!   timeouts and overload alike.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;

use crate::admission::{self, Answer, Mutate, Validate, Verdict};
use crate::config::{Config, FailureMode};
use crate::metrics::{Endpoint, EndpointLabels, Metrics, RequestResult};

/// How much of an over-limit body is read and discarded so that the client,
/// which may write it all before reading, gets the 413 rather than a reset.
const DISCARD_LIMIT: usize = 64 * 1024 * 1024;

/// The largest `/mutate` body answered on the async worker when the mutator
/// is [`Mutate::bounded`]: its work is then well under a millisecond (a
/// 1,000-variable pod is ~60 KB), and for work that short the hand-off to
/// the blocking pool and back costs more than the work. Larger bodies,
/// `/validate` (policies may be slow) and unbounded mutators use the pool,
/// answered at the deadline.
pub const INLINE_BODY: usize = 64 * 1024;

/// Everything the admission routes need.
#[derive(Clone)]
pub struct Webhook {
    pub mutator: Arc<dyn Mutate>,
    pub validator: Arc<dyn Validate>,
    pub metrics: Arc<Metrics>,
    /// For `failureMode`, read per request so a reload applies.
    pub config: Arc<ArcSwap<Config>>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub workers: Arc<Workers>,
}

/// The bound on admission work: `permits` run at once, `queue` more wait.
#[derive(Debug)]
pub struct Workers {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

// === impl Workers ===

impl Workers {
    /// `concurrency` jobs at once (at least one), `queue` waiting.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
        }
    }

    /// Sized from the cores: CPU-bound work gains nothing from more threads
    /// than cores, and each queued request is one the API server waits on.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(cores, cores * 64)
    }
}

/// Why a request was answered by the failure mode rather than by its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Error,
    Timeout,
    Overloaded,
}

impl Failure {
    fn result(self) -> RequestResult {
        match self {
            Self::Error => RequestResult::Error,
            Self::Timeout => RequestResult::Timeout,
            Self::Overloaded => RequestResult::Overloaded,
        }
    }

    fn words(self, ep: &str, limit: Duration) -> String {
        match self {
            Self::Error => format!("internal error in /{ep}"),
            Self::Timeout => format!("/{ep} missed its deadline of {}ms", limit.as_millis()),
            Self::Overloaded => format!("/{ep} is overloaded"),
        }
    }
}

/// What a job on the blocking pool produced.
enum Done {
    Answer {
        json: Vec<u8>,
        result: RequestResult,
    },
    Rejected {
        status: StatusCode,
        message: String,
    },
}

pub fn router(hook: Webhook) -> Router {
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

fn json_response(json: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
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

/// Reads and drops the rest of a body, up to [`DISCARD_LIMIT`] or the deadline.
async fn discard(body: Body, deadline: tokio::time::Instant) {
    let mut body = body;
    let mut read = 0usize;
    while read < DISCARD_LIMIT {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, Bytes::len);
            }
            _ => return,
        }
    }
}

/// Decodes, dispatches and encodes one review. Runs on the blocking pool;
/// `uid` is published as soon as it is known, for an answer on time.
fn work(
    endpoint: Endpoint,
    bytes: &[u8],
    uid: &OnceLock<String>,
    mutator: &dyn Mutate,
    validator: &dyn Validate,
) -> Done {
    let ep = endpoint.as_str();
    let start = Instant::now();
    let review = match admission::decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            return Done::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: e.to_string(),
            };
        }
    };
    let r = &review.request;
    let _ = uid.set(r.uid.clone());
    let verdict = match endpoint {
        Endpoint::Mutate => mutator.mutate(&review),
        Endpoint::Validate => validator.validate(&review),
    };
    let (json, answer) = match admission::encode(&r.uid, &verdict) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(endpoint = ep, uid = %r.uid, error = %e, "cannot encode response");
            return Done::Rejected {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "cannot encode response".into(),
            };
        }
    };
    let result = match answer {
        Answer::Allowed => RequestResult::Allowed,
        Answer::Patched => RequestResult::Patched,
        Answer::Denied => RequestResult::Denied,
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
    Done::Answer { json, result }
}

// === impl Webhook ===

/// One request in flight, counted whatever becomes of its future: hyper
/// drops the future when the client goes away (or the connection is cut at
/// shutdown), and then the gauge must still come down and the request still
/// be counted, as `abandoned`.
struct InFlight<'a> {
    metrics: &'a Metrics,
    gauge: prometheus_client::metrics::gauge::Gauge,
    endpoint: Endpoint,
    start: Instant,
    result: RequestResult,
}

impl<'a> InFlight<'a> {
    fn start(metrics: &'a Metrics, endpoint: Endpoint, start: Instant) -> Self {
        // A clone: the family's guard must not be held across an await.
        let gauge = metrics
            .requests_in_flight
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .clone();
        gauge.inc();
        Self {
            metrics,
            gauge,
            endpoint,
            start,
            result: RequestResult::Abandoned,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
        self.metrics.observe_request(
            self.endpoint,
            self.result,
            self.start.elapsed().as_secs_f64(),
        );
    }
}

impl Webhook {
    async fn handle(&self, endpoint: Endpoint, req: Request) -> Response {
        let start = Instant::now();
        let mut in_flight = InFlight::start(&self.metrics, endpoint, start);
        let (result, response) = self.answer(endpoint, req, start).await;
        in_flight.result = result;
        response
    }

    async fn answer(
        &self,
        endpoint: Endpoint,
        req: Request,
        start: Instant,
    ) -> (RequestResult, Response) {
        let ep = endpoint.as_str();
        let deadline = tokio::time::Instant::from_std(start) + self.request_timeout;
        let bad = |status: StatusCode, msg: String| {
            tracing::warn!(endpoint = ep, status = status.as_u16(), reason = %msg, "rejected request");
            (RequestResult::BadRequest, plain(status, &msg))
        };
        if let Err(msg) = is_json(req.headers()) {
            return bad(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg);
        }
        let limit = self.body_limit;
        let too_big = || format!("request body exceeds the limit of {limit} bytes");
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body: Body = req.into_body();
        if declared.is_some_and(|len| len > limit as u64) {
            discard(body, deadline).await;
            return bad(StatusCode::PAYLOAD_TOO_LARGE, too_big());
        }
        let collected = tokio::time::timeout_at(deadline, Limited::new(body, limit).collect());
        let bytes = match collected.await {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) if e.is::<LengthLimitError>() => {
                return bad(StatusCode::PAYLOAD_TOO_LARGE, too_big());
            }
            Ok(Err(e)) => {
                return bad(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                );
            }
            Err(_) => return self.failed(endpoint, Failure::Timeout, None),
        };
        let uid = Arc::new(OnceLock::new());
        let job = {
            let uid = uid.clone();
            let bytes = bytes.clone();
            let mutator = self.mutator.clone();
            let validator = self.validator.clone();
            move || work(endpoint, &bytes, &uid, mutator.as_ref(), validator.as_ref())
        };
        let inline =
            endpoint == Endpoint::Mutate && bytes.len() <= INLINE_BODY && self.mutator.bounded();
        let done = match self.run(job, deadline, inline).await {
            Ok(done) => done,
            Err(failure) => {
                // Overloaded, or timed out before the job decoded it: read
                // just the uid here, on this failure path only.
                let uid = uid.get().cloned().or_else(|| admission::peek_uid(&bytes));
                return self.failed(endpoint, failure, uid);
            }
        };
        match done {
            Done::Answer { json, result } => (result, json_response(json)),
            Done::Rejected { status, message } if status == StatusCode::BAD_REQUEST => {
                bad(status, message)
            }
            Done::Rejected { .. } => self.failed(endpoint, Failure::Error, uid.get().cloned()),
        }
    }

    /// Runs `job` within the worker bound: on the blocking pool, answering by
    /// `deadline` whatever the job does, or `inline` on this task (bounded
    /// work, see [`INLINE_BODY`]), a panic caught either way.
    async fn run<F>(
        &self,
        job: F,
        deadline: tokio::time::Instant,
        inline: bool,
    ) -> Result<Done, Failure>
    where
        F: FnOnce() -> Done + Send + 'static,
    {
        let w = &self.workers;
        let permit = match w.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Failure::Error),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                if w.waiting.fetch_add(1, Ordering::SeqCst) >= w.queue {
                    w.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(Failure::Overloaded);
                }
                let r = tokio::time::timeout_at(deadline, w.permits.clone().acquire_owned()).await;
                w.waiting.fetch_sub(1, Ordering::SeqCst);
                match r {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(Failure::Error),
                    Err(_) => return Err(Failure::Timeout),
                }
            }
        };
        if inline {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            drop(permit);
            return done.map_err(|_| {
                tracing::error!(what = "panic", "admission work failed");
                Failure::Error
            });
        }
        // The permit lives as long as the work, so a job the deadline gave
        // up on still counts against the bound until it really finishes.
        let handle = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        });
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(join)) => {
                let what = if join.is_panic() {
                    "panic"
                } else {
                    "cancelled"
                };
                tracing::error!(what, "admission work failed");
                Err(Failure::Error)
            }
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// The one place `failureMode` answers a request its work could not.
    fn failed(
        &self,
        endpoint: Endpoint,
        failure: Failure,
        uid: Option<String>,
    ) -> (RequestResult, Response) {
        let ep = endpoint.as_str();
        let words = failure.words(ep, self.request_timeout);
        let mode = self.config.load().failure_mode;
        tracing::warn!(endpoint = ep, uid = uid.as_deref().unwrap_or(""), failure = ?failure, mode = ?mode, "{words}");
        let Some(uid) = uid else {
            // Not even the uid is known (the body arrived too late): an HTTP
            // error, on which the API server applies the webhook's failurePolicy.
            return (
                failure.result(),
                plain(StatusCode::SERVICE_UNAVAILABLE, &words),
            );
        };
        let verdict = match mode {
            FailureMode::Allow => Verdict {
                warnings: vec![format!("otel-admission: {words}; admitted unchanged")],
                ..Default::default()
            },
            FailureMode::Deny => Verdict {
                denials: vec![format!(
                    "otel-admission: {words}; denied (failureMode: deny)"
                )],
                ..Default::default()
            },
        };
        match admission::encode(&uid, &verdict) {
            Ok((json, _)) => (failure.result(), json_response(json)),
            Err(_) => (
                failure.result(),
                plain(StatusCode::INTERNAL_SERVER_ERROR, &words),
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Decoded;

    /// Work that takes `0` and panics when `1`.
    struct Slow(Duration, bool);

    impl Mutate for Slow {
        fn mutate(&self, _: &Decoded<'_>) -> Verdict {
            std::thread::sleep(self.0);
            assert!(!self.1, "boom");
            Verdict::default()
        }
    }

    impl Validate for Slow {
        fn validate(&self, _: &Decoded<'_>) -> Verdict {
            std::thread::sleep(self.0);
            assert!(!self.1, "boom");
            Verdict::default()
        }
    }

    fn hook(work: Slow, mode: &str, timeout: Duration, workers: Workers) -> Webhook {
        let work = Arc::new(work);
        let config = Config::from_yaml(&format!("failureMode: {mode}\n"), "t").expect("config");
        Webhook {
            mutator: work.clone(),
            validator: work,
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(ArcSwap::from_pointee(config)),
            body_limit: 1024 * 1024,
            request_timeout: timeout,
            workers: Arc::new(workers),
        }
    }

    fn request() -> Request {
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "object": {"metadata": {}, "spec": {"containers": []}}}
        });
        Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    }

    async fn response_json(r: Response) -> serde_json::Value {
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cpu_bound_work_is_answered_at_the_deadline_and_counted() {
        let h = hook(
            Slow(Duration::from_secs(1), false),
            "allow",
            Duration::from_millis(150),
            Workers::new(2, 8),
        );
        let start = Instant::now();
        let r = h.handle(Endpoint::Mutate, request()).await;
        let took = start.elapsed();
        assert!(took < Duration::from_millis(700), "answered after {took:?}");
        let v = response_json(r).await;
        assert_eq!(v["response"]["uid"], "u-1");
        assert_eq!(v["response"]["allowed"], true);
        assert!(
            v["response"]["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains("deadline")),
            "{v}"
        );
        let text = h.metrics.encode();
        assert!(
            text.contains(r#"otel_admission_requests_total{endpoint="mutate",result="timeout"} 1"#),
            "{text}"
        );
    }

    /// A request whose future is dropped before its answer (the client went
    /// away: hyper drops it) still brings the in-flight gauge down and is
    /// counted, as `abandoned`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_request_is_counted_and_leaves_no_request_in_flight() {
        let h = hook(
            Slow(Duration::from_millis(500), false),
            "allow",
            Duration::from_secs(4),
            Workers::new(2, 8),
        );
        let gone = tokio::time::timeout(
            Duration::from_millis(50),
            h.handle(Endpoint::Mutate, request()),
        )
        .await;
        assert!(gone.is_err(), "the answer came before the client left");
        let text = h.metrics.encode();
        assert!(
            text.contains(r#"otel_admission_requests_in_flight{endpoint="mutate"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"otel_admission_requests_total{endpoint="mutate",result="abandoned"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_follows_failure_mode_deny_on_both_endpoints() {
        let h = hook(
            Slow(Duration::ZERO, true),
            "deny",
            Duration::from_secs(2),
            Workers::new(2, 8),
        );
        for ep in [Endpoint::Mutate, Endpoint::Validate] {
            let v = response_json(h.handle(ep, request()).await).await;
            assert_eq!(v["response"]["allowed"], false, "{ep:?}: {v}");
            assert_eq!(v["response"]["status"]["code"], 403);
            assert!(
                v["response"]["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("internal error"))
            );
        }
        let text = h.metrics.encode();
        assert!(
            text.contains(r#"otel_admission_requests_total{endpoint="validate",result="error"} 1"#),
            "{text}"
        );
    }

    /// Bounded work: answered on the async worker.
    struct Bounded(bool);

    impl Mutate for Bounded {
        fn mutate(&self, _: &Decoded<'_>) -> Verdict {
            assert!(!self.0, "boom");
            Verdict::default()
        }

        fn bounded(&self) -> bool {
            true
        }
    }

    /// A small body for a bounded mutator runs inline: it is answered, and a
    /// panic in it is still caught and answered per `failureMode`, counted
    /// as an error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_work_is_answered_and_its_panics_follow_failure_mode() {
        let config = Config::from_yaml("failureMode: deny\n", "t").expect("config");
        let webhook = |panics: bool| Webhook {
            mutator: Arc::new(Bounded(panics)),
            validator: Arc::new(Slow(Duration::ZERO, false)),
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(ArcSwap::from_pointee(config.clone())),
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(2),
            workers: Arc::new(Workers::new(2, 8)),
        };
        let ok = webhook(false);
        let v = response_json(ok.handle(Endpoint::Mutate, request()).await).await;
        assert_eq!(v["response"]["allowed"], true, "{v}");
        let boom = webhook(true);
        let v = response_json(boom.handle(Endpoint::Mutate, request()).await).await;
        assert_eq!(v["response"]["allowed"], false, "{v}");
        assert_eq!(v["response"]["status"]["code"], 403);
        let text = boom.metrics.encode();
        assert!(
            text.contains(r#"otel_admission_requests_total{endpoint="mutate",result="error"} 1"#),
            "{text}"
        );
        // The runtime survived the panic: the next request is answered.
        let v = response_json(ok.handle(Endpoint::Mutate, request()).await).await;
        assert_eq!(v["response"]["allowed"], true, "{v}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_queue_a_request_is_answered_at_once_as_overloaded() {
        let h = hook(
            Slow(Duration::from_millis(600), false),
            "allow",
            Duration::from_secs(3),
            Workers::new(1, 0),
        );
        let busy = {
            let h = h.clone();
            tokio::spawn(async move { h.handle(Endpoint::Mutate, request()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        let v = response_json(h.handle(Endpoint::Mutate, request()).await).await;
        assert!(start.elapsed() < Duration::from_millis(300));
        assert!(
            v["response"]["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains("overloaded")),
            "{v}"
        );
        let first = response_json(busy.await.expect("join")).await;
        assert_eq!(first["response"]["allowed"], true);
        assert!(
            first["response"].get("warnings").is_none(),
            "the first was served: {first}"
        );
    }
}
