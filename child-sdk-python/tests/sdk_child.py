#!/usr/bin/env python3
"""Test child using the pm_child SDK, with one behaviour per mode (argv[1]).

Every event is appended as a JSON line to $PM_TEST_DIR/events.jsonl, tagged with the pid and
service name, so a test can see what happened inside the child.
"""

import asyncio
import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pm_child

EVENTS = os.path.join(os.environ["PM_TEST_DIR"], "events.jsonl")
SERVICE = os.environ.get("PM_SERVICE_NAME")
CHANNEL_VARS = ("PM_CHANNEL_FD", "PM_CHANNEL_ID", "NODE_CHANNEL_FD",
                "NODE_CHANNEL_SERIALIZATION_MODE")
# What a process this one starts can see of the channel (close_fds=False: only close-on-exec
# keeps the fd from it).
GRANDCHILD = '[ -e /proc/$$/fd/$1 ] && echo open || echo closed; echo "$PM_CHANNEL_FD|$NODE_CHANNEL_FD"'
# The channel's fd.
CHANNEL_FD = os.environ.get("PM_CHANNEL_FD", "3")


def event(kind, **fields):
    line = json.dumps({"pid": os.getpid(), "svc": SERVICE, "event": kind, **fields}) + "\n"
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode())
    os.close(fd)


def thread_name():
    return threading.current_thread().name


def started(**fields):
    event("started", supervised=pm_child.supervised(),
          env={k: os.environ.get(k) for k in CHANNEL_VARS}, **fields)


def grandchild():
    """What a process started by this one sees: fd open or closed, then the two variables."""
    return subprocess.run(["sh", "-c", GRANDCHILD, "sh", CHANNEL_FD], close_fds=False,
                          capture_output=True, text=True, check=True).stdout.split()


def run_forever():
    """The service's main loop; its `finally` shows a clean exit of the main thread."""
    try:
        while True:
            time.sleep(60)
    finally:
        event("finally")


atexit.register(lambda: event("atexit"))
mode = sys.argv[1]

if mode == "sync":
    # README: script
    @pm_child.on_stopping
    def handler():
        event("handler", thread=thread_name())

    pm_child.ready()
    # README: end
    started(sent=pm_child.send({"hello": "supervisor"}))
    run_forever()

elif mode == "two":
    @pm_child.on_stopping
    def first():
        event("first")
        raise ValueError("first handler fails")

    @pm_child.on_stopping
    def second():
        event("second")

    started()
    run_forever()

elif mode == "async":
    APP = {}

    # README: asyncio
    # Registered before any loop runs: only the loop running when the stop begins can be used.
    @pm_child.on_stopping
    async def handler():
        loop = asyncio.get_running_loop()
        event("handler-start", same_loop=loop is APP["loop"],
              main_thread=threading.current_thread() is threading.main_thread())
        APP["stop_seen"].set_result(None)
        # Awaiting a task of another loop raises RuntimeError.
        result = await APP["worker"]
        event("handler", result=result)

    async def worker():
        await APP["stop_seen"]
        await asyncio.sleep(0.02)
        return "flushed"

    async def main():
        APP["loop"] = asyncio.get_running_loop()
        APP["stop_seen"] = APP["loop"].create_future()
        APP["worker"] = asyncio.create_task(worker())
        started()
        try:
            await asyncio.Event().wait()
        finally:
            event("main-finally")

    try:
        asyncio.run(main())
    finally:
        event("after-run")
    # README: end

elif mode == "async-elsewhere":
    # No loop runs in the main thread: the handler runs on the loop that was running where it
    # was registered (argv[2] == "worker-loop"), else on a new loop on the handler thread.
    pm_child.supervised()  # first use in the main thread, which installs the signal handlers
    if sys.argv[2] == "worker-loop":
        worker_loop = asyncio.new_event_loop()
        threading.Thread(target=worker_loop.run_forever, name="worker-loop", daemon=True).start()
    else:
        worker_loop = None

    async def handler():
        await asyncio.sleep(0.01)
        event("handler", thread=thread_name(), same_loop=asyncio.get_running_loop() is worker_loop)

    async def register():
        pm_child.on_stopping(handler)

    if worker_loop is not None:
        asyncio.run_coroutine_threadsafe(register(), worker_loop).result()
    else:
        pm_child.on_stopping(handler)
    started()
    run_forever()

