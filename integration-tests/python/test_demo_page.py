"""The demo page at /demo in a real headless Chromium (playwright-core): it connects over STOMP
over WebSocket and shows messages that an MQTT client and an AMQP client publish."""
import json
import os
import shutil
import subprocess

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.junction_only
NODE_DIR = os.path.join(os.path.dirname(__file__), "..", "node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.mark.timeout(120)
def test_the_demo_page_shows_messages_from_mqtt_and_amqp(broker):
    if not (shutil.which("node") and os.path.exists(CHROMIUM)):
        pytest.fail("node and Debian's chromium are needed (scripts/test.sh installs them)")
    url = "http://127.0.0.1:%d/demo" % broker.http_port
    page = subprocess.Popen(["node", "demo.browser.mjs", url, "hello from mqtt", "hello from amqp"], cwd=NODE_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert page.stdout.readline().strip() == "READY", page.stderr.read()
        m = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-sensor")
        m.connect("127.0.0.1", broker.mqtt_port)
        m.loop_start()
        m.publish("demo/board", b"hello from mqtt", qos=1).wait_for_publish(10)
        m.disconnect()
        m.loop_stop()
        ch = broker.connect().channel()
        ch.basic_publish("amq.topic", "demo.board", b"hello from amqp", pika.BasicProperties(app_id="billing"))
        out, err = page.communicate(timeout=60)
    finally:
        if page.poll() is None:
            page.kill()
    assert page.returncode == 0, err
    board = json.loads(next(line for line in out.splitlines() if line.startswith("BOARD "))[len("BOARD "):])
    rows = {row[3]: row for row in board}
    assert rows["hello from mqtt"][1:3] == ["/topic/demo.board", "MQTT"]
    assert rows["hello from amqp"][1:3] == ["/topic/demo.board", "AMQP (billing)"]
