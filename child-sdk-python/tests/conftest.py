"""Harness of the Python SDK's tests: runs the real supervisor (or a child alone) in the test's
own temp folder, and kills by pid everything a test started, even when it fails.

Every process a test starts gets PM_TEST_DIR=<its temp folder> in its environment, which all
its descendants inherit; teardown SIGKILLs every process whose /proc/<pid>/environ carries it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional, TypeVar

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent.parent
SDK_CHILD = TESTS / "sdk_child.py"
VECTORS = REPO / "tests" / "protocol"

T = TypeVar("T")


def poll(check: Callable[[], Optional[T]], timeout: float, what: str) -> T:
    """Calls `check` until it returns something other than None (or False), or fails the test
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Lines:
    """Collects the lines of a stream on a thread, for tests to wait on."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), name=name, daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def text(self) -> str:
        return "\n".join(self.snapshot())

    def find(self, pattern: str) -> Optional[re.Match[str]]:
        for line in self.snapshot():
            m = re.search(pattern, line)
            if m:
                return m
        return None

    def wait(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        return poll(lambda: self.find(pattern), timeout, f"a line matching {pattern!r}:\n{self.text()}")

    def closed(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream is still open"


class Proc:
    """A process started by a test, with its output collected."""

    def __init__(self, popen: subprocess.Popen[bytes], out: Lines, err: Optional[Lines]) -> None:
        self.popen = popen
        self.out = out
        self.err = err

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> int:
        return self.popen.wait(timeout)


class Harness:
    """One test's processes, temp folder and events file."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.events_file = tmp / "events.jsonl"
        self.procs: list[Proc] = []
        self.bin = supervisor_bin()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PM_", "NODE_CHANNEL"))}
        env["PM_TEST_DIR"] = str(self.tmp)
        env["PM_RUNTIME_DIR"] = str(self.tmp / "rt")
        # Children run with this virtualenv's python, which has pm_child installed.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(extra)
        return env

    def _start(self, argv: list[str], env: dict[str, str], split_stderr: bool, **kw: Any) -> Proc:
        popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if split_stderr else subprocess.STDOUT,
            cwd=self.tmp,
            **kw,
        )
        assert popen.stdout is not None
        out = Lines(popen.stdout, f"out-{popen.pid}")
        err = Lines(popen.stderr, f"err-{popen.pid}") if popen.stderr is not None else None
        proc = Proc(popen, out, err)
        self.procs.append(proc)
        return proc

    def service(self, mode: str, *args: str, name: str = "p", kill_timeout: int = 5000,
                env: Optional[dict[str, str]] = None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": name,
            "script": str(SDK_CHILD),
            "args": [mode, *args],
            "interpreter": sys.executable,
            "killTimeout": kill_timeout,
        }
        if env:
            spec["env"] = env
        return spec

    def supervisor(self, *services: dict[str, Any]) -> Proc:
        """`pm-supervisor run services.json`; its stdout (the services' output and lifecycle
        lines) and stderr are collected."""
        config = self.tmp / "services.json"
        config.write_text(json.dumps({"services": list(services)}))
        return self._start([str(self.bin), "run", str(config)], self.env(), split_stderr=True)

    def child(self, mode: str, *args: str, env: Optional[dict[str, str]] = None) -> Proc:
        """The test child run directly, without a supervisor; stdout and stderr apart."""
        return self._start([sys.executable, str(SDK_CHILD), mode, *args], self.env(**(env or {})),
                           split_stderr=True)

    def start(self, argv: list[str], **kw: Any) -> Proc:
        """Any command, in this test's environment."""
        env = kw.pop("env", None) or self.env()
        return self._start(argv, env, split_stderr=True, **kw)

    # Events the test child appends to events.jsonl.

    def events(self, kind: Optional[str] = None) -> list[dict[str, Any]]:
        try:
            text = self.events_file.read_text()
        except FileNotFoundError:
            return []
        events = [json.loads(line) for line in text.splitlines() if line.endswith("}")]
        return [e for e in events if kind is None or e["event"] == kind]

    def wait_event(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        def find() -> Optional[dict[str, Any]]:
            for e in self.events(kind):
                if all(e.get(k) == v for k, v in match.items()):
                    return e
            return None

        return poll(find, timeout, f"event {kind} {match or ''} (have {self.events()})")

    # Teardown.

    def descendants(self) -> list[int]:
        """Pids of live processes whose initial environment carries this test's marker."""
        marker = f"PM_TEST_DIR={self.tmp}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                pids.append(int(entry))
        return pids

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
        deadline = time.monotonic() + 5
        while True:
            pids = self.descendants()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"processes {pids} survived SIGKILL")
            time.sleep(0.01)
        for proc in self.procs:
            proc.popen.wait(5)
            for stream in (proc.out, proc.err):
                if stream is not None:
                    stream.closed(5)


def supervisor_bin() -> Path:
    path = Path(os.environ.get("PM_SUPERVISOR_BIN") or REPO / "target" / "debug" / "pm-supervisor")
    if not path.is_file():
        pytest.fail(f"no supervisor binary at {path}: run `cargo build -p pm-supervisor` "
                    "or set PM_SUPERVISOR_BIN")
    return path


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.cleanup()


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def check_async_events(h: Harness) -> None:
    """The `async` child's stop: its handler ran on the main thread's running loop, awaited a
    flush, and then asyncio.run, the `finally` blocks and atexit all ran, in that order."""
    kinds = [e["event"] for e in h.events()]
    assert kinds == ["started", "handler-start", "handler", "main-finally", "after-run", "atexit"]
    start = h.events("handler-start")[0]
    assert start["same_loop"] is True
    assert start["main_thread"] is True
    assert h.events("handler")[0]["result"] == "flushed"


def vectors(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (VECTORS / name).read_text().splitlines() if line.strip()]
