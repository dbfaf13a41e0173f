//! Where log lines go: a buffer that a writer thread empties into stderr
//! every few milliseconds.
//!
//! `tracing_appender::non_blocking` hands each line to its thread through a
//! channel, and the thread, idle between lines, is woken for each one: a
//! futex wake and two context switches per admission, on the two cores the
//! requests need. Here a line is one copy into a shared buffer under a
//! mutex. While lines keep coming, the thread wakes on its own
//! every [`INTERVAL`] and writes everything gathered in one `write`; when
//! none came it parks, and the first line after that wakes it once. So a
//! line reaches stderr at most about [`INTERVAL`] late.
//!
//! Not lossy: a producer that finds [`MAX_BUFFERED`] bytes waiting blocks
//! until the thread has taken them. Hand-written because the maintained
//! appenders (tracing-appender, its `non_blocking` and `rolling`) all wake
//! the writer per line.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer gathers lines before a write, while lines keep coming.
pub const INTERVAL: Duration = Duration::from_millis(5);
/// The bytes waiting at which producers wait for the writer.
pub const MAX_BUFFERED: usize = 4 << 20;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The writer is waiting for a line (and must be woken for one).
    parked: bool,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// A line arrived while the writer was parked, or the sink is closing.
    wake: Condvar,
    /// The writer took the buffer.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only bytes behind: go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producers' side: a `MakeWriter` for tracing-subscriber.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Flushes what is buffered and stops the writer when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A sink writing to `out` from its own thread.
pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogSink, Guard)> {
    let shared = Arc::new(Shared::default());
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer(&shared, out))?
    };
    Ok((
        LogSink {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn writer<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.buf.is_empty() && !state.closed {
            state.parked = true;
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.parked = false;
        let closed = state.closed;
        std::mem::swap(&mut state.buf, &mut spare);
        drop(state);
        shared.drained.notify_all();
        // Output errors (a closed stderr) cannot be reported anywhere better.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
        if closed {
            return;
        }
        std::thread::sleep(INTERVAL);
    }
}

impl LogSink {
    fn append(&self, line: &[u8]) {
        let mut state = self.shared.lock();
        while state.buf.len() >= MAX_BUFFERED && !state.closed {
            state = self
                .shared
                .drained
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.buf.extend_from_slice(line);
        if state.parked {
            state.parked = false;
            drop(state);
            self.shared.wake.notify_one();
        }
    }
}

impl Write for &LogSink {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = &'a LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back, counting its writes.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Out {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut o = self.0.lock().unwrap_or_else(|p| p.into_inner());
            o.0.extend_from_slice(b);
            o.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_in_few_writes_and_the_guard_flushes() {
        let out = Out::default();
        let (sink, guard) = spawn(out.clone()).expect("spawn");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        let _ = (&sink).write_all(format!("{t} {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        drop(guard);
        let (bytes, writes) = out.0.lock().map(|o| o.clone()).expect("out");
        let text = String::from_utf8(bytes).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000, "not lossy");
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .filter_map(|n| n.parse().ok())
                .collect();
            assert_eq!(mine, (0..5_000).collect::<Vec<_>>(), "thread {t} in order");
        }
        assert!(writes < 2_000, "batched: {writes} writes for 20,000 lines");
    }

    #[test]
    fn a_line_after_a_quiet_spell_is_written_promptly() {
        let out = Out::default();
        let (sink, _guard) = spawn(out.clone()).expect("spawn");
        std::thread::sleep(INTERVAL * 4);
        let _ = (&sink).write_all(b"late\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().map(|o| o.0.is_empty()).unwrap_or(true) {
            assert!(
                std::time::Instant::now() < deadline,
                "the parked writer was never woken"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_full_buffer_makes_the_producer_wait_not_drop() {
        let out = Out::default();
        let (sink, guard) = spawn(out.clone()).expect("spawn");
        let line = vec![b'x'; 1 << 20];
        for _ in 0..12 {
            let _ = (&sink).write_all(&line);
        }
        drop(guard);
        let len = out.0.lock().map(|o| o.0.len()).unwrap_or(0);
        assert_eq!(len, 12 << 20);
    }
}
