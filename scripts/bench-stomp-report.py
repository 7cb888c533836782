"""Prints the results part of docs/benchmarks.md's "## STOMP" section for scripts/bench-stomp.sh.

Arguments: the scenarios as "id|title|flags". Environment: BENCH_RESULTS (the directory with
<id>-<broker>.json, the `junction bench stomp --json` summary, and <id>-<broker>.proc, the broker's
CPU seconds before and after the bench command, its peak RSS and the command's wall seconds),
BENCH_DURATION, BENCH_SIZE, BENCH_INFLIGHT, BENCH_PREFETCH and BENCH_TARGETS ("id:broker:ratio
...": Junction should deliver at least ratio x broker's rate).
"""

import os

from bench_report import (DURATION, INFLIGHT, SCENARIOS, SIZE, latency, load_all, print_detail_rows,
                          print_targets, ratio)

BROKERS = [("junction", "Junction"), ("rabbitmq", "RabbitMQ")]
PREFETCH = int(os.environ["BENCH_PREFETCH"])


def main_table(runs):
    print("### Results\n")
    print("Messages consumed per second at the subscribers over the publishing window, publish-to-deliver")
    print("latency in milliseconds (p50 / p99), and Junction's consumed rate against RabbitMQ's.\n")
    print("| scenario | Junction msg/s | RabbitMQ msg/s | Junction / RabbitMQ | Junction p50 / p99 ms | RabbitMQ p50 / p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for sid, title, _ in SCENARIOS:
        j, r = runs[sid]["junction"], runs[sid]["rabbitmq"]
        print(f'| ({sid}) {title} | {j["consumed_per_s"]:,.0f} | {r["consumed_per_s"]:,.0f} | '
              f'{ratio(j["consumed_per_s"], r["consumed_per_s"]):.2f}x | {latency(j)} | {latency(r)} |')


def detail_table(runs):
    print("\nPublished rates (written to the socket), RECEIPTs per second, the share of the published")
    print("messages consumed by the end (publishing, then up to 5 s of draining), the broker's CPU use")
    print("while the generator ran (100% = one core) and its peak resident memory:\n")
    print("| scenario | broker | published/s | receipts/s | consumed/s | consumed | p95 ms | max ms | broker CPU | peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print_detail_rows(runs, BROKERS)
    print("""
Without receipts the publisher sends as fast as the broker reads: where it outruns the subscriber
the queue grows and the latency is mostly time spent queued, so compare consumed msg/s there.
The generator runs on the same cores as the broker; "broker CPU" shows how much of the machine
each broker took (Erlang's schedulers spin while they wait for work, so RabbitMQ's figure
overstates its work at low rates).""")


def commands():
    print("\n### Commands\n")
    print("Brokers, each on a fresh temp dir `$DIR` and a free port `$PORT`:\n")
    print("```sh")
    print("junction --data-dir $DIR --stomp 127.0.0.1:$PORT --amqp off --mqtt off --http off")
    print("RABBITMQ_CONFIG_FILE=$DIR/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins ... \\")
    print("  /usr/lib/rabbitmq/bin/rabbitmq-server   # [rabbitmq_stomp]. and stomp.listeners.tcp.1 = 127.0.0.1:$PORT")
    print("```\n")
    print("Load, the same for both:\n")
    print("```sh")
    for sid, _, flags in SCENARIOS:
        print(f"junction bench stomp --port $PORT {flags} --size {SIZE} --inflight {INFLIGHT} --prefetch {PREFETCH} --duration {DURATION} --json   # ({sid})")
    print("```")


def main():
    # A queue's subscribers share its messages: each is delivered once.
    runs = load_all(BROKERS, lambda s: 1)
    main_table(runs)
    print_targets(runs, BROKERS, "Targets (Junction's consumed msg/s against RabbitMQ's):")
    detail_table(runs)
    commands()


main()
