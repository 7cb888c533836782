//! One STOMP connection: CONNECT, then a loop over client frames, queue deliveries, receipts
//! and heart-beats; ERROR (then close) for anything the protocol refuses.

use crate::codec::{CodecError, Inbound, StompCodec};
use crate::connect::{self, Opened};
use crate::frame::{Frame, Version};
use crate::send::{PendingReceipt, Transaction};
use crate::subscribe::{Subscription, Unacked};
use crate::Stomp;
use bytes::{BufMut, BytesMut};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use junction_core::{ChannelCredit, CoreError};
use junction_core::net::{Duplex, ReadAhead};
use std::collections::{BTreeMap, HashMap};
use junction_core::registry::{Counted, Link};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

/// Why a frame was refused: the ERROR frame's `message` header and body.
#[derive(Debug, Clone)]
pub struct StompError {
    pub message: String,
    pub detail: String,
    pub headers: Vec<(String, String)>,
}

impl StompError {
    pub fn new(message: &str, detail: &str) -> StompError {
        StompError { message: message.to_string(), detail: detail.to_string(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> StompError {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn into_frame(self, receipt: Option<&str>) -> Frame {
        let mut f = Frame::new("ERROR").with("message", self.message).with("content-type", "text/plain");
        if let Some(r) = receipt {
            f = f.with("receipt-id", r);
        }
        f.headers.extend(self.headers);
        f.with_body(self.detail.into_bytes())
    }
}

impl From<CoreError> for StompError {
    fn from(e: CoreError) -> StompError {
        use junction_core::ErrorKind as K;
        let message = match e.kind {
            K::NotFound => "not_found",
            K::ResourceLocked => "resource_locked",
            K::PreconditionFailed => "precondition_failed",
            K::AccessRefused | K::NotAllowed => "access_refused",
            K::InvalidArgument => "invalid_argument",
            K::Internal => "internal_error",
        };
        StompError::new(message, &e.message)
    }
}

impl From<CodecError> for StompError {
    fn from(e: CodecError) -> StompError {
        match e {
            CodecError::TooLarge(what) => StompError::new("Frame too large", &what),
            other => StompError::new("Invalid frame", &other.to_string()),
        }
    }
}

pub type FrameResult = Result<(), StompError>;

/// A connection's state once CONNECT succeeded.
pub struct Conn {
    pub session: Opened,
    pub connection_id: u64,
    /// Encodes server frames with the negotiated version's escaping.
    encoder: StompCodec,
    pub out: BytesMut,
    pub subscriptions: HashMap<String, Subscription>,
    /// Consumer cookie -> subscription id.
    pub by_cookie: HashMap<u64, String>,
    pub next_cookie: u64,
    /// Delivered and not yet acknowledged, by the ack id (our delivery tag).
    pub unacked: BTreeMap<u64, Unacked>,
    pub next_tag: u64,
    pub transactions: HashMap<String, Transaction>,
    pub receipts: FuturesOrdered<PendingReceipt>,
    pub events_tx: junction_core::EventSender,
    pub credit: Arc<ChannelCredit>,
    /// Set after ERROR or DISCONNECT: flush and close.
    pub closing: bool,
    /// Set once the connection has sent a message: resource alarms stop reading from it.
    pub has_published: bool,
}

pub async fn run<S>(stomp: Arc<Stomp>, stream: S, link: Link, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = link.peer;
    let (stream, transport) = Counted::attach(stream, link);
    let (rd, mut wr) = tokio::io::split(stream);
    let mut reader = FramedRead::new(rd, StompCodec::new(stomp.config.limits.clone()));
    let first = tokio::time::timeout(stomp.config.connect_timeout, first_frame(&mut reader)).await;
    let opened = match first {
        Ok(Ok(frame)) => connect::open(&stomp, &frame, &transport).await.map_err(|e| (e, frame.header("receipt").map(str::to_string))),
        Ok(Err(Some(e))) => Err((e, None)),
        Ok(Err(None)) | Err(_) => return,
    };
    let session = match opened {
        Ok(session) => session,
        Err((error, receipt)) => {
            let mut out = BytesMut::new();
            reader.decoder().encode_frame(&error.into_frame(receipt.as_deref()), &mut out);
            let _ = junction_core::net::write_all(&mut wr, &out).await;
            let _ = wr.shutdown().await;
            junction_core::net::drain_until_closed(reader.into_inner()).await;
            return;
        }
    };
    reader.decoder_mut().set_version(session.version);
    let (events_tx, mut events) = junction_core::event_channel();
    let mut conn = Conn::new(&stomp, session, events_tx);
    tracing::debug!(%peer, user = %conn.session.user.name, version = conn.session.version.as_str(), "STOMP connection open");
    let connected = conn.session.connected.clone();
    conn.send(&connected);
    let mut alarm = stomp.broker.resources().alarm();
    conn.serve(&mut reader, &mut wr, &mut events, &mut shutdown, &mut alarm).await;
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
    conn.teardown(&mut events);
    junction_core::net::drain_until_closed(reader.into_inner()).await;
}

/// The first frame, heart-beats skipped; Err(Some) for a malformed one, Err(None) at EOF.
async fn first_frame<R: AsyncRead + Unpin>(reader: &mut FramedRead<R, StompCodec>) -> Result<Frame, Option<StompError>> {
    loop {
        match reader.next().await {
            Some(Ok(Inbound::Frame(f))) => return Ok(f),
            Some(Ok(Inbound::HeartBeat)) => continue,
            Some(Err(e)) => return Err(Some(e.into())),
            None => return Err(None),
        }
    }
}

impl Conn {
    fn new(stomp: &Stomp, session: Opened, events_tx: junction_core::EventSender) -> Conn {
        let mut encoder = StompCodec::new(stomp.config.limits.clone());
        encoder.set_version(session.version);
        let connection_id = stomp.broker.next_connection_id();
        Conn {
            session,
            connection_id,
            encoder,
            out: BytesMut::with_capacity(16 * 1024),
            subscriptions: HashMap::new(),
            by_cookie: HashMap::new(),
            next_cookie: 1,
            unacked: BTreeMap::new(),
            next_tag: 1,
            transactions: HashMap::new(),
            receipts: FuturesOrdered::new(),
            events_tx,
            credit: Arc::new(ChannelCredit::default()),
            closing: false,
            has_published: false,
        }
    }

    pub fn send(&mut self, frame: &Frame) {
        self.encoder.encode_frame(frame, &mut self.out);
    }

    pub fn version(&self) -> Version {
        self.session.version
    }

    /// Sends ERROR and closes after it.
    fn fail(&mut self, error: StompError, receipt: Option<&str>) {
        tracing::debug!(user = %self.session.user.name, message = %error.message, detail = %error.detail, "STOMP ERROR");
        let frame = error.into_frame(receipt);
        self.send(&frame);
        self.closing = true;
    }

    async fn serve<R, W>(
        &mut self,
        reader: &mut FramedRead<R, StompCodec>,
        wr: &mut W,
        events: &mut junction_core::EventReceiver,
        shutdown: &mut watch::Receiver<bool>,
        alarm: &mut watch::Receiver<bool>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (send_every, expect_every) = (self.session.send_every, self.session.expect_every);
        let (mut last_read, mut last_write) = (Instant::now(), Instant::now());
        // Frames read while a write waited, handled before the reader's next.
        let mut read_ahead = ReadAhead::new(Inbound::body_len, |e| matches!(e, CodecError::Io(_)));
        loop {
            if !self.out.is_empty() {
                let io = &mut Duplex { writer: &mut *wr, reader: &mut *reader };
                if read_ahead.write(io, &self.out, !self.blocked(alarm)).await.is_err() {
                    // What the client sent before it went still counts (its last ACKs above
                    // all); replies go nowhere.
                    while !self.closing {
                        let Some(item) = read_ahead.pop() else { break };
                        if !self.on_read(Some(item)) {
                            break;
                        }
                    }
                    return;
                }
                self.out.clear();
                last_write = Instant::now();
            }
            if self.closing {
                return;
            }
            let blocked = self.blocked(alarm);
            // A client gets twice its promised interval before it counts as gone (not while we
            // are the ones not reading).
            let read_deadline = expect_every.filter(|_| !blocked).map(|d| last_read + d * 2);
            let beat_at = send_every.map(|d| last_write + d);
            tokio::select! {
                item = read_ahead.next(reader), if !blocked => {
                    last_read = Instant::now();
                    if !self.on_read(item) {
                        return;
                    }
                }
                Some(event) = events.recv() => {
                    self.on_event(event);
                    while self.out.len() < junction_core::net::WRITE_BATCH_BYTES {
                        let Some(event) = events.try_recv() else { break };
                        self.on_event(event);
                    }
                }
                Some(done) = self.receipts.next(), if !self.receipts.is_empty() => self.on_receipt(done),
                _ = junction_core::net::sleep_until(beat_at) => self.out.put_u8(b'\n'),
                _ = junction_core::net::sleep_until(read_deadline) => {
                    tracing::debug!(user = %self.session.user.name, "STOMP heart-beat timeout");
                    return;
                }
                _ = shutdown.changed() => self.fail(StompError::new("Server shutting down", "The broker is stopping."), None),
                reason = self.session.permit.registration.close_requested() => {
                    self.fail(StompError::new("Connection closed", &reason), None)
                }
                Ok(()) = alarm.changed() => last_read = Instant::now(),
            }
        }
    }

    /// A memory or disk alarm stops reading from publishers (TCP back-pressure), as for AMQP;
    /// connections that only consume keep going so that queues drain.
    fn blocked(&self, alarm: &watch::Receiver<bool>) -> bool {
        self.has_published && *alarm.borrow()
    }

    /// What the reader gave; false at the end of the client's input.
    fn on_read(&mut self, item: Option<Result<Inbound, CodecError>>) -> bool {
        match item {
            Some(Ok(Inbound::Frame(frame))) => self.on_frame(frame),
            Some(Ok(Inbound::HeartBeat)) => {}
            Some(Err(e)) => self.fail(e.into(), None),
            None => return false,
        }
        true
    }

    fn on_frame(&mut self, frame: Frame) {
        let receipt = frame.header("receipt").map(str::to_string);
        let result = match frame.command.as_str() {
            "SEND" => self.on_send(&frame),
            "SUBSCRIBE" => self.on_subscribe(&frame),
            "UNSUBSCRIBE" => self.on_unsubscribe(&frame),
            "ACK" => self.on_ack(&frame, true),
            "NACK" if self.version() >= Version::V11 => self.on_ack(&frame, false),
            "BEGIN" => self.on_begin(&frame),
            "COMMIT" => self.on_commit(&frame),
            "ABORT" => self.on_abort(&frame),
            "DISCONNECT" => self.on_disconnect(&frame),
            "CONNECT" | "STOMP" => Err(StompError::new("Already connected", "CONNECT may be sent only once")),
            other => Err(StompError::new("Bad command", &format!("Could not interpret command {other}"))),
        };
        if let Err(e) = result {
            self.fail(e, receipt.as_deref());
        }
    }

    /// Cancels every consumer, hands unacknowledged and undelivered messages back, and removes
    /// the connection's private queues.
    fn teardown(&mut self, events: &mut junction_core::EventReceiver) {
        for (_, sub) in self.subscriptions.drain() {
            sub.queue.cancel(sub.consumer);
        }
        junction_core::queue::return_unsent(events);
        for (_, u) in std::mem::take(&mut self.unacked) {
            u.queue.reject(&[u.seq], true);
        }
        self.session.vhost.connection_closed(self.connection_id);
    }
}

/// A header the frame must have.
pub fn required<'a>(frame: &'a Frame, name: &str) -> Result<&'a str, StompError> {
    frame.header(name).ok_or_else(|| {
        StompError::new(&format!("Missing {name} header"), &format!("{} frames need a '{name}' header", frame.command))
    })
}
