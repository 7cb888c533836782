#!/usr/bin/env bash
# Junction against RabbitMQ on this machine, with one neutral load generator (`junction bench
# amqp`, lapin underneath) for both, and writes docs/benchmarks.md.
#
#   scripts/bench-amqp.sh                 # 6 scenarios x 2 brokers, 15 s each (BENCH_DURATION)
#
# Each run gets a freshly started broker on a fresh temp data dir, on loopback; the brokers take
# turns scenario by scenario, so neither runs while the other is measured. Installs Debian's
# rabbitmq-server when it is missing. Only the title and the sections in OWN_SECTIONS are
# rewritten: the others ("## Recovery" from scripts/recovery-time.sh, "## MQTT" from
# scripts/bench-mqtt.sh, notes such as "## Profile") are kept, after them.
#
# scripts/recovery-time.sh sources this file for its helpers (bench-lib.sh); `main` runs only
# when executed.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

# id|title|bench flags. The flags are exactly what both brokers get.
BROKERS=(junction rabbitmq)
SCENARIOS=(
  "a|persistent 1 KiB, confirms, 1 -> 1|--publishers 1 --consumers 1 --size 1024 --persistent --confirm"
  "b|persistent 1 KiB, confirms, 4 -> 4|--publishers 4 --consumers 4 --size 1024 --persistent --confirm"
  "c|transient 1 KiB, 1 -> 1|--publishers 1 --consumers 1 --size 1024"
  "d|transient 1 KiB, fanout 1 -> 8|--publishers 1 --consumers 8 --size 1024 --fanout"
)
# The issue's latency target: "p99 latency at half of RabbitMQ's maximum rate no higher than
# RabbitMQ's". As new:base, each reruns scenario base's flags on both brokers with the publishers
# paced (--rate) at half the msg/s RabbitMQ consumed in base, unpaced: its maximum for that load.
# The rate is known only once base has run on RabbitMQ, so these are added to SCENARIOS then.
HALF_RATE=("e:a" "f:c")

# Starts broker $1 (junction|rabbitmq) for run $2 on a fresh dir; sets PORT and PID.
start_broker() {
  local dir=$WORK/$2-$1
  PORT=$(free_port)
  if [ "$1" = junction ]; then
    start_junction "$dir" "$PORT" "$WORK/$2-junction.log"
    PID=$JUNCTION_PID
    wait_port "$PORT" 30 "$PID"
  else
    start_rabbitmq "$dir" "$PORT"
    PID=$RABBIT_PID
    wait_port "$PORT" 120 "$PID" || { tail -20 "$dir/stdout.log" >&2; return 1; }
  fi
}

# Runs scenario flags $3 against broker $1 for run id $2: results/$2-$1.{json,log,proc}; .proc
# holds the broker's CPU seconds before and after, and its peak RSS.
run_one() {
  local broker=$1 id=$2 flags=$3 cpu_before
  start_broker "$broker" "$id"
  cpu_before=$(cpu_seconds "$PID")
  echo "== $id on $broker (port $PORT): junction bench amqp $flags --duration $DURATION" >&2
  # shellcheck disable=SC2086  # the flags are words on purpose
  "$JUNCTION" bench amqp --url "amqp://guest:guest@127.0.0.1:$PORT/%2f" $flags --duration "$DURATION" --json \
    >"$RESULTS/$id-$broker.json" 2> >(tee "$RESULTS/$id-$broker.log" >&2)
  echo "$cpu_before $(cpu_seconds "$PID") $(peak_rss_mib "$PID")" >"$RESULTS/$id-$broker.proc"
  stop_pid "$PID"
  PID=""
}

# Half the msg/s RabbitMQ consumed in scenario $1 (results/$1-rabbitmq.json), rounded down.
half_rabbitmq_rate() {
  python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["consumed_per_s"]) // 2)' \
    "$RESULTS/$1-rabbitmq.json"
}

