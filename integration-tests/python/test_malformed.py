"""Malformed input on raw sockets.

Every case runs next to a healthy pika connection that must keep working, and
a message accepted before the attack must still be there after it.  Reply
codes and class/method ids are the ones RabbitMQ 3.10 sends.
"""
import struct

import pika
import pytest

from helpers import get_eventually
from rawamqp import (FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER,
                     RawAMQP, frame, method_frame, shortstr)


class Healthy:
    """A pika connection with a queue; check() does a publish/get round trip."""

    def __init__(self, broker):
        self.broker = broker
        self.conn = broker.connect()
        self.ch = self.conn.channel()
        self.queue = broker.name("healthy")
        self.ch.queue_declare(self.queue)
        self.ch.confirm_delivery()
        self.ch.basic_publish("", self.queue, b"accepted before", pika.BasicProperties(delivery_mode=2))
        self.n = 0

    def check(self):
        self.n += 1
        body = b"ping %d" % self.n
        self.ch.basic_publish("", self.queue, body)
        # The message accepted before the attack stays at the head of the queue
        # (fetched unacked, then requeued to its original position).
        first = get_eventually(self.ch, self.queue, auto_ack=False)
        assert first.body == b"accepted before"
        assert get_eventually(self.ch, self.queue).body == body
        self.ch.basic_nack(first.method.delivery_tag, requeue=True)
        # New connections are still accepted.
        r = RawAMQP(self.broker.host, self.broker.port)
        r.handshake()
        r.close()


@pytest.fixture
def healthy(broker):
    h = Healthy(broker)
    h.check()
    yield h
    h.check()


def open_raw(broker, **handshake_kw):
    r = RawAMQP(broker.host, broker.port)
    r.handshake(**handshake_kw)
    r.open_channel(1)
    return r


def expect_close(r, code, cls_meth=None):
    """connection.close with `code`, then (after our close-ok) EOF; returns the text."""
    got_code, text, cls, meth = r.expect_connection_close(timeout=5)
    assert got_code == code, "expected reply code %d, got %d (%s)" % (code, got_code, text)
    if cls_meth is not None:
        assert (cls, meth) == cls_meth, "close refers to %d.%d, expected %d.%d" % ((cls, meth) + cls_meth)
    r.send_close_ok()
    assert r.wait_eof(5), "server did not close the socket after connection.close"
    return text


# -- before the handshake ------------------------------------------------------

@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00" * 8,
    b"HELLO!!!\n",
    b"AMQP\x00\x01\x00\x00",  # AMQP 1.0
    b"AMQP\x03\x01\x00\x00",  # AMQP 1.0 SASL layer
    b"AMQP\x00\x00\x09\x02",  # unknown revision
    b"AMQP\x00\x00\x0a\x00",  # unknown version
], ids=["http", "zeros", "text", "amqp1.0", "amqp1.0-sasl", "0-9-2", "0-10"])
def test_bad_protocol_header_gets_our_header_and_close(broker, healthy, garbage):
    r = RawAMQP(broker.host, broker.port)
    r.send(garbage)
    assert r.read_exact(8, timeout=5) == PROTOCOL_HEADER
    assert r.wait_eof(5)


def test_partial_protocol_header_then_close(broker, healthy):
    r = RawAMQP(broker.host, broker.port)
    r.send(b"AMQ")
    r.close()


# -- framing errors ------------------------------------------------------------

def test_truncated_frame_then_close(broker, healthy):
    r = open_raw(broker)
    full = method_frame(1, 50, 10, b"\x00\x00" + shortstr("x") + b"\x00" + b"\x00\x00\x00\x00")
    r.send(full[:10])  # header says more is coming; hang up instead
    r.close()
    r = open_raw(broker)
    r.send(struct.pack("!BHI", FRAME_METHOD, 1, 1000) + b"\x00\x32")
    r.close()


