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
# The scenarios as "id|title|flags", or "id|title|flags|brokers" for one that ran only on the
# space-separated brokers named (scenario_brokers in bench-lib.sh).
_FIELDS = [s.split("|", 3) for s in sys.argv[1:]]
SCENARIOS = [f[:3] for f in _FIELDS]
# The brokers each scenario ran on, by id; None: every broker of the report.
RAN_ON = {f[0]: set(f[3].split()) if len(f) > 3 and f[3].strip() else None for f in _FIELDS}
# What a table shows for a broker that did not run the scenario.
NOT_RUN = "n/a"


def ran(sid, broker):
    return RAN_ON[sid] is None or broker in RAN_ON[sid]


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
    """Each scenario's runs by broker; a broker that did not run the scenario has no entry."""
    return {sid: {b: load(sid, b, copies_per_message) for b, _ in brokers if ran(sid, b)}
            for sid, _, _ in SCENARIOS}


def latency(s):
    """p50 / p99 of run `s` (None: not run)."""
    if s is None:
        return NOT_RUN
    return f'{s["latency_ms"]["p50"]:.2f} / {s["latency_ms"]["p99"]:.2f}'


def rate(s):
    """Consumed msg/s of run `s` (None: not run)."""
    return NOT_RUN if s is None else f'{s["consumed_per_s"]:,.0f}'


def ratio(a, b):
    return a / b if b else float("nan")


def rate_ratio(a, b):
    """Run `a`'s consumed msg/s against run `b`'s, as text; n/a unless both ran."""
    if a is None or b is None:
        return NOT_RUN
    return f'{ratio(a["consumed_per_s"], b["consumed_per_s"]):.2f}x'


def not_run_note(brokers, why=""):
    """A sentence naming the scenarios some brokers did not run (and so show n/a), `why` after the
    list; "" when every broker ran every scenario."""
    parts = [f"({sid}) ran on {' and '.join(name for b, name in brokers if ran(sid, b))} only"
             for sid, _, _ in SCENARIOS if any(not ran(sid, b) for b, _ in brokers)]
    return f"{'; '.join(parts)}{why}: {NOT_RUN} marks the brokers that did not run it." if parts else ""


def print_targets(runs, brokers, heading):
    if not TARGETS:
        return
    print(f"\n{heading}\n")
    titles = {sid: title for sid, title, _ in SCENARIOS}
    for sid, broker, wanted in TARGETS:
        name = dict(brokers)[broker]
        j, other = runs[sid].get("junction"), runs[sid].get(broker)
        if j is None or other is None:
            print(f"- ({sid}) {titles[sid]}: {NOT_RUN} (not run on both Junction and {name}), target at least {wanted}x")
            continue
        got = ratio(j["consumed_per_s"], other["consumed_per_s"])
        verdict = "met" if got >= float(wanted) else "missed"
        print(f"- ({sid}) {titles[sid]}: {got:.2f}x {name}, target at least {wanted}x: **{verdict}**")


def print_detail_rows(runs, brokers):
    """One row per scenario and broker, n/a in every figure's cell where the broker did not run it."""
    for sid, _, _ in SCENARIOS:
        for broker, _ in brokers:
            s = runs[sid].get(broker)
            if s is None:
                print(f"| ({sid}) | {broker} |" + f" {NOT_RUN} |" * 8)
                continue
            print(f'| ({sid}) | {broker} | {s["published_per_s"]:,.0f} | {s["confirmed_per_s"]:,.0f} | '
                  f'{s["consumed_per_s"]:,.0f} | {s["delivered_share"]:.1%} | {s["latency_ms"]["p95"]:.2f} | '
                  f'{s["latency_ms"]["max"]:.2f} | {s["cpu"]:.0f}% | {s["rss"]:,.0f} MiB |')
