#!/usr/bin/env bash
# A long backlog: persistent messages published into one durable queue with no consumer, the
# broker killed with -9 and restarted on that backlog, then the queue drained. Do the publish and
# drain rates stay flat as the backlog grows and shrinks, and the broker's memory bounded?
#
#   scripts/backlog.sh                                        # 10,000,000 messages in 10 chunks
#   BACKLOG_MESSAGES=200000 BACKLOG_CHUNKS=4 scripts/backlog.sh   # a quick try
#
# Publishes in BACKLOG_CHUNKS runs of `junction bench amqp --consumers 0 --count N` (4
# publishers, confirms), each checked to have every message confirmed; after each chunk records
# the chunk's confirmed msg/s, the broker's VmRSS and the size of its data dir. Then kill -9 and a
# restart on the same data dir: the store's own recovery time (its log line `store recovered ...
# messages=N millis=M`), the time until the AMQP port accepts, and the RSS right after. Then drains
# the queue in as many runs of `junction bench amqp --publishers 0 --count N` (one consumer), with
# the same figures per chunk. Writes the "## Backlog" section of docs/benchmarks.md
# (scripts/backlog-report.py makes its tables and summary).
#
# Settings (environment):
#   BACKLOG_MESSAGES       messages in the backlog (default 10000000)
#   BACKLOG_CHUNKS         publish runs, and drain runs (default 10)
#   BACKLOG_SIZE           body size in bytes (default 100)
#   BACKLOG_STALL_SECONDS  a chunk during which nothing moves for this long fails the run (default 120)
#   JUNCTION_BIN           an existing junction binary to run instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-amqp.sh

TOTAL=${BACKLOG_MESSAGES:-10000000}
CHUNKS=${BACKLOG_CHUNKS:-10}
SIZE=${BACKLOG_SIZE:-100}
# With --duration 0 a drain run waits for its --count forever: if messages went missing, the
# run should fail rather than hang. A chunk may take long; one where nothing moves has stalled.
STALL_SECONDS=${BACKLOG_STALL_SECONDS:-120}
PER_CHUNK=$((TOTAL / CHUNKS))
QUEUE=backlog
# --count is added per chunk. --persistent also makes the bench tool declare the queue durable,
# the same declaration in both phases.
PUBLISH_FLAGS="--publishers 4 --consumers 0 --size $SIZE --persistent --confirm --queue $QUEUE --duration 0"
DRAIN_FLAGS="--publishers 0 --consumers 1 --size $SIZE --persistent --queue $QUEUE --duration 0 --prefetch 500 --multi-ack 50"

cleanup() {
  stop_pid "${BENCH_PID:-}"
  stop_pid "${JUNCTION_PID:-}"
  release_bench_lock
  rm -rf "$WORK"
}

# Resident memory of the broker now (VmRSS), in MiB.
rss_mib() {
  awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$JUNCTION_PID/status"
}

# Size of the data dir in MiB. RocksDB may delete a file while du walks the dir (du then still
# prints the total but exits 1), so du's status is ignored.
data_mib() {
  { du -sm "$WORK/data" 2>/dev/null || true; } | cut -f1
}

# Field $2 of the bench JSON summary in file $1, e.g. totals.confirmed or confirmed_per_s.
json_field() {
  python3 -c '
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[key]
print(value)' "$1" "$2"
}

# Runs `junction bench amqp` with flags $1 (words) and --count $2, JSON summary to file $3; its
# progress lines go to stderr and to $3.log. Fails when the run fails, or stops it and fails when
# its last STALL_SECONDS progress lines (one a second) show nothing published, confirmed or consumed.
bench_chunk() {
  local flags=$1 count=$2 json=$3
  echo "== junction bench amqp $flags --count $count" >&2
  # shellcheck disable=SC2086  # the flags are words on purpose
  "$JUNCTION" bench amqp --url "$URL" $flags --count "$count" --json >"$json" 2> >(tee "$json.log" >&2) &
  BENCH_PID=$!
  while kill -0 "$BENCH_PID" 2>/dev/null; do
    sleep 1
    if stalled "$json.log"; then
      stop_pid "$BENCH_PID"
      echo "nothing moved for $STALL_SECONDS s: stopped the run (--count $count)" >&2
      return 1
    fi
  done
  wait "$BENCH_PID" || { echo "bench run failed (exit $?)" >&2; return 1; }
  BENCH_PID=""
}