def test_truncated_method_arguments_501(broker, healthy):
    r = open_raw(broker)
    r.send(method_frame(1, 50, 10, b"\x00"))  # queue.declare with 1 byte of arguments
    expect_close(r, 501, (50, 10))


def test_malformed_field_table_501(broker, healthy):
    r = open_raw(broker)
    # queue.declare whose arguments table claims 100 bytes but holds 5.
    args = b"\x00\x00" + shortstr("x") + b"\x00" + struct.pack("!I", 100) + b"\x03abcS"
    r.send(method_frame(1, 50, 10, args))
    expect_close(r, 501, (50, 10))


def test_wrong_frame_end_octet_501(broker, healthy):
    r = open_raw(broker)
    r.send(frame(FRAME_METHOD, 1, struct.pack("!HH", 50, 10) + b"\x00\x00" + shortstr("x")
                 + b"\x00\x00\x00\x00\x00", end=0x00))
    text = expect_close(r, 501)
    assert text.startswith("FRAME_ERROR")


def test_frame_larger_than_frame_max_501(broker, healthy):
    r = open_raw(broker, frame_max=4096)
    r.send(frame(FRAME_METHOD, 1, struct.pack("!HH", 50, 10) + b"x" * 5000))
    text = expect_close(r, 501)
    assert text.startswith("FRAME_ERROR")


def test_oversized_frame_header_is_refused_before_the_payload(broker, healthy):
    """Only the 7-byte header announcing a 2 GB payload: the server must refuse
    it right away instead of waiting for (and buffering) the payload."""
    r = open_raw(broker)
    r.send(struct.pack("!BHI", FRAME_BODY, 1, 0x7FFFFFF0))
    expect_close(r, 501)


def test_frame_at_frame_max_delivers_body(broker, healthy):
    r = open_raw(broker, frame_max=4096)
    body = b"b" * (4096 - 8)
    r.send(method_frame(1, 85, 10, b"\x00"))  # confirm.select, nowait=false
    ch, cls, meth, _ = r.read_method()
    assert (ch, cls, meth) == (1, 85, 11)
    q = broker.name("big")
    healthy.ch.queue_declare(q)
    r.send(method_frame(1, 60, 40, b"\x00\x00" + shortstr("") + shortstr(q) + b"\x00")
           + frame(FRAME_HEADER, 1, struct.pack("!HHQH", 60, 0, len(body), 0))
           + frame(FRAME_BODY, 1, body))
    ch, cls, meth, args = r.read_method()
    assert (ch, cls, meth) == (1, 60, 80), "expected basic.ack"
    assert get_eventually(healthy.ch, q).body == body
    # A frame whose payload alone exceeds frame_max.  (RabbitMQ tolerates up
    # to 8 bytes over the exact limit of frame_max - 8 for buggy clients; a
    # payload above frame_max is refused by any reading.)
    big = body + b"!" * 9
    r.send(method_frame(1, 60, 40, b"\x00\x00" + shortstr("") + shortstr(q) + b"\x00")
           + frame(FRAME_HEADER, 1, struct.pack("!HHQH", 60, 0, len(big), 0))
           + frame(FRAME_BODY, 1, big))
    expect_close(r, 501)


def test_unknown_frame_type_501(broker, healthy):
    r = open_raw(broker)
    r.send(frame(9, 1, b"abc"))
    expect_close(r, 501)


def test_heartbeat_with_payload_501(broker, healthy):
    r = open_raw(broker)
    r.send(frame(FRAME_HEARTBEAT, 0, b"xyz"))
    expect_close(r, 501)


def test_heartbeat_on_non_zero_channel_505(broker, healthy):
    r = open_raw(broker)
    r.send(frame(FRAME_HEARTBEAT, 1, b""))
    expect_close(r, 505)


# -- method / channel errors ---------------------------------------------------

UNKNOWN_METHODS = [(99, 10), (60, 99), (10, 99)]


