"""What the benchmark report scripts (bench-mqtt-report.py, bench-stomp-report.py) share: the
environment scripts/bench-*.sh hands over, reading one run's results, and the tables that look
the same for every protocol."""

import json
import os
import sys

RESULTS = os.environ["BENCH_RESULTS"]
DURATION = os.environ["BENCH_DURATION"]
SIZE = int(os.environ["BENCH_SIZE"])
INFLIGHT = int(os.environ["BENCH_INFLIGHT"])
# "id:broker:ratio ...": Junction should deliver at least ratio x broker's rate.
TARGETS = [t.split(":") for t in os.environ.get("BENCH_TARGETS", "").split()]
# The scenarios as "id|title|flags".
SCENARIOS = [s.split("|", 2) for s in sys.argv[1:]]


def load(sid, broker, copies_per_message):
    """A run's `--json` summary plus the broker's CPU share and peak RSS (<id>-<broker>.proc: CPU
    seconds before and after, peak RSS in MiB, wall seconds), and the share of the published
    messages' copies that were delivered (`copies_per_message(summary)` copies of each)."""
    summary = json.load(open(f"{RESULTS}/{sid}-{broker}.json"))
    before, after, rss, wall = map(float, open(f"{RESULTS}/{sid}-{broker}.proc").read().split())
    summary["cpu"] = (after - before) / wall * 100
    summary["rss"] = rss
    totals = summary["totals"]
    copies = totals["published"] * copies_per_message(summary)
    summary["delivered_share"] = totals["consumed"] / copies if copies else float("nan")
    return summary


def load_all(brokers, copies_per_message):
    return {sid: {b: load(sid, b, copies_per_message) for b, _ in brokers} for sid, _, _ in SCENARIOS}


def latency(s):
    return f'{s["latency_ms"]["p50"]:.2f} / {s["latency_ms"]["p99"]:.2f}'


def ratio(a, b):
    return a / b if b else float("nan")


def print_targets(runs, brokers, heading):
    if not TARGETS:
        return
    print(f"\n{heading}\n")
    titles = {sid: title for sid, title, _ in SCENARIOS}
    for sid, broker, wanted in TARGETS:
        got = ratio(runs[sid]["junction"]["consumed_per_s"], runs[sid][broker]["consumed_per_s"])
        verdict = "met" if got >= float(wanted) else "missed"
        print(f"- ({sid}) {titles[sid]}: {got:.2f}x {dict(brokers)[broker]}, target at least {wanted}x: **{verdict}**")


def print_detail_rows(runs, brokers):
    for sid, _, _ in SCENARIOS:
        for broker, _ in brokers:
            s = runs[sid][broker]
            print(f'| ({sid}) | {broker} | {s["published_per_s"]:,.0f} | {s["confirmed_per_s"]:,.0f} | '
                  f'{s["consumed_per_s"]:,.0f} | {s["delivered_share"]:.1%} | {s["latency_ms"]["p95"]:.2f} | '
                  f'{s["latency_ms"]["max"]:.2f} | {s["cpu"]:.0f}% | {s["rss"]:,.0f} MiB |')
