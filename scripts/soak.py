#!/usr/bin/env python3
"""Soak driver for scripts/soak.sh: load on all three protocols while clients and the broker die.

Runs one Junction process (restarted after every kill -9 on the same data dir) and, as threads of
this process, one publisher and one consumer for each of the nine (publisher protocol, consumer
protocol) pairs of AMQP 0-9-1 (pika), MQTT 3.1.1 (paho-mqtt) and STOMP 1.2 (stomp.py), each pair
on its own durable queue `soak-<publisher>-<consumer>`:

- publishers send persistent messages at a fixed rate, one at a time, and count a message as
  acknowledged only when the broker said it is stored: AMQP publisher confirm (delivery_mode 2),
  MQTT PUBACK (QoS 1 to `$queue/<queue>`, persistent session), STOMP RECEIPT
  (`persistent:true` SEND to `/amq/queue/<queue>`);
- consumers record every message before acknowledging it: AMQP basic.ack, STOMP ACK
  (`ack:client-individual`), MQTT PUBACK (QoS 1 subscription to `$queue/<queue>` in a persistent
  session, `clean_session=False`);
- every 20-60 s a random client is killed (its socket shut down under it, no protocol close) and
  comes back as a new connection; every --kill-every seconds the broker gets SIGKILL and is
  started again; clients reconnect with retries;
- the broker's VmRSS is sampled every --sample seconds.

Every message body carries its id (pair, publisher connection, sequence number). The bookkeeping
lives here, in the process that is never killed. At the end the publishers stop, the consumers
drain until every acknowledged id arrived (or --drain seconds pass), and the run is judged:

- lost: acknowledged, never received. Must be 0.
- duplicates: received more than once. At-least-once allows them, but only as redeliveries: a
  message delivered again must arrive on a later connection of its consumer (after a client kill
  or a broker restart) than its previous delivery; a second delivery on the same connection,
  a message on the wrong queue, an unknown id or a damaged body is a failure.
- memory: see MEMORY_RULE.

Writes a JSON result (--json), the markdown body of the report (--markdown) and the driver's log
(stderr). Exit status 0 when every check passed, 1 when one failed, 2 when the run could not be
carried out.
"""

import argparse
import array
import ctypes
import json
import logging
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pika
import pika.exceptions
import stomp

PROTOCOLS = ("amqp", "mqtt", "stomp")
PAIRS = [f"{p}-{c}" for p in PROTOCOLS for c in PROTOCOLS]
CLIENT_KILL_EVERY = (20, 60)      # seconds between two client kills, uniformly drawn
ACK_TIMEOUT = 10                  # seconds a publisher waits for a confirm / PUBACK / RECEIPT
CONNECT_TIMEOUT = 10
START_TIMEOUT = 120               # seconds for a (re)started broker to open its three ports
MEMORY_FACTOR = 1.5               # rule (1): across restarts
MEMORY_SLACK_MIB = 16             # allocator noise on a small process
MEMORY_WARMUP = 30                # seconds after a start before an incarnation counts as steady
MEMORY_CEILING = 2.0              # rule (2): within an incarnation, as a factor...
# ...or as an amount: the memtables of the two column families that churn (64 MiB write buffers)
# fill from empty in every incarnation, whatever its RSS 30 s after its start was. That figure
# varies: in a run on 2026-11-22 six of eight incarnations were at 139-158 MiB 10 s after their
# start (the jump sits in glibc's per-thread arenas, five of ~19 MiB each) and two at ~25 MiB;
# over their 240 s those two grew by ~75 MiB, the others by ~60 MiB after their jump.
MEMTABLE_GROWTH_MIB = 2 * 64
MEMORY_RULE = (
    f"memory is flat when (1) every broker incarnation's RSS at its last sample is at most "
    f"{MEMORY_FACTOR}x the first incarnation's RSS at the same age (its last sample when the later "
    f"one ran longer) + {MEMORY_SLACK_MIB} MiB, i.e. nothing grows with the store's history or the "
    f"number of restarts; and (2) no incarnation that ran at least {2 * MEMORY_WARMUP} s ever exceeds "
    f"{MEMORY_CEILING:g}x its RSS {MEMORY_WARMUP} s after its start or that RSS + {MEMTABLE_GROWTH_MIB} "
    f"MiB, whichever is more, i.e. growth under steady load levels off. Some growth within an "
    f"incarnation is expected: RocksDB's memtables (64 MiB write buffers for the two column families "
    f"that churn) fill for several minutes of steady load before they are flushed, and RSS then "
    f"stays level; where RSS is 30 s after a start varies between incarnations. The slope column is the least-squares fit "
    f"of each incarnation's samples after its first {MEMORY_WARMUP} s")

T0 = time.monotonic()


def now():
    """Seconds since the driver started."""
    return time.monotonic() - T0


def log(msg):
    print(f"[{now():7.1f}s] {msg}", file=sys.stderr, flush=True)


