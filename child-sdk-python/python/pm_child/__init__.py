"""pm_child: the child side of the pm process supervisor, for Python services.

A service registers stop handlers, says when it is ready and exchanges messages with the
supervisor::

    import pm_child

    @pm_child.on_stopping
    def flush():
        queue.flush()

    @pm_child.on_message
    def on_message(data):
        print("the app sent", data)

    pm_child.ready()

The first call of any function of this module connects to the supervisor: it takes the channel
named by ``PM_CHANNEL_FD`` if it is the socket ``PM_CHANNEL_ID`` identifies and this process
leads its own session (pm starts every service with ``setsid``; a process started by a shell
service, or a ``multiprocessing`` worker, inherits the fd and the variables but does not lead
its session, and runs unsupervised). The channel is marked close-on-exec; the environment is
left as it is.

**No handlers, no change.** Until a stop handler is registered (or the app waits for the stop
with ``wait_stop_requested``/``stop_requested``/``wait_handlers_done``/``handlers_done``), the
SDK installs no signal handler and a stop is SIGTERM, as for a program without the SDK.

**With handlers** the first registration in the main thread installs handlers for SIGTERM and
SIGINT (a handler the app or a framework had, or installs later, is kept and chained). The stop
handlers run once, in registration order, on the first of: the supervisor's ``stop`` message;
EOF on the channel (the supervisor died); SIGTERM; SIGINT. They run on the SDK's thread
``pm-child-stop`` with the GIL held; an ``async def`` handler runs on the asyncio loop that is
running in the main thread when the stop begins (else on the loop that was running when it was
registered, else on a new loop). A handler that raises is reported on stderr and the next one
still runs. Then the stop is handed to the app:

- if the app waits for it through the SDK, its wait returns and the app exits when it is done;
- else if the app has a SIGTERM (or SIGINT) handler of its own (uvicorn's, gunicorn's, one of
  ``signal.signal``), that handler gets the signal once, and the app's own shutdown ends the
  process;
- else ``SystemExit(0)`` is raised in the main thread (``finally`` blocks and ``atexit``
  functions run); if the main thread has not exited 3 s later, stdout and stderr are flushed
  and the process ends with ``_exit(0)``.

If the main flow ends while handlers still run, the interpreter's exit waits for them (until
the stop's deadline). Message handlers get each value the controlling process sends, exactly
as it was sent; they run on the SDK's reader thread ``pm-child``, with the GIL held. Without a
supervisor, ``ready``, ``send``, ``extend`` and ``heartbeat`` do nothing, ``supervised()`` is
false, and the signal triggers still work.

**The watchdog.** With ``PM_WATCHDOG_MS`` (the service's ``watchdogMs``), the SDK connects at
import and sends a heartbeat every third of it: from a timer on the asyncio loop the main thread
runs, else from a call the interpreter runs between two bytecodes of the main thread
(``Py_AddPendingCall``), so they stop while that loop or the main thread is blocked.
``heartbeat()`` takes them over. On SIGUSR1, ``faulthandler`` writes every thread's stack to
stderr (the supervisor asks for it before it stops a hung process).

In a process forked from the one that connected (``os.fork``,
``multiprocessing``), the functions do nothing and the signal handlers are the defaults.
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import os
import signal
import sys
import threading
import time
import types
from typing import Any, Awaitable, Callable, Optional, TypeVar

from . import _pm_child as _native

__all__ = [
    "on_stopping",
    "on_message",
    "ready",
    "send",
    "extend",
    "heartbeat",
    "supervised",
    "stop_requested",
    "handlers_done",
    "wait_stop_requested",
    "wait_handlers_done",
    "__version__",
]

__version__: str = _native.__version__

_StopHandler = TypeVar("_StopHandler", bound=Callable[[], object])
_MessageHandler = TypeVar("_MessageHandler", bound=Callable[[Any], object])

# How long the stop thread waits for the main thread to say which asyncio loop it is running.
_PROBE_S = 0.25
_PROBE_AGAIN_S = 0.02

# The native side's answers (src/lib.rs): what the main thread's signal handler is to do...
_BEGIN, _PROBE, _DELIVER, _EXIT = 1, 2, 3, 4
# ... and this module's plans for the end of a stop.
_PLAN_APP_WAITS, _PLAN_DELIVER_DIRECT, _PLAN_DELIVER_VIA_SDK, _PLAN_EXIT, _PLAN_EXIT_NOW = range(5)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# What must be Python: the handlers this module's signal handlers replaced (the app's, called
# when the stop is handed to it), and the asyncio loop the main thread runs. Everything else
# about the stop lives in the native module.
_prev: dict[int, Any] = {}
_main_loop: Any = None
_loop_known = False
_wants_hooks = False  # registered off the main thread: install when the main thread runs


# The watchdog (protocol.md, section 9.2). The signal on which faulthandler writes the stack of
# every thread to stderr, for the supervisor to ask for before it stops a hung process.
_DIAGNOSTIC_SIGNAL = signal.SIGUSR1
_diagnostics_on = False
# The asyncio loop whose timer sends the heartbeats, and the binding's number (a newer binding
# ends the timers of older ones).
_beat_loop: Any = None
_beat_gen = 0
# The automatic heartbeats' period in seconds, once connected with a watchdog.
_period: Optional[float] = None
_first_connect = True
# Code names of the asyncio frames whose `self` is the loop (or an asyncio.Runner holding it).
_LOOP_FRAMES = frozenset(("run_forever", "_run_once", "run_until_complete", "run"))


def _connect() -> bool:
    """Connects on first use. Returns whether this process is the one that connected. With a
    watchdog, registers the diagnostic first (the `hello` announces it), and binds the
    heartbeats to the asyncio loop running here when no loop carries them yet."""
    global _period, _first_connect
    if _first_connect:
        _first_connect = False
        connected = _native.connect(sys.modules[__name__], threading.main_thread().ident or 0,
                                    _register_diagnostics())
        _period = _native.watchdog_period() if connected else None
    else:
        connected = _native.connect(sys.modules[__name__], threading.main_thread().ident or 0)
    if connected and _period is not None and not _loop_carries_beats():
        loop = _running_loop()
        if loop is not None:
            _bind_loop(loop)
    return connected


def _register_diagnostics() -> Optional[str]:
    """Before the first connection of a process that has a watchdog (and takes the channel):
    faulthandler writes every thread's stack to stderr on SIGUSR1. Its handler is C code that
    needs neither the GIL nor the main thread, so it answers when Python cannot run at all.
    Returns the signal's name for the `hello`, or None (off with PM_WATCHDOG_DIAGNOSTICS=0)."""
    global _diagnostics_on
    if _diagnostics_on:
        return "SIGUSR1"
    value = os.environ.get("PM_WATCHDOG_MS")
    if value is None or _native._watchdog_timing(value) is None:
        return None
    if os.environ.get("PM_WATCHDOG_DIAGNOSTICS") == "0" or not _native.owns_channel():
        return None
    try:
        # An app's own Python handler for it, installed before, still runs after the dump.
        chain = callable(signal.getsignal(_DIAGNOSTIC_SIGNAL))
        faulthandler.register(_DIAGNOSTIC_SIGNAL, file=sys.stderr, all_threads=True, chain=chain)
    except (AttributeError, OSError, RuntimeError, ValueError):
        # No stderr with a file descriptor (pythonw), or no signals here.
        return None
    _diagnostics_on = True
    return "SIGUSR1"


