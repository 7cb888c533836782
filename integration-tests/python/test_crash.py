"""Crash safety: SIGKILL under load loses no confirmed message; durable
topology and persistent messages survive restarts, transient ones don't.

Junction only: these tests kill and restart the broker process.
"""
import os
import random
import threading
import time

import pika
import pytest

from helpers import channel_error, get_all, message_count

pytestmark = pytest.mark.junction_only

CYCLES = int(os.environ.get("JUNCTION_CRASH_CYCLES", "20"))


class ConfirmingPublisher(threading.Thread):
    """Publishes small persistent messages with confirms until the broker dies."""

    def __init__(self, params, queue, prefix):
        super().__init__(daemon=True)
        self.params, self.queue, self.prefix = params, queue, prefix
        self.attempted, self.confirmed = set(), set()
        self.ready = threading.Event()
        self.unexpected = None

    def run(self):
        n = 0
        try:
            conn = pika.BlockingConnection(self.params)
            ch = conn.channel()
            ch.confirm_delivery()
            self.ready.set()
            while True:
                body = ("%s-%d" % (self.prefix, n)).encode()
                self.attempted.add(body)
                ch.basic_publish("", self.queue, body, pika.BasicProperties(delivery_mode=2))
                self.confirmed.add(body)  # basic_publish returned: basic.ack received
                n += 1
        except (pika.exceptions.AMQPError, OSError):
            pass  # the broker was killed
        except Exception as exc:  # anything else is a test bug or a nack
            self.unexpected = exc
        finally:
            self.ready.set()


def drain(broker, queue):
    ch = broker.connect().channel()  # closed by the fixture (or at the next restart)
    ch.queue_declare(queue, durable=True)
    return get_all(ch, queue)


