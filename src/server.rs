//! The admission server: a TLS listener for `/mutate` and `/validate`, and a
//! plain-HTTP admin listener, with hot reload and graceful shutdown.
//!
//! Shutdown order: readiness turns false, new connections are still accepted
//! for `shutdown_delay` (endpoints take a moment to drop us), then the TLS
//! listener closes and in-flight requests get up to `shutdown_grace` to
//! finish. The admin listener stays up until the end so probes see "not ready"
//! rather than "connection refused".

pub mod admin;
pub mod reload;
pub mod tls;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admission::{Mutate, Validate};
use crate::config::Config;
use crate::metrics::Metrics;
use admin::Readiness;
use tls::CertStore;

/// Resolved `serve` settings: flag, then env, then file, then default.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub body_limit: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    /// How often watched files are re-read even without a change event.
    pub reload_poll: Duration,
}

pub mod defaults {
    use std::time::Duration;
    pub const LISTEN: &str = "127.0.0.1:8443";
    pub const ADMIN_LISTEN: &str = "127.0.0.1:8080";
    pub const BODY_LIMIT: usize = 6 * 1024 * 1024;
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Under the shipped webhooks' `timeoutSeconds: 5`.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
    pub const SHUTDOWN_DELAY: Duration = Duration::ZERO;
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
    pub const RELOAD_POLL: Duration = Duration::from_secs(10);
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// What the server runs: the dispatch targets and shared state.
pub struct App {
    pub config: Arc<ArcSwap<Config>>,
    /// The file `config` came from, reloaded on change.
    pub config_path: Option<PathBuf>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub mutator: Arc<dyn Mutate>,
    pub validator: Arc<dyn Validate>,
}

/// A running server.
pub struct Server {
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub certs: Arc<CertStore>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

// === impl Server ===

impl Server {
    /// Binds both listeners and starts serving.
    pub async fn start(settings: Settings, app: App) -> Result<Self, ServerError> {
        let tls_gate = app.readiness.gate("tls");
        let certs = Arc::new(CertStore::load(
            &settings.tls_cert,
            &settings.tls_key,
            app.metrics.clone(),
        )?);
        let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(certs.clone())?));

        let bind = |addr: SocketAddr, flag: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, flag, source })
        };
        let webhook_listener = bind(settings.listen, "--listen").await?;
        let admin_listener = bind(settings.admin_listen, "--admin-listen").await?;
        let webhook_addr = local_addr(&webhook_listener, settings.listen);
        let admin_addr = local_addr(&admin_listener, settings.admin_listen);
        tls_gate.set(true);

        let (stop, stop_rx) = watch::channel(false);
        let mut watchers = vec![spawn_cert_reload(&certs, &settings, stop_rx.clone())];
        if let Some(path) = app.config_path.clone() {
            watchers.push(spawn_config_reload(
                path,
                app.config.clone(),
                app.metrics.clone(),
                settings.reload_poll,
                stop_rx.clone(),
            ));
        }

        let hook = webhook::router(webhook::Webhook {
            mutator: app.mutator.clone(),
            validator: app.validator.clone(),
            metrics: app.metrics.clone(),
            body_limit: settings.body_limit,
            request_timeout: settings.request_timeout,
        });
        let admin = admin::router(app.readiness.clone(), app.metrics.clone());
        tracing::info!(webhook = %webhook_addr, admin = %admin_addr, "serving");

        let readiness = app.readiness.clone();
        let done = tokio::spawn(async move {
            let (admin_stop, admin_stop_rx) = watch::channel(false);
            let admin_task = tokio::spawn(serve_plain(
                admin_listener,
                admin,
                settings.header_read_timeout,
                admin_stop_rx,
            ));
            let (tls_stop, tls_stop_rx) = watch::channel(false);
            let tls_task = tokio::spawn(serve_tls(
                webhook_listener,
                acceptor,
                hook,
                settings.clone(),
                tls_stop_rx,
            ));
            let mut stop_rx = stop_rx;
            let _ = stop_rx.wait_for(|s| *s).await;
            readiness.start_draining();
            tracing::info!(delay = ?settings.shutdown_delay, "shutting down: readiness is false");
            tokio::time::sleep(settings.shutdown_delay).await;
            tls_stop.send_replace(true);
            let _ = tls_task.await;
            admin_stop.send_replace(true);
            let _ = admin_task.await;
            for w in watchers {
                w.abort();
            }
            tracing::info!("stopped");
        });
        Ok(Self {
            webhook_addr,
            admin_addr,
            certs,
            stop,
            done,
        })
    }

    /// Starts graceful shutdown; returns at once.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until the server has drained and stopped.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

fn local_addr(l: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    l.local_addr().unwrap_or(fallback)
}

fn spawn_cert_reload(
    certs: &Arc<CertStore>,
    settings: &Settings,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let store = certs.clone();
    reload::spawn(
        "tls",
        certs.watch_dirs(),
        settings.reload_poll,
        stop,
        move || match store.reload() {
            Ok(tls::Reloaded::Unchanged) => {}
            Ok(tls::Reloaded::Swapped { not_after }) => {
                tracing::info!(not_after, "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload rejected; keeping the previous certificate")
            }
        },
    )
}

fn spawn_config_reload(
    path: PathBuf,
    config: Arc<ArcSwap<Config>>,
    metrics: Arc<Metrics>,
    poll: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let dirs = vec![tls::parent_dir(&path)];
    let mut last = std::fs::read(&path).ok();
    reload::spawn("config", dirs, poll, stop, move || {
        let bytes = std::fs::read(&path).ok();
        if bytes == last {
            return;
        }
        last = bytes;
        match Config::load(&path) {
            Ok(new) => {
                if new.server != config.load().server {
                    tracing::warn!("config `server` section changed; restart to apply it");
                }
                config.store(Arc::new(new));
                tracing::info!(path = %path.display(), "config reloaded");
            }
            Err(e) => {
                metrics.config_reload_errors.inc();
                tracing::error!(error = %e, "config reload rejected; keeping the previous config");
            }
        }
    })
}

fn http_builder(
    header_read_timeout: Duration,
) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    b
}

/// Accepts TLS connections until `stop`, then drains them for up to the grace period.
async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder(settings.header_read_timeout));
    let service = TowerToHyperService::new(router);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all in-flight requests finished"),
        _ = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!(grace = ?settings.shutdown_grace, "shutdown grace period over; closing remaining connections");
        }
    }
}

/// The admin listener: plain HTTP/1.1.
async fn serve_plain(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder(header_read_timeout));
    let service = TowerToHyperService::new(router);
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let conn = builder.serve_connection(TokioIo::new(tcp), service.clone());
        let fut = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = fut.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
