#!/usr/bin/env bash
# Every measurement in docs/benchmarks.md, one after another, with one command:
#
#   scripts/benchmarks.sh                      # all of them (over an hour: the soak alone is 30 min)
#   scripts/benchmarks.sh mqtt idle            # some: amqp mqtt stomp recovery idle backlog soak
#
# Builds the release binary once and copies it aside, so that every measurement runs the same
# binary even if the working tree changes meanwhile (JUNCTION_BIN, when set, is used instead).
# Each script installs its peer brokers (RabbitMQ with its MQTT and STOMP plugins, Mosquitto)
# from Debian's packages when missing and rewrites its own section of docs/benchmarks.md; their
# settings (environment) are described at the top of each. Stops at the first that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

declare -A SCRIPT=(
  [amqp]=bench-amqp.sh [mqtt]=bench-mqtt.sh [stomp]=bench-stomp.sh [recovery]=recovery-time.sh
  [idle]=idle-connections.sh [backlog]=backlog.sh [soak]=soak.sh
)
ORDER=(amqp mqtt stomp recovery idle backlog soak)

chosen=("$@")
[ ${#chosen[@]} -gt 0 ] || chosen=("${ORDER[@]}")
for name in "${chosen[@]}"; do
  [ -n "${SCRIPT[$name]:-}" ] || { echo "unknown measurement '$name' (one of: ${ORDER[*]})" >&2; exit 2; }
done

if [ -z "${JUNCTION_BIN:-}" ]; then
  build_junction
  binary_dir=$(mktemp -d)
  trap 'rm -rf "$binary_dir"' EXIT
  cp "$JUNCTION" "$binary_dir/junction"
  export JUNCTION_BIN=$binary_dir/junction
fi

for name in "${chosen[@]}"; do
  echo "=== $name: scripts/${SCRIPT[$name]} (binary $JUNCTION_BIN)" >&2
  started=$SECONDS
  bash "scripts/${SCRIPT[$name]}"
  echo "=== $name done in $((SECONDS - started)) s" >&2
done
