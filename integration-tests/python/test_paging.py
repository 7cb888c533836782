"""Paging: a durable queue's backlog beyond its in-memory window waits on disk and comes back in
order, through consumers, restarts and kill -9; memory holds only the window (checked through the
management API's messages_ram / messages_paged_out, RabbitMQ's names for them).

Junction only: these tests read Junction's window sizes and kill the broker.
"""
import time

import pika
import pytest

from helpers import get_all, message_count
from test_management import call

pytestmark = pytest.mark.junction_only

WINDOW = 8192  # ready messages a queue keeps in memory (core/src/queue/paging.rs)
LAZY_WINDOW = 16


def queue_info(broker, name):
    status, info = call(broker, "GET", "/api/queues/%2F/" + name)
    assert status == 200, info
    return info


def publish_all(ch, queue, bodies):
    """Publishes persistent messages without confirms (fast); callers wait for the count."""
    for body in bodies:
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))


def lazy_queue_with(broker, ch, what, bodies):
    """Declares a durable lazy queue and publishes `bodies` to it, persistent and confirmed."""
    queue = broker.name(what)
    ch.queue_declare(queue, durable=True, arguments={"x-queue-mode": "lazy"})
    ch.confirm_delivery()
    for body in bodies:
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    return queue


def numbered(prefix, n):
    return [("%s-%06d" % (prefix, i)).encode() for i in range(n)]


@pytest.mark.timeout(120)
def test_a_backlog_beyond_the_window_waits_on_disk_and_drains_in_order(broker):
    queue = broker.name("backlog")
    ch = broker.connect().channel()
    ch.queue_declare(queue, durable=True)
    sent = numbered("m", 3 * WINDOW)
    publish_all(ch, queue, sent)
    deadline = time.monotonic() + 30
    while message_count(ch, queue) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.1)
    info = queue_info(broker, queue)
    assert info["messages_ready"] == len(sent)
    assert info["messages_ram"] <= WINDOW, info
    assert info["messages_paged_out"] >= len(sent) - WINDOW, info
    assert info["message_bytes"] == sum(len(b) for b in sent)

    # A consumer with acks takes them all, in publish order.
    got = []
    for method, _props, body in ch.consume(queue, inactivity_timeout=10):
        assert method is not None, "consumer stalled after %d of %d messages" % (len(got), len(sent))
        got.append(body)
        ch.basic_ack(method.delivery_tag)
        if len(got) == len(sent):
            break
    ch.cancel()
    assert got == sent
    info = queue_info(broker, queue)
    assert (info["messages"], info["messages_paged_out"]) == (0, 0)


@pytest.mark.timeout(120)
def test_a_lazy_queue_keeps_its_backlog_through_kill_9(broker):
    ch = broker.connect().channel()
    sent = numbered("l", 2000)
    queue = lazy_queue_with(broker, ch, "lazy", sent)
    ch.basic_publish("", queue, b"transient")  # not persistent: gone after the kill
    info = queue_info(broker, queue)
    assert info["messages_ram"] <= LAZY_WINDOW + 1, info
    # Consume and ack the first 500: they must not come back.
    for _ in range(500):
        method, _props, body = ch.basic_get(queue, auto_ack=False)
        ch.basic_ack(method.delivery_tag)
    # Five more taken without an ack: they come back after the kill, as possibly redelivered.
    for _ in range(5):
        ch.basic_get(queue, auto_ack=False)
    broker.kill9()
    broker.restart()
    ch = broker.connect().channel()
    assert queue_info(broker, queue)["messages_ram"] <= LAZY_WINDOW
    redelivered, bodies = [], []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        redelivered.append(method.redelivered)
        bodies.append(body)
    assert bodies == sent[500:], "lost or reordered after kill -9"
    assert all(redelivered), "recovered messages may have been delivered before"


@pytest.mark.timeout(60)
def test_purging_a_paged_queue_empties_it_for_good(broker):
    ch = broker.connect().channel()
    queue = lazy_queue_with(broker, ch, "purge", numbered("p", 300))
    assert ch.queue_purge(queue).method.message_count == 300
    ch.basic_publish("", queue, b"after", pika.BasicProperties(delivery_mode=2))
    broker.restart()
    ch = broker.connect().channel()
    assert get_all(ch, queue) == [b"after"]
