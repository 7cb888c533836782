"""Small pika helpers shared by the tests: every wait has a deadline."""
import time
from collections import namedtuple

import pika

Delivery = namedtuple("Delivery", "method properties body")

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def wait_until(conn, predicate, timeout=10.0, what="condition"):
    """Services `conn` (a BlockingConnection, or None) until predicate() is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        if conn is not None:
            conn.process_data_events(time_limit=0.05)
        else:
            time.sleep(0.05)


def idle(conn, seconds):
    """Services conn for `seconds` (process_data_events may return early)."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        conn.process_data_events(time_limit=min(remaining, 0.1))


def consume(ch, queue, n, timeout=10.0, auto_ack=True, **consume_kw):
    """Consumes exactly n messages from queue (or fails); returns Deliveries.

    The consumer is cancelled afterwards.  With auto_ack=False the messages stay
    unacknowledged; ack them with ch.basic_ack(d.method.delivery_tag).
    """
    got = []

    def on_message(_ch, method, props, body):
        got.append(Delivery(method, props, body))

    tag = ch.basic_consume(queue, on_message, auto_ack=auto_ack, **consume_kw)
    try:
        wait_until(ch.connection, lambda: len(got) >= n, timeout,
                   "%d message(s) from %s (got %d)" % (n, queue, len(got)))
    finally:
        ch.basic_cancel(tag)
    assert len(got) == n, "expected %d messages, got %d: %r" % (n, len(got), [d.body for d in got])
    return got


def get_eventually(ch, queue, timeout=10.0, auto_ack=True):
    """basic.get until a message arrives (e.g. after a TTL or a dead-lettering)."""
    conn = ch.connection
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            return Delivery(method, props, body)
        if time.monotonic() >= deadline:
            raise AssertionError("no message in %s within %.1f s" % (queue, timeout))
        conn.process_data_events(time_limit=0.05)


def get_all(ch, queue, auto_ack=True):
    """basic.get until the queue is empty; returns the bodies in order."""
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is None:
            return out
        out.append(body)


def assert_no_message(ch, queue, wait=0.5):
    """Nothing can be fetched from queue during `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        assert method is None, "unexpected message in %s: %r" % (queue, body)
        if time.monotonic() >= deadline:
            return
        ch.connection.process_data_events(time_limit=0.05)


def message_count(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def wait_message_count(ch, queue, expected, timeout=10.0):
    """Polls queue.declare(passive) until message_count == expected."""
    deadline = time.monotonic() + timeout
    while True:
        count = message_count(ch, queue)
        if count == expected:
            return
        if time.monotonic() >= deadline:
            raise AssertionError("queue %s has %d messages, expected %d" % (queue, count, expected))
        ch.connection.process_data_events(time_limit=0.05)


def channel_error(fn, *args, **kwargs):
    """Runs fn, expecting ChannelClosedByBroker; returns (reply_code, reply_text)."""
    try:
        fn(*args, **kwargs)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return exc.reply_code, exc.reply_text
    raise AssertionError("%s did not close the channel" % getattr(fn, "__name__", fn))
