#!/usr/bin/env bash
# Junction against RabbitMQ's STOMP plugin on this machine, with one neutral load generator
# (`junction bench stomp`: STOMP 1.2 framed by Junction's own codec) for both, and writes the
# "## STOMP" section of docs/benchmarks.md (the other sections are kept).
#
#   scripts/bench-stomp.sh          # 3 scenarios x 2 brokers, 15 s each (BENCH_DURATION)
#
# Each run gets a freshly started broker on a fresh temp dir, on loopback; the brokers take turns
# scenario by scenario, so only one runs while it is measured. Installs Debian's rabbitmq-server
# when it is missing. Holds /tmp/junction-bench.lock while measuring, and before each run waits
# for other work (cargo, rustc, anything keeping the CPUs busy) to finish.
#
# Settings, the same for both brokers (each otherwise runs with its defaults): 1 KiB bodies sent
# to a durable `/queue/bench-<random>`; subscribers SUBSCRIBE with `ack:client-individual` and
# `prefetch-count:200` and ACK every message; with receipts every SEND asks for a RECEIPT and a
# publisher keeps at most 100 outstanding (STOMP's publisher confirm: both brokers send the
# RECEIPT of a persistent SEND once the message is safely stored).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

SIZE=1024
INFLIGHT=100
PREFETCH=200

# id|title|bench flags. The flags are exactly what both brokers get.
SCENARIOS=(
  "a|persistent, receipts, 1 -> 1|--publishers 1 --subscribers 1 --persistent --receipts"
  "b|transient, no receipts, 1 -> 1|--publishers 1 --subscribers 1"
  "c|persistent, receipts, 4 -> 4|--publishers 4 --subscribers 4 --persistent --receipts"
)
BROKERS=(junction rabbitmq)
# The issue's target, as id:broker:ratio: Junction delivers at least ratio x that broker's msg/s.
TARGETS=("a:rabbitmq:2" "b:rabbitmq:2" "c:rabbitmq:2")

# Starts a private RabbitMQ node under directory $1 with the STOMP plugin on port $2; sets RABBIT_PID.
start_rabbitmq_stomp() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  cat >"$dir/rabbitmq.conf" <<EOF
stomp.listeners.tcp.1 = 127.0.0.1:$port
EOF
  start_rabbitmq "$dir" "$(free_port)" rabbitmq_stomp
}

# Starts broker $1 (junction|rabbitmq) for run $2 on a fresh dir; sets PORT (STOMP) and PID.
start_broker() {
  local dir=$WORK/$2-$1
  PORT=$(free_port)
  case $1 in
    junction)
      "$JUNCTION" --data-dir "$dir" --stomp "127.0.0.1:$PORT" --amqp off --mqtt off --http off \
        >"$WORK/$2-junction.log" 2>&1 &
      PID=$!
      wait_port "$PORT" 30 "$PID" || { tail -20 "$WORK/$2-junction.log" >&2; return 1; }
      ;;
    rabbitmq)
      start_rabbitmq_stomp "$dir" "$PORT"
      PID=$RABBIT_PID
      wait_port "$PORT" 120 "$PID" || { tail -20 "$dir/stdout.log" >&2; return 1; }
      # The listener opens before the node has finished booting; a client that connects at once
      # may be dropped.
      sleep 5
      ;;
  esac
}

# Runs scenario flags $3 against broker $1 for run id $2: results/$2-$1.{json,log,proc}; .proc
# holds the broker's CPU seconds before and after the bench command, its peak RSS, and how many
# seconds the command took (connecting, publishing, draining).
run_one() {
  local broker=$1 id=$2 flags="$3 --size $SIZE --inflight $INFLIGHT --prefetch $PREFETCH" cpu_before started seconds
  wait_for_quiet_machine
  start_broker "$broker" "$id"
  cpu_before=$(cpu_seconds "$PID")
  started=$(date +%s.%N)
  echo "== $id on $broker (port $PORT): junction bench stomp $flags --duration $DURATION" >&2
  # shellcheck disable=SC2086  # the flags are words on purpose
  RUST_BACKTRACE=0 "$JUNCTION" bench stomp --port "$PORT" $flags --duration "$DURATION" --json \
    >"$RESULTS/$id-$broker.json" 2> >(tee "$RESULTS/$id-$broker.log" >&2) ||
    { [ "$broker" != rabbitmq ] || tail -30 "$WORK/$id-$broker/stdout.log" >&2; return 1; }
  seconds=$(awk -v from="$started" -v to="$(date +%s.%N)" 'BEGIN { printf "%.2f", to - from }')
  echo "$cpu_before $(cpu_seconds "$PID") $(peak_rss_mib "$PID") $seconds" >"$RESULTS/$id-$broker.proc"
  stop_pid "$PID"
  PID=""
}

# The "## STOMP" section, from the results.
write_section() {
  local section=$WORK/stomp.md
  {
    echo "## STOMP"
    echo
    echo "Measured by \`scripts/bench-stomp.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Junction and RabbitMQ's STOMP"
    echo "plugin run on the same machine, one at a time, each freshly started on a fresh temp dir, both"
    echo "loaded by the same generator (\`junction bench stomp\`: STOMP 1.2 framed by Junction's own codec,"
    echo "every client on its own connection) over loopback. Each run publishes for ${DURATION} s; bodies"
    echo "are $SIZE bytes, the first 8 carrying the send time."
    echo
    echo "### Machine"
    echo
    machine_markdown
    echo
    echo "### Versions and settings"
    echo
    echo "- Junction: $("$JUNCTION" --version | awk '{print $2}'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes'), release build, $(rustc --version | awk '{print $1, $2}'); default settings"
    echo "- RabbitMQ: $(dpkg-query -W -f '${Version}' rabbitmq-server) (Debian package) with rabbitmq_stomp, Erlang $(dpkg-query -W -f '${Version}' erlang-base): \`stomp.listeners.tcp.1\` only, otherwise defaults (classic queues)"
    echo "- destination: a fresh \`/queue/bench-<random>\` per run (a durable queue on both brokers); subscribers use \`ack:client-individual\`, \`prefetch-count:$PREFETCH\` and ACK every message; with receipts at most $INFLIGHT SENDs per publisher await their RECEIPT"
    echo
    BENCH_RESULTS=$RESULTS BENCH_DURATION=$DURATION BENCH_SIZE=$SIZE BENCH_INFLIGHT=$INFLIGHT \
      BENCH_PREFETCH=$PREFETCH BENCH_TARGETS="${TARGETS[*]}" python3 scripts/bench-stomp-report.py "${SCENARIOS[@]}"
  } >"$section"
  replace_section docs/benchmarks.md "## STOMP" "$section"
}

main() {
  DURATION=${BENCH_DURATION:-15}
  prebuilt_or_build_junction
  ensure_packages rabbitmq-server
  # Debian's packages start brokers of their own where systemd runs; ours are private.
  begin_bench_run junction-bench-stomp
  hold_bench_lock
  check_idle
  run_scenarios
  write_section
  echo "wrote the STOMP section of docs/benchmarks.md" >&2
  sed -n '/^## STOMP/,/^### Commands/p' docs/benchmarks.md | sed -n '/^### Results/,$p' >&2
}

main "$@"
