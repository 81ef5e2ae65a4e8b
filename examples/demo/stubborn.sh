#!/bin/sh
# Ignores SIGTERM: shows the SIGKILL at killTimeout.
trap 'echo "stubborn: SIGTERM ignored"' TERM
echo "stubborn: running (pid $$)"
while :; do sleep 3; echo "stubborn: still here"; done
