#!/usr/bin/env python3
"""Log throughput and integrity benchmark (`make bench-logs`).

Workloads, each run by every tool in the same session:
  node    one Node child writing LINES lines of ~100 bytes, one write per line
  python  the same from a Python child
  shared4 four children (2 Node, 2 Python) writing LINES lines each into one log file

Tools:
  redirect      the shell redirects the child's stdout straight to the file (`>>`): the
                physical limit of the child writing to a file itself
  pm-supervisor `log` set; every line gets its timestamp/name/stream prefix
  supervisord   stdout_logfile (raw bytes, no prefix)          -- installed in bench/.tools
  pm2           -o file with --merge-logs (raw lines)          -- installed in bench/.tools

For each run: wall time from launch until the log file was last written (once every child has
finished and the file has stopped growing),
the ratio to the redirect's median, the tool's own CPU time and peak RSS (its main process), and
the count of lost, duplicated and mangled lines (every line carries a sequence number and a
checksum). Prints a markdown table; medians with min-max over RUNS runs.
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from marks import kill_marked

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "bench", ".tools")
PM = os.environ.get("PM_BIN", os.path.join(ROOT, "target/release/pm-supervisor"))
WRITERS = os.path.join(ROOT, "bench", "writers")
LINES = int(os.environ.get("BENCH_LINES", "1000000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
ONLY = os.environ.get("BENCH_TOOLS", "redirect,pm-supervisor,supervisord,pm2").split(",")
NODE = shutil.which("node")
PYTHON = sys.executable

LINE_RE = re.compile(rb"([a-z]{70}) (w\d) (\d{7}) ([0-9a-f]{8})$")


def fnv(data, h=0x811C9DC5):
    for c in data:
        h = ((h ^ c) * 0x01000193) & 0xFFFFFFFF
    return h


PAYLOAD_HASH = {}


def check(path, writers):
    """Counts (lost, duplicated, mangled) lines of `writers` in the log at `path`."""
    seen = {w: bytearray(LINES) for w in writers}
    dup = mangled = 0
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            if b" pm  | " in line:
                continue  # the supervisor's own lifecycle lines
            m = LINE_RE.search(line)
            if not m:
                if line.strip():
                    mangled += 1
                continue
            payload, w, seq, s = m.groups()
            h = PAYLOAD_HASH.get(payload)
            if h is None:
                h = PAYLOAD_HASH[payload] = fnv(payload)
            tail = b" " + w + b" " + seq
            if int(s, 16) != fnv(tail, h) or w.decode() not in seen:
                mangled += 1
                continue
            i = int(seq)
            if i >= LINES:
                mangled += 1
            elif seen[w.decode()][i]:
                dup += 1
            else:
                seen[w.decode()][i] = 1
    lost = sum(LINES - sum(v) for v in seen.values())
    return lost, dup, mangled


def writer_cmd(kind, name, done):
    if kind == "node":
        return [NODE, os.path.join(WRITERS, "writer.js"), str(LINES), name, done]
    return [PYTHON, os.path.join(WRITERS, "writer.py"), str(LINES), name, done]


def workload(name):
    if name == "node":
        return [("node", "w0")]
    if name == "python":
        return [("python", "w0")]
    return [("node", "w0"), ("python", "w1"), ("node", "w2"), ("python", "w3")]


def proc_usage(pid):
    """(CPU seconds, peak RSS bytes) of one process, its threads included, children not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/status") as f:
            hwm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
        return cpu, hwm
    except (OSError, StopIteration, IndexError):
        return None, None


def wait_done(dones, log, timeout=600):
    """Until every done file exists and the log has not grown for 2 s (a tool may still be
    writing what it buffered, in bursts). Returns when the log was last written (its mtime, on
    the wall clock): the moment the tool's work was done, whatever it did afterwards."""
    end = time.monotonic() + timeout
    while not all(os.path.exists(d) for d in dones):
        if time.monotonic() > end:
            raise TimeoutError("writers did not finish")
        time.sleep(0.005)
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.0:
        size = os.path.getsize(log) if os.path.exists(log) else 0
        if size != last:
            last, stable_since = size, time.monotonic()
        time.sleep(0.01)
    return os.stat(log).st_mtime


