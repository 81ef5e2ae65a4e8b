"""The watchdog's heartbeats and diagnostic (protocol.md, sections 6.5 and 9.2), with the test
as the supervisor on the other end of the service's channel: it notes when each heartbeat
arrives, and tells the service (with data) when to block."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest
from conftest import Harness, Proc, poll, vectors
from test_direct import as_service, pm

from pm_child import _pm_child

CHILD = Path(__file__).resolve().parent / "watchdog_child.py"
APP = Path(__file__).resolve().parent / "apps" / "watchdog_app.py"
LIMIT_MS = 1000
PERIOD_MS = LIMIT_MS // 3
BLOCK_MS = 3 * LIMIT_MS
# Long enough for a loaded machine; a passing test never waits this long.
PATIENCE = 30.0


class Supervised:
    """A watchdog_child.py service, the test's end of its channel, and what arrived on it."""

    def __init__(self, h: Harness, argv: list[str], **env: str) -> None:
        ours, theirs = socket.socketpair()
        self.sock = ours
        self.proc: Proc = h.start([sys.executable, *argv], **as_service(h, theirs, **env))
        theirs.close()
        self.lines: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.sock.makefile("rb") as reader:
            for raw in reader:
                value = json.loads(raw)
                with self._lock:
                    self.lines.append((time.monotonic(), value))

    def values(self) -> list[Any]:
        with self._lock:
            return [v for _, v in self.lines]

    def beats(self) -> list[float]:
        with self._lock:
            return [at for at, v in self.lines if v == pm("heartbeat")]

    def data_at(self, key: str, since: int = 0) -> Optional[float]:
        """When the first data with `key` came, from the `since`th line on."""
        with self._lock:
            return next((at for at, v in self.lines[since:] if isinstance(v, dict) and key in v),
                        None)

    def send(self, value: Any) -> None:
        # Commands are for the service's message handler: it is registered once it said its pid.
        poll(lambda: self.data_at("pid") is not None, PATIENCE, f"the service: {self.values()}")
        self.sock.sendall(json.dumps(value).encode() + b"\n")

    def wait_beats(self, n: int) -> list[float]:
        poll(lambda: len(self.beats()) >= n, PATIENCE, f"{n} heartbeats: {self.values()}")
        return self.beats()

    def block(self, what: str, ms: int = BLOCK_MS) -> tuple[float, float]:
        """Has the service block (or work) for `ms`; returns when its markers arrived."""
        with self._lock:
            since = len(self.lines)
        self.send({"block": what, "ms": ms})
        poll(lambda: self.data_at("unblocked", since) is not None, PATIENCE, f"the end of {what}")
        start, end = self.data_at("blocking", since), self.data_at("unblocked", since)
        assert start is not None and end is not None
        return start, end

    def around(self, n: int) -> tuple[list[Any], Optional[list[Any]]]:
        """What came between the markers {"calling": n} and {"called": n}, and after the latter."""
        values = self.values()
        start = next((i for i, v in enumerate(values) if v == {"calling": n}), None)
        end = next((i for i, v in enumerate(values) if v == {"called": n}), None)
        if start is None or end is None:
            return [], None
        return values[start + 1:end], values[end + 1:]

    def manual_beats(self, n: int) -> list[Any]:
        self.send({"beat": n})
        poll(lambda: self.around(n)[1] is not None, PATIENCE, f"{n} calls of heartbeat()")
        return self.around(n)[0]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def services(h: Harness) -> Any:
    started: list[Supervised] = []

    def start(mode: str, **env: str) -> Supervised:
        argv = [str(APP), str(h.tmp / "app.sock")] if mode == "uvicorn" else [str(CHILD), mode]
        s = Supervised(h, argv, **env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def gaps_ms(times: list[float]) -> list[int]:
    return [round((b - a) * 1000) for a, b in zip(times, times[1:])]


def assert_regular(times: list[float]) -> None:
    """Heartbeats about every period, never a whole limit apart."""
    gaps = gaps_ms(times)
    assert gaps, times
    mean = sum(gaps) / len(gaps)
    assert PERIOD_MS * 0.8 <= mean <= PERIOD_MS * 1.6, f"mean gap {mean} ms: {gaps}"
    assert max(gaps) < LIMIT_MS, f"a gap reached the limit: {gaps}"


def inside_block(at: float, start: float) -> bool:
    """Whether a line that arrived at `at` was surely written during a block of BLOCK_MS whose
    first marker arrived at `start`. The block began just before that marker was written (a
    heartbeat queued before may arrive in its first few ms), and ended BLOCK_MS after it began,
    which is earlier than BLOCK_MS after the marker arrived by the marker's delay (a few ms; on
    a loaded machine, more)."""
    return start + 0.05 < at < start + BLOCK_MS / 1000 - 0.3


def assert_silent_while_blocked(s: Supervised, what: str) -> None:
    """No heartbeat during a block of the service, and they come again after it."""
    s.wait_beats(3)
    start, end = s.block(what)
    count = len(s.beats())
    beats = s.wait_beats(count + 2)
    during = [round((at - start) * 1000) for at in beats if inside_block(at, start)]
    assert during == [], f"heartbeats {during} ms into a {BLOCK_MS} ms block ({what})"
    assert any(at > end for at in beats), "heartbeats again after the block"


def hello(s: Supervised) -> Any:
    poll(lambda: s.values() or None, PATIENCE, "hello")
    first = s.values()[0]
    assert first["type"] == "hello", first
    return first


def test_the_watchdog_vectors_are_the_rust_parser_s() -> None:
    for case in vectors("watchdog.jsonl"):
        got = _pm_child._watchdog_timing(case["value"])
        expect = case["expect"]
        want = None if expect is None else (expect["limit_ms"], expect["period_ms"],
                                            expect["min_gap_ms"])
        assert got == want, case["name"]


def test_main_thread_heartbeats_stop_while_it_is_blocked(services: Any) -> None:
    s = services("main", PM_WATCHDOG_MS=str(LIMIT_MS))
    assert hello(s)["diagnostics"] == "SIGUSR1"
    # A main loop that sleeps 5 ms at a time, and then one that computes without a pause: the
    # main thread runs, the heartbeats come.
    assert_regular(s.wait_beats(8))
    start, end = s.block("work")
    assert_regular([at for at in s.beats() if start <= at <= end] + [end])
    # Blocked in Python code (a lock nobody releases), and in a C call that holds the GIL.
    assert_silent_while_blocked(s, "lock")
    assert_silent_while_blocked(s, "c")


def test_asyncio_heartbeats_stop_while_the_loop_is_busy_never_while_it_turns(
        services: Any) -> None:
    s = services("asyncio", PM_WATCHDOG_MS=str(LIMIT_MS))
    assert_regular(s.wait_beats(8))
    # Twenty tasks computing in slices, under load: the loop turns, never a limit of silence.
    start, end = s.block("yielding")
    during = [at for at in s.beats() if start <= at <= end]
    assert len(during) >= BLOCK_MS // PERIOD_MS - 2, gaps_ms(during)
    assert_regular([start] + during + [end])
    # A coroutine that computes without yielding runs bytecodes, but the loop does not turn.
    assert_silent_while_blocked(s, "work")
    assert_silent_while_blocked(s, "c")


def test_uvicorn_under_load_is_never_silent_and_a_blocked_loop_is(services: Any,
                                                                   h: Harness) -> None:
    s = services("uvicorn", PM_WATCHDOG_MS=str(LIMIT_MS))
    assert hello(s)["diagnostics"] == "SIGUSR1"
    sock = h.tmp / "app.sock"
    poll(sock.exists, PATIENCE, "uvicorn's socket")
    s.wait_beats(3)
    # Four clients as fast as they can, for three limits.
    end = time.monotonic() + BLOCK_MS / 1000
    served = [0] * 4

    def client(i: int) -> None:
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, timeout=PATIENCE) as c:
            while time.monotonic() < end:
                assert c.get("http://app/fast").text == "ok"
                served[i] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE)
    stop = time.monotonic()
    during = [at for at in s.beats() if start <= at <= stop]
    print(f"uvicorn: {sum(served)} requests in {stop - start:.1f} s, heartbeat gaps "
          f"{gaps_ms([start] + during + [stop])} ms")
    assert sum(served) > 100, served
    assert_regular([start] + during + [stop])
    # A synchronous call in an async endpoint blocks the loop: no heartbeat meanwhile.
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=PATIENCE) as c:
        count = len(s.beats())
        assert c.get(f"http://app/block?ms={BLOCK_MS}").text == "blocked"
    # The channel's data may come a moment after the HTTP response.
    start_b = poll(lambda: s.data_at("blocking"), PATIENCE, "the block's start")
    end_b = poll(lambda: s.data_at("unblocked"), PATIENCE, "the block's end")
    beats = s.wait_beats(count + 2)
    silent = [round((at - start_b) * 1000) for at in beats if inside_block(at, start_b)]
    assert silent == [], f"heartbeats {silent} ms into a {BLOCK_MS} ms block of uvicorn's loop"


