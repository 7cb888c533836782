"""STOMP 1.0, 1.1 and 1.2 with stomp.py against Junction: frames, ack modes, destinations,
receipts, transactions, persistence across kill -9, and across to AMQP (pika) and MQTT (paho)."""
import socket
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pika
import pytest
import stomp
from paho.mqtt.enums import CallbackAPIVersion

from helpers import wait_message_count

pytestmark = pytest.mark.junction_only
WAIT = 10
CONNECTIONS = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}


class Client(stomp.ConnectionListener):
    """A stomp.py connection whose received frames land in lists."""

    def __init__(self, broker, version="1.2", heartbeats=(0, 0), login=("guest", "guest")):
        self.version = version
        self.messages, self.errors, self.receipts = [], [], []
        self.lock = threading.Lock()
        kwargs = {} if version == "1.0" else {"heartbeats": heartbeats}
        self.conn = CONNECTIONS[version]([("127.0.0.1", broker.stomp_port)], **kwargs)
        self.conn.set_listener("collect", self)
        self.conn.connect(*login, wait=True, headers={"host": "localhost"})

    def on_message(self, frame):
        with self.lock:
            self.messages.append(frame)

    def on_error(self, frame):
        with self.lock:
            self.errors.append(frame)

    def on_receipt(self, frame):
        with self.lock:
            self.receipts.append(frame.headers["receipt-id"])

    def wait_for(self, what, n=1):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                items = getattr(self, what)
                if len(items) >= n:
                    return list(items)
            time.sleep(0.01)
        raise AssertionError("expected %d %s, got %r" % (n, what, getattr(self, what)))

    def subscribe(self, destination, sub_id="s1", ack="auto", **headers):
        receipt = "sub-" + uuid.uuid4().hex[:6]
        self.conn.subscribe(destination, id=sub_id, ack=ack, headers=dict(headers, receipt=receipt))
        assert receipt in self.wait_for_receipt(receipt)

    def wait_for_receipt(self, receipt):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                if receipt in self.receipts:
                    return list(self.receipts)
            time.sleep(0.01)
        raise AssertionError("no RECEIPT %s (errors: %r)" % (receipt, [e.headers for e in self.errors]))

    def send(self, destination, body, receipt=True, **headers):
        r = "r-" + uuid.uuid4().hex[:8]
        if receipt:
            headers["receipt"] = r
        self.conn.send(destination, body, headers=headers)
        if receipt:
            self.wait_for_receipt(r)

    def ack(self, frame, sub_id="s1", nack=False, **kw):
        h = frame.headers
        fn = self.conn.nack if nack else self.conn.ack
        if self.version == "1.2":
            fn(h["ack"], **kw)
        elif self.version == "1.1":
            fn(h["message-id"], sub_id, **kw)
        else:
            fn(h["message-id"], **kw)

    def close(self):
        if self.conn.is_connected():
            self.conn.disconnect()


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_send_and_subscribe_to_a_queue_each_version(broker, version):
    c = Client(broker, version)
    c.subscribe("/queue/greetings-" + version.replace(".", ""))
    c.send("/queue/greetings-" + version.replace(".", ""), "hello\nworld", **{"x-custom": "a:b"})
    [m] = c.wait_for("messages")
    assert m.body == "hello\nworld"
    assert m.headers["destination"] == "/queue/greetings-" + version.replace(".", "")
    assert m.headers["subscription"] == "s1" and m.headers["message-id"]
    assert m.headers["x-custom"] == "a:b", "escaped header values come back intact"
    c.close()


def test_topic_subscribers_each_get_a_copy_and_exchange_destinations_route(broker):
    a, b = Client(broker), Client(broker)
    a.subscribe("/topic/news.*")
    b.subscribe("/topic/news.sport")
    b.subscribe("/exchange/amq.direct/jobs", sub_id="s2")
    pub = Client(broker)
    pub.send("/topic/news.sport", "goal")
    pub.send("/topic/news.weather", "rain")
    pub.send("/exchange/amq.direct/jobs", "job-1")
    assert sorted(m.body for m in a.wait_for("messages", 2)) == ["goal", "rain"]
    got = b.wait_for("messages", 2)
    assert sorted((m.headers["subscription"], m.body) for m in got) == [("s1", "goal"), ("s2", "job-1")]
    assert {m.headers["destination"] for m in got} == {"/topic/news.sport", "/exchange/amq.direct/jobs"}


