"""Streams (x-queue-type: stream) published into and replayed from AMQP (pika), STOMP (stomp.py)
and MQTT (paho, the $stream/{start}/{name} form); server-side positions of named consumers;
retention; and delayed delivery (x-delay) from each protocol."""
import datetime
import threading
import time

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from helpers import channel_error, message_count
from test_mqtt import Client as MqttClient
from test_stomp import Client as StompClient

pytestmark = pytest.mark.junction_only
WAIT = 10
STREAM = {"x-queue-type": "stream"}


def declare_stream(ch, name, **args):
    ch.queue_declare(name, durable=True, arguments=dict(STREAM, **args))


def publish_numbered(ch, queue, n, start=0):
    ch.confirm_delivery()
    for i in range(start, start + n):
        ch.basic_publish("", queue, b"m%d" % i, pika.BasicProperties(delivery_mode=2))


def read_stream(ch, queue, n, offset=None, name=None, prefetch=100, timeout=WAIT):
    """Consumes up to `n` messages from a stream, acknowledging those (later deliveries stay
    unacknowledged); returns (offset, body) pairs."""
    args = {}
    if offset is not None:
        args["x-stream-offset"] = offset
    if name is not None:
        args["x-stream-consumer-name"] = name
    ch.basic_qos(prefetch_count=prefetch)
    got = []

    def on_message(c, method, props, body):
        if len(got) < n:
            got.append((props.headers["x-stream-offset"], body))
            c.basic_ack(method.delivery_tag)

    tag = ch.basic_consume(queue, on_message, arguments=args)
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        ch.connection.process_data_events(time_limit=0.05)
    ch.basic_cancel(tag)
    return got


def test_amqp_reads_from_every_start_position_and_reading_removes_nothing(broker):
    ch = broker.connect().channel()
    declare_stream(ch, "events")
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(seconds=1)
    publish_numbered(ch, "events", 10)
    assert read_stream(ch, "events", 10, "first") == [(i, b"m%d" % i) for i in range(10)]
    assert read_stream(ch, "events", 5, 5) == [(i, b"m%d" % i) for i in range(5, 10)]
    assert read_stream(ch, "events", 1, "last") == [(9, b"m9")]
    assert read_stream(ch, "events", 10, before)[0] == (0, b"m0"), "an AMQP timestamp before the first message"
    assert read_stream(ch, "events", 1, "next", timeout=0.5) == []
    assert message_count(ch, "events") == 10


def test_a_next_reader_sees_only_new_messages(broker):
    conn = broker.connect()
    ch = conn.channel()
    declare_stream(ch, "ticks")
    publish_numbered(ch, "ticks", 3)
    got = []
    ch.basic_qos(prefetch_count=10)
    ch.basic_consume("ticks", lambda c, m, p, b: (got.append(b), c.basic_ack(m.delivery_tag)),
                     arguments={"x-stream-offset": "next"})
    conn.process_data_events(time_limit=0.3)
    broker.connect().channel().basic_publish("", "ticks", b"fresh")
    deadline = time.monotonic() + WAIT
    while not got and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert got == [b"fresh"]


def test_streams_refuse_what_they_cannot_do(broker):
    conn = broker.connect()
    ch = conn.channel()
    declare_stream(ch, "s")
    code, _ = channel_error(ch.basic_get, "s")
    assert code == 540
    ch = conn.channel()
    code, text = channel_error(ch.queue_declare, "t", durable=False, arguments=STREAM)
    assert code == 406 and "durable" in text
    ch = conn.channel()
    code, _ = channel_error(lambda: (ch.basic_consume("s", lambda *a: None, arguments={"x-stream-offset": "soon"}),
                                     conn.process_data_events(time_limit=1)))
    assert code == 406


def test_a_named_consumer_resumes_where_it_acknowledged_after_a_restart(broker):
    ch = broker.connect().channel()
    declare_stream(ch, "orders")
    publish_numbered(ch, "orders", 8)
    got = read_stream(ch, "orders", 5, "first", name="billing")
    assert [o for o, _ in got] == [0, 1, 2, 3, 4]
    time.sleep(0.5)  # positions are written behind the acks (a crash may replay a few: at-least-once)
    broker.kill9()
    broker.restart()
    ch = broker.connect().channel()
    got = read_stream(ch, "orders", 3, "first", name="billing")
    assert [o for o, _ in got] == [5, 6, 7], "the stored position wins over the start argument"
    assert [o for o, _ in read_stream(ch, "orders", 8, "first", name="audit")][:2] == [0, 1]


