//! The two baselines `docs/PERFORMANCE.md` reports our figures against, on
//! the same rustls + hyper + axum stack and allocator as the real server:
//!
//! - `empty` (the default): answers "allowed" without reading the body, the
//!   ceiling of the HTTP+TLS stack;
//! - `naive`: the webhook every Rust tutorial writes (issue 16): axum's
//!   `Json<serde_json::Value>` extractor parses the whole AdmissionReview,
//!   and the answer is "allowed" with the request's uid, built with `json!`.
//!
//! ```sh
//! cargo run --release --example baseline -- 127.0.0.1:9443 certs/dev/tls.crt certs/dev/tls.key [empty|naive]
//! ```

use std::sync::Arc;

// The same allocator as the server, so the ratio measures our work, not malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::Router;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9443".into());
    let cert = args.next().unwrap_or_else(|| "certs/dev/tls.crt".into());
    let key = args.next().unwrap_or_else(|| "certs/dev/tls.key".into());
    let naive = match args.next().as_deref() {
        None | Some("empty") => false,
        Some("naive") => true,
        Some(other) => anyhow::bail!("mode {other:?}: empty or naive"),
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let allowed = |_body: axum::body::Bytes| async {
        (
            [("content-type", "application/json")],
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"baseline","allowed":true}}"#,
        )
    };
    let parsed = |axum::Json(review): axum::Json<serde_json::Value>| async move {
        axum::Json(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": true},
        }))
    };
    let router = if naive {
        Router::new()
            .route("/mutate", post(parsed))
            .route("/validate", post(parsed))
    } else {
        Router::new()
            .route("/mutate", post(allowed))
            .route("/validate", post(allowed))
    };
    let service = TowerToHyperService::new(router);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "baseline webhook ({}) on {addr}",
        if naive { "naive" } else { "empty" }
    );
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        });
    }
}
