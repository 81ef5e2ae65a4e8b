//! The child side: one process-wide connection to the supervisor, created on first use.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::output::{quiet_broken_output, term_own_group};
use crate::protocol::{
    self, Decoded, ENV_CHANNEL_FD, ENV_CHANNEL_ID, Frame, FromChild, LineDecoder, Outgoing,
    PROTOCOL_VERSION, ToChild,
};
use crate::signals;
use crate::stop::{Phase, STOP, StopFuture, Trigger};

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
/// What happens once the handlers are done (see [`Options::finish`]).
pub type Finish = Box<dyn Fn(Trigger) + Send + Sync>;

/// How the SDK connects. [`Options::default`] is what the plain functions of this crate use;
/// other language bindings built on this crate change it through [`init`].
pub struct Options {
    /// Watch SIGTERM and SIGINT with the SDK's own handler (installed when the app first takes
    /// part in the stop). Bindings that handle signals in their language set this to false and
    /// call [`trigger_stop`].
    pub signals: bool,
    /// Called on the thread `pm-child-stop` once the handlers are done. Default: hand the stop
    /// to the app ([`finish_default`]).
    pub finish: Finish,
    /// SDK name sent in `hello`.
    pub sdk: String,
    /// SDK version sent in `hello`.
    pub version: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            signals: true,
            finish: Box::new(finish_default),
            sdk: "pm-child-rust".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The Rust SDK's end of a stop: if the app waits for it through the SDK, it has it now; else
/// if the app has a SIGTERM (or SIGINT) handler of its own, that handler gets the signal once;
/// else the process exits with code 0.
pub fn finish_default(trigger: Trigger) {
    if STOP.app_waits() {
        signals::hand_off();
        return;
    }
    let sig = trigger.signal();
    let theirs = [sig, libc::SIGTERM, libc::SIGINT]
        .into_iter()
        .find(|&s| signals::app_handles(s));
    signals::hand_off();
    match theirs {
        Some(s) => signals::deliver(s),
        None => exit_now(),
    }
}

/// Ends the process with code 0 after a stop, unless it is exiting already (its `main`
/// returned while the handlers ran): `exit` runs the `atexit` hook, which does the rest.
pub fn exit_now() {
    if !STOP.is_exiting() {
        let _ = std::io::stdout().flush();
        std::process::exit(0);
    }
}

struct Child {
    writer: Option<Mutex<UnixStream>>,
    reader: Mutex<Option<UnixStream>>,
    signals: bool,
    finish: Finish,
    stop_handlers: Mutex<Vec<StopHandler>>,
    message_handlers: Mutex<Vec<MessageHandler>>,
    /// The app registered a stop handler or waits for the stop: the SDK's stop is on.
    takes_part: AtomicBool,
    /// The supervisor said it is closing the channel on its controller's request: the EOF that
    /// follows is not its death.
    disconnected: AtomicBool,
}

static CHILD: OnceLock<Child> = OnceLock::new();
static THREADS: Once = Once::new();
static HOOKS: Once = Once::new();

fn child() -> &'static Child {
    init(Options::default());
    let c = CHILD.get().expect("initialized by init");
    if c.signals {
        signals::keep_on_top();
    }
    c
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
    THREADS.call_once(|| CHILD.get().expect("just set").start_reader());
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
            finish: options.finish,
            stop_handlers: Mutex::new(Vec::new()),
            message_handlers: Mutex::new(Vec::new()),
            takes_part: AtomicBool::new(false),
            disconnected: AtomicBool::new(false),
        };
        child.write(&FromChild::Hello {
            protocol: PROTOCOL_VERSION,
            sdk: options.sdk,
            version: options.version,
            diagnostics: None,
        });
        child
    }

    fn start_reader(&'static self) {
        if let Some(reader) = lock(&self.reader).take() {
            let spawned = spawn_thread("pm-child", move || self.read_loop(reader));
            if let Err(e) = spawned {
                report!("pm-child: cannot start the channel reader: {e}");
            }
        }
    }

    /// The app registered a stop handler or waits for the stop: from now on the SDK answers
    /// `stop` with `stopping`, watches the signals (Rust) and holds the process's exit until
    /// the handlers are done.
    fn take_part(&'static self) {
        self.takes_part.store(true, Ordering::SeqCst);
        HOOKS.call_once(|| {
            // SAFETY: registers a plain function to run at exit.
            unsafe { libc::atexit(at_exit) };
            if self.signals {
                self.watch_signals();
            }
        });
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
                    Ok(Decoded::Message(ToChild::Stop { timeout_ms, .. })) => {
                        self.begin_stop(Trigger::Stop, Some(Duration::from_millis(timeout_ms)));
                    }
                    Ok(Decoded::Message(ToChild::Disconnect)) => {
                        self.disconnected.store(true, Ordering::SeqCst);
                    }
                    Ok(Decoded::Message(ToChild::Data(data))) => {
                        let handlers: Vec<MessageHandler> = lock(&self.message_handlers).clone();
                        let _unblocked = Unblocked::new();
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
        // request will never come; this is it (the sentinel allows at most 800 ms).
        if !self.disconnected.load(Ordering::SeqCst) {
            self.begin_stop(Trigger::Eof, Some(EOF_GRACE));
        }
    }

    fn watch_signals(&'static self) {
        let Some(read) = signals::start() else {
            report!("pm-child: cannot watch SIGTERM and SIGINT");
            return;
        };
        let spawned = spawn_thread("pm-child-signals", move || {
            while let Some(sig) = signals::next(read) {
                self.begin_stop(Trigger::Signal(sig), None);
            }
        });
        if let Err(e) = spawned {
            report!("pm-child: cannot watch signals: {e}");
        }
    }

    /// A stop trigger. Without stop handlers or a waiting app, the process stops as it would
    /// without the SDK: `term` asks the supervisor for SIGTERM now, and after the supervisor's
    /// death the process group gets SIGTERM, as the sentinel sends a plain program. Otherwise
    /// the handlers run once, on a thread of their own, then [`Options::finish`].
    fn begin_stop(&'static self, trigger: Trigger, timeout: Option<Duration>) {
        if !self.takes_part.load(Ordering::SeqCst) {
            match trigger {
                Trigger::Stop => {
                    self.write(&FromChild::Term);
                }
                // SAFETY: kill to this process's own group (it leads it: it owns the channel).
                Trigger::Eof => unsafe {
                    libc::kill(0, libc::SIGTERM);
                },
                Trigger::Signal(_) => {}
            }
            return;
        }
        if !STOP.begin(trigger, timeout) {
            return;
        }
        let spawned = spawn_thread("pm-child-stop", move || self.run_stop(trigger));
        if spawned.is_err() {
            report!("pm-child: cannot start the stop thread; running the handlers here");
            self.run_stop(trigger);
        }
    }

    fn run_stop(&self, trigger: Trigger) {
        stop_signals_mask(libc::SIG_UNBLOCK);
        if trigger != Trigger::Eof {
            self.write(&FromChild::Stopping);
        }
        let handlers = std::mem::take(&mut *lock(&self.stop_handlers));
        for (i, h) in handlers.into_iter().enumerate() {
            quiet_broken_output();
            let failure = match catch_unwind(AssertUnwindSafe(h)) {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(p) => Some(panic_text(&p)),
            };
            if let Some(e) = failure {
                quiet_broken_output();
                report!("pm-child: stop handler #{} failed: {e}", i + 1);
            }
        }
        STOP.finish();
        (self.finish)(trigger);
    }

    fn write<T: Outgoing>(&self, msg: &T) -> bool {
        match &self.writer {
            Some(w) => lock(w).write_all(&protocol::encode(msg)).is_ok(),
            None => false,
        }
    }
}