elif mode == "ready":
    pm_child.ready()
    started()
    run_forever()

elif mode == "grandchild":
    pm_child.ready()
    started(grandchild=grandchild())
    run_forever()

elif mode == "echo":
    @pm_child.on_message
    def on_message(data):
        event("message", data=data, thread=thread_name())
        pm_child.send({"echo": data})

    started()
    pm_child.ready()
    run_forever()

elif mode == "extend":
    @pm_child.on_stopping
    def handler():
        pm_child.extend(int(sys.argv[2]))
        time.sleep(float(sys.argv[3]))
        event("handler")

    started()
    run_forever()

elif mode == "blocked-main":
    # The main thread cannot take a signal (as if stuck in native code): the backstop ends it.
    @pm_child.on_stopping
    def handler():
        print("printed by the handler, still buffered")
        event("handler")

    started()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    run_forever()

elif mode == "worker-first":
    def register():
        @pm_child.on_stopping
        def handler():
            event("handler", thread=thread_name())

    t = threading.Thread(target=register)
    t.start()
    t.join()
    started()
    # Short sleeps: the SDK's request to install its signal hooks runs between them.
    try:
        while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            time.sleep(0.02)
        event("hooks")
        while True:
            time.sleep(0.02)
    finally:
        event("finally")

elif mode == "fork":
    @pm_child.on_stopping
    def handler():
        event("handler")

    pid = os.fork()
    if pid == 0:
        event("forked", supervised=pm_child.supervised(), sent=pm_child.send(1))
        while True:
            time.sleep(60)
    started(forked=pid)
    run_forever()

elif mode == "probe":
    # Started by a shell service, by `exec` or as its child: does it take the channel?
    supervised = pm_child.supervised()
    pm_child.ready()
    event("probe", supervised=supervised, sid=os.getsid(0))
    run_forever()

elif mode == "channel":
    # Driven by a test through its own socket: ready, one message, then whatever comes.
    pm_child.on_message(lambda data: pm_child.send({"echo": data}))
    pm_child.ready()
    pm_child.send(json.loads(sys.argv[2]))
    started(grandchild=grandchild())
    run_forever()

elif mode == "app-handler":
    # The app's own SIGTERM handler, installed before or after (argv[2]) the SDK's.
    done = threading.Event()

    def app_handler(signum, frame):
        event("app-handler", signum=signum)
        done.set()

    def stop_handler():
        event("handler")

    if sys.argv[2] == "before":
        signal.signal(signal.SIGTERM, app_handler)
        pm_child.on_stopping(stop_handler)
    else:
        pm_child.on_stopping(stop_handler)
        signal.signal(signal.SIGTERM, app_handler)
    pm_child.ready()
    started()
    while not done.wait(0.05):
        pass
    event("main-done")

elif mode == "no-handlers":
    # The SDK only for `ready`; the app's own SIGTERM handling.
    done = threading.Event()

    def app_handler(signum, frame):
        event("app-handler", signum=signum)
        done.set()

    signal.signal(signal.SIGTERM, app_handler)
    pm_child.ready()
    started()
    while not done.wait(0.05):
        pass
    event("main-done")

elif mode == "printer":
    # Last words: a handler that prints 100 lines.
    @pm_child.on_stopping
    def printer():
        for i in range(100):
            print(f"last words {i}")
        print("to stderr too", file=sys.stderr)
        event("handler-done")

    started()
    run_forever()

else:
    sys.exit(f"unknown mode {mode}")
