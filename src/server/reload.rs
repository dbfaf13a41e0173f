//! Watching files that change under a running server: the TLS pair, the
//! config file and (later) the policy directory.
//!
//! inotify on the parent directories catches the kubelet's `..data` symlink
//! swap; a slow poll backs it up for filesystems where events do not arrive.
//! Callers compare contents, so a spurious wake-up costs one file read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::Notify;

/// How long to let a burst of events settle before reloading.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Calls `on_change` after any change in `dirs`, and every `poll`.
/// Stops when `stop` resolves.
pub fn spawn<F>(
    what: &'static str,
    dirs: Vec<PathBuf>,
    poll: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    mut on_change: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() + Send + 'static,
{
    let wake = Arc::new(Notify::new());
    let watcher = {
        let wake = wake.clone();
        notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok() {
                wake.notify_one();
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
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut stop = stop;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = wake.notified() => {
                    tokio::time::sleep(DEBOUNCE).await;
                }
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            on_change();
        }
    })
}