# True when the last STALL_SECONDS progress lines of log $1 all read 0/s.
stalled() {
  awk -v n="$STALL_SECONDS" '/^\[ *[0-9]+s\] published/ { zero = / published +0\/s +confirmed +0\/s +consumed +0\/s$/ ? zero + 1 : 0 }
    END { exit !(zero >= n) }' "$1"
}

# Appends the row of chunk $2 of phase $1 (publish|drain) to $1.tsv: chunk, backlog $3, the rate
# field $5 of its JSON summary $4, its seconds, the broker's RSS MiB and data dir MiB now.
record_chunk() {
  local phase=$1 chunk=$2 backlog=$3 json=$4 rate rss data
  rate=$(json_field "$json" "$5")
  rss=$(rss_mib)
  data=$(data_mib)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$chunk" "$backlog" "$rate" "$(json_field "$json" seconds)" "$rss" "$data" \
    >>"$WORK/$phase.tsv"
  printf '%s chunk %s: backlog %s, %.0f msg/s, RSS %s MiB, data dir %s MiB\n' "$phase" "$chunk" "$backlog" "$rate" \
    "$rss" "$data" >&2
}

# Publishes the backlog chunk by chunk; one row per chunk in publish.tsv (backlog: after it,
# rate: confirmed msg/s).
publish_phase() {
  local chunk count confirmed backlog=0 json
  for chunk in $(seq "$CHUNKS"); do
    # The last chunk takes the remainder of an uneven division.
    count=$PER_CHUNK
    [ "$chunk" -lt "$CHUNKS" ] || count=$((TOTAL - backlog))
    json=$WORK/publish-$chunk.json
    bench_chunk "$PUBLISH_FLAGS" "$count" "$json" || exit 1
    confirmed=$(json_field "$json" totals.confirmed)
    [ "$confirmed" -eq "$count" ] || { echo "chunk $chunk: $confirmed of $count messages confirmed" >&2; exit 1; }
    backlog=$((backlog + count))
    record_chunk publish "$chunk" "$backlog" "$json" confirmed_per_s
  done
}