def test_every_protocol_publishes_into_a_stream_and_reads_it_back(broker):
    ch = broker.connect().channel()
    declare_stream(ch, "feed")
    ch.queue_bind("feed", "amq.topic", "plant.#")
    ch.basic_publish("", "feed", b"from amqp", pika.BasicProperties(headers={"k": "v"}))
    stomp = StompClient(broker)
    stomp.send("/amq/queue/feed", "from stomp")
    m = MqttClient(broker, version="5")
    m.publish("$queue/feed", b"from mqtt queue", qos=1)
    m.publish("plant/line1", b"from mqtt topic", qos=1)
    expected = [b"from amqp", b"from stomp", b"from mqtt queue", b"from mqtt topic"]
    assert [b for _, b in read_stream(ch, "feed", 4, "first")] == expected

    stomp.subscribe("/amq/queue/feed", sub_id="r", ack="client-individual", **{"x-stream-offset": "offset=1",
                                                                                  "prefetch-count": "10"})
    frames = stomp.wait_for("messages", 3)
    assert [f.body for f in frames] == ["from stomp", "from mqtt queue", "from mqtt topic"]
    assert [f.headers["x-stream-offset"] for f in frames] == ["1", "2", "3"]
    assert "x-junction-typed-headers" not in frames[0].headers, "a STOMP-sent message's offset is plain text"
    stomp.close()

    m.subscribe("$stream/first/feed", qos=1)
    got = m.wait_for(4)
    assert [g.payload for g in got] == expected
    offsets = [dict(g.properties.UserProperty)["x-stream-offset"] for g in got]
    assert offsets == ["0", "1", "2", "3"]
    assert got[3].topic == "plant/line1", "a message shows the topic it was published to"
    m.close()
    m3 = MqttClient(broker, version="3.1.1")
    m3.subscribe("$stream/offset=2/feed", qos=0)
    assert [g.payload for g in m3.wait_for(2)] == expected[2:]
    m3.close()


def suback_codes(broker, topic):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub-check", protocol=mqtt.MQTTv5)
    codes, done = [], threading.Event()
    c.on_subscribe = lambda client, userdata, mid, reason_codes, properties: (codes.extend(reason_codes), done.set())
    c.connect("127.0.0.1", broker.mqtt_port)
    c.loop_start()
    c.subscribe(topic, qos=1)
    assert done.wait(WAIT)
    c.disconnect()
    c.loop_stop()
    return [rc.value for rc in codes]


def test_mqtt_stream_subscriptions_need_an_existing_stream_and_a_valid_start(broker):
    ch = broker.connect().channel()
    declare_stream(ch, "exists")
    ch.queue_declare("plain")
    assert suback_codes(broker, "$stream/first/exists") == [1]
    assert suback_codes(broker, "$stream/first/missing") == [0x8F]
    assert suback_codes(broker, "$stream/first/plain") == [0x8F]
    assert suback_codes(broker, "$stream/sometime/exists") == [0x8F]


def test_a_persistent_mqtt_session_resumes_its_stream_position(broker):
    ch = broker.connect().channel()
    declare_stream(ch, "log")
    publish_numbered(ch, "log", 4)
    m = MqttClient(broker, client_id="reader", version="3.1.1", clean=False)
    m.subscribe("$stream/first/log", qos=1)
    assert len(m.wait_for(4)) == 4
    time.sleep(0.3)  # the PUBACKs reach the broker
    m.close()
    publish_numbered(ch, "log", 2, start=4)
    m = MqttClient(broker, client_id="reader", version="3.1.1", clean=False)
    assert [g.payload for g in m.wait_for(2)] == [b"m4", b"m5"]
    time.sleep(0.3)
    assert len(m.messages) == 2, "nothing read before comes again"
    m.close()