def _loop_carries_beats() -> bool:
    return _beat_loop is not None and _beat_loop.is_running()


def _bind_loop(loop: Any) -> None:
    """The heartbeats come from a timer on `loop` from now on: it fires only when the loop
    turns, so they stop while a callback or coroutine keeps it busy, or the loop's thread is
    blocked."""
    global _beat_loop, _beat_gen
    period = _period
    if period is None:
        return
    _beat_gen += 1
    gen = _beat_gen

    def tick() -> None:
        if gen != _beat_gen or not _native.auto_heartbeat():
            return
        loop.call_later(period, tick)

    try:
        loop.call_soon_threadsafe(tick)
    except RuntimeError:
        return  # closed meanwhile: the main thread sends them
    _beat_loop = loop


def _beat_in_main() -> None:
    """Run in the main thread between two bytecodes, every period (queued by the native side):
    the main thread runs, so it is not blocked. If it runs an asyncio loop, that loop's timer
    carries the heartbeats (a coroutine that keeps the loop busy runs bytecodes too); else this
    sends one, unless a loop running elsewhere carries them."""
    if _period is None:
        return  # a forked process
    loop = _running_loop()
    if loop is not None:
        if loop is not _beat_loop or not loop.is_running():
            _bind_loop(loop)
        return
    if _loop_carries_beats():
        return
    _native.auto_heartbeat()


