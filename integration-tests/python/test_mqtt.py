"""MQTT with paho-mqtt (3.1, 3.1.1 and 5.0) against Junction, and across to AMQP with pika."""
import socket
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from helpers import wait_message_count

pytestmark = pytest.mark.junction_only

VERSIONS = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}
WAIT = 10


class Client:
    """A paho client with its network loop in a thread and received messages in a list."""

    def __init__(self, broker, client_id=None, version="3.1.1", clean=True, will=None, expiry=None, user=None):
        self.version = VERSIONS[version]
        self.client_id = client_id or "c-" + uuid.uuid4().hex[:8]
        kwargs = {"clean_session": clean} if self.version != mqtt.MQTTv5 else {}
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.version, **kwargs)
        self.messages, self.lock = [], threading.Lock()
        self.connected, self.disconnected = threading.Event(), threading.Event()
        self.connack = None
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.disconnect_reason = None
        self.c.on_disconnect = self._on_disconnect
        if user:
            self.c.username_pw_set(*user)
        if will:
            self.c.will_set(*will)
        props = None
        if self.version == mqtt.MQTTv5 and expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        self.c.connect("127.0.0.1", broker.mqtt_port, keepalive=30,
                       **({"clean_start": clean, "properties": props} if self.version == mqtt.MQTTv5 else {}))
        self.c.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = (flags, reason_code)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code.value
        self.disconnected.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append(msg)

    def subscribe(self, topic, qos=0):
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos)
        assert done.wait(WAIT), "no SUBACK"

    def publish(self, topic, payload, qos=0, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(WAIT)
            assert info.is_published()

    def wait_for(self, n):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError("expected %d messages, got %r" % (n, [m.payload for m in self.messages]))

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.parametrize("version", ["3.1", "3.1.1", "5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_subscribe_each_version_and_qos(broker, version, qos):
    sub = Client(broker, version=version)
    sub.subscribe("sensors/+/temp", qos)
    pub = Client(broker, version=version)
    pub.publish("sensors/kitchen/temp", b"21.5", qos=qos)
    pub.publish("sensors/kitchen/humidity", b"40", qos=qos)
    pub.publish("sensors/hall/temp", b"19.0", qos=qos)
    got = sub.wait_for(2)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("sensors/kitchen/temp", b"21.5", qos), ("sensors/hall/temp", b"19.0", qos)]
    sub.close()
    pub.close()


def test_retained_messages_reach_wildcard_subscribers_and_can_be_cleared(broker):
    pub = Client(broker)
    pub.publish("home/lights/kitchen", b"on", qos=1, retain=True)
    pub.publish("home/lights/hall", b"off", qos=1, retain=True)
    sub = Client(broker)
    sub.subscribe("home/#", 1)
    got = sub.wait_for(2)
    assert sorted((m.topic, m.payload, m.retain) for m in got) == [
        ("home/lights/hall", b"off", True), ("home/lights/kitchen", b"on", True)]
    pub.publish("home/lights/hall", b"", qos=1, retain=True)
    late = Client(broker)
    late.subscribe("home/lights/+", 0)
    assert [(m.topic, m.payload) for m in late.wait_for(1)] == [("home/lights/kitchen", b"on")]
    time.sleep(0.2)
    assert len(late.messages) == 1


def test_wildcards_do_not_match_dollar_topics(broker):
    sub = Client(broker)
    sub.subscribe("#", 0)
    pub = Client(broker)
    pub.publish("$internal/x", b"hidden", qos=1)
    pub.publish("visible", b"seen", qos=1)
    assert [m.topic for m in sub.wait_for(1)] == ["visible"]
    time.sleep(0.2)
    assert len(sub.messages) == 1


def test_persistent_session_gets_messages_published_while_offline_even_after_kill9(broker):
    first = Client(broker, client_id="keeper", clean=False)
    first.subscribe("jobs/#", 1)
    first.close()
    pub = Client(broker)
    for i in range(5):
        pub.publish("jobs/%d" % i, b"job %d" % i, qos=1)
    pub.close()
    broker.kill9()
    broker.restart()
    again = Client(broker, client_id="keeper", clean=False)
    assert again.connack[0].session_present
    got = again.wait_for(5)
    assert [m.payload for m in got] == [b"job %d" % i for i in range(5)]


def test_mqtt5_session_expiry_and_clean_start(broker):
    c = Client(broker, client_id="exp5", version="5", clean=True, expiry=300)
    c.subscribe("t/#", 1)
    c.close()
    Client(broker).publish("t/1", b"kept", qos=1)
    back = Client(broker, client_id="exp5", version="5", clean=False, expiry=300)
    assert back.connack[0].session_present
    assert [m.payload for m in back.wait_for(1)] == [b"kept"]
    back.close()
    fresh = Client(broker, client_id="exp5", version="5", clean=True, expiry=0)
    assert not fresh.connack[0].session_present


def test_will_is_published_when_the_client_vanishes(broker):
    watcher = Client(broker)
    watcher.subscribe("status/+", 1)
    doomed = Client(broker, will=("status/doomed", b"gone", 1, False))
    doomed.c.loop_stop()
    doomed.c.socket().close()  # no DISCONNECT: an abnormal end
    assert [(m.topic, m.payload) for m in watcher.wait_for(1)] == [("status/doomed", b"gone")]
    polite = Client(broker, will=("status/polite", b"gone", 1, False))
    polite.close()
    time.sleep(0.3)
    assert len(watcher.messages) == 1, "a clean DISCONNECT discards the will"


def test_a_client_that_shuts_its_socket_down_mid_delivery_is_heard_out(broker):
    """More than the sockets' buffers hold is in flight to a persistent session (64 messages of
    1 MiB, its in-flight window, of 80 queued) when the client takes ten, acknowledges them,
    sends DISCONNECT and shuts its socket down without closing it: the broker, still waiting to
    write, must take the PUBACKs and the DISCONNECT (so the will is not published) and notice
    the hang-up well before the write-stall timeout (30 s), with the rest queued again."""
    from test_mqtt_malformed import connect_packet, raw, remaining_length, split_packets, utf8
    sub = raw(broker)
    sub.sendall(bytes(connect_packet(client_id="stall")).replace(b"MQTT\x04\x02", b"MQTT\x04\x00"))
    assert sub.recv(4)[0] == 0x20, "CONNACK"
    sub.sendall(b"\x82" + remaining_length(2 + 2 + 7 + 1) + b"\x00\x01" + utf8("stall/t") + b"\x01")
    assert sub.recv(5) == b"\x90\x03\x00\x01\x01", "SUBACK, QoS 1"
    sub.sendall(b"\xe0\x00")
    sub.close()
    ch = broker.connect().channel()
    ch.confirm_delivery()
    for i in range(80):
        ch.basic_publish("amq.topic", "stall.t", b"m%05d" % i + b"." * (1 << 20), pika.BasicProperties(delivery_mode=2))
    watcher = Client(broker)
    watcher.subscribe("status/stall", 1)
    will_flag, no_clean_session = 0x04, 0x00
    body = utf8("MQTT") + bytes([4, will_flag | no_clean_session]) + b"\x00\x1e" + utf8("stall")
    body += utf8("status/stall") + utf8("gone")
    s = raw(broker)
    s.sendall(b"\x10" + remaining_length(len(body)) + body)
    data, publishes = b"", []
    while len(publishes) < 10:
        chunk = s.recv(65536)
        assert chunk, "closed"
        data += chunk
        publishes = [body for first, body in split_packets(data) if first & 0xF0 == 0x30]
    packet_ids = [body[2 + int.from_bytes(body[:2], "big"):][:2] for body in publishes[:10]]
    s.sendall(b"".join(b"\x40\x02" + pid for pid in packet_ids) + b"\xe0\x00")
    s.shutdown(socket.SHUT_RDWR)
    wait_message_count(ch, "mqtt-session-stall", 80 - 10, timeout=WAIT)  # the unacknowledged back
    time.sleep(0.3)
    assert watcher.messages == [], "DISCONNECT came before the hang-up: no will"
    s.close()


def test_a_connect_larger_than_the_first_read_buffer_is_read_whole(broker):
    # The broker reads CONNECT into a small buffer (idle connections stay cheap); a larger one,
    # here a 16 KiB will, must still arrive whole.
    watcher = Client(broker)
    watcher.subscribe("status/+", 1)
    payload = bytes(range(256)) * 64
    doomed = Client(broker, will=("status/big", payload, 1, False))
    doomed.c.loop_stop()
    doomed.c.socket().close()
    assert [(m.topic, m.payload) for m in watcher.wait_for(1)] == [("status/big", payload)]


def test_session_takeover_closes_the_first_connection(broker):
    a = Client(broker, client_id="dup", version="5")
    b = Client(broker, client_id="dup", version="5")
    assert a.disconnected.wait(WAIT)
    assert a.disconnect_reason == 0x8E, "DISCONNECT: session taken over"
    b.subscribe("x", 0)
    Client(broker).publish("x", b"to b", qos=1)
    assert [m.payload for m in b.wait_for(1)] == [b"to b"]


def test_shared_subscription_balances_between_members(broker):
    members = [Client(broker, version="5"), Client(broker, version="5")]
    for m in members:
        m.subscribe("$share/workers/tasks/#", 1)
    pub = Client(broker)
    for i in range(10):
        pub.publish("tasks/%d" % i, b"%d" % i, qos=1)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and sum(len(m.messages) for m in members) < 10:
        time.sleep(0.05)
    counts = [len(m.messages) for m in members]
    assert sum(counts) == 10 and min(counts) >= 3, counts


def test_queue_topic_reaches_an_amqp_consumer_and_back(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("q-mqtt", durable=True)
    pub = Client(broker)
    pub.publish("$queue/q-mqtt", b"from mqtt", qos=1)
    deadline = time.monotonic() + WAIT
    got = None
    while got is None and time.monotonic() < deadline:
        got = ch.basic_get("q-mqtt", auto_ack=True)[2]
        time.sleep(0.05)
    assert got == b"from mqtt"
    sub = Client(broker)
    sub.subscribe("$queue/q-mqtt", 1)
    ch.basic_publish("", "q-mqtt", b"from amqp", pika.BasicProperties(delivery_mode=2))
    assert [m.payload for m in sub.wait_for(1)] == [b"from amqp"]


def test_dotted_topic_round_trips_through_amqp(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", "spBv1%2E0.#")
    sub = Client(broker)
    sub.subscribe("spBv1.0/#", 1)
    Client(broker).publish("spBv1.0/group/NDATA/node", b"\x00payload", qos=1)
    deadline = time.monotonic() + WAIT
    body = None
    while body is None and time.monotonic() < deadline:
        method, _, body = ch.basic_get(q, auto_ack=True)
        time.sleep(0.05)
    assert method.routing_key == "spBv1%2E0.group.NDATA.node"
    ch.basic_publish("amq.topic", method.routing_key, b"back")
    got = sub.wait_for(2)
    assert [(m.topic, m.payload) for m in got] == [
        ("spBv1.0/group/NDATA/node", b"\x00payload"), ("spBv1.0/group/NDATA/node", b"back")]


def test_bad_password_is_refused(broker):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bad", protocol=mqtt.MQTTv311)
    c.username_pw_set("guest", "wrong")
    codes = []
    c.on_connect = lambda cl, u, f, rc, p: codes.append(rc)
    c.connect("127.0.0.1", broker.mqtt_port)
    c.loop_start()
    deadline = time.monotonic() + WAIT
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    assert codes and codes[0].value == 134  # "bad user name or password" (3.1.1 code 4)


def test_sys_topics_report_broker_statistics(broker):
    sub = Client(broker)
    sub.subscribe("$SYS/broker/#", 0)
    Client(broker).publish("counted", b"x", qos=1)
    # Retained values arrive at once; fresh ones every few seconds.
    deadline = time.monotonic() + WAIT
    latest = {}
    while time.monotonic() < deadline:
        with sub.lock:
            latest = {m.topic: m.payload for m in sub.messages}
        if int(latest.get("$SYS/broker/messages/received", b"0")) >= 1:
            break
        time.sleep(0.1)
    assert latest["$SYS/broker/version"].startswith(b"Junction")
    assert int(latest["$SYS/broker/clients/connected"]) >= 1
    assert int(latest["$SYS/broker/messages/received"]) >= 1
    assert "$SYS/broker/uptime" in latest


@pytest.mark.parametrize("version", ["3.1.1", "5"])
def test_mqtt_over_websocket(broker, version):
    got, done = [], threading.Event()
    ws = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ws-" + version, protocol=VERSIONS[version],
                     transport="websockets")
    ws.ws_set_options(path="/mqtt")
    ws.on_message = lambda c, u, m: (got.append((m.topic, m.payload)), done.set())
    ws.on_subscribe = lambda *a: subscribed.set()
    subscribed = threading.Event()
    ws.connect("127.0.0.1", broker.http_port)
    ws.loop_start()
    ws.subscribe("ws/+", 1)
    assert subscribed.wait(WAIT)
    tcp = Client(broker)
    tcp.publish("ws/hello", b"\x00binary over tcp", qos=1)
    assert done.wait(WAIT)
    assert got == [("ws/hello", b"\x00binary over tcp")]
    # And the other way: a WebSocket publish reaches a TCP subscriber.
    tcp.subscribe("from/ws", 1)
    ws.publish("from/ws", b"x" * 70000, qos=1).wait_for_publish(WAIT)
    assert [m.payload for m in tcp.wait_for(1)] == [b"x" * 70000]
    ws.disconnect()
    ws.loop_stop()


def test_mqtt5_resume_without_expiry_keeps_queued_messages(broker):
    a = Client(broker, client_id="resume5", version="5", clean=True, expiry=99999)
    a.subscribe("r5/+", 1)
    a.close()
    Client(broker).publish("r5/x", b"queued", qos=1)
    back = Client(broker, client_id="resume5", version="5", clean=False)  # no expiry: ends at disconnect
    assert back.connack[0].session_present
    assert [m.payload for m in back.wait_for(1)] == [b"queued"]


def test_retain_as_published(broker):
    from paho.mqtt.subscribeoptions import SubscribeOptions
    sub = Client(broker, version="5")
    done = threading.Event()
    sub.c.on_subscribe = lambda *a: done.set()
    sub.c.subscribe("rap/t", options=SubscribeOptions(qos=1, retainAsPublished=True))
    assert done.wait(WAIT)
    pub = Client(broker, version="5")
    pub.publish("rap/t", b"plain", qos=1)
    pub.publish("rap/t", b"retained", qos=1, retain=True)
    got = sub.wait_for(2)
    assert [(m.payload, m.retain) for m in got] == [(b"plain", False), (b"retained", True)]


def test_message_expiry_counts_down_while_queued_and_across_a_restart(broker):
    a = Client(broker, client_id="expiring", version="5", clean=True, expiry=3600)
    a.subscribe("exp/+", 1)
    a.close()
    pub = Client(broker, version="5")
    for topic, interval in (("exp/short", 1), ("exp/long", 30)):
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = interval
        pub.c.publish(topic, b"x", qos=1, properties=props).wait_for_publish(WAIT)
    pub.close()
    time.sleep(1.2)
    broker.restart()
    time.sleep(1.0)
    back = Client(broker, client_id="expiring", version="5", clean=False, expiry=3600)
    got = back.wait_for(1)
    time.sleep(0.3)
    assert [m.topic for m in back.messages] == ["exp/long"], "the expired message is not forwarded"
    left = got[0].properties.MessageExpiryInterval
    assert 25 <= left <= 28, "forwarded with the interval left (%s)" % left


def test_server_keep_alive_caps_a_v5_clients_keep_alive(broker_factory, tmp_path):
    cfg = tmp_path / "j.toml"
    cfg.write_text("[mqtt]\nmax_keep_alive = 60\n")
    b = broker_factory("--config", str(cfg))
    got = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ka", protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, u, flags, rc, props: got.update(props=props)
    c.connect("127.0.0.1", b.mqtt_port, keepalive=120)
    c.loop_start()
    deadline = time.monotonic() + WAIT
    while "props" not in got and time.monotonic() < deadline:
        time.sleep(0.02)
    c.disconnect()
    c.loop_stop()
    assert got["props"].ServerKeepAlive == 60


def test_v5_empty_client_id_with_clean_start_0_gets_an_assigned_id(broker):
    got = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, u, flags, rc, props: got.update(rc=rc, props=props, flags=flags)
    c.connect("127.0.0.1", broker.mqtt_port, clean_start=False)
    c.loop_start()
    deadline = time.monotonic() + WAIT
    while "rc" not in got and time.monotonic() < deadline:
        time.sleep(0.02)
    c.disconnect()
    c.loop_stop()
    assert got["rc"] == 0 and not got["flags"].session_present
    assert got["props"].AssignedClientIdentifier


def test_a_full_offline_queue_drops_the_oldest_and_counts_them(broker_factory, tmp_path):
    cfg = tmp_path / "j.toml"
    cfg.write_text("[mqtt]\nmax_queued_messages = 3\n")
    b = broker_factory("--config", str(cfg))
    away = Client(b, client_id="away", clean=False)
    away.subscribe("full/t", 1)
    away.close()
    pub = Client(b)
    for i in range(5):
        pub.publish("full/t", b"m%d" % i, qos=1)
    back = Client(b, client_id="away", clean=False)
    assert [m.payload for m in back.wait_for(3)] == [b"m2", b"m3", b"m4"], "the oldest two were dropped"
    sys = Client(b)
    sys.subscribe("$SYS/broker/publish/messages/dropped", 0)  # retained: arrives at once
    assert int(sys.wait_for(1)[-1].payload) >= 2 or _dropped_after_refresh(sys) >= 2


def _dropped_after_refresh(sys_client):
    """The statistic is refreshed every 5 s; wait for the next one."""
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        with sys_client.lock:
            if int(sys_client.messages[-1].payload) >= 2:
                return int(sys_client.messages[-1].payload)
        time.sleep(0.1)
    return int(sys_client.messages[-1].payload)


def test_connections_keep_working_after_idling_long_enough_to_free_their_buffers(broker):
    """An MQTT connection idle for 1 s gives its read and write buffers back; what comes after
    (a large publish read in many pieces, a packet split across a pause) must arrive intact."""
    sub = Client(broker)
    sub.subscribe("idle/#", 1)
    pub = Client(broker)
    time.sleep(1.5)
    big = bytes(range(256)) * 1200  # 300 KiB: read into a buffer that starts empty again
    pub.publish("idle/big", big, qos=1)
    assert sub.wait_for(1)[0].payload == big
    time.sleep(1.5)
    pub.publish("idle/small", b"after another pause", qos=1)
    assert sub.wait_for(2)[1].payload == b"after another pause"
    # A packet whose first half comes before the idle release and the rest after it.
    raw = socket.create_connection(("127.0.0.1", broker.mqtt_port), timeout=WAIT)
    raw.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04rawc")
    assert raw.recv(4) == b"\x20\x02\x00\x00"
    publish = b"\x30\x10\x00\x08idle/raw" + b"split!"
    raw.sendall(publish[:7])
    time.sleep(1.5)
    raw.sendall(publish[7:])
    assert sub.wait_for(3)[2].payload == b"split!"
    raw.close()
    sub.close()
    pub.close()


def test_broker_shutdown_tells_mqtt5_clients_why(broker_factory):
    b = broker_factory()
    v5, v311 = Client(b, version="5"), Client(b, version="3.1.1")
    assert b.stop() == 0
    assert v5.disconnected.wait(WAIT) and v311.disconnected.wait(WAIT)
    assert v5.disconnect_reason == 0x8B, "DISCONNECT: server shutting down"


def mqtt5_connect(client_id, keep_alive):
    """A raw MQTT 5 CONNECT with clean start and no properties."""
    body = b"\x00\x04MQTT\x05\x02" + keep_alive.to_bytes(2, "big") + b"\x00"
    body += len(client_id).to_bytes(2, "big") + client_id
    return bytes([0x10, len(body)]) + body


def read_until_closed(sock):
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def test_a_silent_client_is_disconnected_after_one_and_a_half_keep_alives(broker):
    raw = socket.create_connection(("127.0.0.1", broker.mqtt_port), timeout=WAIT)
    raw.sendall(mqtt5_connect(b"silent", keep_alive=2))
    connack = raw.recv(2)
    connack += raw.recv(connack[1], socket.MSG_WAITALL)
    assert connack[:4] == b"\x20" + bytes([connack[1]]) + b"\x00\x00"
    time.sleep(2.0)
    raw.sendall(b"\xc0\x00")  # PINGREQ: the keep-alive counts from here
    pinged = time.monotonic()
    rest = read_until_closed(raw)
    silent_for = time.monotonic() - pinged
    assert rest[:2] == b"\xd0\x00", "PINGRESP"
    assert rest[2] == 0xE0 and rest[4] == 0x8D, "DISCONNECT: keep-alive timeout, got %r" % rest
    assert 2.5 <= silent_for < 6, "closed after %.2f s of silence (keep-alive 2 s)" % silent_for


def test_a_memory_alarm_stops_reading_from_mqtt_publishers_until_queues_drain(broker_factory):
    b = broker_factory("--memory-high-watermark", "1000000")
    sub = Client(b, client_id="flood-sub", clean=False)
    sub.subscribe("flood", 1)
    sub.close()  # offline: its session queue keeps what is published
    pub = Client(b)
    for _ in range(6):  # the sixth takes the queued bytes over 1 MB
        pub.publish("flood", b"x" * 180_000, qos=1)
    late = pub.c.publish("flood", b"late", qos=1)
    time.sleep(1.0)
    assert not late.is_published(), "the publisher is not read while the alarm is raised"
    # The subscriber has never published: it is read (its PUBACKs drain the queue).
    sub = Client(b, client_id="flood-sub", clean=False)
    assert len(sub.wait_for(7)) == 7
    late.wait_for_publish(WAIT)
    assert late.is_published(), "read again once the alarm cleared"


def test_topic_aliases_outlive_an_idle_pause(broker):
    """An idle connection gives back its per-activity state; a topic alias the client set is
    connection state and must still resolve after the pause."""
    sub = Client(broker, version="5")
    sub.subscribe("alias/t", 0)
    raw = socket.create_connection(("127.0.0.1", broker.mqtt_port), timeout=WAIT)
    raw.sendall(mqtt5_connect(b"aliaser", keep_alive=60))
    connack = raw.recv(2)
    raw.recv(connack[1], socket.MSG_WAITALL)

    def publish(topic, payload):
        body = len(topic).to_bytes(2, "big") + topic + b"\x03\x23\x00\x01" + payload  # Topic Alias 1
        raw.sendall(bytes([0x30, len(body)]) + body)

    publish(b"alias/t", b"first")
    assert [m.payload for m in sub.wait_for(1)] == [b"first"]
    time.sleep(1.5)  # idle: buffers and activity state are given back
    publish(b"", b"second")
    assert [m.payload for m in sub.wait_for(2)] == [b"first", b"second"]
    raw.close()
    sub.close()
