"""The property and topic mapping between AMQP 0-9-1 (pika), MQTT 3.1.1 and 5 (paho-mqtt) and
STOMP 1.2 (stomp.py), as docs/mapping.md states it: bodies byte for byte from every protocol to
every other, every property field by field for each pair of protocols that can carry it, round
trips A -> B -> A through a client that copies everything it received, the topic / routing-key
vectors, and one queue consumed by all three protocols at once.

Most tests share one broker (module scope, unique names per test); the ones that subscribe to
`#` or to fixed queue names get their own.
"""
import base64
import datetime
import decimal
import hashlib
import os
import struct
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pika
import pytest
import stomp
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import JunctionBroker
from helpers import Delivery, consume, get_eventually, idle, message_count, wait_until

pytestmark = pytest.mark.junction_only
WAIT = 10


def uid():
    return uuid.uuid4().hex[:8]


# --------------------------------------------------------------------------------------------
# Brokers and clients
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory):
    binary = os.environ.get("JUNCTION_BIN")
    if not binary:
        pytest.fail("set JUNCTION_BIN to the junction binary")
    b = JunctionBroker(binary, tmp_path_factory.mktemp("mapping"), [], "mapping")
    b.start()
    yield b
    b.cleanup()


class Net:
    """Clients of every protocol on one broker; all closed when the test ends."""

    def __init__(self, broker):
        self.broker = broker
        self._closers = []

    def channel(self):
        return self.broker.connect().channel()

    def mqtt(self, version="5"):
        c = Mqtt(self.broker, version)
        self._closers.append(c.close)
        return c

    def stomp(self, ack_in_listener=False):
        c = Stomp(self.broker, ack_in_listener)
        self._closers.append(c.close)
        return c

    def close(self):
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                pass
        self.broker.close_clients()


def _net_fixture(request, broker):
    net = Net(broker)
    yield net
    net.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and isinstance(broker, JunctionBroker) and broker is not getattr(
            request.node, "_own_broker", None):
        print("\n----- junction log (%s, shared by this module) -----\n%s" % (broker.log_path, broker.log_tail(8000)))


@pytest.fixture
def net(request, shared_broker):
    """Clients on the module's shared broker (restarted if an earlier test took it down)."""
    if not shared_broker.running:
        shared_broker.start()
    yield from _net_fixture(request, shared_broker)


@pytest.fixture
def own_net(request, broker):
    """Clients on a broker of this test's own (conftest prints its log on failure)."""
    request.node._own_broker = broker
    yield from _net_fixture(request, broker)


