"""Hello world over AMQP 0-9-1 with pika: a persistent message with a publisher confirm.

    python examples/python/hello.py [amqp://guest:guest@127.0.0.1:5672/%2F]
"""
import sys

import pika

url = sys.argv[1] if len(sys.argv) > 1 else "amqp://guest:guest@127.0.0.1:5672/%2F"
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.confirm_delivery()  # basic_publish returns once the broker has fsynced the message
ch.queue_declare("hello", durable=True)
ch.basic_publish("", "hello", b"Hello, Junction!", pika.BasicProperties(delivery_mode=2))
method, props, body = ch.basic_get("hello", auto_ack=True)
print(body.decode())
conn.close()