def test_amq_queue_needs_an_existing_queue(broker):
    c = Client(broker)
    c.conn.subscribe("/amq/queue/missing", id="s1")
    [err] = c.wait_for("errors")
    assert err.headers["message"] == "not_found"
    assert "no queue 'missing'" in err.body
    amqp = broker.connect()
    amqp.channel().queue_declare("existing", durable=True)
    c2 = Client(broker)
    c2.subscribe("/amq/queue/existing")
    c2.send("/amq/queue/existing", "there")
    assert [m.body for m in c2.wait_for("messages")] == ["there"]


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_client_ack_is_cumulative_and_unacked_messages_come_back(broker, version):
    q = "/queue/cumulative-" + version.replace(".", "")
    c = Client(broker, version)
    c.subscribe(q, ack="client")
    for i in range(3):
        c.send(q, "m%d" % i)
    got = c.wait_for("messages", 3)
    c.ack(got[1])  # acknowledges m0 and m1
    c.close()
    back = Client(broker, version)
    back.subscribe(q, ack="client-individual")
    [m] = back.wait_for("messages")
    assert m.body == "m2" and m.headers.get("redelivered") == "true"
    back.ack(m)
    back.close()


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_client_individual_ack_and_nack_requeue(broker, version):
    q = "/queue/individual-" + version.replace(".", "")
    c = Client(broker, version)
    c.subscribe(q, ack="client-individual", **{"prefetch-count": "10"})
    c.send(q, "first")
    c.send(q, "second")
    first, second = c.wait_for("messages", 2)
    c.ack(second)
    c.ack(first, nack=True)  # requeued, comes back redelivered
    again = c.wait_for("messages", 3)[2]
    assert again.body == "first" and again.headers.get("redelivered") == "true"
    c.ack(again)
    c.close()


def test_receipts_and_a_persistent_send_survive_kill_9(broker):
    c = Client(broker)
    c.send("/queue/durable-work", "kept", persistent="true")  # RECEIPT only after fsync
    broker.kill9()
    broker.start()
    back = Client(broker)
    back.subscribe("/queue/durable-work")
    [m] = back.wait_for("messages")
    assert m.body == "kept" and m.headers["persistent"] == "true"


def test_transactional_send_and_ack_wait_for_commit_and_abort_drops_them(broker):
    c = Client(broker)
    c.subscribe("/queue/tx-out")
    tx = c.conn.begin()
    c.conn.send("/queue/tx-out", "in tx", transaction=tx)
    time.sleep(0.3)
    assert c.messages == [], "invisible before COMMIT"
    c.conn.commit(tx)
    assert [m.body for m in c.wait_for("messages")] == ["in tx"]
    tx2 = c.conn.begin()
    c.conn.send("/queue/tx-out", "aborted", transaction=tx2)
    c.conn.abort(tx2)
    c.send("/queue/tx-out", "after")
    got = c.wait_for("messages", 2)
    assert [m.body for m in got] == ["in tx", "after"]


def test_heart_beats_are_negotiated_and_sent(broker):
    c = Client(broker, "1.2", heartbeats=(1000, 1000))
    time.sleep(3.5)  # several intervals: both sides keep the connection alive
    assert c.conn.is_connected()
    c.send("/queue/hb", "still here")
    c.close()


def test_stomp_amqp_and_mqtt_share_queues_and_topics(broker):
    c = Client(broker)
    c.subscribe("/topic/plant.line1")
    m = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="stomp-x", protocol=mqtt.MQTTv311)
    m.connect("127.0.0.1", broker.mqtt_port)
    m.loop_start()
    m.publish("plant/line1", b"from mqtt", qos=1).wait_for_publish(WAIT)
    assert [f.body for f in c.wait_for("messages")] == ["from mqtt"]
    m.disconnect()
    m.loop_stop()
    ch = broker.connect().channel()
    ch.queue_declare("shared-work", durable=True)
    c.send("/queue/shared-work", "from stomp", **{"content-type": "text/plain", "correlation-id": "c-7"})
    method, props, body = ch.basic_get("shared-work", auto_ack=True)
    assert body == b"from stomp" and props.content_type == "text/plain" and props.correlation_id == "c-7"
    ch.basic_publish("", "shared-work", b"from amqp", pika.BasicProperties(reply_to="answers", headers={"k": "v"}))
    c.subscribe("/queue/shared-work", sub_id="s2")
    got = [f for f in c.wait_for("messages", 2) if f.headers["subscription"] == "s2"][0]
    assert got.body == "from amqp" and got.headers["reply-to"] == "answers" and got.headers["k"] == "v"


def raw(broker):
    s = socket.create_connection(("127.0.0.1", broker.stomp_port), timeout=WAIT)
    return s


def read_frames(s):
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def read_message_frames(s, n):
    """Reads until `n` MESSAGE frames have arrived (bodies framed by content-length); returns
    their headers."""
    data, frames = b"", []
    while len(frames) < n:
        chunk = s.recv(65536)
        assert chunk, "connection closed after %d MESSAGE frames" % len(frames)
        data += chunk
        while True:
            data = data.lstrip(b"\n")
            end = data.find(b"\n\n")
            if end < 0:
                break
            command, *lines = data[:end].decode().split("\n")
            headers = dict(line.split(":", 1) for line in lines)
            body_end = end + 2 + int(headers.get("content-length", 0))
            if len(data) <= body_end:
                break
            assert data[body_end:body_end + 1] == b"\x00"
            data = data[body_end + 1:]
            if command == "MESSAGE":
                frames.append(headers)
    return frames