/// SIGTERM and SIGINT unblocked in the reader thread while it runs message handlers.
struct Unblocked;

impl Unblocked {
    fn new() -> Unblocked {
        stop_signals_mask(libc::SIG_UNBLOCK);
        Unblocked
    }
}

impl Drop for Unblocked {
    fn drop(&mut self) {
        stop_signals_mask(libc::SIG_BLOCK);
    }
}

/// How long handlers have after the supervisor died: the sentinel's limit.
const EOF_GRACE: Duration = Duration::from_millis(800);

/// Runs as the process exits (its `main` returned, or `exit` was called): handlers still
/// running are waited for, until the stop's deadline, so that a `main` that ends first does
/// not cut them short; then, after a stop, the rest of the process group gets SIGTERM.
extern "C" fn at_exit() {
    STOP.set_exiting();
    STOP.wait_at_exit();
    if STOP.phase() != Phase::Idle {
        let _ = std::io::stdout().flush();
        term_own_group();
    }
}

/// Starts one of the SDK's threads with SIGTERM and SIGINT blocked in it, so that the kernel
/// delivers those signals to the app's threads (the main thread, for Python, which only wakes
/// from a blocking call for a signal delivered to it).
/// The SDK's threads run the app's code (stop and message handlers) with the stop signals
/// unblocked, so that what that code starts (a subprocess, a thread) inherits the usual mask.
pub fn spawn_thread<F>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let old = stop_signals_mask(libc::SIG_BLOCK);
    let spawned = std::thread::Builder::new().name(name.into()).spawn(f);
    // SAFETY: restores this thread's mask as it was (the new thread inherited the blocked one).
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    spawned
}

