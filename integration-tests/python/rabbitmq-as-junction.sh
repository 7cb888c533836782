#!/bin/bash
# Test-only shim: runs a private RabbitMQ node (Debian rabbitmq-server) behind
# Junction's command line, so the junction_only fixtures (start, kill9,
# restart on the same data dir) and test_crash.py can be checked against
# RabbitMQ: JUNCTION_BIN=$PWD/rabbitmq-as-junction.sh JUNCTION_CRASH_CYCLES=3 pytest test_crash.py
# (each start takes ~6 s; --memory-high-watermark is not supported).
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) D=$2; shift 2;;
    --amqp) A=$2; shift 2;;
    --mqtt|--stomp|--http) shift 2;;
    *) echo "shim: unsupported flag $1" >&2; exit 2;;
  esac
done
PORT=${A##*:}
mkdir -p "$D"
export HOME=$D
export RABBITMQ_NODENAME=jt$PORT@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$PORT
export RABBITMQ_DIST_PORT=$((PORT - 1))
export RABBITMQ_MNESIA_BASE=$D/mnesia RABBITMQ_LOG_BASE=$D/log RABBITMQ_PID_FILE=$D/pid
export RABBITMQ_ENABLED_PLUGINS_FILE=$D/enabled_plugins RABBITMQ_PLUGINS_EXPAND_DIR=$D/plugins-expand
export RABBITMQ_FEATURE_FLAGS_FILE=$D/feature_flags RABBITMQ_QUORUM_DIR=$D/quorum RABBITMQ_LOGS=-
export RUNNING_UNDER_SYSTEMD=true
[ -f "$D/enabled_plugins" ] || echo "[]." > "$D/enabled_plugins"
exec /usr/lib/rabbitmq/bin/rabbitmq-server