def _find_loop() -> None:
    """Called by the native side when the main thread has not run the last heartbeat call for
    a whole period: it is blocked, or waits in an idle asyncio loop (in `epoll_wait`, where no
    bytecode runs). In the latter case the loop is in the main thread's stack: its timer then
    sends the heartbeats (and wakes it every period)."""
    if _period is None or _loop_carries_beats():
        return
    aio = sys.modules.get("asyncio")
    main = threading.main_thread()
    if aio is None or main.ident is None:
        return
    frame = sys._current_frames().get(main.ident)
    depth = 0
    while frame is not None and depth < 200:
        if frame.f_code.co_name in _LOOP_FRAMES:
            owner = frame.f_locals.get("self")
            for loop in (owner, getattr(owner, "_loop", None)):
                if isinstance(loop, aio.AbstractEventLoop) and loop.is_running() and \
                        getattr(loop, "_thread_id", main.ident) == main.ident:
                    _bind_loop(loop)
                    return
        frame = frame.f_back
        depth += 1


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _is_app_handler(handler: Any) -> bool:
    return callable(handler) and handler is not _on_signal and \
        handler is not signal.default_int_handler


def _take_part() -> None:
    """The app registered a stop handler or waits for the stop: watch SIGTERM and SIGINT.
    Python installs signal handlers only in the main thread: from another thread, the main
    thread is asked to do it at its next bytecode."""
    global _wants_hooks
    if _prev:
        _keep_on_top()
    elif _in_main_thread():
        for signum in _SIGNALS:
            _prev[signum] = signal.signal(signum, _on_signal)
    else:
        _wants_hooks = True
        _native.check_in_main()


def _keep_on_top() -> None:
    """In the main thread: where the app (or a framework such as uvicorn, when it starts
    serving) installed a handler over ours, ours goes back on top and theirs is the one the
    stop is handed to."""
    if not _prev or not _in_main_thread():
        return
    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        if current is not _on_signal and _is_app_handler(current):
            _prev[signum] = current
            signal.signal(signum, _on_signal)


