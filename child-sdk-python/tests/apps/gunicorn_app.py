"""A WSGI app for gunicorn's sync workers, using pm_child in each worker, stopped by the tests
in test_frameworks.py. ``GET /slow`` takes 1.5 s. Events go to $PM_TEST_DIR/events.jsonl."""

import json
import os
import time

import pm_child


def event(kind, **fields):
    line = json.dumps({"pid": os.getpid(), "svc": os.environ.get("PM_SERVICE_NAME"),
                       "event": kind, **fields}) + "\n"
    with open(os.path.join(os.environ["PM_TEST_DIR"], "events.jsonl"), "a") as f:
        f.write(line)


# README: gunicorn
# Imported by each worker (no --preload): a worker is not the process pm started, so it runs
# unsupervised, and its stop handler runs on the SIGTERM gunicorn's master sends it; then
# gunicorn's own handler finishes the request in flight and the worker exits.
@pm_child.on_stopping
def flush():
    event("handler", supervised=pm_child.supervised())
# README: end


def app(environ, start_response):
    event("request-start")
    time.sleep(1.5)
    event("request-end")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


event("worker-started")
