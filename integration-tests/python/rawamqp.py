"""A minimal raw AMQP 0-9-1 client for negative tests.

Only what the malformed-input and heartbeat tests need: frame encoding and
decoding, the connection handshake (PLAIN guest/guest), channel.open, and
reading the server's connection.close with a deadline.  It never blocks
without a timeout.
"""
import socket
import struct
import time

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE


def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!B", len(b)) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!I", len(b)) + b


def table(d):
    """Encodes a field table of bools, ints, strings and nested dicts."""
    out = b""
    for key, value in d.items():
        out += shortstr(key)
        if isinstance(value, bool):
            out += b"t" + bytes([1 if value else 0])
        elif isinstance(value, int):
            out += b"I" + struct.pack("!i", value)
        elif isinstance(value, dict):
            out += b"F" + table(value)
        else:
            out += b"S" + longstr(value)
    return struct.pack("!I", len(out)) + out


# Like every real client: without authentication_failure_close RabbitMQ drops
# the TCP connection on a failed login instead of sending connection.close 403.
CLIENT_PROPERTIES = {
    "product": "junction-raw-test-client",
    "capabilities": {"authentication_failure_close": True, "consumer_cancel_notify": True},
}


def start_ok(user="guest", password="guest", properties=None):
    return method_frame(0, 10, 11, table(CLIENT_PROPERTIES if properties is None else properties)
                        + shortstr("PLAIN")
                        + longstr(b"\x00" + user.encode() + b"\x00" + password.encode())
                        + shortstr("en_US"))


def frame(ftype, channel, payload, end=FRAME_END):
    return struct.pack("!BHI", ftype, channel, len(payload)) + payload + bytes([end])


def method_frame(channel, class_id, method_id, args=b""):
    return frame(FRAME_METHOD, channel, struct.pack("!HH", class_id, method_id) + args)


def read_shortstr(buf, off):
    n = buf[off]
    return buf[off + 1:off + 1 + n].decode("utf-8", "replace"), off + 1 + n


class ConnectionClosed(ConnectionError):
    """The server closed the TCP connection (EOF)."""


class RawAMQP:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.frame_max = 0
        self.heartbeat = 0
        self.channel_max = 0

    # -- I/O ---------------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no data from server within the deadline")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout as exc:
                raise TimeoutError("no data from server within the deadline") from exc
            if not chunk:
                raise ConnectionClosed("server closed the connection")
            self.buf += chunk

    def read_exact(self, n, timeout=5.0):
        self._fill(n, time.monotonic() + timeout)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self, timeout=5.0):
        """Returns (type, channel, payload)."""
        deadline = time.monotonic() + timeout
        self._fill(7, deadline)
        ftype, channel, size = struct.unpack("!BHI", self.buf[:7])
        self._fill(7 + size + 1, deadline)
        payload = self.buf[7:7 + size]
        end = self.buf[7 + size]
        self.buf = self.buf[8 + size:]
        if end != FRAME_END:
            raise ValueError("server sent a bad frame end octet %#x" % end)
        return ftype, channel, payload

    def read_method(self, timeout=5.0, skip_heartbeats=True):
        """Returns (channel, class_id, method_id, args)."""
        deadline = time.monotonic() + timeout
        while True:
            ftype, channel, payload = self.read_frame(max(0.0, deadline - time.monotonic()))
            if ftype == FRAME_HEARTBEAT and skip_heartbeats:
                continue
            if ftype != FRAME_METHOD:
                raise AssertionError("expected a method frame, got type %d" % ftype)
            class_id, method_id = struct.unpack("!HH", payload[:4])
            return channel, class_id, method_id, payload[4:]

    def wait_eof(self, timeout=5.0):
        """True if the server closes the socket within timeout (data before EOF is discarded)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- protocol ----------------------------------------------------------
    def handshake(self, heartbeat=0, frame_max=None, user="guest", password="guest", vhost="/",
                  channel_max=None):
        self.send(PROTOCOL_HEADER)
        ch, cls, meth, _ = self.read_method()
        assert (ch, cls, meth) == (0, 10, 10), "expected connection.start"
        self.send(start_ok(user, password))
        ch, cls, meth, args = self.read_method()
        assert (cls, meth) == (10, 30), "expected connection.tune, got %d.%d" % (cls, meth)
        server_channel_max, server_frame_max, _server_hb = struct.unpack("!HIH", args[:8])
        self.channel_max = channel_max if channel_max is not None else server_channel_max
        self.frame_max = frame_max if frame_max is not None else server_frame_max
        self.heartbeat = heartbeat
        self.send(method_frame(0, 10, 31, struct.pack("!HIH", self.channel_max, self.frame_max, heartbeat)))
        self.send(method_frame(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00"))
        ch, cls, meth, _ = self.read_method()
        assert (cls, meth) == (10, 41), "expected connection.open-ok, got %d.%d" % (cls, meth)

    def open_channel(self, channel=1):
        self.send(method_frame(channel, 20, 10, shortstr("")))
        ch, cls, meth, _ = self.read_method()
        assert (ch, cls, meth) == (channel, 20, 11), "expected channel.open-ok"

    def expect_connection_close(self, timeout=5.0):
        """Reads until connection.close; returns (reply_code, reply_text, class_id, method_id).

        Frames before it (e.g. heartbeats, a channel.close) are skipped.  Raises
        ConnectionClosed if the server hangs up without sending connection.close.
        """
        deadline = time.monotonic() + timeout
        while True:
            ftype, channel, payload = self.read_frame(max(0.0, deadline - time.monotonic()))
            if ftype != FRAME_METHOD or len(payload) < 4:
                continue
            class_id, method_id = struct.unpack("!HH", payload[:4])
            if (class_id, method_id) == (10, 50):
                args = payload[4:]
                code = struct.unpack("!H", args[:2])[0]
                text, off = read_shortstr(args, 2)
                cls, meth = struct.unpack("!HH", args[off:off + 4])
                return code, text, cls, meth

    def send_close_ok(self):
        try:
            self.send(method_frame(0, 10, 51))
        except OSError:
            pass