def _say(text: str) -> None:
    """A line on stderr that never raises (stderr may be a broken pipe)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _after_fork_in_child() -> None:
    # A forked process must not run its parent's stop handlers, nor send its heartbeats, nor
    # answer its diagnostic.
    global _diagnostics_on, _period, _beat_gen
    _period = None
    _beat_gen += 1
    if _diagnostics_on:
        faulthandler.unregister(_DIAGNOSTIC_SIGNAL)
        _diagnostics_on = False
    for signum in _SIGNALS:
        if _prev and signal.getsignal(signum) is _on_signal:
            default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, default)
    _prev.clear()


atexit.register(_native.python_exiting)
os.register_at_fork(after_in_child=_after_fork_in_child)


def _running_loop() -> Any:
    """The asyncio loop running in this thread, or None (without importing asyncio)."""
    aio = sys.modules.get("asyncio")
    return aio._get_running_loop() if aio is not None else None


def _note_loop() -> None:
    global _main_loop, _loop_known
    if not _loop_known:
        _main_loop = _running_loop()
        _loop_known = True


def _on_signal(signum: int, frame: Any) -> None:
    """SIGTERM/SIGINT in the main thread: a stop trigger, the stop thread's question about the
    running loop, the stop handed to the app's own handler, or the exit."""
    what = _native.on_signal(signum)
    if what == _BEGIN or what == _PROBE:
        _note_loop()
    elif what == _DELIVER:
        handler = _prev.get(signum)
        if callable(handler) and _is_app_handler(handler):
            handler(signum, frame)
    elif what == _EXIT:
        raise SystemExit(0)


def _in_main() -> None:
    """Run in the main thread between two bytecodes, when the native side asks (no signal
    needed): keep our handlers on top, and note the running loop once a stop has begun."""
    if _native.phase() == 1:
        _note_loop()
    if _wants_hooks and not _prev and _native.phase() == 0:
        _take_part()
    _keep_on_top()


def _plan(signum: int) -> tuple[int, int]:
    """Called on pm-child-stop once every handler has run: how the app takes the stop, and with
    which signal the native side reaches the main thread (0: no signal, SystemExit is raised
    there directly)."""
    if not threading.main_thread().is_alive():
        # The main flow is over and only non-daemon threads keep the process.
        return _PLAN_EXIT_NOW, 0
    if _native.app_waits():
        return _PLAN_APP_WAITS, 0
    for s in dict.fromkeys((signum, signal.SIGTERM, signal.SIGINT)):
        current = signal.getsignal(s)
        if current is _on_signal:
            if _is_app_handler(_prev.get(s)):
                return _PLAN_DELIVER_VIA_SDK, s
        elif _is_app_handler(current):
            return _PLAN_DELIVER_DIRECT, s
    if signal.getsignal(signal.SIGTERM) is _on_signal:
        return _PLAN_EXIT, int(signal.SIGTERM)
    return _PLAN_EXIT, 0


def _is_awaitable(value: object) -> bool:
    """inspect.isawaitable, without importing inspect (slow) on the stop path."""
    if value is None:
        return False
    if hasattr(type(value), "__await__"):
        return True
    # A generator-based coroutine (types.coroutine): CO_ITERABLE_COROUTINE.
    return isinstance(value, types.GeneratorType) and bool(value.gi_code.co_flags & 0x100)


def _main_loop_at_stop() -> Any:
    """The asyncio loop running in the main thread now that the stop has begun, or None. When a
    signal began the stop, its handler noted the loop; otherwise the main thread is asked: with
    a SIGTERM that our handler answers when ours is on top (it also wakes a main thread blocked
    in a system call), else between two of its bytecodes. Bounded wait: it may be stuck in
    native code."""
    main = threading.main_thread()
    if not _loop_known and main.ident is not None and main.is_alive():
        ours = signal.getsignal(signal.SIGTERM) is _on_signal
        deadline = time.monotonic() + _PROBE_S
        while not _loop_known and time.monotonic() < deadline:
            # Repeated: a signal that lands just before the main thread blocks in a call that
            # never returns by itself (an asyncio loop's epoll_wait) is noticed only later.
            if ours:
                signal.pthread_kill(main.ident, signal.SIGTERM)
            else:
                _native.check_in_main()
            again = min(deadline, time.monotonic() + _PROBE_AGAIN_S)
            while not _loop_known and time.monotonic() < again:
                time.sleep(0.001)
    return _main_loop if _loop_known else None


