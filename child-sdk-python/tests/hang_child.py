"""Test service of test_watchdog_supervised.py, run by the real supervisor with watchdogMs. It
imports pm_child as a service does and makes no call: the heartbeats are the SDK's own.

Usage: python hang_child.py MODE, where MODE is
- `lock`: works normally for a second (small slices of CPU between short sleeps), then its main
  thread blocks for good on a lock it already holds;
- `asyncio`: the same in an asyncio loop (tasks doing small slices of work between awaits), then
  a synchronous computation that never ends blocks the loop;
- `load`: an asyncio loop busy but yielding for $LOAD_MS (many tasks, each slice of CPU followed
  by an await), then `load-done`, and it keeps running.
Only the first process of a test hangs: once the marker file ($PM_TEST_DIR/blocked-once) exists,
a `lock` or `asyncio` process stays healthy, so the restarted one runs.

Events (`started`, `blocking` with its time, `load-done`) are appended to
$PM_TEST_DIR/events.jsonl.
"""

import asyncio
import json
import os
import sys
import threading
import time

import pm_child  # noqa: F401  (the heartbeats start on import)

MODE = sys.argv[1]
DIR = os.environ["PM_TEST_DIR"]
MARKER = os.path.join(DIR, "blocked-once")


def event(kind, **fields):
    line = json.dumps({"pid": os.getpid(), "svc": MODE, "event": kind, **fields}) + "\n"
    fd = os.open(os.path.join(DIR, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode())
    os.close(fd)


def work(ms):
    """About `ms` of CPU in Python code."""
    end = time.perf_counter() + ms / 1000
    x = 0.0
    while time.perf_counter() < end:
        x += (x + 1) ** 0.5
    return x


def hang_here(lock):
    """The hang: the diagnostic must show this line."""
    lock.acquire()  # held already: never returns


def crunch_forever():
    """The asyncio variant's hang: the diagnostic must show this function."""
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003


def first():
    """Whether this process is the one that hangs."""
    if os.path.exists(MARKER):
        return False
    open(MARKER, "w").close()
    return True


def main_lock():
    hangs = first()
    end = time.monotonic() + 1.0
    while not hangs or time.monotonic() < end:
        work(2)
        time.sleep(0.01)
    lock = threading.Lock()
    lock.acquire()
    event("blocking", at=time.time())
    hang_here(lock)


async def main_asyncio():
    hangs = first()

    async def worker():
        while True:
            work(2)
            await asyncio.sleep(0.01)

    tasks = [asyncio.ensure_future(worker()) for _ in range(3)]
    await asyncio.sleep(1.0)
    if hangs:
        event("blocking", at=time.time())
        crunch_forever()
    await asyncio.gather(*tasks)


async def main_load():
    until = time.monotonic() + int(os.environ["LOAD_MS"]) / 1000
    slices = 0

    async def worker(i):
        nonlocal slices
        while time.monotonic() < until:
            work(5)
            slices += 1
            # Alternate a bare yield and a timer.
            await (asyncio.sleep(0) if slices % 2 else asyncio.sleep(0.001))

    await asyncio.gather(*(worker(i) for i in range(8)))
    event("load-done", slices=slices)
    await asyncio.sleep(3600)


event("started", at=time.time())
if MODE == "lock":
    main_lock()
elif MODE == "asyncio":
    asyncio.run(main_asyncio())
elif MODE == "load":
    asyncio.run(main_load())
else:
    raise SystemExit(f"unknown mode {MODE}")
