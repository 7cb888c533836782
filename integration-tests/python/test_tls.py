"""TLS listeners (amqps, mqtts, stomps) with real clients: pika, paho-mqtt, stomp.py; protocol
versions checked with openssl s_client; client certificates; a certificate reload (SIGHUP)
while connections are open. Certificates are made here with the openssl command line."""
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pika
import pytest
import stomp
from paho.mqtt.enums import CallbackAPIVersion

from conftest import free_ports

pytestmark = pytest.mark.junction_only
WAIT = 10


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name="ca"):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".pem",
            "-days", "2", "-subj", "/CN=Junction Test " + name, cwd=d)


def make_cert(d, name, cn, ca="ca", server=True):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial",
            "-out", name + ".pem", "-days", "2", "-extfile", ext, cwd=d)


def make_certs(tmp_path):
    """A test CA in tmp_path/certs with a server certificate for localhost and a client one."""
    d = str(tmp_path / "certs")
    os.makedirs(d)
    make_ca(d)
    make_cert(d, "server", "localhost")
    make_cert(d, "client", "guest", server=False)
    return d


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


def wait_port(port):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("port %d not open" % port)


def tls_broker(broker_factory, certs, *extra):
    amqps, mqtts, stomps, https = free_ports(4)
    b = broker_factory("--tls-cert", os.path.join(certs, "server.pem"), "--tls-key", os.path.join(certs, "server.key"),
                       "--amqps", "127.0.0.1:%d" % amqps, "--mqtts", "127.0.0.1:%d" % mqtts,
                       "--stomps", "127.0.0.1:%d" % stomps, "--https", "127.0.0.1:%d" % https, *extra)
    for port in (amqps, mqtts, stomps, https):
        wait_port(port)
    b.amqps, b.mqtts, b.stomps, b.https = amqps, mqtts, stomps, https
    return b


def client_context(certs, with_cert=False):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(os.path.join(certs, "client.pem"), os.path.join(certs, "client.key"))
    return ctx


def amqps_connection(b, certs, **kw):
    params = pika.ConnectionParameters(host="127.0.0.1", port=b.amqps, credentials=pika.PlainCredentials("guest", "guest"),
                                       ssl_options=pika.SSLOptions(client_context(certs, **kw), "localhost"))
    return pika.BlockingConnection(params)


def test_amqp_mqtt_and_stomp_over_tls_with_real_clients(broker_factory, certs):
    b = tls_broker(broker_factory, certs)
    conn = amqps_connection(b, certs)
    ch = conn.channel()
    ch.queue_declare("over-tls")
    # MQTT over TLS publishes into the queue the AMQP-over-TLS client reads.
    m = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-mqtt")
    m.tls_set(ca_certs=os.path.join(certs, "ca.pem"))
    m.connect("127.0.0.1", b.mqtts)
    m.loop_start()
    m.publish("$queue/over-tls", b"from mqtts", qos=1).wait_for_publish(WAIT)
    m.disconnect()
    m.loop_stop()
    deadline = time.monotonic() + WAIT
    got = None
    while got is None and time.monotonic() < deadline:
        got = ch.basic_get("over-tls", auto_ack=True)[2]
        time.sleep(0.02)
    assert got == b"from mqtts"
    # STOMP over TLS sends into it too.
    s = stomp.Connection12([("127.0.0.1", b.stomps)])
    s.set_ssl(for_hosts=[("127.0.0.1", b.stomps)], ca_certs=os.path.join(certs, "ca.pem"))
    s.connect("guest", "guest", wait=True)
    s.send("/queue/over-tls", "from stomps", headers={"receipt": "r1"})
    time.sleep(0.3)
    assert ch.basic_get("over-tls", auto_ack=True)[2] == b"from stomps"
    s.disconnect()
    conn.close()


@pytest.mark.parametrize("flag,accepted", [("-tls1_2", True), ("-tls1_3", True), ("-tls1_1", False)])
def test_only_tls_1_2_and_1_3_are_offered(broker_factory, certs, flag, accepted):
    b = tls_broker(broker_factory, certs)
    run = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % b.amqps, flag, "-CAfile",
                          os.path.join(certs, "ca.pem"), "-servername", "localhost"],
                         input=b"", capture_output=True, timeout=WAIT)
    out = run.stdout.decode(errors="replace")
    negotiated = "Cipher is (NONE)" not in out and "Verify return code: 0 (ok)" in out
    assert negotiated == accepted, out[-1500:] + run.stderr.decode(errors="replace")[-800:]


