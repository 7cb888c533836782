#!/usr/bin/env bash
# Junction against Mosquitto and RabbitMQ's MQTT plugin on this machine, with one neutral load
# generator (`junction bench mqtt`, rumqttc underneath, MQTT 3.1.1) for all three, and writes the
# "## MQTT" section of docs/benchmarks.md (the other sections are kept).
#
#   scripts/bench-mqtt.sh          # 5 scenarios x 3 brokers (the last on 2), 15 s each (BENCH_DURATION)
#
# Each run gets a freshly started broker on a fresh temp dir, on loopback; the brokers take turns
# scenario by scenario, so only one runs while it is measured. Installs Debian's mosquitto and
# rabbitmq-server when they are missing. Holds /tmp/junction-bench.lock while measuring, and before
# each run waits for other work (cargo, rustc, anything keeping the CPUs busy) to finish.
#
# Settings, equal where the brokers have the same knob (Junction runs with its defaults):
#   - QoS 1 messages in flight towards one subscriber: 64 (Junction's max_inflight; Mosquitto's
#     max_inflight_messages, default 20; RabbitMQ's mqtt.prefetch, default 10);
#   - messages queued for one slow subscriber before the broker drops QoS 0 ones: 1,000,000
#     (Junction's max_queued_messages; Mosquitto's max_queued_messages, default 1000; RabbitMQ
#     never drops, it queues and slows publishers down with TCP back-pressure);
#   - TCP_NODELAY on every socket (Junction and RabbitMQ set it; Mosquitto: set_tcp_nodelay);
#   - nothing on disk: clean sessions only, so Junction and RabbitMQ keep subscriptions in
#     non-durable queues, and Mosquitto runs with persistence off;
#   - MQTT -> AMQP (Junction and RabbitMQ only: Mosquitto has no AMQP): both put MQTT topics on
#     the amq.topic exchange, `/` becoming `.` in the routing key; the generator's AMQP consumers
#     read a non-durable queue bound there with the publishers' topic.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SIZE=64
INFLIGHT=64
QUEUED=1000000

# id|title|bench flags[|brokers]. The flags are exactly what every broker gets; a 4th field names
# the only brokers that run the scenario (see scenario_brokers in bench-lib.sh).
SCENARIOS=(
  "a|QoS 0 fan-in 100 -> 1|--publishers 100 --subscribers 1 --qos 0"
  "b|QoS 0 fan-in 100 -> 1 at 10,000 msg/s|--publishers 100 --subscribers 1 --qos 0 --rate 10000"
  "c|QoS 1 1 -> 1|--publishers 1 --subscribers 1 --qos 1"
  "d|QoS 0 fan-out 1 -> 1000 at 100 msg/s|--publishers 1 --subscribers 1000 --qos 0 --rate 100"
  "e|MQTT QoS 1 -> AMQP, 1 -> 1|--publishers 1 --subscribers 0 --amqp-consumers 1 --qos 1|junction rabbitmq"
)
BROKERS=(junction mosquitto rabbitmq)
# The issue's targets, as id:broker:ratio: Junction delivers at least ratio x that broker's msg/s.
TARGETS=("a:mosquitto:1" "c:mosquitto:1" "c:rabbitmq:2" "e:rabbitmq:2")

# Starts Mosquitto with its own configuration in directory $1 on port $2; sets MOSQUITTO_PID.
start_mosquitto() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  cat >"$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
max_inflight_messages $INFLIGHT
max_queued_messages $QUEUED
log_dest stderr
log_type error
log_type warning
EOF
  mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
  MOSQUITTO_PID=$!
}

# Starts a private RabbitMQ node under directory $1 with the MQTT plugin on port $2 and AMQP on
# port $3; sets RABBIT_PID.
start_rabbitmq_mqtt() {
  local dir=$1 port=$2 amqp_port=$3
  mkdir -p "$dir"
  cat >"$dir/rabbitmq.conf" <<EOF
mqtt.listeners.tcp.default = 127.0.0.1:$port
mqtt.allow_anonymous = true
mqtt.prefetch = $INFLIGHT
EOF
  start_rabbitmq "$dir" "$amqp_port" rabbitmq_mqtt
}

# Starts broker $1 (junction|mosquitto|rabbitmq) for run $2 on a fresh dir; sets PORT (MQTT),
# AMQP_PORT (where the generator's AMQP consumers connect; empty for Mosquitto, which has no AMQP)
# and PID.
start_broker() {
  local dir=$WORK/$2-$1
  PORT=$(free_port)
  AMQP_PORT=$(free_port)
  case $1 in
    junction)
      start_junction_with "$dir" "$WORK/$2-junction.log" --mqtt "127.0.0.1:$PORT" --amqp "127.0.0.1:$AMQP_PORT"
      PID=$JUNCTION_PID
      wait_port "$PORT" 30 "$PID"
      ;;
    mosquitto)
      AMQP_PORT=""
      start_mosquitto "$dir" "$PORT"
      PID=$MOSQUITTO_PID
      wait_port "$PORT" 30 "$PID" || { tail -20 "$dir/mosquitto.log" >&2; return 1; }
      ;;
    rabbitmq)
      start_rabbitmq_mqtt "$dir" "$PORT" "$AMQP_PORT"
      PID=$RABBIT_PID
      wait_port "$PORT" 120 "$PID" || { tail -20 "$dir/stdout.log" >&2; return 1; }
      ;;
  esac
  # Both listeners open at start-up, but not necessarily together.
  [ -z "$AMQP_PORT" ] || wait_port "$AMQP_PORT" 30 "$PID"
}

