"""Exchanges: built-ins, exchange-to-exchange bindings, alternate exchanges, headers exchange."""
import pika
import pytest

from helpers import channel_error, get_all


def bound_queue(ch, exchange, routing_key="", arguments=None):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, exchange, routing_key=routing_key, arguments=arguments)
    return q


@pytest.mark.parametrize("name,kind", [("amq.direct", "direct"), ("amq.fanout", "fanout"),
                                       ("amq.topic", "topic"), ("amq.headers", "headers"),
                                       ("amq.match", "headers")])
def test_builtin_exchanges_exist(broker, name, kind):
    ch = broker.connect().channel()
    ch.exchange_declare(name, passive=True)
    ch.exchange_declare(name, kind, durable=True)  # an equivalent redeclare is allowed


def test_builtin_exchanges_are_protected(broker):
    conn = broker.connect()
    code, text = channel_error(conn.channel().exchange_delete, "amq.direct")
    assert (code, text) == (403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '%s' not allowed"
                            % broker.vhost)
    code, text = channel_error(conn.channel().exchange_declare, "amq.custom", "direct")
    assert (code, text) == (403, "ACCESS_REFUSED - exchange name 'amq.custom' contains reserved prefix 'amq.*'")
    # The default exchange is checked before the queue: 403 even for a missing queue.
    code, text = channel_error(conn.channel().queue_bind, broker.name(), "", "key")
    assert (code, text) == (403, "ACCESS_REFUSED - operation not permitted on the default exchange")
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    code, text = channel_error(ch.queue_bind, q, "", "key")
    assert (code, text) == (403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_exchange_errors(broker):
    conn = broker.connect()
    missing = broker.name("missing")
    code, text = channel_error(conn.channel().exchange_declare, missing, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '%s'" % (missing, broker.vhost))
    ex = broker.name("typed")
    conn.channel().exchange_declare(ex, "direct")
    code, text = channel_error(conn.channel().exchange_declare, ex, "fanout")
    assert (code, text) == (406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '%s' in vhost '%s': "
                                 "received 'fanout' but current is 'direct'" % (ex, broker.vhost))
    ch = conn.channel()
    bound_queue(ch, ex, "k")
    code, text = channel_error(conn.channel().exchange_delete, ex, if_unused=True)
    assert (code, text) == (406, "PRECONDITION_FAILED - exchange '%s' in vhost '%s' in use" % (ex, broker.vhost))
    code, text = channel_error(conn.channel().queue_bind, broker.name("nq"), ex, "k")
    assert code == 404 and text.startswith("NOT_FOUND - no queue '")
    code, text = channel_error(ch.queue_bind, bound_queue(conn.channel(), ex, "k"), missing, "k")
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '%s'" % (missing, broker.vhost))
    # Deleting a missing exchange is not an error.
    conn.channel().exchange_delete(missing)


def test_unknown_exchange_type_is_connection_error_503(broker):
    conn = broker.connect()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as err:
        conn.channel().exchange_declare(broker.name(), "nonsense")
    # RabbitMQ says "unknown exchange type 'nonsense'" (or "invalid ..." when the
    # name happens to be a known Erlang atom): only the code and the prefix matter.
    assert err.value.reply_code == 503
    assert err.value.reply_text.startswith("COMMAND_INVALID - ")
    assert "exchange type 'nonsense'" in err.value.reply_text


def test_exchange_to_exchange_bindings(broker):
    ch = broker.connect().channel()
    upstream, downstream, fan = broker.name("up"), broker.name("down"), broker.name("fan")
    ch.exchange_declare(upstream, "topic")
    ch.exchange_declare(downstream, "direct")
    ch.exchange_declare(fan, "fanout")
    ch.exchange_bind(destination=downstream, source=upstream, routing_key="orders.*")
    ch.exchange_bind(destination=fan, source=upstream, routing_key="#")
    q_created = bound_queue(ch, downstream, "orders.created")
    q_fan = bound_queue(ch, fan)
    q_direct = bound_queue(ch, upstream, "orders.created")  # also bound directly
    ch.confirm_delivery()
    for key in ("orders.created", "orders.deleted", "users.created"):
        ch.basic_publish(upstream, key, key.encode())
    assert get_all(ch, q_created) == [b"orders.created"]
    assert get_all(ch, q_fan) == [b"orders.created", b"orders.deleted", b"users.created"]
    assert get_all(ch, q_direct) == [b"orders.created"]

    ch.exchange_unbind(destination=fan, source=upstream, routing_key="#")
    ch.basic_publish(upstream, "orders.created", b"again")
    assert get_all(ch, q_fan) == []
    assert get_all(ch, q_created) == [b"again"]


def test_exchange_binding_cycle_delivers_once(broker):
    ch = broker.connect().channel()
    a, b = broker.name("a"), broker.name("b")
    ch.exchange_declare(a, "fanout")
    ch.exchange_declare(b, "fanout")
    ch.exchange_bind(destination=b, source=a)
    ch.exchange_bind(destination=a, source=b)
    qa, qb = bound_queue(ch, a), bound_queue(ch, b)
    ch.confirm_delivery()
    ch.basic_publish(a, "", b"loop")
    assert get_all(ch, qa) == [b"loop"]
    assert get_all(ch, qb) == [b"loop"]


def test_alternate_exchange(broker):
    ch = broker.connect().channel()
    main, alt = broker.name("main"), broker.name("alt")
    ch.exchange_declare(alt, "fanout")
    ch.exchange_declare(main, "direct", arguments={"alternate-exchange": alt})
    q_main = bound_queue(ch, main, "known")
    q_alt = bound_queue(ch, alt)
    ch.confirm_delivery()
    ch.basic_publish(main, "known", b"routed")
    # mandatory is satisfied by the alternate exchange: no basic.return.
    ch.basic_publish(main, "unknown", b"unroutable", mandatory=True)
    assert get_all(ch, q_main) == [b"routed"]
    method, _, body = ch.basic_get(q_alt, auto_ack=True)
    assert body == b"unroutable"
    assert method.exchange == main and method.routing_key == "unknown"
    assert get_all(ch, q_alt) == []


def test_missing_alternate_exchange_makes_message_unroutable(broker):
    ch = broker.connect().channel()
    main = broker.name("main")
    ch.exchange_declare(main, "direct", arguments={"alternate-exchange": broker.name("not-declared")})
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(main, "nowhere", b"x", mandatory=True)


def test_headers_exchange_all_and_any(broker):
    ch = broker.connect().channel()
    ex = broker.name("headers")
    ch.exchange_declare(ex, "headers")
    q_all = bound_queue(ch, ex, arguments={"x-match": "all", "format": "pdf", "type": "report"})
    q_any = bound_queue(ch, ex, arguments={"x-match": "any", "format": "pdf", "type": "log"})
    q_default = bound_queue(ch, ex, arguments={"format": "zip"})  # x-match defaults to all
    q_empty = bound_queue(ch, ex, arguments={"x-match": "all"})  # no conditions: matches everything
    ch.confirm_delivery()
    messages = [
        ("pdf-report", {"format": "pdf", "type": "report"}),
        ("pdf-report-extra", {"format": "pdf", "type": "report", "size": 3}),
        ("pdf-only", {"format": "pdf"}),
        ("log", {"type": "log"}),
        ("zip", {"format": "zip", "type": "report"}),
        ("none", None),
        ("wrong-case", {"Format": "pdf", "type": "report"}),
    ]
    for body, headers in messages:
        # The routing key is ignored by headers exchanges.
        ch.basic_publish(ex, "ignored", body.encode(), pika.BasicProperties(headers=headers))
    assert get_all(ch, q_all) == [b"pdf-report", b"pdf-report-extra"]
    assert get_all(ch, q_any) == [b"pdf-report", b"pdf-report-extra", b"pdf-only", b"log"]
    assert get_all(ch, q_default) == [b"zip"]
    assert get_all(ch, q_empty) == [m[0].encode() for m in messages]


def test_headers_exchange_value_types_must_match(broker):
    ch = broker.connect().channel()
    ex = broker.name("headers")
    ch.exchange_declare(ex, "headers")
    q = bound_queue(ch, ex, arguments={"x-match": "all", "n": 1})
    ch.confirm_delivery()
    ch.basic_publish(ex, "", b"int", pika.BasicProperties(headers={"n": 1}))
    ch.basic_publish(ex, "", b"string", pika.BasicProperties(headers={"n": "1"}))
    ch.basic_publish(ex, "", b"other", pika.BasicProperties(headers={"n": 2}))
    assert get_all(ch, q) == [b"int"]


def test_unbind_queue_stops_routing(broker):
    ch = broker.connect().channel()
    ex = broker.name("direct")
    ch.exchange_declare(ex, "direct")
    q = bound_queue(ch, ex, "k")
    ch.queue_bind(q, ex, "k2")
    ch.confirm_delivery()
    ch.basic_publish(ex, "k", b"1")
    ch.queue_unbind(q, ex, "k")
    ch.basic_publish(ex, "k", b"2")
    ch.basic_publish(ex, "k2", b"3")
    assert get_all(ch, q) == [b"1", b"3"]


def test_deleting_exchange_removes_its_bindings(broker):
    ch = broker.connect().channel()
    ex = broker.name("temp")
    ch.exchange_declare(ex, "fanout")
    q = bound_queue(ch, ex)
    ch.exchange_delete(ex)
    ch.exchange_declare(ex, "fanout")  # same name again: no binding survives
    ch.confirm_delivery()
    ch.basic_publish(ex, "", b"x")
    assert get_all(ch, q) == []
