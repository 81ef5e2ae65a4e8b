"""A Starlette app under uvicorn with a watchdog, for test_watchdog.py: ``python
watchdog_app.py SOCKET`` serves it on the Unix socket SOCKET. ``GET /fast`` answers at once;
``GET /block?ms=N`` blocks the event loop for N ms (a synchronous call in an ``async def``
endpoint, a common mistake), saying so on the channel before and after."""

import contextlib
import os
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

# Imported before uvicorn runs: with PM_WATCHDOG_MS, the heartbeats start here and move to
# uvicorn's loop by themselves.
import pm_child


@contextlib.asynccontextmanager
async def lifespan(app):
    yield


async def fast(request):
    return PlainTextResponse("ok")


async def block(request):
    ms = int(request.query_params["ms"])
    pm_child.send({"blocking": "uvicorn"})
    time.sleep(ms / 1000)
    pm_child.send({"unblocked": "uvicorn"})
    return PlainTextResponse("blocked")


app = Starlette(routes=[Route("/fast", fast), Route("/block", block)], lifespan=lifespan)

if __name__ == "__main__":
    pm_child.send({"pid": os.getpid()})
    uvicorn.run(app, uds=sys.argv[1], log_level="warning")
