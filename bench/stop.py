#!/usr/bin/env python3
"""Stop-latency benchmark of pm-supervisor (run by `make bench-stop`).

Measures, over several runs, with 50 children each:
  polite   children that answer `stop` and exit after a ~10 ms handler: time from SIGTERM to the
           supervisor's exit (every child reaped);
  stubborn children that ignore SIGTERM and never read their channel (killTimeout 200 ms):
           the same time, which cannot be less than killTimeout;
  sigkill  a mix of both, with the supervisor SIGKILLed: time until no process of the run is
           alive (the sentinel's work).
Prints the median, min and max in ms. Processes are found by a mark in their environment and
killed by pid at the end, whatever happens.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from marks import kill_marked, marked, wait_exited, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PM_BIN", os.path.join(ROOT, "target/release/pm-supervisor"))
FIX = os.path.join(ROOT, "tests/fixtures")
N = int(os.environ.get("BENCH_CHILDREN", "50"))
RUNS = int(os.environ.get("BENCH_RUNS", "7"))


def run_once(kind, tmp):
    mark = f"PM_TEST_DIR={tmp}".encode()
    services = []
    for i in range(N):
        polite = kind == "polite" or (kind == "sigkill" and i % 2 == 0)
        if polite:
            services.append({"name": f"p{i}", "script": os.path.join(FIX, "child.py"),
                             "args": ["protocol"], "killTimeout": 5000})
        else:
            services.append({"name": f"s{i}", "script": os.path.join(FIX, "ignore.sh"),
                             "killTimeout": 200})
    cfg = os.path.join(tmp, "services.json")
    with open(cfg, "w") as f:
        json.dump({"services": services}, f)
    env = dict(os.environ, PM_TEST_DIR=tmp, PM_RUNTIME_DIR=os.path.join(tmp, "rt"), PM_LOG="warn")
    with open(os.path.join(tmp, "out.txt"), "wb") as out:
        sup = subprocess.Popen([BIN, "run", cfg], env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        # Ready: every polite child wrote its "started" event, every stubborn one its first line.
        def all_up():
            try:
                with open(os.path.join(tmp, "events.jsonl")) as f:
                    started = sum(1 for l in f if '"started"' in l)
            except OSError:
                started = 0
            with open(os.path.join(tmp, "out.txt")) as f:
                started += f.read().count("out | started")
            return started >= N
        wait_for(all_up)
        t0 = time.monotonic()
        if kind == "sigkill":
            # Everything the run started, known before the kill, waited on without polling; the
            # /proc scan after it only confirms that nothing new appeared meanwhile.
            pids = set(marked(mark)) - {sup.pid}
            sup.send_signal(signal.SIGKILL)
            sup.wait()
            wait_exited(pids)
            wait_for(lambda: not marked(mark))
        else:
            sup.send_signal(signal.SIGTERM)
            sup.wait()  # blocking waitpid: Popen.wait(timeout) polls with up to 50 ms sleeps
        return (time.monotonic() - t0) * 1000
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        kill_marked(mark)


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not built (make bench-stop builds it)")
    rows = []
    for kind, what in [("polite", f"{N} children answering stop (~10 ms handler): SIGTERM to supervisor exit"),
                       ("stubborn", f"{N} children ignoring SIGTERM, killTimeout 200 ms: SIGTERM to supervisor exit"),
                       ("sigkill", f"supervisor SIGKILLed, {N} mixed children: until no process of the run is alive")]:
        times = []
        for _ in range(RUNS):
            with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
                times.append(run_once(kind, tmp))
        rows.append((what, statistics.median(times), min(times), max(times)))
        print(f"{kind}: {', '.join(f'{t:.0f}' for t in times)} ms", file=sys.stderr)
    print(f"| workload ({RUNS} runs) | median ms | min | max |")
    print("|---|---|---|---|")
    for what, med, lo, hi in rows:
        print(f"| {what} | {med:.0f} | {lo:.0f} | {hi:.0f} |")


main()