def test_a_client_that_shuts_its_socket_down_mid_delivery_gets_its_unacked_messages_requeued(broker):
    """More than the sockets' buffers hold is waiting for the client (64 MiB) when it acknowledges
    ten messages and shuts its socket down without DISCONNECT or close: the broker, still waiting
    to write, must take the ACKs and notice the hang-up well before the write-stall timeout
    (30 s), and put everything else back."""
    ch = broker.connect().channel()
    ch.queue_declare("stalled", durable=True)
    ch.confirm_delivery()
    for i in range(1024):
        ch.basic_publish("", "stalled", b"m%05d" % i + b"." * (64 * 1024))
    s = raw(broker)
    s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\nlogin:guest\npasscode:guest\n\n\x00"
              b"SUBSCRIBE\nid:s1\ndestination:/queue/stalled\nack:client-individual\n\n\x00")
    got = read_message_frames(s, 10)
    s.sendall(b"".join(b"ACK\nid:%s\n\n\x00" % h["ack"].encode() for h in got))
    s.shutdown(socket.SHUT_RDWR)
    wait_message_count(ch, "stalled", 1024 - 10, timeout=WAIT)  # the unacknowledged back
    _, _, first = ch.basic_get("stalled", auto_ack=True)
    assert first.startswith(b"m00010")
    s.close()


@pytest.mark.parametrize("frame,message", [
    (b"SEND\ndestination:/queue/a\n\nx\x00", b"message:Illegal command"),
    (b"CONNECT\naccept-version:9.9\n\n\x00", b"message:Version mismatch"),
    (b"CONNECT\nlogin:guest\npasscode:wrong\n\n\x00", b"message:Bad CONNECT"),
    (b"connect\n\n\x00", b"message:Invalid frame"),
])
def test_bad_first_frames_get_an_error_and_a_close(broker, frame, message):
    s = raw(broker)
    s.sendall(frame)
    data = read_frames(s)
    assert data.startswith(b"ERROR\n") and message in data, data


@pytest.mark.parametrize("frame,message", [
    (b"SEND\n\nno destination\x00", b"message:Missing destination header"),
    (b"SUBSCRIBE\ndestination:/nowhere/x\nid:1\n\n\x00", b"message:Invalid destination"),
    (b"ACK\nid:999\n\n\x00", b"message:Bad ACK"),
    (b"SEND\ndestination:/queue/a\nk:bad\\tescape\n\n\x00", b"message:Invalid frame"),
    (b"COMMIT\ntransaction:nope\n\n\x00", b"message:Bad transaction"),
    (b"FLY\n\n\x00", b"message:Bad command"),
    (b"SEND\ndestination:/queue/a\ncontent-length:2\n\nabc\x00", b"message:Invalid frame"),
])
def test_bad_frames_after_connect_get_an_error(broker, frame, message):
    s = raw(broker)
    s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
    time.sleep(0.2)
    s.sendall(frame)
    data = read_frames(s)
    assert data.startswith(b"CONNECTED\n") and b"\nERROR\n" in data.replace(b"\x00", b"\n") and message in data, data


def test_an_oversized_header_is_refused_before_it_is_buffered(broker):
    s = raw(broker)
    s.sendall(b"CONNECT\naccept-version:1.2\n\n\x00")
    s.sendall(b"SEND\ndestination:/queue/a\nbig:" + b"x" * 70000)
    data = read_frames(s)
    assert b"message:Frame too large" in data and b"header line too long" in data


def test_a_durable_topic_subscription_keeps_messages_across_a_disconnect_and_kill_9(broker):
    durable = {"durable": "true", "auto-delete": "false"}
    c = Client(broker)
    c.subscribe("/topic/alerts.#", sub_id="ops-alerts", ack="client-individual", **durable)
    c.close()
    pub = Client(broker)
    pub.send("/topic/alerts.disk", "disk full", persistent="true")
    pub.send("/topic/alerts.cpu", "cpu hot", persistent="true")
    broker.kill9()
    broker.start()
    back = Client(broker)
    back.subscribe("/topic/alerts.#", sub_id="ops-alerts", ack="client-individual", **durable)
    got = back.wait_for("messages", 2)
    assert [m.body for m in got] == ["disk full", "cpu hot"]
    for m in got:
        back.ack(m)
    receipt = "end-sub"
    back.conn.unsubscribe("ops-alerts", headers={"durable": "true", "receipt": receipt})
    back.wait_for_receipt(receipt)
    pub = Client(broker)  # the first publisher went with the restart
    pub.send("/topic/alerts.net", "after the end", persistent="true")
    again = Client(broker)
    again.subscribe("/topic/alerts.#", sub_id="ops-alerts", ack="client-individual", **durable)
    time.sleep(0.5)
    assert again.messages == [], "the durable subscription's queue went with UNSUBSCRIBE durable:true"
    other = Client(broker)  # another subscription id on the same topic has its own queue
    other.subscribe("/topic/alerts.#", sub_id="other", **durable)
    pub.send("/topic/alerts.net", "to both", persistent="true")
    assert [m.body for m in again.wait_for("messages")] == ["to both"]
    assert [m.body for m in other.wait_for("messages")] == ["to both"]


