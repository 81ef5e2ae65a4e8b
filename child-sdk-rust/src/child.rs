//! The child side: one process-wide connection to the supervisor, created on first use.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};

use serde::Serialize;
use serde_json::Value;

use crate::protocol::{
    self, Decoded, ENV_CHANNEL_FD, ENV_CHANNEL_ID, Frame, FromChild, LineDecoder, Outgoing,
    PROTOCOL_VERSION, ToChild,
};

/// Writes a line to stderr, ignoring failure: `eprintln!` panics when stderr is broken (the
/// supervisor died), and a panic on the stop thread would keep the process from exiting.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// A stop handler as the SDK runs it: `Err` carries a failure to report.
pub type StopHandler = Box<dyn FnOnce() -> Result<(), String> + Send>;
type MessageHandler = Arc<dyn Fn(&Value) + Send + Sync>;

/// How the SDK connects. [`Options::default`] is what the plain functions of this crate use;
/// other language bindings built on this crate change it through [`init`].
pub struct Options {
    /// Run the stop handlers on SIGTERM and SIGINT (installed on first use).
    pub signals: bool,
    /// Called once the handlers have run. Default: `std::process::exit(0)`.
    pub exit: Box<dyn Fn() + Send + Sync>,
    /// SDK name sent in `hello`.
    pub sdk: String,
    /// SDK version sent in `hello`.
    pub version: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            signals: true,
            exit: Box::new(|| std::process::exit(0)),
            sdk: "pm-child-rust".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

struct Child {
    writer: Option<Mutex<UnixStream>>,
    reader: Mutex<Option<UnixStream>>,
    signals: bool,
    exit: Box<dyn Fn() + Send + Sync>,
    stop_handlers: Mutex<Vec<StopHandler>>,
    message_handlers: Mutex<Vec<MessageHandler>>,
    stop_begun: AtomicBool,
    /// The supervisor said it is closing the channel on its controller's request: the EOF that
    /// follows is not its death.
    disconnected: AtomicBool,
}

static CHILD: OnceLock<Child> = OnceLock::new();
static THREADS: Once = Once::new();

fn child() -> &'static Child {
    init(Options::default());
    CHILD.get().expect("initialized by init")
}

/// Connects with explicit options. Only the first call (of this or any other function of the
/// crate) connects; returns whether this call was it.
pub fn init(options: Options) -> bool {
    let mut fresh = false;
    CHILD.get_or_init(|| {
        fresh = true;
        Child::connect(options)
    });
    // Threads start after the OnceLock is set, so that they can use it.
    THREADS.call_once(|| CHILD.get().expect("just set").start_threads());
    fresh
}

impl Child {
    fn connect(options: Options) -> Child {
        let stream = owned_channel().map(|fd| {
            // SAFETY: the supervisor handed this fd to this very process for the channel (checked
            // by owned_channel); from now on the SDK owns it. Close-on-exec keeps it from the
            // processes this one starts (fcntl is safe with other threads running).
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                UnixStream::from_raw_fd(fd)
            }
        });
        let (writer, reader) = match stream.and_then(|s| s.try_clone().ok().map(|r| (s, r))) {
            Some((w, r)) => (Some(Mutex::new(w)), Some(r)),
            None => (None, None),
        };
        let child = Child {
            writer,
            reader: Mutex::new(reader),
            signals: options.signals,
            exit: options.exit,
            stop_handlers: Mutex::new(Vec::new()),
            message_handlers: Mutex::new(Vec::new()),
            stop_begun: AtomicBool::new(false),
            disconnected: AtomicBool::new(false),
        };
        child.write(&FromChild::Hello {
            protocol: PROTOCOL_VERSION,
            sdk: options.sdk,
            version: options.version,
        });
        child
    }

    fn start_threads(&'static self) {
        if let Some(reader) = lock(&self.reader).take() {
            let spawned = std::thread::Builder::new()
                .name("pm-child".into())
                .spawn(move || self.read_loop(reader));
            if let Err(e) = spawned {
                report!("pm-child: cannot start the channel reader: {e}");
            }
        }
        if self.signals {
            self.watch_signals();
        }
    }

    fn read_loop(&'static self, mut reader: UnixStream) {
        let mut decoder = LineDecoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut decoded = Vec::new();
            decoder.feed(&buf[..n], |frame| {
                if let Frame::Line(line) = frame {
                    decoded.push(protocol::decode::<ToChild>(line));
                }
            });
            for d in decoded {
                match d {
                    Ok(Decoded::Message(ToChild::Stop { .. })) => self.begin_stop(),
                    Ok(Decoded::Message(ToChild::Disconnect)) => {
                        self.disconnected.store(true, Ordering::SeqCst);
                    }
                    Ok(Decoded::Message(ToChild::Data(data))) => {
                        let handlers: Vec<MessageHandler> = lock(&self.message_handlers).clone();
                        for h in handlers {
                            if let Err(p) = catch_unwind(AssertUnwindSafe(|| h(&data))) {
                                report!("pm-child: message handler failed: {}", panic_text(&p));
                            }
                        }
                    }
                    // Unknown types and bad lines from the supervisor are ignored.
                    Ok(_) | Err(_) => {}
                }
            }
        }
        // EOF after the supervisor's `disconnect`: it lives on and stops this process with a
        // signal when the time comes. Any other EOF: the supervisor is gone, and its stop
        // request will never come; this is it.
        if !self.disconnected.load(Ordering::SeqCst) {
            self.begin_stop();
        }
    }

    fn watch_signals(&'static self) {
        use signal_hook::consts::{SIGINT, SIGTERM};
        match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
            Ok(mut signals) => {
                let spawned = std::thread::Builder::new()
                    .name("pm-child-signals".into())
                    .spawn(move || {
                        if signals.forever().next().is_some() {
                            self.begin_stop();
                        }
                    });
                if let Err(e) = spawned {
                    report!("pm-child: cannot watch signals: {e}");
                }
            }
            Err(e) => report!("pm-child: cannot watch signals: {e}"),
        }
    }

    /// Runs the stop handlers once, on a thread of their own, then exits.
    fn begin_stop(&'static self) {
        if self.stop_begun.swap(true, Ordering::SeqCst) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("pm-child-stop".into())
            .spawn(move || {
                self.write(&FromChild::Stopping);
                let handlers = std::mem::take(&mut *lock(&self.stop_handlers));
                for (i, h) in handlers.into_iter().enumerate() {
                    let failure = match catch_unwind(AssertUnwindSafe(h)) {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(p) => Some(panic_text(&p)),
                    };
                    if let Some(e) = failure {
                        report!("pm-child: stop handler #{} failed: {e}", i + 1);
                    }
                }
                (self.exit)();
            });
        if spawned.is_err() {
            (self.exit)();
        }
    }

    fn write<T: Outgoing>(&self, msg: &T) -> bool {
        match &self.writer {
            Some(w) => lock(w).write_all(&protocol::encode(msg)).is_ok(),
            None => false,
        }
    }
}

