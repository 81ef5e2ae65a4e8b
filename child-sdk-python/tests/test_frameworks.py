"""Real programs with the SDK (issue 12, 17): uvicorn + Starlette and gunicorn's sync workers
under the supervisor and standalone, with a request in flight during the stop; plain scripts
whose own signal handlers were installed before or after the SDK's; a script that uses the SDK
without stop handlers. Their packages come from tests/requirements.txt."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest
from conftest import SDK_CHILD, Harness, Proc, alive, poll

APPS = Path(__file__).resolve().parent / "apps"


class Request:
    """``GET /slow`` over a Unix socket, on a thread."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.status: Optional[int] = None
        self.body = ""
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            poll(lambda: self.socket.exists(), 20, f"{self.socket} to exist")
            transport = httpx.HTTPTransport(uds=str(self.socket), retries=20)
            with httpx.Client(transport=transport, timeout=20) as client:
                r = client.get("http://app/slow")
                self.status, self.body = r.status_code, r.text
        except BaseException as e:  # reported by result()
            self.error = e

    def result(self) -> tuple[Optional[int], str]:
        self.thread.join(25)
        assert self.error is None, repr(self.error)
        return self.status, self.body


def stop_ms(sup: Proc, svc: str, how: str = "exit code 0") -> int:
    m = sup.out.find(rf" {svc} pm  \| stopped: {how}, (\d+) ms after the stop request")
    assert m, f"no clean stop in:\n{sup.out.text()}"
    print(f"{svc}: stopped {m.group(1)} ms after the stop request")
    return int(m.group(1))


def supervise(h: Harness, svc: str, script: Path, args: list[str],
              **spec: Any) -> Proc:
    service = {"name": svc, "script": str(script), "args": args, "interpreter": sys.executable,
               "killTimeout": 5000, **spec}
    return h.supervisor(service)


def stop(sup: Proc) -> None:
    sup.signal(signal.SIGTERM)
    assert sup.wait(20) == 0, sup.out.text()
    sup.out.closed()


def kinds(h: Harness) -> list[str]:
    return [e["event"] for e in h.events()]


# uvicorn re-raises the signal that stopped it once it has shut down, after restoring the
# handlers it found when it started serving. Registered at import, the SDK's handler is the one
# it finds and restores: the re-raised SIGTERM is the SDK's and the program ends normally, with
# exit code 0. Registered in the lifespan (after uvicorn's), the SDK's handler is replaced by the
# default action before the re-raise, and the process ends by that SIGTERM, as uvicorn does
# without the SDK.
AFTER_UVICORN = {"import": ["after-run", "atexit"], "lifespan": []}


def check_uvicorn(h: Harness, mode: str, status: Optional[int], body: str, log: str) -> None:
    assert (status, body) == (200, "done")
    assert kinds(h) == ["started", "request-start", "handler", "handler-done", "request-end",
                        "lifespan-shutdown", *AFTER_UVICORN[mode]], h.events()
    handler = h.events("handler")[0]
    assert handler["same_loop"] is True and handler["main_thread"] is True
    assert "ERROR" not in log and "Traceback" not in log, log


@pytest.mark.parametrize("mode", ["import", "lifespan"])
def test_uvicorn_drains_a_request_in_flight_under_pm(h: Harness, mode: str) -> None:
    socket = h.tmp / "web.sock"
    sup = supervise(h, "web", APPS / "starlette_app.py", [str(socket), mode])
    req = Request(socket)
    h.wait_event("request-start")
    t0 = time.monotonic()
    stop(sup)
    status, body = req.result()
    check_uvicorn(h, mode, status, body, sup.out.text())
    ms = stop_ms(sup, "web", "exit code 0" if mode == "import" else "signal SIGTERM")
    assert 1000 <= ms < 5000, "the request in flight is waited for"
    assert not sup.out.find(r" web pm  \| SIG(TERM|KILL) sent"), sup.out.text()
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("mode", ["import", "lifespan"])
def test_uvicorn_standalone_sigterm_runs_the_handlers_then_uvicorns_shutdown(
        h: Harness, mode: str) -> None:
    socket = h.tmp / "web.sock"
    child = h.start([sys.executable, str(APPS / "starlette_app.py"), str(socket), mode],
                    env=h.env(PM_SERVICE_NAME="web"))
    req = Request(socket)
    h.wait_event("request-start")
    t0 = time.monotonic()
    child.signal(signal.SIGTERM)
    assert child.wait(20) == (0 if mode == "import" else -signal.SIGTERM)
    print(f"uvicorn standalone ({mode}): exited {time.monotonic() - t0:.2f} s after SIGTERM")
    status, body = req.result()
    assert child.err is not None
    child.err.closed()
    check_uvicorn(h, mode, status, body, child.err.text() + child.out.text())


