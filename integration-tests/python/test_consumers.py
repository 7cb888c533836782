"""Consumers: redelivery, prefetch, single active consumer, auto-delete, server-sent cancel."""
import socket
import time

import pika
import pytest

from helpers import channel_error, consume, get_all, idle, wait_until


def declare_and_fill(broker, ch, bodies, **declare_kw):
    queue = broker.name()
    ch.queue_declare(queue, **declare_kw)
    pub = broker.connect().channel()
    pub.confirm_delivery()
    for body in bodies:
        pub.basic_publish("", queue, body)
    return queue


def drop_abruptly(conn):
    """Cuts the TCP connection without any AMQP close (like a crashed client)."""
    sock = conn._impl._transport._sock  # pika internals: the connection's socket
    sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.parametrize("how", ["close", "tcp_drop"])
def test_unacked_messages_are_redelivered_when_consumer_connection_goes_away(broker, how):
    first = broker.connect()
    ch = first.channel()
    queue = declare_and_fill(broker, ch, [b"m%d" % i for i in range(5)])
    ch.basic_qos(prefetch_count=3)
    got = consume(ch, queue, 3, auto_ack=False)
    assert [d.body for d in got] == [b"m0", b"m1", b"m2"]
    ch.basic_ack(got[0].method.delivery_tag)
    ch.queue_declare(queue, passive=True)  # round trip: the ack has been processed
    if how == "close":
        first.close()
    else:
        drop_abruptly(first)

    other = broker.connect().channel()
    again = consume(other, queue, 4, timeout=15)
    assert [(d.body, d.method.redelivered) for d in again] == [
        (b"m1", True), (b"m2", True), (b"m3", False), (b"m4", False)]
    assert get_all(other, queue) == []


def test_prefetch_limits_unacked_deliveries(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = declare_and_fill(broker, ch, [b"%d" % i for i in range(10)])
    ch.basic_qos(prefetch_count=3)
    got = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(m.delivery_tag))
    wait_until(conn, lambda: len(got) == 3, what="3 deliveries")
    idle(conn, 0.3)
    assert len(got) == 3, "prefetch_count=3 but %d unacked deliveries" % len(got)
    ch.basic_ack(got[1], multiple=True)  # frees two slots
    wait_until(conn, lambda: len(got) == 5, what="2 more deliveries")
    idle(conn, 0.3)
    assert len(got) == 5


