"""Native half of the Python SDK of pm. Use the ``pm_child`` package, not this module."""

from typing import Callable, Optional

__all__ = [
    "__version__",
    "init",
    "on_stopping",
    "on_message",
    "ready",
    "send",
    "extend",
    "supervised",
    "trigger_stop",
    "python_exiting",
    "exit_taken",
    "raise_system_exit_in",
    "_decode_to_child",
]

__version__: str

def init(exit: Callable[[], Optional[int]]) -> bool:
    """Connects (first call only). ``exit`` runs on ``pm-child-stop`` after the handlers and
    returns the ident of the thread to send SIGTERM to until ``exit_taken()`` is called."""

def on_stopping(handler: Callable[[], object]) -> None:
    """Registers a stop handler; an exception it raises is reported as its failure."""

def on_message(handler: Callable[[str], object]) -> None:
    """Registers a message handler; it gets each value the controller sends, as JSON text."""

def ready() -> None: ...
def send(json: str) -> bool:
    """Sends data given as JSON text; false without a supervisor. ValueError if not JSON, or
    an object whose ``cmd`` starts with ``NODE_`` (reserved)."""

def extend(ms: int) -> None: ...
def supervised() -> bool: ...
def trigger_stop() -> None: ...
def python_exiting() -> None: ...
def exit_taken() -> None: ...
def raise_system_exit_in(thread_id: int) -> bool: ...
def _decode_to_child(data: bytes) -> str:
    """JSON list of the Rust codec's verdicts on the lines in ``data`` (supervisor to child)."""
