"""Finding a benchmark run's processes by a mark in their environment, ending them by pid, and
reading what one process uses.

Every process a run starts inherits `PM_BENCH_RUN=<its temp folder>` (or the tests' marker), so
whatever a tool leaves behind is found and killed, whatever its name or parent.
"""
import os
import select
import signal
import time


def marked(mark):
    """Live (not zombie) processes whose environment holds `mark` (bytes): {pid: command line}."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
            with open(f"/proc/{p}/cmdline", "rb") as f:
                out[int(p)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            pass
    return out


def kill_marked(mark):
    """SIGKILLs every process carrying `mark`, a few rounds (a dying one may have forked)."""
    for _ in range(10):
        pids = marked(mark)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def wait_for(pred, timeout=120.0, step=0.002):
    """Polls `pred` until it returns something true; raises TimeoutError after `timeout` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError


def wait_exited(pids, timeout=120.0):
    """Returns once every process in `pids` has exited (a zombie has), else raises TimeoutError.

    One pidfd per process waited on with poll(2): no polling loop, so measuring a stop takes no
    CPU from the processes being stopped (a /proc scan every few ms would, on 2 cores).
    """
    fds = {}
    try:
        for pid in pids:
            try:
                fds[os.pidfd_open(pid)] = pid
            except ProcessLookupError:
                pass
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        end = time.monotonic() + timeout
        while fds:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"still running: {sorted(fds.values())}")
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                os.close(fd)
                del fds[fd]
    finally:
        for fd in fds:
            os.close(fd)


TICK = os.sysconf("SC_CLK_TCK")


def usage(pid):
    """(CPU seconds, RSS bytes) of one process (threads included, children not)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
    return (int(fields[11]) + int(fields[12])) / TICK, rss
