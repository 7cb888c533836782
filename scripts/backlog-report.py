"""Prints the tables and the summary of docs/benchmarks.md's "## Backlog" section for scripts/backlog.sh.

Arguments: the run's work dir, the broker's peak RSS (VmHWM, MiB) at the end of the publish phase
and at the end of the drain phase (that process started at the restart). The work dir holds
tab-separated rows, written by scripts/backlog.sh:
  publish.tsv   chunk, backlog after it, confirmed msg/s, seconds, RSS MiB, data dir MiB
  recovery.tsv  messages recovered, store recovery ms, port accepting ms, RSS MiB, data dir MiB
  drain.tsv     chunk, backlog left, consumed msg/s, seconds, RSS MiB, data dir MiB
"""

import os
import sys


def rows(work, name):
    with open(os.path.join(work, name)) as f:
        return [[float(field) for field in line.split("\t")] for line in f if line.strip()]


def phase_table(rows, backlog_title, rate_title):
    print(f"| chunk | {backlog_title} | {rate_title} | seconds | broker RSS | data dir |")
    print("|---:|---:|---:|---:|---:|---:|")
    for chunk, backlog, rate, seconds, rss, data in rows:
        print(f"| {chunk:.0f} | {backlog:,.0f} | {rate:,.0f} | {seconds:,.1f} | {rss:,.0f} MiB | {data:,.0f} MiB |")


def rates_summary(rows):
    """min - max msg/s over the chunks, and the last chunk's rate over the first's."""
    rates = [row[2] for row in rows]
    ratio = rates[-1] / rates[0] if rates[0] else float("nan")
    return f"{min(rates):,.0f} - {max(rates):,.0f} msg/s, last chunk / first {ratio:.2f}"


def main():
    work, publish_hwm, drain_hwm = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    publish, drain = rows(work, "publish.tsv"), rows(work, "drain.tsv")
    (messages, store_ms, accepting_ms, recovery_rss, recovery_data), = rows(work, "recovery.tsv")

    print("### Publish, no consumer\n")
    phase_table(publish, "backlog after chunk", "publish msg/s (confirmed)")
    print("\n### kill -9 and restart with the backlog\n")
    print("| messages recovered | store recovery | port accepting | RSS after recovery | data dir |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {messages:,.0f} | {store_ms:,.0f} ms | {accepting_ms:,.0f} ms | {recovery_rss:,.0f} MiB "
          f"| {recovery_data:,.0f} MiB |")
    print("\n### Drain, one consumer\n")
    phase_table(drain, "backlog left", "consume msg/s")
    print("\nSummary: publish " + rates_summary(publish) + "; drain " + rates_summary(drain) + ".")
    print(f"Broker RSS: publish phase at most {max(r[4] for r in publish):,.0f} MiB after a chunk "
          f"(peak {publish_hwm:,.0f} MiB); drain phase at most {max(r[4] for r in drain):,.0f} MiB after a "
          f"chunk (peak since the restart, recovery included, {drain_hwm:,.0f} MiB).")


main()