def test_an_idle_asyncio_loop_still_sends_heartbeats(services: Any) -> None:
    """A loop waiting for I/O runs no bytecode; the SDK finds it and puts a timer on it."""
    s = services("asyncio-idle", PM_WATCHDOG_MS=str(LIMIT_MS))
    beats = s.wait_beats(10)
    assert_regular(beats[2:])
    assert max(gaps_ms(beats)) < LIMIT_MS, gaps_ms(beats)


@pytest.mark.parametrize("mode", ["main", "asyncio"])
def test_heartbeat_takes_over_and_sends_at_most_one_per_tenth_of_the_limit(
        services: Any, mode: str) -> None:
    s = services(mode, PM_WATCHDOG_MS=str(LIMIT_MS))
    s.wait_beats(3)
    first = s.manual_beats(1)
    # An automatic heartbeat may race the first call.
    assert first in ([pm("heartbeat")], [pm("heartbeat")] * 2), first
    time.sleep(3 * PERIOD_MS / 1000)
    assert s.around(1)[1] == [], "no automatic heartbeat after the first call"
    assert s.manual_beats(1000) == [pm("heartbeat")]
    time.sleep(LIMIT_MS / 10 / 1000 + 0.05)
    assert s.manual_beats(2) == [pm("heartbeat")]
    time.sleep(3 * PERIOD_MS / 1000)
    assert s.around(2)[1] == []


