"""Dead-letter exchanges, the x-death header, x-delivery-limit and x-expires.

Observed on RabbitMQ 3.10 (and required of Junction): each x-death entry is a
table {count: long ('l'), reason: longstr, queue: longstr, time: timestamp,
exchange: longstr, routing-keys: array of longstr} plus `original-expiration`
when a per-message TTL expired (the expiration property itself is removed).
The newest death comes first; a repeated (queue, reason) pair increments its
count and moves to the front.  x-first-death-{exchange,queue,reason} are set
once, at the first death.
"""
import datetime
import time

import pika
import pytest
from pika.compat import long as amqp_long

from helpers import assert_no_message, get_all, get_eventually, idle


def dlx_setup(broker, ch, dl_routing_key=None, **queue_args):
    """source queue -> (direct) dlx -> dlq bound with the routing key we expect."""
    dlx, dlq, source = broker.name("dlx"), broker.name("dlq"), broker.name("source")
    ch.exchange_declare(dlx, "direct")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx, routing_key=dl_routing_key or source)
    args = {"x-dead-letter-exchange": dlx}
    if dl_routing_key:
        args["x-dead-letter-routing-key"] = dl_routing_key
    args.update(queue_args)
    ch.queue_declare(source, arguments=args)
    return source, dlx, dlq


def check_death(entry, reason, queue, exchange, routing_keys):
    assert entry["reason"] == reason
    assert entry["queue"] == queue
    assert entry["exchange"] == exchange
    assert entry["routing-keys"] == routing_keys
    assert entry["count"] == 1
    assert isinstance(entry["count"], amqp_long), "x-death count must be a 64-bit long ('l')"
    assert isinstance(entry["time"], datetime.datetime)
    now = datetime.datetime.utcnow()
    assert abs((entry["time"] - now).total_seconds()) < 300


@pytest.mark.parametrize("how", ["reject", "nack"])
def test_dead_letter_on_reject_with_routing_key_override(broker, how):
    ch = broker.connect().channel()
    source, dlx, dlq = dlx_setup(broker, ch, dl_routing_key="dead")
    props = pika.BasicProperties(headers={"app": "kept"}, message_id="id-1", content_type="text/plain")
    ch.basic_publish("", source, b"bad message", props)
    d = get_eventually(ch, source, auto_ack=False)
    if how == "reject":
        ch.basic_reject(d.method.delivery_tag, requeue=False)
    else:
        ch.basic_nack(d.method.delivery_tag, requeue=False)

    dead = get_eventually(ch, dlq)
    assert dead.body == b"bad message"
    assert dead.method.exchange == dlx
    assert dead.method.routing_key == "dead"
    assert dead.method.redelivered is False
    assert dead.properties.message_id == "id-1"
    assert dead.properties.content_type == "text/plain"
    headers = dead.properties.headers
    assert headers["app"] == "kept"
    [death] = headers["x-death"]
    check_death(death, "rejected", source, "", [source])
    assert set(death) == {"count", "reason", "queue", "time", "exchange", "routing-keys"}
    assert headers["x-first-death-reason"] == "rejected"
    assert headers["x-first-death-queue"] == source
    assert headers["x-first-death-exchange"] == ""
    assert get_all(ch, source) == []


def test_dead_letter_keeps_original_routing_key_and_exchange(broker):
    ch = broker.connect().channel()
    origin = broker.name("origin")
    ch.exchange_declare(origin, "topic")
    source, dlx, dlq = dlx_setup(broker, ch)
    ch.queue_unbind(dlq, dlx, routing_key=source)
    ch.queue_bind(dlq, dlx, routing_key="orders.created")
    ch.queue_bind(source, origin, routing_key="orders.*")
    ch.basic_publish(origin, "orders.created", b"order")
    d = get_eventually(ch, source, auto_ack=False)
    ch.basic_reject(d.method.delivery_tag, requeue=False)
    dead = get_eventually(ch, dlq)
    assert dead.method.routing_key == "orders.created"
    [death] = dead.properties.headers["x-death"]
    check_death(death, "rejected", source, origin, ["orders.created"])