class Mqtt:
    """A paho client (3.1.1 or 5) with its network loop in a thread; messages land in a list."""

    def __init__(self, broker, version="5"):
        self.v5 = version == "5"
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="map-" + uid(),
                             protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311)
        self.messages, self.lock, self.connected = [], threading.Lock(), threading.Event()
        self.c.on_connect = lambda *a: self.connected.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", broker.mqtt_port, keepalive=30)
        self.c.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append(msg)

    def subscribe(self, topic, qos=1):
        done, codes = threading.Event(), []
        self.c.on_subscribe = lambda c, u, mid, rcs, props: (codes.extend(rcs), done.set())
        self.c.subscribe(topic, qos)
        assert done.wait(WAIT), "no SUBACK for " + topic
        assert not codes[0].is_failure, "subscription to %s refused: %s" % (topic, codes[0])

    def publish(self, topic, payload, qos=1, retain=False, props=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if qos:
            info.wait_for_publish(WAIT)
            assert info.is_published(), "no PUBACK/PUBCOMP for " + topic

    def wait_for(self, n, timeout=WAIT, strict=True):
        """The messages so far once there are n; strict=False: whatever arrived by the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.01)
        if strict:
            raise AssertionError("MQTT: expected %d messages, got %d" % (n, len(self.messages)))
        with self.lock:
            return list(self.messages)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Stomp(stomp.ConnectionListener):
    """A stomp.py 1.2 connection with binary bodies (auto_decode off); frames land in lists."""

    def __init__(self, broker, ack_in_listener=False):
        self.messages, self.errors, self.receipts = [], [], set()
        self.lock = threading.Lock()
        self.ack_in_listener = ack_in_listener
        self.conn = stomp.Connection12([("127.0.0.1", broker.stomp_port)], heartbeats=(0, 0), auto_decode=False)
        self.conn.set_listener("collect", self)
        self.conn.connect("guest", "guest", wait=True, headers={"host": "localhost"})

    def on_message(self, frame):
        if self.ack_in_listener:
            self.conn.ack(frame.headers["ack"])
        with self.lock:
            self.messages.append(frame)

    def on_error(self, frame):
        with self.lock:
            self.errors.append(frame)

    def on_receipt(self, frame):
        with self.lock:
            self.receipts.add(frame.headers["receipt-id"])

    def _wait_receipt(self, receipt):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                if receipt in self.receipts:
                    return
                if self.errors:
                    raise AssertionError("STOMP ERROR: %r %r" % (self.errors[0].headers, self.errors[0].body))
            time.sleep(0.01)
        raise AssertionError("no RECEIPT %s" % receipt)

    def subscribe(self, destination, ack="auto", **headers):
        receipt = "sub-" + uid()
        self.conn.subscribe(destination, id="s-" + uid(), ack=ack, headers=dict(headers, receipt=receipt))
        self._wait_receipt(receipt)

    def send(self, destination, body, headers=None, receipt=True):
        headers = dict(headers or {})
        if receipt:
            headers["receipt"] = "r-" + uid()
        self.conn.send(destination, body, headers=headers)
        if receipt:
            self._wait_receipt(headers["receipt"])

    def wait_for(self, n, timeout=WAIT, strict=True):
        """The frames so far once there are n; strict=False: whatever arrived by the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
                if self.errors:
                    raise AssertionError("STOMP ERROR: %r %r" % (self.errors[0].headers, self.errors[0].body))
            time.sleep(0.01)
        if strict:
            raise AssertionError("STOMP: expected %d messages, got %d" % (n, len(self.messages)))
        with self.lock:
            return list(self.messages)

    def close(self):
        if self.conn.is_connected():
            self.conn.disconnect()


def amqp_collect(ch, queue, n, timeout=WAIT):
    """Consumes up to n messages from queue, for at most `timeout` seconds; returns them."""
    got = []
    tag = ch.basic_consume(queue, lambda _c, method, props, body: got.append(Delivery(method, props, body)),
                           auto_ack=True)
    try:
        wait_until(ch.connection, lambda: len(got) >= n, timeout)
    except AssertionError:
        pass
    finally:
        ch.basic_cancel(tag)
    return got


def amqp_topic_queue(ch, key):
    """An exclusive queue bound to amq.topic with `key`."""
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", key)
    return q


# --------------------------------------------------------------------------------------------
# Exact AMQP field types: pika decodes headers lossily (a double comes back as an int), so the
# content header's raw bytes are kept and decoded here into (type letter, value) pairs.
# --------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def pika_with_exact_field_types(monkeypatch):
    """Keeps the raw bytes of every received content header (for wire_headers), and teaches
    pika 1.3 the double type: it cannot encode a float in a table and decodes one as an int."""
    original_decode = pika.spec.BasicProperties.decode

    def decode(self, encoded, offset=0):
        self._wire = bytes(encoded[offset:])
        return original_decode(self, encoded, offset)

    monkeypatch.setattr(pika.spec.BasicProperties, "decode", decode)
    original_encode_value, original_decode_value = pika.data.encode_value, pika.data.decode_value

    def encode_value(pieces, value):
        if isinstance(value, float):
            pieces.append(struct.pack(">cd", b"d", value))
            return 9
        return original_encode_value(pieces, value)

    def decode_value(encoded, offset):
        kind = encoded[offset:offset + 1]
        if kind == b"d":
            return struct.unpack_from(">d", encoded, offset + 1)[0], offset + 9
        if kind == b"f":
            return struct.unpack_from(">f", encoded, offset + 1)[0], offset + 5
        return original_decode_value(encoded, offset)

    monkeypatch.setattr(pika.data, "encode_value", encode_value)
    monkeypatch.setattr(pika.data, "decode_value", decode_value)


FIXED = {"t": ">B", "b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "L": ">Q",
         "f": ">f", "d": ">d", "T": ">Q"}


def wire_value(buf, off):
    kind = chr(buf[off])
    off += 1
    if kind in FIXED:
        value = struct.unpack_from(FIXED[kind], buf, off)[0]
        return (kind, bool(value) if kind == "t" else value), off + struct.calcsize(FIXED[kind])
    if kind == "D":
        return (kind, (buf[off], struct.unpack_from(">I", buf, off + 1)[0])), off + 5
    if kind in ("S", "x"):
        n = struct.unpack_from(">I", buf, off)[0]
        return (kind, bytes(buf[off + 4:off + 4 + n])), off + 4 + n
    if kind == "A":
        end = off + 4 + struct.unpack_from(">I", buf, off)[0]
        off, items = off + 4, []
        while off < end:
            item, off = wire_value(buf, off)
            items.append(item)
        return (kind, items), end
    if kind == "F":
        pairs, off = wire_pairs(buf, off)
        return (kind, dict(pairs)), off
    if kind == "V":
        return (kind, None), off
    raise AssertionError("unknown AMQP field type %r" % kind)


def wire_pairs(buf, off):
    end = off + 4 + struct.unpack_from(">I", buf, off)[0]
    off, pairs = off + 4, []
    while off < end:
        n = buf[off]
        name = bytes(buf[off + 1:off + 1 + n]).decode()
        value, off = wire_value(buf, off + 1 + n)
        pairs.append((name, value))
    return pairs, end


def header_pairs(props):
    """The headers table of a received message as sent on the wire: [(name, (type, value))]."""
    raw = props._wire
    flags = struct.unpack_from(">H", raw, 0)[0]
    off = 2
    for flag in (pika.spec.BasicProperties.FLAG_CONTENT_TYPE, pika.spec.BasicProperties.FLAG_CONTENT_ENCODING):
        if flags & flag:
            off += 1 + raw[off]
    if not flags & pika.spec.BasicProperties.FLAG_HEADERS:
        return []
    return wire_pairs(raw, off)[0]


def wire_headers(props):
    pairs = header_pairs(props)
    names = [n for n, _ in pairs]
    assert len(names) == len(set(names)), "repeated header names: %r" % names
    return dict(pairs)


def as_wire(headers):
    """How pika puts `headers` on the wire (what a round trip has to give back)."""
    pieces = []
    pika.data.encode_table(pieces, headers)
    return dict(wire_pairs(b"".join(pieces), 0)[0])


# --------------------------------------------------------------------------------------------
# One message with every property, as each protocol publishes it
# --------------------------------------------------------------------------------------------

CT, CE, CORR, REPLY = "application/json", "gzip", "corr-42", "replies"
MSGID, TS, PRIO, TYPE, APP, CLUSTER = "msg-0001", 1700000000, 7, "order.created", "billing", "cluster-a"
USER = "guest"  # AMQP's user_id must be the authenticated user
EXPIRY_MS = 60000
HEADERS = {"color": "blue", "x-trace": "t-1"}

STOMP_FULL = {
    "content-type": CT, "content-encoding": CE, "correlation-id": CORR, "reply-to": REPLY,
    "amqp-message-id": MSGID, "timestamp": str(TS), "priority": str(PRIO), "type": TYPE, "user-id": USER,
    "app-id": APP, "cluster-id": CLUSTER, "persistent": "true", "expiration": str(EXPIRY_MS), **HEADERS,
}
MQTT_AMQP_USER_PROPERTIES = {
    "x-amqp-content-encoding": CE, "x-amqp-message-id": MSGID, "x-amqp-timestamp": str(TS),
    "x-amqp-priority": str(PRIO), "x-amqp-type": TYPE, "x-amqp-user-id": USER, "x-amqp-app-id": APP,
    "x-amqp-cluster-id": CLUSTER,
}
# What a STOMP MESSAGE carries about the delivery rather than the message.
FRAME_HEADERS = {"destination", "subscription", "message-id", "ack", "content-length", "redelivered"}


def amqp_full(headers=None):
    return pika.BasicProperties(
        content_type=CT, content_encoding=CE, headers=dict(HEADERS) if headers is None else headers,
        delivery_mode=2, priority=PRIO, correlation_id=CORR, reply_to=REPLY, expiration=str(EXPIRY_MS),
        message_id=MSGID, timestamp=TS, type=TYPE, user_id=USER, app_id=APP, cluster_id=CLUSTER)


def mqtt_props(**fields):
    props = Properties(PacketTypes.PUBLISH)
    for name, value in fields.items():
        setattr(props, name, value)
    return props


def mqtt_full():
    return mqtt_props(ContentType=CT, CorrelationData=CORR.encode(), ResponseTopic=REPLY,
                      MessageExpiryInterval=EXPIRY_MS // 1000,
                      UserProperty=list(HEADERS.items()) + list(MQTT_AMQP_USER_PROPERTIES.items()))


def prop(msg, name):
    return getattr(msg.properties, name, None) if msg.properties is not None else None


# --------------------------------------------------------------------------------------------
# Bodies: every protocol to every other, through a topic and through a queue
# --------------------------------------------------------------------------------------------

BINARY = bytes(range(256)) + b"\x00\x00\xff\xfe\x00"
BIG = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(32768))  # 1 MiB
PAYLOADS = [BINARY, b"", BIG]
PROTOCOLS = ["amqp", "stomp", "mqtt5", "mqtt311"]


