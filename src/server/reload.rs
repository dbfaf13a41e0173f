//! Watching files that change under a running server: the TLS pair, the
//! config file and the policy directory.
//!
//! inotify on the parent directories catches the kubelet's `..data` symlink
//! swap; a slow poll backs it up for filesystems where events do not arrive.
//! Callers compare contents, so a spurious wake-up costs one file read.
//!
//! Each watcher runs its reloads on an OS thread of its own, never on the
//! async runtime: a reload parses and compiles whatever an admin wrote (a
//! policy whose compile is slow, a huge config), and on a runtime worker
//! that would stall `/healthz` and admission with it. On its own thread a
//! slow reload delays only the next reload of the same kind, while the
//! previous config or policy set keeps serving.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

/// How long to let a burst of events settle before reloading.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// A reload that runs longer than this is logged while it runs, so a
/// compile that hangs is visible before it ends.
pub const SLOW_RELOAD: Duration = Duration::from_secs(5);

enum Wake {
    Changed,
    Stop,
}

/// Calls `on_change` after any change in `dirs`, and every `poll`, on a
/// thread named `reload-<what>`. Stops when `stop` turns true (or its sender
/// is gone). The returned task ends when the thread has stopped.
pub fn spawn<F>(
    what: &'static str,
    dirs: Vec<PathBuf>,
    poll: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    on_change: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Wake>();
    let watcher = {
        let tx = tx.clone();
        notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok() {
                let _ = tx.send(Wake::Changed);
            }
        })
    };
    let watcher = match watcher {
        Ok(mut w) => {
            for d in &dirs {
                if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
                    tracing::warn!(%what, dir = %d.display(), error = %e, "cannot watch directory; polling only");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(%what, error = %e, "file watching unavailable; polling only");
            None
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("reload-{what}"))
        .spawn(move || {
            let _watcher = watcher;
            run(what, &rx, poll, on_change);
            let _ = done_tx.send(());
        });
    if let Err(e) = thread {
        tracing::error!(%what, error = %e, "cannot start the reload thread; changes are not picked up until a restart");
    }
    tokio::spawn(async move {
        let mut stop = stop;
        let mut done = done_rx;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            _ = &mut done => return,
        }
        let _ = tx.send(Wake::Stop);
        let _ = done.await;
    })
}

/// The reload thread's loop: wait for a change or the poll, settle, reload.
fn run<F: FnMut()>(
    what: &'static str,
    rx: &mpsc::Receiver<Wake>,
    poll: Duration,
    mut on_change: F,
) {
    let mut next_poll = Instant::now() + poll;
    loop {
        let wait = next_poll.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Wake::Changed) => {
                // Let the burst settle, keeping a stop that arrives meanwhile.
                let settle = Instant::now() + DEBOUNCE;
                loop {
                    match rx.recv_timeout(settle.saturating_duration_since(Instant::now())) {
                        Ok(Wake::Changed) => {}
                        Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                    }
                }
            }
            Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => next_poll = Instant::now() + poll,
        }
        let started = Instant::now();
        on_change();
        let took = started.elapsed();
        if took > SLOW_RELOAD {
            tracing::warn!(%what, took = ?took, "a reload took longer than {SLOW_RELOAD:?}; the previous state served meanwhile");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A reload that blocks for a long time runs on its own thread: the
    /// runtime's only worker keeps running other tasks meanwhile, and the
    /// stop signal still ends the watcher once the reload returns.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_reload_never_blocks_the_runtime() {
        let dir = tempfile::tempdir().expect("tmp");
        let calls = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let handle = {
            let calls = calls.clone();
            spawn(
                "test",
                vec![dir.path().to_path_buf()],
                Duration::from_millis(20),
                stop_rx,
                move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(400));
                },
            )
        };
        // The reload is blocked in its sleep; this single-threaded runtime
        // still ticks every 10 ms.
        let started = Instant::now();
        let mut ticks = 0;
        while started.elapsed() < Duration::from_millis(300) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            ticks += 1;
        }
        assert!(
            ticks >= 20,
            "the runtime was blocked: {ticks} ticks in 300 ms"
        );
        assert!(calls.load(Ordering::SeqCst) >= 1);
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the watcher stops after the reload in progress")
            .expect("joined");
    }
}