def _run_awaitable(awaitable: Any, loop: Any) -> None:
    """Runs an awaitable to completion on `loop` (running in another thread), else (or if that
    loop ends before the awaitable started) on a new loop in this thread."""
    import asyncio
    import concurrent.futures

    started = False

    async def wrapper() -> None:
        nonlocal started
        started = True
        await awaitable

    if loop is not None and loop.is_running():
        try:
            future = asyncio.run_coroutine_threadsafe(wrapper(), loop)
        except RuntimeError:
            if not loop.is_closed():
                raise
        else:
            while True:
                done, _ = concurrent.futures.wait([future], timeout=0.1)
                if done:
                    if future.cancelled() and not started:
                        break
                    future.result()
                    return
                if loop.is_closed():
                    future.cancel()
                    if started:
                        raise RuntimeError("the asyncio loop was closed before the handler "
                                           "finished")
                    break
    asyncio.run(wrapper())


def _print_traceback() -> None:
    import traceback

    try:
        traceback.print_exc()
    except (OSError, ValueError):
        pass


def _name_thread(name: str) -> None:
    """Gives the SDK's thread its own name in `threading` (it shows as Dummy-N otherwise)."""
    thread = threading.current_thread()
    if thread is not threading.main_thread() and thread.name.startswith("Dummy-"):
        thread.name = name


def _stop_runner(handler: Callable[[], object]) -> Callable[[], None]:
    registered_loop = _running_loop()

    def run() -> None:
        _name_thread("pm-child-stop")
        try:
            result = handler()
            if _is_awaitable(result):
                loop = _main_loop_at_stop()
                if loop is None or not loop.is_running():
                    loop = registered_loop
                _run_awaitable(result, loop)
        except BaseException:
            _print_traceback()
            raise

    return run


def _message_runner(handler: Callable[[Any], object]) -> Callable[[str], None]:
    registered_loop = _running_loop()

    def run(text: str) -> None:
        _name_thread("pm-child")
        try:
            result = handler(json.loads(text))
            if _is_awaitable(result):
                _run_awaitable(result, registered_loop)
        except BaseException:
            _print_traceback()
            raise

    return run


def on_stopping(handler: _StopHandler) -> _StopHandler:
    """Registers a stop handler (a function without arguments, or an ``async def`` one) and
    returns it, so it also works as a decorator.

    Handlers run once, in registration order, on the supervisor's ``stop``, on EOF of the
    channel, on SIGTERM or on SIGINT, on the thread ``pm-child-stop`` with the GIL held; then the
    stop is handed to the app (its wait on the SDK, or its own signal handler), or the process
    exits with code 0. A handler that raises is reported on stderr
    (``pm-child: stop handler #N failed: ...``, after its traceback) and the next one still
    runs. Handlers registered after the stop began are not run.
    """
    if not callable(handler):
        raise TypeError(f"on_stopping expects a callable, got {type(handler).__name__}")
    if _connect():
        _take_part()
        _native.on_stopping(_stop_runner(handler))
    return handler


def on_message(handler: _MessageHandler) -> _MessageHandler:
    """Registers a handler for each value the controlling process sends through the supervisor
    (any JSON value, decoded, exactly as it was sent) and returns it, so it also works as a
    decorator. Handlers run on the reader
    thread ``pm-child`` with the GIL held, one message at a time: a slow handler delays the
    next message, and the supervisor's ``stop``. An ``async def`` handler runs on the loop that
    was running when it was registered (else on a new loop), and is awaited."""
    if not callable(handler):
        raise TypeError(f"on_message expects a callable, got {type(handler).__name__}")
    if _connect():
        _keep_on_top()
        _native.on_message(_message_runner(handler))
    return handler


def ready() -> None:
    """Tells the supervisor the service is ready. Does nothing without a supervisor."""
    if _connect():
        _keep_on_top()
        _native.ready()


