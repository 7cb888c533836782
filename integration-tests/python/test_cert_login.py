"""Certificate login and revocation: a client whose verified TLS certificate names a user logs in
as that user without a password (SASL EXTERNAL with pika, no user name with paho-mqtt and
stomp.py); a certificate naming no user is refused with each protocol's error; a revoked
certificate (openssl ca -revoke, a CRL in [tls] crls) fails the handshake."""
import os
import ssl
import time

import paho.mqtt.client as mqtt
import pika
import pytest
import stomp
from paho.mqtt.enums import CallbackAPIVersion

from test_management import get
from test_permissions import password_hash
from test_tls import WAIT, client_context, make_cert, make_certs, openssl, tls_broker

pytestmark = pytest.mark.junction_only


@pytest.fixture
def certs(tmp_path):
    """test_tls's CA and certificates, plus client certificates naming a user and nobody."""
    d = make_certs(tmp_path)
    make_cert(d, "certuser", "certuser", server=False)
    make_cert(d, "ghost", "no-such-user", server=False)
    return d


def cert_login_broker(broker_factory, certs, tmp_path, tls_extra=""):
    binary = os.environ["JUNCTION_BIN"]
    cfg = tmp_path / "cert-login.toml"
    cfg.write_text("""
[tls]
cert_login = true
{tls_extra}

[[users]]
name = "certuser"
password_hash = "{hash}"

[[users]]
name = "alice@example.com"
password_hash = "{hash}"

[[permissions]]
user = "certuser"
vhost = "/"
configure = ".*"
write = ".*"
read = ".*"

[[permissions]]
user = "alice@example.com"
vhost = "/"
configure = ".*"
write = ".*"
read = ".*"
""".format(hash=password_hash(binary, "a password nobody uses"), tls_extra=tls_extra))
    return tls_broker(broker_factory, certs, "--tls-ca", os.path.join(certs, "ca.pem"), "--config", str(cfg))


def context_with(certs, name):
    ctx = client_context(certs)
    ctx.load_cert_chain(os.path.join(certs, name + ".pem"), os.path.join(certs, name + ".key"))
    return ctx


def amqp_external(b, certs, name):
    params = pika.ConnectionParameters(host="127.0.0.1", port=b.amqps, credentials=pika.credentials.ExternalCredentials(),
                                       ssl_options=pika.SSLOptions(context_with(certs, name), "localhost"))
    return pika.BlockingConnection(params)


def mqtt_connack(b, certs, name, client_id):
    """Connects over mqtts with the named certificate and no user name; returns the CONNACK code."""
    codes = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.tls_set_context(context_with(certs, name))
    c.on_connect = lambda client, userdata, flags, rc, props: codes.append(rc.value)
    c.connect("127.0.0.1", b.mqtts)
    c.loop_start()
    deadline = time.monotonic() + WAIT
    while not codes and time.monotonic() < deadline:
        time.sleep(0.02)
    return c, codes


def stomp_connect(b, certs, name, **login):
    s = stomp.Connection12([("127.0.0.1", b.stomps)])
    s.set_ssl(for_hosts=[("127.0.0.1", b.stomps)], ca_certs=os.path.join(certs, "ca.pem"),
              cert_file=os.path.join(certs, name + ".pem"), key_file=os.path.join(certs, name + ".key"))
    s.connect(wait=True, **login)
    return s


def users_by_client(b):
    """{client id: (protocol, user, tls)} of the open connections, from the management API."""
    return {c["client_id"]: (c["protocol"], c["user"], c["ssl"]) for c in get(b, "/api/connections")}


def wait_for(predicate):
    deadline = time.monotonic() + WAIT
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_every_protocol_logs_in_as_the_user_its_certificate_names(broker_factory, certs, tmp_path):
    b = cert_login_broker(broker_factory, certs, tmp_path)
    conn = amqp_external(b, certs, "certuser")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("cert-q")
    # The broker checks a claimed user id against the login: it is certuser.
    ch.basic_publish("", "cert-q", b"from amqp", pika.BasicProperties(user_id="certuser"), mandatory=True)
    m, codes = mqtt_connack(b, certs, "certuser", "cert-mqtt")
    assert codes == [0]
    m.publish("$queue/cert-q", b"from mqtt", qos=1).wait_for_publish(WAIT)
    s = stomp_connect(b, certs, "certuser", headers={"client-id": "cert-stomp"})
    s.send("/queue/cert-q", "from stomp", headers={"receipt": "sent"})
    assert wait_for(lambda: ch.queue_declare("cert-q", passive=True).method.message_count == 3)
    seen = users_by_client(b)
    assert seen["cert-mqtt"][1] == "certuser" and seen["cert-stomp"][1] == "certuser"
    assert [user for proto, user, tls in seen.values() if proto.startswith("AMQP")] == ["certuser"]
    # A client with a certificate that sends a user name logs in with that user's password.
    s2 = stomp_connect(b, certs, "certuser", username="guest", passcode="guest", headers={"client-id": "by-password"})
    assert users_by_client(b)["by-password"][1] == "guest"
    for c in (s, s2):
        c.disconnect()
    m.disconnect()
    m.loop_stop()
    conn.close()


