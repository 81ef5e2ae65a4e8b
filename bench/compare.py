#!/usr/bin/env python3
"""pm-supervisor against PM2 and supervisord, measured in one run (`make bench`).

Workloads (every tool, same machine, same session):
  stop-polite    50 Node children whose stop handler takes ~10 ms (pm: stop message through
                 the SDK, on SIGTERM to the supervisor; PM2: `pm2 stop all`, SIGINT;
                 supervisord: `supervisorctl stop all`, SIGTERM):
                 time from the request until every child is gone
  stop-stubborn  50 Node children that ignore every request: the same time (each tool's default
                 grace: pm killTimeout 200 ms, PM2 kill_timeout 1600 ms, supervisord 10 s)
  idle           the daemon's RSS and CPU seconds over IDLE_SECONDS, with 0 and with 50 idle
                 children (pm: the supervisor; its sentinel's RSS is listed apart)
  spawn          50 Node children from the start request until all said ready, against a minimal
                 Node parent doing child_process.fork (the physical baseline)
  orphans        2 s after the daemon is SIGKILLed: its children, their grandchildren and
                 setsid escapees still alive
  logs           bench/logs.py (throughput and integrity), run as part of this
  floors         the same Node children signalled by a bare Node parent, no supervisor at all:
                 the least any stop of them can take on this machine

Writes docs/benchmarks.md (tables, machine, how to rerun) and docs/benchmarks.png (ratios
pm-supervisor / anchor). RUNS repetitions; medians with min-max.
"""
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from marks import kill_marked, marked, usage, wait_exited, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "bench", ".tools")
PM = os.environ.get("PM_BIN", os.path.join(ROOT, "target/release/pm-supervisor"))
CHILDREN = os.path.join(ROOT, "bench", "children")
NODE = shutil.which("node")
PY = sys.executable
PM2 = os.path.join(TOOLS, "node_modules", ".bin", "pm2")
SUPERVISORD = os.path.join(TOOLS, "venv", "bin", "supervisord")
N = int(os.environ.get("BENCH_CHILDREN", "50"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "30"))
ALL_TOOLS = ["pm-supervisor", "pm2", "supervisord"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes



def ready_pids(path, n):
    try:
        with open(path) as f:
            pids = [int(l) for l in f if l.strip()]
    except OSError:
        return None
    return pids if len(pids) >= n else None


# ---------------------------------------------------------------- tools


class Run:
    """One tool running `scripts` (a list of (name, interpreter, script)) in a fresh folder."""

    def __init__(self, tool, scripts, tmp):
        self.tool, self.tmp = tool, tmp
        self.mark = f"PM_BENCH_RUN={tmp}".encode()
        self.ready = os.path.join(tmp, "ready.txt")
        self.env = dict(os.environ, PM_BENCH_RUN=tmp, BENCH_READY_FILE=self.ready,
                        PM_RUNTIME_DIR=os.path.join(tmp, "rt"), PM2_HOME=os.path.join(tmp, "pm2"),
                        PM_LOG="warn")
        self.env.pop("PM_CHANNEL_FD", None)
        self.daemon = None
        if tool == "pm-supervisor":
            cfg = os.path.join(tmp, "services.json")
            with open(cfg, "w") as f:
                json.dump({"services": [{"name": n, "script": s, "interpreter": i, "restartAt": []}
                                        for n, i, s in scripts]}, f)
            self.proc = subprocess.Popen([PM, "run", cfg], env=self.env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.daemon = self.proc.pid
        elif tool == "supervisord":
            conf = os.path.join(tmp, "supervisord.conf")
            with open(conf, "w") as f:
                f.write(f"[supervisord]\nnodaemon=true\nlogfile={tmp}/sd.log\npidfile={tmp}/sd.pid\n"
                        f"childlogdir={tmp}\n[unix_http_server]\nfile={tmp}/sd.sock\n"
                        "[rpcinterface:supervisor]\n"
                        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
                        f"[supervisorctl]\nserverurl=unix://{tmp}/sd.sock\n")
                for n, i, s in scripts:
                    f.write(f"[program:{n}]\ncommand={i} {s}\nautorestart=false\nstartsecs=0\n"
                            f"stdout_logfile=NONE\nstderr_logfile=NONE\n")
            self.conf = conf
            self.proc = subprocess.Popen([SUPERVISORD, "-n", "-c", conf], env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.daemon = self.proc.pid
        elif tool == "pm2":
            eco = os.path.join(tmp, "ecosystem.json")
            with open(eco, "w") as f:
                json.dump({"apps": [{"name": n, "script": s, "interpreter": i, "autorestart": False,
                                     "out_file": "/dev/null", "error_file": "/dev/null"}
                                    for n, i, s in scripts]}, f)
            if scripts:
                subprocess.run([PM2, "start", eco], env=self.env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                subprocess.run([PM2, "ping"], env=self.env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(os.path.join(self.env["PM2_HOME"], "pm2.pid")) as f:
                self.daemon = int(f.read().strip())
            self.proc = None

    def children(self, n):
        return wait_for(lambda: ready_pids(self.ready, n))

    def stop(self):
        """Asks the tool to stop everything the way its users do."""
        if self.tool == "pm2":
            subprocess.run([PM2, "stop", "all"], env=self.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        elif self.tool == "supervisord":
            # `stop all` stops in parallel; its own shutdown on SIGTERM goes one program at a time.
            ctl = os.path.join(TOOLS, "venv", "bin", "supervisorctl")
            subprocess.run([ctl, "-c", self.conf, "stop", "all"], env=self.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        else:
            self.proc.send_signal(signal.SIGTERM)

    def close(self):
        if self.tool == "pm2":
            subprocess.run([PM2, "kill"], env=self.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        elif self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
        kill_marked(self.mark)


def with_run(tool, scripts, body):
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
        r = Run(tool, scripts, tmp)
        try:
            return body(r)
        finally:
            r.close()


def js(name):
    return os.path.join(CHILDREN, name)


# ---------------------------------------------------------------- workloads


def stop_time(tool, script):
    scripts = [(f"c{i}", NODE, js(script)) for i in range(N)]

    def body(r):
        pids = r.children(N)
        time.sleep(0.2)  # let the tool settle after the last start
        t0 = time.monotonic()
        r.stop()
        wait_exited(pids)
        return time.monotonic() - t0

    return with_run(tool, scripts, body)


FLOOR = r"""
const { spawn } = require('child_process')
const [n, how] = [Number(process.argv[2]), process.argv[3]]
// How long n Node processes take to disappear once signalled at once, with no supervisor in the
// way: `term` exit on SIGTERM by default, `polite` run the benchmark's ~10 ms stop handler on
// SIGTERM and then process.exit(0) (the polite children's own work), `kill` are SIGKILLed.
const body = how === 'polite'
  ? "process.on('SIGTERM', () => setTimeout(() => process.exit(0), 10)); setInterval(() => {}, 1000)"
  : 'setInterval(() => {}, 1000)'
const kids = Array.from({ length: n }, () => spawn(process.execPath, ['-e', body], { stdio: 'ignore' }))
let gone = 0
setTimeout(() => {
  const t0 = process.hrtime.bigint()
  for (const k of kids) {
    k.on('exit', () => { if (++gone === n) { console.log(Number(process.hrtime.bigint() - t0) / 1e6); process.exit(0) } })
    k.kill(how === 'kill' ? 'SIGKILL' : 'SIGTERM')
  }
}, 1500)
"""


def floor_time(how):
    """The physical floor of a stop: N Node processes signalled at once, until all are gone."""
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
        script = os.path.join(tmp, "floor.js")
        with open(script, "w") as f:
            f.write(FLOOR)
        env = dict(os.environ, PM_BENCH_RUN=tmp)
        try:
            out = subprocess.run([NODE, script, str(N), how], env=env, capture_output=True, text=True,
                                 check=True, timeout=120)
            return float(out.stdout.strip()) / 1000
        finally:
            kill_marked(f"PM_BENCH_RUN={tmp}".encode())


def idle(tool, n):
    scripts = [(f"c{i}", NODE, js("stubborn.js")) for i in range(n)]

    def body(r):
        if n:
            r.children(n)
        time.sleep(2)
        cpu0, _ = usage(r.daemon)
        time.sleep(IDLE_SECONDS)
        cpu1, rss = usage(r.daemon)
        extra = None
        if tool == "pm-supervisor":
            sentinel = [p for p, cmd in marked(r.mark).items() if "__sentinel" in cmd]
            extra = usage(sentinel[0])[1] if sentinel else None
        return cpu1 - cpu0, rss, extra

    return with_run(tool, scripts, body)


SPAWN_PM = r"""
const { spawn } = require('child_process')
const [bin, n, script] = [process.argv[2], Number(process.argv[3]), process.argv[4]]
const sup = spawn(bin, ['serve', '--name', 'bench-spawn'], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] })
let id = 0, t0, done = 0
const pending = new Map()
sup.on('message', (m) => {
  if (m.type !== 'reply') return
  const cb = pending.get(m.id); pending.delete(m.id); if (cb) cb(m)
})
const ask = (req) => new Promise((resolve) => { req.id = ++id; pending.set(req.id, resolve); sup.send(req) })
ask({ type: 'list' }).then(async () => {
  t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: n }, (_, i) => ask({ type: 'start', wait: 'ready',
    spec: { name: 'c' + i, script, interpreter: process.execPath, restartAt: [] } }).then((r) => {
      if (!r.ok) { console.error(r.error); process.exit(1) }
    })))
  console.log(Number(process.hrtime.bigint() - t0) / 1e6)
  sup.send({ type: 'shutdown', id: ++id })
  sup.on('exit', () => process.exit(0))
})
"""


def spawn_time(kind):
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
        env = dict(os.environ, PM_BENCH_RUN=tmp, PM_RUNTIME_DIR=os.path.join(tmp, "rt"), PM_LOG="warn")
        mark = f"PM_BENCH_RUN={tmp}".encode()
        try:
            if kind == "fork":
                out = subprocess.run([NODE, js("forker.js"), str(N), js("polite.js")], env=env,
                                     capture_output=True, text=True, check=True, timeout=120)
            else:
                script = os.path.join(tmp, "spawn.js")
                with open(script, "w") as f:
                    f.write(SPAWN_PM)
                out = subprocess.run([NODE, script, PM, str(N), js("polite.js")], env=env,
                                     capture_output=True, text=True, check=True, timeout=120)
            return float(out.stdout.strip()) / 1000
        finally:
            kill_marked(mark)


def orphans(tool):
    scripts = [("famjs", NODE, js("family.js")), ("fampy", PY, js("family.py"))]

    def body(r):
        kids = r.children(2)
        # Grandchildren and escapees are started right after the children report.
        wait_for(lambda: sum("sleep 100" in c for c in marked(r.mark).values()) >= 4, timeout=20)
        before = marked(r.mark)
        os.kill(r.daemon, signal.SIGKILL)
        time.sleep(2)
        left = marked(r.mark)
        count = {"children": 0, "grandchildren": 0, "escapees": 0}
        for pid, cmd in left.items():
            if pid in kids:
                count["children"] += 1
            elif "sleep 1000" in cmd or "sleep 1002" in cmd:
                count["grandchildren"] += 1
            elif "sleep 1001" in cmd or "sleep 1003" in cmd:
                count["escapees"] += 1
        total = {"children": 2, "grandchildren": sum("sleep 1000" in c or "sleep 1002" in c for c in before.values()),
                 "escapees": sum("sleep 1001" in c or "sleep 1003" in c for c in before.values())}
        return count, total

    return with_run(tool, scripts, body)


# ---------------------------------------------------------------- report


def med(xs):
    return statistics.median(xs)


def fmt_range(xs, unit="s", scale=1.0, digits=2):
    xs = [x * scale for x in xs]
    return f"{med(xs):.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def install():
    os.makedirs(TOOLS, exist_ok=True)
    if not os.path.exists(PM2):
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", TOOLS, "pm2@latest"],
                       check=True)
    venv_py = os.path.join(TOOLS, "venv", "bin", "python")
    if not os.path.exists(venv_py):
        subprocess.run([PY, "-m", "venv", os.path.join(TOOLS, "venv")], check=True)
    have = subprocess.run([venv_py, "-c", "import supervisor, matplotlib"], capture_output=True).returncode == 0
    if not have:
        subprocess.run([venv_py, "-m", "pip", "install", "-q", "supervisor", "matplotlib"], check=True)


def main():
    install()
    res = {}
    for kind, script in [("stop-polite", "polite.js"), ("stop-stubborn", "stubborn.js")]:
        for tool in ALL_TOOLS:
            runs = RUNS if not (kind == "stop-stubborn" and tool != "pm-supervisor") else min(RUNS, 2)
            res[(kind, tool)] = []
            for i in range(runs):
                t = stop_time(tool, script)
                res[(kind, tool)].append(t)
                log(f"{kind} {tool} run {i + 1}: {t:.3f} s")
    for how in ("polite", "term", "kill"):
        res[("floor", how)] = [floor_time(how) for _ in range(RUNS)]
        log(f"floor {how}: {res[('floor', how)]}")
    for n in (0, N):
        for tool in ALL_TOOLS:
            res[(f"idle-{n}", tool)] = idle(tool, n)
            log(f"idle {n} {tool}: {res[(f'idle-{n}', tool)]}")
    for kind in ("fork", "pm-supervisor"):
        res[("spawn", kind)] = [spawn_time(kind) for _ in range(RUNS)]
        log(f"spawn {kind}: {res[('spawn', kind)]}")
    for tool in ALL_TOOLS:
        res[("orphans", tool)] = orphans(tool)
        log(f"orphans {tool}: {res[('orphans', tool)]}")
    logs_env = dict(os.environ, BENCH_RUNS=os.environ.get("BENCH_LOG_RUNS", "3"))
    logs = subprocess.run([PY, os.path.join(ROOT, "bench", "logs.py")], env=logs_env, capture_output=True,
                          text=True, check=True)
    write_report(res, logs.stdout.strip())


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {
        "node": subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip(),
        "python": platform.python_version(),
        # From its package: `pm2 --version` starts a daemon.
        "pm2": json.load(open(os.path.join(TOOLS, "node_modules", "pm2", "package.json")))["version"],
        "supervisord": subprocess.run([SUPERVISORD, "--version"], capture_output=True, text=True).stdout.strip(),
    }
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} x {cpu}, {mem:.0f} GiB RAM; " + \
        ", ".join(f"{k} {v}" for k, v in versions.items())


def write_report(res, logs_table):
    lines = []
    add = lines.append
    add("# Benchmarks\n")
    add(f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {machine()}.\n")
    add("Rerun with `make bench` (installs PM2 and supervisord into `bench/.tools`; about 40 minutes). "
        f"{RUNS} runs per cell unless noted; median (min-max). Ratios are pm-supervisor / the other tool "
        "(below 1 is better for pm-supervisor).\n")
    add(f"## Stopping {N} Node children\n")
    add("| workload | pm-supervisor s | PM2 s | supervisord s | pm / PM2 | pm / supervisord |")
    add("|---|---|---|---|---|---|")
    ratios = {}
    for kind, what in [("stop-polite", "stop handlers of ~10 ms"), ("stop-stubborn", "children ignore every request")]:
        p, m2, sd = (res[(kind, t)] for t in ALL_TOOLS)
        ratios[f"{kind}\nvs PM2"] = med(p) / med(m2)
        ratios[f"{kind}\nvs supervisord"] = med(p) / med(sd)
        add(f"| {what} | {fmt_range(p, digits=3)} | {fmt_range(m2)} | {fmt_range(sd)} | "
            f"{med(p) / med(m2):.3f} | {med(p) / med(sd):.3f} |")
    polite, term, kill = (res[("floor", how)] for how in ("polite", "term", "kill"))
    add(f"| floor: {N} Node processes with the same ~10 ms SIGTERM handler then `process.exit(0)`, "
        f"SIGTERMed at once, no supervisor | {fmt_range(polite, digits=3)} | | | | |")
    add(f"| floor: {N} plain Node processes SIGTERMed at once, no supervisor | {fmt_range(term, digits=3)} | | | | |")
    add(f"| floor: {N} Node processes SIGKILLed at once, no supervisor | {fmt_range(kill, digits=3)} | | | | |")
    add(f"| floor for ignoring children: 0.200 s `killTimeout` + the SIGKILL floor | {0.2 + med(kill):.3f} | | | | |")
    add(f"\nThe floors are what the kernel and Node themselves take to end {N} processes on this machine: "
        "a stop cannot be faster. pm-supervisor's time above a floor is its own: "
        f"{med(res[('stop-polite', 'pm-supervisor')]) - med(polite):+.3f} s for the stop handlers, "
        f"{med(res[('stop-stubborn', 'pm-supervisor')]) - 0.2 - med(kill):+.3f} s for the ignoring children. "
        "(The polite floor's children are signalled by their parent; pm-supervisor's are sent the "
        "protocol's `stop` message, answer `stopping`, and have their process groups and tagged strays "
        "swept after they exit.)\n")
    add("PM2 and supervisord with fewer runs for the stubborn children (their grace periods make a run "
        "last seconds); pm-supervisor's `killTimeout` is its default 200 ms, PM2's `kill_timeout` 1600 ms, "
        "supervisord's `stopwaitsecs` 10 s.\n")
    add(f"## Idle daemon: memory and CPU over {IDLE_SECONDS:.0f} s\n")
    add("| children | tool | RSS MB | CPU s | pm RSS / other |")
    add("|---|---|---|---|---|")
    for n in (0, N):
        p_rss = res[(f"idle-{n}", "pm-supervisor")][1]
        for tool in ALL_TOOLS:
            cpu, rss, extra = res[(f"idle-{n}", tool)]
            note = f" (+ sentinel {extra / 2**20:.1f})" if extra else ""
            ratio = "" if tool == "pm-supervisor" else f"{p_rss / rss:.2f}"
            if tool != "pm-supervisor":
                ratios[f"RSS {n} children\nvs {tool}"] = p_rss / rss
            add(f"| {n} | {tool} | {rss / 2**20:.1f}{note} | {cpu:.2f} | {ratio} |")
    add("")
    add(f"## Spawning {N} Node children until each said ready\n")
    fork, pm = res[("spawn", "fork")], res[("spawn", "pm-supervisor")]
    ratios["spawn\nvs fork()"] = med(pm) / med(fork)
    add("| launcher | s | ratio to fork |")
    add("|---|---|---|")
    add(f"| Node parent with `child_process.fork` (baseline) | {fmt_range(fork, digits=3)} | 1.00 |")
    add(f"| pm-supervisor (`serve`, 50 `start` requests with `wait: ready`) | {fmt_range(pm, digits=3)} | "
        f"{med(pm) / med(fork):.2f} |")
    add("")
    add("## Left alive 2 s after the daemon is SIGKILLed\n")
    add("Each runs a Node and a Python child; each child has a grandchild in its group and a setsid escapee.\n")
    add("| tool | children | grandchildren | escapees |")
    add("|---|---|---|---|")
    for tool in ALL_TOOLS:
        count, total = res[("orphans", tool)]
        add(f"| {tool} | {count['children']} of {total['children']} | {count['grandchildren']} of "
            f"{total['grandchildren']} | {count['escapees']} of {total['escapees']} |")
    add("")
    add("## Log throughput and integrity (`make bench-logs`)\n")
    add(logs_table)
    add("")
    add("![ratios](benchmarks.png)\n")
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "benchmarks.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    ratios.update(log_ratios(logs_table))
    chart(ratios)
    print("\n".join(lines))


def log_ratios(table):
    """pm-supervisor's wall time over each other tool's, per log workload, from logs.py's table."""
    walls = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[2][:1].isdigit():
            walls[(cells[0], cells[1])] = float(cells[2].split()[0])
    out = {}
    for wl in ("node", "python", "shared4"):
        pm = walls.get((wl, "pm-supervisor"))
        for other in ("redirect", "supervisord", "pm2"):
            if pm and walls.get((wl, other)):
                out[f"logs {wl}\nvs {other}"] = pm / walls[(wl, other)]
    return out


def chart(ratios):
    script = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
ratios = json.loads(sys.argv[1])
names, values = list(ratios), list(ratios.values())
fig, ax = plt.subplots(figsize=(15, 5))
bars = ax.bar(range(len(names)), values, color=["#2a7" if v <= 1 else "#c53" for v in values])
ax.axhline(1.0, color="#444", linewidth=1)
ax.set_yscale("log")
ax.set_xticks(range(len(names)))
ax.set_xticklabels(names, fontsize=7, rotation=35, ha="right")
ax.set_ylabel("pm-supervisor / other (log scale, below 1 is better)")
for b, v in zip(bars, values):
    ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
"""
    subprocess.run([os.path.join(TOOLS, "venv", "bin", "python"), "-c", script, json.dumps(ratios),
                    os.path.join(ROOT, "docs", "benchmarks.png")], check=True)


if __name__ == "__main__" and sys.argv[1:] == ["--chart-only"]:
    # Redraws docs/benchmarks.png from docs/benchmarks.md (after editing the chart code).
    report = open(os.path.join(ROOT, "docs", "benchmarks.md")).read()
    ratios = {}
    for row in report.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[4][:1].isdigit() and cells[0].startswith(("stop", "children")):
            kind = "stop-polite" if cells[0].startswith("stop") else "stop-stubborn"
            ratios[f"{kind}\nvs PM2"], ratios[f"{kind}\nvs supervisord"] = float(cells[4]), float(cells[5])
        elif len(cells) == 5 and cells[4][:1].isdigit() and cells[1] in ("pm2", "supervisord"):
            ratios[f"RSS {cells[0]} children\nvs {cells[1]}"] = float(cells[4])
        elif len(cells) == 3 and cells[0].startswith("pm-supervisor (`serve`"):
            ratios["spawn\nvs fork()"] = float(cells[2])
    ratios.update(log_ratios(report))
    chart(ratios)
elif __name__ == "__main__":
    main()
