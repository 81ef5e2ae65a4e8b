"""The SDK without a supervisor, or driven through a channel the test holds itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import pytest
from conftest import SDK_CHILD, Harness, alive, check_async_events, poll, vectors

import pm_child

ENCODE = {case["name"]: case["line"] for case in vectors("encode.jsonl")}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_runs_the_handlers_and_exits_cleanly(h: Harness, signum: int) -> None:
    # The variables name an fd that is not a socket: no supervisor; the environment is left as
    # it is.
    child = h.child("sync", env={"PM_CHANNEL_FD": "3", "NODE_CHANNEL_FD": "3",
                                 "NODE_CHANNEL_SERIALIZATION_MODE": "json"})
    started = h.wait_event("started")
    assert started["supervised"] is False
    assert started["sent"] is False
    assert started["env"] == {"PM_CHANNEL_FD": "3", "PM_CHANNEL_ID": None, "NODE_CHANNEL_FD": "3",
                              "NODE_CHANNEL_SERIALIZATION_MODE": "json"}
    child.signal(signum)
    assert child.wait(10) == 0
    assert [e["event"] for e in h.events()] == ["started", "handler", "finally", "atexit"]
    assert h.events("handler")[0]["thread"] == "pm-child-stop"
    assert child.err is not None
    child.err.closed()
    assert child.err.text() == ""


def test_a_failing_handler_is_reported_and_the_next_one_runs(h: Harness) -> None:
    child = h.child("two")
    h.wait_event("started")
    child.signal(signal.SIGTERM)
    assert child.wait(10) == 0
    assert [e["event"] for e in h.events()] == ["started", "first", "second", "finally", "atexit"]
    assert child.err is not None
    child.err.closed()
    err = child.err.text()
    assert "Traceback (most recent call last):" in err
    assert 'raise ValueError("first handler fails")' in err
    assert "pm-child: stop handler #1 failed: ValueError: first handler fails" in err
    assert "#2" not in err


def test_an_async_handler_runs_on_the_loop_running_at_a_signal(h: Harness) -> None:
    child = h.child("async")
    h.wait_event("started")
    child.signal(signal.SIGTERM)
    assert child.wait(10) == 0
    check_async_events(h)
    assert child.err is not None
    child.err.closed()
    assert child.err.text() == ""


@pytest.mark.parametrize(("where", "thread", "same_loop"),
                         [("worker-loop", "worker-loop", True), ("none", "pm-child-stop", False)],
                         ids=["worker-loop", "no-loop"])
def test_an_async_handler_without_a_loop_in_the_main_thread(
        h: Harness, where: str, thread: str, same_loop: bool) -> None:
    """It runs on the loop running where it was registered, else on a loop of its own."""
    child = h.child("async-elsewhere", where)
    h.wait_event("started")
    child.signal(signal.SIGTERM)
    assert child.wait(10) == 0
    assert [e["event"] for e in h.events()] == ["started", "handler", "finally", "atexit"]
    handler = h.events("handler")[0]
    assert handler["thread"] == thread
    assert handler["same_loop"] is same_loop


def test_a_process_forked_by_the_service_does_not_run_its_handlers(h: Harness) -> None:
    child = h.child("fork")
    forked = h.wait_event("forked")
    assert forked["supervised"] is False
    assert forked["sent"] is False
    pid = h.wait_event("started")["forked"]
    os.kill(pid, signal.SIGTERM)
    poll(lambda: not alive(pid), 10, "the forked process to die of SIGTERM")
    child.signal(signal.SIGTERM)
    assert child.wait(10) == 0
    assert [e["pid"] for e in h.events("handler")] == [child.pid]


def test_a_handler_registered_off_the_main_thread_gets_the_signal_hooks_from_it(
        h: Harness) -> None:
    """Python installs signal handlers only in the main thread: the SDK asks the main thread to
    install them at its next bytecode; a stop then exits through the main thread."""
    for trigger in ("stop", "signal"):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            child = h.start(child_argv("worker-first"), **as_service(h, theirs))
            theirs.close()
            channel = Channel(ours)
            assert channel.read()["type"] == "hello"
            started = h.wait_event("started")
            if trigger == "stop":
                channel.write(pm("stop", reason="stop", timeout_ms=5000))
                assert channel.read() == pm("stopping")
            else:
                # SIGTERM reaches the handlers once the main thread installed the hooks.
                poll(lambda: h.events("hooks") or None, 10, "the signal hooks")
                child.signal(signal.SIGTERM)
            assert child.wait(10) == 0
        assert [e["event"] for e in h.events() if e["pid"] == started["pid"]] == [
            "started", "hooks", "handler", "finally", "atexit"]
        assert child.err is not None
        child.err.closed()
        assert child.err.text() == ""
        h.events_file.unlink()


def child_argv(mode: str, *args: str) -> list[str]:
    return [sys.executable, str(SDK_CHILD), mode, *args]


def pm(kind: str, **fields: Any) -> dict[str, Any]:
    """One of pm's own messages (protocol version 2)."""
    return {"cmd": "NODE_PM", "type": kind, **fields}


