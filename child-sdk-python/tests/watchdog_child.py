#!/usr/bin/env python3
"""A service for the watchdog's tests (test_watchdog.py), driven through its channel: the test
sends commands as data, the service answers with markers (``{"blocking": what}`` before it
blocks, ``{"unblocked": what}`` after), so the test can tell which heartbeats came when.

Modes (argv[1]):
- ``main``: the main thread polls for commands every 5 ms (a plain script's main loop);
- ``asyncio``: the main thread runs an asyncio loop that waits for commands;
- ``asyncio-idle``: an asyncio loop that does nothing at all (one hour's sleep), and never
  calls the SDK from inside it.
"""

import asyncio
import ctypes
import os
import sys
import threading
import time

import pm_child

mode = sys.argv[1]
commands: "list[dict]" = []
lock = threading.Lock()
loop = None


def on_command(data):
    if loop is not None:
        loop.call_soon_threadsafe(commands.append, data)
    else:
        commands.append(data)


def stuck_in_c(ms):
    """A C call that holds the GIL (ctypes.PyDLL does not release it): no Python thread runs."""
    ctypes.PyDLL(None).usleep(ms * 1000)


def stuck_on_a_lock(ms):
    """Blocked in Python code, on a lock that nobody releases."""
    held = threading.Lock()
    held.acquire()
    held.acquire(timeout=ms / 1000)


def working(ms):
    """Pure Python work, without a pause."""
    end = time.monotonic() + ms / 1000
    n = 0
    while time.monotonic() < end:
        n += sum(range(100))
    return n


def run_sync(cmd):
    """Runs a command in the thread that calls it; False if it is not one for any thread."""
    if "beat" in cmd:
        n = cmd["beat"]
        pm_child.send({"calling": n})
        for _ in range(n):
            pm_child.heartbeat()
        pm_child.send({"called": n})
        return True
    what, ms = cmd.get("block"), cmd.get("ms", 0)
    blocks = {"c": stuck_in_c, "lock": stuck_on_a_lock, "work": working}
    if what in blocks:
        pm_child.send({"blocking": what})
        blocks[what](ms)
        pm_child.send({"unblocked": what})
        return True
    return False


pm_child.on_message(on_command)

if mode == "main":
    pm_child.send({"pid": os.getpid()})
    while True:
        while commands:
            run_sync(commands.pop(0))
        time.sleep(0.005)

elif mode == "asyncio":
    async def busy_but_yielding(ms):
        """Many tasks computing in slices of about a millisecond, for `ms`."""
        end = time.monotonic() + ms / 1000

        async def task():
            while time.monotonic() < end:
                slice_end = time.monotonic() + 0.001
                while time.monotonic() < slice_end:
                    pass
                await asyncio.sleep(0)

        await asyncio.gather(*(task() for _ in range(20)))

    async def main():
        global loop
        loop = asyncio.get_running_loop()
        pm_child.send({"pid": os.getpid()})
        while True:
            while commands:
                cmd = commands.pop(0)
                if cmd.get("block") == "yielding":
                    pm_child.send({"blocking": "yielding"})
                    await busy_but_yielding(cmd["ms"])
                    pm_child.send({"unblocked": "yielding"})
                else:
                    run_sync(cmd)
            await asyncio.sleep(0.005)

    asyncio.run(main())

elif mode == "asyncio-idle":
    pm_child.send({"pid": os.getpid()})
    asyncio.run(asyncio.sleep(3600))
