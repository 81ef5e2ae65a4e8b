"""Benchmark child for the orphan count: a Python service with a grandchild in its group and a
double-forked setsid escapee, all of them idle."""
import os
import subprocess
import sys
import time

subprocess.Popen(["sleep", "1000"])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "1001"])
    os._exit(0)
ready = os.environ.get("BENCH_READY_FILE")
if ready:
    with open(ready, "a") as f:
        f.write(f"{os.getpid()}\n")
while True:
    time.sleep(1)