# kill -9 with the full backlog, restart on the same data dir; one row in recovery.tsv:
# messages recovered, store recovery ms, port accepting ms, RSS MiB, data dir MiB. Sets RECOVERED.
kill_and_restart() {
  kill9_and_restart_junction "$WORK/data" "$PORT" "$WORK/restart.log" 3600
  RECOVERED=$RESTART_MESSAGES
  echo "restart: store recovered $RECOVERED messages in $RESTART_MILLIS ms; AMQP port accepting after $RESTART_ACCEPTING_MS ms" >&2
  [ "$RECOVERED" -ge "$TOTAL" ] || { echo "recovered $RECOVERED messages, expected $TOTAL" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\t%s\n' "$RECOVERED" "$RESTART_MILLIS" "$RESTART_ACCEPTING_MS" "$(rss_mib)" "$(data_mib)" >"$WORK/recovery.tsv"
}

# Drains the backlog in CHUNKS runs; one row per chunk in drain.tsv (backlog: what is left,
# rate: consumed msg/s).
drain_phase() {
  local chunk count consumed drained=0 json
  for chunk in $(seq "$CHUNKS"); do
    # A run checks its --count every 100 ms and acks all it received by then, so it may take
    # thousands more than asked: what is left is counted from what was consumed.
    count=$((TOTAL - drained))
    [ "$chunk" -eq "$CHUNKS" ] || [ "$count" -le "$PER_CHUNK" ] || count=$PER_CHUNK
    [ "$count" -gt 0 ] || break
    json=$WORK/drain-$chunk.json
    bench_chunk "$DRAIN_FLAGS" "$count" "$json" ||
      { echo "drain chunk $chunk: fewer than the $count messages still expected in the queue came" >&2; exit 1; }
    consumed=$(json_field "$json" totals.consumed)
    [ "$consumed" -ge "$count" ] || { echo "chunk $chunk: consumed $consumed of $count messages" >&2; exit 1; }
    drained=$((drained + consumed))
    record_chunk drain "$chunk" "$((RECOVERED - drained))" "$json" consumed_per_s
  done
}

write_section() {
  local section=$WORK/section.md
  {
    echo "## Backlog"
    echo
    echo "Measured by \`scripts/backlog.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') on the machine above (load average"
    echo "$LOAD_AT_START when it started): $(thousands "$TOTAL") persistent $SIZE-byte messages published with confirms"
    echo "(4 publishers) into one durable queue with no consumer, in $CHUNKS chunks; then \`kill -9\` and a"
    echo "restart on the same data dir; then the queue drained by one consumer (prefetch 500, one multiple ack"
    echo "per 50 deliveries) in $CHUNKS chunks. After each chunk the broker's resident memory (VmRSS) and the"
    echo "size of its data dir (\`du -sm\`) are read; *peak* is the process's VmHWM at the end of the phase."
    echo "*Store recovery* is the broker's own figure from its log line \`store recovered ... messages=N"
    echo "millis=M\`; *port accepting* is the time from starting the process until the AMQP port accepts a"
    echo "TCP connection. A drain run stops within 100 ms of reaching its count and acks what it received,"
    echo "so its chunk can be larger than asked."
    echo
    echo "Binary: Junction $(junction_binary_description)."
    echo
    python3 scripts/backlog-report.py "$WORK" "$PUBLISH_HWM" "$DRAIN_HWM"
    echo
    echo '```sh'
    echo "junction --data-dir \$DIR --amqp 127.0.0.1:\$PORT --mqtt off --stomp off --http off &"
    echo "junction bench amqp --url \$URL $PUBLISH_FLAGS --count $PER_CHUNK --json   # x $CHUNKS"
    echo "kill -KILL \$PID; junction --data-dir \$DIR ...   # timed until the port accepts"
    echo "junction bench amqp --url \$URL $DRAIN_FLAGS --count $PER_CHUNK --json   # x $CHUNKS"
    echo '```'
  } >"$section"
  replace_section docs/benchmarks.md "## Backlog" "$section"
}

main_backlog() {
  [ "$PER_CHUNK" -gt 0 ] || { echo "BACKLOG_MESSAGES ($TOTAL) must be at least BACKLOG_CHUNKS ($CHUNKS)" >&2; exit 1; }
  prebuilt_or_build_junction
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/junction-backlog.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  # Tell other work on this machine (builds) that a measurement runs, and note how busy it was.
  hold_bench_lock
  check_idle
  PORT=$(free_port)
  URL="amqp://guest:guest@127.0.0.1:$PORT/%2f"
  start_junction "$WORK/data" "$PORT" "$WORK/first.log"
  wait_port "$PORT" 30 "$JUNCTION_PID"
  publish_phase
  PUBLISH_HWM=$(peak_rss_mib "$JUNCTION_PID")
  kill_and_restart
  drain_phase
  DRAIN_HWM=$(peak_rss_mib "$JUNCTION_PID")
  write_section
  echo "wrote the Backlog section of docs/benchmarks.md" >&2
  sed -n '/^## Backlog/,/^```sh/p' docs/benchmarks.md >&2
}

main_backlog "$@"