/// A poisoned lock only means a handler panicked while another thread waited; the data is fine.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The channel's fd, if this process is the one pm handed it to (protocol.md, section 9.1):
/// `PM_CHANNEL_FD` names a socket whose device and inode are those of `PM_CHANNEL_ID`, and this
/// process is the leader of its session. pm starts every service in a session of its own, so a
/// process it started (or one that process became with `exec`) leads its session, while a
/// descendant that inherited the same fd and variables (a shell's child, a forked worker) does
/// not: it runs unsupervised instead of stealing the service's channel.
fn owned_channel() -> Option<RawFd> {
    let fd: RawFd = std::env::var(ENV_CHANNEL_FD).ok()?.parse().ok()?;
    let id = std::env::var(ENV_CHANNEL_ID).ok()?;
    let (dev, ino) = id.split_once(':')?;
    let (dev, ino): (u64, u64) = (dev.parse().ok()?, ino.parse().ok()?);
    // SAFETY: fstat only writes the zeroed struct it is given; getsid and getpid have no
    // preconditions.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let ours = libc::fstat(fd, &mut st) == 0
            && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
            && st.st_dev as u64 == dev
            && st.st_ino as u64 == ino
            && libc::getsid(0) == libc::getpid();
        ours.then_some(fd)
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Registers a stop handler. Handlers run once, in registration order, when the supervisor
/// sends `stop`, when the channel reaches EOF (the supervisor died), or on SIGTERM or SIGINT;
/// then the process exits with code 0. A handler that panics is reported on stderr and the next
/// one still runs. Handlers run on the SDK's thread `pm-child-stop`.
pub fn on_stopping(handler: impl FnOnce() + Send + 'static) {
    on_stopping_fallible(move || {
        handler();
        Ok(())
    });
}

/// Like [`on_stopping`], for a handler whose failure is a value rather than a panic (used by
/// language bindings to report their own exceptions).
pub fn on_stopping_fallible(handler: impl FnOnce() -> Result<(), String> + Send + 'static) {
    lock(&child().stop_handlers).push(Box::new(handler));
}

/// Registers an async stop handler. It runs on the tokio runtime that was current when it was
/// registered (the handler thread blocks on it), or on a runtime of its own otherwise.
#[cfg(feature = "tokio")]
pub fn on_stopping_async<F, Fut>(handler: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current().ok();
    on_stopping_fallible(move || {
        match handle {
            Some(h) => h.block_on(handler()),
            None => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime: {e}"))?
                .block_on(handler()),
        }
        Ok(())
    });
}

/// Registers a handler for the data the controlling process sends through the supervisor: any
/// JSON value, exactly as it was sent. Runs on the SDK's thread `pm-child`.
pub fn on_message(handler: impl Fn(&Value) + Send + Sync + 'static) {
    lock(&child().message_handlers).push(Arc::new(handler));
}

/// Tells the supervisor the service is ready. A no-op without a supervisor.
pub fn ready() {
    child().write(&FromChild::Ready);
}

/// Sends application data to the supervisor, which passes it on to the controlling process as
/// it is. Returns false when there is no supervisor or it is gone, when `data` does not
/// serialize, and for an object whose `cmd` starts with `NODE_` (reserved for Node's and pm's
/// own messages).
pub fn send<T: Serialize + ?Sized>(data: &T) -> bool {
    match serde_json::to_value(data) {
        Ok(data) if !protocol::is_node_internal(&data) => child().write(&FromChild::Data(data)),
        _ => false,
    }
}

/// During a stop, asks for `ms` more milliseconds before SIGKILL, counted from now (capped by the
/// supervisor, see `protocol.md`). A no-op without a supervisor.
pub fn extend(ms: u64) {
    child().write(&FromChild::Extend { ms });
}

/// Whether a supervisor's channel was found.
pub fn supervised() -> bool {
    child().writer.is_some()
}

/// Starts the stop sequence as if a stop request had arrived (used by bindings that receive
/// signals themselves).
pub fn trigger_stop() {
    child().begin_stop();
}
