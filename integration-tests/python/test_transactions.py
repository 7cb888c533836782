"""AMQP transactions (tx.select / tx.commit / tx.rollback)."""
import pika
import pytest

from helpers import assert_no_message, get_all, get_eventually, message_count


def setup_queue(broker, conn, bodies=()):
    ch = conn.channel()
    queue = broker.name()
    ch.queue_declare(queue)
    if bodies:
        ch.confirm_delivery()
        for body in bodies:
            ch.basic_publish("", queue, body)
    ch.close()
    return queue


def test_publish_then_rollback_delivers_nothing(broker):
    conn = broker.connect()
    queue = setup_queue(broker, conn)
    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish("", queue, b"never")
    tx.basic_publish("", queue, b"never either")
    observer = conn.channel()
    assert_no_message(observer, queue, wait=0.2)  # uncommitted publishes are invisible
    tx.tx_rollback()
    assert_no_message(observer, queue, wait=0.3)
    assert message_count(observer, queue) == 0
    # The channel stays transactional and usable after a rollback.
    tx.basic_publish("", queue, b"committed")
    tx.tx_commit()
    assert get_all(observer, queue) == [b"committed"]


def test_publish_then_commit_delivers_in_order(broker):
    conn = broker.connect()
    queue = setup_queue(broker, conn)
    tx = conn.channel()
    tx.tx_select()
    for n in range(5):
        tx.basic_publish("", queue, b"m%d" % n, pika.BasicProperties(delivery_mode=2))
    observer = conn.channel()
    assert message_count(observer, queue) == 0
    tx.tx_commit()
    # tx.commit-ok means the messages are enqueued.
    assert message_count(observer, queue) == 5
    assert get_all(observer, queue) == [b"m%d" % n for n in range(5)]


def test_ack_then_rollback_leaves_message_unacked(broker):
    conn = broker.connect()
    queue = setup_queue(broker, conn, [b"job"])
    tx = conn.channel()
    tx.tx_select()
    d = get_eventually(tx, queue, auto_ack=False)
    tx.basic_ack(d.method.delivery_tag)
    tx.tx_rollback()
    observer = conn.channel()
    # Still unacked (held by tx's channel): neither gone nor back in the queue.
    assert_no_message(observer, queue, wait=0.2)
    assert message_count(observer, queue) == 0
    tx.close()  # closing the channel returns its unacked message
    again = get_eventually(observer, queue)
    assert (again.body, again.method.redelivered) == (b"job", True)


def test_ack_then_commit_removes_message(broker):
    conn = broker.connect()
    queue = setup_queue(broker, conn, [b"job", b"next"])
    tx = conn.channel()
    tx.tx_select()
    d = get_eventually(tx, queue, auto_ack=False)
    tx.basic_ack(d.method.delivery_tag)
    tx.tx_commit()
    tx.close()
    assert get_all(conn.channel(), queue) == [b"next"]


def test_commit_applies_publishes_and_acks_together(broker):
    conn = broker.connect()
    source = setup_queue(broker, conn, [b"in"])
    sink = setup_queue(broker, conn)
    tx = conn.channel()
    tx.tx_select()
    d = get_eventually(tx, source, auto_ack=False)
    tx.basic_publish("", sink, d.body + b"-processed")
    tx.basic_ack(d.method.delivery_tag)
    tx.tx_rollback()
    observer = conn.channel()
    assert message_count(observer, sink) == 0
    # Redo the work, this time committing.
    tx.basic_publish("", sink, d.body + b"-processed")
    tx.basic_ack(d.method.delivery_tag)
    tx.tx_commit()
    tx.close()
    assert get_all(observer, sink) == [b"in-processed"]
    assert get_all(observer, source) == []


def test_commit_without_select_is_406(broker):
    ch = broker.connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.tx_commit()
    assert (err.value.reply_code, err.value.reply_text) == (406, "PRECONDITION_FAILED - channel is not transactional")


def test_rollback_without_select_is_406(broker):
    ch = broker.connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.tx_rollback()
    assert (err.value.reply_code, err.value.reply_text) == (406, "PRECONDITION_FAILED - channel is not transactional")


def test_confirm_and_tx_are_mutually_exclusive(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.tx_select()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.confirm_delivery()
    assert err.value.reply_code == 406
    assert err.value.reply_text == "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.tx_select()
    assert err.value.reply_code == 406
    assert err.value.reply_text == "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
