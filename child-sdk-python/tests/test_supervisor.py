"""The SDK under the real supervisor (`pm-supervisor run`, and `serve --control-fd` for
messages)."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import sys
from typing import Any, Callable

import pytest
from conftest import SDK_CHILD, Harness, Proc, alive, check_async_events, poll

STOPPED = r" p pm  \| stopped: exit code 0, (\d+) ms after the stop request"
SIGNALLED = r" p pm  \| SIG(TERM|KILL) sent"


def stop_supervisor(sup: Proc) -> None:
    """SIGTERM to the supervisor: it sends `stop` to every service, and exits 0 once all are
    gone."""
    sup.signal(signal.SIGTERM)
    assert sup.wait(15) == 0, sup.out.text()
    sup.out.closed()


def stop_ms(sup: Proc) -> int:
    m = sup.out.find(STOPPED)
    assert m, f"no clean stop in:\n{sup.out.text()}"
    return int(m.group(1))


def test_stop_runs_the_handler_and_the_child_exits_at_once(h: Harness) -> None:
    sup = h.supervisor(h.service("sync", kill_timeout=5000))
    started = h.wait_event("started")
    assert started["supervised"] is True
    assert started["sent"] is True
    stop_supervisor(sup)
    # Well before killTimeout, with no signal: the SDK answered `stopping` and exited.
    assert stop_ms(sup) < 1000
    assert not sup.out.find(SIGNALLED), sup.out.text()
    assert [e["event"] for e in h.events()] == ["started", "handler", "finally", "atexit"]
    assert h.events("handler")[0]["thread"] == "pm-child-stop"


def test_ready_reaches_the_supervisor(h: Harness) -> None:
    # q registers handlers but never says ready.
    sup = h.supervisor(h.service("ready"), h.service("two", name="q"))
    sup.out.wait(r" p pm  \| ready$")
    h.wait_event("started", svc="q")
    stop_supervisor(sup)
    assert not sup.out.find(r" q pm  \| ready")


def test_eof_runs_the_handler_when_the_supervisor_is_killed(h: Harness) -> None:
    sup = h.supervisor(h.service("sync", kill_timeout=5000))
    pid = h.wait_event("started")["pid"]
    sup.signal(signal.SIGKILL)
    sup.wait(10)
    h.wait_event("atexit", timeout=5)
    poll(lambda: not alive(pid), 5, "the child to exit")
    assert [e["event"] for e in h.events()] == ["started", "handler", "finally", "atexit"]


def test_a_failing_handler_does_not_stop_the_next_one(h: Harness) -> None:
    sup = h.supervisor(h.service("two"))
    h.wait_event("started")
    stop_supervisor(sup)
    assert [e["event"] for e in h.events()] == ["started", "first", "second", "finally", "atexit"]
    sup.out.wait(r" p err \| Traceback \(most recent call last\):")
    sup.out.wait(r" p err \| ValueError: first handler fails$")
    sup.out.wait(r" p err \| pm-child: stop handler #1 failed: ValueError: first handler fails$")
    assert stop_ms(sup) < 1000
    assert not sup.out.find(SIGNALLED)


def test_an_async_handler_runs_on_the_apps_running_loop(h: Harness) -> None:
    """The stop comes as a message, on the SDK's thread: the handler still runs on the loop
    the main thread is running, and asyncio.run ends cleanly."""
    sup = h.supervisor(h.service("async"))
    h.wait_event("started")
    stop_supervisor(sup)
    check_async_events(h)
    assert stop_ms(sup) < 1000
    assert not sup.out.find(r" p err \| "), sup.out.text()


def test_a_grandchild_does_not_inherit_the_channel(h: Harness) -> None:
    sup = h.supervisor(h.service("grandchild"))
    started = h.wait_event("started")
    assert started["supervised"] is True
    # The environment is left as it is (no mutation with threads running); the fd is
    # close-on-exec.
    assert started["env"]["PM_CHANNEL_FD"] == "3"
    assert started["grandchild"] == ["closed", "3|"]
    stop_supervisor(sup)


def test_only_the_process_pm_started_takes_the_channel_not_a_shells_child(h: Harness) -> None:
    """A shell service passes fd 3 and the variables on to its children; only the process pm
    started (the shell, which becomes Python with exec) takes the channel."""
    child = " ".join(shlex.quote(a) for a in [sys.executable, str(SDK_CHILD), "probe"])
    sup = h.supervisor({"name": "p", "script": "/bin/sh", "args": ["-c", f"{child} & exec {child}"],
                        "killTimeout": 5000})
    probes = poll(lambda: h.events("probe") if len(h.events("probe")) == 2 else None, 10,
                  "two probes")
    led = [p for p in probes if p["sid"] == p["pid"]]
    forked = [p for p in probes if p["sid"] != p["pid"]]
    assert [p["supervised"] for p in led] == [True], probes
    assert [p["supervised"] for p in forked] == [False], probes
    sup.out.wait(r" p pm  \| ready$")
    stop_supervisor(sup)
    # The service's own process said hello: it was sent `stop`, and having no stop handlers it
    # asked for SIGTERM at once, as a program without the SDK gets.
    assert sup.out.find(r" p pm  \| SIGTERM sent .*\(it has no stop handlers and asked for it\)"), \
        sup.out.text()


@pytest.mark.parametrize(("extend_ms", "survives"), [(3000, True), (0, False)],
                         ids=["extended", "not-extended"])
def test_extend_holds_off_the_sigkill(h: Harness, extend_ms: int, survives: bool) -> None:
    # The handler takes 1 s; killTimeout is 300 ms.
    sup = h.supervisor(h.service("extend", str(extend_ms), "1.0", kill_timeout=300))
    h.wait_event("started")
    stop_supervisor(sup)
    if survives:
        assert 1000 <= stop_ms(sup) < 3000
        assert [e["event"] for e in h.events()] == ["started", "handler", "finally", "atexit"]
        assert not sup.out.find(SIGNALLED)
    else:
        assert sup.out.find(r" p pm  \| SIGKILL sent")
        assert [e["event"] for e in h.events()] == ["started"]


def test_a_main_thread_that_cannot_exit_is_ended_after_3_s_with_its_output(h: Harness) -> None:
    # Block-buffered stdout (PYTHONUNBUFFERED set empty): the backstop must flush it.
    sup = h.supervisor(h.service("blocked-main", env={"PYTHONUNBUFFERED": ""}))
    h.wait_event("started")
    stop_supervisor(sup)
    assert 2900 <= stop_ms(sup) < 4500
    sup.out.wait(r" p out \| printed by the handler, still buffered$")
    assert [e["event"] for e in h.events()] == ["started", "handler"]
    assert not sup.out.find(SIGNALLED)


class Control:
    """The controlling process's end of `pm-supervisor serve --control-fd N` (protocol.md §8)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.seen: list[dict[str, Any]] = []

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        return self.until(lambda m: m.get("type") == "reply" and m.get("id") == req["id"])

    def until(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for m in self.seen:
            if pred(m):
                return m
        while True:
            line = self.reader.readline()
            assert line.endswith(b"\n"), f"control channel closed; got {self.seen}"
            m = json.loads(line)
            self.seen.append(m)
            if pred(m):
                return m

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def test_messages_both_ways_through_the_control_channel(h: Harness) -> None:
    ours, theirs = socket.socketpair()
    try:
        sup = h.start([str(h.bin), "serve", "--control-fd", str(theirs.fileno())],
                      pass_fds=[theirs.fileno()])
        theirs.close()
        ctl = Control(ours)
        spec = h.service("echo")
        reply = ctl.request({"type": "start", "id": 1, "spec": spec, "wait": "ready"})
        assert reply["ok"] is True, reply
        assert reply["result"]["name"] == "p"
        assert reply["result"]["ready"] is True

        # An object with a type of its own arrives as it is, not taken for a pm message.
        data = {"type": "message", "n": 1, "text": "ü\nline \u2028", "list": [None, True, 2.5]}
        reply = ctl.request({"type": "send", "id": 2, "name": "p", "data": data})
        assert reply == {"type": "reply", "id": 2, "ok": True, "result": {"sent": 1}}
        got = h.wait_event("message")
        assert got["data"] == data
        assert list(got["data"]) == list(data), "keys in the order they were sent"
        assert got["thread"] == "pm-child"
        echo = ctl.until(lambda m: m.get("type") == "event" and m.get("event") == "message")
        assert echo["name"] == "p"
        assert echo["data"] == {"echo": data}

        reply = ctl.request({"type": "shutdown", "id": 3})
        assert reply["ok"] is True, reply
        assert sup.wait(15) == 0
        ctl.close()
    finally:
        ours.close()
        theirs.close()
    # No stop handlers: stopped by SIGTERM, Python's default action, as without the SDK.
    exited = [m for m in ctl.seen if m.get("event") == "exited"]
    assert [m["exit"] for m in exited] == ["signal SIGTERM"]
    assert [e["event"] for e in h.events()] == ["started", "message"]
