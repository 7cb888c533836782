"""Prints the results part of docs/benchmarks.md's "## MQTT" section for scripts/bench-mqtt.sh.

Arguments: the scenarios as "id|title|flags", or "id|title|flags|brokers" for one that ran only on
the brokers named (its cells read n/a for the others). Environment: BENCH_RESULTS (the directory
with <id>-<broker>.json, the `junction bench mqtt --json` summary, and <id>-<broker>.proc, the
broker's CPU seconds before and after the bench command, its peak RSS and the command's wall
seconds), BENCH_DURATION, BENCH_SIZE, BENCH_INFLIGHT, BENCH_QUEUED and BENCH_TARGETS
("id:broker:ratio ...": Junction should deliver at least ratio x broker's rate).
"""

import os

from bench_report import (DURATION, INFLIGHT, SCENARIOS, SIZE, latency, load_all, not_run_note,
                          print_detail_rows, print_targets, ran, rate, rate_ratio)

BROKERS = [("junction", "Junction"), ("mosquitto", "Mosquitto"), ("rabbitmq", "RabbitMQ")]
QUEUED = int(os.environ["BENCH_QUEUED"])
# The scenarios whose messages are consumed over AMQP (`--amqp-consumers`).
AMQP_SCENARIOS = [sid for sid, _, flags in SCENARIOS if "--amqp-consumers" in flags.split()]


def copies_per_message(summary):
    """Every MQTT subscriber gets a copy; AMQP consumers compete on one queue: one copy between them."""
    return summary["subscribers"] + (1 if summary.get("amqp_consumers", 0) else 0)


def settings():
    print(f"""The in-flight and queue limits are set alike: {INFLIGHT} QoS 1 messages in flight towards a
subscriber, and a slow subscriber's queue holds up to {QUEUED:,} messages before QoS 0 ones are
dropped (Mosquitto's defaults, 20 and 1000, would throttle it). RabbitMQ does not drop: its queue
grows and TCP back-pressure slows the publishers down. Nothing touches the disk: with clean
sessions Junction and RabbitMQ keep subscriptions in non-durable queues, and Mosquitto runs with
persistence off. All three set TCP_NODELAY, as does the generator.
""")


def main_table(runs):
    print("### Results\n")
    print("Messages delivered per second at the subscribers (with fan-out every subscriber's copy counts),")
    print("publish-to-deliver latency in milliseconds, and Junction's delivered rate against the others'.")
    if AMQP_SCENARIOS:
        ids = ", ".join(f"({sid})" for sid in AMQP_SCENARIOS)
        print(f"In {ids} the MQTT publishers' messages are delivered to AMQP consumers instead: one queue bound")
        print("to `amq.topic` with the MQTT topic (`/` as `.`), its consumers sharing the messages.")
    note = not_run_note(BROKERS, " (Mosquitto has no AMQP)" if AMQP_SCENARIOS else "")
    if note:
        print(note)
    print()
    names = [name for _, name in BROKERS]
    print("| scenario | " + " | ".join(f"{n} msg/s" for n in names)
          + " | Junction / Mosquitto | Junction / RabbitMQ | "
          + " | ".join(f"{n} p50 / p99 ms" for n in names) + " |")
    print("|---|" + "---:|" * 8)
    for sid, title, _ in SCENARIOS:
        r = runs[sid]
        rates = " | ".join(rate(r.get(b)) for b, _ in BROKERS)
        ratios = " | ".join(rate_ratio(r.get("junction"), r.get(b)) for b in ("mosquitto", "rabbitmq"))
        latencies = " | ".join(latency(r.get(b)) for b, _ in BROKERS)
        print(f"| ({sid}) {title} | {rates} | {ratios} | {latencies} |")


def detail_table(runs):
    print("\nPublished rates (written to the socket: a broker that reads slowly leaves messages in the")
    print("kernel's buffers) and acknowledged ones (PUBACK); the share of the published messages' copies")
    print("that reached the subscribers by the end (publishing, then up to 5 s of draining: the rest was")
    print("dropped, QoS 0 beyond a full queue, or was still queued); the broker's CPU use while the")
    print("generator ran, connecting and draining included (100% = one core), and its peak resident memory:\n")
    print("| scenario | broker | published/s | acked/s | delivered/s | delivered | p95 ms | max ms | broker CPU | peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print_detail_rows(runs, BROKERS)
    print("""
Without --rate the publishers send as fast as they can. In (a) a hundred of them outrun the one
subscriber on every broker: the latency there is mostly time spent queued, and how much is
delivered depends on what each broker does with the excess (drop it, or slow the publishers
down); a ratio against a broker that delivers next to nothing under such a flood says little.
Compare delivered msg/s in (a); (b) paces the same clients below what every broker delivers, for
the latency. The generator runs on the same cores as the broker; "broker CPU" shows how much of
the machine each broker took (Erlang's schedulers spin while they wait for work, so RabbitMQ's
figure overstates its work at low rates).""")


def commands():
    print("\n### Commands\n")
    print("Brokers, each on a fresh temp dir `$DIR` and a free port `$PORT`:\n")
    print("```sh")
    print("junction --data-dir $DIR --mqtt 127.0.0.1:$PORT --amqp 127.0.0.1:$AMQP_PORT --stomp off --http off")
    print("mosquitto -c $DIR/mosquitto.conf   # listener $PORT 127.0.0.1, allow_anonymous true, persistence false,")
    print(f"                                   # set_tcp_nodelay true, max_inflight_messages {INFLIGHT}, max_queued_messages {QUEUED}")
    print("RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_CONFIG_FILE=$DIR/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins ... \\")
    print("  /usr/lib/rabbitmq/bin/rabbitmq-server   # [rabbitmq_mqtt]. and mqtt.listeners.tcp.default = 127.0.0.1:$PORT,")
    print(f"                                          # mqtt.allow_anonymous = true, mqtt.prefetch = {INFLIGHT}")
    print("```\n")
    print("Load, the same for every broker that runs the scenario; `$AMQP` is")
    print("`--amqp-url amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f` for Junction and RabbitMQ, nothing for")
    print("Mosquitto (the generator connects to it only for `--amqp-consumers`):\n")
    print("```sh")
    for sid, _, flags in SCENARIOS:
        only = "" if all(ran(sid, b) for b, _ in BROKERS) else \
            ", " + " and ".join(name for b, name in BROKERS if ran(sid, b)) + " only"
        print(f"junction bench mqtt --port $PORT $AMQP {flags} --size {SIZE} --inflight {INFLIGHT} --duration {DURATION} --json   # ({sid}){only}")
    print("```")


def main():
    runs = load_all(BROKERS, copies_per_message)
    settings()
    main_table(runs)
    print_targets(runs, BROKERS, "Targets (Junction's delivered msg/s against the other broker's):")
    detail_table(runs)
    commands()


main()
