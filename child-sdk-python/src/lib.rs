//! Native half of the Python SDK (`pm_child._pm_child`): a binding of the Rust child SDK
//! (`pm-child`) that also owns the stop's state and the process's exit. The Python package
//! (python/pm_child/__init__.py) keeps only what has to be Python: its signal handlers (Python
//! runs them in the main thread) and finding the asyncio loop the main thread runs.
//!
//! Every Python callback runs on a thread of the Rust SDK (`pm-child-stop` for stop handlers,
//! `pm-child` for message handlers) after attaching to the interpreter. Calls into the Rust SDK
//! detach first, so that a blocked channel write never holds the GIL.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pm_child::{Phase, Trigger};
use pyo3::prelude::*;

/// Writes a line to stderr, ignoring failure: `eprintln!` panics on a broken stderr (the
/// supervisor died), and a panic on the stop thread would skip the exit.
fn report(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Set once the interpreter is exiting (the package's `atexit` function calls
/// [`python_exiting`]): the SDK's threads stop calling into Python, since attaching to an
/// interpreter that is being finalized can crash it.
static PYTHON_EXITING: AtomicBool = AtomicBool::new(false);

/// Runs `f` attached to the interpreter, unless it is exiting.
fn with_python<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    if PYTHON_EXITING.load(Ordering::SeqCst) {
        return None;
    }
    Python::try_attach(f)
}

/// How long the main thread has to exit once the handlers are done (protocol.md §9).
const EXIT_BACKSTOP: Duration = Duration::from_secs(3);
/// How often the main thread is signalled again until it takes what it is sent.
const KICK_EVERY: Duration = Duration::from_millis(20);
/// How long the backstop waits for the interpreter to flush stdout and stderr.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
/// How often the package checks, in the main thread, that its signal handlers are on top
/// (a framework such as uvicorn installs its own when it starts serving).
const WATCH_EVERY: Duration = Duration::from_millis(500);

// What the main thread's signal handler is to do (the answers of `on_signal`).
const IGNORE: i32 = 0;
const BEGIN: i32 = 1;
const PROBE: i32 = 2;
const DELIVER: i32 = 3;
const EXIT: i32 = 4;

// The package's plan for the end of a stop (the answers of its `_plan`).
const PLAN_APP_WAITS: i32 = 0;
const PLAN_DELIVER_DIRECT: i32 = 1;
const PLAN_DELIVER_VIA_SDK: i32 = 2;
const PLAN_EXIT: i32 = 3;
const PLAN_EXIT_NOW: i32 = 4;

/// The stop's state on the Python side (the rest is the Rust SDK's): what the next signal in
/// the main thread is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Nothing,
    /// Hand this signal to the app's handler (the one the package's handler replaced).
    Deliver(i32),
    /// Raise `SystemExit(0)`.
    Exit,
    /// Taken: the app's handler was called, or `SystemExit` raised.
    Taken,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending::Nothing);
/// The process that connected (0: none yet); a forked child is another.
static OWNER: AtomicI32 = AtomicI32::new(0);
/// The package's module, for the callbacks into Python.
static HOOKS: OnceLock<Py<PyAny>> = OnceLock::new();
/// The main thread's pthread id.
static MAIN: AtomicU64 = AtomicU64::new(0);
/// A check in the main thread is queued (`Py_AddPendingCall`) and has not run yet.
static CHECK_QUEUED: AtomicBool = AtomicBool::new(false);

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn call_hook<'py>(
    py: Python<'py>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let hooks = HOOKS
        .get()
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("not connected"))?;
    hooks.bind(py).call_method1(name, args)
}

fn kick(sig: i32) {
    let main = MAIN.load(Ordering::SeqCst);
    // SAFETY: `main` is the main thread's pthread_t (Python's thread ident); the main thread
    // lives as long as the process.
    unsafe { libc::pthread_kill(main as usize as libc::pthread_t, sig) };
}

