"""A Starlette app under uvicorn, using pm_child, stopped by the tests in test_frameworks.py.

Run as ``python starlette_app.py SOCKET MODE``: uvicorn serves it on the Unix socket SOCKET.
MODE ``import``: the stop handler is registered when the module is imported, before uvicorn
installs its signal handlers; ``lifespan``: it is registered in the lifespan, after. ``GET
/slow`` takes 1.5 s: a request in flight during the stop. Events go to
$PM_TEST_DIR/events.jsonl.
"""

import asyncio
import atexit
import contextlib
import json
import os
import sys
import threading

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import pm_child


def event(kind, **fields):
    line = json.dumps({"pid": os.getpid(), "svc": os.environ.get("PM_SERVICE_NAME"),
                       "event": kind, **fields}) + "\n"
    with open(os.path.join(os.environ["PM_TEST_DIR"], "events.jsonl"), "a") as f:
        f.write(line)


MODE = sys.argv[2] if __name__ == "__main__" else "import"
STATE = {}
atexit.register(lambda: event("atexit"))


# README: uvicorn
async def close_connections():
    # Runs on the app's own loop: it can await the app's tasks, pools and clients.
    event("handler", same_loop=asyncio.get_running_loop() is STATE.get("loop"),
          main_thread=threading.current_thread() is threading.main_thread())
    await asyncio.sleep(0.05)
    event("handler-done")


if MODE == "import":
    pm_child.on_stopping(close_connections)


@contextlib.asynccontextmanager
async def lifespan(app):
    STATE["loop"] = asyncio.get_running_loop()
    if MODE == "lifespan":
        pm_child.on_stopping(close_connections)
    pm_child.ready()
    event("started")
    yield
    event("lifespan-shutdown")
# README: end


async def slow(request):
    event("request-start")
    await asyncio.sleep(1.5)
    event("request-end")
    return PlainTextResponse("done")


app = Starlette(routes=[Route("/slow", slow)], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, uds=sys.argv[1], log_level="info")
    event("after-run")
