#!/usr/bin/env python3
"""Time from `stop` sent to child exit, per SDK language (`make bench-sdk`).

One service per SDK, each with one empty stop handler, under the release supervisor; the
supervisor is sent SIGTERM and the time is read from its own lifecycle line
`stopped: exit code 0, N ms after the stop request`. RUNS runs; median (min-max).
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PM = os.environ.get("PM_BIN", os.path.join(ROOT, "target/release/pm-supervisor"))
RUNS = int(os.environ.get("BENCH_RUNS", "10"))
VENV_PY = os.path.join(ROOT, "child-sdk-python", ".venv", "bin", "python")
SERVICES = [
    {"name": "node", "script": os.path.join(ROOT, "bench/children/sdk_minimal.js")},
    {"name": "python", "script": os.path.join(ROOT, "bench/children/sdk_minimal.py"), "interpreter": VENV_PY},
    {"name": "rust", "script": os.path.join(ROOT, "target/release/examples/sdk_child")},
]
STOPPED = re.compile(r" (\w+) pm  \| stopped: exit code 0, (\d+) ms after the stop request")


def run_once(tmp):
    cfg = os.path.join(tmp, "services.json")
    with open(cfg, "w") as f:
        json.dump({"services": [dict(s, killTimeout=5000) for s in SERVICES]}, f)
    out = os.path.join(tmp, "out.txt")
    env = dict(os.environ, PM_RUNTIME_DIR=os.path.join(tmp, "rt"), PM_LOG="warn")
    with open(out, "w") as o:
        sup = subprocess.Popen([PM, "run", cfg], env=env, stdout=o, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while open(out).read().count("pm  | ready") < len(SERVICES):
            if time.monotonic() > end:
                raise TimeoutError(open(out).read())
            time.sleep(0.01)
        sup.send_signal(signal.SIGTERM)
        sup.wait(timeout=30)
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    return {m.group(1): int(m.group(2)) for m in STOPPED.finditer(open(out).read())}


def main():
    times = {s["name"]: [] for s in SERVICES}
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="pm-bench-sdk-") as tmp:
            for name, ms in run_once(tmp).items():
                times[name].append(ms)
    print(f"| SDK | stop sent to exit, ms: median (min-max) of {RUNS} |")
    print("|---|---|")
    for name, ts in times.items():
        if len(ts) != RUNS:
            sys.exit(f"{name}: only {len(ts)} clean stops in {RUNS} runs")
        print(f"| {name} | {statistics.median(ts):.0f} ({min(ts)}-{max(ts)}) |")


main()
