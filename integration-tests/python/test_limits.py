"""Connection limits shared by every protocol, and the brake on repeated failed logins."""
import socket
import threading
import time

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.junction_only
WAIT = 10


def mqtt_connack(broker, version, client_id, **client_kw):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, **client_kw)
    got, done = {}, threading.Event()
    c.on_connect = lambda cl, u, flags, rc, props: (got.update(rc=rc), done.set())
    c.connect("127.0.0.1", broker.mqtt_port)
    c.loop_start()
    assert done.wait(WAIT)
    return c, got["rc"]


def stomp_connect(broker):
    s = socket.create_connection(("127.0.0.1", broker.stomp_port), timeout=WAIT)
    s.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\x00")
    return s, s.recv(4096)


def test_the_per_user_limit_counts_connections_of_every_protocol(broker_factory, tmp_path):
    cfg = tmp_path / "j.toml"
    cfg.write_text("[limits]\nmax_connections_per_user = 2\n")
    b = broker_factory("--config", str(cfg))
    amqp = b.connect()
    m, rc = mqtt_connack(b, mqtt.MQTTv311, "first")
    assert rc == 0
    s, reply = stomp_connect(b)
    assert reply.startswith(b"ERROR\n") and b"user connection limit (2) is reached" in reply, reply
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as err:
        b.connect()
    assert "(530) \"NOT_ALLOWED - connection refused for user 'guest': user connection limit (2) is reached\"" in str(err.value)
    m5, rc5 = mqtt_connack(b, mqtt.MQTTv5, "third-v5")
    assert rc5.value == 0x97, "Quota exceeded"
    m5.loop_stop()
    m3, rc3 = mqtt_connack(b, mqtt.MQTTv311, "third-v3")
    assert rc3.getName() == "Server unavailable"
    m3.loop_stop()
    amqp.close()  # a slot comes free
    s2, reply2 = stomp_connect(b)
    assert reply2.startswith(b"CONNECTED\n"), reply2
    m.disconnect()
    m.loop_stop()


def test_an_address_with_many_failed_logins_is_refused_for_a_while(broker):
    bad = pika.ConnectionParameters(host="127.0.0.1", port=broker.port, credentials=pika.PlainCredentials("guest", "wrong"))
    for _ in range(10):
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(bad)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        broker.connect()  # the right password, but too many failures from this address
    assert "too many failed logins" in broker.log_tail()


def test_the_queue_limit_applies_to_every_protocol(broker_factory, tmp_path):
    cfg = tmp_path / "j.toml"
    cfg.write_text("[limits]\nmax_queues = 2\n")
    b = broker_factory("--config", str(cfg))
    ch = b.connect().channel()
    ch.queue_declare("q1")
    ch.queue_declare("q2")
    ch.queue_declare("q1")  # redeclaring an existing queue is fine
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.queue_declare("q3")
    assert (err.value.reply_code, err.value.reply_text) == (
        406, "PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '/' (2) is reached")
    # A persistent MQTT session needs its queue from the start: refused.
    m, rc = mqtt_connack(b, mqtt.MQTTv311, "needs-a-session-queue", clean_session=False)
    m.loop_stop()
    assert rc.value != 0, "no room for the MQTT session queue"
    # A clean session gets its queue at its first subscription: that is what is refused.
    m, rc = mqtt_connack(b, mqtt.MQTTv5, "clean-session")
    assert rc.value == 0, "a clean session needs no queue until it subscribes"
    suback, acked = {}, threading.Event()
    m.on_subscribe = lambda cl, u, mid, codes, props: (suback.update(codes=codes), acked.set())
    m.subscribe("t/#", qos=1)
    assert acked.wait(WAIT)
    m.loop_stop()
    assert suback["codes"][0].is_failure, suback
    s, reply = stomp_connect(b)
    s.sendall(b"SUBSCRIBE\nid:1\ndestination:/queue/q4\n\n\x00")
    data = s.recv(4096)
    assert b"ERROR" in data and b"queue limit" in data, data


@pytest.mark.timeout(120)
def test_a_flood_of_silent_connections_is_dropped_and_does_not_starve_clients(broker_factory, tmp_path):
    """Slowloris and a connection flood: 150 connections per protocol that never finish their
    handshake / CONNECT are dropped after the timeout, and an established client keeps working
    throughout."""
    config = tmp_path / "junction.toml"
    config.write_text("[amqp]\nhandshake_timeout_ms = 1500\n[mqtt]\nconnect_timeout_ms = 1500\n"
                      "[stomp]\nconnect_timeout_ms = 1500\n")
    broker = broker_factory("--config", str(config))
    ch = broker.connect().channel()
    ch.queue_declare("steady")
    silent = []
    for port in (broker.port, broker.mqtt_port, broker.stomp_port):
        for _ in range(150):
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
    for i in range(200):
        ch.basic_publish("", "steady", b"%d" % i)
        method, _, body = ch.basic_get("steady", auto_ack=True)
        assert method and body == b"%d" % i
    for s in silent:
        s.settimeout(WAIT)
        try:
            closed = s.recv(64) == b""
        except ConnectionResetError:
            closed = True
        assert closed, "a connection that never logged in is dropped"
        s.close()
    ch.basic_publish("", "steady", b"after")
    assert ch.basic_get("steady", auto_ack=True)[2] == b"after"


def test_a_slow_reader_holds_a_bounded_number_of_bytes_in_the_broker(broker):
    """A STOMP auto-ack subscriber that does not read: its queue stops dispatching to it once
    about 4 MiB wait for the connection (the send window in bytes), so the broker does not
    buffer the whole queue for it; when it reads again, everything arrives."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    ch = conn.channel()
    ch.queue_declare("slow-reader")
    body = b"x" * (1 << 20)
    for _ in range(40):
        ch.basic_publish("", "slow-reader", body)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(WAIT)
    s.connect(("127.0.0.1", broker.stomp_port))
    s.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\x00")
    assert s.recv(4096).startswith(b"CONNECTED")
    s.sendall(b"SUBSCRIBE\nid:0\ndestination:/amq/queue/slow-reader\nack:auto\n\n\x00")
    time.sleep(2)
    left = ch.queue_declare("slow-reader", passive=True).method.message_count
    # Kernel socket buffers take a few MiB more; without the byte bound all 40 would leave.
    assert left >= 20, "only %d of 40 messages still queued: the slow reader took them all" % left
    received = b""
    deadline = time.monotonic() + WAIT
    while received.count(b"MESSAGE\n") < 40 and time.monotonic() < deadline:
        received += s.recv(1 << 20)
    assert received.count(b"MESSAGE\n") == 40, "a reader that reads again gets everything"
    s.close()
    conn.close()
