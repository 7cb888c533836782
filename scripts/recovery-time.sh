#!/usr/bin/env bash
# How long Junction takes to come back after kill -9 with a full queue.
#
#   scripts/recovery-time.sh        # RECOVERY_MESSAGES=1000000, RECOVERY_RESTARTS=3
#
# Publishes RECOVERY_MESSAGES persistent 100-byte messages with publisher confirms into one
# durable queue (`junction bench amqp --consumers 0 --count N`), SIGKILLs the broker, restarts it
# on the same data dir and reports, for each of RECOVERY_RESTARTS kill -9 / restart cycles:
#   - the store's own recovery time, from its log line `store recovered ... messages=N millis=M`;
#   - the time from starting the process until the AMQP port accepts connections.
# Writes the "## Recovery" section of docs/benchmarks.md (creating the file if need be).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-amqp.sh

COUNT=${RECOVERY_MESSAGES:-1000000}
RESTARTS=${RECOVERY_RESTARTS:-3}
PUBLISH_FLAGS="--publishers 4 --consumers 0 --size 100 --persistent --confirm --queue recovery --count $COUNT --duration 0"

cleanup() {
  stop_pid "${JUNCTION_PID:-}"
  rm -rf "$WORK"
}

# Fills the queue and checks that every message was confirmed.
publish() {
  local url=$1 confirmed
  echo "== publishing $COUNT persistent messages: junction bench amqp $PUBLISH_FLAGS" >&2
  # shellcheck disable=SC2086  # the flags are words on purpose
  "$JUNCTION" bench amqp --url "$url" $PUBLISH_FLAGS --json >"$WORK/publish.json"
  confirmed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["confirmed"])' "$WORK/publish.json")
  [ "$confirmed" -eq "$COUNT" ] || { echo "only $confirmed of $COUNT messages confirmed" >&2; exit 1; }
}

# Kills the running broker with SIGKILL, restarts it, and appends one table row to $ROWS.
kill_and_restart() {
  local n=$1
  kill9_and_restart_junction "$WORK/data" "$PORT" "$WORK/restart-$n.log" 600
  echo "restart $n: store recovered $RESTART_MESSAGES messages in $RESTART_MILLIS ms; AMQP port accepting after $RESTART_ACCEPTING_MS ms" >&2
  [ "$RESTART_MESSAGES" -ge "$COUNT" ] || { echo "recovered $RESTART_MESSAGES messages, expected $COUNT" >&2; exit 1; }
  printf '| %s | %s | %s ms | %s ms |\n' "$n" "$(thousands "$RESTART_MESSAGES")" "$RESTART_MILLIS" "$RESTART_ACCEPTING_MS" >>"$ROWS"
}

write_section() {
  local section=$WORK/section.md rate size
  rate=$(python3 -c 'import json,sys; print("{:,.0f}".format(json.load(open(sys.argv[1]))["confirmed_per_s"]))' "$WORK/publish.json")
  size=$(du -sh "$WORK/data" | cut -f1)
  {
    echo "## Recovery"
    echo
    echo "Measured by \`scripts/recovery-time.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') on the machine above:"
    echo "$(thousands "$COUNT") persistent 100-byte messages published with confirms into one durable queue"
    echo "(4 publishers, $rate msg/s confirmed), then \`kill -9\` and a restart on the same data dir,"
    echo "$RESTARTS times (data dir: $SIZE_AT_KILL at the first kill, $size after the last restart)."
    echo "*Store recovery* is the broker's own figure from its log line"
    echo "\`store recovered ... messages=N millis=M\`; *port accepting* is the time from starting the process"
    echo "until the AMQP port accepts a TCP connection."
    echo
    echo "| restart | messages recovered | store recovery | port accepting |"
    echo "|---:|---:|---:|---:|"
    cat "$ROWS"
    echo
    echo '```sh'
    echo "junction --data-dir \$DIR --amqp 127.0.0.1:\$PORT --mqtt off --stomp off --http off &"
    echo "junction bench amqp --url \$URL $PUBLISH_FLAGS --json"
    echo "kill -KILL \$PID; junction --data-dir \$DIR ...   # timed until the port accepts"
    echo '```'
  } >"$section"
  replace_section docs/benchmarks.md "## Recovery" "$section"
}

main_recovery() {
  prebuilt_or_build_junction
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/junction-recovery.XXXXXX")
  ROWS=$WORK/rows.md
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  PORT=$(free_port)
  start_junction "$WORK/data" "$PORT" "$WORK/first.log"
  wait_port "$PORT" 30 "$JUNCTION_PID"
  publish "amqp://guest:guest@127.0.0.1:$PORT/%2f"
  SIZE_AT_KILL=$(du -sh "$WORK/data" | cut -f1)
  local n
  for n in $(seq "$RESTARTS"); do
    kill_and_restart "$n"
  done
  write_section
  echo "wrote the Recovery section of docs/benchmarks.md" >&2
}

main_recovery "$@"
