//! Helpers the integration tests share: a real server on 127.0.0.1:0
//! with rcgen certificates ([`server`]), clients that trust only the test
//! CA and raw TLS ([`tls`]), AdmissionReview bodies ([`admission`]), the
//! fake API server ([`apiserver`]) and `serve` processes against it
//! ([`replica`]).

#![allow(dead_code)]

mod admission;
pub mod apiserver;
pub mod replica;
mod server;
mod tls;

use std::time::Duration;

// Each test uses some of these.
#[allow(unused_imports)]
pub use admission::{pod, review};
#[allow(unused_imports)]
pub use server::{Options, TestServer, settings, start, start_app};
#[allow(unused_imports)]
pub use tls::{client_for, names, served_cert, tls_connect, tls_connector};

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
