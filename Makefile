# pm: the README's two commands are `make demo` and `make test`.
CARGO ?= cargo
BIN := target/debug/pm-supervisor

.PHONY: all build demo sdk-python test test-rust test-node test-python dist test-dist test-old-glibc fuzz fuzz-check lint fmt clean bench bench-stop bench-logs bench-sdk bench-guards

all: build

build:
	$(CARGO) build --workspace --all-targets

# Builds the supervisor and the demo's Rust service, installs the Python SDK for the demo's
# Python service, then runs the demo until Ctrl-C.
demo: build sdk-python
	$(BIN) run examples/demo/services.json

# The Python SDK installed as a user installs it, in child-sdk-python/.venv.
sdk-python:
	test -x child-sdk-python/.venv/bin/python || python3 -m venv child-sdk-python/.venv
	child-sdk-python/.venv/bin/python -m pip install --quiet --disable-pip-version-check ./child-sdk-python

# What reviewers check first (formatting, clippy), then everything the tests need and every test
# suite of the workspace (and the fuzz targets must still compile), then the shipped artefacts.
# CI runs exactly this (.ci/run).
test: lint test-rust fuzz-check test-node test-python test-dist

# The live view's test drives `monit` in tmux: installed from Debian's packages when missing.
test-rust:
	command -v tmux > /dev/null || { apt-get update -qq && apt-get install -y -qq tmux > /dev/null; }
	$(CARGO) test --workspace --all-targets

# The Python SDK: a virtualenv, `pip install ./child-sdk-python` (maturin via PEP 517), pytest,
# stubtest and mypy --strict.
test-python:
	./child-sdk-python/run-tests.sh

# The Node SDK's tests drive the debug supervisor binary built above.
test-node:
	$(CARGO) build -p pm-supervisor
	cd child-sdk-node && npm ci --no-audit --no-fund && npm test

# Every artefact pm ships for this platform, into dist/: the pm-supervisor binary (glibc 2.17),
# the Python wheels (pm-child, pm-supervisor), the npm packages (pm-child,
# @pm-child/linux-x64-gnu) and the .crate files. Tools (maturin, Zig, auditwheel) are installed
# from PyPI into target/dist-tools/ on first use. See docs/shipping.md.
dist:
	./scripts/dist.sh

# The artefacts as users get them: fresh npm project without Rust, a packaged Electron layout,
# glibc floor and manylinux tags, wheels on Python 3.9 and 3.13, crates tested alone.
test-dist: dist
	./scripts/test-dist.sh

# Optional, not in `make test` (root, debootstrap, minutes the first time): the binary and the
# shipped pm_child run a Python service in a Debian 11 chroot (glibc 2.31, Python 3.9).
test-old-glibc: dist
	./scripts/test-old-glibc.sh

# Formatting and clippy's warnings, in the workspace and in the fuzz targets (a workspace of their
# own, which the workspace's commands do not reach). Part of `make test`.
lint:
	$(CARGO) fmt --all -- --check
	cd fuzz && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd fuzz && $(CARGO) clippy --bins -- -D warnings

fmt:
	$(CARGO) fmt --all
	cd fuzz && $(CARGO) fmt --all

clean:
	$(CARGO) clean

# Stop latency of 50 children, and cleanup after the supervisor is SIGKILLed.
bench-stop:
	$(CARGO) build --release -p pm-supervisor
	python3 bench/stop.py

# Time from `stop` to exit of a child using each SDK.
bench-sdk: sdk-python
	$(CARGO) build --release -p pm-supervisor -p pm-child --examples --bins
	python3 bench/sdk_stop.py

# Log throughput and integrity against a shell redirect, supervisord and PM2 (installed into
# bench/.tools on first use). BENCH_LINES and BENCH_RUNS scale it.
bench-logs:
	$(CARGO) build --release -p pm-supervisor
	python3 bench/logs.py

# Supervisor against PM2 and supervisord: stop latency, memory, idle CPU, spawn, orphans, logs.
# Writes docs/benchmarks.md and docs/benchmarks.png; then bench-guards.
bench:
	$(CARGO) build --release -p pm-supervisor
	cd child-sdk-node && npm ci --no-audit --no-fund
	python3 bench/compare.py
	python3 bench/guards.py

# Idle CPU and RSS of the supervisor with 50 heartbeating services, with watchdogMs and maxMemory
# set and without. Writes docs/benchmarks-guards.md.
bench-guards:
	$(CARGO) build --release -p pm-supervisor
	python3 bench/guards.py

# Fuzz the channel codec, the log line splitter, the config parser, the control request stream
# and the state file (cargo install cargo-fuzz; RUSTC_BOOTSTRAP lets its nightly flags run on the
# stable toolchain). FUZZ_SECONDS per target; one target alone: make fuzz FUZZ_TARGETS=state_file.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= line_codec log_lines config_parser control_requests state_file
fuzz:
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# The fuzz targets compile (without cargo-fuzz): part of `make test`.
fuzz-check:
	cd fuzz && $(CARGO) check --bins --quiet
