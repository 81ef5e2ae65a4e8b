"""Native half of the Python SDK of pm. Use the ``pm_child`` package, not this module."""

from typing import Any, Callable, Optional

__all__ = [
    "connect",
    "on_stopping",
    "on_message",
    "ready",
    "send",
    "extend",
    "supervised",
    "owns_channel",
    "watchdog_period",
    "auto_heartbeat",
    "heartbeat",
    "_watchdog_timing",
    "set_app_waits",
    "phase",
    "app_waits",
    "wait_phase",
    "on_signal",
    "check_in_main",
    "python_exiting",
    "quiet_broken_output",
    "_decode_to_child",
    "__version__",
]

__version__: str

def connect(hooks: Any, main_ident: int, diagnostics: Optional[str] = None) -> bool:
    """Connects on first use. ``hooks`` is the ``pm_child`` package (its ``_plan``,
    ``_in_main``, ``_beat_in_main`` and ``_find_loop`` are called back). ``diagnostics`` goes in
    the ``hello`` of a process with a watchdog, whose automatic heartbeats then start. Returns
    whether this process is the one that connected."""

def on_stopping(handler: Callable[[], object]) -> None:
    """Registers a stop handler; an exception it raises is reported as its failure."""

def on_message(handler: Callable[[str], object]) -> None:
    """Registers a message handler; it gets each value the controller sends, as JSON text."""

def ready() -> None:
    """Tells the supervisor the service is ready."""

def send(json: str) -> bool:
    """Sends data given as JSON text; false without a supervisor. ValueError if not JSON, or
    an object whose ``cmd`` starts with ``NODE_`` (reserved)."""

def extend(ms: int) -> None:
    """Asks for the SIGKILL to come no earlier than ``ms`` milliseconds from now."""

def supervised() -> bool:
    """Whether a supervisor's channel was found."""

def owns_channel() -> bool:
    """Whether this process would take the supervisor's channel, without connecting."""

def watchdog_period() -> Optional[float]:
    """The automatic heartbeats' period in seconds, with a watchdog and a supervisor."""

def auto_heartbeat() -> bool:
    """An automatic heartbeat, unless the app took them over or the channel is closed;
    returns whether the automatic heartbeats are still on."""

def heartbeat() -> None:
    """The app's heartbeat: turns the automatic ones off; at most one per tenth of the limit."""

def _watchdog_timing(value: str) -> Optional[tuple[int, int, int]]:
    """``(limit_ms, period_ms, min_gap_ms)`` for a ``PM_WATCHDOG_MS`` value, or None."""

def set_app_waits() -> None:
    """The app waits for the stop through the SDK: it ends the process itself."""

def phase() -> int:
    """Where the stop is: 0 no stop, 1 handlers running, 2 handlers done."""

def app_waits() -> bool:
    """Whether the app waits for the stop through the SDK."""

def wait_phase(phase: int, timeout: Optional[float] = None) -> bool:
    """Blocks (without the GIL) until the stop reaches ``phase``, at most ``timeout`` s."""

def on_signal(signum: int) -> int:
    """What the package's signal handler is to do: 0 nothing, 1 a stop began, 2 note the
    running loop, 3 call the app's handler, 4 raise ``SystemExit(0)``."""

def check_in_main() -> None:
    """Asks the main thread to run the package's ``_in_main`` at its next bytecode."""

def python_exiting() -> None:
    """At interpreter exit: waits for running stop handlers, then no more calls into Python."""

def quiet_broken_output() -> None:
    """Points stdout and stderr at /dev/null where their reader is gone."""

def _decode_to_child(data: bytes) -> str:
    """JSON list of the Rust codec's verdicts on the lines in ``data`` (supervisor to child)."""
