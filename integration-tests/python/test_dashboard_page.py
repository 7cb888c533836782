"""The management dashboard at /dashboard/ in a real headless Chromium (playwright-core): it logs
in, shows a queue made over AMQP with its message count and an MQTT client that is connected,
watches the rate chart update, publishes through the UI, creates and deletes a queue, and
closes a connection (integration-tests/node/dashboard.browser.mjs does the clicking)."""
import json
import os
import shutil
import subprocess

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from helpers import message_count

pytestmark = pytest.mark.junction_only
NODE_DIR = os.path.join(os.path.dirname(__file__), "..", "node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.mark.timeout(180)
def test_the_dashboard_shows_the_broker_and_acts_on_it(broker):
    if not (shutil.which("node") and os.path.exists(CHROMIUM)):
        pytest.fail("node and Debian's chromium are needed (scripts/test.sh installs them)")
    ch = broker.connect().channel()
    ch.queue_declare("dash-orders", durable=True)
    for i in range(3):
        ch.basic_publish("", "dash-orders", b"order %d" % i, pika.BasicProperties(delivery_mode=2))
    assert message_count(ch, "dash-orders") == 3
    m = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dash-sensor", protocol=mqtt.MQTTv311)
    m.connect("127.0.0.1", broker.mqtt_port)
    m.loop_start()
    try:
        env = dict(os.environ,
                   JUNCTION_HTTP_URL="http://127.0.0.1:%d" % broker.http_port,
                   JUNCTION_AMQP_URL="amqp://guest:guest@127.0.0.1:%d/%%2F" % broker.port,
                   JUNCTION_DASH_QUEUE="dash-orders",
                   JUNCTION_DASH_QUEUE_COUNT="3",
                   JUNCTION_DASH_MQTT_CLIENT="dash-sensor",
                   CHROMIUM=CHROMIUM)
        run = subprocess.run(["node", "dashboard.browser.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                             timeout=150)
    finally:
        m.disconnect()
        m.loop_stop()
    print(run.stdout[-5000:], run.stderr[-5000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary.get("mismatches") == []
    assert message_count(ch, "dash-orders") == 4, "the test message published through the UI arrived"
