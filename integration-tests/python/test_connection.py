"""Connection level: login, vhosts, negotiation, heartbeats, connection.blocked."""
import struct
import time

import pika
import pytest

from helpers import get_eventually, idle, wait_until
from rawamqp import (PROTOCOL_HEADER, RawAMQP, method_frame, shortstr, start_ok)


def test_guest_login_from_loopback(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"hi")
    assert get_eventually(ch, q).body == b"hi"


def test_server_properties_advertise_rabbitmq_capabilities(broker):
    conn = broker.connect()
    props = conn._impl.server_properties  # from connection.start
    caps = props["capabilities"]
    for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
                "connection.blocked", "authentication_failure_close", "per_consumer_qos", "direct_reply_to"):
        assert caps.get(cap) is True, "capability %s not advertised: %r" % (cap, caps)
    for key in ("product", "version", "platform"):
        assert key in props


def raw_start(broker, user="guest", password="guest"):
    r = RawAMQP(broker.host, broker.port)
    r.send(PROTOCOL_HEADER)
    _, cls, meth, args = r.read_method()
    assert (cls, meth) == (10, 10)
    assert args[:2] == b"\x00\x09", "connection.start must announce version 0-9"
    r.send(start_ok(user, password))
    return r


@pytest.mark.parametrize("user,password", [("guest", "wrong"), ("nobody", "guest")])
def test_bad_credentials_refused_with_403(broker, user, password):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as err:
        broker.connect(credentials=pika.PlainCredentials(user, password))
    assert "(403)" in str(err.value)

    r = raw_start(broker, user, password)
    code, text, cls, meth = r.expect_connection_close()
    assert code == 403
    assert text == "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. " \
                   "For details see the broker logfile."
    assert r.wait_eof(5), "server must close the socket after refusing the login"
    # The broker keeps serving good clients.
    test_guest_login_from_loopback(broker)


def test_missing_vhost_refused_with_530(broker):
    missing = "no-such-vhost-" + broker.name("v")[-8:]
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as err:
        broker.connect(virtual_host=missing)
    assert "(530)" in str(err.value)

    r = raw_start(broker)
    _, cls, meth, tune = r.read_method()
    assert (cls, meth) == (10, 30)
    r.send(method_frame(0, 10, 31, tune[:8]))  # accept the server's channel_max, frame_max, heartbeat
    r.send(method_frame(0, 10, 40, shortstr(missing) + shortstr("") + b"\x00"))
    code, text, cls, meth = r.expect_connection_close()
    assert (code, text, cls, meth) == (530, "NOT_ALLOWED - vhost %s not found" % missing, 10, 40)
    r.send_close_ok()
    assert r.wait_eof(5)


def test_channel_max_is_enforced(broker):
    r = RawAMQP(broker.host, broker.port)
    r.handshake(channel_max=2)
    r.open_channel(1)
    r.open_channel(2)
    r.send(method_frame(3, 20, 10, shortstr("")))
    code, text, _, _ = r.expect_connection_close()
    assert code == 530
    assert text == "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"


def test_heartbeat_timeout_closes_silent_connection(broker):
    """Negotiate a 1 s heartbeat, then send nothing: the server closes the socket
    after ~2-3 missed intervals, and keeps sending its own heartbeats meanwhile."""
    r = RawAMQP(broker.host, broker.port)
    r.handshake(heartbeat=1)
    start = time.monotonic()
    heartbeats = 0
    closed_at = None
    while time.monotonic() - start < 8:
        try:
            ftype, channel, payload = r.read_frame(timeout=max(0.0, 8 - (time.monotonic() - start)))
        except TimeoutError:  # (an OSError too: must come first)
            break
        except ConnectionError:  # EOF or reset
            closed_at = time.monotonic() - start
            break
        if ftype == 8:
            assert channel == 0 and payload == b""
            heartbeats += 1
    assert closed_at is not None, "silent client was not disconnected within 8 s"
    assert 1.8 <= closed_at <= 5.0, "closed after %.2f s; expected ~2-3 heartbeat intervals" % closed_at
    assert heartbeats >= 1, "server sent no heartbeat frames"


def test_heartbeats_keep_connection_alive(broker):
    r = RawAMQP(broker.host, broker.port)
    r.handshake(heartbeat=1)
    heartbeat = struct.pack("!BHI", 8, 0, 0) + b"\xce"
    received = 0
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        r.send(heartbeat)
        try:
            ftype, _, _ = r.read_frame(timeout=0.4)
            received += ftype == 8
        except TimeoutError:
            pass
    # Still alive after 4.5 intervals: a channel opens fine.
    r.open_channel(1)
    assert received >= 3


def test_pika_connection_not_serviced_is_dropped_by_heartbeat(broker):
    conn = broker.connect(heartbeat=1)
    ch = conn.channel()
    assert conn._impl.params.heartbeat == 1
    time.sleep(5)  # no I/O at all: pika sends no heartbeats
    with pytest.raises(pika.exceptions.StreamLostError):
        idle(conn, 2)
        ch.queue_declare("", exclusive=True)
    other = broker.connect()  # the broker itself is fine
    assert other.channel().queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_connection_close_handshake(broker):
    r = RawAMQP(broker.host, broker.port)
    r.handshake()
    r.open_channel(1)
    r.send(method_frame(0, 10, 50, struct.pack("!H", 200) + shortstr("bye") + struct.pack("!HH", 0, 0)))
    ch, cls, meth, _ = r.read_method()
    assert (ch, cls, meth) == (0, 10, 51), "expected connection.close-ok"
    # After close-ok it is the client that closes the socket (RabbitMQ waits).
    r.close()


@pytest.mark.junction_only
def test_connection_blocked_and_unblocked_by_memory_watermark(broker_factory):
    """Junction's --memory-high-watermark counts bytes of message data held in
    queues (RabbitMQ's memory alarm needs broker config, so Junction only)."""
    broker = broker_factory("--memory-high-watermark", "1000000")
    events = []
    publisher = broker.connect(blocked_connection_timeout=60)
    publisher.add_on_connection_blocked_callback(lambda conn, frame: events.append(("blocked", frame.method)))
    publisher.add_on_connection_unblocked_callback(lambda conn, frame: events.append(("unblocked", frame.method)))
    ch = publisher.channel()
    queue = broker.name("hoard")
    ch.queue_declare(queue)
    body = b"x" * 100_000
    sent = 0
    while not events and sent < 30:  # up to 3 MB; the watermark is 1 MB
        ch.basic_publish("", queue, body)
        sent += 1
        idle(publisher, 0.05)
    wait_until(publisher, lambda: events, timeout=10, what="connection.blocked")
    kind, method = events[0]
    assert kind == "blocked" and isinstance(method, pika.spec.Connection.Blocked)
    assert sent >= 10, "blocked after only %d x 100 kB (watermark 1 MB)" % sent

    # Another connection that does not publish keeps working and frees memory.
    admin = broker.connect()
    purged = admin.channel().queue_purge(queue).method.message_count
    assert purged >= 10
    wait_until(publisher, lambda: len(events) >= 2, timeout=15, what="connection.unblocked")
    assert events[1][0] == "unblocked" and isinstance(events[1][1], pika.spec.Connection.Unblocked)

    # Publishing works again.
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"after unblock")
    admin_ch = admin.channel()
    bodies = []
    while True:
        method, _, b = admin_ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        bodies.append(b)
    assert bodies[-1] == b"after unblock"
