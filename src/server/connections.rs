//! How many connections each listener holds, and which one gives way when
//! they are too many.
//!
//! Every open connection costs a file descriptor. Unbounded, a few hundred
//! TCP connections that never send a byte use them all: `accept` fails with
//! `EMFILE` on both listeners, so `/mutate` handshakes and `/healthz` fail
//! with them, and under `failurePolicy: Ignore` every pod starts
//! uninstrumented.
//!
//! So each listener has a [`Budget`], sized from the process' descriptor
//! limit ([`Caps::for_this_process`]) so that the two budgets and the
//! process' own files fit in it together: a flood on one port leaves the
//! other port its descriptors, and neither runs the process out of them.
//!
//! A full listener still accepts (so the kernel's backlog never fills with
//! connections nobody will look at, and a new client does not sit in it,
//! apparently connected, until its own timeout), then makes room by closing
//! the oldest connection that has not yet sent a request: a silent
//! connection, one stuck in its TLS handshake or one still dribbling its
//! first headers. Such a connection has nothing in flight to lose, and a real
//! client (the API server, the kubelet's probe) sends its request within
//! milliseconds of connecting, long before a flood of new connections
//! reaches it, so a flood of silent connections only ever evicts its own.
//! Only when every connection has sent a request (real load) is the new
//! connection closed at once. Both are counted in
//! `otel_admission_connections_shed_total{listener,reason}`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Descriptors kept out of both budgets for the process' own files: the
/// standard streams, epoll and its wakers, the inotify watches, certificate,
/// config and policy reads, the API server's watch connections, the Event
/// and rollout clients. About 40 are open at idle; the rest is headroom.
pub const FD_RESERVE: u64 = 64;
/// The admin listener's share of the descriptors left: probes and scrapes
/// need a handful of connections, not hundreds.
pub const ADMIN_SHARE: u64 = 8;
/// The admin listener's cap, whatever the descriptor limit.
pub const ADMIN_MAX: usize = 64;
/// The TLS listener's cap, whatever the descriptor limit: far more than the
/// workers can answer at once (an API server talks HTTP/2, a few connections
/// per instance; past the queue a request is answered "overloaded" anyway),
/// and at the ~13 KiB of a silent connection and ~36 KiB of an idle HTTP/1.1
/// one after a request (measured, debug build), at most 36 MiB: room within
/// the pod's 256 MiB limit.
pub const WEBHOOK_MAX: usize = 1024;
/// The least either cap may be, on a process with very few descriptors.
pub const MIN_CAP: usize = 4;
/// The descriptor limit assumed where it cannot be read (no `/proc`):
/// Linux's default soft limit.
pub const DEFAULT_FD_LIMIT: u64 = 1024;

/// How long accepting waits for an evicted connection to give its
/// descriptor back (it is only waiting on its socket: microseconds).
const EVICT_WAIT: Duration = Duration::from_millis(100);
/// At most one warning per listener this often while it sheds connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The two listeners' caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub webhook: usize,
    pub admin: usize,
}

impl Caps {
    /// From this process' soft `RLIMIT_NOFILE`, as `ulimit -n` or the
    /// container runtime set it.
    pub fn for_this_process() -> Self {
        Self::for_fd_limit(fd_soft_limit().unwrap_or(DEFAULT_FD_LIMIT))
    }

    /// [`FD_RESERVE`] kept back; of the rest an eighth (at most
    /// [`ADMIN_MAX`]) for the admin listener and the remainder (at most
    /// [`WEBHOOK_MAX`]) for the TLS listener, so the two together never
    /// exceed what is left once the process' own files are open.
    pub fn for_fd_limit(limit: u64) -> Self {
        let usable = usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
        let admin = (usable / ADMIN_SHARE as usize).clamp(MIN_CAP, ADMIN_MAX);
        let webhook = usable.saturating_sub(admin).clamp(MIN_CAP, WEBHOOK_MAX);
        Self { webhook, admin }
    }
}

/// The soft limit on open files, from `/proc/self/limits` (no libc here);
/// `None` where it cannot be read, `u64::MAX` when unlimited.
pub fn fd_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_fd_soft_limit(&limits)
}

fn parse_fd_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// One listener's connections: at most `cap` open, and the ones that have
/// not sent a request yet, oldest first, for eviction.
pub struct Budget {
    listener: &'static str,
    cap: usize,
    permits: Arc<Semaphore>,
    /// Connections without a request yet, by accept order.
    unproven: Mutex<BTreeMap<u64, Arc<Notify>>>,
    next: AtomicU64,
    metrics: Arc<Metrics>,
    open: Gauge,
    /// When the last shedding warning was logged, in ms since `epoch`.
    warned_ms: AtomicU64,
    epoch: std::time::Instant,
}

/// What [`Budget::admit`] decided for a new connection.
pub enum Admission {
    /// Serve it, holding this slot for as long as its descriptor is open.
    Admitted(Slot),
    /// Every connection has sent a request: close this one at once.
    Full,
}

