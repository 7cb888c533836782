"""Fixtures that start a Junction broker (or use an external AMQP broker).

Environment:
  JUNCTION_BIN   path of the junction binary; each test gets its own broker on
                 an ephemeral port with a temporary data directory.
  AMQP_TEST_URL  e.g. amqp://guest:guest@127.0.0.1:5672/%2F: run the suite
                 against an already running broker (a real RabbitMQ, to check
                 that the tests encode real RabbitMQ behaviour).  Tests marked
                 `junction_only` (kill/restart, extra flags, Junction-only
                 features) are skipped in that mode.
"""
import os
import re
import signal
import socket
import subprocess
import time
import uuid

import pika
import pytest

AMQP_TEST_URL = os.environ.get("AMQP_TEST_URL")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "junction_only: needs the Junction binary (kill/restart, extra flags or a "
        "Junction-only feature); skipped when AMQP_TEST_URL is set",
    )


def pytest_collection_modifyitems(config, items):
    if not AMQP_TEST_URL:
        return
    skip = pytest.mark.skip(reason="junction_only: not run against AMQP_TEST_URL")
    for item in items:
        if "junction_only" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def free_port():
    return free_ports(1)[0]


def free_ports(n):
    """n distinct free ports: the sockets stay bound until all are picked, so the kernel
    cannot hand out the same port twice."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class BrokerBase:
    """What every test sees: address, URL, connection helpers."""

    host = "127.0.0.1"
    port = 5672
    vhost = "/"
    user = "guest"
    password = "guest"
    data_dir = None
    is_junction = False

    def __init__(self, test_name):
        self._connections = []
        self._names = []
        self._test_name = re.sub(r"[^A-Za-z0-9_.-]", "_", test_name)[:60]

    @property
    def url(self):
        vhost = "%2F" if self.vhost == "/" else self.vhost
        return "amqp://%s:%s@%s:%d/%s" % (self.user, self.password, self.host, self.port, vhost)

    def params(self, **overrides):
        kw = dict(
            host=self.host,
            port=self.port,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.user, self.password),
            connection_attempts=1,
            socket_timeout=10,
            stack_timeout=15,
            blocked_connection_timeout=30,
            heartbeat=30,
        )
        kw.update(overrides)
        return pika.ConnectionParameters(**kw)

    def connect(self, **overrides):
        """A pika BlockingConnection, closed automatically at the end of the test."""
        conn = pika.BlockingConnection(self.params(**overrides))
        self._connections.append(conn)
        return conn

    def name(self, what="q"):
        """A unique queue/exchange name for this test (cleaned up on external brokers)."""
        n = "jt.%s.%s.%s" % (self._test_name, what, uuid.uuid4().hex[:8])
        self._names.append(n)
        return n

    def close_clients(self):
        for conn in self._connections:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass
        self._connections = []

    def cleanup(self):
        self.close_clients()


class ExternalBroker(BrokerBase):
    """An already running broker given by AMQP_TEST_URL (e.g. RabbitMQ)."""

    def __init__(self, url, test_name):
        super().__init__(test_name)
        p = pika.URLParameters(url)
        self.host, self.port, self.vhost = p.host, p.port, p.virtual_host
        self.user, self.password = p.credentials.username, p.credentials.password

    def _needs_junction(self):
        pytest.skip("needs a Junction broker process (not available with AMQP_TEST_URL)")

    kill9 = restart = stop = lambda self, *a, **k: self._needs_junction()

    def cleanup(self):
        self.close_clients()
        if not self._names:
            return
        try:
            conn = pika.BlockingConnection(self.params())
        except Exception:
            return
        try:
            for n in self._names:
                for op in ("queue_delete", "exchange_delete"):
                    ch = conn.channel()
                    try:
                        getattr(ch, op)(n)
                        ch.close()
                    except Exception:
                        pass
        finally:
            try:
                conn.close()
            except Exception:
                pass


class JunctionBroker(BrokerBase):
    """A junction process on an ephemeral port with its own data directory."""

    is_junction = True

    def __init__(self, binary, workdir, extra_args, test_name):
        super().__init__(test_name)
        self.binary = binary
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.data_dir = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "broker.log")
        self.extra_args = list(extra_args)
        self.port, self.mqtt_port, self.http_port, self.stomp_port = free_ports(4)
        self.proc = None
        self.starts = 0

    def command(self):
        return [
            self.binary,
            "--data-dir", self.data_dir,
            "--amqp", "%s:%d" % (self.host, self.port),
            "--mqtt", "%s:%d" % (self.host, self.mqtt_port),
            "--stomp", "%s:%d" % (self.host, self.stomp_port), "--http", "%s:%d" % (self.host, self.http_port),
            *self.extra_args,
        ]

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(("\n===== start #%d: %s\n" % (self.starts, " ".join(self.command()))).encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self._wait_ready(START_TIMEOUT)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError("junction exited with code %s during startup\n%s" % (rc, self.log_tail()))
            try:
                # Every listener, not just the first to come up.
                for port in (self.port, self.mqtt_port, self.stomp_port, self.http_port):
                    socket.create_connection((self.host, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait(10)
        raise RuntimeError("junction did not accept TCP connections on port %d within %.0f s\n%s"
                           % (self.port, timeout, self.log_tail()))

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL the broker and wait for it to die."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns the exit code."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with open(self.log_path, "ab") as log:
                log.write(b"\n===== did not stop within %.0f s of SIGTERM: SIGKILL\n" % timeout)
            self.proc.kill()
            self.proc.wait(10)
            return None

    def restart(self):
        """Start again on the same data dir and port (stops it first if it runs)."""
        self.close_clients()
        if self.running:
            self.stop()
        self.start()

    def log_tail(self, max_bytes=20000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "(no broker log)"
        return data[-max_bytes:].decode("utf-8", "replace")

    def cleanup(self):
        self.close_clients()
        if self.running:
            self.stop(timeout=5)


@pytest.fixture
def broker_factory(request, tmp_path):
    """broker_factory(*extra_flags) -> a started broker.

    Against AMQP_TEST_URL it returns the external broker (and skips the test
    if extra flags were asked for).
    """
    started = []

    def make(*extra_args):
        if AMQP_TEST_URL:
            if extra_args:
                pytest.skip("needs broker flags %s: Junction only" % (extra_args,))
            b = ExternalBroker(AMQP_TEST_URL, request.node.name)
            started.append(b)
            return b
        binary = os.environ.get("JUNCTION_BIN")
        if not binary:
            pytest.fail("set JUNCTION_BIN to the junction binary, or AMQP_TEST_URL to an external broker")
        b = JunctionBroker(binary, tmp_path / ("broker%d" % len(started)), extra_args, request.node.name)
        started.append(b)
        b.start()
        return b

    yield make

    failed = any(getattr(getattr(request.node, "rep_" + w, None), "failed", False)
                 for w in ("setup", "call"))
    for b in started:
        b.cleanup()
        if failed and isinstance(b, JunctionBroker):
            print("\n----- junction log (%s) -----\n%s" % (b.log_path, b.log_tail()))


@pytest.fixture
def broker(broker_factory):
    return broker_factory()