def test_temp_queue_replies_reach_the_requester(broker):
    server = Client(broker)
    server.subscribe("/queue/rpc-requests")
    requester = Client(broker)
    requester.send("/queue/rpc-requests", "2+2", **{"reply-to": "/temp-queue/answers", "correlation-id": "q1"})
    [request] = server.wait_for("messages")
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/reply-queue/stomp-temp-"), reply_to
    server.send(reply_to, "4", **{"correlation-id": request.headers["correlation-id"]})
    [reply] = requester.wait_for("messages")
    assert (reply.body, reply.headers["subscription"], reply.headers["correlation-id"]) == ("4", "/temp-queue/answers", "q1")
    # An AMQP responder answers the same way: the default exchange and the queue's real name.
    requester.send("/queue/rpc-requests", "3+3", **{"reply-to": "/temp-queue/answers"})
    second = server.wait_for("messages", 2)[1]
    assert second.headers["reply-to"] == reply_to, "one temp queue per name and connection"
    broker.connect().channel().basic_publish("", reply_to[len("/reply-queue/"):], b"6")
    assert [m.body for m in requester.wait_for("messages", 2)] == ["4", "6"]


def test_a_memory_alarm_stops_reading_from_stomp_publishers_until_queues_drain(broker_factory):
    b = broker_factory("--memory-high-watermark", "1000000")
    pub = Client(b)
    for _ in range(6):  # the sixth takes the queued bytes (bodies + bookkeeping) over 1 MB
        pub.send("/queue/flood", "x" * 180_000)
    pub.conn.send("/queue/flood", "late", headers={"receipt": "late"})
    time.sleep(1.0)
    assert "late" not in pub.receipts, "the publisher is not read while the alarm is raised"
    consumer = Client(b)  # has never published: keeps being read, and its queue drains
    consumer.subscribe("/queue/flood")
    assert len(consumer.wait_for("messages", 7)) == 7
    pub.wait_for_receipt("late")


def test_x_headers_on_send_and_subscribe_declare_queue_arguments(broker):
    c = Client(broker)
    c.send("/queue/bounded", "m1", **{"x-max-length": "2", "x-overflow": "drop-head"})
    c.send("/queue/bounded", "m2")
    c.send("/queue/bounded", "m3")
    c.subscribe("/queue/bounded")
    assert [m.body for m in c.wait_for("messages", 2)] == ["m2", "m3"], "declared with x-max-length 2"
    c.subscribe("/topic/ttl.t", sub_id="s2", **{"x-message-ttl": "200"})
    ch = broker.connect().channel()
    ok = ch.queue_declare("bounded", durable=True, arguments={"x-max-length": 2, "x-overflow": "drop-head"}, passive=False)
    assert ok.method.queue == "bounded"


@pytest.mark.parametrize("version", ["1.0", "1.2"])
def test_headers_from_other_protocols_cannot_break_stomp_framing(broker, version):
    c = Client(broker, version)
    q = "/queue/framing-" + version.replace(".", "")
    c.subscribe(q)
    ch = broker.connect().channel()
    headers = {"content-length": "2", "evil": "a\nb", "destination": "/queue/elsewhere"}
    ch.basic_publish("", q[len("/queue/"):], b"hello world", pika.BasicProperties(headers=headers))
    [m] = c.wait_for("messages")
    assert m.body == "hello world"
    assert m.headers["destination"] == q
    if version == "1.2":
        assert m.headers["evil"] == "a\nb", "1.2 escapes the line break"
    else:
        assert "evil" not in m.headers, "1.0 cannot carry it: left out"
    time.sleep(0.2)
    assert len(c.messages) == 1 and not c.errors


def test_transactions_are_bounded_per_connection(broker):
    s = raw(broker)
    s.sendall(b"CONNECT\naccept-version:1.2\n\n\x00")
    s.sendall(b"".join(b"BEGIN\ntransaction:t%d\n\n\x00" % i for i in range(65)))
    data = read_frames(s)
    assert b"message:Too many transactions" in data, data[-300:]