def test_gunicorn_sync_workers_finish_their_requests_under_pm(h: Harness) -> None:
    socket = h.tmp / "web.sock"
    sup = supervise(h, "gu", Path(sys.executable), [
        "-m", "gunicorn", "--chdir", str(APPS), "--bind", f"unix:{socket}", "--workers", "2",
        "--graceful-timeout", "10", "gunicorn_app:app"], interpreter=None)
    # Both workers booted: a worker still importing the app when the stop comes has no handler
    # yet (gunicorn's own SIGTERM handler ends it), and would not show what this test checks.
    poll(lambda: len({e["pid"] for e in h.events("worker-started")}) == 2, 20, "both workers")
    req = Request(socket)
    h.wait_event("request-start")
    stop(sup)
    status, body = req.result()
    assert (status, body) == (200, "done")
    events = h.events()
    assert [e["event"] for e in events if e["event"].startswith("request")] == [
        "request-start", "request-end"]
    handlers = h.events("handler")
    assert len(handlers) == len({e["pid"] for e in h.events("worker-started")})
    assert all(e["supervised"] is False for e in handlers), "a worker runs unsupervised"
    ms = stop_ms(sup, "gu")
    assert 1000 <= ms < 5000
    assert not sup.out.find(r" gu pm  \| SIGKILL sent"), sup.out.text()


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("how", ["pm", "standalone"])
def test_the_apps_own_signal_handler_runs_after_the_stop_handlers(
        h: Harness, order: str, how: str) -> None:
    """signal.signal handlers installed before or after the SDK's: neither disables the other;
    the SDK's stop handlers run first, then the app's handler once, and the app exits."""
    if how == "pm":
        sup = h.supervisor(h.service("app-handler", order))
        h.wait_event("started")
        stop(sup)
        stop_ms(sup, "p")
    else:
        child = h.child("app-handler", order)
        h.wait_event("started")
        child.signal(signal.SIGTERM)
        assert child.wait(10) == 0
    assert kinds(h) == ["started", "handler", "app-handler", "main-done", "atexit"]
    assert h.events("app-handler")[0]["signum"] == signal.SIGTERM


@pytest.mark.parametrize("how", ["pm", "standalone"])
def test_without_stop_handlers_the_apps_own_shutdown_runs_as_without_the_sdk(
        h: Harness, how: str) -> None:
    if how == "pm":
        sup = h.supervisor(h.service("no-handlers"))
        h.wait_event("started")
        stop(sup)
        stop_ms(sup, "p")
        assert sup.out.find(r" p pm  \| SIGTERM sent .*\(it has no stop handlers and asked"), \
            sup.out.text()
    else:
        child = h.child("no-handlers")
        h.wait_event("started")
        child.signal(signal.SIGTERM)
        assert child.wait(10) == 0
    assert kinds(h) == ["started", "app-handler", "main-done", "atexit"]


def test_handlers_that_print_complete_after_the_supervisor_is_killed(h: Harness) -> None:
    """Last words: the supervisor's death leaves stdout and stderr without a reader unless
    something keeps them; a handler printing 100 lines still completes."""
    sup = h.supervisor(h.service("printer", kill_timeout=5000))
    pid = h.wait_event("started")["pid"]
    sup.signal(signal.SIGKILL)
    sup.wait(10)
    h.wait_event("handler-done", timeout=5)
    poll(lambda: not alive(pid), 5, "the child to exit")
    assert kinds(h) == ["started", "handler-done", "finally", "atexit"]