@pytest.mark.parametrize("class_id,method_id", UNKNOWN_METHODS)
def test_unknown_class_or_method_ends_connection(broker, healthy, class_id, method_id):
    """RabbitMQ 3.10 does not answer this one with connection.close: its reader
    crashes on {unknown_method_id,...} and the TCP connection is reset.  The
    portable expectation is "the connection ends, nothing else is affected";
    Junction's stricter reply is checked in the junction_only test below."""
    r = open_raw(broker)
    r.send(method_frame(1, class_id, method_id, b""))
    try:
        code, _text, _, _ = r.expect_connection_close(timeout=5)
    except ConnectionError:  # EOF or reset without connection.close (RabbitMQ 3.10)
        return
    assert code in (540, 503)
    r.send_close_ok()
    assert r.wait_eof(5)


@pytest.mark.junction_only
@pytest.mark.parametrize("class_id,method_id", UNKNOWN_METHODS)
def test_unknown_class_or_method_gets_connection_close(broker, healthy, class_id, method_id):
    r = open_raw(broker)
    r.send(method_frame(1, class_id, method_id, b""))
    code, _text, cls, meth = r.expect_connection_close(timeout=5)
    assert code in (540, 503), "expected 540 NOT_IMPLEMENTED or 503 COMMAND_INVALID, got %d" % code
    assert (cls, meth) == (class_id, method_id)
    r.send_close_ok()
    assert r.wait_eof(5)


def test_method_on_unopened_channel_504(broker, healthy):
    r = open_raw(broker)
    r.send(method_frame(5, 50, 10, b"\x00\x00" + shortstr("x") + b"\x00" + b"\x00\x00\x00\x00"))
    text = expect_close(r, 504, (50, 10))
    assert text == "CHANNEL_ERROR - expected 'channel.open'"


def test_second_channel_open_504(broker, healthy):
    r = open_raw(broker)
    r.send(method_frame(1, 20, 10, shortstr("")))
    text = expect_close(r, 504, (20, 10))
    assert text == "CHANNEL_ERROR - second 'channel.open' seen"


def test_channel_method_on_channel_zero_504(broker, healthy):
    r = open_raw(broker)
    r.send(method_frame(0, 50, 10, b"\x00\x00" + shortstr("x") + b"\x00" + b"\x00\x00\x00\x00"))
    expect_close(r, 504, (50, 10))


def test_connection_method_on_a_channel_503(broker, healthy):
    r = open_raw(broker)
    r.send(method_frame(1, 10, 40, shortstr("/") + shortstr("") + b"\x00"))
    expect_close(r, 503, (10, 40))


PUBLISH = method_frame(1, 60, 40, b"\x00\x00" + shortstr("") + shortstr("nowhere") + b"\x00")
HEADER_5 = frame(FRAME_HEADER, 1, struct.pack("!HHQH", 60, 0, 5, 0))


@pytest.mark.parametrize("frames,cls_meth", [
    (HEADER_5, (0, 0)),  # content header without basic.publish
    (frame(FRAME_BODY, 1, b"hello"), (0, 0)),  # body without basic.publish
    (PUBLISH + PUBLISH, (60, 40)),  # a method where the content header belongs
    (PUBLISH + frame(FRAME_HEADER, 1, struct.pack("!HHQH", 50, 0, 5, 0)), (60, 40)),  # header of class 50
    (PUBLISH + HEADER_5 + frame(FRAME_BODY, 1, b"he") + method_frame(1, 20, 40, b""), (60, 40)),  # body cut
], ids=["header-without-publish", "body-without-publish", "publish-publish", "header-wrong-class",
        "method-inside-body"])
def test_unexpected_frame_505(broker, healthy, frames, cls_meth):
    r = open_raw(broker)
    r.send(frames)
    text = expect_close(r, 505, cls_meth)
    assert text.startswith("UNEXPECTED_FRAME - ")
