//! The open connections of every protocol, as operators see them (management API, metrics):
//! who, from where, over what, how much traffic; and a way to close one.
//!
//! Traffic is counted by `Counted`, a wrapper around the connection's byte stream that every
//! adapter puts on before anything is read, so bytes are counted in one place. Message counts are
//! bumped by the adapters where a message is taken in or handed out.

use crate::permissions::Access;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Amqp,
    Mqtt,
    Stomp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Amqp, Protocol::Mqtt, Protocol::Stomp];

    pub fn key(self) -> &'static str {
        match self {
            Protocol::Amqp => "amqp",
            Protocol::Mqtt => "mqtt",
            Protocol::Stomp => "stomp",
        }
    }
}

/// How a client reached the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub peer: SocketAddr,
    pub tls: bool,
    /// Over WebSocket (MQTT at `/mqtt`, STOMP at `/ws`).
    pub websocket: bool,
    /// With certificate login on: the user the client's verified TLS certificate names.
    pub cert_user: Option<Arc<str>>,
}

impl Link {
    pub fn tcp(peer: SocketAddr) -> Link {
        Link { peer, tls: false, websocket: false, cert_user: None }
    }
}

/// Publish-to-deliver latency of every message handed to a client, process-wide (there is one
/// broker per process), for `/metrics`.
pub static DELIVERY_LATENCY: junction_storage::histogram::Histogram = junction_storage::histogram::Histogram::new();

/// Counters of one connection (and, summed, of every connection of a protocol).
#[derive(Debug, Default)]
pub struct Traffic {
    pub recv_bytes: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// Messages the client published.
    pub messages_in: AtomicU64,
    /// Messages handed to the client.
    pub messages_out: AtomicU64,
    /// The low 32 bits of both byte counters when `bytes_since_sampled` last read them,
    /// received in the high half. (One word here instead of a map of both totals per
    /// connection in the sampler: ~40 bytes less for each of 100,000 idle connections, and the
    /// counters still fit the same allocation.)
    sampled: AtomicU64,
}

impl Traffic {
    pub fn message_in(&self) {
        self.messages_in.fetch_add(1, Relaxed);
    }

    /// A message was handed to the client. For a delivery from a queue, its time since it
    /// arrived in the broker goes into `DELIVERY_LATENCY` (not for MQTT retained messages,
    /// whose age is not a latency).
    pub fn message_out(&self, arrived_at_ms: Option<u64>) {
        self.messages_out.fetch_add(1, Relaxed);
        if let Some(arrived) = arrived_at_ms {
            let waited = crate::message::now_ms().saturating_sub(arrived);
            DELIVERY_LATENCY.observe(std::time::Duration::from_millis(waited));
        }
    }


    /// Bytes (received, sent) since the previous call: for the management rates' sampler, its
    /// one caller (a second caller would take the first one's bytes). Exact while a connection
    /// moves less than 4 GiB each way between two calls (they are a second apart).
    pub fn bytes_since_sampled(&self) -> (u64, u64) {
        let (recv, sent) = (self.recv_bytes.load(Relaxed) as u32, self.sent_bytes.load(Relaxed) as u32);
        let before = self.sampled.swap(u64::from(recv) << 32 | u64::from(sent), Relaxed);
        let since = |now: u32, then: u64| u64::from(now.wrapping_sub(then as u32));
        (since(recv, before >> 32), since(sent, before))
    }

    /// (received bytes, sent bytes, messages in, messages out).
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            recv_bytes: self.recv_bytes.load(Relaxed),
            sent_bytes: self.sent_bytes.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    pub recv_bytes: u64,
    pub sent_bytes: u64,
    pub messages_in: u64,
    pub messages_out: u64,
}

impl std::ops::AddAssign for TrafficSnapshot {
    fn add_assign(&mut self, o: TrafficSnapshot) {
        self.recv_bytes += o.recv_bytes;
        self.sent_bytes += o.sent_bytes;
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
    }
}

/// What an adapter tells the registry about a connection once its client has logged in.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub protocol: Protocol,
    /// Shown to operators: "AMQP 0-9-1", "MQTT 5.0", "STOMP 1.2".
    pub protocol_version: &'static str,
    pub user: Arc<str>,
    pub vhost: Arc<str>,
    /// MQTT client id, AMQP `connection_name` client property, STOMP `client-id` header.
    /// Shared: an MQTT connection's state and its client-id registry hold the same one.
    pub client_id: Arc<str>,
    pub link: Link,
}

impl ConnectionInfo {
    /// A connection of the user `access` is of, in its vhost (names shared with the grant, not
    /// copied: a fleet of idle connections of one user costs no string per connection).
    pub fn new(protocol: Protocol, protocol_version: &'static str, access: &Access, client_id: Arc<str>, link: Link) -> ConnectionInfo {
        let (user, vhost) = access.names();
        ConnectionInfo { protocol, protocol_version, user, vhost, client_id, link }
    }
}

