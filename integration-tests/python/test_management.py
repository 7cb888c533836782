"""The management HTTP API (RabbitMQ-shaped, /api) and /metrics against a live broker: every
endpoint, authentication and tags, and Prometheus metrics parsed by prometheus-client's parser."""
import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from helpers import message_count
from test_stomp import Client as StompClient

pytestmark = pytest.mark.junction_only
GUEST = ("guest", "guest")


def call(broker, method, path, body=None, auth=GUEST, headers=None):
    """One API request; returns (status, parsed JSON or None)."""
    url = "http://127.0.0.1:%d%s" % (broker.http_port, path)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def get(broker, path, **kw):
    status, body = call(broker, "GET", path, **kw)
    assert status == 200, (path, status, body)
    return body


def q(name):
    return urllib.parse.quote(name, safe="")


def test_authentication_and_tags(broker):
    assert call(broker, "GET", "/api/overview", auth=None)[0] == 401
    assert call(broker, "GET", "/api/overview", auth=("guest", "wrong"))[0] == 401
    assert get(broker, "/api/whoami") == {"name": "guest", "tags": ["administrator"]}
    assert call(broker, "PUT", "/api/users/watcher", {"password": "w", "tags": "monitoring"})[0] == 201
    assert call(broker, "PUT", "/api/users/nobody", {"password": "n", "tags": ""})[0] == 201
    assert get(broker, "/api/queues", auth=("watcher", "w")) == []
    status, body = call(broker, "PUT", "/api/queues/%2F/x", {}, auth=("watcher", "w"))
    assert status == 403 and body["reason"] == "Not administrator user"
    assert call(broker, "GET", "/api/queues", auth=("nobody", "n"))[0] == 403
    watched = get(broker, "/api/users", auth=("watcher", "w"))
    assert watched and all("password_hash" not in u for u in watched), "hashes are for administrators"
    assert "password_hash" in get(broker, "/api/users/guest")
    assert call(broker, "GET", "/api/definitions", auth=("watcher", "w"))[0] == 403
    url = "http://127.0.0.1:%d/api/vhosts/forms" % broker.http_port
    form = urllib.request.Request(url, data=b"x=1", method="PUT", headers={
        "Content-Type": "text/plain", "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(form, timeout=10)
    assert refused.value.code == 415, "a cross-site form cannot write"


def test_overview_counts_what_clients_did(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare("ov")
    for _ in range(5):
        ch.basic_publish("", "ov", b"x")
    message_count(ch, "ov")
    o = get(broker, "/api/overview")
    assert o["product_name"] == "Junction"
    assert o["object_totals"]["queues"] == 1 and o["object_totals"]["connections"] == 1
    assert o["object_totals"]["channels"] == 1
    assert o["queue_totals"]["messages_ready"] == 5
    assert o["message_stats"]["publish"] == 5
    assert o["connections_by_protocol"] == {"amqp": 1, "mqtt": 0, "stomp": 0}
    protocols = {l["protocol"] for l in o["listeners"]}
    assert {"amqp", "mqtt", "stomp", "http"} <= protocols
    assert get(broker, "/api/health/checks/alarms") == {"status": "ok"}
    assert get(broker, "/api/health/checks/alive") == {"status": "ok"}


def test_queues_declare_list_get_peek_purge_delete(broker):
    assert call(broker, "PUT", "/api/queues/%2F/work", {"durable": True, "arguments": {"x-max-length": 100}})[0] == 201
    assert call(broker, "PUT", "/api/queues/%2F/work", {"durable": True, "arguments": {"x-max-length": 100}})[0] == 204
    status, body = call(broker, "PUT", "/api/queues/%2F/work", {"durable": False})
    assert status == 400 and "inequivalent" in body["reason"]
    ch = broker.connect().channel()
    for i in range(3):
        ch.basic_publish("", "work", b"m%d" % i, pika.BasicProperties(content_type="text/plain", headers={"k": i}))
    ch.basic_publish("", "work", b"\xff\x00")
    message_count(ch, "work")
    listed = [x for x in get(broker, "/api/queues") if x["name"] == "work"][0]
    assert listed["messages"] == 4 and listed["arguments"] == {"x-max-length": 100} and listed["type"] == "classic"
    peeked = call(broker, "POST", "/api/queues/%2F/work/get", {"count": 10, "ackmode": "ack_requeue_true", "encoding": "auto"})[1]
    assert [m["payload"] for m in peeked[:3]] == ["m0", "m1", "m2"]
    assert peeked[0]["properties"]["content_type"] == "text/plain" and peeked[0]["properties"]["headers"] == {"k": 0}
    assert peeked[3]["payload_encoding"] == "base64" and base64.b64decode(peeked[3]["payload"]) == b"\xff\x00"
    assert message_count(ch, "work") == 4, "a peek puts the messages back"
    taken = call(broker, "POST", "/api/queues/%2F/work/get", {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})[1]
    assert taken[0]["payload"] == "m0" and message_count(ch, "work") == 3
    tag = ch.basic_consume("work", lambda *a: None)
    details = get(broker, "/api/queues/%2F/work")
    assert details["consumer_details"][0]["consumer_tag"] == tag
    ch.basic_cancel(tag)
    # pika hands the deliveries its callback never took back (basic.reject, requeue) on the
    # AMQP connection: wait until the broker has them before purging over HTTP.
    deadline = time.monotonic() + 10
    while get(broker, "/api/queues/%2F/work")["messages_unacknowledged"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert call(broker, "DELETE", "/api/queues/%2F/work/contents")[0] == 204
    assert message_count(ch, "work") == 0
    assert call(broker, "DELETE", "/api/queues/%2F/work")[0] == 204
    assert call(broker, "GET", "/api/queues/%2F/work")[0] == 404


def test_exchanges_bindings_and_publish(broker):
    assert call(broker, "PUT", "/api/exchanges/%2F/events", {"type": "topic", "durable": True})[0] == 201
    assert call(broker, "PUT", "/api/queues/%2F/audit", {"durable": True})[0] == 201
    assert call(broker, "POST", "/api/bindings/%2F/e/events/q/audit", {"routing_key": "order.*"})[0] == 201
    names = [x["name"] for x in get(broker, "/api/exchanges/%2F")]
    assert "" in names and "amq.topic" in names and "events" in names
    assert get(broker, "/api/exchanges/%2F/events")["type"] == "topic"
    bindings = get(broker, "/api/queues/%2F/audit/bindings")
    assert {(b["source"], b["routing_key"]) for b in bindings} == {("", "audit"), ("events", "order.*")}
    status, body = call(broker, "POST", "/api/exchanges/%2F/events/publish",
                        {"routing_key": "order.created", "payload": "hello", "payload_encoding": "string", "properties": {}})
    assert status == 200 and body == {"routed": True}
    assert call(broker, "POST", "/api/exchanges/%2F/events/publish",
                {"routing_key": "nothing", "payload": "x", "payload_encoding": "string", "properties": {}})[1] == {"routed": False}
    assert call(broker, "POST", "/api/exchanges/%2F/amq.default/publish",
                {"routing_key": "audit", "payload": "aGk=", "payload_encoding": "base64", "properties": {"delivery_mode": 2}})[1] == {"routed": True}
    ch = broker.connect().channel()
    assert message_count(ch, "audit") == 2
    key = [b for b in bindings if b["source"] == "events"][0]["properties_key"]
    assert call(broker, "DELETE", "/api/bindings/%2F/e/events/q/audit/" + q(key))[0] == 204
    assert get(broker, "/api/bindings/%2F/e/events/q/audit") == []
    assert call(broker, "DELETE", "/api/exchanges/%2F/events")[0] == 204
    assert call(broker, "GET", "/api/exchanges/%2F/events")[0] == 404


def test_connections_and_channels_for_every_protocol_and_closing_one(broker):
    conn = broker.connect(client_properties={"connection_name": "billing"})
    ch = conn.channel()
    conn.channel()
    m = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sensor-7", protocol=mqtt.MQTTv5)
    m.connect("127.0.0.1", broker.mqtt_port)
    m.loop_start()
    s = StompClient(broker)
    deadline = time.monotonic() + 10
    while len(get(broker, "/api/connections")) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    connections = {c["protocol"]: c for c in get(broker, "/api/connections")}
    assert set(connections) == {"AMQP 0-9-1", "MQTT 5.0", "STOMP 1.2"}
    amqp = connections["AMQP 0-9-1"]
    assert amqp["client_id"] == "billing" and amqp["user"] == "guest" and amqp["channels"] == 2 and not amqp["ssl"]
    assert connections["MQTT 5.0"]["client_id"] == "sensor-7"
    assert amqp["recv_oct"] > 0 and amqp["send_oct"] > 0
    assert len([c for c in get(broker, "/api/channels") if c["connection_details"]["name"] == amqp["name"]]) == 2
    assert get(broker, "/api/connections/" + q(amqp["name"]))["client_id"] == "billing"
    assert call(broker, "DELETE", "/api/connections/" + q(amqp["name"]), headers={"X-Reason": "maintenance"})[0] == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(50):
            conn.process_data_events(time_limit=0.1)
    assert closed.value.reply_code == 320 and "maintenance" in closed.value.reply_text
    assert call(broker, "DELETE", "/api/connections/" + q(connections["MQTT 5.0"]["name"]))[0] == 204
    deadline = time.monotonic() + 10
    while m.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not m.is_connected()
    m.loop_stop()
    assert call(broker, "DELETE", "/api/connections/" + q(connections["STOMP 1.2"]["name"]))[0] == 204
    error = s.wait_for("errors")[0]
    assert "Closed via management API" in error.body
    s.close()


def test_users_vhosts_permissions(broker):
    assert call(broker, "PUT", "/api/vhosts/staging")[0] == 201
    assert {v["name"] for v in get(broker, "/api/vhosts")} == {"/", "staging"}
    assert get(broker, "/api/vhosts/staging")["name"] == "staging"
    assert call(broker, "PUT", "/api/users/alice", {"password": "s3cret", "tags": ""})[0] == 201
    assert call(broker, "PUT", "/api/permissions/staging/alice", {"configure": "^alice-", "write": ".*", "read": ".*"})[0] == 201
    assert get(broker, "/api/permissions/staging/alice")["configure"] == "^alice-"
    params = pika.ConnectionParameters("127.0.0.1", broker.port, "staging", pika.PlainCredentials("alice", "s3cret"))
    ch = pika.BlockingConnection(params).channel()
    ch.queue_declare("alice-q")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.queue_declare("other")
    assert refused.value.reply_code == 403
    assert any(u["name"] == "alice" for u in get(broker, "/api/users"))
    assert get(broker, "/api/users/alice")["tags"] == []
    assert {(p["user"], p["vhost"]) for p in get(broker, "/api/permissions")} >= {("alice", "staging"), ("guest", "/")}
    assert any(b["source"] == "amq.direct" or b["source"] == "" for b in get(broker, "/api/bindings"))
    assert call(broker, "DELETE", "/api/permissions/staging/alice")[0] == 204
    assert call(broker, "GET", "/api/permissions/staging/alice")[0] == 404
    assert call(broker, "DELETE", "/api/users/alice")[0] == 204
    assert call(broker, "GET", "/api/users/alice")[0] == 404
    assert call(broker, "DELETE", "/api/vhosts/staging")[0] == 204
    assert [v["name"] for v in get(broker, "/api/vhosts")] == ["/"]
    assert call(broker, "DELETE", "/api/vhosts/%2F")[0] == 400


def test_definitions_export_and_import_into_another_broker(broker_factory):
    a = broker_factory()
    call(a, "PUT", "/api/vhosts/apps")
    call(a, "PUT", "/api/users/svc", {"password": "pw", "tags": "monitoring"})
    call(a, "PUT", "/api/permissions/apps/svc", {"configure": "", "write": ".*", "read": ".*"})
    call(a, "PUT", "/api/exchanges/apps/orders", {"type": "fanout", "durable": True})
    call(a, "PUT", "/api/queues/apps/orders-audit", {"durable": True, "arguments": {"x-queue-type": "stream"}})
    call(a, "POST", "/api/bindings/apps/e/orders/q/orders-audit", {"routing_key": ""})
    doc = get(a, "/api/definitions")
    assert {x["name"] for x in doc["exchanges"]} == {"orders"}
    b = broker_factory()
    assert call(b, "POST", "/api/definitions", doc)[0] == 204
    again = get(b, "/api/definitions")
    for key in ("vhosts", "permissions", "exchanges", "queues", "bindings"):
        assert sorted(map(json.dumps, again[key])) == sorted(map(json.dumps, doc[key])), key
    assert get(b, "/api/whoami", auth=("svc", "pw"))["tags"] == ["monitoring"]


def test_mqtt_sessions_and_retained(broker):
    m = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="keeper", protocol=mqtt.MQTTv311, clean_session=False)
    m.connect("127.0.0.1", broker.mqtt_port)
    m.loop_start()
    m.subscribe("plant/#", 1)
    m.publish("plant/line1/temp", b"21.5", qos=1, retain=True).wait_for_publish(10)
    time.sleep(0.3)
    sessions = {s["client_id"]: s for s in get(broker, "/api/mqtt/sessions")}
    assert sessions["keeper"]["connected"] and sessions["keeper"]["persistent"]
    assert sessions["keeper"]["subscriptions"] == [{"filter": "plant/#", "qos": 1}]
    m.disconnect()
    m.loop_stop()
    time.sleep(0.3)
    assert not {s["client_id"]: s for s in get(broker, "/api/mqtt/sessions")}["keeper"]["connected"]
    retained = [r for r in get(broker, "/api/mqtt/retained") if not r["topic"].startswith("$SYS/")]
    assert [(r["topic"], r["payload_bytes"], r["qos"]) for r in retained] == [("plant/line1/temp", 4, 1)]


def metrics(broker):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % broker.http_port, timeout=10) as r:
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_parse_and_match_what_happened(broker):
    ch = broker.connect().channel()
    ch.queue_declare("metered", durable=True)
    ch.confirm_delivery()
    for _ in range(7):
        ch.basic_publish("", "metered", b"x" * 10, pika.BasicProperties(delivery_mode=2))
    got = [ch.basic_get("metered", auto_ack=True) for _ in range(2)]
    assert all(g[0] for g in got)
    m = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="metric-pub", protocol=mqtt.MQTTv311)
    m.connect("127.0.0.1", broker.mqtt_port)
    m.loop_start()
    m.publish("a/b", b"1", qos=1).wait_for_publish(10)
    time.sleep(0.2)
    s = metrics(broker)
    assert s[("junction_connections", (("protocol", "amqp"),))] == 1
    assert s[("junction_connections", (("protocol", "mqtt"),))] == 1
    assert s[("junction_messages_received_total", (("protocol", "amqp"),))] == 7
    assert s[("junction_messages_received_total", (("protocol", "mqtt"),))] == 1
    assert s[("junction_messages_delivered_total", (("protocol", "amqp"),))] == 2
    assert s[("junction_queue_messages_ready", (("queue", "metered"), ("vhost", "/")))] == 5
    assert s[("junction_queue_message_bytes", (("queue", "metered"), ("vhost", "/")))] == 50
    assert s[("junction_store_fsync_seconds_count", ())] >= 1
    assert s[("junction_publish_to_deliver_seconds_count", ())] >= 2
    assert s[("junction_alarm", (("resource", "memory"),))] == 0
    assert s[("junction_store_bytes", ())] > 0
    m.disconnect()
    m.loop_stop()


def test_the_grafana_dashboard_uses_only_metrics_that_exist(broker):
    import os
    import re
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "grafana", "junction-dashboard.json")
    with open(path) as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\bjunction_[a-z_]+", e)}
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % broker.http_port, timeout=10) as r:
        families = {f.name for f in text_string_to_metric_families(r.read().decode())}
    # prometheus-client names counter families without their _total suffix.
    exposed = families | {f + "_total" for f in families}
    assert used and used <= exposed, used - exposed


def test_connection_byte_rates_follow_traffic(broker):
    busy = pika.BlockingConnection(broker.params(client_properties={"connection_name": "busy"}))
    idle = pika.BlockingConnection(broker.params(client_properties={"connection_name": "idle"}))
    ch = busy.channel()
    ch.queue_declare("rates", auto_delete=True)
    deadline = time.monotonic() + 15
    rates = {}
    while time.monotonic() < deadline:
        for _ in range(20):
            ch.basic_publish("", "rates", b"x" * 10_000)
        busy.process_data_events(time_limit=0.1)
        idle.process_data_events(time_limit=0)
        rates = {c["client_id"]: c["recv_oct_details"]["rate"] for c in get(broker, "/api/connections")}
        if rates.get("busy", 0) > 10_000:
            break
    assert rates["busy"] > 10_000, rates
    # The idle connection's only traffic is its handshake, a few hundred bytes.
    assert rates["idle"] < rates["busy"] / 100, rates
    busy.close()
    idle.close()