# For each new:base of HALF_RATE (base has run): adds scenario new, base's flags at half
# RabbitMQ's rate in base, to SCENARIOS (the report and its commands list it) and runs it.
run_half_rate_scenarios() {
  local pair id base scenario title flags only rate
  for pair in "${HALF_RATE[@]}"; do
    id=${pair%%:*} base=${pair#*:}
    for scenario in "${SCENARIOS[@]}"; do
      [ "${scenario%%|*}" != "$base" ] || break
    done
    [ "${scenario%%|*}" = "$base" ] || { echo "HALF_RATE $pair: no scenario $base" >&2; return 1; }
    IFS='|' read -r _ title flags only <<<"$scenario"
    rate=$(half_rabbitmq_rate "$base")
    [ "$rate" -gt 0 ] || { echo "RabbitMQ consumed nothing in ($base): no rate for ($id)" >&2; return 1; }
    scenario="$id|$title at half RabbitMQ's ($base) rate ($rate msg/s)|$flags --rate $rate${only:+|$only}"
    SCENARIOS+=("$scenario")
    run_scenarios "$scenario"
  done
}

# The "## " sections this script writes; docs/benchmarks.md keeps every other one.
OWN_SECTIONS=("## Machine" "## Versions" "## Results" "## Commands")

# The title, the introduction and OWN_SECTIONS of docs/benchmarks.md, from the results, followed
# by the other sections (Recovery, Profile, MQTT, ...) as they were.
write_doc() {
  local head=$WORK/head.md
  {
    echo "# Benchmarks"
    echo
    echo "Measured by \`scripts/bench-amqp.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Junction and RabbitMQ run on"
    echo "the same machine, one at a time, each freshly started on a fresh data dir, both loaded by the same"
    echo "generator (\`junction bench amqp\`, lapin 4) over loopback. Each run publishes for ${DURATION} s."
    echo
    echo "Every section of this file is written by the script it names; \`scripts/benchmarks.sh\` runs them"
    echo "all, one after another, on one release build."
    echo
    echo "## Machine"
    echo
    machine_markdown
    echo
    echo "## Versions"
    echo
    echo "- Junction: $(junction_binary_description), $(rustc --version | awk '{print $1, $2}')"
    echo "- RabbitMQ: $(dpkg-query -W -f '${Version}' rabbitmq-server) (Debian package, default configuration: classic queues), Erlang $(dpkg-query -W -f '${Version}' erlang-base)"
    echo "- load generator: lapin $(awk '/^name = "lapin"/ { getline; print $3 }' Cargo.lock | tr -d '"')"
    echo
    BENCH_RESULTS=$RESULTS BENCH_DURATION=$DURATION BENCH_HALF_RATE="${HALF_RATE[*]}" python3 - "${SCENARIOS[@]}" <<'EOF'
import json, os, sys
results, duration = os.environ["BENCH_RESULTS"], os.environ["BENCH_DURATION"]
# "id|title|flags" (a 4th field, the brokers that ran it, does not occur here: both always do).
scenarios = [s.split("|")[:3] for s in sys.argv[1:]]
titles = {sid: title for sid, title, _ in scenarios}
# new:base pairs: scenario new is base paced at half RabbitMQ's rate in base (run_half_rate_scenarios).
half_rate = [p.split(":") for p in os.environ["BENCH_HALF_RATE"].split()]

def load(sid, broker):
    summary = json.load(open(f"{results}/{sid}-{broker}.json"))
    before, after, rss = map(float, open(f"{results}/{sid}-{broker}.proc").read().split())
    summary["cpu"] = (after - before) / summary["seconds"] * 100
    summary["rss"] = rss
    copies = summary["consumers"] if summary["fanout"] else 1
    rates = summary["published_per_s"] * copies - summary["consumed_per_s"]
    summary["backlog"] = max(0, rates * summary["seconds"])
    return summary

def lat(s):
    return f'{s["latency_ms"]["p50"]:.2f} / {s["latency_ms"]["p99"]:.2f}'

print("## Results\n")
print("Consumed messages per second (with fanout, every queue's copy counts), publish-to-deliver")
print("latency in milliseconds, and the ratio of Junction's consumed rate to RabbitMQ's.\n")
print("| scenario | Junction msg/s | RabbitMQ msg/s | Junction / RabbitMQ | Junction p50 / p99 ms | RabbitMQ p50 / p99 ms |")
print("|---|---:|---:|---:|---:|---:|")
for sid, title, _ in scenarios:
    j, r = load(sid, "junction"), load(sid, "rabbitmq")
    ratio = j["consumed_per_s"] / r["consumed_per_s"] if r["consumed_per_s"] else float("nan")
    print(f'| ({sid}) {title} | {j["consumed_per_s"]:,.0f} | {r["consumed_per_s"]:,.0f} | {ratio:.2f}x | {lat(j)} | {lat(r)} |')
if half_rate:
    bases = " and ".join(f"({base})" for _, base in half_rate)
    print("\nTarget: p99 latency at half of RabbitMQ's maximum rate no higher than RabbitMQ's. "
          f"{' and '.join(f'({new})' for new, _ in half_rate)}")
    print(f"rerun {bases} with the publishers paced (--rate) at half the msg/s RabbitMQ consumed there; the")
    print("msg/s columns show whether each broker kept up with that pace (compare their latency, not their rate):\n")
    print("| scenario | Junction msg/s | RabbitMQ msg/s | Junction p50 / p99 ms | RabbitMQ p50 / p99 ms | Junction p99 <= RabbitMQ p99 |")
    print("|---|---:|---:|---:|---:|---|")
    for new, _ in half_rate:
        j, r = load(new, "junction"), load(new, "rabbitmq")
        verdict = "met" if j["latency_ms"]["p99"] <= r["latency_ms"]["p99"] else "not met"
        print(f'| ({new}) {titles[new]} | {j["consumed_per_s"]:,.0f} | {r["consumed_per_s"]:,.0f} | '
              f'{lat(j)} | {lat(r)} | **{verdict}** |')
print("\nPublished and confirmed rates; messages still queued when publishing stopped; the broker's CPU")
print("use over the run (100% = one core) and its peak resident memory:\n")
print("| scenario | broker | published/s | confirmed/s | consumed/s | queued at end | p95 ms | max ms | broker CPU | peak RSS |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for sid, title, _ in scenarios:
    for broker in ("junction", "rabbitmq"):
        s = load(sid, broker)
        print(f'| ({sid}) | {broker} | {s["published_per_s"]:,.0f} | {s["confirmed_per_s"]:,.0f} | '
              f'{s["consumed_per_s"]:,.0f} | {s["backlog"]:,.0f} | {s["latency_ms"]["p95"]:.2f} | '
              f'{s["latency_ms"]["max"]:.2f} | {s["cpu"]:.0f}% | {s["rss"]:,.0f} MiB |')
print("""
Without --rate the publishers send as fast as they can. In the transient scenarios they outrun the
consumers, the queue grows during the run ("queued at end", "peak RSS": how far depends on how hard
each broker throttles publishers), and the latency is mostly the time spent waiting in that queue:
compare consumed msg/s there, and the latency of the confirmed scenarios, where the --inflight
window (100 per publisher) bounds the queue. The generator runs on the same cores as the broker;
"broker CPU" shows how much of the machine each broker took.""")
print("\n## Commands\n")
print("Brokers, each on a fresh temp dir and a free port `$PORT`:\n")
print("```sh")
print("junction --data-dir $DIR --amqp 127.0.0.1:$PORT --mqtt off --stomp off --http off")
print("RABBITMQ_NODE_PORT=$PORT RABBITMQ_NODENAME=bench$PORT@localhost RABBITMQ_MNESIA_BASE=$DIR/mnesia \\")
print("  RABBITMQ_LOG_BASE=$DIR/log RABBITMQ_DIST_PORT=$OTHER_PORT ... /usr/lib/rabbitmq/bin/rabbitmq-server")
print("```\n")
print("Load, the same for both (`URL=amqp://guest:guest@127.0.0.1:$PORT/%2f`):\n")
print("```sh")
for sid, _, flags in scenarios:
    print(f"junction bench amqp --url $URL {flags} --duration {duration} --json   # ({sid})")
print("```")
EOF
  } >"$head"
  local doc=docs/benchmarks.md rest=$WORK/rest.md
  other_sections "$doc" "${OWN_SECTIONS[@]}" >"$rest"
  mkdir -p docs
  cat "$head" >"$doc"
  if [ -s "$rest" ]; then
    { echo; cat "$rest"; } >>"$doc"
  fi
}

main() {
  cd "$(dirname "$0")/.."
  DURATION=${BENCH_DURATION:-15}
  prebuilt_or_build_junction
  ensure_packages rabbitmq-server
  # The Debian package starts a node of its own where systemd runs; ours are private.
  begin_bench_run junction-bench
  check_idle
  run_scenarios
  run_half_rate_scenarios
  write_doc
  echo "wrote docs/benchmarks.md" >&2
  sed -n '/^## Results/,/^## Commands/p' docs/benchmarks.md >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
