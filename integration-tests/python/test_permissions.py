"""Users and permissions (RabbitMQ's model) from the config file, enforced for AMQP (pika) and
MQTT (paho and raw packets): vhost access, configure / write / read patterns, topic permissions."""
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

pytestmark = pytest.mark.junction_only
WAIT = 10


def password_hash(binary, password):
    return subprocess.run([binary, "hash-password", password], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def secured(broker_factory, tmp_path, request):
    import os
    binary = os.environ["JUNCTION_BIN"]
    config = tmp_path / "junction.toml"
    config.write_text("""
[[users]]
name = "limited"
password_hash = "{limited}"

[[users]]
name = "nobody"
password_hash = "{nobody}"

[[permissions]]
user = "limited"
vhost = "/"
configure = "^lim-|^mqtt-session-"
write = "^lim-|^amq\\\\.topic$|^mqtt-session-"
read = "^lim-|^amq\\\\.topic$"

[[topic_permissions]]
user = "limited"
vhost = "/"
exchange = "amq.topic"
write = "^sensors\\\\."
read = "^(?!test\\\\.nosubscribe$).*"
""".format(limited=password_hash(binary, "pw"), nobody=password_hash(binary, "pw")))
    return broker_factory("--config", str(config))


def amqp(broker, user="limited"):
    params = pika.ConnectionParameters(host="127.0.0.1", port=broker.port,
                                       credentials=pika.PlainCredentials(user, "pw"), blocked_connection_timeout=WAIT)
    return pika.BlockingConnection(params)


def refused(action):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        action()
    return err.value.reply_code, err.value.reply_text


def test_a_user_without_permissions_on_the_vhost_is_refused_with_530(secured):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as err:
        amqp(secured, user="nobody")
    assert "access to vhost '/' refused for user 'nobody'" in str(err.value)


def test_configure_write_and_read_patterns_apply_to_amqp_operations(secured):
    conn = amqp(secured)
    ch = conn.channel()
    ch.queue_declare("lim-work")
    ch.confirm_delivery()
    assert refused(lambda: ch.basic_publish("", "lim-work", b"x")) == (
        403, "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'limited'")
    ch = conn.channel()
    assert refused(lambda: ch.queue_declare("other")) == (
        403, "ACCESS_REFUSED - access to queue 'other' in vhost '/' refused for user 'limited'")
    ch = conn.channel()
    assert refused(lambda: ch.basic_consume("amq.gen-x", lambda *a: None))[0] == 403
    ch = conn.channel()
    ch.queue_bind("lim-work", "amq.topic", "sensors.#")
    assert refused(lambda: ch.queue_bind("lim-work", "amq.topic", "test.nosubscribe"))[1] == (
        "ACCESS_REFUSED - read access to topic 'test.nosubscribe' in exchange 'amq.topic' in vhost '/' "
        "refused for user 'limited'")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "sensors.t1", b"ok")
    assert ch.basic_get("lim-work", auto_ack=True)[2] == b"ok"
    assert refused(lambda: ch.basic_publish("amq.topic", "actuators.t1", b"no"))[1] == (
        "ACCESS_REFUSED - write access to topic 'actuators.t1' in exchange 'amq.topic' in vhost '/' "
        "refused for user 'limited'")
    conn.close()


def mqtt_client(broker, version, user="limited", client_id=None):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "perm-%s-%d" % (user, version), protocol=version)
    c.username_pw_set(user, "pw")
    result = {}
    done = threading.Event()
    c.on_connect = lambda cl, u, flags, rc, props: (result.update(rc=rc), done.set())
    c.connect("127.0.0.1", broker.mqtt_port)
    c.loop_start()
    assert done.wait(WAIT)
    return c, result["rc"]


def test_mqtt_connect_without_vhost_access_gets_not_authorized(secured):
    for version in (mqtt.MQTTv311, mqtt.MQTTv5):  # paho shows 3.1.1's return code 5 as 0x87 too
        c, rc = mqtt_client(secured, version, user="nobody")
        c.loop_stop()
        assert rc.getName() == "Not authorized" and rc.value == 0x87


@pytest.mark.parametrize("version,refusal", [(mqtt.MQTTv311, 0x80), (mqtt.MQTTv5, 0x87)])
def test_mqtt_subscribe_to_a_denied_topic_gets_a_failure_code(secured, version, refusal):
    c, rc = mqtt_client(secured, version)
    assert rc == 0
    codes, done = [], threading.Event()
    c.on_subscribe = lambda cl, u, mid, rcs, props: (codes.extend(int(r.value) if hasattr(r, "value") else r for r in rcs), done.set())
    c.subscribe([("test/nosubscribe", 1), ("test/other", 1)])
    assert done.wait(WAIT)
    assert codes == [refusal, 1]
    c.disconnect()
    c.loop_stop()


def test_mqtt5_publish_to_a_denied_topic_gets_puback_0x87_and_goes_nowhere(secured):
    watcher, rc = mqtt_client(secured, mqtt.MQTTv5)
    got = []
    watcher.on_message = lambda cl, u, m: got.append(m.topic)
    subscribed = threading.Event()
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.subscribe("#", 1)
    assert subscribed.wait(WAIT)
    pub, rc = mqtt_client(secured, mqtt.MQTTv5, client_id="perm-publisher")
    codes, acked = [], threading.Event()
    pub.on_publish = lambda cl, u, mid, reason, props: (codes.append(int(reason.value)), acked.set())
    pub.publish("actuators/valve", b"open", qos=1)
    assert acked.wait(WAIT)
    assert codes == [0x87]
    pub.publish("sensors/t1", b"20", qos=1).wait_for_publish(WAIT)
    deadline = time.monotonic() + WAIT
    while "sensors/t1" not in got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got == ["sensors/t1"]
    for c in (pub, watcher):
        c.disconnect()
        c.loop_stop()


def test_an_mqtt_will_on_a_denied_topic_refuses_the_connection(secured):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="will-denied", protocol=mqtt.MQTTv5)
    c.username_pw_set("limited", "pw")
    c.will_set("actuators/valve", b"open", qos=1)
    got, done = {}, threading.Event()
    c.on_connect = lambda cl, u, flags, rc, props: (got.update(rc=rc), done.set())
    c.connect("127.0.0.1", secured.mqtt_port)
    c.loop_start()
    assert done.wait(WAIT)
    c.loop_stop()
    assert got["rc"].value == 0x87
