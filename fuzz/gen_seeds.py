#!/usr/bin/env python3
"""Writes the seed corpus: a few valid AMQP 0-9-1 client frames and MQTT client sessions
(3.1, 3.1.1, 5.0), byte for byte.

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


# --- MQTT (fuzz_targets/mqtt_packets.rs) --------------------------------------------------------


def varint(n):
    """MQTT variable byte integer."""
    out = b""
    while True:
        n, digit = n >> 7, n & 0x7F
        out += bytes([digit | (0x80 if n else 0)])
        if not n:
            return out


def mstr(s):
    """MQTT UTF-8 string (or binary data, given bytes): u16 length, then the bytes."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def mpacket(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def props(*entries):
    """MQTT 5 properties: (identifier, encoded value) pairs, prefixed by their total length."""
    body = b"".join(bytes([ident]) + value for ident, value in entries)
    return varint(len(body)) + body


def u8(n):
    return struct.pack(">B", n)


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


# CONNECT flags
USERNAME, PASSWORD, WILL_RETAIN, WILL_QOS1, WILL, CLEAN = 0x80, 0x40, 0x20, 0x08, 0x04, 0x02

# 3.1.1: clean session, a QoS 1 will, username and password.
V311_CONNECT = mpacket(0x10,
    mstr("MQTT") + u8(4) + u8(USERNAME | PASSWORD | WILL_QOS1 | WILL | CLEAN) + u16(60)
    + mstr("fuzz-311") + mstr("clients/fuzz-311/status") + mstr(b"offline")
    + mstr("guest") + mstr(b"guest"))
V311_SUBSCRIBE = mpacket(0x82, u16(1) + mstr("sensors/+/temp") + u8(1) + mstr("alerts/#") + u8(0))
V311_PUBLISH_QOS1 = mpacket(0x32, mstr("sensors/kitchen/temp") + u16(2) + b"21.5")
V311_PUBACK = mpacket(0x40, u16(7))
PINGREQ = mpacket(0xC0, b"")
V311_DISCONNECT = mpacket(0xE0, b"")

# 5.0: clean start, properties, and a will with its own properties.
V5_CONNECT = mpacket(0x10,
    mstr("MQTT") + u8(5) + u8(USERNAME | WILL | CLEAN) + u16(30)
    + props((0x11, u32(3600)),                      # session expiry interval
            (0x21, u16(20)),                        # receive maximum
            (0x27, u32(65536)),                     # maximum packet size
            (0x22, u16(10)),                        # topic alias maximum
            (0x26, mstr("client") + mstr("fuzz")))  # user property
    + mstr("fuzz-5")
    + props((0x18, u32(5)),                         # will delay interval
            (0x01, u8(1)),                          # payload format: UTF-8
            (0x02, u32(600)),                       # message expiry interval
            (0x03, mstr("text/plain")))             # content type
    + mstr("clients/fuzz-5/status") + mstr(b"gone")
    + mstr("guest"))
# QoS 1, topic alias 1 set alongside the topic, two user properties and the other publish props.
V5_PUBLISH_ALIAS = mpacket(0x32,
    mstr("sensors/kitchen/temp") + u16(1)
    + props((0x23, u16(1)),                         # topic alias
            (0x26, mstr("unit") + mstr("celsius")),
            (0x26, mstr("source") + mstr("fuzz")),
            (0x01, u8(1)),
            (0x02, u32(60)),
            (0x03, mstr("text/plain")),
            (0x08, mstr("replies/fuzz-5")),         # response topic
            (0x09, mstr(b"\x00\x01corr")))          # correlation data
    + b"21.5")
# QoS 0, empty topic: alias 1 only.
V5_PUBLISH_ALIAS_ONLY = mpacket(0x30, mstr("") + props((0x23, u16(1))) + b"22.0")
V5_SUBSCRIBE = mpacket(0x82,
    u16(3) + props((0x0B, varint(42)))              # subscription identifier
    + mstr("sensors/#") + u8(0x2D)                  # QoS 1, no local, retain as published, handling 2
    + mstr("$share/g/jobs") + u8(0x02))
V5_PUBACK = mpacket(0x40, u16(9) + u8(0x10) + props())
V5_DISCONNECT = mpacket(0xE0, u8(0x04) + props((0x11, u32(0))))  # with will message

# 3.1: protocol name MQIsdp, level 3.
V31_CONNECT = mpacket(0x10, mstr("MQIsdp") + u8(3) + u8(CLEAN) + u16(60) + mstr("fuzz-31"))
V31_PUBLISH_QOS2 = mpacket(0x34, mstr("legacy/topic") + u16(5) + b"hello")
V31_PUBREL = mpacket(0x62, u16(5))

SEEDS["mqtt_packets"] = {
    "seed-v311-session":
        V311_CONNECT + V311_SUBSCRIBE + V311_PUBLISH_QOS1 + PINGREQ + V311_DISCONNECT,
    "seed-v311-session-puback":
        V311_CONNECT + V311_PUBLISH_QOS1 + V311_PUBACK + PINGREQ,
    "seed-v5-connect-publish-alias":
        V5_CONNECT + V5_PUBLISH_ALIAS + V5_PUBLISH_ALIAS_ONLY,
    "seed-v5-session":
        V5_CONNECT + V5_SUBSCRIBE + V5_PUBLISH_ALIAS + V5_PUBACK + PINGREQ + V5_DISCONNECT,
    "seed-v31-connect": V31_CONNECT,
    "seed-v31-session": V31_CONNECT + V31_PUBLISH_QOS2 + V31_PUBREL + PINGREQ,
}

# --- STOMP (fuzz_targets/stomp_frames.rs): first byte = split position ---------------------------

STOMP_SESSION = (
    b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\nheart-beat:1000,1000\n\n\x00"
    b"\n"
    b"SUBSCRIBE\r\nid:1\r\ndestination:/topic/a.b\r\nack:client-individual\r\n\r\n\x00"
    b"SEND\ndestination:/queue/q\ncontent-length:5\npersistent:true\nx-k:a\\cb\\n\\\\\n\nab\x00cd\x00"
    b"SEND\ndestination:/exchange/x/k\nreceipt:r1\n\nplain body\x00"
    b"ACK\nid:1\ntransaction:t1\n\n\x00"
    b"DISCONNECT\nreceipt:bye\n\n\x00"
)

SEEDS["stomp_frames"] = {
    "seed-session-whole": bytes([255]) + STOMP_SESSION,
    "seed-session-split": bytes([40]) + STOMP_SESSION,
    "seed-heartbeats-crlf": bytes([3]) + b"\r\n\n\r\nSEND\r\ndestination:/queue/a\r\n\r\n\x00\n",
}

for target, seeds in SEEDS.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
