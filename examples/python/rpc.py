"""RPC with direct reply-to (amq.rabbitmq.reply-to): a server and a client in one script.

    python examples/python/rpc.py [amqp-url]
"""
import sys
import threading

import pika

url = sys.argv[1] if len(sys.argv) > 1 else "amqp://guest:guest@127.0.0.1:5672/%2F"
ready = threading.Event()


def serve_one():
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare("rpc_queue")
    ready.set()
    for method, props, body in ch.consume("rpc_queue", inactivity_timeout=10):
        if method is None:
            break
        reply = str(int(body) ** 2).encode()
        ch.basic_publish("", props.reply_to, reply,
                         pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(method.delivery_tag)
        break
    conn.close()


server = threading.Thread(target=serve_one)
server.start()
ready.wait(10)
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
answers = []
ch.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: answers.append(b), auto_ack=True)
ch.basic_publish("", "rpc_queue", b"12",
                 pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="42"))
while not answers:
    conn.process_data_events(time_limit=1)
print("12 squared is", answers[0].decode())
conn.close()
server.join()