def mqtt_version(proto):
    return "5" if proto == "mqtt5" else "3.1.1"


def open_body_consumer(net, proto, kind, name):
    """Subscribes `proto` to the topic `m/name` (= key m.name) or the queue `name`; returns a
    function giving the first n bodies."""
    if proto == "amqp":
        ch = net.channel()
        if kind == "topic":
            q = amqp_topic_queue(ch, "m." + name)
        else:
            q = ch.queue_declare(name, durable=True).method.queue
        return lambda n: [d.body for d in consume(ch, q, n, timeout=WAIT)]
    if proto == "stomp":
        s = net.stomp()
        s.subscribe("/topic/m." + name if kind == "topic" else "/queue/" + name)
        return lambda n: [bytes(f.body) for f in s.wait_for(n)]
    m = net.mqtt(mqtt_version(proto))
    m.subscribe("m/" + name if kind == "topic" else "$queue/" + name, 1)
    return lambda n: [bytes(x.payload) for x in m.wait_for(n)]


def publish_bodies(net, proto, kind, name, bodies):
    if proto == "amqp":
        ch = net.channel()
        for body in bodies:
            if kind == "topic":
                ch.basic_publish("amq.topic", "m." + name, body)
            else:
                ch.basic_publish("", name, body)
    elif proto == "stomp":
        s = net.stomp()
        for body in bodies:
            s.send("/topic/m." + name if kind == "topic" else "/queue/" + name, body)
    else:
        m = net.mqtt(mqtt_version(proto))
        for body in bodies:
            m.publish("m/" + name if kind == "topic" else "$queue/" + name, body, qos=1)


@pytest.mark.parametrize("kind", ["topic", "queue"])
@pytest.mark.parametrize("consumer", PROTOCOLS)
@pytest.mark.parametrize("publisher", PROTOCOLS)
def test_bodies_arrive_byte_for_byte(net, publisher, consumer, kind):
    """MQTT topic m/x = amq.topic key m.x = STOMP /topic/m.x; AMQP queue q = STOMP /queue/q =
    MQTT $queue/q. Binary with NULs and 0xff, empty, and 1 MiB."""
    name = "x" + uid()
    received = open_body_consumer(net, consumer, kind, name)
    publish_bodies(net, publisher, kind, name, PAYLOADS)
    got = received(len(PAYLOADS))
    assert [len(b) for b in got] == [len(p) for p in PAYLOADS]
    assert got == PAYLOADS


def test_one_queue_under_its_names_in_each_protocol(net):
    """AMQP queue q = STOMP /queue/q and /amq/queue/q = MQTT $queue/q, to publish and to consume."""
    q = "named-" + uid()
    ch = net.channel()
    ch.queue_declare(q, durable=True)
    s = net.stomp()
    s.send("/amq/queue/" + q, b"stomp /amq/queue")
    s.send("/queue/" + q, b"stomp /queue")
    net.mqtt("5").publish("$queue/" + q, b"mqtt $queue", qos=1)
    ch.basic_publish("", q, b"amqp")
    assert message_count(ch, q) == 4
    reader = net.stomp()
    reader.subscribe("/amq/queue/" + q)
    got = reader.wait_for(4)
    assert sorted(bytes(f.body) for f in got) == sorted([b"stomp /amq/queue", b"stomp /queue", b"mqtt $queue", b"amqp"])
    assert {f.headers["destination"] for f in got} == {"/queue/" + q}


# --------------------------------------------------------------------------------------------
# Every property, field by field, for each pair of protocols that can carry it
# --------------------------------------------------------------------------------------------

def publish_full(net, proto, key, body):
    if proto == "amqp":
        net.channel().basic_publish("amq.topic", key, body, amqp_full())
    elif proto == "stomp":
        net.stomp().send("/topic/" + key, body, STOMP_FULL)
    else:
        net.mqtt("5").publish(key.replace(".", "/"), body, qos=1, props=mqtt_full())


def open_consumer(net, proto, key):
    """Subscribes `proto` to routing key `key` (MQTT: the same topic); returns a function that
    gives the one message received."""
    if proto == "amqp":
        ch = net.channel()
        q = amqp_topic_queue(ch, key)
        return lambda: consume(ch, q, 1, timeout=WAIT)[0]
    if proto == "stomp":
        s = net.stomp()
        s.subscribe("/topic/" + key)
        return lambda: s.wait_for(1)[0]
    m = net.mqtt(mqtt_version(proto))
    m.subscribe(key.replace(".", "/"), 2)
    return lambda: m.wait_for(1)[0]


def check_amqp(d, from_mqtt):
    p, bad = d.properties, []
    want = dict(content_type=CT, content_encoding=CE, correlation_id=CORR, reply_to=REPLY, message_id=MSGID,
                timestamp=TS, priority=PRIO, type=TYPE, user_id=USER, app_id=APP, cluster_id=CLUSTER,
                delivery_mode=2, expiration=str(EXPIRY_MS))
    for field, value in want.items():
        if getattr(p, field) != value:
            bad.append("%s: expected %r, got %r" % (field, value, getattr(p, field)))
    headers = wire_headers(p)
    plain = {k: v for k, v in headers.items() if not (from_mqtt and k.startswith("x-mqtt-"))}
    expected = {k: ("S", v.encode()) for k, v in HEADERS.items()}
    if plain != expected:
        bad.append("headers: expected %r, got %r" % (expected, plain))
    if from_mqtt and headers.get("x-mqtt-publish-qos", (None, None))[1] != 1:
        bad.append("x-mqtt-publish-qos: expected a byte 1, got %r" % (headers.get("x-mqtt-publish-qos"),))
    return bad


def check_stomp(f, from_mqtt):
    h, bad = f.headers, []
    expected = {k: v for k, v in STOMP_FULL.items() if k != "expiration"}
    for name, value in expected.items():
        if h.get(name) != value:
            bad.append("%s: expected %r, got %r" % (name, value, h.get(name)))
    expiration = h.get("expiration")
    if expiration is None or not expiration.isdigit() or not 0 < int(expiration) <= EXPIRY_MS:
        bad.append("expiration: expected <= %d ms, got %r" % (EXPIRY_MS, expiration))
    # From MQTT: the x-mqtt-* headers, and x-junction-typed-headers for their byte values.
    extra = {k: v for k, v in h.items()
             if k not in expected and k not in FRAME_HEADERS and k != "expiration"
             and not (from_mqtt and (k.startswith("x-mqtt-") or k == "x-junction-typed-headers"))}
    if extra:
        bad.append("unexpected headers: %r" % extra)
    if from_mqtt and h.get("x-mqtt-publish-qos") != "1":
        bad.append("x-mqtt-publish-qos: expected '1', got %r" % h.get("x-mqtt-publish-qos"))
    return bad


