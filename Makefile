# pm: the README's two commands are `make demo` and `make test`.
CARGO ?= cargo
BIN := target/debug/pm-supervisor

.PHONY: all build demo test test-rust test-node lint fmt clean bench-stop bench-logs

all: build

build:
	$(CARGO) build --workspace --all-targets

# Builds the supervisor and the demo's Rust service, then runs the demo until Ctrl-C.
demo: build
	$(BIN) run examples/demo/services.json

# Everything the tests need, then every test suite of the workspace.
test: test-rust test-node

test-rust:
	$(CARGO) test --workspace --all-targets

# The Node SDK's tests drive the debug supervisor binary built above.
test-node:
	$(CARGO) build -p pm-supervisor
	cd child-sdk-node && npm ci --no-audit --no-fund && npm test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# Stop latency of 50 children, and cleanup after the supervisor is SIGKILLed.
bench-stop:
	$(CARGO) build --release -p pm-supervisor
	python3 bench/stop.py

# Log throughput and integrity against a shell redirect, supervisord and PM2 (installed into
# bench/.tools on first use). BENCH_LINES and BENCH_RUNS scale it.
bench-logs:
	$(CARGO) build --release -p pm-supervisor
	python3 bench/logs.py