def test_requeue_true_does_not_dead_letter(broker):
    ch = broker.connect().channel()
    source, _dlx, dlq = dlx_setup(broker, ch)
    ch.basic_publish("", source, b"retry me")
    d = get_eventually(ch, source, auto_ack=False)
    ch.basic_reject(d.method.delivery_tag, requeue=True)
    again = get_eventually(ch, source)
    assert (again.body, again.method.redelivered) == (b"retry me", True)
    assert again.properties.headers is None or "x-death" not in again.properties.headers
    assert_no_message(ch, dlq, wait=0.3)


def test_reject_without_dlx_drops_the_message(broker):
    ch = broker.connect().channel()
    queue = broker.name("plain")
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"gone")
    d = get_eventually(ch, queue, auto_ack=False)
    ch.basic_reject(d.method.delivery_tag, requeue=False)
    assert_no_message(ch, queue, wait=0.3)


def test_dead_letter_on_queue_ttl_expiry(broker):
    ch = broker.connect().channel()
    source, dlx, dlq = dlx_setup(broker, ch, dl_routing_key="expired", **{"x-message-ttl": 100})
    ch.basic_publish("", source, b"stale", pika.BasicProperties(headers={"n": 1}))
    dead = get_eventually(ch, dlq, timeout=10)
    assert dead.body == b"stale"
    assert dead.method.routing_key == "expired"
    headers = dead.properties.headers
    assert headers["n"] == 1
    [death] = headers["x-death"]
    check_death(death, "expired", source, "", [source])
    assert "original-expiration" not in death
    assert headers["x-first-death-reason"] == "expired"
    assert get_all(ch, source) == []


def test_dead_letter_on_per_message_expiration(broker):
    ch = broker.connect().channel()
    source, dlx, dlq = dlx_setup(broker, ch, dl_routing_key="expired")
    ch.basic_publish("", source, b"short-lived", pika.BasicProperties(expiration="50"))
    dead = get_eventually(ch, dlq, timeout=10)
    assert dead.body == b"short-lived"
    # The dead-lettered copy must not expire again: the property moves into x-death.
    assert dead.properties.expiration is None
    [death] = dead.properties.headers["x-death"]
    assert death["original-expiration"] == "50"
    del death["original-expiration"]
    check_death(death, "expired", source, "", [source])


def test_message_without_expiration_survives_next_to_expiring_one(broker):
    ch = broker.connect().channel()
    source, dlx, dlq = dlx_setup(broker, ch, dl_routing_key="expired")
    ch.basic_publish("", source, b"expires", pika.BasicProperties(expiration="50"))
    ch.basic_publish("", source, b"stays")
    dead = get_eventually(ch, dlq, timeout=10)
    assert dead.body == b"expires"
    assert get_all(ch, source) == [b"stays"]


def test_dead_letter_on_max_length_drop_head(broker):
    ch = broker.connect().channel()
    source, dlx, dlq = dlx_setup(broker, ch, dl_routing_key="overflow", **{"x-max-length": 2})
    ch.confirm_delivery()
    for n in range(4):
        ch.basic_publish("", source, b"m%d" % n)
    assert get_all(ch, source) == [b"m2", b"m3"]
    first = get_eventually(ch, dlq)
    second = get_eventually(ch, dlq)
    assert (first.body, second.body) == (b"m0", b"m1")
    for d in (first, second):
        [death] = d.properties.headers["x-death"]
        check_death(death, "maxlen", source, "", [source])
        assert d.properties.headers["x-first-death-reason"] == "maxlen"


