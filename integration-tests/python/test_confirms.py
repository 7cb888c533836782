"""Publisher confirms (confirm.select, basic.ack / basic.nack / basic.return)."""
import pika
import pytest

from helpers import PERSISTENT, get_all, message_count, wait_until


def test_confirm_ack_for_persistent_messages_to_durable_queue(broker):
    queue = broker.name("durable")
    ch = broker.connect().channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    for n in range(50):
        # BlockingChannel.basic_publish waits for the broker's basic.ack and
        # raises NackError / UnroutableError otherwise.
        ch.basic_publish("", queue, b"m%d" % n, PERSISTENT, mandatory=True)
    assert message_count(ch, queue) == 50
    assert get_all(ch, queue) == [b"m%d" % n for n in range(50)]


def test_confirm_select_ok_and_delivery_tags_on_the_wire(broker):
    """confirm.select-ok arrives; acks carry the publish sequence numbers 1, 2, 3..."""
    conn = broker.connect()
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    acks = []
    # Use pika's lower-level frame callback to see the raw basic.ack frames.
    ch._impl.add_callback(lambda frame: acks.append(frame.method), [pika.spec.Basic.Ack], one_shot=False)
    ch.confirm_delivery()
    for n in range(3):
        ch.basic_publish("", queue, b"x")
    seen = {(a.delivery_tag, a.multiple) for a in acks}
    # Each publish was confirmed, individually or by a multiple ack covering it.
    covered = set()
    for tag, multiple in seen:
        covered |= set(range(1, tag + 1)) if multiple else {tag}
    assert covered == {1, 2, 3}


def test_nack_when_queue_full_with_reject_publish(broker):
    queue = broker.name("bounded")
    ch = broker.connect().channel()
    ch.queue_declare(queue, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"first", PERSISTENT)
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", queue, b"second", PERSISTENT)
    # The channel stays usable and the queue kept only the first message.
    assert message_count(ch, queue) == 1
    assert get_all(ch, queue) == [b"first"]
    # Once there is room again, publishes are acked.
    ch.basic_publish("", queue, b"third")
    assert get_all(ch, queue) == [b"third"]


def test_nack_if_any_routed_queue_rejects_but_other_queues_keep_it(broker):
    """A message routed to two queues, one of them full with reject-publish, is
    nacked, yet the queue that had room keeps its copy (RabbitMQ 3.10)."""
    exchange = broker.name("fan")
    full, roomy = broker.name("full"), broker.name("roomy")
    ch = broker.connect().channel()
    ch.exchange_declare(exchange, "fanout")
    ch.queue_declare(full, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_declare(roomy)
    ch.queue_bind(full, exchange)
    ch.queue_bind(roomy, exchange)
    ch.confirm_delivery()
    ch.basic_publish(exchange, "", b"one")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish(exchange, "", b"two")
    assert get_all(ch, full) == [b"one"]
    assert get_all(ch, roomy) == [b"one", b"two"]


def test_mandatory_unroutable_is_returned_312_no_route(broker):
    exchange = broker.name("nowhere")
    conn = broker.connect()
    ch = conn.channel()
    ch.exchange_declare(exchange, "direct")
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as err:
        ch.basic_publish(exchange, "no.such.key", b"lost?", mandatory=True)
    [msg] = err.value.messages
    assert msg.body == b"lost?"
    assert msg.method.reply_code == 312
    assert msg.method.reply_text == "NO_ROUTE"
    assert msg.method.exchange == exchange
    assert msg.method.routing_key == "no.such.key"
    # Without mandatory the same publish is silently dropped and acked.
    ch.basic_publish(exchange, "no.such.key", b"dropped")


def test_mandatory_unroutable_return_without_confirms(broker):
    conn = broker.connect()
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append((method, props, body)))
    ch.basic_publish("", broker.name("missing-queue"), b"back to me", mandatory=True,
                     properties=pika.BasicProperties(message_id="m-1", headers={"k": "v"}))
    wait_until(conn, lambda: returned, what="basic.return of an unroutable mandatory message")
    method, props, body = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, body) == (312, "NO_ROUTE", "", b"back to me")
    assert props.message_id == "m-1" and props.headers == {"k": "v"}


def test_publish_to_missing_exchange_closes_channel_404(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    missing = broker.name("no-exchange")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.basic_publish(missing, "k", b"x")
    assert err.value.reply_code == 404
    assert err.value.reply_text == "NOT_FOUND - no exchange '%s' in vhost '%s'" % (missing, broker.vhost)
    # Only the channel died.
    assert conn.is_open
    conn.channel().queue_declare("", exclusive=True)