/// One open connection.
#[derive(Debug)]
pub struct ConnectionEntry {
    pub id: u64,
    pub info: ConnectionInfo,
    pub connected_at_ms: u64,
    pub traffic: Arc<Traffic>,
    /// Numbers of the AMQP channels open (empty for MQTT and STOMP). A boxed slice, not a
    /// `Vec`: every connection has one, and this entry stays within a smaller allocation.
    channels: Mutex<Box<[u16]>>,
    /// Why the connection was asked to close, once it was, and the connection's waker.
    /// (Neither a `watch` channel nor a `Notify`: every connection has one, and a waiter on
    /// those is a future of 64 bytes or more kept in the connection's task while it waits.)
    close: Mutex<CloseRequest>,
}

#[derive(Debug, Default)]
struct CloseRequest {
    reason: Option<CloseReason>,
    /// The connection, while it waits (one waiter: the connection's own task).
    waiter: Option<std::task::Waker>,
}

/// Why a connection is asked to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// An operator (or the broker, for a deleted vhost) closes it, telling the client this.
    Requested(Box<str>),
    /// Another connection took its identity over (an MQTT client id).
    TakenOver,
    /// The broker is shutting down.
    ShuttingDown,
}

impl CloseReason {
    /// What the client is told.
    pub fn text(&self) -> &str {
        match self {
            CloseReason::Requested(text) => text,
            CloseReason::TakenOver => "taken over by another connection",
            CloseReason::ShuttingDown => "server shutting down",
        }
    }
}

impl ConnectionEntry {
    /// The name operators use for it, as RabbitMQ shows connections: `peer -> id`.
    pub fn name(&self) -> String {
        format!("{} -> {}#{}", self.info.link.peer, self.info.protocol.key(), self.id)
    }

    /// Records the connection's open AMQP channels (called when one opens or closes).
    pub fn set_channels(&self, mut open: Vec<u16>) {
        open.sort_unstable();
        *self.channels.lock() = open.into_boxed_slice();
    }

    pub fn channels(&self) -> Vec<u16> {
        self.channels.lock().to_vec()
    }

    /// Asks the connection to close, telling its client `reason`.
    pub fn request_close(&self, reason: &str) {
        self.ask_to_close(CloseReason::Requested(reason.into()));
    }

    /// Asks the connection to close; a connection asked twice leaves for the first reason.
    pub fn ask_to_close(&self, reason: CloseReason) {
        let waiter = {
            let mut close = self.close.lock();
            close.reason.get_or_insert(reason);
            close.waiter.take()
        };
        if let Some(waker) = waiter {
            waker.wake();
        }
    }
}

#[derive(Default)]
pub struct Registry {
    open: Mutex<HashMap<u64, Arc<ConnectionEntry>>>,
    /// Traffic of closed connections, per protocol, so that totals never go down.
    closed: Mutex<HashMap<Protocol, TrafficSnapshot>>,
}

/// Keeps a connection listed until dropped; says when an operator wants it closed.
pub struct Registration {
    registry: Arc<Registry>,
    pub entry: Arc<ConnectionEntry>,
}

impl Registration {
    /// Resolves with the reason once an operator asks for the connection to close (pending for
    /// ever otherwise; use in a `select!`).
    pub async fn close_requested(&mut self) -> String {
        std::future::poll_fn(|cx| self.poll_close_requested(cx)).await.text().to_string()
    }

    /// `close_requested` for a hand-written poll loop: the reason, or Pending with `cx` woken
    /// when a request comes.
    pub fn poll_close_requested(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<CloseReason> {
        let mut close = self.entry.close.lock();
        if let Some(reason) = &close.reason {
            return std::task::Poll::Ready(reason.clone());
        }
        match &close.waiter {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => close.waiter = Some(cx.waker().clone()),
        }
        std::task::Poll::Pending
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Both locks at once (closed, then open, as `totals` takes them): a total read in
        // between would go down, which Prometheus takes for a counter reset.
        let mut closed = self.registry.closed.lock();
        self.registry.open.lock().remove(&self.entry.id);
        *closed.entry(self.entry.info.protocol).or_default() += self.entry.traffic.snapshot();
    }
}

impl Registry {
    pub fn register(self: &Arc<Self>, id: u64, info: ConnectionInfo, traffic: Arc<Traffic>) -> Registration {
        let entry = Arc::new(ConnectionEntry {
            id,
            info,
            connected_at_ms: crate::message::now_ms(),
            traffic,
            channels: Mutex::default(),
            close: Mutex::default(),
        });
        self.open.lock().insert(id, entry.clone());
        Registration { registry: self.clone(), entry }
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<Arc<ConnectionEntry>> {
        let mut all: Vec<_> = self.open.lock().values().cloned().collect();
        all.sort_by_key(|e| e.id);
        all
    }

    pub fn find(&self, name: &str) -> Option<Arc<ConnectionEntry>> {
        self.open.lock().values().find(|e| e.name() == name).cloned()
    }

    /// Traffic of every connection of `protocol` since the broker started, open or closed.
    pub fn totals(&self, protocol: Protocol) -> TrafficSnapshot {
        let closed = self.closed.lock();
        let mut total = closed.get(&protocol).copied().unwrap_or_default();
        for e in self.open.lock().values().filter(|e| e.info.protocol == protocol) {
            total += e.traffic.snapshot();
        }
        total
    }

    pub fn open_count(&self, protocol: Protocol) -> usize {
        self.open.lock().values().filter(|e| e.info.protocol == protocol).count()
    }
}

/// A connection's transport as its adapter holds it: how the client came, and the counters its
/// `Counted` stream feeds.
#[derive(Debug, Clone)]
pub struct Transport {
    pub link: Link,
    pub traffic: Arc<Traffic>,
}

/// A byte stream whose reads and writes are counted into a `Traffic`.
pub struct Counted<S> {
    inner: S,
    traffic: Arc<Traffic>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> (Counted<S>, Arc<Traffic>) {
        let traffic = Arc::new(Traffic::default());
        (Counted { inner, traffic: traffic.clone() }, traffic)
    }