def test_x_death_count_increments_and_newest_first(broker):
    """q1 rejects -> dlx (fanout) -> q2 (ttl) expires -> default exchange -> q1 ..."""
    ch = broker.connect().channel()
    dlx, q1, q2 = broker.name("dlx"), broker.name("q1"), broker.name("q2")
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(q1, arguments={"x-dead-letter-exchange": dlx})
    ch.queue_declare(q2, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": q1})
    ch.queue_bind(q2, dlx)
    ch.basic_publish("", q1, b"ping-pong")

    d = get_eventually(ch, q1, auto_ack=False)
    assert d.properties.headers is None
    ch.basic_reject(d.method.delivery_tag, requeue=False)

    d = get_eventually(ch, q1, auto_ack=False)
    deaths = d.properties.headers["x-death"]
    assert [(x["queue"], x["reason"], x["count"]) for x in deaths] == [(q2, "expired", 1), (q1, "rejected", 1)]
    assert deaths[0]["exchange"] == dlx and deaths[0]["routing-keys"] == [q1]
    ch.basic_reject(d.method.delivery_tag, requeue=False)

    d = get_eventually(ch, q1)
    headers = d.properties.headers
    assert [(x["queue"], x["reason"], x["count"]) for x in headers["x-death"]] == [(q2, "expired", 2), (q1, "rejected", 2)]
    assert (headers["x-first-death-queue"], headers["x-first-death-reason"], headers["x-first-death-exchange"]) == (q1, "rejected", "")


def delivery_limit_args(broker, limit, dlq):
    args = {"x-delivery-limit": limit, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    if not broker.is_junction:
        # RabbitMQ 3.10 honours x-delivery-limit only on quorum queues; Junction
        # supports it on ordinary queues (checked in the junction_only test below).
        args["x-queue-type"] = "quorum"
    return args


def nack_until_dead(ch, queue, max_rounds=10):
    """basic.get + nack(requeue) until the message stops coming back.

    Returns the redelivered flag of every delivery.  A requeued message may
    take a moment to be back (quorum queues), so an empty queue is polled for
    a second before the message is declared gone.
    """
    deliveries = []
    for _ in range(max_rounds):
        deadline = time.monotonic() + 1.0
        method, _props, _body = ch.basic_get(queue)
        while method is None and time.monotonic() < deadline:
            ch.connection.process_data_events(time_limit=0.05)
            method, _props, _body = ch.basic_get(queue)
        if method is None:
            return deliveries
        deliveries.append(method.redelivered)
        ch.basic_nack(method.delivery_tag, requeue=True)
    raise AssertionError("message was still delivered after %d nacks" % max_rounds)


def test_delivery_limit_dead_letters_after_n_redeliveries(broker):
    ch = broker.connect().channel()
    queue, dlq = broker.name("limited"), broker.name("dlq")
    ch.queue_declare(dlq)
    ch.queue_declare(queue, durable=True, arguments=delivery_limit_args(broker, 2, dlq))
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"poison")
    # The first delivery plus 2 redeliveries; the 3rd nack exceeds the limit.
    assert nack_until_dead(ch, queue) == [False, True, True]
    dead = get_eventually(ch, dlq)
    assert dead.body == b"poison"
    [death] = dead.properties.headers["x-death"]
    assert (death["reason"], death["queue"], death["count"]) == ("delivery_limit", queue, 1)
    assert death["exchange"] == "" and death["routing-keys"] == [queue]


@pytest.mark.junction_only
def test_delivery_limit_on_classic_queue_without_dlx_drops(broker):
    """Junction honours x-delivery-limit on any queue (RabbitMQ 3.10: quorum only)."""
    ch = broker.connect().channel()
    queue = broker.name("limited")
    ch.queue_declare(queue, arguments={"x-delivery-limit": 1})
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"poison")
    assert nack_until_dead(ch, queue) == [False, True]
    assert get_all(ch, queue) == []


def queue_exists(conn, name):
    ch = conn.channel()
    try:
        ch.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    ch.close()
    return True


def test_x_expires_deletes_unused_queue(broker):
    conn = broker.connect()
    ch = conn.channel()
    unused, consumed, redeclared = broker.name("expiring"), broker.name("in-use"), broker.name("touched")
    for q in (unused, consumed):
        ch.queue_declare(q, arguments={"x-expires": 300})
    ch.queue_declare(redeclared, arguments={"x-expires": 1000})
    ch.basic_consume(consumed, lambda *a: None)
    # Any queue.declare (passive too) counts as use and restarts the timer:
    # keep touching `redeclared` for longer than its 1 s expiry.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert queue_exists(conn, redeclared)
        idle(conn, 0.25)
    # By now (2 s > 300 ms) the untouched queue is gone, the consumed one is not.
    assert not queue_exists(conn, unused)
    assert queue_exists(conn, consumed)
    # Left alone, the touched queue expires too.
    idle(conn, 2.0)
    assert not queue_exists(conn, redeclared)