def run(tool, wl, tmp):
    """One run; returns (wall s, cpu s, rss bytes, lost, dup, mangled)."""
    log = os.path.join(tmp, "out.log")
    ws = workload(wl)
    dones = [os.path.join(tmp, f"{w}.done") for _, w in ws]
    marker = f"PM_BENCH_RUN={tmp}".encode()
    env = dict(os.environ, PM_BENCH_RUN=tmp, PYTHONUNBUFFERED="1")
    cpu = rss = None
    t0 = time.time()
    try:
        if tool == "redirect":
            procs = []
            for (kind, w), d in zip(ws, dones):
                out = open(log, "ab")
                procs.append(subprocess.Popen(writer_cmd(kind, w, d), stdout=out, env=env))
                out.close()
            end = wait_done(dones, log)
            for p in procs:
                p.wait()
        elif tool == "pm-supervisor":
            services = [{"name": w, "script": writer_cmd(kind, w, d)[1], "args": writer_cmd(kind, w, d)[2:],
                         "interpreter": writer_cmd(kind, w, d)[0], "log": log, "restartAt": [], "logMaxSize": 0}
                        for (kind, w), d in zip(ws, dones)]
            cfg = os.path.join(tmp, "services.json")
            with open(cfg, "w") as f:
                json.dump({"services": services}, f)
            env["PM_RUNTIME_DIR"] = os.path.join(tmp, "rt")
            sup = subprocess.Popen([PM, "run", cfg], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = wait_done(dones, log)
            cpu, rss = proc_usage(sup.pid)
            sup.send_signal(signal.SIGTERM)
            sup.wait()
        elif tool == "supervisord":
            conf = os.path.join(tmp, "supervisord.conf")
            with open(conf, "w") as f:
                f.write(f"[supervisord]\nnodaemon=true\nlogfile={tmp}/supervisord.log\npidfile={tmp}/supervisord.pid\n")
                for (kind, w), d in zip(ws, dones):
                    cmd = " ".join(writer_cmd(kind, w, d))
                    f.write(f"[program:{w}]\ncommand={cmd}\nstdout_logfile={log}\nstdout_logfile_maxbytes=0\n"
                            "redirect_stderr=true\nautorestart=false\nstartsecs=0\n")
            sd = os.path.join(TOOLS, "venv", "bin", "supervisord")
            sup = subprocess.Popen([sd, "-n", "-c", conf], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = wait_done(dones, log)
            cpu, rss = proc_usage(sup.pid)
            sup.send_signal(signal.SIGTERM)
            sup.wait()
        elif tool == "pm2":
            env["PM2_HOME"] = os.path.join(tmp, "pm2home")
            pm2 = os.path.join(TOOLS, "node_modules", ".bin", "pm2")
            for (kind, w), d in zip(ws, dones):
                cmd = writer_cmd(kind, w, d)
                subprocess.run([pm2, "start", cmd[1], "--name", w, "--interpreter", cmd[0], "--no-autorestart",
                                "-o", log, "-e", log, "--merge-logs", "--", *cmd[2:]],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            end = wait_done(dones, log)
            with open(os.path.join(env["PM2_HOME"], "pm2.pid")) as f:
                cpu, rss = proc_usage(int(f.read().strip()))
            subprocess.run([pm2, "kill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = end - t0
    finally:
        kill_marked(marker)
    lost, dup, mangled = check(log, [w for _, w in ws])
    return wall, cpu, rss, lost, dup, mangled


def install():
    """PM2 (npm) and supervisord (pip) in bench/.tools, once."""
    os.makedirs(TOOLS, exist_ok=True)
    if "pm2" in ONLY and not os.path.exists(os.path.join(TOOLS, "node_modules", ".bin", "pm2")):
        subprocess.run(["npm", "install", "--silent", "--prefix", TOOLS, "pm2@latest"], check=True)
    if "supervisord" in ONLY and not os.path.exists(os.path.join(TOOLS, "venv", "bin", "supervisord")):
        subprocess.run([PYTHON, "-m", "venv", os.path.join(TOOLS, "venv")], check=True)
        subprocess.run([os.path.join(TOOLS, "venv", "bin", "pip"), "install", "-q", "supervisor"], check=True)


def main():
    install()
    results = {}
    for wl in ["node", "python", "shared4"]:
        for tool in ONLY:
            for r in range(RUNS):
                with tempfile.TemporaryDirectory(prefix="pm-bench-logs-") as tmp:
                    res = run(tool, wl, tmp)
                results.setdefault((wl, tool), []).append(res)
                print(f"{wl:8} {tool:14} run {r + 1}: {res[0]:.2f} s, lost/dup/mangled {res[3]}/{res[4]}/{res[5]}",
                      file=sys.stderr)
    print(f"\n{LINES:,} lines of ~100 bytes per child; {RUNS} runs each; median (min-max).\n")
    print("| workload | tool | wall s | ratio to redirect | tool CPU s | tool peak RSS MB | lost / dup / mangled (all runs) |")
    print("|---|---|---|---|---|---|---|")
    for wl in ["node", "python", "shared4"]:
        base = statistics.median(r[0] for r in results.get((wl, "redirect"), [(float("nan"),)]))
        for tool in ONLY:
            rs = results[(wl, tool)]
            walls = [r[0] for r in rs]
            med = statistics.median(walls)
            cpus = [r[1] for r in rs if r[1] is not None]
            rsss = [r[2] for r in rs if r[2] is not None]
            cpu = f"{statistics.median(cpus):.2f}" if cpus else "-"
            rss = f"{max(rsss) / 1048576:.1f}" if rsss else "-"
            bad = f"{sum(r[3] for r in rs)} / {sum(r[4] for r in rs)} / {sum(r[5] for r in rs)}"
            print(f"| {wl} | {tool} | {med:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {med / base:.2f} | {cpu} | {rss} | {bad} |")


main()