def channel_id(sock: socket.socket) -> str:
    st = os.fstat(sock.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def as_service(h: Harness, theirs: socket.socket, session: bool = True,
               **env: str) -> dict[str, Any]:
    """How pm starts a service, with `theirs` as its channel: the fd and its identity in the
    environment, and (`session`) a session of its own."""
    fd = str(theirs.fileno())
    return {"env": h.env(PM_CHANNEL_FD=fd, PM_CHANNEL_ID=channel_id(theirs), **env),
            "pass_fds": [theirs.fileno()], "start_new_session": session}


class Channel:
    """The supervisor's end of a child's channel, held by the test."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        self.sock = sock
        self.reader = sock.makefile("rb")

    def read_raw(self) -> bytes:
        line = self.reader.readline()
        assert line.endswith(b"\n"), f"channel closed (got {line!r})"
        return line[:-1]

    def read(self) -> Any:
        return json.loads(self.read_raw())

    def write(self, obj: Any) -> None:
        self.write_raw(json.dumps(obj).encode())

    def write_raw(self, line: bytes) -> None:
        self.sock.sendall(line + b"\n")

    def close(self) -> None:
        # The file object holds the socket open too.
        self.reader.close()
        self.sock.close()


def test_the_channel_speaks_the_protocol(h: Harness) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        fd = str(theirs.fileno())
        child = h.start(child_argv("channel", json.dumps({"k": "v\nw"})),
                        **as_service(h, theirs))
        theirs.close()
        channel = Channel(ours)
        assert channel.read() == pm("hello", protocol=2, sdk="pm-child-python",
                                    version=pm_child.__version__)
        # Byte for byte what the shared vectors say a writer produces.
        assert channel.read_raw().decode() == ENCODE["ready"]
        assert channel.read_raw().decode() == ENCODE["data"]

        started = h.wait_event("started")
        assert started["supervised"] is True
        assert started["env"]["PM_CHANNEL_FD"] == fd
        assert started["grandchild"] == ["closed", f"{fd}|"]

        # Bad lines, unknown pm types and other Node-internal messages are skipped; the next
        # good line is handled. Data arrives exactly as it was written, whatever its shape.
        channel.write_raw(b"{oops")
        channel.write_raw(b"\xff\xfe")
        channel.write_raw(b'{"cmd":"NODE_PM","type":"from-the-future"}')
        channel.write_raw(b'{"cmd":"NODE_HANDLE","type":"net.Socket"}')
        for data in [[1, "two", {"three": 3}], "ready", 7.5, None,
                     {"type": "stop", "reason": "stop", "timeout_ms": 1},
                     {"type": "message", "data": 1}]:
            channel.write(data)
            assert channel.read() == {"echo": data}

        # No stop handlers: the SDK asks for SIGTERM, which finds Python's default action, as
        # for a program without the SDK.
        channel.write(pm("stop", reason="stop", timeout_ms=5000))
        assert channel.read() == pm("term")
        child.signal(signal.SIGTERM)
        assert child.wait(10) == -signal.SIGTERM
        assert channel.reader.readline() == b"", "nothing after term"
    assert [e["event"] for e in h.events()] == ["started"]


def test_eof_on_the_channel_is_a_stop(h: Harness) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        child = h.start(child_argv("sync"), **as_service(h, theirs))
        theirs.close()
        channel = Channel(ours)
        assert channel.read()["type"] == "hello"
        h.wait_event("started")
        channel.close()
        assert child.wait(10) == 0
    assert [e["event"] for e in h.events()] == ["started", "handler", "finally", "atexit"]


def test_eof_after_a_disconnect_notice_is_not_a_stop(h: Harness) -> None:
    """The supervisor closes the channel on its controller's request: the child runs on, and
    is stopped by a signal later."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        child = h.start(child_argv("sync"), **as_service(h, theirs))
        theirs.close()
        channel = Channel(ours)
        assert channel.read()["type"] == "hello"
        h.wait_event("started")
        channel.write(pm("disconnect"))
        channel.close()
        # It is still running, without having run its handlers, well after the EOF. (A
        # bounded wait for something that must not happen: the EOF is handled within
        # milliseconds when it is a stop.)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(1.0)
        assert h.events("handler") == []
        child.signal(signal.SIGTERM)
        assert child.wait(10) == 0
    assert [e["event"] for e in h.events()] == ["started", "handler", "finally", "atexit"]


@pytest.mark.parametrize("case", ["not a session leader", "another socket's id", "no id"])
def test_the_channel_is_taken_only_by_the_process_it_was_given_to(h: Harness, case: str) -> None:
    """A process that inherited the fd and the variables (a shell's child, a forked worker), or
    whose fd 3 is some other socket, runs unsupervised: it writes nothing on the channel."""
    ours, theirs = socket.socketpair()
    other, _ = socket.socketpair()
    with ours, theirs, other:
        kw = as_service(h, theirs, session=case != "not a session leader")
        if case == "another socket's id":
            kw["env"]["PM_CHANNEL_ID"] = channel_id(other)
        if case == "no id":
            del kw["env"]["PM_CHANNEL_ID"]
        child = h.start(child_argv("sync"), **kw)
        theirs.close()
        started = h.wait_event("started")
        assert started["supervised"] is False
        assert started["sent"] is False
        child.signal(signal.SIGTERM)
        assert child.wait(10) == 0
        ours.settimeout(5)
        assert ours.recv(100) == b"", "nothing written on the channel"


def test_send_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError):
        pm_child.send(object())
    with pytest.raises(ValueError):
        pm_child.send(float("nan"))
    # The form of Node's and pm's own messages.
    with pytest.raises(ValueError, match="reserved"):
        pm_child.send({"cmd": "NODE_PM", "type": "ready"})
    assert pm_child.send({"cmd": "NODE"}) is False, "data of that shape is fine (no supervisor)"
    with pytest.raises(ValueError):
        pm_child.extend(-1)
    with pytest.raises(TypeError):
        pm_child.on_stopping(42)  # type: ignore[type-var]