/// The end of a stop, on `pm-child-stop` once the handlers are done: the package says how the
/// app takes the stop; then the main thread is sent it (its signal handler, the app's, or
/// `SystemExit(0)`), and for an exit the process ends with `_exit(0)` if the main thread has
/// not ended it [`EXIT_BACKSTOP`] later (stuck in native code, or held by non-daemon threads),
/// after flushing stdout and stderr.
fn finish(trigger: Trigger) {
    let deadline = Instant::now() + EXIT_BACKSTOP;
    let plan = with_python(|py| {
        call_hook(py, "_plan", (trigger.signal(),))
            .and_then(|p| p.extract::<(i32, i32)>())
            .unwrap_or_else(|e| {
                report(&format!("pm-child: cannot plan the exit: {e}"));
                (PLAN_EXIT, 0)
            })
    });
    let (plan, sig) = match plan {
        Some(p) => p,
        // The interpreter is exiting: its main flow has ended; nothing to hand over.
        None => return,
    };
    match plan {
        PLAN_APP_WAITS => {}
        PLAN_DELIVER_DIRECT => kick(sig),
        PLAN_DELIVER_VIA_SDK => {
            *pending() = Pending::Deliver(sig);
            while *pending() != Pending::Taken && Instant::now() < deadline {
                kick(sig);
                std::thread::sleep(KICK_EVERY);
            }
        }
        PLAN_EXIT | PLAN_EXIT_NOW => {
            *pending() = Pending::Exit;
            if plan == PLAN_EXIT {
                if sig != 0 {
                    while *pending() != Pending::Taken && Instant::now() < deadline {
                        kick(sig);
                        std::thread::sleep(KICK_EVERY);
                    }
                } else {
                    raise_exit_in_main();
                }
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            }
            flush_python_output();
            pm_child::term_own_group();
            // SAFETY: _exit ends the process at once; nothing runs after it.
            unsafe { libc::_exit(0) }
        }
        other => report(&format!("pm-child: unknown exit plan {other}")),
    }
}

/// `SystemExit(0)` in the main thread at its next bytecode (no signal handler of the package's
/// to wake it: it was first used off the main thread).
fn raise_exit_in_main() {
    with_python(|py| {
        let exc = py.get_type::<pyo3::exceptions::PySystemExit>();
        let main = MAIN.load(Ordering::SeqCst);
        // SAFETY: the GIL is held; `exc` is a valid exception class, borrowed for the call (the
        // interpreter takes its own reference). An unknown thread id only makes it return 0.
        unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(main as std::os::raw::c_long, exc.as_ptr()) };
        *pending() = Pending::Taken;
    });
}

/// Flushes `sys.stdout` and `sys.stderr`, waiting at most [`FLUSH_WAIT`]: a thread stuck in
/// native code may hold the GIL forever.
fn flush_python_output() {
    pm_child::quiet_broken_output();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = pm_child::spawn_thread("pm-child-flush", move || {
        with_python(|py| {
            if let Ok(sys) = py.import("sys") {
                for stream in ["stdout", "stderr"] {
                    if let Ok(s) = sys.getattr(stream) {
                        if !s.is_none() {
                            let _ = s.call_method0("flush");
                        }
                    }
                }
            }
        });
        let _ = done_tx.send(());
    });
    if spawned.is_ok() {
        let _ = done_rx.recv_timeout(FLUSH_WAIT);
    }
}

/// Runs in the main thread, between two bytecodes (queued by [`queue_check`]): the package
/// notes the running loop and puts its signal handlers back on top.
extern "C" fn main_check(_: *mut std::os::raw::c_void) -> std::os::raw::c_int {
    CHECK_QUEUED.store(false, Ordering::SeqCst);
    if PYTHON_EXITING.load(Ordering::SeqCst) {
        return 0;
    }
    // SAFETY: pending calls run in the main thread with the GIL held.
    let py = unsafe { Python::assume_attached() };
    if let Err(e) = call_hook(py, "_in_main", ()) {
        report(&format!("pm-child: {e}"));
    }
    0
}

/// Queues [`main_check`] for the main thread, unless one is queued already. It runs at the
/// main thread's next bytecode; a main thread blocked in a system call runs it later.
fn queue_check() {
    if !CHECK_QUEUED.swap(true, Ordering::SeqCst) {
        // SAFETY: Py_AddPendingCall may be called from any thread, without the GIL.
        let queued =
            unsafe { pyo3::ffi::Py_AddPendingCall(Some(main_check), std::ptr::null_mut()) };
        if queued != 0 {
            CHECK_QUEUED.store(false, Ordering::SeqCst);
        }
    }
}

/// A heartbeat call is queued for the main thread (`Py_AddPendingCall`) and has not run yet.
static BEAT_QUEUED: AtomicBool = AtomicBool::new(false);

