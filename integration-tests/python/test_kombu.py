"""kombu (the messaging layer under Celery) against the broker."""
import socket

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue


@pytest.fixture
def kombu_conn(broker):
    with Connection(broker.url, connect_timeout=10, transport_options={"confirm_publish": True}) as conn:
        conn.ensure_connection(max_retries=1)
        yield conn


def test_simple_queue_round_trip(broker, kombu_conn):
    name = broker.name("kombu-simple")
    with kombu_conn.SimpleQueue(name) as queue:
        queue.put({"hello": "world", "n": 1})
        queue.put(b"raw bytes", serializer=None, content_type="application/octet-stream",
                  content_encoding="binary")
        msg = queue.get(block=True, timeout=10)
        assert msg.payload == {"hello": "world", "n": 1}
        assert msg.content_type == "application/json"
        msg.ack()
        msg = queue.get(block=True, timeout=10)
        assert msg.body == b"raw bytes"
        msg.ack()
        with pytest.raises(queue.Empty):
            queue.get(block=True, timeout=0.5)
        assert queue.qsize() == 0


def test_simple_queue_unacked_message_comes_back(broker, kombu_conn):
    name = broker.name("kombu-requeue")
    with kombu_conn.SimpleQueue(name) as queue:
        queue.put("first")
        msg = queue.get(block=True, timeout=10)
        assert msg.payload == "first"
        msg.requeue()
        again = queue.get(block=True, timeout=10)
        assert again.payload == "first"
        assert again.delivery_info["redelivered"] is True
        again.ack()


def test_topic_exchange_producer_consumer(broker, kombu_conn):
    exchange = Exchange(broker.name("kombu-topic"), type="topic", durable=False)
    eu = Queue(broker.name("kombu-eu"), exchange, routing_key="orders.eu.*", durable=False, auto_delete=True)
    everything = Queue(broker.name("kombu-all"), exchange, routing_key="orders.#", durable=False, auto_delete=True)
    received = {eu.name: [], everything.name: []}

    def handler(queue_name):
        def on_message(body, message):
            received[queue_name].append((message.delivery_info["routing_key"], body))
            message.ack()
        return on_message

    channel = kombu_conn.channel()
    consumers = [Consumer(channel, queues=[q], callbacks=[handler(q.name)], accept=["json"]) for q in (eu, everything)]
    for c in consumers:
        c.consume()  # declares the exchange, the queues and the bindings
    producer = Producer(kombu_conn.channel(), exchange=exchange, serializer="json")
    sent = [("orders.eu.created", {"id": 1}), ("orders.us.created", {"id": 2}),
            ("orders.eu.shipped", {"id": 3}), ("orders", {"id": 4}), ("invoices.eu.created", {"id": 5})]
    for key, body in sent:
        producer.publish(body, routing_key=key, retry=False)

    expected_eu = [("orders.eu.created", {"id": 1}), ("orders.eu.shipped", {"id": 3})]
    expected_all = [(k, b) for k, b in sent if k.startswith("orders")]
    for _ in range(100):
        if len(received[eu.name]) == len(expected_eu) and len(received[everything.name]) == len(expected_all):
            break
        try:
            kombu_conn.drain_events(timeout=0.1)
        except socket.timeout:
            pass
    assert received[eu.name] == expected_eu
    assert received[everything.name] == expected_all
    for c in consumers:
        c.cancel()
