"""Queue semantics: declare/delete/purge/get, errors, priorities, requeue order, acks."""
import pika
import pytest

from helpers import channel_error, consume, get_all, get_eventually


def publish_all(ch, queue, bodies, **props):
    for body in bodies:
        ch.basic_publish("", queue, body, pika.BasicProperties(**props) if props else None)


def test_server_named_queue(broker):
    ch = broker.connect().channel()
    ok = ch.queue_declare("", exclusive=True).method
    assert ok.queue.startswith("amq.gen-")
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    assert ch.queue_declare("", exclusive=True).method.queue != ok.queue


def test_declare_ok_counts_ready_messages_and_consumers(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    publish_all(ch, queue, [b"a", b"b", b"c"])
    ok = ch.queue_declare(queue, passive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (queue, 3, 0)
    get_eventually(ch, queue, auto_ack=False)
    get_eventually(ch, queue, auto_ack=False)
    ok = ch.queue_declare(queue, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (1, 0)  # unacked messages are not counted
    ch.basic_consume(queue, lambda *a: None)
    ok = conn.channel().queue_declare(queue, passive=True).method
    assert ok.consumer_count == 1


def test_priority_queue(broker):
    ch = broker.connect().channel()
    queue = broker.name("prio")
    ch.queue_declare(queue, arguments={"x-max-priority": 10})
    ch.confirm_delivery()
    for body, prio in [(b"low", 1), (b"none", None), (b"high", 9), (b"mid", 5), (b"high2", 9), (b"over", 200)]:
        ch.basic_publish("", queue, body, pika.BasicProperties(priority=prio))
    # A priority above x-max-priority counts as the maximum (10 here, so it
    # beats 9); no priority is 0; equal priorities keep FIFO order.
    assert get_all(ch, queue) == [b"over", b"high", b"high2", b"mid", b"low", b"none"]


def test_basic_get_empty_and_non_empty(broker):
    ch = broker.connect().channel()
    queue = broker.name()
    ch.queue_declare(queue)
    assert ch.basic_get(queue) == (None, None, None)
    ch.confirm_delivery()
    publish_all(ch, queue, [b"one", b"two"], content_type="text/plain", headers={"h": "v"})
    method, props, body = ch.basic_get(queue, auto_ack=False)
    assert body == b"one"
    assert method.message_count == 1  # messages left after this one
    assert method.redelivered is False
    assert method.exchange == "" and method.routing_key == queue
    assert props.content_type == "text/plain" and props.headers == {"h": "v"}
    ch.basic_ack(method.delivery_tag)
    method, _, body = ch.basic_get(queue)
    assert (body, method.message_count) == (b"two", 0)
    assert ch.basic_get(queue) == (None, None, None)


def test_purge_returns_count(broker):
    ch = broker.connect().channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    publish_all(ch, queue, [b"%d" % i for i in range(7)])
    assert ch.queue_purge(queue).method.message_count == 7
    assert ch.queue_purge(queue).method.message_count == 0
    assert ch.basic_get(queue) == (None, None, None)


def test_purge_keeps_unacked_messages(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    publish_all(ch, queue, [b"held", b"ready"])
    held = get_eventually(ch, queue, auto_ack=False)
    assert ch.queue_purge(queue).method.message_count == 1
    ch.close()  # the unacked message goes back to the queue
    assert get_all(conn.channel(), queue) == [held.body]


def test_delete_returns_count_and_if_unused_if_empty(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    publish_all(ch, queue, [b"x", b"y"])

    code, text = channel_error(conn.channel().queue_delete, queue, if_empty=True)
    assert (code, text) == (406, "PRECONDITION_FAILED - queue '%s' in vhost '%s' not empty" % (queue, broker.vhost))

    consumer_ch = conn.channel()
    tag = consumer_ch.basic_consume(queue, lambda *a: None)
    code, text = channel_error(conn.channel().queue_delete, queue, if_unused=True)
    assert (code, text) == (406, "PRECONDITION_FAILED - queue '%s' in vhost '%s' in use" % (queue, broker.vhost))
    consumer_ch.basic_cancel(tag)
    consumer_ch.close()  # its unacked messages return to the queue

    assert conn.channel().queue_delete(queue).method.message_count == 2
    code, _ = channel_error(conn.channel().queue_declare, queue, passive=True)
    assert code == 404
    # Deleting a queue that does not exist is not an error.
    assert conn.channel().queue_delete(queue).method.message_count == 0


def test_passive_declare_missing_queue_closes_only_that_channel(broker):
    conn = broker.connect()
    healthy = conn.channel()
    doomed = conn.channel()
    missing = broker.name("missing")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        doomed.queue_declare(missing, passive=True)
    assert err.value.reply_code == 404
    assert err.value.reply_text == "NOT_FOUND - no queue '%s' in vhost '%s'" % (missing, broker.vhost)
    assert doomed.is_closed
    assert conn.is_open and healthy.is_open
    queue = healthy.queue_declare("", exclusive=True).method.queue
    healthy.basic_publish("", queue, b"still fine")
    assert get_eventually(healthy, queue).body == b"still fine"
    assert get_all(conn.channel(), queue) == []


@pytest.mark.parametrize("op", ["queue_declare", "basic_consume", "basic_get", "queue_purge",
                                "queue_delete", "queue_bind"])
def test_exclusive_queue_is_locked_for_other_connections(broker, op):
    owner = broker.connect().channel()
    queue = broker.name("exclusive")
    owner.queue_declare(queue, exclusive=True)
    ch = broker.connect().channel()
    call = {
        "queue_declare": lambda: ch.queue_declare(queue),
        "basic_consume": lambda: ch.basic_consume(queue, lambda *a: None),
        "basic_get": lambda: ch.basic_get(queue),
        "queue_purge": lambda: ch.queue_purge(queue),
        "queue_delete": lambda: ch.queue_delete(queue),
        "queue_bind": lambda: ch.queue_bind(queue, "amq.direct", "k"),
    }[op]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        call()
    assert err.value.reply_code == 405
    assert err.value.reply_text.startswith(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost '%s'" % (queue, broker.vhost))
    # The owner is unaffected, and anyone may still publish to it.
    other = broker.connect().channel()
    other.confirm_delivery()
    other.basic_publish("", queue, b"to the owner")
    assert get_eventually(owner, queue).body == b"to the owner"


def test_exclusive_queue_is_deleted_with_its_connection(broker):
    owner_conn = broker.connect()
    queue = broker.name("exclusive")
    owner_conn.channel().queue_declare(queue, exclusive=True)
    owner_conn.close()
    code, _ = channel_error(broker.connect().channel().queue_declare, queue, passive=True)
    assert code == 404


def test_redeclare_with_different_properties_is_406(broker):
    conn = broker.connect()
    queue = broker.name()
    conn.channel().queue_declare(queue, arguments={"x-max-length": 5})
    code, text = channel_error(conn.channel().queue_declare, queue, arguments={"x-max-length": 6})
    assert code == 406
    assert text.startswith("PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '%s'" % queue)
    code, text = channel_error(conn.channel().queue_declare, queue)
    assert code == 406 and "inequivalent arg 'x-max-length'" in text
    code, text = channel_error(conn.channel().queue_declare, queue, durable=True, arguments={"x-max-length": 5})
    assert code == 406 and "inequivalent arg 'durable'" in text
    # Same properties: fine; passive ignores the arguments.
    conn.channel().queue_declare(queue, arguments={"x-max-length": 5})
    conn.channel().queue_declare(queue, passive=True, arguments={"x-max-length": 7})


@pytest.mark.parametrize("args,fragment", [
    ({"x-max-length": -1}, "invalid arg 'x-max-length'"),
    ({"x-message-ttl": -5}, "invalid arg 'x-message-ttl'"),
    ({"x-max-priority": "abc"}, "invalid arg 'x-max-priority'"),
    ({"x-overflow": "sideways"}, "invalid arg 'x-overflow'"),
])
def test_invalid_queue_arguments_are_406(broker, args, fragment):
    queue = broker.name()
    code, text = channel_error(broker.connect().channel().queue_declare, queue, arguments=args)
    assert code == 406
    assert text.startswith("PRECONDITION_FAILED - ") and fragment in text


def test_reserved_amq_prefix_is_403(broker):
    conn = broker.connect()
    code, text = channel_error(conn.channel().queue_declare, "amq.mine")
    assert (code, text) == (403, "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'")


@pytest.mark.parametrize("how", ["nack", "reject"])
def test_requeue_restores_original_position(broker, how):
    ch = broker.connect().channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    publish_all(ch, queue, [b"m0", b"m1", b"m2", b"m3"])
    got = [get_eventually(ch, queue, auto_ack=False) for _ in range(3)]
    assert [d.body for d in got] == [b"m0", b"m1", b"m2"]
    # Requeue out of order: m2, then m0, then m1.
    for i in (2, 0, 1):
        if how == "nack":
            ch.basic_nack(got[i].method.delivery_tag, requeue=True)
        else:
            ch.basic_reject(got[i].method.delivery_tag, requeue=True)
    again = [get_eventually(ch, queue) for _ in range(4)]
    assert [(d.body, d.method.redelivered) for d in again] == [
        (b"m0", True), (b"m1", True), (b"m2", True), (b"m3", False)]


def test_nack_multiple_requeues_all_up_to_tag(broker):
    ch = broker.connect().channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    publish_all(ch, queue, [b"a", b"b", b"c"])
    got = [get_eventually(ch, queue, auto_ack=False) for _ in range(3)]
    ch.basic_nack(got[1].method.delivery_tag, multiple=True, requeue=True)  # a and b
    ch.basic_ack(got[2].method.delivery_tag)
    assert get_all(ch, queue) == [b"a", b"b"]


def test_multiple_ack(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    publish_all(ch, queue, [b"1", b"2", b"3", b"4"])
    got = consume(ch, queue, 4, auto_ack=False)
    tags = [d.method.delivery_tag for d in got]
    assert tags == sorted(tags) and len(set(tags)) == 4
    ch.basic_ack(tags[2], multiple=True)  # acks 1, 2 and 3; 4 stays unacked
    ch.close()
    later = conn.channel()
    [d] = consume(later, queue, 1)
    assert (d.body, d.method.redelivered) == (b"4", True)
    assert get_all(later, queue) == []


def test_ack_of_unknown_delivery_tag_is_406(broker):
    conn = broker.connect()
    ch = conn.channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"x")
    d = get_eventually(ch, queue, auto_ack=False)
    ch.basic_ack(d.method.delivery_tag)
    ch.basic_ack(d.method.delivery_tag)  # second ack: the tag is no longer known
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.queue_declare("", exclusive=True)
    assert (err.value.reply_code, err.value.reply_text) == (
        406, "PRECONDITION_FAILED - unknown delivery tag %d" % d.method.delivery_tag)
    assert conn.is_open


def test_invalid_per_message_expiration_is_406(broker):
    ch = broker.connect().channel()
    queue = broker.name()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.basic_publish("", queue, b"x", pika.BasicProperties(expiration="soon"))
    assert err.value.reply_code == 406
    assert err.value.reply_text.startswith("PRECONDITION_FAILED - invalid expiration 'soon'")
