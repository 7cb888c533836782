# Helpers shared by the benchmark scripts (bench-amqp.sh, bench-mqtt.sh, bench-stomp.sh,
# recovery-time.sh): ports, starting and stopping brokers, process figures, the machine's
# description, running the scenarios, and rewriting sections of docs/benchmarks.md. Sourced, not
# run.

# A TCP port nobody listens on right now, below the kernel's ephemeral range (a port the kernel
# handed out as ephemeral can be taken again as some client's source port before the broker binds
# it: seen as RabbitMQ's "dist_port_already_used" during the fan-out scenarios), and not one this
# script was already given (the ports handed out are remembered in a file named after its pid).
free_port() {
  python3 - "${TMPDIR:-/tmp}/junction-bench-ports.$$" <<'PY'
import random, socket, sys
given_file = sys.argv[1]
try:
    given = set(open(given_file).read().split())
except FileNotFoundError:
    given = set()
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
if low <= 10100:
    raise SystemExit("free_port: no room below the ephemeral port range (ip_local_port_range starts at %d)" % low)
for _ in range(500):
    port = random.randrange(10000, low)
    if str(port) in given:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    with open(given_file, "a") as f:
        f.write("%d\n" % port)
    print(port)
    break
else:
    raise SystemExit("free_port: no free port found below the ephemeral range")
PY
}

# True once 127.0.0.1:$1 accepts a connection.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits up to $2 seconds for port $1, or fails; $3 is the pid that must stay alive meanwhile.
wait_port() {
  local port=$1 deadline=$((SECONDS + $2)) pid=$3
  until port_open "$port"; do
    kill -0 "$pid" 2>/dev/null || { echo "broker (pid $pid) died before listening on $port" >&2; return 1; }
    [ $SECONDS -lt $deadline ] || { echo "port $port not open after $2 s" >&2; return 1; }
    sleep 0.01
  done
}

# Builds the release binary (RocksDB's C++ takes ~10 minutes the first time) and sets JUNCTION.
build_junction() {
  source scripts/lib.sh
  ensure_build_deps
  cargo build --release --bin junction
  JUNCTION=$CARGO_TARGET_DIR/release/junction
}

# Sets JUNCTION to $JUNCTION_BIN when given (an existing binary), else builds one.
prebuilt_or_build_junction() {
  source scripts/lib.sh
  if [ -n "${JUNCTION_BIN:-}" ]; then
    JUNCTION=$JUNCTION_BIN
  else
    build_junction
  fi
}

# The Junction binary measured, for a report: its version, and the prebuilt binary's path or
# the commit it was built from.
junction_binary_description() {
  local version commit
  version=$("$JUNCTION" --version | awk '{print $2}')
  commit=$(git rev-parse --short HEAD)
  if [ -n "${JUNCTION_BIN:-}" ]; then
    echo "$version, the prebuilt binary $JUNCTION_BIN (checkout at commit $commit)"
  else
    echo "$version, commit $commit$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes'), release build"
  fi
}

# Starts Junction on data dir $1 with log $2 and the listener flags that follow (STOMP and HTTP
# off); sets JUNCTION_PID.
start_junction_with() {
  local dir=$1 log=$2
  shift 2
  "$JUNCTION" --data-dir "$dir" --stomp off --http off "$@" >"$log" 2>&1 &
  JUNCTION_PID=$!
}

# Starts Junction on data dir $1, AMQP port $2 (no MQTT), log $3; sets JUNCTION_PID.
start_junction() {
  start_junction_with "$1" "$3" --amqp "127.0.0.1:$2" --mqtt off
}

# 1234567 -> 1,234,567
thousands() {
  sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"
}

now_ms() {
  echo $(($(date +%s%N) / 1000000))
}

