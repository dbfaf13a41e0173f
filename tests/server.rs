//! The admission server over real TLS: protocol rules, error statuses,
//! certificate rotation, readiness, metrics, limits and graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{Options, TestServer, pod, review, start};
use otel_admission::admission::{Decoded, Mutate, Validate, Verdict};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Adds a label when asked to mutate a pod CREATE; a stand-in for the core.
struct LabelMutator;

impl Mutate for LabelMutator {
    fn mutate(&self, review: &Decoded<'_>) -> Verdict {
        if !review.request.is_pod_create() {
            return Verdict::default();
        }
        Verdict {
            patch: Some(
                serde_json::from_value(json!([
                    {"op": "add", "path": "/metadata/labels/otel~1injected", "value": "yes"}
                ]))
                .expect("patch"),
            ),
            warnings: vec!["added a label".into()],
            ..Default::default()
        }
    }
}

struct DenyTwo;

impl Validate for DenyTwo {
    fn validate(&self, _: &Decoded<'_>) -> Verdict {
        Verdict {
            denials: vec![
                "[no-latest] container app uses :latest".into(),
                "[limits] container app has no memory limit".into(),
            ],
            warnings: vec!["[labels] missing app.kubernetes.io/version".into()],
            ..Default::default()
        }
    }
}

struct Panics;

impl Mutate for Panics {
    fn mutate(&self, _: &Decoded<'_>) -> Verdict {
        panic!("bug in the core")
    }
}

