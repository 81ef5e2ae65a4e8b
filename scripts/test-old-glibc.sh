#!/usr/bin/env bash
# `make test-old-glibc` (optional, not part of make test: it needs root, debootstrap and a few
# minutes the first time): runs what make dist built on an older userland than this machine's.
# A Debian 11 (bullseye: glibc 2.31, Python 3.9) root is made with debootstrap in
# target/dist-tools/bullseye/ once; dist/bin/pm-supervisor and dist/python/pm_child are copied
# into it as the npm platform package lays them out (bin/ and python/), and `pm-supervisor run`
# starts a Python service there that imports the shipped pm_child, then is stopped with SIGTERM:
# the service's stop handler must run and the supervisor exit 0.
# (A binary linked against this machine's glibc 2.36 does not start there: "version `GLIBC_2.34'
# not found", and 2.32, 2.33.)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jail="$root/target/dist-tools/bullseye"

if [ "$(id -u)" != 0 ]; then
    echo "test-old-glibc: needs root (debootstrap, chroot, mounting /proc)" >&2
    exit 1
fi
if [ ! -x dist/bin/pm-supervisor ] || [ ! -f dist/python/pm_child/__init__.py ]; then
    echo "test-old-glibc: no dist/: run make dist first" >&2
    exit 1
fi
if [ ! -x "$jail/usr/bin/python3" ]; then
    command -v debootstrap > /dev/null || apt-get install -y -qq debootstrap > /dev/null
    rm -rf "$jail"
    debootstrap --variant=minbase --include=python3 bullseye "$jail" http://deb.debian.org/debian > "$jail.log" 2>&1 ||
        { tail -20 "$jail.log" >&2; exit 1; }
fi

app="$jail/opt/app"
rm -rf "$jail/opt/pm" "$app"
mkdir -p "$jail/opt/pm/bin" "$app"
cp dist/bin/pm-supervisor "$jail/opt/pm/bin/"
cp -r dist/python "$jail/opt/pm/python"
cat > "$app/worker.py" <<'EOF'
import sys, time
import pm_child

@pm_child.on_stopping
def stop():
    print("worker: stop handler ran", flush=True)

print(f"worker: pm_child from {pm_child.__file__} on Python {sys.version.split()[0]}", flush=True)
pm_child.ready()
while True:
    time.sleep(1)
EOF
echo '{"services": [{"name": "worker", "script": "worker.py", "killTimeout": 5000}]}' > "$app/services.json"

mounted=0
pid=""
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2> /dev/null || true
    [ "$mounted" = 1 ] && umount "$jail/proc" || true
}
trap cleanup EXIT
mount -t proc proc "$jail/proc"
mounted=1

echo "== in the chroot: $(chroot "$jail" /usr/bin/ldd --version | head -n 1)"
log="$jail/opt/app/out.log"
chroot "$jail" /usr/bin/env -i PATH=/usr/bin:/bin PM_RUNTIME_DIR=/tmp/pm \
    /opt/pm/bin/pm-supervisor run /opt/app/services.json > "$log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
    grep -q 'worker pm  | ready' "$log" && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
done
grep -q 'worker pm  | ready' "$log" || { cat "$log" >&2; echo "test-old-glibc: the service did not get ready" >&2; exit 1; }
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
cat "$log"
grep -q 'worker: pm_child from /opt/pm/python/pm_child/__init__.py on Python 3.9' "$log"
grep -q 'worker: stop handler ran' "$log"
grep -q 'worker pm  | stopped: exit code 0' "$log"
[ "$status" = 0 ] || { echo "test-old-glibc: the supervisor exited $status" >&2; exit 1; }
echo "test-old-glibc: ok"
