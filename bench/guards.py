#!/usr/bin/env python3
"""The cost of the watchdog and the memory ceiling (`make bench-guards`, part of `make bench`).

The idle supervisor with N services (default 50) that each send a heartbeat every 333 ms, once
with `watchdogMs: 1000` and `maxMemory: "1G"` on every service and once without them (the same
heartbeats arrive and are ignored): its RSS and the CPU seconds it used over IDLE_SECONDS.
RUNS runs of each, alternated; medians (min-max). Writes docs/benchmarks-guards.md.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from marks import kill_marked, usage, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PM = os.environ.get("PM_BIN", os.path.join(ROOT, "target/release/pm-supervisor"))
CHILD = os.path.join(ROOT, "bench", "children", "heartbeat.sh")
N = int(os.environ.get("BENCH_CHILDREN", "50"))
# Idle CPU of a few tenths of a second varies by a third from run to run: 8 runs for a median.
RUNS = int(os.environ.get("BENCH_RUNS", "8"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "20"))
# BENCH_GUARDS=watchdog or memory measures one guard alone (printed, docs left as they are).
ONLY = os.environ.get("BENCH_GUARDS", "")
GUARDS = {k: v for k, v in {"watchdogMs": 1000, "maxMemory": "1G"}.items()
          if not ONLY or (ONLY == "watchdog") == (k == "watchdogMs")}



def ready(path, n):
    try:
        with open(path) as f:
            return sum(1 for l in f if l.strip()) >= n
    except OSError:
        return False


def idle(guarded):
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
        mark = f"PM_BENCH_RUN={tmp}".encode()
        ready_file = os.path.join(tmp, "ready.txt")
        env = dict(os.environ, PM_BENCH_RUN=tmp, BENCH_READY_FILE=ready_file,
                   PM_RUNTIME_DIR=os.path.join(tmp, "rt"), PM_LOG="warn")
        extra = {k: v for k, v in GUARDS.items() if guarded}
        services = [{"name": f"c{i}", "script": CHILD, "restartAt": [], **extra} for i in range(N)]
        cfg = os.path.join(tmp, "services.json")
        with open(cfg, "w") as f:
            json.dump({"services": services}, f)
        proc = subprocess.Popen([PM, "run", cfg], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: ready(ready_file, N))
            time.sleep(2)
            cpu0, _ = usage(proc.pid)
            time.sleep(IDLE_SECONDS)
            cpu1, rss = usage(proc.pid)
            return cpu1 - cpu0, rss
        finally:
            proc.kill()
            proc.wait()
            kill_marked(mark)


def fmt(xs, scale=1.0, digits=3):
    xs = [x * scale for x in xs]
    return f"{statistics.median(xs):.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def main():
    res = {False: [], True: []}
    for i in range(RUNS):
        for guarded in (False, True):
            r = idle(guarded)
            res[guarded].append(r)
            print(f"run {i + 1} {'with' if guarded else 'without'}: cpu {r[0]:.3f} s, "
                  f"rss {r[1] / 2**20:.1f} MiB", file=sys.stderr, flush=True)
    lines = [
        "# Benchmark: the watchdog and the memory ceiling at idle\n",
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())}; rerun with `make bench-guards`. "
        f"The supervisor with {N} services, each a bash child sending a heartbeat every 333 ms; "
        f"CPU seconds the supervisor used over {IDLE_SECONDS:.0f} s of idle, and its RSS. "
        f"{RUNS} runs each, alternated; median (min-max).\n",
        "| services | CPU s | CPU % of one core | RSS MiB |",
        "|---|---|---|---|",
    ]
    for guarded, what in ((False, "no watchdogMs, no maxMemory (heartbeats ignored)"),
                          (True, "watchdogMs 1000 and maxMemory 1G on each")):
        cpu = [c for c, _ in res[guarded]]
        rss = [r for _, r in res[guarded]]
        lines.append(f"| {N}, {what} | {fmt(cpu)} | {fmt(cpu, 100 / IDLE_SECONDS, 2)} | "
                     f"{fmt(rss, 1 / 2**20, 1)} |")
    out = "\n".join(lines) + "\n"
    if ONLY:
        print(out.replace("watchdogMs 1000 and maxMemory 1G", f"only {ONLY}"))
        return
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "benchmarks-guards.md"), "w") as f:
        f.write(out)
    print(out)


main()