def check_mqtt5(m):
    bad = []
    for name, value in (("ContentType", CT), ("CorrelationData", CORR.encode()), ("ResponseTopic", REPLY)):
        if prop(m, name) != value:
            bad.append("%s: expected %r, got %r" % (name, value, prop(m, name)))
    user = prop(m, "UserProperty") or []
    expected = dict(HEADERS, **MQTT_AMQP_USER_PROPERTIES)
    if sorted(user) != sorted(expected.items()):
        bad.append("user properties: expected %r, got %r" % (sorted(expected.items()), sorted(user)))
    expiry = prop(m, "MessageExpiryInterval")
    if expiry is None or not EXPIRY_MS // 1000 - 10 <= expiry <= EXPIRY_MS // 1000:
        bad.append("MessageExpiryInterval: expected about %d s, got %r" % (EXPIRY_MS // 1000, expiry))
    if prop(m, "PayloadFormatIndicator") is not None:
        bad.append("PayloadFormatIndicator: expected none, got %r" % prop(m, "PayloadFormatIndicator"))
    if m.qos != 1:
        bad.append("QoS: expected 1 (persistent), got %d" % m.qos)
    return bad


PAIRS = [(a, b) for a in ("amqp", "stomp", "mqtt5") for b in ("amqp", "stomp", "mqtt5") if a != b]


@pytest.mark.parametrize("publisher,consumer", PAIRS, ids=["%s-to-%s" % p for p in PAIRS])
def test_every_property_maps_field_by_field(net, publisher, consumer):
    """content type, content encoding, correlation id, reply-to / response topic, message id,
    timestamp, priority, type, user id, app id, cluster id, expiry, headers / user properties and
    persistence, published by one protocol and read by another (table in docs/mapping.md)."""
    key = "p." + uid()
    received = open_consumer(net, consumer, key)
    publish_full(net, publisher, key, b"\x00props\xff")
    msg = received()
    body = msg.body if consumer != "mqtt5" else msg.payload
    assert bytes(body) == b"\x00props\xff"
    if consumer == "amqp":
        bad = check_amqp(msg, publisher == "mqtt5")
    elif consumer == "stomp":
        bad = check_stomp(msg, publisher == "mqtt5")
    else:
        bad = check_mqtt5(msg)
    assert not bad, "%s -> %s:\n  " % (publisher, consumer) + "\n  ".join(bad)


@pytest.mark.parametrize("publisher", ["amqp", "stomp", "mqtt5"])
def test_an_mqtt_311_subscriber_gets_the_payload_and_the_qos(net, publisher):
    key = "p311." + uid()
    received = open_consumer(net, "mqtt311", key)
    publish_full(net, publisher, key, b"\x00only the body\xff")
    m = received()
    assert (m.payload, m.qos, m.retain) == (b"\x00only the body\xff", 1, False)


LEVELS = [("amqp", 1), ("amqp", 2), ("stomp", 0), ("stomp", 1), ("mqtt5", 0), ("mqtt5", 1), ("mqtt5", 2),
          ("mqtt311", 0), ("mqtt311", 1), ("mqtt311", 2)]


@pytest.mark.parametrize("publisher,level", LEVELS, ids=["%s-%s" % p for p in LEVELS])
def test_persistence_and_qos(net, publisher, level):
    """AMQP delivery_mode 2 = STOMP persistent:true = MQTT QoS >= 1; an MQTT publish's QoS also
    travels as the header x-mqtt-publish-qos."""
    key = "qos." + uid()
    consumers = {c: open_consumer(net, c, key) for c in ("amqp", "stomp", "mqtt5")}
    if publisher == "amqp":
        net.channel().basic_publish("amq.topic", key, b"m", pika.BasicProperties(delivery_mode=level))
        persistent = level == 2
    elif publisher == "stomp":
        net.stomp().send("/topic/" + key, b"m", {"persistent": "true"} if level else {})
        persistent = level == 1
    else:
        net.mqtt(mqtt_version(publisher)).publish(key.replace(".", "/"), b"m", qos=level)
        persistent = level >= 1
    from_mqtt = publisher.startswith("mqtt")
    d = consumers["amqp"]()
    assert (d.properties.delivery_mode == 2) == persistent, d.properties.delivery_mode
    if from_mqtt:
        kind, value = wire_headers(d.properties).get("x-mqtt-publish-qos", (None, None))
        assert kind in ("b", "B") and value == level, (kind, value)
    f = consumers["stomp"]()
    assert f.headers.get("persistent") == ("true" if persistent else None)
    if from_mqtt:
        assert f.headers.get("x-mqtt-publish-qos") == str(level)
    m = consumers["mqtt5"]()
    assert m.qos == (level if from_mqtt else int(persistent))


# Typed AMQP headers: what each pika value is, and its text in STOMP / MQTT.
TYPED = {
    "int": 42,                                       # I
    "big": 2 ** 40,                                  # l
    "neg": -7,                                       # I
    "flag": True,                                    # t
    "off": False,                                    # t
    "ratio": 2.5,                                    # d
    "price": decimal.Decimal("3.14"),                # D
    "when": datetime.datetime(2023, 11, 14, 22, 13, 20),  # T, 1700000000
    "nested": {"a": 1, "b": "x", "deeper": {"c": [1, 2]}},  # F
    "list": [1, "two", True, b"\x00"],               # A
    "blob": b"\x00\x01\xfe\xff",                     # x
    "none": None,                                    # V
    "plain": "text",                                 # S
}
TYPED_TEXT = {"int": "42", "big": str(2 ** 40), "neg": "-7", "flag": "true", "off": "false", "ratio": "2.5",
              "price": "3.14", "when": "1700000000", "blob": base64.b64encode(b"\x00\x01\xfe\xff").decode(),
              "plain": "text"}


def test_typed_amqp_headers_arrive_at_an_amqp_consumer_unchanged(net):
    """The control for the round trips below: AMQP -> AMQP keeps every field type."""
    q = "typed-" + uid()
    ch = net.channel()
    ch.queue_declare(q, durable=True)
    ch.basic_publish("", q, b"t", pika.BasicProperties(headers=TYPED))
    d = get_eventually(ch, q)
    assert wire_headers(d.properties) == as_wire(TYPED)


@pytest.mark.parametrize("consumer", ["stomp", "mqtt5"])
def test_typed_amqp_headers_arrive_as_text_plus_x_junction_typed_headers(net, consumer):
    key = "typed." + uid()
    received = open_consumer(net, consumer, key)
    net.channel().basic_publish("amq.topic", key, b"t", pika.BasicProperties(headers=TYPED))
    msg = received()
    if consumer == "stomp":
        text = msg.headers
    else:
        pairs = prop(msg, "UserProperty") or []
        text = dict(pairs)
        assert len(text) == len(pairs), "one user property per header: %r" % pairs
    bad = ["%s: expected %r, got %r" % (k, v, text.get(k)) for k, v in TYPED_TEXT.items() if text.get(k) != v]
    bad += ["%s: missing" % k for k in ("nested", "list", "none") if k not in text]
    typed = text.get("x-junction-typed-headers")
    if not typed:
        bad.append("x-junction-typed-headers: missing")
    else:
        try:
            base64.b64decode(typed, validate=True)
        except ValueError:
            bad.append("x-junction-typed-headers is not base64: %r" % typed)
    assert not bad, "\n  ".join(["AMQP -> %s" % consumer] + bad)


def test_binary_and_long_mqtt_correlation_data(net):
    """Correlation data that is not UTF-8, or longer than 255 bytes, is the AMQP header
    x-correlation-data (a byte array); STOMP gets no correlation-id for binary data."""
    for data in (b"\x00\xff\x10binary", b"c" * 300):
        key = "corr." + uid()
        amqp, stomp_ = open_consumer(net, "amqp", key), open_consumer(net, "stomp", key)
        net.mqtt("5").publish(key.replace(".", "/"), b"x", qos=1, props=mqtt_props(CorrelationData=data))
        d = amqp()
        assert d.properties.correlation_id is None, d.properties.correlation_id
        assert wire_headers(d.properties).get("x-correlation-data") == ("x", data)
        f = stomp_()
        if data.startswith(b"\x00"):
            assert "correlation-id" not in f.headers, f.headers.get("correlation-id")
            assert "x-junction-typed-headers" in f.headers
        else:
            assert f.headers.get("correlation-id") == data.decode()


def test_an_amqp_x_correlation_data_header_is_mqtt_correlation_data(net):
    key = "corr." + uid()
    received = open_consumer(net, "mqtt5", key)
    net.channel().basic_publish("amq.topic", key, b"x", pika.BasicProperties(headers={"x-correlation-data": b"\x00\xff"}))
    m = received()
    assert prop(m, "CorrelationData") == b"\x00\xff"
    assert not prop(m, "UserProperty"), "the header is not also a user property: %r" % prop(m, "UserProperty")


def test_payload_format_indicator_is_the_x_mqtt_payload_format_header(net):
    key = "pfi." + uid()
    amqp, stomp_ = open_consumer(net, "amqp", key), open_consumer(net, "stomp", key)
    net.mqtt("5").publish(key.replace(".", "/"), "ünïcode".encode(), qos=1, props=mqtt_props(PayloadFormatIndicator=1))
    kind, value = wire_headers(amqp().properties).get("x-mqtt-payload-format", (None, None))
    assert kind in ("b", "B") and value == 1, (kind, value)
    assert stomp_().headers.get("x-mqtt-payload-format") == "1"
    key2 = "pfi." + uid()
    received = open_consumer(net, "mqtt5", key2)
    net.channel().basic_publish("amq.topic", key2, "ü".encode(), pika.BasicProperties(headers={"x-mqtt-payload-format": 1}))
    m = received()
    assert prop(m, "PayloadFormatIndicator") == 1
    assert not prop(m, "UserProperty"), prop(m, "UserProperty")


def test_a_stomp_x_mqtt_payload_format_header_sets_the_indicator(net):
    """STOMP headers are text: `x-mqtt-payload-format:1` typed by hand (no
    x-junction-typed-headers) still means the indicator."""
    key = "pfi." + uid()
    received = open_consumer(net, "mqtt5", key)
    net.stomp().send("/topic/" + key, "ü".encode(), {"x-mqtt-payload-format": "1"})
    m = received()
    assert prop(m, "PayloadFormatIndicator") == 1
    assert not prop(m, "UserProperty"), prop(m, "UserProperty")


def test_expiry_in_each_direction(net):
    """AMQP expiration (ms, the original value) = STOMP expiration (ms) = MQTT 5 Message Expiry
    Interval (seconds left, rounded up)."""
    key = "exp." + uid()
    amqp, stomp_ = open_consumer(net, "amqp", key), open_consumer(net, "stomp", key)
    net.mqtt("5").publish(key.replace(".", "/"), b"x", qos=1, props=mqtt_props(MessageExpiryInterval=120))
    assert amqp().properties.expiration == "120000"
    assert 0 < int(stomp_().headers["expiration"]) <= 120000
    key2 = "exp." + uid()
    mqtt5, stomp2 = open_consumer(net, "mqtt5", key2), open_consumer(net, "stomp", key2)
    net.channel().basic_publish("amq.topic", key2, b"x", pika.BasicProperties(expiration="90500"))
    assert 0 < int(stomp2().headers["expiration"]) <= 90500
    assert 80 <= prop(mqtt5(), "MessageExpiryInterval") <= 91, "the seconds left, rounded up"


def test_retained_mqtt_publish_carries_x_mqtt_retain(net):
    key = "ret." + uid()
    topic = key.replace(".", "/")
    amqp, stomp_ = open_consumer(net, "amqp", key), open_consumer(net, "stomp", key)
    pub = net.mqtt("5")
    pub.publish(topic, b"kept", qos=1, retain=True)
    kind, value = wire_headers(amqp().properties).get("x-mqtt-retain", (None, None))
    assert value == 1, (kind, value)
    assert stomp_().headers.get("x-mqtt-retain") == "1"
    late = net.mqtt("5")
    late.subscribe(topic, 1)
    [m] = late.wait_for(1)
    assert (m.payload, m.retain) == (b"kept", True)
    pub.publish(topic, b"", qos=1, retain=True)  # clears it


def test_redelivered_travels_between_amqp_and_stomp(net):
    q = "redeliver-" + uid()
    ch = net.channel()
    ch.queue_declare(q, durable=True)
    ch.basic_publish("", q, b"again")
    method, _, _ = ch.basic_get(q, auto_ack=False)
    assert method is not None and not method.redelivered
    ch.close()  # unacked: back to the queue, redelivered
    s = net.stomp()
    s.subscribe("/queue/" + q, ack="client-individual")
    [f] = s.wait_for(1)
    assert f.headers.get("redelivered") == "true"
    s.conn.nack(f.headers["ack"])
    s.close()
    d = get_eventually(net.channel(), q)
    assert d.method.redelivered and d.body == b"again"


def test_repeated_mqtt_user_property_names_keep_one_value_through_amqp(net):
    key = "dup." + uid()
    amqp, mqtt5 = open_consumer(net, "amqp", key), open_consumer(net, "mqtt5", key)
    props = mqtt_props(UserProperty=[("k", "1"), ("k", "2"), ("z", "3")])
    net.mqtt("5").publish(key.replace(".", "/"), b"x", qos=1, props=props)
    assert prop(mqtt5(), "UserProperty") == [("k", "1"), ("k", "2"), ("z", "3")], "MQTT -> MQTT keeps them all, in order"
    pairs = [(n, v) for n, v in header_pairs(amqp().properties) if not n.startswith("x-mqtt-")]
    assert [n for n, _ in pairs].count("k") == 1 and dict(pairs)["k"] in (("S", b"1"), ("S", b"2")), pairs
    assert dict(pairs)["z"] == ("S", b"3")


# --------------------------------------------------------------------------------------------
# Round trips A -> B -> A through a B client that copies everything it received
# --------------------------------------------------------------------------------------------

RT_BODY = b"\x00round\xfftrip\x00"


def stomp_copy(frame):
    """Every header of a received MESSAGE for a new SEND (stomp.py sets destination and
    content-length itself)."""
    return {k: v for k, v in frame.headers.items() if k not in ("destination", "content-length")}


def mqtt_copy(received):
    props = Properties(PacketTypes.PUBLISH)
    for name in ("ContentType", "CorrelationData", "ResponseTopic", "PayloadFormatIndicator",
                 "MessageExpiryInterval"):
        if prop(received, name) is not None:
            setattr(props, name, prop(received, name))
    if prop(received, "UserProperty"):
        props.UserProperty = list(prop(received, "UserProperty"))
    return props


def assert_amqp_identity(d, sent, body, allow_extra_mqtt_headers=False):
    p, bad = d.properties, []
    if d.body != body:
        bad.append("body: %r != %r" % (d.body[:40], body[:40]))
    for field in ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                  "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"):
        if getattr(p, field) != getattr(sent, field):
            bad.append("%s: sent %r, got back %r" % (field, getattr(sent, field), getattr(p, field)))
    if p.expiration is None or not p.expiration.isdigit() or not 0 < int(p.expiration) <= int(sent.expiration):
        bad.append("expiration: sent %r, got back %r" % (sent.expiration, p.expiration))
    got = wire_headers(p)
    if allow_extra_mqtt_headers:
        got = {k: v for k, v in got.items() if not (k.startswith("x-mqtt-") and k not in sent.headers)}
    want = as_wire(sent.headers)
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            bad.append("header %s: sent %r, got back %r" % (name, want.get(name), got.get(name)))
    assert not bad, "\n  ".join(["not the identity:"] + bad)


def test_round_trip_amqp_stomp_amqp(net):
    src, dst = "rt-src-" + uid(), "rt-dst-" + uid()
    ch = net.channel()
    ch.queue_declare(src, durable=True)
    ch.queue_declare(dst, durable=True)
    s = net.stomp()
    s.subscribe("/queue/" + src)
    sent = amqp_full(headers=dict(HEADERS, **TYPED))
    ch.basic_publish("", src, RT_BODY, sent)
    [frame] = s.wait_for(1)
    s.send("/queue/" + dst, frame.body, stomp_copy(frame))
    assert_amqp_identity(get_eventually(ch, dst), sent, RT_BODY)


def test_round_trip_amqp_mqtt5_amqp(net):
    rid = uid()
    ch = net.channel()
    back = amqp_topic_queue(ch, "rt.%s.out" % rid)
    m = net.mqtt("5")
    m.subscribe("rt/%s/in" % rid, 1)
    sent = amqp_full(headers=dict(HEADERS, **TYPED))
    ch.basic_publish("amq.topic", "rt.%s.in" % rid, RT_BODY, sent)
    [msg] = m.wait_for(1)
    m.publish("rt/%s/out" % rid, msg.payload, qos=msg.qos, props=mqtt_copy(msg))
    # An MQTT publish always adds x-mqtt-publish-qos (and the like): allowed on top.
    assert_amqp_identity(get_eventually(ch, back), sent, RT_BODY, allow_extra_mqtt_headers=True)


MQTT_RT_USER = [("color", "blue"), ("x-trace", "t-1"), ("unicode", "température °C"), ("x-amqp-type", "evt"),
                ("empty", ""), ("colon", "a:b")]
MQTT_RT_PAYLOAD = "héllo wörld".encode()


def mqtt_rt_props(rid):
    return mqtt_props(ContentType="text/plain; charset=utf-8", CorrelationData=b"\x00\xffbin",
                      ResponseTopic="resp/%s/x.y" % rid, PayloadFormatIndicator=1, MessageExpiryInterval=120,
                      UserProperty=list(MQTT_RT_USER))


def assert_mqtt_identity(m, rid):
    bad = []
    if m.payload != MQTT_RT_PAYLOAD:
        bad.append("payload: %r" % m.payload)
    if m.qos != 1:
        bad.append("QoS: sent 1, got back %d" % m.qos)
    for name, value in (("ContentType", "text/plain; charset=utf-8"), ("CorrelationData", b"\x00\xffbin"),
                        ("ResponseTopic", "resp/%s/x.y" % rid), ("PayloadFormatIndicator", 1)):
        if prop(m, name) != value:
            bad.append("%s: sent %r, got back %r" % (name, value, prop(m, name)))
    expiry = prop(m, "MessageExpiryInterval")
    if expiry is None or not 0 < expiry <= 120:
        bad.append("MessageExpiryInterval: sent 120, got back %r" % expiry)
    user = prop(m, "UserProperty") or []
    if sorted(user) != sorted(MQTT_RT_USER):
        bad.append("user properties: sent %r, got back %r" % (sorted(MQTT_RT_USER), sorted(user)))
    assert not bad, "\n  ".join(["not the identity:"] + bad)


def test_round_trip_mqtt5_amqp_mqtt5(net):
    rid = uid()
    out = net.mqtt("5")
    out.subscribe("rt/%s/out" % rid, 1)
    ch = net.channel()
    q = amqp_topic_queue(ch, "rt.%s.in" % rid)
    net.mqtt("5").publish("rt/%s/in" % rid, MQTT_RT_PAYLOAD, qos=1, props=mqtt_rt_props(rid))
    d = get_eventually(ch, q)
    ch.basic_publish("amq.topic", "rt.%s.out" % rid, d.body, d.properties)  # every property and header copied
    [m] = out.wait_for(1)
    assert_mqtt_identity(m, rid)


def test_round_trip_mqtt5_stomp_mqtt5(net):
    rid = uid()
    out = net.mqtt("5")
    out.subscribe("rt/%s/out" % rid, 1)
    s = net.stomp()
    s.subscribe("/topic/rt.%s.in" % rid)
    net.mqtt("5").publish("rt/%s/in" % rid, MQTT_RT_PAYLOAD, qos=1, props=mqtt_rt_props(rid))
    [frame] = s.wait_for(1)
    s.send("/topic/rt.%s.out" % rid, frame.body, stomp_copy(frame))
    [m] = out.wait_for(1)
    assert_mqtt_identity(m, rid)


def test_round_trip_stomp_amqp_stomp(net):
    src, dst = "rt-src-" + uid(), "rt-dst-" + uid()
    ch = net.channel()
    ch.queue_declare(src, durable=True)
    ch.queue_declare(dst, durable=True)
    sub = net.stomp()
    sub.subscribe("/queue/" + dst)
    sent = dict(STOMP_FULL, **{"reply-to": "/queue/replies", "x-escaped": "a:b\\c\nd", "empty": ""})
    net.stomp().send("/queue/" + src, RT_BODY, sent)
    d = get_eventually(ch, src)
    ch.basic_publish("", dst, d.body, d.properties)  # every property and header copied
    [f] = sub.wait_for(1)
    bad = [] if bytes(f.body) == RT_BODY else ["body: %r" % f.body]
    for name, value in sent.items():
        if name != "expiration" and f.headers.get(name) != value:
            bad.append("%s: sent %r, got back %r" % (name, value, f.headers.get(name)))
    expiration = f.headers.get("expiration", "")
    if not expiration.isdigit() or not 0 < int(expiration) <= EXPIRY_MS:
        bad.append("expiration: sent %d, got back %r" % (EXPIRY_MS, expiration))
    extra = {k: v for k, v in f.headers.items() if k not in sent and k not in FRAME_HEADERS}
    if extra:
        bad.append("headers not sent: %r" % extra)
    assert not bad, "\n  ".join(["not the identity:"] + bad)


# --------------------------------------------------------------------------------------------
# Topics and routing keys (own broker: these subscribe to everything)
# --------------------------------------------------------------------------------------------

VECTORS = [
    ("a/b", "a.b"),
    ("sensor/1.5", "sensor.1%2E5"),
    ("spBv1.0/group/NDATA/node", "spBv1%2E0.group.NDATA.node"),
    ("/leading", ".leading"),
    ("trailing/", "trailing."),
    ("a//b", "a..b"),
    ("100%/done", "100%.done"),
    ("%25/%2E", "%2525.%252E"),
    ("température/°C", "température.°C"),
    ("a/*", "a.%2A"),
    ("api%2Fv1/x", "api/v1.x"),
    ("a%2B/b", "a+.b"),
    ("c%23", "c#"),
]


def test_mqtt_topics_become_routing_keys_and_come_back(own_net):
    """MQTT publish on each vector topic: AMQP (bound with #) sees the routing key, STOMP
    (/topic/#) the destination /topic/<key>; republished by AMQP with that key, MQTT sees the
    original topic byte for byte."""
    net = own_net
    ch = net.channel()
    q = amqp_topic_queue(ch, "#")
    s = net.stomp()
    s.subscribe("/topic/#")
    watcher = net.mqtt("5")
    watcher.subscribe("#", 1)
    pub = net.mqtt("5")
    for i, (topic, _) in enumerate(VECTORS):
        pub.publish(topic, b"v%d" % i, qos=1)
    n = len(VECTORS)
    bad = []
    amqp_got = {d.body: d.method.routing_key for d in amqp_collect(ch, q, n)}
    stomp_got = {bytes(f.body): f.headers["destination"] for f in s.wait_for(n, strict=False)}
    for i, (topic, key) in enumerate(VECTORS):
        if amqp_got.get(b"v%d" % i) != key:
            bad.append("MQTT %r -> AMQP: expected %r, got %r" % (topic, key, amqp_got.get(b"v%d" % i)))
        if stomp_got.get(b"v%d" % i) != "/topic/" + key:
            bad.append("MQTT %r -> STOMP: expected %r, got %r" % (topic, "/topic/" + key, stomp_got.get(b"v%d" % i)))
    for body, key in amqp_got.items():
        ch.basic_publish("amq.topic", key, b"back-" + body)
    mqtt_got = {m.payload: m.topic for m in watcher.wait_for(n + len(amqp_got), strict=False)}
    for i, (topic, _) in enumerate(VECTORS):
        if mqtt_got.get(b"v%d" % i) != topic:
            bad.append("MQTT %r -> MQTT: got %r" % (topic, mqtt_got.get(b"v%d" % i)))
        if b"v%d" % i in amqp_got and mqtt_got.get(b"back-v%d" % i) != topic:
            bad.append("MQTT %r -> AMQP -> MQTT: got %r" % (topic, mqtt_got.get(b"back-v%d" % i)))
    assert not bad, "\n  ".join(["topic mapping:"] + bad)


# AMQP -> MQTT: the vectors, and a word holding the literal text of an escape (the documented
# exception: `a%25b` reaches MQTT as `a%b` and comes back as `a%b`).
KEYS = [(key, topic, key) for topic, key in VECTORS] + [("x.a%25b", "x/a%b", "x.a%b")]


@pytest.mark.parametrize("publisher", ["amqp", "stomp"])
def test_routing_keys_become_mqtt_topics_and_come_back(own_net, publisher):
    """AMQP publishes (or STOMP sends to /topic/<key>) each key: MQTT 5 and 3.1.1 subscribers on
    `#` see the expected topic; republished by MQTT, AMQP sees the key again."""
    net = own_net
    subs = [net.mqtt("5"), net.mqtt("3.1.1")]
    for m in subs:
        m.subscribe("#", 1)
    ch = net.channel()
    q = amqp_topic_queue(ch, "#")
    if publisher == "amqp":
        pch = net.channel()
        for i, (key, _, _) in enumerate(KEYS):
            pch.basic_publish("amq.topic", key, b"k%d" % i)
    else:
        s = net.stomp()
        for i, (key, _, _) in enumerate(KEYS):
            s.send("/topic/" + key, b"k%d" % i)
    n = len(KEYS)
    bad = []
    got = {}
    for m in subs:
        got = {x.payload: x.topic for x in m.wait_for(n, strict=False)}
        for i, (key, topic, _) in enumerate(KEYS):
            if got.get(b"k%d" % i) != topic:
                bad.append("%s %r -> MQTT %s: expected %r, got %r"
                           % (publisher, key, "5" if m.v5 else "3.1.1", topic, got.get(b"k%d" % i)))
    amqp_collect(ch, q, n)  # the originals
    by_body = {x.payload: x.topic for x in subs[0].wait_for(n, strict=False)}
    sent = 0
    for i, (key, _, _) in enumerate(KEYS):
        topic = by_body.get(b"k%d" % i)
        if topic is None or "+" in topic or "#" in topic:
            continue  # reported above; MQTT cannot publish to it
        subs[0].publish(topic, b"back-k%d" % i, qos=1)
        sent += 1
    back = {d.body: d.method.routing_key for d in amqp_collect(ch, q, sent)}
    for i, (key, _, again) in enumerate(KEYS):
        if back.get(b"back-k%d" % i) != again:
            bad.append("%s %r -> MQTT -> AMQP: expected %r, got %r" % (publisher, key, again, back.get(b"back-k%d" % i)))
    assert not bad, "\n  ".join(["routing key mapping:"] + bad)


# --------------------------------------------------------------------------------------------
# One queue, consumers of all three protocols (own broker: fixed queue names)
# --------------------------------------------------------------------------------------------

def test_competing_consumers_of_all_three_protocols_share_one_queue(own_net):
    net = own_net
    q = "q"
    ch = net.channel()
    ch.queue_declare(q, durable=True)
    amqp_got = []
    cch = net.channel()
    cch.basic_qos(prefetch_count=10)

    def on_amqp(c, method, _props, body):
        amqp_got.append(body)
        c.basic_ack(method.delivery_tag)

    tag = cch.basic_consume(q, on_amqp)
    s = net.stomp(ack_in_listener=True)
    s.subscribe("/queue/" + q, ack="client-individual", **{"prefetch-count": "10"})
    m = net.mqtt("5")
    m.subscribe("$queue/" + q, 1)

    pch = net.channel()
    for i in range(30):
        pch.basic_publish("", q, b"amqp-%d" % i, pika.BasicProperties(delivery_mode=2))
    sp = net.stomp()
    for i in range(30):
        sp.send("/queue/" + q, b"stomp-%d" % i, {"persistent": "true"}, receipt=i == 29)
    mp = net.mqtt("3.1.1")
    for i in range(30):
        mp.publish("$queue/" + q, b"mqtt-%d" % i, qos=1)

    def total():
        return len(amqp_got) + len(s.messages) + len(m.messages)

    wait_until(cch.connection, lambda: total() >= 90, 2 * WAIT, "90 messages over three consumers")
    idle(cch.connection, 0.3)  # nothing more (no duplicates) arrives
    stomp_got = [bytes(f.body) for f in s.wait_for(0)]
    mqtt_got = [bytes(x.payload) for x in m.wait_for(0)]
    everything = amqp_got + stomp_got + mqtt_got
    expected = [b"%s-%d" % (p, i) for p in (b"amqp", b"stomp", b"mqtt") for i in range(30)]
    assert sorted(everything) == sorted(expected), "each message exactly once"
    counts = {"amqp": len(amqp_got), "stomp": len(stomp_got), "mqtt": len(mqtt_got)}
    assert all(counts.values()), counts
    cch.basic_cancel(tag)
    s.close()
    m.close()
    idle(ch.connection, 0.5)  # unacked messages of a closed consumer would be back by now
    assert message_count(ch, q) == 0, "every protocol's acks removed its messages"


def test_a_share_group_queue_is_consumed_by_amqp_and_stomp_next_to_the_mqtt_member(own_net):
    net = own_net
    member = net.mqtt("5")
    member.subscribe("$share/g1/s/+", 1)
    q = "mqtt-share-g1-s/+"
    ch = net.channel()
    assert message_count(ch, q) == 0, "the group's queue exists under its documented name"
    amqp_got = []
    cch = net.channel()
    cch.basic_qos(prefetch_count=5)

    def on_amqp(c, method, _props, body):
        amqp_got.append((method.exchange, method.routing_key, body))
        c.basic_ack(method.delivery_tag)

    cch.basic_consume(q, on_amqp)
    s = net.stomp(ack_in_listener=True)
    s.subscribe("/amq/queue/" + q, ack="client-individual", **{"prefetch-count": "5"})
    pub = net.mqtt("3.1.1")
    for i in range(30):
        pub.publish("s/%d" % i, b"%d" % i, qos=1)
    pub.publish("other/1", b"not matched", qos=1)

    def total():
        return len(amqp_got) + len(s.messages) + len(member.messages)

    wait_until(cch.connection, lambda: total() >= 30, 2 * WAIT, "30 messages over three consumers")
    idle(cch.connection, 0.3)
    stomp_got = s.wait_for(0)
    member_got = member.wait_for(0)
    bodies = [b for _, _, b in amqp_got] + [bytes(f.body) for f in stomp_got] + [x.payload for x in member_got]
    assert sorted(bodies) == sorted(b"%d" % i for i in range(30)), "each message exactly once"
    assert amqp_got and stomp_got and member_got, (len(amqp_got), len(stomp_got), len(member_got))
    assert all((x, k) == ("amq.topic", "s." + b.decode()) for x, k, b in amqp_got)
    assert all(f.headers["destination"] == "/topic/s." + bytes(f.body).decode() for f in stomp_got)
    assert all(x.topic == "s/" + x.payload.decode() for x in member_got)
    assert message_count(ch, q) == 0


def test_a_claimed_user_id_must_be_the_publishers_own(broker):
    """As for AMQP's user_id: STOMP `user-id` and the MQTT 5 `x-amqp-user-id` user property may
    only name the logged-in user, so that consumers can trust them."""
    from test_stomp import Client as StompClient
    ch = broker.connect().channel()
    ch.queue_declare("uid")
    s = StompClient(broker)
    s.send("/queue/uid", "mine", **{"user-id": "guest"})
    s.conn.send("/queue/uid", "forged", headers={"user-id": "admin"})
    error = s.wait_for("errors")[0]
    assert "user_id property set to 'admin' but authenticated user was 'guest'" in error.body
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="uid-check", protocol=mqtt.MQTTv5)
    acks, done = [], threading.Event()
    c.on_publish = lambda client, userdata, mid, reason_code, properties: (acks.append(reason_code.value), done.set())
    c.connect("127.0.0.1", broker.mqtt_port)
    c.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("x-amqp-user-id", "admin")
    c.publish("$queue/uid", b"forged", qos=1, properties=props)
    assert done.wait(10)
    done.clear()
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("x-amqp-user-id", "guest"), ("x-amqp-user-id", "admin")]
    c.publish("$queue/uid", b"forged twice", qos=1, properties=props)
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()
    assert acks == [0x87, 0x87]
    method, props, body = ch.basic_get("uid", auto_ack=True)
    assert body == b"mine" and props.user_id == "guest"
    assert message_count(ch, "uid") == 0, "neither forged message was routed"
