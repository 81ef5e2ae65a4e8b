//! The supervisor's own diagnostics: `tracing` events, formatted to stderr by a thread of their
//! own from a bounded queue.

use std::sync::Arc;

/// Diagnostics of the supervisor itself go to stderr; `PM_LOG` sets the level. They are written
/// by a thread of their own from a bounded queue, so a stderr nobody reads (a pipe the launching
/// app never drains) costs diagnostics, counted, never a stall.
pub(crate) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(queue) = StderrQueue::start() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(queue)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        // A broken stderr (the controlling app's terminal closed) must never stop a shutdown:
        // without this, tracing reports its own write errors with eprintln!, which panics.
        .log_internal_errors(false)
        .try_init();
}

/// Diagnostic lines waiting for stderr, at most.
const STDERR_QUEUE: usize = 1024;

/// Lines queued for stderr and not written yet, for [`flush_diagnostics`].
static STDERR_PENDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The writer the diagnostics go through: each event is formatted into a buffer of its own and
/// queued whole when the buffer is dropped, or dropped (and counted) when the queue is full.
#[derive(Debug, Clone)]
struct StderrQueue {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl StderrQueue {
    fn start() -> Option<StderrQueue> {
        use std::io::Write as _;
        use std::sync::atomic::Ordering;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(STDERR_QUEUE);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("pm-stderr".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut err = std::io::stderr();
                for line in rx {
                    let lost = counted.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        let _ = writeln!(err, "pm-supervisor: {lost} diagnostic lines were dropped: stderr was not read");
                    }
                    // A broken stderr (the app's terminal closed) discards.
                    let _ = err.write_all(&line);
                    STDERR_PENDING.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .ok()?;
        Some(StderrQueue { tx, dropped })
    }
}

/// One diagnostic line being formatted.
struct StderrLine<'a> {
    buf: Vec<u8>,
    queue: &'a StderrQueue,
}

impl std::io::Write for StderrLine<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StderrLine<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.buf.is_empty() {
            return;
        }
        STDERR_PENDING.fetch_add(1, Ordering::Relaxed);
        if self
            .queue
            .tx
            .try_send(std::mem::take(&mut self.buf))
            .is_err()
        {
            STDERR_PENDING.fetch_sub(1, Ordering::Relaxed);
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrQueue {
    type Writer = StderrLine<'a>;

    fn make_writer(&'a self) -> StderrLine<'a> {
        StderrLine {
            buf: Vec::new(),
            queue: self,
        }
    }
}

/// Waits (at most `within`) for the queued diagnostics to reach stderr, before the process
/// exits.
pub(crate) fn flush_diagnostics(within: std::time::Duration) {
    let end = std::time::Instant::now() + within;
    while STDERR_PENDING.load(std::sync::atomic::Ordering::Relaxed) > 0
        && std::time::Instant::now() < end
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