fn with(mutator: Arc<dyn Mutate>, validator: Arc<dyn Validate>) -> Options {
    Options {
        mutator,
        validator,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_without_patch_echoes_uid() {
    let s = start(Options::default()).await;
    let (status, body) = s.post("/mutate", &review("uid-42", "CREATE", pod())).await;
    assert_eq!(status, 200);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"], json!({"uid": "uid-42", "allowed": true}));
    let (status, body) = s
        .post("/validate", &review("uid-43", "UPDATE", pod()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"], json!({"uid": "uid-43", "allowed": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_is_a_base64_string_that_applies() {
    let s = start(with(Arc::new(LabelMutator), Arc::new(DenyTwo))).await;
    let original = pod();
    let (status, body) = s
        .post("/mutate", &review("u1", "CREATE", original.clone()))
        .await;
    assert_eq!(status, 200);
    let r = &body["response"];
    assert_eq!(r["uid"], "u1");
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    assert_eq!(r["warnings"], json!(["added a label"]));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            r["patch"]
                .as_str()
                .expect("patch must be a string, not an array"),
        )
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("RFC 6902 JSON");
    let mut patched = original;
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(patched["metadata"]["labels"]["otel/injected"], "yes");
    let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(patched).expect("still a Pod");

    // Not a CREATE: no patch, and never patchType alone.
    let (_, body) = s.post("/mutate", &review("u2", "UPDATE", pod())).await;
    assert_eq!(body["response"], json!({"uid": "u2", "allowed": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_is_403_listing_every_message() {
    let s = start(with(Arc::new(LabelMutator), Arc::new(DenyTwo))).await;
    let (status, body) = s.post("/validate", &review("u3", "CREATE", pod())).await;
    assert_eq!(status, 200, "denials travel inside a 200 AdmissionReview");
    let r = &body["response"];
    assert_eq!(r["uid"], "u3");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().expect("message");
    assert!(
        msg.contains("[no-latest] container app uses :latest"),
        "{msg}"
    );
    assert!(
        msg.contains("[limits] container app has no memory limit"),
        "{msg}"
    );
    assert_eq!(
        r["warnings"],
        json!(["[labels] missing app.kubernetes.io/version"])
    );
    assert!(r.get("patch").is_none() && r.get("patchType").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_core_admits_with_a_warning_and_keeps_serving() {
    let s = start(with(Arc::new(Panics), Arc::new(DenyTwo))).await;
    for i in 0..3 {
        let (status, body) = s
            .post("/mutate", &review(&format!("p{i}"), "CREATE", pod()))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], true);
        assert!(body["response"].get("patch").is_none());
        let w = body["response"]["warnings"][0].as_str().expect("warning");
        assert!(w.contains("internal error"), "{w}");
    }
    let (_, text) = s.admin_get("/metrics").await;
    assert!(
        text.contains("otel_admission_requests_total{endpoint=\"mutate\",result=\"error\"} 3"),
        "{text}"
    );
}

async fn raw_post(
    s: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = s.client.post(s.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), r.text().await.expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_plain_errors_and_the_server_keeps_serving() {
    let s = start(Options {
        tweak: Box::new(|st| st.body_limit = 64 * 1024),
        ..Default::default()
    })
    .await;
    let json_ct = Some("application/json");
    let v1beta1 = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": review("x", "CREATE", pod())["request"]});
    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let big = serde_json::to_vec(&review(
        "big",
        "CREATE",
        json!({"data": "x".repeat(100 * 1024)}),
    ))
    .expect("json");
    // (case, content type, body, status, message fragment)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            json_ct,
            b"{\"apiVersion\": ".to_vec(),
            400,
            "not a valid AdmissionReview",
        ),
        (
            "wrong type",
            json_ct,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":1}}"#
                .to_vec(),
            400,
            "request.uid",
        ),
        (
            "missing request",
            json_ct,
            serde_json::to_vec(&no_request).expect("j"),
            400,
            "no `request`",
        ),
        (
            "non-v1 review",
            json_ct,
            serde_json::to_vec(&v1beta1).expect("j"),
            400,
            "admission.k8s.io/v1beta1",
        ),
        (
            "wrong content type",
            Some("text/yaml"),
            b"apiVersion: v1".to_vec(),
            415,
            "application/json",
        ),
        (
            "no content type",
            None,
            b"{}".to_vec(),
            415,
            "application/json",
        ),
        (
            "oversized body",
            json_ct,
            big,
            413,
            "exceeds the limit of 65536 bytes",
        ),
        (
            "empty body",
            json_ct,
            Vec::new(),
            400,
            "not a valid AdmissionReview",
        ),
    ];
    for (name, ct, body, want_status, needle) in cases {
        let (status, text) = raw_post(&s, "/mutate", ct, body).await;
        assert_eq!(status, want_status, "{name}: {text}");
        assert!(text.contains(needle), "{name}: {text:?} lacks {needle:?}");
    }
    // A chunked body over the limit (no Content-Length) is cut off too.
    let chunks = futures_chunks(100 * 1024);
    let r = s
        .client
        .post(s.url("/validate"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("chunked");
    assert_eq!(r.status().as_u16(), 413);

    let r = s.client.get(s.url("/mutate")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 405);
    let r = s
        .client
        .post(s.url("/elsewhere"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 404);

    // Still serving.
    let (status, _) = s.post("/mutate", &review("after", "CREATE", pod())).await;
    assert_eq!(status, 200);
    let (_, text) = s.admin_get("/metrics").await;
    assert!(
        text.contains(
            "otel_admission_requests_total{endpoint=\"mutate\",result=\"bad_request\"} 8"
        ),
        "{text}"
    );
}

/// Malformed reviews name the field that is wrong, from the review's root,
/// and say what is wrong without serde_json's `at line 1 column N` (the
/// API server sends one line, so the column was all it said): a broken
/// envelope is a 400 on both endpoints; a `request.object` that is not a
/// Pod is, on `/mutate`, the real injector's answer per `failureMode`
/// (the webhook decodes the envelope, the injector the pod).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_and_pods_are_answered_by_their_field_path() {
    let config = Arc::new(arc_swap::ArcSwap::from_pointee(
        otel_admission::config::Config::default(),
    ));
    let injector = otel_admission::mutate::Injector {
        config: Arc::clone(&config),
        view: Arc::new(otel_admission::inject::cluster_view::StaticView::new()),
        metrics: Arc::new(otel_admission::metrics::Metrics::new()),
        server_version: None,
        events: None,
    };
    let s = start(Options {
        mutator: Arc::new(injector),
        ..Default::default()
    })
    .await;
    let json_ct = Some("application/json");
    let mut uid = review("u", "CREATE", pod());
    uid["request"]["uid"] = json!(1);
    let mut operation = review("u", "CREATE", pod());
    operation["request"]["operation"] = json!("CREAT");
    for path in ["/mutate", "/validate"] {
        for (body, want) in [
            (
                &uid,
                "request.uid: invalid type: integer `1`, expected a string",
            ),
            (
                &operation,
                "request.operation: unknown variant `CREAT`, expected one of",
            ),
        ] {
            let (status, text) =
                raw_post(&s, path, json_ct, serde_json::to_vec(body).expect("j")).await;
            assert_eq!(status, 400, "{path}: {text}");
            assert!(text.contains(want), "{path}: {text:?} lacks {want:?}");
            assert!(!text.contains(" at line "), "{path}: {text:?}");
        }
    }

    // Each pod also as one over 64 KiB, which is parsed another way.
    let pad = "x".repeat(70 * 1024);
    let pods = |pad: &str| {
        let meta = json!({"name": "web", "annotations": {"pad": pad}});
        let mut labels_list = meta.clone();
        labels_list["labels"] = json!(["app=web"]);
        [
            (
                json!({"metadata": meta, "spec": {"containers": {"name": "app", "image": "nginx"}}}),
                "request.object.spec.containers: invalid type: map, expected a sequence",
            ),
            (
                json!({"metadata": meta, "spec": {"containers": [{"name": "app", "image": "nginx", "env": "A=1"}]}}),
                "request.object.spec.containers[0].env: invalid type: string \"A=1\", expected a sequence",
            ),
            (
                json!({"metadata": labels_list, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}),
                "request.object.metadata.labels: invalid type: sequence, expected a map",
            ),
        ]
    };
    for pad in ["", pad.as_str()] {
        for (object, want) in pods(pad) {
            // failureMode allow (the default): admitted, and told why not injected.
            let (status, answer) = s
                .post("/mutate", &review("u", "CREATE", object.clone()))
                .await;
            let r = &answer["response"];
            assert_eq!((status, &r["allowed"]), (200, &json!(true)), "{answer}");
            assert_eq!(
                r["warnings"],
                json!([format!("otel-admission: not injected: not a Pod: {want}")]),
                "pad {}",
                pad.len()
            );
            // failureMode deny: refused, saying the same.
            config.store(Arc::new(otel_admission::config::Config {
                failure_mode: otel_admission::config::FailureMode::Deny,
                ..Default::default()
            }));
            let (_, answer) = s.post("/mutate", &review("u", "CREATE", object)).await;
            config.store(Arc::new(otel_admission::config::Config::default()));
            let r = &answer["response"];
            assert_eq!(r["allowed"], json!(false), "{answer}");
            assert_eq!(
                r["status"]["message"],
                json!(format!("otel-admission: not a Pod: {want}")),
                "{answer}"
            );
        }
    }
}

fn futures_chunks(
    total: usize,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunk = vec![b' '; 8 * 1024];
    let n = total / chunk.len() + 1;
    tokio_stream_iter((0..n).map(move |_| Ok(chunk.clone())))
}

fn tokio_stream_iter<
    I: Iterator<Item = Result<Vec<u8>, std::io::Error>> + Send + Unpin + 'static,
>(
    it: I,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct Iter<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(it)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics() {
    let s = start(with(Arc::new(LabelMutator), Arc::new(DenyTwo))).await;
    assert_eq!(s.admin_get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(s.admin_get("/readyz").await, (200, "ready\n".into()));
    s.post("/mutate", &review("m", "CREATE", pod())).await;
    s.post("/validate", &review("v", "CREATE", pod())).await;
    let (status, text) = s.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "otel_admission_requests_total{endpoint=\"mutate\",result=\"patched\"} 1",
        "otel_admission_requests_total{endpoint=\"validate\",result=\"denied\"} 1",
        "otel_admission_request_duration_seconds_count{endpoint=\"mutate\"} 1",
        "otel_admission_request_duration_seconds_bucket{le=\"0.00005\",endpoint=\"validate\"}",
        "otel_admission_config_reload_errors_total 0",
        "# EOF",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let expiry: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("otel_admission_tls_certificate_expiry_timestamp_seconds "))
        .expect("expiry metric")
        .trim()
        .parse()
        .expect("number");
    let days = (expiry - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
    assert!((9..=10).contains(&days), "{days}");

    // A not-ready gate turns readiness off with a reason.
    let gate = s.readiness.gate("cluster");
    let (status, text) = s.admin_get("/readyz").await;
    assert_eq!(
        (status, text.as_str()),
        (503, "not ready: waiting for: cluster\n")
    );
    gate.set(true);
    assert_eq!(s.admin_get("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_12_and_13_and_h2_work() {
    let s = start(Options::default()).await;
    for versions in [
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13][..],
    ] {
        let tcp = tokio::net::TcpStream::connect(s.server.webhook_addr)
            .await
            .expect("tcp");
        let tls = common::tls_connector(&s.bundle, versions)
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").expect("n"),
                tcp,
            )
            .await
            .expect("handshake");
        let v = tls.get_ref().1.protocol_version().expect("version");
        assert_eq!(v, versions[0].version);
    }
    let h2 = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(s.bundle.ca_cert_pem.as_bytes()).expect("ca"),
        )
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = h2
        .post(s.url("/mutate"))
        .json(&review("h2", "CREATE", pod()))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["response"]["uid"], "h2");
}

/// Lays out a Secret volume the way the kubelet does:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>/`.
fn kubelet_layout(dir: &std::path::Path, version: &str, bundle: &otel_admission::certs::Bundle) {
    let ts = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&ts).expect("mkdir");
    std::fs::write(ts.join("tls.crt"), &bundle.cert_pem).expect("w");
    std::fs::write(ts.join("tls.key"), &bundle.key_pem).expect("w");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).expect("symlink");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_by_symlink_swap_and_bad_pair_kept_out() {
    let secret = tempfile::tempdir().expect("tmp");
    let first = otel_admission::certs::Bundle::generate(&common::names(), 10).expect("gen");
    kubelet_layout(secret.path(), "2026_11_21_00_00_00.1", &first);
    let cert = secret.path().join("tls.crt");
    let key = secret.path().join("tls.key");
    let s = start(Options {
        tweak: Box::new(move |st| {
            st.tls_cert = cert;
            st.tls_key = key;
            // Long poll: the swap must be seen through the directory watch.
            st.reload_poll = Duration::from_secs(3600);
        }),
        ..Default::default()
    })
    .await;
    let addr = s.server.webhook_addr;
    let der = |pem: &str| {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("der")
            .to_vec()
    };
    assert_eq!(common::served_cert(addr).await, der(&first.cert_pem));

    // A rotated pair: new serving certificate (its own CA; the client trusts it).
    let second = otel_admission::certs::Bundle::generate(&common::names(), 20).expect("gen");
    kubelet_layout(secret.path(), "2026_11_22_00_00_00.2", &second);
    let want = der(&second.cert_pem);
    let rotated = common::eventually(Duration::from_secs(5), || {
        let want = want.clone();
        async move { common::served_cert(addr).await == want }
    })
    .await;
    assert!(rotated, "new certificate served after the ..data swap");

    // A broken pair (cert and key from different bundles) is refused.
    let third = otel_admission::certs::Bundle::generate(&common::names(), 30).expect("gen");
    let broken = otel_admission::certs::Bundle {
        key_pem: first.key_pem.clone(),
        ..third
    };
    kubelet_layout(secret.path(), "2026_11_23_00_00_00.3", &broken);
    let counted = common::eventually(Duration::from_secs(5), || async {
        s.admin_get("/metrics")
            .await
            .1
            .contains("otel_admission_tls_reload_errors_total 1")
    })
    .await;
    assert!(counted, "reload error counted");
    assert_eq!(
        common::served_cert(addr).await,
        want,
        "old pair still served"
    );
    let (status, _) = {
        let client = common::client_for(&second);
        let r = client
            .post(s.url("/mutate"))
            .json(&review("r", "CREATE", pod()))
            .send()
            .await
            .expect("req");
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_timeout_closes_slow_clients() {
    let s = start(Options {
        tweak: Box::new(|st| st.header_read_timeout = Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let mut tls = common::tls_connect(s.server.webhook_addr, &s.bundle).await;
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial headers");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "server must close the connection, not wait forever"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_answers_a_stalled_body() {
    let s = start(Options {
        tweak: Box::new(|st| st.request_timeout = Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let mut tls = common::tls_connect(s.server.webhook_addr, &s.bundle).await;
    tls.write_all(
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersion\"",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf))
        .await
        .expect("answered before the client gave up")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("deadline"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let s = start(Options {
        tweak: Box::new(|st| st.shutdown_delay = Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let body = serde_json::to_vec(&review("inflight", "CREATE", pod())).expect("json");
    let (head, tail) = body.split_at(body.len() / 2);
    let mut tls = common::tls_connect(s.server.webhook_addr, &s.bundle).await;
    let req_head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(req_head.as_bytes()).await.expect("w");
    tls.write_all(head).await.expect("w");
    tls.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;

    s.server.shutdown();
    // Readiness turns false first, while the admin port still answers.
    let not_ready = common::eventually(Duration::from_secs(2), || async {
        s.admin_get("/readyz").await == (503, "not ready: shutting down\n".to_string())
    })
    .await;
    assert!(not_ready);

    // Finish the in-flight request after shutdown began.
    tokio::time::sleep(Duration::from_millis(400)).await;
    tls.write_all(tail).await.expect("rest of body");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"uid\":\"inflight\""), "{text}");

    let addr = s.server.webhook_addr;
    let admin = s.server.admin_addr;
    tokio::time::timeout(Duration::from_secs(10), s.server.wait())
        .await
        .expect("server stops after draining");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "TLS listener closed"
    );
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "admin listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_swaps_good_and_keeps_old_on_bad() {
    let s = start(Options {
        config_yaml: Some("failureMode: allow\n".into()),
        ..Default::default()
    })
    .await;
    let path = s.dir.path().join("config.yaml");
    std::fs::write(&path, "failureMode: deny\n").expect("w");
    let swapped = common::eventually(Duration::from_secs(5), || async {
        s.config.load().failure_mode == otel_admission::config::FailureMode::Deny
    })
    .await;
    assert!(swapped, "good config applied");
    std::fs::write(&path, "failureMode: sometimes\n").expect("w");
    let counted = common::eventually(Duration::from_secs(5), || async {
        s.admin_get("/metrics")
            .await
            .1
            .contains("otel_admission_config_reload_errors_total 1")
    })
    .await;
    assert!(counted, "bad reload counted");
    assert_eq!(
        s.config.load().failure_mode,
        otel_admission::config::FailureMode::Deny,
        "old config kept"
    );
}

/// The issue-12 repro: SIGTERM with a 1 s shutdown delay, ten TLS
/// connections opened at +0.7 s (during the delay), a POST on each at +1.2 s
/// (after the listener closed): every one is served, with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_accepted_before_the_drain_have_their_first_request_served() {
    let s = start(Options {
        tweak: Box::new(|st| st.shutdown_delay = Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let t0 = tokio::time::Instant::now();
    s.server.shutdown();
    tokio::time::sleep_until(t0 + Duration::from_millis(700)).await;
    let mut conns = Vec::new();
    for _ in 0..10 {
        conns.push(common::tls_connect(s.server.webhook_addr, &s.bundle).await);
    }
    tokio::time::sleep_until(t0 + Duration::from_millis(1200)).await;
    let body = serde_json::to_vec(&review("late", "CREATE", pod())).expect("json");
    let mut tasks = Vec::new();
    for mut tls in conns {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let head = format!(
                "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            tls.write_all(head.as_bytes()).await.expect("w");
            tls.write_all(&body).await.expect("w");
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
            String::from_utf8_lossy(&buf).into_owned()
        }));
    }
    for t in tasks {
        let text = t.await.expect("join");
        assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), s.server.wait())
        .await
        .expect("server stops");
}

/// During the shutdown delay a keep-alive connection keeps serving, and
/// its response says `Connection: close`, so the client leaves on a response
/// boundary instead of losing its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_clients_are_told_to_leave_during_the_delay() {
    let s = start(Options {
        tweak: Box::new(|st| st.shutdown_delay = Duration::from_millis(800)),
        ..Default::default()
    })
    .await;
    let body = serde_json::to_vec(&review("ka", "CREATE", pod())).expect("json");
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut tls = common::tls_connect(s.server.webhook_addr, &s.bundle).await;
    tls.write_all(head.as_bytes()).await.expect("w");
    tls.write_all(&body).await.expect("w");
    let mut buf = vec![0u8; 8192];
    let n = tls.read(&mut buf).await.expect("first answer");
    let first = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(
        first.starts_with("http/1.1 200") && !first.contains("connection: close"),
        "{first}"
    );
    s.server.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tls.write_all(head.as_bytes())
        .await
        .expect("second request on the same connection");
    tls.write_all(&body).await.expect("w");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    let second = String::from_utf8_lossy(&rest).to_ascii_lowercase();
    assert!(second.starts_with("http/1.1 200"), "{second}");
    assert!(second.contains("connection: close"), "{second}");
}

/// A client that writes a whole over-limit body before reading still reads
/// the 413 (the body is read and discarded, not left to reset the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_body_written_in_full_still_reads_the_413() {
    let s = start(Options {
        tweak: Box::new(|st| st.body_limit = 1024 * 1024),
        ..Default::default()
    })
    .await;
    let body = vec![b' '; 3 * 1024 * 1024];
    let mut tls = common::tls_connect(s.server.webhook_addr, &s.bundle).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("w");
    tls.write_all(&body)
        .await
        .expect("the whole body is accepted");
    tls.flush().await.expect("flush");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("answered")
        .expect("read, not reset");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("exceeds the limit"), "{text}");
}

/// Issue 27: the admin port closes a connection that sends nothing, and a
/// keep-alive connection left idle after its answer, at the header-read
/// timeout, as the TLS port does. (It used to wait for a first byte with no
/// timeout at all, so silent connections piled up until the process ran out
/// of file descriptors.) The connection gauge and shed counter are exported
/// from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_cuts_silent_and_idle_connections_at_the_header_read_timeout() {
    let hrt = Duration::from_secs(1);
    let s = start(Options {
        tweak: Box::new(move |st| st.header_read_timeout = hrt),
        ..Default::default()
    })
    .await;
    let admin = s.server.admin_addr;
    let closed_after = |mut c: tokio::net::TcpStream| async move {
        let start = std::time::Instant::now();
        let mut buf = [0u8; 1024];
        let r = tokio::time::timeout(hrt * 4, async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        r.ok().map(|()| start.elapsed())
    };
    let silent = tokio::net::TcpStream::connect(admin).await.expect("tcp");
    let mut kept = tokio::net::TcpStream::connect(admin).await.expect("tcp");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.ends_with(b"ok\n") {
        let n = kept.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before the answer: {head:?}");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    let (silent_cut, idle_cut) = tokio::join!(closed_after(silent), closed_after(kept));
    for (what, cut) in [("silent", silent_cut), ("idle keep-alive", idle_cut)] {
        let cut = cut.unwrap_or_else(|| panic!("a {what} admin connection still open after 4 s"));
        assert!(
            cut >= hrt / 2 && cut <= hrt + Duration::from_millis(800),
            "a {what} admin connection was cut after {cut:?}, header-read timeout {hrt:?}"
        );
    }
    let (_, text) = s.admin_get("/metrics").await;
    for needle in [
        "otel_admission_connections_open{listener=\"webhook\"} 0",
        "otel_admission_connections_shed_total{listener=\"admin\",reason=\"evicted\"} 0",
        "otel_admission_connections_shed_total{listener=\"webhook\",reason=\"rejected\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}
