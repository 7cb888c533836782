#!/usr/bin/env python3
"""Writes the seed corpus: a few valid AMQP 0-9-1 client frames, byte for byte.

Deterministic, so the seeds can be regenerated and committed. Run from anywhere:
    python3 fuzz/gen_seeds.py
Seed files are named seed-*; libFuzzer names the entries it adds by their SHA-1, and
fuzz/.gitignore keeps those out of git.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FRAME_END = b"\xce"


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + FRAME_END


def method(channel, class_id, method_id, args=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def shortstr(s):
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def table(entries):
    """entries: (key, type letter, encoded value) triples."""
    body = b"".join(shortstr(k) + t.encode() + v for k, t, v in entries)
    return longstr(body)


HEARTBEAT = frame(8, 0, b"")

START_OK = method(0, 10, 11,
    table([
        ("product", "S", longstr(b"junction-fuzz")),
        ("capabilities", "F", table([
            ("publisher_confirms", "t", b"\x01"),
            ("consumer_cancel_notify", "t", b"\x01"),
        ])),
        ("connection_timeout", "I", struct.pack(">i", 30000)),
        ("weight", "d", struct.pack(">d", 0.5)),
        ("tags", "A", longstr(b"S" + longstr(b"a") + b"s" + struct.pack(">h", -2))),
    ])
    + shortstr("PLAIN") + longstr(b"\x00guest\x00guest") + shortstr("en_US"))

TUNE_OK = method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 60))
CONNECTION_OPEN = method(0, 10, 40, shortstr("/") + shortstr("") + b"\x00")
CHANNEL_OPEN = method(1, 20, 10, shortstr(""))

QUEUE_DECLARE = method(1, 50, 10,
    struct.pack(">H", 0) + shortstr("jobs") + b"\x02"  # durable
    + table([("x-message-ttl", "I", struct.pack(">i", 60000)),
             ("x-queue-type", "S", longstr(b"classic"))]))

BASIC_CONSUME = method(1, 60, 20,
    struct.pack(">H", 0) + shortstr("jobs") + shortstr("ctag-1") + b"\x00" + table([]))

BODY = b"hello, junction"
PUBLISH = (
    method(1, 60, 40, struct.pack(">H", 0) + shortstr("amq.direct") + shortstr("jobs") + b"\x01")
    # content header: class, weight, body size, flags (content-type, headers, delivery-mode)
    + frame(2, 1, struct.pack(">HHQH", 60, 0, len(BODY), 0x8000 | 0x2000 | 0x1000)
            + shortstr("text/plain")
            + table([("x-retry", "l", struct.pack(">q", 3))])
            + b"\x02")
    + frame(3, 1, BODY))

BASIC_ACK = method(1, 60, 80, struct.pack(">Q", 1) + b"\x01")
CHANNEL_CLOSE = method(1, 20, 40, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))

SEEDS = {
    "amqp_frames": {
        "seed-heartbeat": HEARTBEAT,
        "seed-connection-start-ok": START_OK,
        "seed-connection-tune-ok": TUNE_OK,
        "seed-connection-open": CONNECTION_OPEN,
        "seed-channel-open": CHANNEL_OPEN,
        "seed-queue-declare": QUEUE_DECLARE,
        "seed-basic-consume": BASIC_CONSUME,
        "seed-basic-publish-header-body": PUBLISH,
        "seed-basic-ack": BASIC_ACK,
        "seed-channel-close": CHANNEL_CLOSE,
        "seed-session": START_OK + TUNE_OK + CONNECTION_OPEN + CHANNEL_OPEN + PUBLISH + HEARTBEAT,
    },
    # First byte is the split seed (see fuzz_targets/amqp_frames_split.rs), the rest the stream.
    "amqp_frames_split": {
        "seed-publish-bytewise": b"\x00" + PUBLISH,
        "seed-publish-chunks-7": b"\x07" + PUBLISH,
        "seed-session-chunks-40": b"\x28" + START_OK + TUNE_OK + CHANNEL_OPEN + PUBLISH + HEARTBEAT,
    },
}

for target, seeds in SEEDS.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
