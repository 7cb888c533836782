"""The six RabbitMQ tutorials, written as pika programs like the official ones."""
import threading
import time
import uuid

import pika
import pytest

from helpers import PERSISTENT, consume, get_all, idle, wait_until


def service(conns, predicate, timeout=10.0, what="condition"):
    """Services several BlockingConnections in turn until predicate() holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        for c in conns:
            c.process_data_events(time_limit=0.02)


# -- 1. "Hello World!" ---------------------------------------------------------

def test_hello_world(broker):
    queue = broker.name("hello")
    sender = broker.connect().channel()
    sender.queue_declare(queue=queue)
    sender.basic_publish(exchange="", routing_key=queue, body=b"Hello World!")

    receiver = broker.connect().channel()
    receiver.queue_declare(queue=queue)  # idempotent, as in the tutorial
    [d] = consume(receiver, queue, 1)
    assert d.body == b"Hello World!"
    assert d.method.routing_key == queue
    assert d.method.exchange == ""
    assert d.method.redelivered is False


# -- 2. Work queues ------------------------------------------------------------

def test_work_queue_round_robin(broker):
    """Without prefetch, idle consumers get messages in turn."""
    queue = broker.name("task_queue")
    conns = [broker.connect(), broker.connect()]
    received = [[], []]
    for i, conn in enumerate(conns):
        ch = conn.channel()
        ch.queue_declare(queue=queue, durable=True)
        ch.basic_consume(queue, lambda c, m, p, b, i=i: (received[i].append(b), c.basic_ack(m.delivery_tag)))
    # The consumers are registered (basic.consume-ok) before the first publish.
    pub = broker.connect().channel()
    pub.confirm_delivery()
    for n in range(10):
        pub.basic_publish("", queue, b"task %d" % n, PERSISTENT)
    service(conns, lambda: len(received[0]) + len(received[1]) == 10, what="10 tasks")
    assert sorted(received[0] + received[1]) == sorted(b"task %d" % n for n in range(10))
    assert len(received[0]) == 5 and len(received[1]) == 5, received
    # Each consumer sees its share in publish order.
    for got in received:
        assert got == sorted(got, key=lambda b: int(b.split()[1]))


def test_work_queue_fair_dispatch_with_prefetch_1(broker):
    """prefetch_count=1: a busy worker (holding an unacked task) gets nothing more."""
    queue = broker.name("task_queue")
    conn = broker.connect()
    busy_ch, fast_ch = conn.channel(), conn.channel()
    busy, fast = [], []
    for ch in (busy_ch, fast_ch):
        ch.queue_declare(queue=queue, durable=True)
        ch.basic_qos(prefetch_count=1)
    busy_ch.basic_consume(queue, lambda c, m, p, b: busy.append((m, p, b)))  # never acks (yet)
    fast_ch.basic_consume(queue, lambda c, m, p, b: (fast.append((m, p, b)), c.basic_ack(m.delivery_tag)))

    pub = broker.connect().channel()
    pub.queue_declare(queue=queue, durable=True)
    for n in range(6):
        pub.basic_publish("", queue, b"task %d" % n, pika.BasicProperties(delivery_mode=2))
    wait_until(conn, lambda: len(busy) + len(fast) == 6, what="6 tasks")
    idle(conn, 0.3)  # nothing else may arrive
    assert len(busy) == 1, "busy worker got %d tasks with prefetch 1" % len(busy)
    assert len(fast) == 5
    assert sorted(b for _, _, b in busy + fast) == [b"task %d" % n for n in range(6)]
    assert all(p.delivery_mode == 2 for _, p, _ in busy + fast)

    # Once the busy worker acks, it is eligible again.
    busy_ch.basic_ack(busy[0][0].delivery_tag)
    pub.basic_publish("", queue, b"task 6", PERSISTENT)
    pub.basic_publish("", queue, b"task 7", PERSISTENT)
    wait_until(conn, lambda: len(busy) + len(fast) == 8, what="2 more tasks")
    assert len(busy) == 2, "after its ack the busy worker must get work again"


def test_work_queue_unacked_task_is_redelivered_when_worker_dies(broker):
    queue = broker.name("task_queue")
    pub = broker.connect().channel()
    pub.queue_declare(queue=queue, durable=True)
    pub.basic_publish("", queue, b"important", PERSISTENT)

    worker = broker.connect()
    ch = worker.channel()
    ch.basic_qos(prefetch_count=1)
    [d] = consume(ch, queue, 1, auto_ack=False)
    assert d.method.redelivered is False
    worker.close()  # dies without acking

    [again] = consume(broker.connect().channel(), queue, 1)
    assert again.body == b"important"
    assert again.method.redelivered is True


# -- 3. Publish/Subscribe --------------------------------------------------------

def test_fanout_publish_subscribe(broker):
    logs = broker.name("logs")
    emitter = broker.connect().channel()
    emitter.exchange_declare(exchange=logs, exchange_type="fanout")
    emitter.confirm_delivery()
    emitter.basic_publish(logs, "", b"before anyone listens")  # goes nowhere

    subscribers = []
    for _ in range(2):
        ch = broker.connect().channel()
        result = ch.queue_declare(queue="", exclusive=True)
        queue_name = result.method.queue
        assert queue_name.startswith("amq.gen-")
        ch.queue_bind(exchange=logs, queue=queue_name)
        subscribers.append((ch, queue_name))
    assert subscribers[0][1] != subscribers[1][1]

    for n in range(3):
        emitter.basic_publish(logs, "ignored.key", b"log %d" % n)
    for ch, queue_name in subscribers:
        assert [d.body for d in consume(ch, queue_name, 3)] == [b"log 0", b"log 1", b"log 2"]
        assert get_all(ch, queue_name) == []


# -- 4. Routing ----------------------------------------------------------------

def test_direct_routing(broker):
    direct_logs = broker.name("direct_logs")
    conn = broker.connect()
    ch = conn.channel()
    ch.exchange_declare(exchange=direct_logs, exchange_type="direct")
    errors_only = ch.queue_declare("", exclusive=True).method.queue
    everything = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(errors_only, direct_logs, routing_key="error")
    for severity in ("info", "warning", "error"):
        ch.queue_bind(everything, direct_logs, routing_key=severity)

    pub = broker.connect().channel()
    pub.confirm_delivery()
    for severity in ("info", "warning", "error", "debug"):
        pub.basic_publish(direct_logs, severity, severity.encode() + b" message")

    assert get_all(ch, errors_only) == [b"error message"]
    assert get_all(ch, everything) == [b"info message", b"warning message", b"error message"]


# -- 5. Topics -------------------------------------------------------------------

def _topic_setup(broker, patterns):
    topic_logs = broker.name("topic_logs")
    ch = broker.connect().channel()
    ch.exchange_declare(exchange=topic_logs, exchange_type="topic")
    queues = {}
    for name, keys in patterns.items():
        q = ch.queue_declare("", exclusive=True).method.queue
        for key in keys:
            ch.queue_bind(q, topic_logs, routing_key=key)
        queues[name] = q
    return ch, topic_logs, queues


def test_topics_tutorial_examples(broker):
    ch, exchange, queues = _topic_setup(broker, {"Q1": ["*.orange.*"], "Q2": ["*.*.rabbit", "lazy.#"]})
    pub = broker.connect().channel()
    pub.confirm_delivery()
    keys = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox",
            "lazy.pink.rabbit", "quick.brown.fox", "orange", "quick.orange.male.rabbit",
            "lazy.orange.male.rabbit", "lazy"]
    for key in keys:
        pub.basic_publish(exchange, key, key.encode())
    assert get_all(ch, queues["Q1"]) == [b"quick.orange.rabbit", b"lazy.orange.elephant", b"quick.orange.fox"]
    # lazy.pink.rabbit matches both of Q2's bindings but is delivered once;
    # "lazy" matches "lazy.#" because # matches zero words.
    assert get_all(ch, queues["Q2"]) == [b"quick.orange.rabbit", b"lazy.orange.elephant", b"lazy.brown.fox",
                                         b"lazy.pink.rabbit", b"lazy.orange.male.rabbit", b"lazy"]


@pytest.mark.parametrize("pattern,matching,not_matching", [
    ("a.#", ["a", "a.b", "a.b.c"], ["ab", "b.a", "b", ""]),
    ("#.b", ["b", "a.b", "x.y.b"], ["b.a", "ab", "a.bb"]),
    ("a.*", ["a.b", "a.c"], ["a", "a.b.c", "b.a"]),
    ("*", ["a", "xyz"], ["a.b"]),
    ("a.#.z", ["a.z", "a.b.z", "a.b.c.z"], ["a", "z", "a.b", "b.a.z"]),
    ("#", ["a", "a.b.c", ""], []),
    ("a.b", ["a.b"], ["a", "a.b.c", "a.bb"]),
])
def test_topic_wildcards(broker, pattern, matching, not_matching):
    ch, exchange, queues = _topic_setup(broker, {"q": [pattern]})
    pub = broker.connect().channel()
    pub.confirm_delivery()
    for key in matching + not_matching:
        pub.basic_publish(exchange, key, key.encode())
    assert get_all(ch, queues["q"]) == [k.encode() for k in matching]


# -- 6. RPC ---------------------------------------------------------------------

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class RpcServer(threading.Thread):
    """The tutorial's rpc_server.py, serviced in a thread with its own connection."""

    def __init__(self, broker, queue):
        super().__init__(daemon=True)
        self.params, self.queue = broker.params(), queue
        self.ready, self.stopping = threading.Event(), threading.Event()
        self.error, self.reply_tos = None, []

    def on_request(self, ch, method, props, body):
        self.reply_tos.append(props.reply_to)
        response = str(fib(int(body))).encode()
        ch.basic_publish(exchange="", routing_key=props.reply_to, body=response,
                         properties=pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(delivery_tag=method.delivery_tag)

    def run(self):
        try:
            conn = pika.BlockingConnection(self.params)
            ch = conn.channel()
            ch.queue_declare(queue=self.queue)
            ch.basic_qos(prefetch_count=1)
            ch.basic_consume(queue=self.queue, on_message_callback=self.on_request)
            self.ready.set()
            while not self.stopping.is_set():
                conn.process_data_events(time_limit=0.05)
            conn.close()
        except Exception as exc:  # reported by the test
            self.error = exc
            self.ready.set()

    def __enter__(self):
        self.start()
        assert self.ready.wait(15), "rpc server did not start"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join(10)
        assert self.error is None, self.error


def test_rpc_with_callback_queue(broker):
    rpc_queue = broker.name("rpc_queue")
    with RpcServer(broker, rpc_queue) as server:
        conn = broker.connect()
        ch = conn.channel()
        callback_queue = ch.queue_declare(queue="", exclusive=True).method.queue
        responses = {}

        def on_response(_ch, _method, props, body):
            responses[props.correlation_id] = body

        ch.basic_consume(queue=callback_queue, on_message_callback=on_response, auto_ack=True)
        calls = {}
        for n in (0, 1, 7, 15, 20):
            corr_id = str(uuid.uuid4())
            calls[corr_id] = n
            ch.basic_publish(exchange="", routing_key=rpc_queue, body=str(n).encode(),
                             properties=pika.BasicProperties(reply_to=callback_queue, correlation_id=corr_id))
        wait_until(conn, lambda: len(responses) == len(calls), what="all RPC responses")
        assert {corr: int(responses[corr]) for corr in calls} == {corr: fib(n) for corr, n in calls.items()}
        assert set(server.reply_tos) == {callback_queue}


def test_rpc_with_direct_reply_to(broker):
    rpc_queue = broker.name("rpc_queue")
    with RpcServer(broker, rpc_queue) as server:
        conn = broker.connect()
        ch = conn.channel()
        responses = {}
        # Consume from the pseudo-queue in no-ack mode *before* publishing.
        ch.basic_consume(queue="amq.rabbitmq.reply-to", auto_ack=True,
                         on_message_callback=lambda c, m, p, b: responses.__setitem__(p.correlation_id, b))
        for n in (3, 10):
            ch.basic_publish(exchange="", routing_key=rpc_queue, body=str(n).encode(),
                             properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                                             correlation_id="call-%d" % n))
        wait_until(conn, lambda: len(responses) == 2, what="direct reply-to responses")
        assert responses == {"call-3": b"2", "call-10": b"55"}
        # The server sees a per-channel name derived from the pseudo-queue.
        assert len(server.reply_tos) == 2
        for reply_to in server.reply_tos:
            assert reply_to.startswith("amq.rabbitmq.reply-to.") and len(reply_to) > len("amq.rabbitmq.reply-to.")


def test_direct_reply_to_requires_consumer_first(broker):
    ch = broker.connect().channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        ch.basic_publish("", broker.name("nobody"), b"x",
                         pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
        ch.queue_declare("", exclusive=True)  # the error arrives asynchronously
    assert err.value.reply_code == 406
    assert "fast reply consumer does not exist" in err.value.reply_text
