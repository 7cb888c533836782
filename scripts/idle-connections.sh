#!/usr/bin/env bash
# What an idle MQTT connection costs: Junction and Mosquitto (Debian's package) each take N idle
# MQTT 3.1.1 connections (scripts/idle-connections.py: CONNECT, CONNACK, then nothing; spread
# over several 127.0.0.x source addresses), once without and once with one subscription per
# connection, and the growth of the broker's resident memory divided by N is reported. Writes
# the "## Idle connections" section of docs/benchmarks.md.
#
#   scripts/idle-connections.sh            # N = 100000, or what the open-files limit allows
#   IDLE_CONNECTIONS=20000 scripts/idle-connections.sh
#
# Every broker and client process needs one file descriptor per connection: N is capped at the
# hard open-files limit (ulimit -Hn) less a margin, and the section says when it was.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

WANTED=${IDLE_CONNECTIONS:-100000}
SOURCES=8
BROKERS=(junction mosquitto)

# Starts broker $1 on a fresh dir for run $2; sets PORT and PID.
start_broker() {
  local dir=$WORK/$2-$1
  PORT=$(free_port)
  mkdir -p "$dir"
  case $1 in
    junction)
      start_junction_with "$dir" "$WORK/$2-junction.log" --mqtt "127.0.0.1:$PORT" --amqp off
      PID=$JUNCTION_PID
      ;;
    mosquitto)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nlog_dest stderr\nlog_type error\n' \
        "$PORT" >"$dir/mosquitto.conf"
      mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
      PID=$!
      ;;
  esac
  wait_port "$PORT" 30 "$PID"
}

# Measures broker $1 with N connections; $2 is "plain" or "subscribed". Writes results/$2-$1.json.
run_one() {
  local broker=$1 mode=$2 flags=()
  [ "$mode" = subscribed ] && flags=(--subscribe)
  wait_for_quiet_machine
  start_broker "$broker" "$mode"
  sleep 1
  echo "== $N idle connections ($mode) to $broker (port $PORT)" >&2
  python3 scripts/idle-connections.py --pid "$PID" --port "$PORT" --connections "$N" --sources "$SOURCES" \
    "${flags[@]}" --json >"$RESULTS/$mode-$broker.json"
  cat "$RESULTS/$mode-$broker.json" >&2
  stop_pid "$PID"
  PID=""
}

write_section() {
  local section=$WORK/idle.md
  python3 - "$RESULTS" "$N" "$WANTED" "$LIMIT" >"$WORK/table.md" <<'EOF'
import json, os, sys
results, n, wanted, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("| connections | broker | KiB per connection | broker RSS before / after | connect time |")
print("|---|---|---:|---:|---:|")
for mode in ("plain", "subscribed"):
    for broker in ("junction", "mosquitto"):
        r = json.load(open(os.path.join(results, "%s-%s.json" % (mode, broker))))
        what = "idle" if mode == "plain" else "idle, one subscription each"
        print("| %s %s | %s | %.2f | %.1f / %.1f MiB | %.1f s |" % (
            format(r["connections"], ","), what, broker, r["kib_per_connection"],
            r["rss_before_kib"] / 1024, r["rss_after_kib"] / 1024, r["connect_seconds"]))
if n < wanted:
    print()
    print("This machine allows %s open files per process (`ulimit -Hn`), so %s connections were "
          "opened instead of %s." % (format(limit, ","), format(n, ","), format(wanted, ",")))
EOF
  {
    echo "## Idle connections"
    echo
    echo "Measured by \`scripts/idle-connections.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): idle MQTT 3.1.1 connections"
    echo "(CONNECT with keep-alive 600 s, CONNACK, then nothing) from $SOURCES source addresses, and the growth"
    echo "of the broker's resident memory (VmRSS) divided by their number. Junction ($(junction_binary_description))"
    echo "runs with its defaults,"
    echo "Mosquitto $(dpkg-query -W -f '${Version}' mosquitto) with \`persistence false\`."
    echo
    machine_markdown
    echo
    cat "$WORK/table.md"
  } >"$section"
  replace_section docs/benchmarks.md "## Idle connections" "$section"
}

main() {
  prebuilt_or_build_junction
  ensure_packages mosquitto
  LIMIT=$(ulimit -Hn)
  ulimit -n "$LIMIT"
  N=$WANTED
  [ "$N" -le $((LIMIT - 200)) ] || N=$((LIMIT - 200))
  begin_bench_run junction-idle
  hold_bench_lock
  check_idle
  for mode in plain subscribed; do
    for broker in "${BROKERS[@]}"; do
      run_one "$broker" "$mode"
    done
  done
  write_section
  sed -n '/^## Idle connections/,/^## [^I]/p' docs/benchmarks.md >&2
}

main "$@"
