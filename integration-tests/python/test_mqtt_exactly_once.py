"""QoS 2 exactly-once across a reconnect and a broker kill -9, with a raw 3.1.1 client so every
packet (including the resent DUP PUBLISH) is under the test's control; and mosquitto_pub /
mosquitto_sub from Debian."""
import shutil
import subprocess
import struct
import time

import pytest

from test_mqtt import Client
from test_mqtt_malformed import connect_packet, remaining_length, utf8

pytestmark = pytest.mark.junction_only


class RawClient:
    def __init__(self, broker, client_id, clean):
        import socket
        self.s = socket.create_connection(("127.0.0.1", broker.mqtt_port), timeout=5)
        self.s.settimeout(5)
        packet = bytearray(connect_packet(level=4, client_id=client_id))
        if not clean:
            packet[packet.index(b"MQTT") + 5] = 0x00  # connect flags: clean session off
        self.s.sendall(bytes(packet))
        self.connack = self.read_packet()
        assert self.connack[0] == 0x20, self.connack

    def read_packet(self):
        """One whole packet as it was on the wire (fixed header included)."""
        head = self._read(1)
        n, mult = 0, 1
        while True:
            b = self._read(1)
            head += b
            n += (b[0] & 0x7F) * mult
            mult *= 128
            if not b[0] & 0x80:
                break
        return head + self._read(n)

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.s.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def publish_qos2(self, topic, payload, packet_id, dup=False):
        body = utf8(topic) + struct.pack("!H", packet_id) + payload
        self.s.sendall(bytes([0x34 | (0x08 if dup else 0)]) + remaining_length(len(body)) + body)

    def send(self, kind, packet_id):
        self.s.sendall(bytes([kind, 2]) + struct.pack("!H", packet_id))

    def close(self):
        self.s.close()


def test_inbound_qos2_duplicate_is_suppressed_across_kill9(broker):
    watcher = Client(broker, client_id="watch2", clean=False)
    watcher.subscribe("eo/topic", 2)
    pub = RawClient(broker, "eo-pub", clean=False)
    pub.publish_qos2("eo/topic", b"once", packet_id=7)
    assert pub.read_packet() == b"\x50\x02\x00\x07"  # PUBREC 7: the broker has it, durably
    watcher.wait_for(1)
    watcher.close()
    pub.close()
    broker.kill9()
    broker.restart()
    pub = RawClient(broker, "eo-pub", clean=False)
    assert pub.connack[2] & 0x01, "session present"
    pub.publish_qos2("eo/topic", b"once", packet_id=7, dup=True)  # the client never saw PUBREC
    assert pub.read_packet() == b"\x50\x02\x00\x07"
    pub.send(0x62, 7)  # PUBREL
    assert pub.read_packet() == b"\x70\x02\x00\x07"  # PUBCOMP
    again = Client(broker, client_id="watch2", clean=False)
    time.sleep(0.5)
    assert [m.payload for m in again.messages] == [], "the duplicate was not routed again"
    pub.publish_qos2("eo/topic", b"next", packet_id=7)  # the id is free again after PUBCOMP
    assert pub.read_packet() == b"\x50\x02\x00\x07"
    assert [m.payload for m in again.wait_for(1)] == [b"next"]


def test_outbound_qos2_is_delivered_once_across_reconnects(broker):
    sub = RawClient(broker, "eo-sub", clean=False)
    body = struct.pack("!H", 1) + utf8("eo/out") + b"\x02"
    sub.s.sendall(b"\x82" + remaining_length(len(body)) + body)
    assert sub.read_packet()[:1] == b"\x90"  # SUBACK
    Client(broker).publish("eo/out", b"exactly", qos=2)
    publish = sub.read_packet()
    assert publish[0] & 0xF6 == 0x34 and publish.endswith(b"exactly")
    packet_id = struct.unpack("!H", publish[2 + 2 + len("eo/out"):][:2])[0]
    sub.send(0x50, packet_id)  # PUBREC
    assert sub.read_packet() == b"\x62\x02" + struct.pack("!H", packet_id)  # PUBREL
    sub.close()  # vanish before PUBCOMP
    sub = RawClient(broker, "eo-sub", clean=False)
    # The broker resends PUBREL, not the message.
    assert sub.read_packet() == b"\x62\x02" + struct.pack("!H", packet_id)
    sub.send(0x70, packet_id)  # PUBCOMP
    sub.s.settimeout(0.5)
    with pytest.raises(OSError):
        sub.read_packet()


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")
def test_mosquitto_clients(broker):
    port = str(broker.mqtt_port)
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t", "mosq/#", "-q", "1",
                            "-C", "2", "-W", "10", "-v"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    for payload in ("one", "two"):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", "mosq/t", "-m", payload, "-q", "1"],
                       check=True, timeout=10)
    out, _ = sub.communicate(timeout=15)
    assert out.splitlines() == ["mosq/t one", "mosq/t two"]
    retained = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", "mosq/r", "-m", "kept", "-r",
                               "-V", "mqttv5"], timeout=10)
    assert retained.returncode == 0
    got = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t", "mosq/r", "-C", "1", "-W", "10",
                          "-V", "mqttv311"], capture_output=True, text=True, timeout=15)
    assert got.stdout.strip() == "kept"