def test_client_certificates_are_required_when_configured(broker_factory, certs, tmp_path):
    cfg = tmp_path / "tls.toml"
    cfg.write_text("[tls]\nrequire_client_cert = true\n")
    b = tls_broker(broker_factory, certs, "--tls-ca", os.path.join(certs, "ca.pem"), "--config", str(cfg))
    amqps_connection(b, certs, with_cert=True).close()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        amqps_connection(b, certs, with_cert=False)
    # A certificate from another CA is refused too.
    make_ca(certs, "other-ca")
    make_cert(certs, "stranger", "guest", ca="other-ca", server=False)
    ctx = client_context(certs)
    ctx.load_cert_chain(os.path.join(certs, "stranger.pem"), os.path.join(certs, "stranger.key"))
    params = pika.ConnectionParameters(host="127.0.0.1", port=b.amqps, ssl_options=pika.SSLOptions(ctx, "localhost"))
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)


def peer_subject(port, certs):
    run = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost"],
                         input=b"", capture_output=True, timeout=WAIT)
    out = run.stdout.decode(errors="replace")
    return next(line for line in out.splitlines() if line.startswith("subject="))


def test_a_certificate_reload_on_sighup_keeps_live_connections(broker_factory, certs):
    b = tls_broker(broker_factory, certs)
    live = amqps_connection(b, certs)
    ch = live.channel()
    assert "CN=localhost" in peer_subject(b.amqps, certs).replace(" ", "")
    make_cert(certs, "server", "junction.example")  # overwrites server.pem / server.key
    os.kill(b.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while "junction.example" not in peer_subject(b.amqps, certs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "junction.example" in peer_subject(b.amqps, certs), "new handshakes use the new certificate"
    ch.queue_declare("still-here")  # the connection opened before the reload still works
    live.close()
    assert "TLS certificate reloaded" in b.log_tail()


def test_https_serves_the_demo_and_mqtt_over_wss(broker_factory, certs):
    import urllib.request
    b = tls_broker(broker_factory, certs)
    page = urllib.request.urlopen("https://localhost:%d/demo" % b.https, context=client_context(certs), timeout=WAIT).read()
    assert b"Junction live board" in page
    got, subscribed = [], threading.Event()
    ws = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="over-wss", transport="websockets")
    ws.tls_set(ca_certs=os.path.join(certs, "ca.pem"))
    ws.ws_set_options(path="/mqtt")
    ws.on_message = lambda c, u, m: got.append(m.payload)
    ws.on_subscribe = lambda *a: subscribed.set()
    ws.connect("localhost", b.https)
    ws.loop_start()
    ws.subscribe("wss/t", 1)
    assert subscribed.wait(WAIT)
    ws.publish("wss/t", b"over wss", qos=1).wait_for_publish(WAIT)
    deadline = time.monotonic() + WAIT
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    ws.disconnect()
    ws.loop_stop()
    assert got == [b"over wss"]


def test_mqttjs_over_wss_verifies_the_certificate(broker_factory, certs):
    import json
    import shutil
    node_dir = os.path.join(os.path.dirname(__file__), "..", "node")
    if shutil.which("node") is None or not os.path.isdir(os.path.join(node_dir, "node_modules")):
        pytest.fail("node and integration-tests/node/node_modules are needed (scripts/test.sh installs them)")
    b = tls_broker(broker_factory, certs)
    env = dict(os.environ, JUNCTION_MQTT_WSS_URL="wss://localhost:%d/mqtt" % b.https, JUNCTION_CA=os.path.join(certs, "ca.pem"))
    run = subprocess.run(["node", "mqttjs-wss.mjs"], cwd=node_dir, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"topic": "wss/js", "payload": "over wss from MQTT.js"}
    # The same client refuses a server whose certificate its CA did not sign.
    other = os.path.join(certs, "other")
    os.makedirs(other)
    make_ca(other, "ca")
    env["JUNCTION_CA"] = os.path.join(other, "ca.pem")
    refused = subprocess.run(["node", "mqttjs-wss.mjs"], cwd=node_dir, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
