#!/usr/bin/env bash
# Tests of the Python SDK, from a clean clone: a virtualenv in child-sdk-python/.venv, the SDK
# installed as a user installs it (`pip install ./child-sdk-python`: PEP 517, pip fetches
# maturin and builds the wheel), the supervisor built with cargo, then pytest and stubtest.
# Idempotent; re-runs reuse the virtualenv, pip's cache and cargo's target/.
#
# Usage: child-sdk-python/run-tests.sh [pytest arguments]
# Environment: PYTHON (default python3) creates the virtualenv; PM_SUPERVISOR_BIN skips the
# cargo build and tests that supervisor binary; CARGO_TARGET_DIR is honoured.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$here/.venv"
py="$venv/bin/python"

if [ ! -x "$py" ] || ! "$py" -c '' 2>/dev/null; then
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi

# Test tools, and the real programs the tests run services with (pinned; a no-op once there).
"$py" -m pip install --quiet --disable-pip-version-check "pytest>=8,<10" "mypy>=1.10,<3" \
    -r "$here/tests/requirements.txt"

# Always reinstalled, so the tests see the current source (cargo rebuilds only what changed).
(cd "$root" && "$py" -m pip install --quiet --disable-pip-version-check ./child-sdk-python)

if [ -z "${PM_SUPERVISOR_BIN:-}" ]; then
    (cd "$root" && cargo build --quiet -p pm-supervisor)
    export PM_SUPERVISOR_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/pm-supervisor"
fi

cd "$here"
"$py" -m pytest -q -p no:cacheprovider tests "$@"
# The typed stub must describe the extension module exactly, and the package must type-check.
"$py" -m mypy.stubtest pm_child._pm_child
"$py" -m mypy --strict --no-incremental -p pm_child
