#!/usr/bin/env bash
# Builds (release) and starts the broker. Arguments go to junction, e.g.
#   scripts/run.sh --data-dir /var/lib/junction --amqp 0.0.0.0:5672
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
cargo build --release --locked --bin junction
exec "$CARGO_TARGET_DIR/release/junction" "$@"
