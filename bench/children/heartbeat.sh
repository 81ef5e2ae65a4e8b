#!/usr/bin/env bash
# An idle service that says hello and then a heartbeat every third of a second on its pm
# channel (fd 3), with bash builtins only: the wait is a `read` on the channel with a timeout,
# so the child costs no process spawns. Stops by SIGTERM (it never answers `stop`).
printf '{"cmd":"NODE_PM","type":"hello","protocol":2,"sdk":"bench","version":"0"}\n' >&3
[ -n "$BENCH_READY_FILE" ] && echo $$ >>"$BENCH_READY_FILE"
while :; do
  printf '{"cmd":"NODE_PM","type":"heartbeat"}\n' >&3 || exit 0
  read -r -t 0.333 -u 3 _
done
