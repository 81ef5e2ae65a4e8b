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
left as it is. When called from the main thread, the first call also installs handlers for
SIGTERM and SIGINT, so make it early, from the main thread.

The stop handlers run once, in registration order, on the first of: the supervisor's ``stop``
message; EOF on the channel (the supervisor died); SIGTERM; SIGINT. They run on the SDK's
thread ``pm-child-stop`` with the GIL held, one after the other; an ``async def`` handler runs on
the asyncio loop that is running in the main thread when the stop begins (else on the loop that
was running when it was registered, else on a new loop on the handler thread). A handler that
raises is reported on stderr and the next one still runs. When all have run, ``SystemExit(0)``
is raised in the main thread, so ``finally`` blocks and ``atexit`` functions run and the process
exits with code 0 (also out of ``asyncio.run``); if the main thread has not exited 3 s later
(stuck in native code, or held by non-daemon threads), stdout and stderr are flushed and the
process ends with ``_exit(0)``.

Message handlers get each value the controlling process sends, exactly as it was sent; they run
on the SDK's reader thread ``pm-child``, with the GIL held. Without a
supervisor, ``ready``, ``send`` and ``extend`` do nothing, ``supervised()`` is false, and the
signal triggers still work. In a process forked from the one that connected (``os.fork``,
``multiprocessing``), the functions do nothing and the signal handlers are the defaults.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time
import types
from typing import Any, Callable, NoReturn, Optional, TypeVar

from . import _pm_child as _native

__all__ = ["on_stopping", "on_message", "ready", "send", "extend", "supervised", "__version__"]

__version__: str = _native.__version__

_StopHandler = TypeVar("_StopHandler", bound=Callable[[], object])
_MessageHandler = TypeVar("_MessageHandler", bound=Callable[[Any], object])

# How long the stop thread waits for the main thread to say which asyncio loop it is running.
_PROBE_S = 0.25
_PROBE_AGAIN_S = 0.02

_lock = threading.Lock()
_owner_pid: Optional[int] = None  # the process that connected
_signals = False  # our SIGTERM/SIGINT handlers were installed
_stop_requested = False  # the stop has begun (as far as Python knows)
_loop_known = False  # the main thread said which loop it runs (or that it runs none)
_main_loop: Any = None  # that loop
_finished = False  # the handlers have run: the next SIGTERM/SIGINT in the main thread exits
_exit_raised = False


def _connect() -> bool:
    """Connects on first use. Returns whether this process is the one that connected."""
    global _owner_pid, _signals
    if _owner_pid is not None:
        return _owner_pid == os.getpid()
    with _lock:
        if _owner_pid is not None:
            return _owner_pid == os.getpid()
        _native.init(_exit_hook)
        atexit.register(_native.python_exiting)
        os.register_at_fork(after_in_child=_after_fork_in_child)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_signal)
            signal.signal(signal.SIGINT, _on_signal)
            _signals = True
        else:
            print(
                "pm-child: first used off the main thread, so SIGTERM and SIGINT are not "
                "watched (use pm_child from the main thread first)",
                file=sys.stderr,
            )
        _owner_pid = os.getpid()
        return True


def _ours(signum: int) -> bool:
    return _signals and signal.getsignal(signum) is _on_signal


def _after_fork_in_child() -> None:
    # A forked process must not run its parent's stop handlers.
    if _ours(signal.SIGTERM):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _ours(signal.SIGINT):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _running_loop() -> Any:
    """The asyncio loop running in this thread, or None (without importing asyncio)."""
    aio = sys.modules.get("asyncio")
    return aio._get_running_loop() if aio is not None else None


def _on_signal(signum: int, frame: object) -> None:
    """SIGTERM/SIGINT in the main thread: a stop trigger, the stop thread's question about the
    running loop, or (once the handlers are done) the exit."""
    global _exit_raised, _stop_requested, _loop_known, _main_loop
    if _finished:
        if not _exit_raised:
            _exit_raised = True
            _native.exit_taken()
            raise SystemExit(0)
        return
    if not _loop_known:
        _main_loop = _running_loop()
        _loop_known = True
    if not _stop_requested:
        _stop_requested = True
        _native.trigger_stop()


def _exit_hook() -> Optional[int]:
    """Called on pm-child-stop once every handler has run. Returns the ident of the main
    thread when the extension is to send it SIGTERM (repeatedly, until _on_signal takes the
    exit by raising SystemExit(0)); if the main thread has not exited 3 s after the handlers,
    the extension flushes stdout and stderr and ends the process with _exit(0)."""
    global _finished
    _finished = True
    main = threading.main_thread()
    if not main.is_alive():
        # The main thread is done and only non-daemon threads keep the process.
        _hard_exit()
    if main.ident is not None and _ours(signal.SIGTERM):
        return main.ident
    if main.ident is not None:
        # No handler of ours to wake it: SystemExit at its next bytecode.
        _native.raise_system_exit_in(main.ident)
    return None


def _hard_exit() -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    os._exit(0)


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
    signal began the stop, its handler noted the loop; otherwise the main thread is asked with
    a SIGTERM that our handler answers (bounded wait: it may be stuck in native code)."""
    main = threading.main_thread()
    if not _loop_known and main.ident is not None and main.is_alive() and _ours(signal.SIGTERM):
        deadline = time.monotonic() + _PROBE_S
        while not _loop_known and time.monotonic() < deadline:
            # Repeated: a signal that lands just before the main thread blocks in a call that
            # never returns by itself (an asyncio loop's epoll_wait) is noticed only later.
            signal.pthread_kill(main.ident, signal.SIGTERM)
            again = min(deadline, time.monotonic() + _PROBE_AGAIN_S)
            while not _loop_known and time.monotonic() < again:
                time.sleep(0.001)
    return _main_loop if _loop_known else None


def _run_awaitable(awaitable: Any, loop: Any) -> None:
    """Runs an awaitable to completion on `loop` (running in another thread), else on a new
    loop in this thread."""
    import asyncio
    import concurrent.futures

    async def wrapper() -> None:
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
                    future.result()
                    return
                if loop.is_closed():
                    future.cancel()
                    raise RuntimeError("the asyncio loop was closed before the handler finished")
    asyncio.run(wrapper())


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


def _name_thread(name: str) -> None:
    """Gives the SDK's thread its own name in `threading` (it shows as Dummy-N otherwise)."""
    thread = threading.current_thread()
    if thread is not threading.main_thread() and thread.name.startswith("Dummy-"):
        thread.name = name


def _stop_runner(handler: Callable[[], object]) -> Callable[[], None]:
    registered_loop = _running_loop()

    def run() -> None:
        global _stop_requested
        _stop_requested = True
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
    process exits with code 0. A handler that raises is reported on stderr
    (``pm-child: stop handler #N failed: ...``, after its traceback) and the next one still
    runs. Handlers registered after the stop began are not run.
    """
    if not callable(handler):
        raise TypeError(f"on_stopping expects a callable, got {type(handler).__name__}")
    if _connect():
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
        _native.on_message(_message_runner(handler))
    return handler


def ready() -> None:
    """Tells the supervisor the service is ready. Does nothing without a supervisor."""
    if _connect():
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


def supervised() -> bool:
    """Whether a supervisor's channel was found."""
    return _connect() and _native.supervised()