# SIGKILLs the Junction at $JUNCTION_PID and restarts it on data dir $1, AMQP port $2, log $3,
# waiting up to $4 s for the port. Sets RESTART_MESSAGES and RESTART_MILLIS (from the broker's
# own log line `store recovered ... messages=N millis=M`) and RESTART_ACCEPTING_MS (from starting
# the process until the port accepts a TCP connection).
kill9_and_restart_junction() {
  local dir=$1 port=$2 log=$3 limit=$4 started line
  kill -KILL "$JUNCTION_PID"
  wait "$JUNCTION_PID" 2>/dev/null || true
  started=$(now_ms)
  start_junction "$dir" "$port" "$log"
  wait_port "$port" "$limit" "$JUNCTION_PID"
  RESTART_ACCEPTING_MS=$(($(now_ms) - started))
  line=$(grep -m1 'store recovered' "$log") || { echo "no 'store recovered' line in $log" >&2; exit 1; }
  RESTART_MESSAGES=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' <<<"$line")
  RESTART_MILLIS=$(sed -n 's/.*millis=\([0-9]*\).*/\1/p' <<<"$line")
}

# Starts a private RabbitMQ node under directory $1 with AMQP port $2 and the plugins named by
# the further arguments (e.g. rabbitmq_mqtt); sets RABBIT_PID. $1/rabbitmq.conf, if the caller
# wrote one, is its configuration file. Everything it writes (mnesia, logs, cookie, feature flags)
# stays in $1.
start_rabbitmq() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  echo "[$(IFS=,; echo "$*")]." >"$dir/enabled_plugins"
  (
    if [ -f "$dir/rabbitmq.conf" ]; then
      export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
    fi
    export HOME=$dir
    export RABBITMQ_NODENAME="bench$port@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$port
    RABBITMQ_DIST_PORT=$(free_port)
    export RABBITMQ_DIST_PORT
    export RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/pid
    export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins RABBITMQ_PLUGINS_EXPAND_DIR=$dir/plugins-expand
    export RABBITMQ_FEATURE_FLAGS_FILE=$dir/feature_flags RABBITMQ_QUORUM_DIR=$dir/quorum RABBITMQ_LOGS=-
    export RUNNING_UNDER_SYSTEMD=true
    exec /usr/lib/rabbitmq/bin/rabbitmq-server
  ) >"$dir/stdout.log" 2>&1 &
  RABBIT_PID=$!
}

# Stops a process this script started: SIGTERM, then SIGKILL after 30 s.
stop_pid() {
  local pid=${1:-} i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Peak resident memory of process $1 in MiB.
peak_rss_mib() {
  awk '/^VmHWM:/ { printf "%.0f", $2 / 1024; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# CPU seconds (user + system) process $1 has used so far.
cpu_seconds() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  # After the ")" that closes the command name, utime is the 12th field and stime the 13th.
  echo "${stat##*) }" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / hz }'
}

# A markdown list describing this machine.
machine_markdown() {
  local cpu mem
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  echo "- CPU: ${cpu:-unknown} ($(nproc) cores available to the benchmark)"
  echo "- memory: $mem"
  echo "- kernel: $(uname -sr)"
  echo "- file system of the temp data dirs: $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }')"
  echo "- load average when the runs started (other work on the machine): $LOAD_AT_START"
}

# Records the 1-minute load average and warns when the machine is busy with something else.
check_idle() {
  LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$LOAD_AT_START" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: load average $LOAD_AT_START: other work on this machine will skew the figures" >&2
  fi
}

# Prints the "## " sections of markdown file $1 (each up to the next "## " heading) whose heading
# line is none of the further arguments, in their order: what a script that rewrites its own
# sections keeps of the others'.
other_sections() {
  [ -f "$1" ] || return 0
  python3 - "$@" <<'EOF'
import re, sys
path, own = sys.argv[1], set(sys.argv[2:])
sections = re.findall(r"^## .*?(?=^## |\Z)", open(path).read(), re.S | re.M)
kept = [s.rstrip("\n") for s in sections if s.split("\n", 1)[0] not in own]
if kept:
    print("\n\n".join(kept))
EOF
}

# Replaces the section of markdown file $1 that starts with heading line $2 (up to the next "## "
# heading or the end) with the content of file $3; appends it when the file has no such section.
replace_section() {
  python3 - "$1" "$2" "$3" <<'EOF'
import re, sys
path, heading, new = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().rstrip("\n") + "\n"
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n"
pattern = re.compile(r"^" + re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda _: new + "\n", text, count=1)
else:
    text = text.rstrip("\n") + "\n\n" + new
open(path, "w").write(text.rstrip("\n") + "\n")
EOF
}