/// Blocks (`SIG_BLOCK`) or unblocks (`SIG_UNBLOCK`) SIGTERM and SIGINT in this thread; returns
/// the mask it had.
fn stop_signals_mask(how: libc::c_int) -> libc::sigset_t {
    // SAFETY: sigset operations on local sets; pthread_sigmask changes this thread's mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(how, &set, &mut old);
        old
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

/// Registers a stop handler. Handlers run once, in registration order, on the thread
/// `pm-child-stop`, when the supervisor sends `stop`, when the channel reaches EOF (the
/// supervisor died), or on SIGTERM or SIGINT; then the stop is the app's (see the crate's
/// documentation: [`handlers_done`], or the app's own signal handler), or the process exits
/// with code 0. A handler that panics is reported on stderr and the next one still runs.
pub fn on_stopping(handler: impl FnOnce() + Send + 'static) {
    on_stopping_fallible(move || {
        handler();
        Ok(())
    });
}

/// Like [`on_stopping`], for a handler whose failure is a value rather than a panic (used by
/// language bindings to report their own exceptions).
pub fn on_stopping_fallible(handler: impl FnOnce() -> Result<(), String> + Send + 'static) {
    let c = child();
    lock(&c.stop_handlers).push(Box::new(handler));
    c.take_part();
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

/// The app takes part in the stop: it will end the process itself.
fn app_waits() {
    let c = child();
    STOP.set_app_waits();
    c.take_part();
}

/// Resolves when a stop begins (the supervisor's `stop`, its death, SIGTERM or SIGINT), while
/// the stop handlers start. Calling it hands the stop to the app: the SDK no longer ends the
/// process after the handlers; the app exits when its `main` returns (within the supervisor's
/// `killTimeout`). Needs no particular async runtime. For axum:
/// `.with_graceful_shutdown(pm_child::stop_requested())`.
pub fn stop_requested() -> StopFuture {
    app_waits();
    StopFuture {
        phase: Phase::Running,
    }
}

/// Resolves when the stop handlers are done; like [`stop_requested`], calling it hands the
/// stop to the app.
pub fn handlers_done() -> StopFuture {
    app_waits();
    StopFuture { phase: Phase::Done }
}

/// Blocks until a stop begins; the blocking form of [`stop_requested`], which it is like in
/// every other way.
pub fn wait_stop_requested() {
    app_waits();
    STOP.wait(Phase::Running, None);
}

/// Blocks until the stop handlers are done; the blocking form of [`handlers_done`].
pub fn wait_handlers_done() {
    app_waits();
    STOP.wait(Phase::Done, None);
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
    STOP.extend(ms);
    child().write(&FromChild::Extend { ms });
}

/// Whether a supervisor's channel was found.
pub fn supervised() -> bool {
    child().writer.is_some()
}

/// Starts the stop as `trigger` would (used by bindings that receive signals themselves).
pub fn trigger_stop(trigger: Trigger) {
    child().begin_stop(trigger, None);
}

/// Marks the app as taking part in the stop without waiting here (bindings whose waits are
/// their own).
pub fn set_app_waits() {
    app_waits();
}

/// Where the stop is (for bindings).
pub fn stop_phase() -> Phase {
    STOP.phase()
}

/// What began the stop, once it has begun (for bindings).
pub fn stop_trigger() -> Option<Trigger> {
    STOP.trigger()
}

/// Whether the app waits for the stop through the SDK (for bindings).
pub fn app_takes_part() -> bool {
    STOP.app_waits()
}

/// Blocks until the stop reaches `phase`, at most `timeout` (for bindings). Returns whether it
/// got there.
pub fn wait_phase(phase: Phase, timeout: Option<Duration>) -> bool {
    STOP.wait(phase, timeout)
}

/// Whether the process is exiting (the SDK's exit hook ran).
pub fn exiting() -> bool {
    STOP.is_exiting()
}

/// Blocks while the stop handlers run, until the stop's deadline (for bindings whose
/// interpreter exits before the process does).
pub fn wait_for_handlers_at_exit() {
    STOP.wait_at_exit();
}