impl Budget {
    pub fn new(listener: &'static str, cap: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        let open = metrics.connections_open(listener);
        Arc::new(Self {
            listener,
            cap: cap.max(1),
            permits: Arc::new(Semaphore::new(cap.max(1))),
            unproven: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            metrics,
            open,
            warned_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    fn unproven(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        // Only ids and wakers behind it: a panic elsewhere leaves it whole.
        self.unproven.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection just accepted: a free one, else the one of
    /// the oldest connection that has not sent a request (it is told to
    /// close, and its slot waited for), else none.
    pub async fn admit(self: &Arc<Self>) -> Admission {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let victim = self.unproven().pop_first();
                let Some((_, evict)) = victim else {
                    self.shed("rejected");
                    return Admission::Full;
                };
                evict.notify_one();
                self.shed("evicted");
                // Its descriptor comes back when its task has dropped it.
                match tokio::time::timeout(EVICT_WAIT, self.permits.clone().acquire_owned()).await {
                    Ok(Ok(p)) => {
                        // Let the connections accepted just before run (and
                        // read the requests already waiting on their
                        // sockets) before the next one is accepted: a flood
                        // arriving faster than one task's turn must not
                        // evict a real client before it was ever polled.
                        tokio::task::yield_now().await;
                        p
                    }
                    _ => {
                        self.shed("rejected");
                        return Admission::Full;
                    }
                }
            }
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        self.unproven().insert(id, evict.clone());
        self.open.inc();
        Admission::Admitted(Slot(Arc::new(SlotInner {
            budget: self.clone(),
            id,
            evict,
            served: AtomicBool::new(false),
            _permit: permit,
        })))
    }

    fn shed(&self, reason: &'static str) {
        self.metrics.connection_shed(self.listener, reason);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.warned_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .warned_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                listener = self.listener,
                cap = self.cap,
                "connection limit reached: closing connections that sent no request, or new ones when all did (otel_admission_connections_shed_total)"
            );
        }
    }
}

/// A connection's place in its listener's budget. Clones share it; the
/// descriptor is counted until the last clone is dropped, so whatever keeps
/// the socket (the connection, its linger) keeps a clone.
#[derive(Clone)]
pub struct Slot(Arc<SlotInner>);

struct SlotInner {
    budget: Arc<Budget>,
    id: u64,
    evict: Arc<Notify>,
    served: AtomicBool,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// The connection sent a request: it is no longer evicted for room.
    pub fn served(&self) {
        if !self.0.served.swap(true, Ordering::SeqCst) {
            self.0.budget.unproven().remove(&self.0.id);
        }
    }

    pub fn was_served(&self) -> bool {
        self.0.served.load(Ordering::SeqCst)
    }

    /// Resolves when the connection is to close to make room; never once it
    /// has sent a request (an eviction racing its first request is ignored).
    pub async fn evicted(&self) {
        loop {
            self.0.evict.notified().await;
            if !self.was_served() {
                return;
            }
        }
    }
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        if !*self.served.get_mut() {
            self.budget.unproven().remove(&self.id);
        }
        self.budget.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_the_reserve_and_split_the_rest() {
        let c = Caps::for_fd_limit(512);
        assert_eq!(
            c,
            Caps {
                webhook: 392,
                admin: 56
            }
        );
        assert!(c.webhook + c.admin + FD_RESERVE as usize <= 512);
        assert_eq!(
            Caps::for_fd_limit(1024),
            Caps {
                webhook: 896,
                admin: 64
            }
        );
        assert_eq!(
            Caps::for_fd_limit(4096),
            Caps {
                webhook: WEBHOOK_MAX,
                admin: ADMIN_MAX
            }
        );
        assert_eq!(
            Caps::for_fd_limit(u64::MAX),
            Caps {
                webhook: WEBHOOK_MAX,
                admin: ADMIN_MAX
            }
        );
        assert_eq!(
            Caps::for_fd_limit(16),
            Caps {
                webhook: MIN_CAP,
                admin: MIN_CAP
            }
        );
    }

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            512                  1048576              files     \n";
        assert_eq!(parse_fd_soft_limit(text), Some(512));
        let unlimited = text.replace("512   ", "unlimited");
        assert_eq!(parse_fd_soft_limit(&unlimited), Some(u64::MAX));
        assert_eq!(parse_fd_soft_limit("nothing"), None);
        if std::path::Path::new("/proc/self/limits").exists() {
            assert!(fd_soft_limit().is_some());
        }
    }

    fn admitted(a: Admission) -> Slot {
        match a {
            Admission::Admitted(s) => s,
            Admission::Full => panic!("not admitted"),
        }
    }

    #[tokio::test]
    async fn a_full_budget_evicts_the_oldest_silent_connection_then_refuses() {
        let metrics = Arc::new(Metrics::new());
        let b = Budget::new("webhook", 2, metrics.clone());
        let first = admitted(b.admit().await);
        let second = admitted(b.admit().await);
        // The first is told to go; its task drops its slot.
        let evicting = {
            let first = first.clone();
            tokio::spawn(async move {
                first.evicted().await;
                drop(first);
            })
        };
        drop(first);
        let third = admitted(b.admit().await);
        evicting.await.expect("evicted");
        second.served();
        third.served();
        assert!(matches!(b.admit().await, Admission::Full), "all served");
        let text = metrics.encode();
        for needle in [
            "otel_admission_connections_shed_total{listener=\"webhook\",reason=\"evicted\"} 1",
            "otel_admission_connections_shed_total{listener=\"webhook\",reason=\"rejected\"} 1",
            "otel_admission_connections_open{listener=\"webhook\"} 2",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        drop((second, third));
        assert!(
            metrics
                .encode()
                .contains("otel_admission_connections_open{listener=\"webhook\"} 0")
        );
    }
}