@pytest.mark.timeout(240)
def test_sigkill_under_load_loses_no_confirmed_message(broker):
    seed = int(os.environ.get("JUNCTION_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    queue = broker.name("crash")
    broker.connect().channel().queue_declare(queue, durable=True)
    attempted, confirmed, drained = set(), set(), set()
    started = time.monotonic()

    for cycle in range(CYCLES):
        publishers = [ConfirmingPublisher(broker.params(), queue, "c%d-p%d" % (cycle, i)) for i in range(2)]
        for p in publishers:
            p.start()
        for p in publishers:
            assert p.ready.wait(15), "publisher could not connect"
        time.sleep(rng.uniform(0.1, 0.5))
        broker.kill9()
        for p in publishers:
            p.join(15)
            assert not p.is_alive(), "publisher still blocked 15 s after the broker died"
            assert p.unexpected is None, "cycle %d: %r (seed %d)" % (cycle, p.unexpected, seed)
            attempted |= p.attempted
            confirmed |= p.confirmed
        broker.restart()
        drained |= set(drain(broker, queue))
        lost = confirmed - drained
        assert not lost, "cycle %d (seed %d): %d confirmed messages lost after SIGKILL, e.g. %r" % (
            cycle, seed, len(lost), sorted(lost)[:5])

    drained |= set(drain(broker, queue))
    assert confirmed <= drained
    phantom = drained - attempted
    assert not phantom, "messages nobody published: %r" % sorted(phantom)[:5]
    assert len(confirmed) >= CYCLES, "only %d confirms in %d cycles: the test exercised nothing" % (
        len(confirmed), CYCLES)
    print("%d cycles, %d confirmed, %d attempted, %.1f s (seed %d)" % (
        CYCLES, len(confirmed), len(attempted), time.monotonic() - started, seed))


def build_topology(broker):
    """Declares a mix of durable and transient things; returns their names."""
    n = {k: broker.name(k) for k in ("dx", "dx2", "tx", "dq", "dq2", "dq_deleted", "tq")}
    ch = broker.connect().channel()
    ch.exchange_declare(n["dx"], "direct", durable=True)
    ch.exchange_declare(n["dx2"], "fanout", durable=True)
    ch.exchange_declare(n["tx"], "fanout", durable=False)
    ch.queue_declare(n["dq"], durable=True, arguments={"x-max-length": 100})
    ch.queue_declare(n["dq2"], durable=True)
    ch.queue_declare(n["dq_deleted"], durable=True)
    ch.queue_declare(n["tq"], durable=False)
    ch.queue_bind(n["dq"], n["dx"], "k")
    ch.queue_bind(n["dq"], n["dx"], "old")
    ch.queue_bind(n["dq"], "amq.topic", "a.#")
    ch.exchange_bind(destination=n["dx2"], source=n["dx"], routing_key="k")
    ch.queue_bind(n["dq2"], n["dx2"])
    ch.queue_bind(n["tq"], n["dx"], "k")
    # Changes made before the restart must stick too.
    ch.queue_unbind(n["dq"], n["dx"], "old")
    ch.queue_delete(n["dq_deleted"])

    ch.confirm_delivery()
    props = dict(headers={"h": "v", "n": 7}, message_id="mid", content_type="text/plain",
                 correlation_id="cid", priority=3, timestamp=1_700_000_000, type="t", app_id="app")
    ch.basic_publish("", n["dq"], b"p1", pika.BasicProperties(delivery_mode=2, **props))
    ch.basic_publish("", n["dq"], b"t1", pika.BasicProperties(delivery_mode=1))
    ch.basic_publish("", n["dq"], b"p2", pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("", n["dq"], b"t2")  # no delivery mode: transient
    ch.basic_publish("", n["tq"], b"p-in-transient-queue", pika.BasicProperties(delivery_mode=2))
    assert message_count(ch, n["dq"]) == 4
    return n, props


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_durable_topology_and_persistent_messages_survive_restart(broker, how):
    n, props = build_topology(broker)
    if how == "sigterm":
        assert broker.stop() == 0, "junction did not exit cleanly on SIGTERM"
    else:
        broker.kill9()
    broker.restart()

    conn = broker.connect()
    for name in (n["dx"], n["dx2"]):
        conn.channel().exchange_declare(name, passive=True)
    for name in (n["dq"], n["dq2"]):
        conn.channel().queue_declare(name, passive=True)
    for gone in ("tq", "dq_deleted"):
        assert channel_error(conn.channel().queue_declare, n[gone], passive=True)[0] == 404, gone
    assert channel_error(conn.channel().exchange_declare, n["tx"], passive=True)[0] == 404
    # Queue arguments were persisted with the queue.
    conn.channel().queue_declare(n["dq"], durable=True, arguments={"x-max-length": 100})
    assert channel_error(conn.channel().queue_declare, n["dq"], durable=True,
                         arguments={"x-max-length": 5})[0] == 406

    ch = conn.channel()
    method, got_props, body = ch.basic_get(n["dq"], auto_ack=True)
    assert body == b"p1"
    assert got_props.delivery_mode == 2
    for key, value in props.items():
        assert getattr(got_props, key) == value, key
    assert get_all(ch, n["dq"]) == [b"p2"], "transient messages must not survive a restart"

    # Bindings survived (and the removed one stayed removed).
    ch.confirm_delivery()
    ch.basic_publish(n["dx"], "k", b"via dx")
    ch.basic_publish(n["dx"], "old", b"unbound key")
    ch.basic_publish("amq.topic", "a.b", b"via amq.topic")
    assert get_all(ch, n["dq"]) == [b"via dx", b"via amq.topic"]
    assert get_all(ch, n["dq2"]) == [b"via dx"]  # exchange-to-exchange binding


def test_unacked_persistent_message_is_back_after_sigkill(broker):
    queue = broker.name("unacked")
    ch = broker.connect().channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"in flight", pika.BasicProperties(delivery_mode=2))
    method, _, body = ch.basic_get(queue, auto_ack=False)
    assert body == b"in flight"
    broker.kill9()
    broker.restart()
    assert get_all(broker.connect().channel(), queue) == [b"in flight"]


def test_restart_twice_keeps_messages_and_acks_after_sigterm(broker):
    queue = broker.name("twice")
    ch = broker.connect().channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    for i in range(100):
        ch.basic_publish("", queue, b"%d" % i, pika.BasicProperties(delivery_mode=2))
    for _ in range(40):
        method, _, _ = ch.basic_get(queue, auto_ack=False)
        ch.basic_ack(method.delivery_tag)
    ch.queue_declare(queue, durable=True)  # round trip: the acks were processed
    assert broker.stop() == 0
    broker.restart()
    broker.restart()
    assert get_all(broker.connect().channel(), queue) == [b"%d" % i for i in range(40, 100)]