def test_a_certificate_naming_no_user_is_refused_by_every_protocol(broker_factory, certs, tmp_path):
    b = cert_login_broker(broker_factory, certs, tmp_path)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError, match="403.*EXTERNAL"):
        amqp_external(b, certs, "ghost")
    m, codes = mqtt_connack(b, certs, "ghost", "ghost-mqtt")
    m.loop_stop()
    assert codes == [135], "CONNACK 5, not authorised (paho reports 3.1.1's code 5 as 135)"
    with pytest.raises(stomp.exception.ConnectFailedException):
        stomp_connect(b, certs, "ghost")
    assert "login without a password as 'no-such-user' refused" in b.log_tail()


def test_external_is_offered_only_with_a_certificate(broker_factory, certs, tmp_path):
    b = cert_login_broker(broker_factory, certs, tmp_path)
    params = pika.ConnectionParameters(host="127.0.0.1", port=b.amqps, credentials=pika.credentials.ExternalCredentials(),
                                       ssl_options=pika.SSLOptions(client_context(certs), "localhost"))
    with pytest.raises(pika.exceptions.AuthenticationError):
        pika.BlockingConnection(params)
    # Without a certificate a client still logs in with a password.
    plain = pika.ConnectionParameters(host="127.0.0.1", port=b.amqps, credentials=pika.PlainCredentials("guest", "guest"),
                                      ssl_options=pika.SSLOptions(client_context(certs), "localhost"))
    pika.BlockingConnection(plain).close()


def test_the_user_name_can_come_from_the_subject_alternative_name(broker_factory, certs, tmp_path):
    ext = os.path.join(certs, "alice.ext")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "alice.key", "-out", "alice.csr", "-subj", "/CN=ignored", cwd=certs)
    with open(ext, "w") as f:
        f.write("extendedKeyUsage=clientAuth\nsubjectAltName=email:alice@example.com\n")
    openssl("x509", "-req", "-in", "alice.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "alice.pem",
            "-days", "2", "-extfile", ext, cwd=certs)
    b = cert_login_broker(broker_factory, certs, tmp_path, tls_extra='cert_login_from = "san_email"')
    m, codes = mqtt_connack(b, certs, "alice", "alice-mqtt")
    assert codes == [0]
    assert users_by_client(b)["alice-mqtt"][1] == "alice@example.com"
    m.disconnect()
    m.loop_stop()


def revoke(certs, name):
    """Revokes `name`.pem with `openssl ca` and writes the CA's CRL to crl.pem."""
    with open(os.path.join(certs, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = junction_test\n[junction_test]\ndatabase = index.txt\ncrlnumber = crlnumber\n"
                "default_md = sha256\ndefault_crl_days = 2\ncertificate = ca.pem\nprivate_key = ca.key\n")
    open(os.path.join(certs, "index.txt"), "w").close()
    with open(os.path.join(certs, "crlnumber"), "w") as f:
        f.write("01\n")
    openssl("ca", "-config", "ca.cnf", "-revoke", name + ".pem", cwd=certs)
    openssl("ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem", cwd=certs)


def test_a_revoked_certificate_is_refused(broker_factory, certs, tmp_path):
    make_cert(certs, "revoked", "certuser", server=False)
    revoke(certs, "revoked")
    b = cert_login_broker(broker_factory, certs, tmp_path,
                          tls_extra='require_client_cert = true\ncrls = ["%s"]' % os.path.join(certs, "crl.pem"))
    amqp_external(b, certs, "certuser").close()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        amqp_external(b, certs, "revoked")
    # With TLS 1.3 the client may only learn of the refusal after its side of the handshake.
    try:
        m, codes = mqtt_connack(b, certs, "revoked", "revoked-mqtt")
        m.loop_stop()
    except (ssl.SSLError, ConnectionError):
        codes = []
    assert codes == [], "a revoked certificate got a CONNACK"
    assert "TLS handshake failed" in b.log_tail()
