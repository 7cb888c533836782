"""Node clients against Junction: MQTT.js over WebSocket (protocol versions 3, 4 and 5),
@stomp/stompjs over STOMP-over-WebSocket, and the cross-protocol mapping with amqplib, MQTT.js 5
and stompjs; runs integration-tests/node/*.test.mjs with node's test runner against a broker
started here."""
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.junction_only

NODE_DIR = os.path.join(os.path.dirname(__file__), "..", "node")


def run_node_tests(broker, script):
    if shutil.which("node") is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules")):
        pytest.fail("node and integration-tests/node/node_modules are needed (scripts/test.sh installs them)")
    env = dict(os.environ,
               JUNCTION_MQTT_WS_URL="ws://127.0.0.1:%d/mqtt" % broker.http_port,
               JUNCTION_STOMP_WS_URL="ws://127.0.0.1:%d/ws" % broker.http_port,
               JUNCTION_MQTT_URL="mqtt://127.0.0.1:%d" % broker.mqtt_port,
               JUNCTION_AMQP_URL="amqp://guest:guest@127.0.0.1:%d/" % broker.port)
    run = subprocess.run(["node", "--test", "--test-reporter=spec", "--test-timeout=60000", script], cwd=NODE_DIR,
                         env=env, capture_output=True, text=True, timeout=150)
    print(run.stdout[-20000:], run.stderr[-5000:])
    assert run.returncode == 0, script + " failed:\n" + run.stdout[-8000:] + run.stderr[-3000:]


@pytest.mark.timeout(180)
def test_mqttjs_over_websocket(broker):
    run_node_tests(broker, "mqttjs.test.mjs")


@pytest.mark.timeout(180)
def test_stompjs_over_websocket(broker):
    run_node_tests(broker, "stompjs.test.mjs")


@pytest.mark.timeout(180)
def test_mapping_with_amqplib_mqttjs_and_stompjs(broker):
    run_node_tests(broker, "mapping.test.mjs")
