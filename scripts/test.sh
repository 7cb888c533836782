#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, then the Python suites (pika, kombu) against
# the junction binary. Installs what it needs on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
ensure_packages mosquitto-clients   # mosquitto_pub / mosquitto_sub, real MQTT clients for the tests
ensure_packages chromium            # the demo page's browser test (driven by playwright-core)
ensure_packages openssl             # the TLS tests make their certificates with it
ensure_python_clients
ensure_node_clients

cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=2

export JUNCTION_BIN="$CARGO_TARGET_DIR/debug/junction"
.venv/bin/python -m pytest integration-tests/python -q -p no:cacheprovider "$@"