def test_the_diagnostic_is_every_thread_s_stack_on_stderr(services: Any) -> None:
    """What the supervisor asks for before it stops a hung process: SIGUSR1, which faulthandler
    answers from C, even while a C call holds the GIL; the process lives on."""
    s = services("main", PM_WATCHDOG_MS=str(LIMIT_MS))
    s.wait_beats(2)
    s.send({"block": "c", "ms": BLOCK_MS})
    poll(lambda: s.data_at("blocking") is not None, PATIENCE, "the block")
    count = len(s.beats())
    time.sleep(0.2)
    os.kill(s.proc.pid, signal.SIGUSR1)
    assert s.proc.err is not None
    s.proc.err.wait(r"stuck_in_c", PATIENCE)
    err = s.proc.err.text()
    assert "most recent call first" in err
    assert re.search(r"(Current t|T)hread 0x[0-9a-f]+", err), err
    assert "run_sync" in err and "watchdog_child.py" in err
    # Still alive, and alive again once the call returns.
    s.wait_beats(count + 2)
    assert s.proc.popen.poll() is None


@pytest.mark.parametrize("env", [{}, {"PM_WATCHDOG_MS": "1e3"}, {"PM_WATCHDOG_MS": "0"}],
                         ids=["unset", "exponent", "zero"])
def test_without_a_watchdog_no_heartbeat_and_no_diagnostic(services: Any,
                                                            env: dict[str, str]) -> None:
    s = services("main", **env)
    assert "diagnostics" not in hello(s)
    assert s.manual_beats(1) == []
    time.sleep(3 * PERIOD_MS / 1000)
    assert s.beats() == []


def test_the_diagnostic_can_be_turned_off(services: Any) -> None:
    s = services("main", PM_WATCHDOG_MS=str(LIMIT_MS), PM_WATCHDOG_DIAGNOSTICS="0")
    assert "diagnostics" not in hello(s)
    s.wait_beats(3)
