#!/usr/bin/env bash
# `make test-dist`: tests of what `make dist` built, from the files a user downloads.
#   tests/dist/test_artifacts.py   glibc 2.17 floor of the binary and the extension, manylinux2014
#                                  (auditwheel), one binary everywhere, licenses, READMEs, metadata
#   tests/dist/test_wheels.py      both wheels in fresh virtualenvs on Python 3.9 and 3.13, the
#                                  Python SDK's test suite against them
#   tests/dist/test_crates.py      the .crate files unpacked alone: cargo test
#   tests/dist/npm-install.test.js a fresh npm project with the two tarballs, no Rust on PATH: a
#                                  Node and a Python service through require('pm-child/supervisor')
#   tests/dist/electron-packaged.test.js  the same app packed into app.asar, run with Electron
#                                  faked: the binary and pm_child from app.asar.unpacked
#   tests/dist/electron-example.test.js   examples/electron-app packed with its asarUnpack
#                                  config, its main.js run with Electron faked, then quit
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
started=$SECONDS

if [ ! -f dist/SHA256SUMS ] || [ ! -x target/dist-tools/venv/bin/python ]; then
    echo "test-dist: no dist/: run make dist first" >&2
    exit 1
fi
# @electron/asar, from the Node SDK's devDependencies.
if [ ! -d child-sdk-node/node_modules/@electron/asar ]; then
    (cd child-sdk-node && npm ci --no-audit --no-fund)
fi

target/dist-tools/venv/bin/python -m pytest -q -p no:cacheprovider tests/dist
node --test tests/dist/npm-install.test.js tests/dist/electron-packaged.test.js tests/dist/electron-example.test.js
echo "test-dist: $((SECONDS - started)) s"
