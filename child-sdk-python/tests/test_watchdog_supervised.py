"""The watchdog end to end (protocol.md sections 6.5 and 9.2): services importing pm_child, run
by the real supervisor with watchdogMs. The test subscribes to the supervisor's events on its
control socket, and reads the services' output from the supervisor's stdout, prefixed as in a
log file."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from conftest import Harness, Proc, alive, poll

CHILD = Path(__file__).resolve().parent / "hang_child.py"
LIMIT_MS = 1000
# The supervisor notices a hang within the limit plus this (protocol.md section 6.5).
MARGIN_MS = max(LIMIT_MS // 10, 50)
# What a loaded 2-core machine may add to a verdict's timing; a correctness bound only.
LOAD_SLACK_MS = 1000
# Long enough for a loaded machine; a passing test never waits this long.
PATIENCE = 30.0


def line_of(marker: str) -> int:
    """The line number of the fixture's line containing `marker`."""
    for n, line in enumerate(CHILD.read_text().splitlines(), 1):
        if marker in line:
            return n
    raise AssertionError(f"{marker!r} is not in {CHILD}")


class Events:
    """The supervisor's events, from a `subscribe` on its control socket."""

    def __init__(self, h: Harness) -> None:
        rt = h.tmp / "rt"
        path = poll(lambda: next(iter(rt.glob("*.sock")), None), PATIENCE, "the control socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The socket is there before it listens: try again until it answers.
        poll(lambda: self.sock.connect_ex(str(path)) == 0, PATIENCE, "a connection")
        self.sock.sendall(b'{"type":"subscribe","id":1}\n')
        self.values: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        poll(lambda: self.find(lambda v: v.get("type") == "reply"), PATIENCE, "the subscription")

    def _read(self) -> None:
        with self.sock.makefile("rb") as reader:
            for raw in reader:
                with self._lock:
                    self.values.append(json.loads(raw))

    def find(self, pred: Callable[[dict[str, Any]], bool]) -> Optional[dict[str, Any]]:
        with self._lock:
            return next((v for v in self.values if pred(v)), None)

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [v for v in self.values if v.get("type") == "event" and v.get("name") == name]

    def close(self) -> None:
        self.sock.close()


def supervise(h: Harness, name: str, mode: str, **extra: Any) -> tuple[Proc, Events]:
    spec = {"name": name, "script": str(CHILD), "args": [mode], "interpreter": sys.executable,
            "watchdogMs": LIMIT_MS, **extra}
    sup = h.supervisor(spec)
    return sup, Events(h)


def rfc3339(text: str) -> float:
    """Seconds since the epoch of `2026-11-30T09:38:09.402Z`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ls(h: Harness) -> list[dict[str, Any]]:
    """The supervisor's rows (`pm-supervisor ls --json`)."""
    out = subprocess.run([str(h.bin), "ls", "--config", str(h.tmp / "services.json"), "--json"],
                         env=h.env(), capture_output=True, timeout=PATIENCE, check=True).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def check_hung_and_restarted(h: Harness, sup: Proc, ev: Events, name: str) -> list[str]:
    """The hang: found within the limit plus the margin, the hung line, the diagnostic asked
    for and logged before the stop, then a new process running. Returns the log's lines."""
    blocking = h.wait_event("blocking", PATIENCE)
    hung = poll(lambda: next((e for e in ev.of(name) if e["event"] == "hung"), None), PATIENCE,
                f"a hung event:\n{sup.out.text()}")
    assert hung["pid"] == blocking["pid"]
    assert hung["watchdog_ms"] == LIMIT_MS
    silence = hung["silence_ms"]
    assert LIMIT_MS < silence <= LIMIT_MS + MARGIN_MS + LOAD_SLACK_MS, hung
    # From the service's clock: its last heartbeat went out at most a period before it blocked.
    since_block = (rfc3339(hung["time"]) - blocking["at"]) * 1000
    assert LIMIT_MS - LIMIT_MS / 3 < since_block <= LIMIT_MS + MARGIN_MS + LOAD_SLACK_MS, since_block
    print(f"\n{name}: silence at the verdict {silence} ms (watchdogMs {LIMIT_MS}); "
          f"{since_block:.0f} ms after it blocked")

    started = poll(lambda: next((e for e in ev.of(name) if e["event"] == "started"
                                 and e["pid"] != blocking["pid"]), None), PATIENCE,
                   f"the restarted process:\n{sup.out.text()}")
    h.wait_event("started", PATIENCE, pid=started["pid"])
    assert alive(started["pid"])
    assert not alive(blocking["pid"])
    kinds = [e["event"] for e in ev.of(name)]
    i = kinds.index("hung")
    assert kinds[i:i + 5] == ["hung", "stopping", "exited", "restarting", "started"], kinds
    assert ev.of(name)[i + 1]["reason"] == "restart"
    assert ev.of(name)[i + 2]["requested"] is False

    sup.out.wait(rf" {name} pm  \| stopping \(restart requested", PATIENCE)
    lines = sup.out.snapshot()
    verdict = next(i for i, l in enumerate(lines) if l.endswith(
        f" {name} pm  | hung: no heartbeat for {silence} ms (watchdogMs {LIMIT_MS})"))
    stop = next(i for i, l in enumerate(lines) if re.search(rf" {name} pm  \| stopping \(restart", l))
    assert verdict < stop
    # The SDK offered SIGUSR1: faulthandler's dump of every thread, between verdict and stop.
    assert lines[verdict + 1].endswith(
        f" {name} pm  | SIGUSR1 sent to it for a diagnostic; stopping in 500 ms"), "\n".join(lines)
    diagnostic = [l for l in lines[verdict:stop] if f" {name} err | " in l]
    assert any("most recent call first" in l for l in diagnostic), "\n".join(lines)
    rows = ls(h)
    assert rows[0]["hangs"] == 1 and rows[0]["last_guard"]["why"] == "hung", rows
    return diagnostic


def shutdown(sup: Proc, ev: Events) -> None:
    ev.close()
    sup.signal(signal.SIGTERM)
    assert sup.wait(PATIENCE) == 0


def test_a_main_thread_blocked_on_a_lock_is_found_hung_its_stack_logged_and_restarted(
        h: Harness) -> None:
    sup, ev = supervise(h, "locked", "lock", killTimeout=1000, restartAt=[100])
    diagnostic = check_hung_and_restarted(h, sup, ev, "locked")
    where = line_of("lock.acquire()  # held already")
    assert any(re.search(rf'File ".*hang_child\.py", line {where} in hang_here$', l)
               for l in diagnostic), "\n".join(diagnostic)
    shutdown(sup, ev)


def test_an_asyncio_loop_blocked_by_a_computation_is_found_hung_its_stack_logged_and_restarted(
        h: Harness) -> None:
    sup, ev = supervise(h, "crunch", "asyncio", killTimeout=1000, restartAt=[100])
    diagnostic = check_hung_and_restarted(h, sup, ev, "crunch")
    assert any(re.search(r'File ".*hang_child\.py", line \d+ in crunch_forever$', l)
               for l in diagnostic), "\n".join(diagnostic)
    shutdown(sup, ev)


def test_an_asyncio_service_busy_under_load_is_never_found_hung(h: Harness) -> None:
    sup, ev = supervise(h, "load", "load", env={"LOAD_MS": "4000"})
    done = poll(lambda: next((e for e in ev.of("load") if e["event"] == "hung"), None)
                or next(iter(h.events("load-done")), None), PATIENCE, "the end of the load")
    assert done["event"] == "load-done", f"found hung: {done}"
    assert done["slices"] > 100, done
    rows = ls(h)
    # (`hangs` and `last_guard` are left out of a row while there are none.)
    assert rows[0].get("hangs", 0) == 0 and "last_guard" not in rows[0], rows
    assert rows[0]["watchdog_ms"] == LIMIT_MS
    assert rows[0]["pid"] == done["pid"]
    shutdown(sup, ev)
    out = sup.out.text()
    # Watched: its first heartbeat came within the limit (else `not watched` is logged).
    assert "not watched" not in out, out
    assert "hung" not in out, out
    # (Its `started` event may precede the subscription.)
    kinds = [e["event"] for e in ev.of("load")]
    assert "hung" not in kinds and "restarting" not in kinds and kinds[-2:] == ["stopping", "exited"], kinds
    assert {e["pid"] for e in ev.of("load")} == {done["pid"]}
