//! The admission server: a TLS listener for `/mutate` and `/validate`, and a
//! plain-HTTP admin listener, with hot reload and graceful shutdown.
//!
//! Shutdown order (SPEC §10): readiness turns false and, for
//! `shutdown_delay`, new connections are still accepted while every
//! HTTP/1.1 response carries `Connection: close` and HTTP/2 connections get
//! GOAWAY; then the TLS listener closes, every connection accepted before
//! has its first request served, and in-flight requests get up to
//! `shutdown_grace` to finish. The admin listener stays up until the end so
//! probes see "not ready" rather than "connection refused".

pub mod admin;
pub mod connections;
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
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admission::{Mutate, Validate};
use crate::config::Config;
use crate::metrics::Metrics;
use admin::Readiness;
use connections::{Admission, Budget, Caps, Slot};
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
pub struct Services {
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
    pub async fn start(settings: Settings, app: Services) -> Result<Self, ServerError> {
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
            config: app.config.clone(),
            body_limit: settings.body_limit,
            request_timeout: settings.request_timeout,
            workers: Arc::new(webhook::Workers::for_this_machine()),
        });
        let admin = admin::router(app.readiness.clone(), app.metrics.clone());
        // Each listener's own connection cap, both within the descriptor
        // limit: a flood on one port leaves the other its descriptors.
        let caps = Caps::for_this_process();
        let webhook_budget = Budget::new("webhook", caps.webhook, app.metrics.clone());
        let admin_budget = Budget::new("admin", caps.admin, app.metrics.clone());
        tracing::info!(
            webhook = %webhook_addr,
            admin = %admin_addr,
            webhook_max_connections = caps.webhook,
            admin_max_connections = caps.admin,
            "serving"
        );

        let readiness = app.readiness.clone();
        let done = tokio::spawn(async move {
            let (admin_stop, admin_stop_rx) = watch::channel(false);
            let admin_task = tokio::spawn(serve_plain(
                admin_listener,
                admin,
                settings.header_read_timeout,
                admin_budget,
                admin_stop_rx,
            ));
            let (tls_phase, tls_phase_rx) = watch::channel(Phase::Serving);
            let tls_task = tokio::spawn(serve_tls(
                webhook_listener,
                acceptor,
                hook,
                settings.clone(),
                webhook_budget,
                tls_phase_rx,
            ));
            let mut stop_rx = stop_rx;
            let _ = stop_rx.wait_for(|s| *s).await;
            readiness.start_draining();
            tls_phase.send_replace(Phase::Draining);
            tracing::info!(delay = ?settings.shutdown_delay, "shutting down: readiness is false, clients are asked to leave");
            tokio::time::sleep(settings.shutdown_delay).await;
            tls_phase.send_replace(Phase::Closing);
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
        // A file that cannot be read right now is most likely mid-swap
        // (the kubelet's `..data` rename): the next event or poll reads it.
        let Ok(bytes) = std::fs::read(&path).map(Some) else {
            tracing::debug!(path = %path.display(), "config file unreadable; retrying on the next change");
            return;
        };
        if bytes == last {
            return;
        }
        // An empty file on reload is far likelier a truncated write than
        // an admin wanting every rule gone: refused (`{}` asks for defaults).
        if bytes.as_deref().is_some_and(crate::config::is_blank) {
            metrics.config_reload_errors.inc();
            tracing::error!(path = %path.display(), "config reload rejected: the file is empty (a truncated write?); keeping the previous config; write `{{}}` for all defaults");
            last = bytes;
            return;
        }
        last = bytes;
        match Config::load(&path) {
            Ok(mut new) => {
                // The pod's own namespace (`POD_NAMESPACE`) filled in at
                // start-up stays when the file names none.
                if new.server.namespace.is_none() {
                    new.server.namespace = config.load().server.namespace.clone();
                }
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

/// Where the TLS listener is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    /// From SIGTERM for `shutdown_delay`: still accepting, but HTTP/1.1
    /// responses carry `Connection: close` and HTTP/2 connections get GOAWAY,
    /// so clients leave on a response boundary.
    Draining,
    /// The listener is closed; connections finish within the grace period.
    Closing,
}

/// Resolves once the listener is closing (or the server is gone).
async fn closing(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Closing).await;
}

/// How long, once closing, a connection that has not sent its first request
/// (or finished its TLS handshake) is waited for.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(2);

/// How long a connection asked to shut down, with no request in flight,
/// may take before it is dropped: a peer that stopped reading (or is still
/// dribbling its first headers) must not hold the exit.
const IDLE_SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Per connection: whether its first request has arrived, and how many of
/// its requests are being answered.
#[derive(Default)]
struct FirstRequest {
    seen: std::sync::atomic::AtomicBool,
    active: std::sync::atomic::AtomicUsize,
    notify: tokio::sync::Notify,
}

impl FirstRequest {
    fn mark(&self) {
        self.active
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if !self.seen.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    fn done(&self) {
        self.active
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn idle(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    fn seen(&self) -> bool {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn wait(&self) {
        let notified = self.notify.notified();
        if !self.seen() {
            notified.await;
        }
    }
}

/// Accepts TLS connections, then drains them so that no request that
/// reached us goes unanswered (SPEC §10): the HTTP version comes from ALPN,
/// because the `auto` builder cancels, on graceful shutdown, a connection
/// that has not yet read its first bytes.
async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    settings: Settings,
    budget: Arc<Budget>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut conns = tokio::task::JoinSet::new();
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
            _ = closing(&mut phase) => break,
        };
        let slot = match budget.admit().await {
            Admission::Admitted(slot) => slot,
            // Closed at once, counted: every connection is serving a client.
            Admission::Full => continue,
        };
        let _ = tcp.set_nodelay(true);
        conns.spawn(serve_connection(
            tcp,
            peer,
            acceptor.clone(),
            router.clone(),
            settings.header_read_timeout,
            phase.clone(),
            slot,
        ));
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let all_done = async { while conns.join_next().await.is_some() {} };
    tokio::select! {
        _ = all_done => tracing::info!("all in-flight requests finished"),
        _ = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!(grace = ?settings.shutdown_grace, "shutdown grace period over; closing remaining connections");
            conns.abort_all();
        }
    }
    let lingering = tokio::time::Instant::now();
    while LINGERING.load(std::sync::atomic::Ordering::SeqCst) > 0 && lingering.elapsed() < LINGER {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One TLS connection: handshake, HTTP/1.1 or HTTP/2 by ALPN, and its part
/// of the drain.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    header_read_timeout: Duration,
    mut phase: watch::Receiver<Phase>,
    slot: Slot,
) {
    let handshake = tokio::time::timeout(header_read_timeout, acceptor.accept(tcp));
    let tls = {
        let mut closing_rx = phase.clone();
        tokio::pin!(handshake);
        let cut = async {
            closing(&mut closing_rx).await;
            tokio::time::sleep(FIRST_REQUEST_WAIT).await;
        };
        tokio::select! {
            r = &mut handshake => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            // A client that never finishes its handshake does not hold the exit.
            _ = cut => return,
            // Nor its slot, when the listener is full.
            _ = slot.evicted() => return,
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let first = Arc::new(FirstRequest::default());
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(
        *phase.borrow() != Phase::Serving,
    ));
    let service = {
        let first = first.clone();
        let draining = draining.clone();
        let slot = slot.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            first.mark();
            slot.served();
            let router = router.clone();
            let draining = draining.clone();
            let first = first.clone();
            async move {
                use tower::ServiceExt as _;
                let mut resp = router
                    .oneshot(req.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|e| match e {});
                first.done();
                // Decided when the response goes out: a drain that began
                // while the request ran still closes this connection after it.
                if !h2 && draining.load(std::sync::atomic::Ordering::SeqCst) {
                    resp.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let io = TokioIo::new(Linger::new(tls, slot.clone()));
    let result = if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(header_read_timeout))
            .keep_alive_timeout(header_read_timeout);
        let conn = b.serve_connection(io, service);
        drive(
            conn,
            h2,
            &first,
            &draining,
            &mut phase,
            header_read_timeout,
            &slot,
            |c| c.graceful_shutdown(),
        )
        .await
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .keep_alive(true);
        let conn = b.serve_connection(io, service);
        drive(
            conn,
            h2,
            &first,
            &draining,
            &mut phase,
            header_read_timeout,
            &slot,
            |c| c.graceful_shutdown(),
        )
        .await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}

/// How long a closed connection keeps reading (and dropping) what the peer
/// still sends, so that closing with unread bytes does not turn into a TCP
/// reset that destroys our last frames (an HTTP/2 GOAWAY naming the last
/// stream we processed) before the client reads them.
const LINGER: Duration = Duration::from_secs(1);

/// Connections still lingering; the listener waits for them before the
/// process exits, or the exit itself would reset them.
static LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An IO that, when hyper is done with it, lingers: the write side is shut
/// and the read side drained for [`LINGER`] off the connection's task. The
/// connection's [`Slot`] goes with it, so a lingering socket still counts
/// against the cap. A connection that never sent a request has no answer to
/// protect: it closes at once, so that evicting silent connections gives
/// their descriptors back now, not a second later.
struct Linger<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> {
    io: Option<T>,
    slot: Slot,
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Linger<T> {
    fn new(io: T, slot: Slot) -> Self {
        Self { io: Some(io), slot }
    }

    fn inner(&mut self) -> std::io::Result<&mut T> {
        self.io
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> tokio::io::AsyncRead
    for Linger<T>
{
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner() {
            Ok(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> tokio::io::AsyncWrite
    for Linger<T>
{
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.inner() {
            Ok(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner() {
            Ok(io) => std::pin::Pin::new(io).poll_flush(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner() {
            Ok(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Drop for Linger<T> {
    fn drop(&mut self) {
        let Some(mut io) = self.io.take() else {
            return;
        };
        if !self.slot.was_served() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let slot = self.slot.clone();
        LINGERING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        handle.spawn(async move {
            let _slot = slot;
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            struct Done;
            impl Drop for Done {
                fn drop(&mut self) {
                    LINGERING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let _done = Done;
            let _ = tokio::time::timeout(LINGER, io.flush()).await;
            let _ = tokio::time::timeout(LINGER, io.shutdown()).await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(n) = io.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
    }
}

/// Polls a connection through the drain phases.
///
/// - Draining: HTTP/2 gets GOAWAY (streams already opened are served);
///   HTTP/1.1 keeps serving, each response with `Connection: close`.
/// - Closing: a connection that has had its first request shuts down
///   gracefully (the request in flight finishes); one that has not yet is
///   given [`FIRST_REQUEST_WAIT`] to send it, and that request is served.
/// - An HTTP/2 connection that sends no request within the header-read
///   timeout is shut down (HTTP/1.1 has hyper's own header-read timeout).
/// - One evicted from a full listener before its first request is dropped.
#[allow(clippy::too_many_arguments)]
async fn drive<C, E>(
    conn: C,
    h2: bool,
    first: &FirstRequest,
    draining: &std::sync::atomic::AtomicBool,
    phase: &mut watch::Receiver<Phase>,
    header_read_timeout: Duration,
    slot: &Slot,
    shutdown: impl Fn(std::pin::Pin<&mut C>),
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let opened = tokio::time::Instant::now();
    let mut closing_since: Option<tokio::time::Instant> = None;
    let mut shut = false;
    let mut shut_at: Option<tokio::time::Instant> = None;
    loop {
        let now_phase = *phase.borrow();
        if now_phase != Phase::Serving {
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if now_phase == Phase::Closing && closing_since.is_none() {
            closing_since = Some(tokio::time::Instant::now());
        }
        // When a connection without its first request stops being waited for.
        let first_by = [
            closing_since.map(|t| t + FIRST_REQUEST_WAIT),
            h2.then_some(opened + header_read_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        if !shut {
            let go = match now_phase {
                Phase::Serving => false,
                // GOAWAY is safe at once: streams the client opened before
                // it saw the final GOAWAY are still served.
                Phase::Draining => h2,
                Phase::Closing => h2 || first.seen(),
            } || (!first.seen()
                && first_by.is_some_and(|t| t <= tokio::time::Instant::now()));
            if go {
                shutdown(conn.as_mut());
                shut = true;
                shut_at = Some(tokio::time::Instant::now());
            }
        }
        // Asked to leave, nothing in flight, and still open after a while:
        // the peer is not reading or never sent a request. Drop it. (During
        // Draining an HTTP/2 connection stays: its client may still be
        // sending the streams it opened before our GOAWAY.)
        let drop_by = match (shut_at, closing_since) {
            (Some(_), Some(closing)) => Some(closing + IDLE_SHUTDOWN_WAIT),
            (Some(t), None) if !first.seen() => Some(t + IDLE_SHUTDOWN_WAIT),
            _ => None,
        };
        if drop_by.is_some_and(|t| t <= tokio::time::Instant::now()) && first.idle() {
            return Ok(());
        }
        let wait_first = async {
            match first_by {
                Some(t) if !shut && !first.seen() => {
                    tokio::select! {
                        _ = first.wait() => {}
                        _ = tokio::time::sleep_until(t) => {}
                    }
                }
                _ => std::future::pending().await,
            }
        };
        let give_up = async {
            match drop_by {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => return r,
            // No request yet: nothing in flight to lose.
            _ = slot.evicted() => return Ok(()),
            _ = give_up => {}
            changed = phase.changed() => {
                if changed.is_err() {
                    // The server is gone: finish what is in flight.
                    if !shut {
                        shutdown(conn.as_mut());
                    }
                    return conn.await;
                }
            }
            _ = wait_first => {}
        }
    }
}

/// The admin listener: plain HTTP/1.1 (probes and scrapes; no h2c).
///
/// hyper's HTTP/1.1 header-read timeout runs from the moment a connection
/// opens and again after every response, so a connection that sends nothing
/// and a keep-alive connection left idle are both closed after
/// `header_read_timeout`. (The `auto` builder first waits, without any
/// timeout, for the bytes that tell HTTP/1.1 from HTTP/2, so a silent
/// connection would stay open for good.)
async fn serve_plain(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    budget: Arc<Budget>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
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
        let slot = match budget.admit().await {
            Admission::Admitted(slot) => slot,
            Admission::Full => continue,
        };
        let service = {
            let router = router.clone();
            let slot = slot.clone();
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                slot.served();
                let router = router.clone();
                async move {
                    use tower::ServiceExt as _;
                    router.oneshot(req.map(axum::body::Body::new)).await
                }
            })
        };
        let conn = builder.serve_connection(TokioIo::new(tcp), service);
        let fut = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                // A connection that sent no request gives way to a new one.
                _ = slot.evicted() => {}
            }
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