def quiet_libraries():
    # Every kill makes pika and stomp.py log tracebacks; the driver logs what matters itself.
    for name in ("pika", "stomp", "stomp.py"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.basicConfig(level=logging.CRITICAL)


def abort_socket(sock):
    """Ends a connection under its client's feet: no protocol close, the socket just goes."""
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# Bookkeeping


class Series:
    """The messages of one publisher connection, indexed by sequence number."""

    def __init__(self):
        self.acked = bytearray()           # 1 once confirmed
        self.received = bytearray()        # deliveries so far, capped at 255
        self.epoch = array.array("I")      # consumer connection of the last delivery
        self.acked_at = array.array("f")   # driver seconds of the confirm


class PairStats:
    def __init__(self):
        self.published = 0
        self.acked = 0
        self.nacked = 0
        self.deliveries = 0
        self.duplicates = 0
        self.same_connection_duplicates = 0
        self.duplicates_after_restart = 0  # the previous delivery was from an earlier broker process
        self.duplicates_flagged = 0        # duplicates marked redelivered (AMQP, STOMP)
        self.unflagged_after_client_kill = 0  # AMQP/STOMP duplicates within one broker process, not marked
        self.misrouted = 0
        self.unknown = 0
        self.corrupt = 0
        self.examples = []                 # a few failures, for the log


class Ledger:
    """What was published, confirmed and received, message by message. Thread-safe."""

    def __init__(self, size, incarnation_of):
        self.size = size
        self.incarnation_of = incarnation_of   # consumer connection -> broker incarnation
        self.lock = threading.Lock()
        self.series = {pair: [] for pair in PAIRS}
        self.stats = {pair: PairStats() for pair in PAIRS}

    def new_publisher_connection(self, pair):
        with self.lock:
            self.series[pair].append(Series())
            return len(self.series[pair]) - 1

    def body(self, pair, conn, seq):
        head = f"soak {pair} {conn} {seq} ".encode()
        return head + b"x" * max(0, self.size - len(head))

    def publishing(self, pair, conn):
        """Registers one more message of (pair, conn) and returns its sequence number."""
        with self.lock:
            s = self.series[pair][conn]
            s.acked.append(0)
            s.received.append(0)
            s.epoch.append(0)
            s.acked_at.append(0.0)
            self.stats[pair].published += 1
            return len(s.acked) - 1

    def confirmed(self, pair, conn, seq):
        with self.lock:
            s = self.series[pair][conn]
            s.acked[seq] = 1
            s.acked_at[seq] = now()
            self.stats[pair].acked += 1

    def nacked(self, pair):
        with self.lock:
            self.stats[pair].nacked += 1

    def delivered(self, queue_pair, body, epoch, redelivered=None):
        """Records one delivery to the consumer of queue_pair on its connection number epoch;
        redelivered is the delivery's flag (None: the protocol has none)."""
        if isinstance(body, str):
            body = body.encode()
        with self.lock:
            st = self.stats[queue_pair]
            st.deliveries += 1
            try:
                magic, pair, conn, seq, pad = body.decode().split(" ", 4)
                conn, seq = int(conn), int(seq)
                assert magic == "soak"
            except (ValueError, AssertionError, UnicodeDecodeError):
                st.unknown += 1
                self._example(st, f"unparsable body {body[:60]!r}")
                return
            if pair != queue_pair:
                st.misrouted += 1
                self._example(st, f"{pair}/{conn}/{seq} arrived on the queue of {queue_pair}")
                return
            if conn >= len(self.series[pair]) or seq >= len(self.series[pair][conn].acked):
                st.unknown += 1
                self._example(st, f"{pair}/{conn}/{seq} was never published")
                return
            if len(body) != max(self.size, len(f"soak {pair} {conn} {seq} ")) or pad.strip("x"):
                st.corrupt += 1
                self._example(st, f"{pair}/{conn}/{seq} body of {len(body)} bytes differs")
            s = self.series[pair][conn]
            if s.received[seq]:
                st.duplicates += 1
                st.duplicates_flagged += bool(redelivered)
                if s.epoch[seq] == epoch:
                    st.same_connection_duplicates += 1
                    self._example(st, f"{pair}/{conn}/{seq} delivered twice on connection {epoch}")
                elif self.incarnation_of(s.epoch[seq]) != self.incarnation_of(epoch):
                    st.duplicates_after_restart += 1
                elif redelivered is False:
                    st.unflagged_after_client_kill += 1
            s.received[seq] = min(255, s.received[seq] + 1)
            s.epoch[seq] = epoch

    @staticmethod
    def _example(st, text):
        if len(st.examples) < 20:
            st.examples.append(f"{now():.1f}s: {text}")
            log("CHECK FAILED: " + text)

    def missing(self):
        """Acknowledged ids not received yet, per pair."""
        with self.lock:
            out = {}
            for pair, conns in self.series.items():
                n = 0
                for s in conns:
                    n += sum(1 for a, r in zip(s.acked, s.received) if a and not r)
                out[pair] = n
            return out

    def summary(self):
        with self.lock:
            rows = {}
            lost_ids = []
            for pair in PAIRS:
                st = self.stats[pair]
                unique = lost = unacked_received = 0
                for conn, s in enumerate(self.series[pair]):
                    for seq, (a, r) in enumerate(zip(s.acked, s.received)):
                        if r:
                            unique += 1
                            if not a:
                                unacked_received += 1
                        elif a:
                            lost += 1
                            if len(lost_ids) < 200:
                                lost_ids.append((f"{pair}/{conn}/{seq}", round(s.acked_at[seq], 2)))
                row = dict(vars(st))
                row.update(received=unique, lost=lost, unacked_received=unacked_received)
                rows[pair] = row
            return rows, lost_ids


# ----------------------------------------------------------------------------------------------
# The broker


class Broker:
    """One Junction process at a time on one data dir; every (re)start is a new incarnation."""

    def __init__(self, binary, work, ports):
        self.binary, self.work, self.ports = binary, work, ports
        self.lock = threading.Lock()
        self.proc = None
        self.incarnations = []   # dicts: started, accepting_ms, samples [(age, rss_kib)], end

    def start(self):
        n = len(self.incarnations) + 1
        logf = open(os.path.join(self.work, f"broker-{n}.log"), "w")
        args = [self.binary, "--data-dir", os.path.join(self.work, "data"),
                "--amqp", f"127.0.0.1:{self.ports['amqp']}", "--mqtt", f"127.0.0.1:{self.ports['mqtt']}",
                "--stomp", f"127.0.0.1:{self.ports['stomp']}", "--http", "off"]
        started = now()
        with self.lock:
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=die_with_parent)
            inc = {"n": n, "pid": self.proc.pid, "started": round(started, 2), "samples": [], "end": None}
            self.incarnations.append(inc)
        logf.close()
        deadline = time.monotonic() + START_TIMEOUT
        for port in self.ports.values():
            while not port_open(port):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"broker exited with {self.proc.returncode} at start {n}; see broker-{n}.log")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker start {n}: port {port} not open after {START_TIMEOUT} s")
                time.sleep(0.02)
        inc["accepting_ms"] = round((now() - started) * 1000)
        self.sample()
        log(f"broker incarnation {n} (pid {self.proc.pid}) accepting after {inc['accepting_ms']} ms")

    def kill9(self):
        with self.lock:
            self.sample_locked()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.incarnations[-1]["end"] = round(now(), 2)
            self.incarnations[-1]["how"] = "kill -9"
            self.proc = None

    def stop(self):
        with self.lock:
            if self.proc is None:
                return
            self.sample_locked()
            self.proc.terminate()
            try:
                self.proc.wait(30)
                how = f"SIGTERM (exit {self.proc.returncode})"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                how = "SIGTERM, then SIGKILL after 30 s"
            self.incarnations[-1]["end"] = round(now(), 2)
            self.incarnations[-1]["how"] = how
            self.proc = None

    def sample(self):
        with self.lock:
            self.sample_locked()

    def sample_locked(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return
        inc = self.incarnations[-1]
        inc["samples"].append((round(now() - inc["started"], 1), rss))


def die_with_parent():
    """Runs in the broker's child process: SIGKILL it when the driver goes, however it goes."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def amqp_params(port):
    return pika.ConnectionParameters(
        host="127.0.0.1", port=port, heartbeat=30, socket_timeout=5, stack_timeout=CONNECT_TIMEOUT,
        blocked_connection_timeout=60, connection_attempts=1)


def open_amqp(ctx):
    """(connection, its socket for abrupt kills, a channel) to the broker's AMQP port."""
    conn = pika.BlockingConnection(amqp_params(ctx.ports["amqp"]))
    return conn, conn._impl._transport._sock, conn.channel()


def declare_queues(port, passive):
    """Declares the durable queues (passive: checks that they survived); returns the missing."""
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = pika.BlockingConnection(amqp_params(port))
            break
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    missing = []
    try:
        ch = conn.channel()
        for pair in PAIRS:
            name = f"soak-{pair}"
            try:
                ch.queue_declare(name, durable=True, passive=passive)
            except pika.exceptions.ChannelClosedByBroker:
                missing.append(name)
                ch = conn.channel()
                ch.queue_declare(name, durable=True)
    finally:
        conn.close()
    return missing


# ----------------------------------------------------------------------------------------------
# Clients: each a thread that connects, works until its connection fails or it is told to stop,
# and connects again (a new connection, or for a publisher also a new series of ids).


class Client(threading.Thread):
    kind = "?"
    proto = "?"

    def __init__(self, ctx, pair):
        super().__init__(daemon=True)
        self.ctx, self.pair, self.queue = ctx, pair, f"soak-{pair}"
        self.stopping = threading.Event()
        self.sock = None          # the current connection's socket, for kill()
        self.connections = 0
        self.kills = 0
        self.failures = 0
        self.last_error = ""

    @property
    def label(self):
        return f"{self.proto} {self.kind} of {self.queue}"

    def run(self):
        while not self.stopping.is_set():
            try:
                self.session()
            except Exception as e:  # every failure means: connect again
                if not self.stopping.is_set():
                    self.failures += 1
                    self.last_error = f"{type(e).__name__}: {e}"[:200]
            finally:
                self.sock = None
                try:
                    self.close()
                except Exception:
                    pass
            self.stopping.wait(0.5)

    def kill(self):
        if abort_socket(self.sock):
            self.kills += 1
            return True
        return False

    def stop(self):
        self.stopping.set()

    # Set by subclasses.
    def session(self):
        raise NotImplementedError

    def close(self):
        pass


class Publisher(Client):
    kind = "publisher"

    def __init__(self, ctx, pair):
        super().__init__(ctx, pair)
        self.next_at = time.monotonic()

    def due_in(self):
        """Seconds until the next message is due (the rate limit; no catching up after a gap)."""
        t = time.monotonic()
        if self.next_at < t - 1:
            self.next_at = t
        return self.next_at - t

    def sent_one(self):
        self.next_at += 1 / self.ctx.rate

    def session(self):
        self.conn_id = self.ctx.ledger.new_publisher_connection(self.pair)
        self.connect()
        self.connections += 1
        while not self.stopping.is_set():
            self.idle(self.due_in())
            if self.stopping.is_set():
                break
            seq = self.ctx.ledger.publishing(self.pair, self.conn_id)
            self.sent_one()
            if self.publish(self.ctx.ledger.body(self.pair, self.conn_id, seq)):
                self.ctx.ledger.confirmed(self.pair, self.conn_id, seq)
            else:
                self.ctx.ledger.nacked(self.pair)

    def idle(self, seconds):
        if seconds > 0:
            time.sleep(seconds)


class Consumer(Client):
    kind = "consumer"

    def session(self):
        self.epoch = self.ctx.next_epoch()
        self.connect()
        self.ctx.connected(self.epoch)
        self.connections += 1
        self.serve()

    def record(self, body, epoch, redelivered=None):
        self.ctx.ledger.delivered(self.pair, body, epoch, redelivered)


class AmqpPublisher(Publisher):
    proto = "amqp"

    def connect(self):
        self.conn, self.sock, self.ch = open_amqp(self.ctx)
        self.ch.confirm_delivery()

    def idle(self, seconds):
        # Lets pika answer heart-beats while waiting.
        self.conn.sleep(max(0.0, seconds))

    def publish(self, body):
        try:
            self.ch.basic_publish("", self.queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
            return True
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
            return False

    def close(self):
        if self.conn.is_open:
            self.conn.close()


class AmqpConsumer(Consumer):
    proto = "amqp"

    def connect(self):
        self.conn, self.sock, self.ch = open_amqp(self.ctx)
        self.ch.basic_qos(prefetch_count=self.ctx.prefetch)
        epoch = self.epoch

        def on_message(ch, method, _props, body):
            self.record(body, epoch, method.redelivered)
            ch.basic_ack(method.delivery_tag)

        self.ch.basic_consume(self.queue, on_message, auto_ack=False)

    def serve(self):
        while not self.stopping.is_set():
            self.conn.process_data_events(time_limit=0.5)

    def close(self):
        if self.conn.is_open:
            self.conn.close()


class MqttClient:
    """A paho client driven by the calling thread (no paho thread, no automatic reconnect)."""

    def mqtt_connect(self, client_id, on_message=None):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.connect_timeout = CONNECT_TIMEOUT
        state = {}
        c.on_connect = lambda _c, _u, _f, rc, _p: state.update(rc=rc)
        if on_message:
            c.on_message = on_message
        self.client = c
        c.connect("127.0.0.1", self.ctx.ports["mqtt"], keepalive=30)
        self.sock = c.socket()
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while "rc" not in state:
            self.mqtt_loop(0.1)
            if time.monotonic() > deadline:
                raise TimeoutError("no CONNACK")
        if state["rc"].is_failure:
            raise ConnectionError(f"CONNACK {state['rc']}")
        return c

    def mqtt_loop(self, timeout):
        rc = self.client.loop(timeout)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"MQTT connection lost ({mqtt.error_string(rc)})")

    def close(self):
        c = self.client
        if c.is_connected() and self.stopping.is_set():
            c.disconnect()
            c.loop(0.5)
        if c.socket() is not None:
            c.socket().close()


class MqttPublisher(MqttClient, Publisher):
    proto = "mqtt"

    def connect(self):
        self.mqtt_connect(f"soak-pub-{self.pair}")

    def idle(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.mqtt_loop(min(left, 0.5))

    def publish(self, body):
        info = self.client.publish(f"$queue/{self.queue}", body, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish: {mqtt.error_string(info.rc)}")
        deadline = time.monotonic() + ACK_TIMEOUT
        while not info.is_published():
            if time.monotonic() > deadline:
                raise TimeoutError("no PUBACK")
            self.mqtt_loop(0.05)
        return True


class MqttConsumer(MqttClient, Consumer):
    proto = "mqtt"

    def connect(self):
        epoch = self.epoch
        # paho sends the PUBACK once this returns.
        c = self.mqtt_connect(f"soak-sub-{self.pair}",
                              lambda _c, _u, msg: self.record(msg.payload, epoch))
        # A resumed session has the subscription already; subscribing again is harmless.
        c.subscribe(f"$queue/{self.queue}", qos=1)

    def serve(self):
        while not self.stopping.is_set():
            self.mqtt_loop(0.5)


class StompListener(stomp.ConnectionListener):
    def __init__(self):
        self.connected = threading.Event()
        self.lost = threading.Event()
        self.receipts = set()
        self.cond = threading.Condition()
        self.on_msg = None
        self.error = None

    def on_connected(self, frame):
        self.connected.set()

    def on_disconnected(self):
        self.lost.set()
        with self.cond:
            self.cond.notify_all()

    def on_error(self, frame):
        self.error = frame.body or frame.headers.get("message")

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_message(self, frame):
        if self.on_msg:
            self.on_msg(frame)


class StompClient:
    def stomp_connect(self):
        self.listener = StompListener()
        c = stomp.Connection12([("127.0.0.1", self.ctx.ports["stomp"])], reconnect_attempts_max=1,
                               timeout=CONNECT_TIMEOUT, try_loopback_connect=False, auto_decode=False)
        c.set_listener("soak", self.listener)
        self.stomp = c
        c.connect(wait=False)
        self.sock = c.transport.socket
        if not self.listener.connected.wait(CONNECT_TIMEOUT):
            raise TimeoutError(f"no CONNECTED ({self.listener.error})")
        return c

    def close(self):
        c = self.stomp
        if self.stopping.is_set() and not self.listener.lost.is_set():
            c.disconnect()
        c.transport.disconnect_socket()


class StompPublisher(StompClient, Publisher):
    proto = "stomp"

    def connect(self):
        self.stomp_connect()
        self.receipt_n = 0

    def publish(self, body):
        self.receipt_n += 1
        rid = f"r{self.receipt_n}"
        lst = self.listener
        self.stomp.send(f"/amq/queue/{self.queue}", body, headers={"persistent": "true", "receipt": rid})
        deadline = time.monotonic() + ACK_TIMEOUT
        with lst.cond:
            while rid not in lst.receipts:
                if lst.lost.is_set():
                    raise ConnectionError("STOMP connection lost")
                if time.monotonic() > deadline:
                    raise TimeoutError("no RECEIPT")
                lst.cond.wait(0.5)
            lst.receipts.discard(rid)
        return True

    def idle(self, seconds):
        if self.listener.lost.wait(max(0.0, seconds)):
            raise ConnectionError("STOMP connection lost")


class StompConsumer(StompClient, Consumer):
    proto = "stomp"

    def connect(self):
        c = self.stomp_connect()
        epoch = self.epoch

        def on_msg(frame):
            self.record(frame.body, epoch, frame.headers.get("redelivered") == "true")
            c.ack(frame.headers["ack"])

        self.listener.on_msg = on_msg
        c.subscribe(f"/amq/queue/{self.queue}", id="soak", ack="client-individual",
                    headers={"prefetch-count": str(self.ctx.prefetch)})

    def serve(self):
        while not self.stopping.is_set():
            if self.listener.lost.wait(0.5):
                raise ConnectionError(f"STOMP connection lost ({self.listener.error})")


CLASSES = {("amqp", "publisher"): AmqpPublisher, ("amqp", "consumer"): AmqpConsumer,
           ("mqtt", "publisher"): MqttPublisher, ("mqtt", "consumer"): MqttConsumer,
           ("stomp", "publisher"): StompPublisher, ("stomp", "consumer"): StompConsumer}


class Context:
    def __init__(self, args, ports):
        self.rate, self.prefetch, self.ports = args.rate, args.prefetch, ports
        self.ledger = Ledger(args.size, self.incarnation_of)
        self.broker_incarnation = lambda: 0
        self._epoch = 0
        self._epochs = {}          # consumer connection -> broker incarnation when it connected
        self._lock = threading.Lock()

    def next_epoch(self):
        with self._lock:
            self._epoch += 1
            self._epochs[self._epoch] = self.broker_incarnation()
            return self._epoch

    def connected(self, epoch):
        """The connection really reached a broker: the one running now."""
        with self._lock:
            self._epochs[epoch] = self.broker_incarnation()

    def incarnation_of(self, epoch):
        return self._epochs.get(epoch)


# ----------------------------------------------------------------------------------------------
# The run


class Run:
    def __init__(self, args):
        self.args = args
        self.ports = {"amqp": args.amqp_port, "mqtt": args.mqtt_port, "stomp": args.stomp_port}
        self.ctx = Context(args, self.ports)
        self.broker = Broker(args.junction, args.work, self.ports)
        self.ctx.broker_incarnation = lambda: len(self.broker.incarnations)
        self.publishers = [CLASSES[(p.split("-")[0], "publisher")](self.ctx, p) for p in PAIRS]
        self.consumers = [CLASSES[(p.split("-")[1], "consumer")](self.ctx, p) for p in PAIRS]
        self.events = []           # (seconds, text): kills and restarts
        self.missing_queues = []
        self.rng = random.Random(args.seed)

    def event(self, text):
        self.events.append((round(now(), 2), text))
        log(text)

    def sampler(self, stop):
        while not stop.wait(self.args.sample):
            self.broker.sample()

    def restart_broker(self):
        self.broker.kill9()
        self.event(f"broker kill -9 (incarnation {len(self.broker.incarnations)})")
        self.broker.start()
        missing = declare_queues(self.ports["amqp"], passive=True)
        if missing:
            self.missing_queues.append((len(self.broker.incarnations), missing))
            self.event(f"CHECK FAILED: queues missing after restart: {', '.join(missing)}")

    def kill_client(self):
        clients = self.publishers + self.consumers
        for c in self.rng.sample(clients, len(clients)):
            if c.kill():
                self.event(f"client kill: {c.label}")
                return

    def status(self):
        st = self.ctx.ledger.stats
        acked = sum(s.acked for s in st.values())
        got = sum(s.deliveries for s in st.values())
        samples = self.broker.incarnations[-1]["samples"]
        rss = samples[-1][1] // 1024 if samples else 0
        log(f"acknowledged {acked}, deliveries {got}, broker RSS {rss} MiB")

    def faults(self, duration):
        """Runs the load for duration seconds with client kills and broker kills."""
        start = now()
        next_client = start + self.rng.uniform(*CLIENT_KILL_EVERY)
        next_broker = start + self.args.kill_every
        next_status = start + 30
        while now() < start + duration:
            t = now()
            if t >= next_broker:
                self.restart_broker()
                next_broker += self.args.kill_every
            elif t >= next_client:
                self.kill_client()
                next_client = t + self.rng.uniform(*CLIENT_KILL_EVERY)
            elif t >= next_status:
                self.status()
                next_status += 30
            time.sleep(0.2)

    def drain(self):
        deadline = now() + self.args.drain
        while True:
            missing = sum(self.ctx.ledger.missing().values())
            if missing == 0 or now() >= deadline:
                return missing
            time.sleep(1)

    def main(self):
        self.broker.start()
        declare_queues(self.ports["amqp"], passive=False)
        stop_sampler = threading.Event()
        threading.Thread(target=self.sampler, args=(stop_sampler,), daemon=True).start()
        for c in self.consumers + self.publishers:
            c.start()
        load_start = now()
        try:
            self.faults(self.args.minutes * 60)
            load_seconds = now() - load_start
            self.event("publishers stop")
            for c in self.publishers:
                c.stop()
            for c in self.publishers:
                c.join(ACK_TIMEOUT + 5)
                if c.is_alive():
                    c.kill()
            drain_start = now()
            still = self.drain()
            self.event(f"drained after {now() - drain_start:.1f} s, {still} acknowledged ids not received")
            for c in self.consumers:
                c.stop()
            for c in self.consumers:
                c.join(10)
        finally:
            stop_sampler.set()
            self.broker.stop()
        return self.report(load_seconds, now() - drain_start)

    # ------------------------------------------------------------------------------------------

    def memory(self):
        """Per incarnation figures and the verdict of MEMORY_RULE."""
        incs = [inc for inc in self.broker.incarnations if inc["samples"]]
        rows, problems = [], []
        first = incs[0]["samples"]
        for inc in incs:
            s = inc["samples"]
            mib = [kib / 1024 for _, kib in s]
            age, end = s[-1][0], mib[-1]
            rows.append(dict(n=inc["n"], seconds=round(age), samples=len(s), start=mib[0], min=min(mib),
                             max=max(mib), end=end, slope=slope_mib_per_min(s), how=inc.get("how", "")))
            ref = at_age(first, age)
            limit = MEMORY_FACTOR * ref[1] / 1024 + MEMORY_SLACK_MIB
            if inc["n"] > 1 and end > limit:
                problems.append(f"incarnation {inc['n']} ended at {end:.0f} MiB (age {age:.0f} s), over "
                                f"{limit:.0f} MiB: the first had {ref[1] / 1024:.0f} MiB at age {ref[0]:.0f} s")
            if age >= 2 * MEMORY_WARMUP:
                warm = at_age(s, MEMORY_WARMUP)
                limit = max(MEMORY_CEILING * warm[1] / 1024, warm[1] / 1024 + MEMTABLE_GROWTH_MIB)
                top = max(mib[i] for i, x in enumerate(s) if x[0] >= warm[0])
                if top > limit:
                    problems.append(f"incarnation {inc['n']} grew from {warm[1] / 1024:.0f} MiB at "
                                    f"{warm[0]:.0f} s to {top:.0f} MiB (limit {limit:.0f} MiB)")
        return rows, problems

    def store_recovery(self):
        """The broker's own `store recovered` figures, from each restart's log."""
        out = []
        for inc in self.broker.incarnations[1:]:
            line = ""
            try:
                with open(os.path.join(self.args.work, f"broker-{inc['n']}.log")) as f:
                    line = next((l for l in f if "store recovered" in l), "")
            except OSError:
                pass
            fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
            out.append(dict(n=inc["n"], accepting_ms=inc.get("accepting_ms"),
                            messages=fields.get("messages", "?"), millis=fields.get("millis", "?")))
        return out

    def report(self, load_seconds, drain_seconds):
        rows, lost_ids = self.ctx.ledger.summary()
        mem_rows, mem_problems = self.memory()
        clients = self.publishers + self.consumers
        kills = {f"{c.proto} {c.kind}": 0 for c in clients}
        for c in clients:
            kills[f"{c.proto} {c.kind}"] += c.kills
        client_kills = sum(c.kills for c in clients)
        broker_kills = len(self.broker.incarnations) - 1
        total = {k: sum(r[k] for r in rows.values()) for k in next(iter(rows.values())) if k != "examples"}
        failures = []
        if total["lost"]:
            failures.append(f"{total['lost']} acknowledged messages lost")
        for key, what in (("same_connection_duplicates", "duplicates on the same consumer connection"),
                          ("misrouted", "messages on the wrong queue"), ("unknown", "unknown ids"),
                          ("corrupt", "damaged bodies")):
            if total[key]:
                failures.append(f"{total[key]} {what}")
        if self.missing_queues:
            failures.append(f"durable queues missing after a restart: {self.missing_queues}")
        failures += [f"memory: {p}" for p in mem_problems]
        if total["acked"] == 0:
            failures.append("nothing was acknowledged")
        result = dict(
            minutes=self.args.minutes, load_seconds=round(load_seconds, 1), drain_seconds=round(drain_seconds, 1),
            rate_per_publisher=self.args.rate, size=self.args.size, prefetch=self.args.prefetch,
            kill_every=self.args.kill_every, seed=self.args.seed, sample=self.args.sample,
            client_kills=client_kills, client_kills_by_kind=kills, broker_kills=broker_kills,
            pairs=rows, totals=total, lost_ids=lost_ids, events=self.events,
            restarts=self.store_recovery(), memory=mem_rows, memory_rule=MEMORY_RULE,
            memory_problems=mem_problems, failures=failures,
            client_failures={c.label: (c.failures, c.last_error) for c in clients},
            incarnations=self.broker.incarnations)
        for pair in PAIRS:
            for ex in rows[pair]["examples"]:
                log(f"{pair}: {ex}")
        if lost_ids:
            self.explain_lost(lost_ids)
        return result

    def explain_lost(self, lost_ids):
        log(f"LOST (acknowledged, never received), first {len(lost_ids)}:")
        for ident, t in lost_ids[:50]:
            before = [e for e in self.events if e[0] <= t]
            after = [e for e in self.events if e[0] > t]
            log(f"  {ident} confirmed at {t} s; last event before: {before[-1] if before else None}; "
                f"next event: {after[0] if after else None}")


def at_age(samples, age):
    """The sample of (age, rss) samples nearest to age (the last one when age is beyond them)."""
    best = samples[-1]
    if age >= best[0]:
        return best
    return min(samples, key=lambda x: abs(x[0] - age))


def slope_mib_per_min(samples):
    """Least-squares RSS growth after the warm-up, MiB per minute (None with under 3 samples)."""
    pts = [(a, kib / 1024) for a, kib in samples if a >= MEMORY_WARMUP]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx, my = sum(a for a, _ in pts) / n, sum(m for _, m in pts) / n
    var = sum((a - mx) ** 2 for a, _ in pts)
    return 60 * sum((a - mx) * (m - my) for a, m in pts) / var if var else None


def markdown(r):
    """The report's tables and verdicts (soak.sh adds the heading, the machine and the command)."""
    out = []
    t = r["totals"]
    ok = not r["failures"]
    kinds = ", ".join(f"{k} {v}" for k, v in r["client_kills_by_kind"].items() if v)
    out.append(f"**Verdict: {'PASS' if ok else 'FAIL'}**" + ("" if ok else ": " + "; ".join(r["failures"])))
    out.append("")
    out.append(f"- load: {r['load_seconds']:.0f} s, 9 publishers at {r['rate_per_publisher']:g} msg/s each, "
               f"{r['size']}-byte bodies, consumer prefetch {r['prefetch']}; drain afterwards: "
               f"{r['drain_seconds']:.0f} s")
    out.append(f"- faults: {r['broker_kills']} broker `kill -9` + restart (every {r['kill_every']:g} s), "
               f"{r['client_kills']} client kills ({kinds or 'none'})")
    out.append(f"- acknowledged {t['acked']:,} of {t['published']:,} published; "
               f"**lost {t['lost']}**; duplicates {t['duplicates']:,} "
               f"({100 * t['duplicates'] / max(1, t['deliveries']):.2f}% of {t['deliveries']:,} deliveries), "
               f"{t['same_connection_duplicates']} of them on the same consumer connection; "
               f"{t['unacked_received']:,} received without an acknowledgement (allowed)")
    out.append(f"- duplicates by cause: {t['duplicates_after_restart']:,} redelivered after a broker restart, "
               f"{t['duplicates'] - t['duplicates_after_restart'] - t['same_connection_duplicates']:,} after a "
               f"client kill; {t['duplicates_flagged']:,} carried the redelivered flag (AMQP `redelivered`, "
               f"STOMP `redelivered:true`; MQTT has none for this), "
               f"{t['unflagged_after_client_kill']} AMQP/STOMP redeliveries within one broker process did not")
    out.append("")
    out.append("| publisher -> consumer | published | acknowledged | received | lost | duplicates | "
               "received, not acknowledged |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for pair, row in list(r["pairs"].items()) + [("total", t)]:
        name = pair.replace("-", " -> ") if pair != "total" else "**total**"
        out.append(f"| {name} | {row['published']:,} | {row['acked']:,} | {row['received']:,} | {row['lost']} | "
                   f"{row['duplicates']:,} | {row['unacked_received']:,} |")
    out.append("")
    if r["restarts"]:
        out.append("Restarts (the broker's `store recovered` line; port accepting: from starting the "
                   "process until all three ports accept):")
        out.append("")
        out.append("| restart | messages recovered | store recovery | ports accepting |")
        out.append("|---:|---:|---:|---:|")
        for x in r["restarts"]:
            out.append(f"| {x['n'] - 1} | {x['messages']} | {x['millis']} ms | {x['accepting_ms']} ms |")
        out.append("")
    out.append(f"Broker resident memory (VmRSS, MiB) per incarnation, sampled every {r['sample']:g} s:")
    out.append("")
    out.append("| incarnation | ran | samples | start | min | max | end | slope (MiB/min) | ended by |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for m in r["memory"]:
        slope = "n/a" if m["slope"] is None else f"{m['slope']:+.1f}"
        out.append(f"| {m['n']} | {m['seconds']} s | {m['samples']} | {m['start']:.0f} | {m['min']:.0f} | "
                   f"{m['max']:.0f} | {m['end']:.0f} | {slope} | {m['how']} |")
    out.append("")
    verdict = "flat" if not r["memory_problems"] else "NOT flat: " + "; ".join(r["memory_problems"])
    out.append(f"Memory: **{verdict}**. Rule: {r['memory_rule']}.")
    out.append("")
    out.append("Checks: *lost* = acknowledged (publisher confirm, PUBACK, RECEIPT) but never received; "
               "must be 0. A duplicate is allowed (at-least-once) when it arrived on a later connection "
               "of its consumer than the previous delivery (a redelivery after a client kill or a broker "
               "restart); a second delivery on the same connection, a message on another pair's queue, "
               "an unknown id or a damaged body fails the run.")
    return "\n".join(out) + "\n"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--junction", required=True, help="the junction binary")
    p.add_argument("--work", required=True, help="work dir: data dir and broker logs")
    p.add_argument("--amqp-port", type=int, required=True)
    p.add_argument("--mqtt-port", type=int, required=True)
    p.add_argument("--stomp-port", type=int, required=True)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--kill-every", type=float, default=240, help="seconds between broker kill -9s")
    p.add_argument("--rate", type=float, default=50, help="messages per second per publisher")
    p.add_argument("--size", type=int, default=256, help="body bytes")
    p.add_argument("--prefetch", type=int, default=64)
    p.add_argument("--drain", type=float, default=60, help="seconds to wait for the consumers at the end")
    p.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", help="write the result here")
    p.add_argument("--markdown", help="write the report's body here")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    return args


def main():
    args = parse_args()
    quiet_libraries()
    # soak.sh stops the driver with SIGTERM: unwind, so that the broker is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log(f"soak: {args.minutes} min, broker kill -9 every {args.kill_every} s, {args.rate} msg/s per "
        f"publisher, seed {args.seed}, work dir {args.work}")
    run = Run(args)
    try:
        result = run.main()
    except Exception as e:
        log(f"the run could not be carried out: {type(e).__name__}: {e}")
        return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(result))
    for failure in result["failures"]:
        log(f"FAILED: {failure}")
    log("PASS" if not result["failures"] else "FAIL")
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