/// Runs in the main thread, between two bytecodes (queued by [`heartbeats`]): the package sends
/// a heartbeat, unless an asyncio loop carries them.
extern "C" fn main_beat(_: *mut std::os::raw::c_void) -> std::os::raw::c_int {
    BEAT_QUEUED.store(false, Ordering::SeqCst);
    if PYTHON_EXITING.load(Ordering::SeqCst) {
        return 0;
    }
    // SAFETY: pending calls run in the main thread with the GIL held.
    let py = unsafe { Python::assume_attached() };
    if let Err(e) = call_hook(py, "_beat_in_main", ()) {
        report(&format!("pm-child: watchdog: {e}"));
    }
    0
}

/// The automatic heartbeats of a process with a watchdog (protocol.md, section 9.2), on the
/// thread `pm-child-watchdog`. Every period it queues a call for the main thread with
/// `Py_AddPendingCall`: the interpreter runs it between two bytecodes of the main thread, so
/// it waits while the main thread is blocked, whether in a C call (holding the GIL or not) or in
/// a blocking call made from Python code (`time.sleep`, a lock, a socket read). The call sends
/// the heartbeat, unless the main thread runs an asyncio loop: then a timer on that loop sends
/// them (a busy coroutine runs bytecodes but keeps the loop from turning). One call queued at a
/// time. A call still queued a period later means the main thread is blocked, or sits idle in
/// an asyncio loop's wait for I/O: the package then looks for that loop in the main thread's
/// stack and starts the timer on it. Ends when the app takes the heartbeats over
/// (`heartbeat()`), the channel closes, or the interpreter exits.
fn heartbeats(period: Duration) {
    let spawned = pm_child::spawn_thread("pm-child-watchdog", move || {
        loop {
            if PYTHON_EXITING.load(Ordering::SeqCst) || !pm_child::auto_heartbeats_on() {
                return;
            }
            if !BEAT_QUEUED.swap(true, Ordering::SeqCst) {
                // SAFETY: Py_AddPendingCall may be called from any thread, without the GIL.
                let queued =
                    unsafe { pyo3::ffi::Py_AddPendingCall(Some(main_beat), std::ptr::null_mut()) };
                if queued != 0 {
                    BEAT_QUEUED.store(false, Ordering::SeqCst);
                }
                // Before 3.12 the main thread notices a call queued by another thread only once
                // it takes the GIL again: asking for the GIL makes a running main thread hand it
                // over (a blocked one that holds it keeps this thread waiting, and no heartbeat
                // is due then anyway).
                with_python(|_| ());
            } else {
                // Waits for the GIL if a thread holds it: no heartbeat is due then anyway.
                with_python(|py| {
                    if let Err(e) = call_hook(py, "_find_loop", ()) {
                        report(&format!("pm-child: watchdog: {e}"));
                    }
                });
            }
            std::thread::sleep(period);
        }
    });
    if let Err(e) = spawned {
        report(&format!(
            "pm-child: cannot start the watchdog's heartbeats: {e}"
        ));
    }
}

/// While no stop has begun, checks twice a second in the main thread that the package's signal
/// handlers are on top.
fn watch() {
    let spawned = pm_child::spawn_thread("pm-child-watch", || {
        while pm_child::stop_phase() == Phase::Idle && !PYTHON_EXITING.load(Ordering::SeqCst) {
            std::thread::sleep(WATCH_EVERY);
            queue_check();
        }
    });
    if let Err(e) = spawned {
        report(&format!("pm-child: cannot watch the signal handlers: {e}"));
    }
}

/// Native half of the Python SDK of pm. Use the `pm_child` package, not this module.
#[pymodule]
mod _pm_child {
    use super::*;

    use pm_child::protocol::{self, Decoded, Frame, LineDecoder, MAX_LINE_BYTES, ToChild};
    use pyo3::exceptions::PyValueError;
    use serde_json::{Value, json};

    #[pymodule_export]
    #[allow(non_upper_case_globals)] // Python's name for it
    const __version__: &str = env!("CARGO_PKG_VERSION");