    /// Starts counting a new connection's stream.
    pub fn attach(inner: S, link: Link) -> (Counted<S>, Transport) {
        let (counted, traffic) = Counted::new(inner);
        (counted, Transport { link, traffic })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.traffic.recv_bytes.fetch_add(read as u64, Relaxed);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.traffic.sent_bytes.fetch_add(n as u64, Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            self.traffic.sent_bytes.fetch_add(n as u64, Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn info(protocol: Protocol) -> ConnectionInfo {
        ConnectionInfo {
            protocol,
            protocol_version: "x",
            user: "u".into(),
            vhost: "/".into(),
            client_id: "c".into(),
            link: Link::tcp("127.0.0.1:5000".parse().unwrap()),
        }
    }

    #[tokio::test]
    async fn counted_streams_count_both_ways_and_totals_outlive_connections() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut a, traffic) = Counted::new(a);
        a.write_all(b"hello").await.unwrap();
        b.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        a.read_exact(&mut buf).await.unwrap();
        traffic.message_in();
        let registry = Arc::new(Registry::default());
        let reg = registry.register(7, info(Protocol::Mqtt), traffic);
        assert_eq!(registry.open_count(Protocol::Mqtt), 1);
        assert!(registry.find(&reg.entry.name()).is_some());
        drop(reg);
        assert_eq!(registry.open_count(Protocol::Mqtt), 0);
        let t = registry.totals(Protocol::Mqtt);
        assert_eq!((t.sent_bytes, t.recv_bytes, t.messages_in), (5, 3, 1));
        assert_eq!(registry.totals(Protocol::Amqp), TrafficSnapshot::default());
    }

    #[test]
    fn bytes_since_sampled_counts_from_the_previous_call_across_32_bit_wraps() {
        let traffic = Traffic::default();
        traffic.recv_bytes.store(5, Relaxed);
        traffic.sent_bytes.store(3, Relaxed);
        assert_eq!(traffic.bytes_since_sampled(), (5, 3));
        assert_eq!(traffic.bytes_since_sampled(), (0, 0));
        traffic.recv_bytes.store(u64::from(u32::MAX) - 1, Relaxed);
        assert_eq!(traffic.bytes_since_sampled(), (u64::from(u32::MAX) - 6, 0));
        traffic.recv_bytes.store(u64::from(u32::MAX) + 10, Relaxed);
        traffic.sent_bytes.store(3 + (1 << 31), Relaxed);
        assert_eq!(traffic.bytes_since_sampled(), (11, 1 << 31));
    }

    #[tokio::test]
    async fn a_close_request_reaches_the_connection() {
        let registry = Arc::new(Registry::default());
        let mut reg = registry.register(1, info(Protocol::Amqp), Arc::default());
        let entry = registry.list()[0].clone();
        entry.request_close("Closed via management API");
        let reason = tokio::time::timeout(std::time::Duration::from_secs(1), reg.close_requested()).await.unwrap();
        assert_eq!(reason, "Closed via management API");
    }

    #[tokio::test]
    async fn a_close_request_wakes_a_connection_already_waiting() {
        let registry = Arc::new(Registry::default());
        let mut reg = registry.register(1, info(Protocol::Mqtt), Arc::default());
        let waiting = tokio::spawn(async move { reg.close_requested().await });
        tokio::task::yield_now().await; // the connection now waits
        assert!(!waiting.is_finished());
        registry.list()[0].request_close("maintenance");
        let reason = tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await.unwrap().unwrap();
        assert_eq!(reason, "maintenance");
    }
}
