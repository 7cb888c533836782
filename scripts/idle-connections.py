#!/usr/bin/env python3
"""Opens N idle MQTT 3.1.1 connections to a broker and reports its resident memory per connection.

    scripts/idle-connections.py --pid PID --port PORT [--connections N] [--sources K] [--json]

Each connection sends CONNECT (clean session, keep-alive 600 s), waits for its CONNACK, optionally
SUBSCRIBEs to one topic of its own (--subscribe), and then sends nothing. Connections are spread
over K source addresses 127.0.0.1 .. 127.0.0.K so that more than one address's ephemeral ports
can be used. The broker's VmRSS (from /proc/PID/status) is read before the first connection and
once everything is connected and the broker has settled; the difference divided by N is the
memory an idle connection costs. With --processes P the connections come from P client
processes (each process may hold only as many sockets as its open-files limit allows).

Used by scripts/idle-connections.sh, which starts the brokers and writes docs/benchmarks.md.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import struct
import sys
import time

KEEP_ALIVE = 600


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def remaining_length(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id):
    var = utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", KEEP_ALIVE)
    body = var + utf8(client_id)
    return b"\x10" + remaining_length(len(body)) + body


def subscribe_packet(topic):
    body = struct.pack("!H", 1) + utf8(topic) + b"\x00"
    return b"\x82" + remaining_length(len(body)) + body


async def open_one(host, port, source, client_id, subscribe, held):
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    writer.write(connect_packet(client_id))
    connack = await asyncio.wait_for(reader.readexactly(4), 30)
    if connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError("%s: CONNACK %r" % (client_id, connack))
    if subscribe:
        writer.write(subscribe_packet("idle/" + client_id))
        suback = await asyncio.wait_for(reader.readexactly(5), 30)
        if suback[0] != 0x90 or suback[4] != 0:
            raise RuntimeError("%s: SUBACK %r" % (client_id, suback))
    held.append((reader, writer))


async def hold(args, first, count, ready, release):
    held, pending = [], set()
    sources = ["127.0.0.%d" % (i + 1) for i in range(args.sources)]
    for i in range(first, first + count):
        client_id = "idle-%d" % i
        pending.add(asyncio.ensure_future(open_one(args.host, args.port, sources[i % len(sources)], client_id,
                                                    args.subscribe, held)))
        if len(pending) >= args.at_once:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                d.result()
    for d in asyncio.as_completed(pending):
        await d
    ready.release()
    while not release.is_set():
        await asyncio.sleep(0.2)
    for _, writer in held:
        writer.close()


def worker(args, first, count, ready, release):
    asyncio.run(hold(args, first, count, ready, release))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True, help="the broker's process id, for its VmRSS")
    p.add_argument("--connections", type=int, default=100000)
    p.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.1..127.0.0.K")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--at-once", type=int, default=500, help="connections being opened at the same time")
    p.add_argument("--subscribe", action="store_true", help="each connection subscribes to a topic of its own")
    p.add_argument("--settle", type=float, default=5.0, help="seconds to wait before reading the broker's memory")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    before = rss_kib(args.pid)
    ready, release = multiprocessing.Semaphore(0), multiprocessing.Event()
    share = -(-args.connections // args.processes)
    procs, started = [], time.monotonic()
    for i in range(args.processes):
        count = min(share, args.connections - i * share)
        proc = multiprocessing.Process(target=worker, args=(args, i * share, count, ready, release))
        proc.start()
        procs.append(proc)
    for _ in procs:
        while not ready.acquire(timeout=1):
            if any(proc.exitcode not in (None, 0) for proc in procs):
                release.set()
                sys.exit("a client process failed (see above)")
    connect_seconds = time.monotonic() - started
    time.sleep(args.settle)
    after = rss_kib(args.pid)
    release.set()
    for proc in procs:
        proc.join(60)
    result = {
        "connections": args.connections,
        "subscribed": args.subscribe,
        "connect_seconds": round(connect_seconds, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": round((after - before) / args.connections, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print("%(connections)d idle connections opened in %(connect_seconds)s s: broker RSS %(rss_before_kib)d KiB -> "
              "%(rss_after_kib)d KiB, %(kib_per_connection)s KiB per connection" % result)


if __name__ == "__main__":
    main()