def send(obj: Any) -> bool:
    """Sends ``obj`` (anything ``json.dumps`` accepts, without NaN or infinities) to the
    supervisor, which forwards it to the controlling process as it is. Returns whether it was
    written: false without a supervisor, or once it is gone. Raises ``TypeError`` or
    ``ValueError`` for data JSON cannot carry, and ``ValueError`` for a dict whose ``"cmd"``
    starts with ``"NODE_"`` (reserved for Node's and pm's own messages). Integers beyond 64 bits
    arrive as floats."""
    text = json.dumps(obj, allow_nan=False)
    cmd = obj.get("cmd") if isinstance(obj, dict) else None
    if isinstance(cmd, str) and len(cmd) > 5 and cmd.startswith("NODE_"):
        raise ValueError('a dict whose "cmd" starts with "NODE_" is reserved for Node\'s and '
                         "pm's own messages")
    if not _connect():
        return False
    return _native.send(text)


def extend(ms: int) -> None:
    """During a stop, asks for the SIGKILL to come no earlier than ``ms`` milliseconds from
    now (the supervisor caps it, see protocol.md). Does nothing without a supervisor."""
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"extend expects an int of milliseconds, got {type(ms).__name__}")
    if ms < 0:
        raise ValueError("extend expects a non-negative number of milliseconds")
    if _connect():
        _native.extend(min(ms, 2**64 - 1))


def heartbeat() -> None:
    """Tells the supervisor's watchdog that the service is alive, and turns the SDK's automatic
    heartbeats off for good: from then on the service is hung when it has not called this for its
    ``watchdogMs`` (``PM_WATCHDOG_MS``). Cheap: a heartbeat goes out at most once every tenth of
    ``watchdogMs``, however often it is called, from any thread. Does nothing without a
    supervisor or without a watchdog."""
    if _connect():
        _native.heartbeat()


def supervised() -> bool:
    """Whether a supervisor's channel was found."""
    return _connect() and _native.supervised()


def _app_waits() -> bool:
    if not _connect():
        return False
    _native.set_app_waits()
    _take_part()
    return True


def wait_stop_requested(timeout: Optional[float] = None) -> bool:
    """Blocks until a stop begins (the supervisor's ``stop``, its death, SIGTERM or SIGINT),
    at most ``timeout`` seconds; returns whether it began. Calling it hands the stop to the
    app: after the handlers the SDK does not end the process, the app does, when it is done
    (within the supervisor's ``killTimeout``). Returns False at once in a forked process."""
    return _app_waits() and _native.wait_phase(1, timeout)


def wait_handlers_done(timeout: Optional[float] = None) -> bool:
    """Blocks until the stop handlers are done; otherwise like ``wait_stop_requested``."""
    return _app_waits() and _native.wait_phase(2, timeout)


def stop_requested() -> Awaitable[None]:
    """An awaitable that completes when a stop begins; calling it hands the stop to the app, as
    ``wait_stop_requested`` does. Await it on the app's loop, for instance to end
    ``asyncio.run``'s main coroutine gracefully."""
    return _wait_async(1, _app_waits())


def handlers_done() -> Awaitable[None]:
    """An awaitable that completes when the stop handlers are done; otherwise like
    ``stop_requested``."""
    return _wait_async(2, _app_waits())


async def _wait_async(phase: int, connected: bool) -> None:
    import asyncio

    if not connected:
        # A forked process: no stop comes through the SDK.
        await asyncio.get_running_loop().create_future()
    if _native.phase() >= phase:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def wait() -> None:
        _native.wait_phase(phase, None)
        def resolve() -> None:
            if not done.done():
                done.set_result(None)

        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits any more

    # A daemon thread blocked without the GIL: it never holds up the interpreter's exit.
    threading.Thread(target=wait, name="pm-child-wait", daemon=True).start()
    await done


# A service with a watchdog sends heartbeats from the moment the SDK is imported, so that a main
# thread that blocks before the first call is seen too.
if _native._watchdog_timing(os.environ.get("PM_WATCHDOG_MS", "")) is not None:
    _connect()