# The file that tells other work on this machine (builds) that a measurement is running.
BENCH_LOCK=/tmp/junction-bench.lock

# Creates BENCH_LOCK; release_bench_lock removes it (call it from the EXIT trap).
hold_bench_lock() {
  echo "$$ $0" >"$BENCH_LOCK"
}

release_bench_lock() {
  [ "$(cut -d' ' -f1 "$BENCH_LOCK" 2>/dev/null)" = "$$" ] && rm -f "$BENCH_LOCK"
  return 0
}

# Percentage of the machine's CPU time spent busy over the next $1 seconds (all processes).
cpu_busy_percent() {
  local before after
  before=$(head -1 /proc/stat)
  sleep "$1"
  after=$(head -1 /proc/stat)
  # cpu user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
  awk -v a="$before" -v b="$after" 'BEGIN {
    split(a, x); split(b, y); total = 0; idle = 0
    for (i = 2; i <= 9; i++) total += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    printf "%.0f", (total > 0 ? 100 * (total - idle) / total : 0)
  }'
}

# Waits until no cargo or rustc process runs and the CPUs are nearly idle (under 15% busy over
# 2 s; other work on the same cores skews a measurement), for at most an hour.
wait_for_quiet_machine() {
  local deadline=$((SECONDS + 3600)) said="" busy
  while [ $SECONDS -lt $deadline ]; do
    busy=$(cpu_busy_percent 2)
    if ! pgrep -x 'cargo|rustc' >/dev/null && [ "$busy" -lt 15 ]; then
      return 0
    fi
    [ -n "$said" ] || { echo "waiting for other work to finish before measuring (CPU ${busy}% busy)" >&2; said=1; }
    sleep 8
  done
  echo "warning: the machine is still busy (CPU ${busy}%): measuring anyway" >&2
}

# The EXIT trap of a comparison run: stops the broker under test ($PID), the private epmd (unless
# one ran before: $EPMD_WAS_RUNNING), releases the bench lock and removes the run's $WORK dir.
cleanup_bench_run() {
  stop_pid "${PID:-}"
  [ -n "${EPMD_WAS_RUNNING:-}" ] || epmd -kill >/dev/null 2>&1 || true
  release_bench_lock
  rm -rf "$WORK" "${TMPDIR:-/tmp}/junction-bench-ports.$$"
}

# Sets up a comparison run named $1: remembers whether epmd already ran, makes $WORK and
# $RESULTS and installs the cleanup trap.
begin_bench_run() {
  EPMD_WAS_RUNNING=$(pgrep -x epmd || true)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  RESULTS=$WORK/results
  mkdir -p "$RESULTS"
  trap cleanup_bench_run EXIT
  trap 'exit 130' INT TERM
}

# Runs the scenarios given as arguments (default: all of $SCENARIOS), each "id|title|flags" or
# "id|title|flags|brokers", on the brokers scenario_brokers names, the brokers taking turns
# scenario by scenario; run_one BROKER ID FLAGS is the calling script's.
run_scenarios() {
  local scenario id flags brokers broker
  [ $# -gt 0 ] || set -- "${SCENARIOS[@]}"
  for scenario in "$@"; do
    IFS='|' read -r id _ flags _ <<<"$scenario"
    # Assigned on its own line so that a bad broker name stops the run (set -e).
    brokers=$(scenario_brokers "$scenario")
    for broker in $brokers; do
      run_one "$broker" "$id" "$flags"
      sleep 2
    done
  done
}

# The brokers scenario $1 runs on, in $BROKERS' order: all of $BROKERS, or, when the scenario has
# a 4th "|" field, only the space-separated brokers it names (a scenario that needs a protocol not
# every broker speaks, e.g. MQTT -> AMQP without Mosquitto). Fails on a name not in $BROKERS.
scenario_brokers() {
  local only broker
  IFS='|' read -r _ _ _ only <<<"$1"
  for broker in $only; do
    [[ " ${BROKERS[*]} " == *" $broker "* ]] || { echo "scenario '$1': unknown broker $broker" >&2; return 1; }
  done
  for broker in "${BROKERS[@]}"; do
    if [ -z "$only" ] || [[ " $only " == *" $broker "* ]]; then
      echo "$broker"
    fi
  done
}
