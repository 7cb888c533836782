"""Hostile and malformed MQTT input over raw sockets: the protocol's own error, never a panic,
and other clients keep working."""
import socket
import struct
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.junction_only


def remaining_length(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(level=4, client_id="raw", props=b""):
    name = utf8("MQTT") if level >= 4 else utf8("MQIsdp")
    body = name + bytes([level, 0x02]) + struct.pack("!H", 30)
    if level == 5:
        body += remaining_length(len(props)) + props
    body += utf8(client_id)
    return bytes([0x10]) + remaining_length(len(body)) + body


def raw(broker):
    s = socket.create_connection(("127.0.0.1", broker.mqtt_port), timeout=5)
    s.settimeout(5)
    return s


def split_packets(data):
    """[(first byte, body)] of the MQTT packets in `data` (a cut-off last one is left out)."""
    packets, i = [], 0
    while i + 1 < len(data):
        length, shift, j = 0, 0, i + 1
        while j < len(data):
            length |= (data[j] & 0x7F) << shift
            shift, j = shift + 7, j + 1
            if not data[j - 1] & 0x80:
                break
        if j + length > len(data):
            break
        packets.append((data[i], data[j:j + length]))
        i = j + length
    return packets


def disconnect_reasons(data):
    """The reason codes of the MQTT 5 DISCONNECTs in `data` (0 for one without a reason)."""
    return [body[0] if body else 0 for first, body in split_packets(data) if first == 0xE0]


def read_until_closed(s, deadline=5.0):
    data, end = b"", time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            return data, True
        except socket.timeout:
            return data, False
        if not chunk:
            return data, True
        data += chunk
    return data, False


def healthy_round_trip(broker):
    got = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="healthy", protocol=mqtt.MQTTv311)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.connect("127.0.0.1", broker.mqtt_port)
    c.loop_start()
    c.subscribe("health", 1)
    time.sleep(0.2)
    c.publish("health", b"ok", qos=1).wait_for_publish(5)
    end = time.monotonic() + 5
    while not got and time.monotonic() < end:
        time.sleep(0.02)
    c.disconnect()
    c.loop_stop()
    assert got == [b"ok"]


def test_garbage_instead_of_connect_is_closed(broker):
    s = raw(broker)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data, closed = read_until_closed(s)
    assert closed and data == b""
    healthy_round_trip(broker)


def test_unknown_protocol_level_gets_connack_refusal_or_close(broker):
    s = raw(broker)
    s.sendall(connect_packet(level=9))
    data, closed = read_until_closed(s)
    assert closed
    assert data in (b"", b"\x20\x02\x00\x01"), data  # 3.1.1: return code 1, unacceptable version
    healthy_round_trip(broker)


def test_packet_claiming_to_exceed_the_limit_is_refused_before_buffering(broker):
    s = raw(broker)
    s.sendall(connect_packet(level=5, props=b""))
    connack = s.recv(64)
    assert connack[0] == 0x20 and connack[3] == 0x00, connack
    # A PUBLISH header announcing ~200 MB, then nothing: the broker must not wait for it.
    s.sendall(bytes([0x30]) + remaining_length(200 * 1024 * 1024))
    data, closed = read_until_closed(s)
    assert closed
    assert disconnect_reasons(data) == [0x95], data  # Packet too large
    healthy_round_trip(broker)


def test_wildcard_in_a_published_topic_is_a_protocol_violation(broker):
    s = raw(broker)
    s.sendall(connect_packet(level=5))
    assert s.recv(64)[0] == 0x20
    body = utf8("a/+") + b"\x00" + b"x"  # topic, empty properties, payload
    s.sendall(bytes([0x30]) + remaining_length(len(body)) + body)
    data, closed = read_until_closed(s)
    assert closed
    assert disconnect_reasons(data) == [0x90], data  # Topic Name invalid
    healthy_round_trip(broker)


def test_second_connect_is_a_protocol_error(broker):
    s = raw(broker)
    s.sendall(connect_packet(level=4))
    assert s.recv(64)[:2] == b"\x20\x02"
    s.sendall(connect_packet(level=4))
    _, closed = read_until_closed(s)
    assert closed
    healthy_round_trip(broker)


def test_no_connect_within_the_timeout_is_dropped(broker_factory, tmp_path):
    cfg = tmp_path / "j.toml"
    cfg.write_text("[mqtt]\nconnect_timeout_ms = 500\n")
    b = broker_factory("--config", str(cfg))
    s = raw(b)
    start = time.monotonic()
    _, closed = read_until_closed(s, deadline=5)
    assert closed and time.monotonic() - start < 3


def test_exceeding_the_receive_maximum_disconnects_with_0x93(broker_factory, tmp_path):
    cfg = tmp_path / "j.toml"
    cfg.write_text("[mqtt]\nmax_inflight = 3\n")
    b = broker_factory("--config", str(cfg))
    s = raw(b)
    s.sendall(connect_packet(level=5))
    connack = s.recv(64)
    assert connack[0] == 0x20 and connack[3] == 0x00
    for packet_id in range(1, 5):  # QoS 2 publishes never released: all stay in flight
        body = utf8("rm/t") + struct.pack("!H", packet_id) + b"\x00" + b"x"
        s.sendall(bytes([0x34]) + remaining_length(len(body)) + body)
    data, closed = read_until_closed(s)
    assert closed
    assert disconnect_reasons(data) == [0x93], data.hex()  # Receive Maximum exceeded


def test_empty_client_id_with_persistent_session_gets_connack_0x02(broker):
    s = raw(broker)
    packet = bytearray(connect_packet(level=4, client_id=""))
    packet[packet.index(b"MQTT") + 5] = 0x00  # clean session off: an id is required
    s.sendall(bytes(packet))
    data, closed = read_until_closed(s)
    assert closed and data == b"\x20\x02\x00\x02", data.hex()


def test_the_disconnect_reason_survives_a_client_that_keeps_sending(broker_factory, tmp_path):
    """Closing a socket with unread input makes the kernel reset it, which would destroy the
    DISCONNECT 0x93 in flight; the broker drains input before it lets go of the socket."""
    cfg = tmp_path / "j.toml"
    cfg.write_text("[mqtt]\nmax_inflight = 3\n")
    b = broker_factory("--config", str(cfg))
    s = raw(b)
    s.sendall(connect_packet(level=5))
    assert s.recv(64)[3] == 0x00
    for packet_id in range(1, 5):
        body = utf8("rm/t") + struct.pack("!H", packet_id) + b"\x00" + b"x"
        s.sendall(bytes([0x34]) + remaining_length(len(body)) + body)
    time.sleep(0.3)  # the DISCONNECT is on its way; the client, unaware, goes on sending
    for packet_id in range(1, 5):
        s.sendall(b"\x62\x02" + struct.pack("!H", packet_id))  # PUBREL
    data, closed = read_until_closed(s)
    assert closed
    assert disconnect_reasons(data) == [0x93], data.hex()
