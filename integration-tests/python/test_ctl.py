"""`junction ctl` against a live broker: every command, as a table and as --json."""
import json
import os
import shutil
import subprocess

import pika
import pytest

from helpers import message_count

pytestmark = pytest.mark.junction_only


def ctl(broker, *args, ok=True):
    cmd = [os.environ["JUNCTION_BIN"], "ctl", "--url", "http://127.0.0.1:%d" % broker.http_port, *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if ok:
        assert run.returncode == 0, run.stderr
    return run


def ctl_json(broker, *args):
    return json.loads(ctl(broker, "--json", *args).stdout)


def test_overview_and_listings(broker):
    ch = broker.connect(client_properties={"connection_name": "ctl-test"}).channel()
    ch.queue_declare("listed")
    ch.basic_publish("", "listed", b"x")
    message_count(ch, "listed")
    out = ctl(broker, "overview").stdout
    assert "Junction" in out and "connections 1 (amqp 1, mqtt 0, stomp 0)" in out
    table = ctl(broker, "list", "queues").stdout.splitlines()
    assert table[0].split()[:4] == ["vhost", "name", "type", "ready"]
    assert any(line.split()[:4] == ["/", "listed", "classic", "1"] for line in table[1:])
    assert [c["client_id"] for c in ctl_json(broker, "list", "connections")] == ["ctl-test"]
    for what in ("channels", "exchanges", "bindings", "users", "vhosts", "permissions", "mqtt-sessions"):
        assert isinstance(ctl_json(broker, "list", what), list), what
    assert {q["name"] for q in ctl_json(broker, "list", "queues", "--vhost", "/")} == {"listed"}


def test_declare_bind_publish_get_purge_delete(broker):
    ctl(broker, "declare-exchange", "orders", "--type", "topic")
    ctl(broker, "declare-queue", "billing", "--arg", "x-max-length=50")
    ctl(broker, "declare-queue", "history", "--type", "stream")
    ctl(broker, "bind", "orders", "billing", "--key", "order.#")
    queues = {q["name"]: q for q in ctl_json(broker, "list", "queues")}
    assert queues["billing"]["arguments"] == {"x-max-length": 50} and queues["history"]["type"] == "stream"
    assert ctl(broker, "publish", "orders", "order.created", "hello").stdout.strip() == "routed"
    assert ctl(broker, "publish", "orders", "nothing", "x").stdout.strip() == "not routed"
    assert ctl(broker, "publish", "", "billing", "direct").stdout.strip() == "routed"
    peek = ctl_json(broker, "get", "billing", "--count", "5", "--requeue")
    assert [m["payload"] for m in peek] == ["hello", "direct"]
    assert "hello" in ctl(broker, "get", "billing").stdout
    ch = broker.connect().channel()
    assert message_count(ch, "billing") == 1
    ctl(broker, "purge-queue", "billing")
    assert message_count(ch, "billing") == 0
    ctl(broker, "delete-queue", "billing")
    ctl(broker, "delete-exchange", "orders")
    assert "billing" not in {q["name"] for q in ctl_json(broker, "list", "queues")}
    missing = ctl(broker, "delete-queue", "billing", ok=False)
    assert missing.returncode != 0 and "404" in missing.stderr


def test_users_vhosts_permissions_and_a_refused_login(broker):
    ctl(broker, "add-vhost", "team")
    ctl(broker, "add-user", "carol", "pw", "--tags", "monitoring")
    ctl(broker, "set-permissions", "carol", "^carol-", ".*", ".*", "--vhost", "team")
    perms = [p for p in ctl_json(broker, "list", "permissions") if p["user"] == "carol"]
    assert perms == [{"user": "carol", "vhost": "team", "configure": "^carol-", "write": ".*", "read": ".*"}]
    as_carol = subprocess.run([os.environ["JUNCTION_BIN"], "ctl", "--url", "http://127.0.0.1:%d" % broker.http_port,
                               "--user", "carol", "--password", "pw", "add-vhost", "mine"], capture_output=True, text=True, timeout=60)
    assert as_carol.returncode != 0 and "403" in as_carol.stderr
    ctl(broker, "clear-permissions", "carol", "--vhost", "team")
    ctl(broker, "delete-user", "carol")
    ctl(broker, "delete-vhost", "team")
    assert [v["name"] for v in ctl_json(broker, "list", "vhosts")] == ["/"]


def test_close_connection(broker):
    conn = broker.connect(client_properties={"connection_name": "doomed"})
    name = [c["name"] for c in ctl_json(broker, "list", "connections") if c["client_id"] == "doomed"][0]
    ctl(broker, "close-connection", name, "--reason", "maintenance window")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(50):
            conn.process_data_events(time_limit=0.1)
    assert closed.value.reply_code == 320 and "maintenance window" in closed.value.reply_text


def test_export_import_definitions_and_backup(broker_factory, tmp_path):
    a = broker_factory()
    ctl(a, "declare-queue", "kept")
    ctl(a, "add-user", "dave", "pw")
    exported = tmp_path / "defs.json"
    ctl(a, "export-definitions", str(exported))
    doc = json.loads(exported.read_text())
    assert "kept" in {q["name"] for q in doc["queues"]}
    b = broker_factory()
    ctl(b, "import-definitions", str(exported))
    assert "kept" in {q["name"] for q in ctl_json(b, "list", "queues")}
    assert "dave" in {u["name"] for u in ctl_json(b, "list", "users")}
    ch = a.connect().channel()
    ch.confirm_delivery()
    ch.basic_publish("", "kept", b"precious", pika.BasicProperties(delivery_mode=2))
    backup = tmp_path / "backup"
    ctl(a, "backup", str(backup))
    assert (backup / "CURRENT").exists()
    again = ctl(a, "backup", str(backup), ok=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    ch.basic_publish("", "kept", b"after the backup", pika.BasicProperties(delivery_mode=2))
    # Restore: the broker restarted on the checkpoint has what was there at backup time only.
    a.stop()
    shutil.rmtree(os.path.join(a.data_dir, "store"))
    os.rename(backup, os.path.join(a.data_dir, "store"))
    a.restart()
    ch = a.connect().channel()
    assert message_count(ch, "kept") == 1
    method, _, body = ch.basic_get("kept", auto_ack=True)
    assert body == b"precious"