    /// Connects to the supervisor on first use. `hooks` is the `pm_child` package (its `_plan`
    /// and `_in_main` are called back). Returns whether this process is the one that
    /// connected: false in a process forked from it.
    ///
    /// `diagnostics` is what the `hello` says about them (the signal the package registered
    /// `faulthandler` for), when the process has a watchdog. With one, the automatic
    /// heartbeats start.
    #[pyfunction]
    #[pyo3(signature = (hooks, main_ident, diagnostics=None))]
    fn connect(
        py: Python<'_>,
        hooks: Py<PyAny>,
        main_ident: u64,
        diagnostics: Option<String>,
    ) -> bool {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        match OWNER.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {}
            Err(owner) => return owner == me,
        }
        let _ = HOOKS.set(hooks);
        MAIN.store(main_ident, Ordering::SeqCst);
        let options = pm_child::Options {
            signals: false,
            finish: Box::new(finish),
            sdk: "pm-child-python".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            diagnostics,
            auto_heartbeats: false,
        };
        py.detach(move || pm_child::init(options));
        if let Some(timing) = pm_child::watchdog_timing() {
            heartbeats(Duration::from_millis(timing.period_ms));
        }
        true
    }

    /// Whether this process would take the supervisor's channel, without connecting.
    #[pyfunction]
    fn owns_channel(py: Python<'_>) -> bool {
        py.detach(pm_child::owns_channel)
    }

    /// What a `PM_WATCHDOG_MS` value means: `(limit_ms, period_ms, min_gap_ms)`, or None (no
    /// watchdog).
    #[pyfunction]
    fn _watchdog_timing(value: &str) -> Option<(u64, u64, u64)> {
        protocol::WatchdogTiming::parse(value).map(|t| (t.limit_ms, t.period_ms, t.min_gap_ms))
    }

    /// The automatic heartbeats' period in seconds, when this process has a watchdog and a
    /// supervisor; else None.
    #[pyfunction]
    fn watchdog_period() -> Option<f64> {
        pm_child::watchdog_timing().map(|t| t.period_ms as f64 / 1000.0)
    }

    /// An automatic heartbeat, unless the app took them over or the channel is closed. Returns
    /// whether the automatic heartbeats are still on.
    #[pyfunction]
    fn auto_heartbeat(py: Python<'_>) -> bool {
        py.detach(pm_child::auto_heartbeat)
    }

    /// The app's heartbeat: turns the automatic ones off for good; at most one per tenth of the
    /// limit goes out.
    #[pyfunction]
    fn heartbeat(py: Python<'_>) {
        py.detach(pm_child::heartbeat);
    }

    /// Registers a stop handler: a callable without arguments. An exception it raises is
    /// reported as the handler's failure (the package prints the traceback) and the next
    /// handler still runs. The first one also starts the check that the package's signal
    /// handlers stay on top.
    #[pyfunction]
    fn on_stopping(py: Python<'_>, handler: Py<PyAny>) {
        static WATCH: std::sync::Once = std::sync::Once::new();
        py.detach(move || {
            pm_child::on_stopping_fallible(move || {
                with_python(move |py| {
                    let result = handler.call0(py).map(drop).map_err(|e| e.to_string());
                    drop(handler);
                    result
                })
                .unwrap_or_else(|| Err("the Python interpreter is exiting".into()))
            });
        });
        WATCH.call_once(watch);
    }

    /// Registers a message handler: a callable that gets each value the controlling process
    /// sends, as JSON text.
    #[pyfunction]
    fn on_message(py: Python<'_>, handler: Py<PyAny>) {
        py.detach(move || {
            pm_child::on_message(move |data: &Value| {
                let text = data.to_string();
                with_python(|py| {
                    if let Err(e) = handler.call1(py, (text,)) {
                        report(&format!("pm-child: message handler failed: {e}"));
                    }
                });
            });
        });
    }

    /// Tells the supervisor the service is ready.
    #[pyfunction]
    fn ready(py: Python<'_>) {
        py.detach(pm_child::ready);
    }

    /// Sends application data, given as JSON text. Returns false without a supervisor. An
    /// object whose `cmd` starts with `NODE_` is refused (ValueError): that form is reserved
    /// for Node's and pm's own messages.
    #[pyfunction]
    fn send(py: Python<'_>, json: &str) -> PyResult<bool> {
        let data: Value = serde_json::from_str(json)
            .map_err(|e| PyValueError::new_err(format!("not JSON: {e}")))?;
        if protocol::is_node_internal(&data) {
            return Err(PyValueError::new_err(
                "an object whose \"cmd\" starts with \"NODE_\" is reserved for Node's and pm's own messages",
            ));
        }
        Ok(py.detach(move || pm_child::send(&data)))
    }

    /// Asks for the SIGKILL to come no earlier than `ms` milliseconds from now, during a stop.
    #[pyfunction]
    fn extend(py: Python<'_>, ms: u64) {
        py.detach(move || pm_child::extend(ms));
    }

    /// Whether a supervisor's channel was found.
    #[pyfunction]
    fn supervised(py: Python<'_>) -> bool {
        py.detach(pm_child::supervised)
    }

    /// The app waits for the stop through the SDK: it ends the process itself.
    #[pyfunction]
    fn set_app_waits(py: Python<'_>) {
        py.detach(pm_child::set_app_waits);
    }

    /// Where the stop is: 0 no stop, 1 handlers running, 2 handlers done.
    #[pyfunction]
    fn phase() -> u8 {
        match pm_child::stop_phase() {
            Phase::Idle => 0,
            Phase::Running => 1,
            Phase::Done => 2,
        }
    }

    /// Whether the app waits for the stop through the SDK.
    #[pyfunction]
    fn app_waits() -> bool {
        pm_child::app_takes_part()
    }

    /// Blocks (without the GIL) until the stop reaches `phase` (1 begun, 2 handlers done), at
    /// most `timeout` seconds (None: no limit). Returns whether it got there.
    #[pyfunction]
    #[pyo3(signature = (phase, timeout=None))]
    fn wait_phase(py: Python<'_>, phase: u8, timeout: Option<f64>) -> bool {
        let phase = if phase >= 2 {
            Phase::Done
        } else {
            Phase::Running
        };
        let timeout = timeout.map(|t| Duration::from_secs_f64(t.max(0.0)));
        py.detach(move || pm_child::wait_phase(phase, timeout))
    }

    /// The package's SIGTERM/SIGINT handler got `signum` in the main thread; returns what it
    /// is to do: 0 nothing, 1 a stop began (note the running loop), 2 note the running loop,
    /// 3 call the app's handler, 4 raise `SystemExit(0)`.
    #[pyfunction]
    fn on_signal(py: Python<'_>, signum: i32) -> i32 {
        match pm_child::stop_phase() {
            Phase::Idle => {
                py.detach(move || pm_child::trigger_stop(Trigger::Signal(signum)));
                BEGIN
            }
            Phase::Running => PROBE,
            Phase::Done => {
                let mut p = pending();
                match *p {
                    Pending::Deliver(s) if s == signum => {
                        *p = Pending::Taken;
                        DELIVER
                    }
                    Pending::Exit => {
                        *p = Pending::Taken;
                        EXIT
                    }
                    _ => IGNORE,
                }
            }
        }
    }

    /// Asks the main thread, without a signal, to run the package's `_in_main` at its next
    /// bytecode (noting its running loop and keeping the signal handlers on top).
    #[pyfunction]
    fn check_in_main() {
        queue_check();
    }

    /// At interpreter exit: waits (without the GIL) for stop handlers that are still running,
    /// until the stop's deadline; then the SDK's threads no longer call into Python.
    #[pyfunction]
    fn python_exiting(py: Python<'_>) {
        if pm_child::stop_phase() == Phase::Running {
            py.detach(pm_child::wait_for_handlers_at_exit);
        }
        PYTHON_EXITING.store(true, Ordering::SeqCst);
    }

    /// Points stdout and stderr at /dev/null where their reader is gone (the supervisor was
    /// killed), so that a handler's output does not raise BrokenPipeError.
    #[pyfunction]
    fn quiet_broken_output() {
        pm_child::quiet_broken_output();
    }

    /// The Rust codec's verdict on bytes a child reads from its channel (the shared vectors in
    /// `tests/protocol/`): the bytes go through the reader's line splitter and decoder, and
    /// each line's verdict is returned, as JSON text of a list of `{"pm": M}` (M without its
    /// `cmd`), `{"data": V}`, `{"ignored": "unknown" | "empty"}` or `{"error": KIND}`.
    #[pyfunction]
    fn _decode_to_child(data: &[u8]) -> String {
        let mut decoder = LineDecoder::new(MAX_LINE_BYTES);
        let mut verdicts = Vec::new();
        decoder.feed(data, |frame| {
            let verdict = match frame {
                Frame::Line(line) => match protocol::decode::<ToChild>(line) {
                    Ok(Decoded::Message(ToChild::Data(data))) => json!({ "data": data }),
                    Ok(Decoded::Message(m)) => {
                        json!({ "pm": serde_json::to_value(m).unwrap_or(Value::Null) })
                    }
                    Ok(Decoded::Unknown(_)) => json!({ "ignored": "unknown" }),
                    Ok(Decoded::Empty) => json!({ "ignored": "empty" }),
                    Err(e) => json!({ "error": e.kind() }),
                },
                Frame::TooLong { .. } => json!({ "error": "too_long" }),
            };
            verdicts.push(verdict);
        });
        Value::Array(verdicts).to_string()
    }
}