def test_retention_by_size_drops_the_oldest_segments(broker):
    ch = broker.connect().channel()
    declare_stream(ch, "small", **{"x-max-length-bytes": 2000, "x-stream-max-segment-size-bytes": 500})
    ch.confirm_delivery()
    for i in range(50):
        ch.basic_publish("", "small", b"%099d" % i)
    got = read_stream(ch, "small", 50, "first", timeout=2)
    assert 15 <= len(got) <= 30, len(got)
    assert got[-1] == (49, b"%099d" % 49)
    assert got[0][0] > 0 and got[0][0] % 5 == 0, "whole 5-message segments go"


def test_retention_by_age_drops_old_segments(broker):
    ch = broker.connect().channel()
    declare_stream(ch, "recent", **{"x-max-age": "1s", "x-stream-max-segment-size-bytes": 10})
    publish_numbered(ch, "recent", 20)
    time.sleep(2.5)
    publish_numbered(ch, "recent", 3, start=20)
    deadline = time.monotonic() + WAIT
    while message_count(ch, "recent") > 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    got = read_stream(ch, "recent", 23, "first", timeout=1)
    assert got and got[0][0] >= 15 and got[-1][1] == b"m22", got


def wait_for_body(ch, queue, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method:
            return body
        time.sleep(0.05)
    return None


def test_x_delay_holds_messages_back_from_every_protocol(broker):
    ch = broker.connect().channel()
    ch.queue_declare("later")
    sent = time.monotonic()
    ch.basic_publish("", "later", b"amqp", pika.BasicProperties(headers={"x-delay": 700}))
    StompClient(broker).send("/queue/later", "stomp", **{"x-delay": "700"})
    m = MqttClient(broker, version="5")
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("x-delay", "700")
    m.c.publish("$queue/later", b"mqtt", qos=1, properties=props).wait_for_publish(WAIT)
    ch.basic_publish("", "later", b"now")
    assert wait_for_body(ch, "later", 1) == b"now"
    assert message_count(ch, "later") == 0
    bodies = {wait_for_body(ch, "later") for _ in range(3)}
    assert bodies == {b"amqp", b"stomp", b"mqtt"}
    assert time.monotonic() - sent >= 0.65


def test_a_persistent_delayed_message_survives_kill_9(broker):
    ch = broker.connect().channel()
    ch.queue_declare("held", durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", "held", b"kept", pika.BasicProperties(delivery_mode=2, headers={"x-delay": 1500}))
    broker.kill9()
    broker.restart()
    ch = broker.connect().channel()
    assert message_count(ch, "held") == 0
    assert wait_for_body(ch, "held") == b"kept"
    time.sleep(0.5)
    assert message_count(ch, "held") == 0, "delivered once"


@pytest.mark.parametrize("start,expected", [
    ("first", ["m0", "m1", "m2"]),
    ("last", ["m2"]),
    ("offset=1", ["m1", "m2"]),
    ("timestamp=%d" % (time.time() - 3600), ["m0", "m1", "m2"]),
    ("timestamp=%d" % (time.time() + 3600), []),
])
def test_stomp_subscribe_reads_a_stream_from_its_x_stream_offset(broker, start, expected):
    ch = broker.connect().channel()
    declare_stream(ch, "st")
    publish_numbered(ch, "st", 3)
    c = StompClient(broker)
    c.subscribe("/queue/st", sub_id="s1", ack="client", **{"x-stream-offset": start, "prefetch-count": "10",
                                                           "x-queue-type": "stream"})
    if expected:
        assert [f.body for f in c.wait_for("messages", len(expected))] == expected
    time.sleep(0.3)
    assert [f.body for f in c.messages] == expected
    c.send("/queue/st", "m3", **{"x-queue-type": "stream"})
    assert c.wait_for("messages", len(expected) + 1)[-1].body == "m3", "then the reader follows new messages"
    c.close()


def publish_10k_with_a_time_gap(ch, queue):
    """Offsets 0..4999, then (from a new second on) 5000..9999; returns that second."""
    ch.confirm_delivery()
    for i in range(5000):
        ch.basic_publish("", queue, b"%d" % i)
    boundary = int(time.time()) + 1
    time.sleep(boundary - time.time() + 0.05)
    for i in range(5000, 10000):
        ch.basic_publish("", queue, b"%d" % i)
    return boundary


def replay(broker, protocol, start, n):
    """Reads `n` messages of stream `big` from `start` over `protocol`; returns the bodies."""
    if protocol == "amqp":
        ch = broker.connect().channel()
        return [b.decode() for _, b in read_stream(ch, "big", n, start, prefetch=500, timeout=60)]
    if protocol == "stomp":
        c = StompClient(broker)
        c.subscribe("/amq/queue/big", sub_id="r", ack="auto", **{"x-stream-offset": start})
        deadline = time.monotonic() + 60
        while len(c.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        c.close()
        return [f.body for f in c.messages]
    m = MqttClient(broker, version="5")
    m.subscribe("$stream/%s/big" % start, qos=1)
    deadline = time.monotonic() + 60
    while len(m.messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    m.close()
    return [g.payload.decode() for g in m.messages]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("protocol", ["amqp", "stomp", "mqtt"])
def test_replay_of_10000_messages_from_an_offset_and_from_a_timestamp(broker, protocol):
    ch = broker.connect().channel()
    declare_stream(ch, "big")
    second = publish_10k_with_a_time_gap(ch, "big")
    expected = [str(i) for i in range(5000, 10000)]
    assert replay(broker, protocol, "offset=5000", 5000) == expected
    assert replay(broker, protocol, "timestamp=%d" % second, 5000) == expected


def test_a_named_stomp_subscription_resumes_after_a_reconnect_and_a_restart(broker):
    ch = broker.connect().channel()
    declare_stream(ch, "jobs")
    publish_numbered(ch, "jobs", 6)

    def read(n, ack_upto):
        c = StompClient(broker)
        c.subscribe("/amq/queue/jobs", sub_id="w", ack="client-individual",
                    **{"x-stream-offset": "first", "x-stream-consumer-name": "worker", "prefetch-count": "10"})
        frames = c.wait_for("messages", n)
        for f in frames[:ack_upto]:
            c.ack(f, sub_id="w", receipt="a-" + f.headers["x-stream-offset"])
            c.wait_for_receipt("a-" + f.headers["x-stream-offset"])
        c.close()
        return [f.body for f in frames]

    assert read(6, 2) == ["m0", "m1", "m2", "m3", "m4", "m5"]
    assert read(4, 2)[:1] == ["m2"], "a reconnect resumes at the first unacknowledged offset"
    time.sleep(0.5)
    broker.kill9()
    broker.restart()
    assert read(2, 0)[:1] == ["m4"], "so does a restart"


def test_a_size_bounded_stream_written_continuously_stays_within_its_bound(broker):
    bound, segment, size = 4 << 20, 256 << 10, 1024
    ch = broker.connect().channel()
    declare_stream(ch, "bounded", **{"x-max-length-bytes": bound, "x-stream-max-segment-size-bytes": segment})
    ch.confirm_delivery()
    samples = []
    for batch in range(20):  # 20 MB in all, five times the bound
        for i in range(1024):
            ch.basic_publish("", "bounded", b"%01024d" % (batch * 1024 + i))
        samples.append(message_count(ch, "bounded") * size)
    late = samples[5:]
    assert all(0.9 * bound <= s <= bound for s in late), samples
    kept = message_count(ch, "bounded")
    broker.kill9()
    broker.restart()
    ch = broker.connect().channel()
    assert message_count(ch, "bounded") == kept, "the store holds exactly the retained window"
    first = read_stream(ch, "bounded", 1, "first")[0]
    assert first[0] == 20 * 1024 - kept


def test_delayed_messages_arrive_in_delay_order_and_never_early(broker):
    ch = broker.connect().channel()
    ch.queue_declare("timed")
    sent = time.monotonic()
    for delay in (1500, 500, 1000, 0):
        ch.basic_publish("", "timed", b"%d" % delay, pika.BasicProperties(headers={"x-delay": delay}))
    arrivals = []
    deadline = time.monotonic() + WAIT
    while len(arrivals) < 4 and time.monotonic() < deadline:
        method, _, body = ch.basic_get("timed", auto_ack=True)
        if method:
            arrivals.append((int(body), time.monotonic() - sent))
        else:
            time.sleep(0.01)
    assert [d for d, _ in arrivals] == [0, 500, 1000, 1500]
    assert all(elapsed >= delay / 1000 for delay, elapsed in arrivals), arrivals