# Runs scenario flags $3 against broker $1 for run id $2: results/$2-$1.{json,log,proc}; .proc
# holds the broker's CPU seconds before and after the bench command, its peak RSS, and how many
# seconds the command took (connecting, publishing, draining). Where the broker has AMQP the
# command gets its URL (used by --amqp-consumers only).
run_one() {
  local broker=$1 id=$2 flags="$3 --size $SIZE --inflight $INFLIGHT" cpu_before started seconds amqp_url=()
  wait_for_quiet_machine
  start_broker "$broker" "$id"
  [ -z "$AMQP_PORT" ] || amqp_url=(--amqp-url "amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f")
  cpu_before=$(cpu_seconds "$PID")
  started=$(date +%s.%N)
  echo "== $id on $broker (port $PORT): junction bench mqtt ${amqp_url[*]:+${amqp_url[*]} }$flags --duration $DURATION" >&2
  # shellcheck disable=SC2086  # the flags are words on purpose
  "$JUNCTION" bench mqtt --port "$PORT" "${amqp_url[@]}" $flags --duration "$DURATION" --json \
    >"$RESULTS/$id-$broker.json" 2> >(tee "$RESULTS/$id-$broker.log" >&2)
  seconds=$(awk -v from="$started" -v to="$(date +%s.%N)" 'BEGIN { printf "%.2f", to - from }')
  echo "$cpu_before $(cpu_seconds "$PID") $(peak_rss_mib "$PID") $seconds" >"$RESULTS/$id-$broker.proc"
  stop_pid "$PID"
  PID=""
}

# The "## MQTT" section, from the results.
write_section() {
  local section=$WORK/mqtt.md
  {
    echo "## MQTT"
    echo
    echo "Measured by \`scripts/bench-mqtt.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Junction, Mosquitto and RabbitMQ's"
    echo "MQTT plugin run on the same machine, one at a time, each freshly started on a fresh temp dir,"
    echo "all loaded by the same generator (\`junction bench mqtt\`: rumqttc, MQTT 3.1.1, clean sessions,"
    echo "every client on its own connection) over loopback. Each run publishes for ${DURATION} s;"
    echo "payloads are $SIZE bytes, the first 8 carrying the send time."
    echo
    echo "### Machine"
    echo
    machine_markdown
    echo
    echo "### Versions and settings"
    echo
    echo "- Junction: $("$JUNCTION" --version | awk '{print $2}'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes'), release build, $(rustc --version | awk '{print $1, $2}'); default settings (\`max_inflight\` $INFLIGHT, \`max_queued_messages\` $QUEUED)"
    echo "- Mosquitto: $(dpkg-query -W -f '${Version}' mosquitto) (Debian package): \`persistence false\`, \`max_inflight_messages $INFLIGHT\` (default 20), \`max_queued_messages $QUEUED\` (default 1000), \`set_tcp_nodelay true\`"
    echo "- RabbitMQ: $(dpkg-query -W -f '${Version}' rabbitmq-server) (Debian package) with rabbitmq_mqtt, Erlang $(dpkg-query -W -f '${Version}' erlang-base): \`mqtt.prefetch = $INFLIGHT\` (default 10), otherwise defaults"
    echo "- load generator: rumqttc $(awk '/^name = "rumqttc"/ { getline; print $3 }' Cargo.lock | tr -d '"'), at most $INFLIGHT unacknowledged QoS 1 publishes per publisher; AMQP consumers: lapin $(awk '/^name = "lapin"/ { getline; print $3 }' Cargo.lock | tr -d '"')"
    echo
    BENCH_RESULTS=$RESULTS BENCH_DURATION=$DURATION BENCH_SIZE=$SIZE BENCH_INFLIGHT=$INFLIGHT \
      BENCH_QUEUED=$QUEUED BENCH_TARGETS="${TARGETS[*]}" python3 scripts/bench-mqtt-report.py "${SCENARIOS[@]}"
  } >"$section"
  replace_section docs/benchmarks.md "## MQTT" "$section"
}

main() {
  DURATION=${BENCH_DURATION:-15}
  prebuilt_or_build_junction
  ensure_packages mosquitto rabbitmq-server
  # 1000 subscribers need 1000 sockets in the generator and as many in the broker.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  # Debian's packages start brokers of their own where systemd runs; ours are private.
  begin_bench_run junction-bench-mqtt
  hold_bench_lock
  check_idle
  run_scenarios
  write_section
  echo "wrote the MQTT section of docs/benchmarks.md" >&2
  sed -n '/^### Results/,/^### Commands/p' docs/benchmarks.md >&2
}

main "$@"