def test_basic_recover_requeues_unacked(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = declare_and_fill(broker, ch, [b"a", b"b"])
    consume(ch, queue, 2, auto_ack=False)
    ch.basic_recover(requeue=True)
    again = consume(ch, queue, 2)
    assert [(d.body, d.method.redelivered) for d in again] == [(b"a", True), (b"b", True)]


def test_exclusive_consumer(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = declare_and_fill(broker, ch, [])
    ch.basic_consume(queue, lambda *a: None, exclusive=True)
    code, text = channel_error(conn.channel().basic_consume, queue, lambda *a: None)
    assert (code, text) == (403, "ACCESS_REFUSED - queue '%s' in vhost '%s' in exclusive use" % (queue, broker.vhost))
    # ...and an exclusive consumer is refused while another consumer exists.
    queue2 = declare_and_fill(broker, ch, [])
    ch.basic_consume(queue2, lambda *a: None)
    code, _ = channel_error(conn.channel().basic_consume, queue2, lambda *a: None, exclusive=True)
    assert code == 403


def test_single_active_consumer(broker):
    conn = broker.connect()
    ch_a, ch_b = conn.channel(), conn.channel()
    queue = broker.name("sac")
    ch_a.queue_declare(queue, arguments={"x-single-active-consumer": True})
    got_a, got_b = [], []
    tag_a = ch_a.basic_consume(queue, lambda c, m, p, b: got_a.append(b), auto_ack=True)
    ch_b.basic_consume(queue, lambda c, m, p, b: got_b.append(b), auto_ack=True)
    pub = broker.connect().channel()
    pub.confirm_delivery()
    for i in range(5):
        pub.basic_publish("", queue, b"first-%d" % i)
    wait_until(conn, lambda: len(got_a) + len(got_b) == 5, what="5 deliveries")
    idle(conn, 0.2)
    assert got_a == [b"first-%d" % i for i in range(5)] and got_b == []
    assert ch_a.queue_declare(queue, passive=True).method.consumer_count == 2

    ch_a.basic_cancel(tag_a)  # B becomes the active consumer
    for i in range(3):
        pub.basic_publish("", queue, b"second-%d" % i)
    wait_until(conn, lambda: len(got_b) == 3, what="deliveries to the second consumer")
    assert got_b == [b"second-%d" % i for i in range(3)]
    assert len(got_a) == 5


def test_single_active_consumer_failover_redelivers_unacked(broker):
    conn_a, conn_b = broker.connect(), broker.connect()
    ch_a, ch_b = conn_a.channel(), conn_b.channel()
    queue = broker.name("sac")
    ch_a.queue_declare(queue, arguments={"x-single-active-consumer": True})
    got_a, got_b = [], []
    ch_a.basic_consume(queue, lambda c, m, p, b: got_a.append(b))  # manual ack: never acks
    ch_b.basic_consume(queue, lambda c, m, p, b: (got_b.append((b, m.redelivered)), c.basic_ack(m.delivery_tag)))
    pub = broker.connect().channel()
    pub.confirm_delivery()
    pub.basic_publish("", queue, b"x")
    pub.basic_publish("", queue, b"y")
    wait_until(conn_a, lambda: len(got_a) == 2, what="deliveries to the active consumer")
    idle(conn_b, 0.2)
    assert got_b == []
    conn_a.close()
    wait_until(conn_b, lambda: len(got_b) == 2, what="failover deliveries")
    assert got_b == [(b"x", True), (b"y", True)]


def queue_exists(conn, name):
    ch = conn.channel()
    try:
        ch.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    ch.close()
    return True


def test_auto_delete_queue_goes_after_last_consumer_cancels(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = broker.name("auto")
    ch.queue_declare(queue, auto_delete=True)
    idle(conn, 0.3)
    assert queue_exists(conn, queue), "auto-delete queue without any consumer yet must stay"
    tag1 = ch.basic_consume(queue, lambda *a: None)
    tag2 = ch.basic_consume(queue, lambda *a: None)
    ch.basic_cancel(tag1)
    assert queue_exists(conn, queue), "one consumer is still there"
    ch.basic_cancel(tag2)
    deadline = time.monotonic() + 5
    while queue_exists(conn, queue):
        assert time.monotonic() < deadline, "auto-delete queue still exists after its last consumer left"
        idle(conn, 0.05)


def test_server_cancels_consumer_when_queue_is_deleted(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = broker.name("doomed")
    ch.queue_declare(queue)
    cancels = []
    ch.add_on_cancel_callback(lambda frame: cancels.append(frame.method))
    tag = ch.basic_consume(queue, lambda *a: None)
    broker.connect().channel().queue_delete(queue)
    wait_until(conn, lambda: cancels, what="server-sent basic.cancel")
    assert isinstance(cancels[0], pika.spec.Basic.Cancel)
    assert cancels[0].consumer_tag == tag
    # The channel itself stays open.
    assert ch.is_open
    ch.queue_declare("", exclusive=True)


def test_cancel_ok_and_no_more_deliveries_after_cancel(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = declare_and_fill(broker, ch, [])
    got = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: got.append(b), auto_ack=True)
    assert ch.basic_cancel(tag) == []  # pika returns pending messages (auto-ack: none)
    pub = broker.connect().channel()
    pub.confirm_delivery()
    pub.basic_publish("", queue, b"after cancel")
    idle(conn, 0.3)
    assert got == []
    assert get_all(ch, queue) == [b"after cancel"]


@pytest.mark.parametrize("close", ["clean", "abrupt"])
def test_deliveries_not_yet_written_out_go_back_when_the_connection_ends(broker, close):
    """With no prefetch limit the broker hands the connection up to a send window of deliveries
    at once; the ones it had not written out when the connection ended must return to the queue
    (they used to stay unacknowledged until a restart). The queue holds more than the sockets'
    buffers (64 MiB), so the broker is still waiting to write when the client goes: a client that
    shuts its socket down must be noticed during that wait, well before the write-stall timeout
    (30 s)."""
    bodies = [b"m%05d" % i + b"." * (64 * 1024) for i in range(1024)]
    ch = broker.connect().channel()
    queue = declare_and_fill(broker, ch, bodies)
    conn = broker.connect()
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=0)
    got = []
    for method, _props, body in consumer.consume(queue, inactivity_timeout=10):
        assert method is not None, "no delivery"
        got.append(body)
        if len(got) == 10:
            consumer.basic_ack(method.delivery_tag, multiple=True)
            break
    if close == "clean":
        conn.close()
    else:
        drop_abruptly(conn)
    wait_until(None, lambda: ch.queue_declare(queue, passive=True).method.message_count == len(bodies) - 10,
               timeout=10, what="every unacknowledged delivery back in the queue")
    assert get_all(ch, queue) == bodies[10:]
