//! Native half of the Python SDK (`pm_child._pm_child`): a thin PyO3 binding of the Rust child
//! SDK (`pm-child`). The Python package `pm_child` (python/pm_child/__init__.py) is the public
//! API; it owns the signals, the environment and the exit, and calls these functions.
//!
//! Every Python callback runs on a thread of the Rust SDK (`pm-child-stop` for stop handlers,
//! `pm-child` for message handlers) after attaching to the interpreter. Calls into the Rust SDK
//! detach first, so that a blocked channel write never holds the GIL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pm_child::protocol::{self, Decoded, Frame, LineDecoder, MAX_LINE_BYTES, ToChild};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde_json::{Value, json};

/// Writes a line to stderr, ignoring failure: `eprintln!` panics on a broken stderr (the
/// supervisor died), and a panic on the stop thread would skip the exit.
fn report(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Set once the interpreter is exiting (an `atexit` function of the package calls
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

/// Set when the main thread took the exit (its signal handler is raising `SystemExit`).
static EXIT_TAKEN: AtomicBool = AtomicBool::new(false);

/// How long the main thread has to exit once the handlers are done (protocol.md §9.5).
const EXIT_BACKSTOP: Duration = Duration::from_secs(3);
/// How often the main thread is signalled again until it takes the exit.
const EXIT_KICK_EVERY: Duration = Duration::from_millis(20);
/// How long the backstop waits for the interpreter to flush stdout and stderr.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Connects to the supervisor (the first call of the SDK). Once the stop handlers have run,
/// `exit` is called on the thread `pm-child-stop`; it returns the ident of the thread to send
/// SIGTERM to (the main thread, whose handler raises `SystemExit(0)`), or None. That SIGTERM is
/// repeated until the handler calls [`exit_taken`]: a signal that lands while the main thread
/// is between its last check for signals and a blocking call (an asyncio loop's `epoll_wait`
/// without a timeout) would otherwise go unnoticed. If the process is still there
/// [`EXIT_BACKSTOP`] after the handlers (the main thread is stuck in native code, or
/// non-daemon threads hold the interpreter), stdout and stderr are flushed and the process ends
/// with `_exit(0)`. Signals are left to the Python package. Returns whether this call connected.
#[pyfunction]
fn init(py: Python<'_>, exit: Py<PyAny>) -> bool {
    let options = pm_child::Options {
        signals: false,
        exit: Box::new(move || {
            let deadline = Instant::now() + EXIT_BACKSTOP;
            // Not called when the interpreter is exiting already; the backstop still bounds it.
            let main = with_python(|py| match exit.call0(py) {
                Ok(ident) => ident.extract::<Option<u64>>(py).ok().flatten(),
                Err(e) => {
                    report(&format!("pm-child: exit hook failed: {e}"));
                    None
                }
            })
            .flatten();
            if let Some(ident) = main {
                while !EXIT_TAKEN.load(Ordering::SeqCst) && Instant::now() < deadline {
                    // SAFETY: `ident` is the main thread's pthread_t (Python's thread ident);
                    // the main thread lives as long as the process.
                    unsafe { libc::pthread_kill(ident as usize as libc::pthread_t, libc::SIGTERM) };
                    std::thread::sleep(EXIT_KICK_EVERY);
                }
            }
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            flush_python_output();
            // SAFETY: _exit ends the process at once; nothing runs after it.
            unsafe { libc::_exit(0) }
        }),
        sdk: "pm-child-python".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    py.detach(move || pm_child::init(options))
}

/// Called by the main thread's signal handler as it raises `SystemExit(0)`: no more SIGTERMs.
#[pyfunction]
fn exit_taken() {
    EXIT_TAKEN.store(true, Ordering::SeqCst);
}

/// Flushes `sys.stdout` and `sys.stderr`, waiting at most [`FLUSH_WAIT`]: a thread stuck in
/// native code may hold the GIL forever.
fn flush_python_output() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("pm-child-flush".into())
        .spawn(move || {
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

/// Registers a stop handler: a callable without arguments. An exception it raises is reported
/// as the handler's failure (the caller prints the traceback) and the next handler still runs.
#[pyfunction]
fn on_stopping(py: Python<'_>, handler: Py<PyAny>) {
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
}

/// Registers a message handler: a callable that gets each value the controlling process sends,
/// as JSON text.
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

/// Sends application data, given as JSON text. Returns false without a supervisor. An object
/// whose `cmd` starts with `NODE_` is refused (ValueError): that form is reserved for Node's and
/// pm's own messages.
#[pyfunction]
fn send(py: Python<'_>, json: &str) -> PyResult<bool> {
    let data: Value =
        serde_json::from_str(json).map_err(|e| PyValueError::new_err(format!("not JSON: {e}")))?;
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

/// Starts the stop sequence (the handlers run on `pm-child-stop`), unless it has begun.
#[pyfunction]
fn trigger_stop(py: Python<'_>) {
    py.detach(pm_child::trigger_stop);
}

/// Tells the SDK's threads that the interpreter is exiting: they no longer call into Python.
#[pyfunction]
fn python_exiting() {
    PYTHON_EXITING.store(true, Ordering::SeqCst);
}

/// Raises `SystemExit(0)` in the Python thread `thread_id` at its next bytecode boundary (used
/// when the main thread cannot be woken by a signal). Returns whether that thread was found.
#[pyfunction]
fn raise_system_exit_in(py: Python<'_>, thread_id: u64) -> bool {
    let exc = py.get_type::<pyo3::exceptions::PySystemExit>();
    // SAFETY: the GIL is held; `exc` is a valid exception class, borrowed for the call (the
    // interpreter takes its own reference). The thread id is an opaque value from
    // `threading.main_thread().ident`; an unknown id only makes the call return 0.
    let n = unsafe {
        pyo3::ffi::PyThreadState_SetAsyncExc(thread_id as std::os::raw::c_long, exc.as_ptr())
    };
    n > 0
}

/// The Rust codec's verdict on bytes a child reads from its channel (the shared vectors in
/// `tests/protocol/`): the bytes go through the reader's line splitter and decoder, and each
/// line's verdict is returned, as JSON text of a list of `{"pm": M}` (M without its `cmd`),
/// `{"data": V}`, `{"ignored": "unknown" | "empty"}` or `{"error": KIND}`.
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

/// Native half of the Python SDK of pm. Use the `pm_child` package, not this module.
#[pymodule]
fn _pm_child(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(init, m)?)?;
    m.add_function(wrap_pyfunction!(on_stopping, m)?)?;
    m.add_function(wrap_pyfunction!(on_message, m)?)?;
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(send, m)?)?;
    m.add_function(wrap_pyfunction!(extend, m)?)?;
    m.add_function(wrap_pyfunction!(supervised, m)?)?;
    m.add_function(wrap_pyfunction!(trigger_stop, m)?)?;
    m.add_function(wrap_pyfunction!(python_exiting, m)?)?;
    m.add_function(wrap_pyfunction!(exit_taken, m)?)?;
    m.add_function(wrap_pyfunction!(raise_system_exit_in, m)?)?;
    m.add_function(wrap_pyfunction!(_decode_to_child, m)?)?;
    Ok(())
}
