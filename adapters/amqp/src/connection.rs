//! One AMQP connection after negotiation: reads frames, routes them to channels, writes
//! deliveries and confirms, keeps heartbeats, honours resource alarms and shutdown.

use crate::channel::{Channel, Outcome};
use crate::codec::{Frame, FrameCodec, FrameError};
use crate::convert::short;
use crate::error::{AmqpError, CHANNEL_ERROR, COMMAND_INVALID, CONNECTION_FORCED, NOT_ALLOWED, UNEXPECTED_FRAME};
use crate::handshake::Negotiated;
use crate::session::Session;
use amq_protocol::protocol::{channel, connection, AMQPClass};
use futures::{FutureExt, StreamExt};
use junction_core::ConsumerEvent;
use junction_core::net::{Duplex, ReadAhead};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

/// How long to wait for close-ok after sending connection.close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct Connection<R, W> {
    reader: FramedRead<R, FrameCodec>,
    writer: W,
    session: Session,
    channels: HashMap<u16, Channel>,
    /// Channels opened so far: makes each channel's delivery cookie unique.
    channels_opened: u64,
    channel_max: u16,
    heartbeat: Option<Duration>,
    events: junction_core::EventReceiver,
    /// Frames read while a write waited (see `flush`), handled before the reader's next.
    read_ahead: ReadAhead<Frame, FrameError>,
    last_read: Instant,
    last_write: Instant,
    blocked: bool,
}

/// How the main loop ended.
enum End {
    /// The client closed cleanly or hung up.
    Gone,
    /// Send connection.close with this error, wait briefly for close-ok.
    Error(AmqpError),
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Connection<R, W> {
    pub fn new(
        reader: FramedRead<R, FrameCodec>,
        writer: W,
        negotiated: Negotiated,
        broker: std::sync::Arc<junction_core::Broker>,
        connection_id: u64,
        max_message_size: u64,
    ) -> Self {
        let (tx, rx) = junction_core::event_channel();
        let session = Session {
            connection_id,
            broker,
            vhost: negotiated.vhost,
            user: negotiated.user,
            access: negotiated.access,
            permit: negotiated.permit,
            frame_max: negotiated.frame_max,
            capabilities: negotiated.capabilities,
            max_message_size,
            out: bytes::BytesMut::with_capacity(16 * 1024),
            events: tx,
            confirms: Default::default(),
            has_published: false,
        };
        let heartbeat = (negotiated.heartbeat > 0).then(|| Duration::from_secs(negotiated.heartbeat.into()));
        Connection {
            reader,
            writer,
            session,
            channels: HashMap::new(),
            channels_opened: 0,
            channel_max: negotiated.channel_max,
            heartbeat,
            events: rx,
            read_ahead: ReadAhead::new(Frame::body_len, |e| matches!(e, FrameError::Io(_))),
            last_read: Instant::now(),
            last_write: Instant::now(),
            blocked: false,
        }
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut alarm = self.session.broker.resources().alarm();
        let end = self.main_loop(&mut shutdown, &mut alarm).await;
        if let End::Error(e) = end {
            self.close_with(e).await;
        }
        for (_, mut ch) in self.channels.drain() {
            ch.release(&mut self.session);
        }
        // Deliveries handed over but never written out go back to their queues.
        junction_core::queue::return_unsent(&mut self.events);
        self.session.vhost.connection_closed(self.session.connection_id);
    }

    async fn main_loop(&mut self, shutdown: &mut watch::Receiver<bool>, alarm: &mut watch::Receiver<bool>) -> End {
        let tick = self.heartbeat.map_or(Duration::from_secs(3600), |h| h / 2);
        let mut ticker = tokio::time::interval(tick);
        ticker.tick().await;
        if *alarm.borrow_and_update() {
            self.on_alarm(true);
        }
        loop {
            if let Err(end) = self.flush().await {
                self.handle_read_ahead().await;
                return end;
            }
            let reading = self.reading();
            tokio::select! {
                frame = self.read_ahead.next(&mut self.reader), if reading => {
                    if let Some(end) = self.on_read(frame).await {
                        return end;
                    }
                }
                Some(event) = self.events.recv() => {
                    self.on_event(event);
                    // Batch whatever else is already waiting into the same write.
                    while self.session.out.len() < junction_core::net::WRITE_BATCH_BYTES {
                        match self.events.try_recv() {
                            Some(event) => self.on_event(event),
                            None => break,
                        }
                    }
                }
                Some(done) = self.session.confirms.next(), if !self.session.confirms.is_empty() => {
                    // One group commit resolves many receipts: take every ready one so their
                    // confirms leave in one write (and collapse into `multiple` acks).
                    let mut ready = vec![done];
                    while let Some(Some(more)) = self.session.confirms.next().now_or_never() {
                        ready.push(more);
                    }
                    for (channel, tag, ok) in ready {
                        if let Some(ch) = self.channels.get_mut(&channel) {
                            ch.confirm_done(&mut self.session, tag, ok);
                        }
                    }
                }
                _ = ticker.tick() => {
                    if let Some(end) = self.on_tick(reading) {
                        return end;
                    }
                }
                Ok(()) = alarm.changed() => {
                    let raised = *alarm.borrow_and_update();
                    self.on_alarm(raised);
                }
                _ = shutdown.changed() => {
                    return End::Error(AmqpError::connection(
                        CONNECTION_FORCED,
                        "broker forced connection closure with reason 'shutdown'",
                    ));
                }
                reason = self.session.permit.registration.close_requested() => {
                    return End::Error(AmqpError::connection(CONNECTION_FORCED, reason));
                }
            }
        }
    }

    /// Publishers stop being read while a resource alarm is raised.
    fn reading(&self) -> bool {
        !(self.blocked && self.session.has_published)
    }

    /// What the reader gave: `Some(end)` when the connection is finished.
    async fn on_read(&mut self, frame: Option<Result<Frame, FrameError>>) -> Option<End> {
        self.last_read = Instant::now();
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(FrameError::Io(_))) | None => return Some(End::Gone),
            Some(Err(e)) => return Some(End::Error(AmqpError::from(&e))),
        };
        match self.on_frame(frame).await {
            Ok(true) => None,
            Ok(false) => {
                // Closing cleanly: close-ok must still reach the client.
                let _ = self.flush().await;
                Some(End::Gone)
            }
            Err(e) => Some(End::Error(e)),
        }
    }

    /// Handles the frames read ahead of a write that failed: what the client sent before it
    /// went still counts (its last acknowledgements above all); replies go nowhere.
    async fn handle_read_ahead(&mut self) {
        while let Some(Ok(frame)) = self.read_ahead.pop() {
            if !matches!(self.on_frame(frame).await, Ok(true)) {
                break;
            }
        }
    }

    /// Writes the output out. Meanwhile the client's frames are read ahead (unless it is a
    /// publisher held back by an alarm), so that a client that hangs up while we wait on it to
    /// read ends the connection at once and its unacknowledged deliveries go back.
    async fn flush(&mut self) -> Result<(), End> {
        if self.session.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.session.out);
        let reading = self.reading();
        let io = &mut Duplex { writer: &mut self.writer, reader: &mut self.reader };
        let written = self.read_ahead.write(io, &out, reading).await;
        written.map_err(|_| End::Gone)?;
        self.last_write = Instant::now();
        let mut out = out;
        out.clear();
        self.session.out = out;
        Ok(())
    }

    /// Handles one frame; `Ok(false)` when the connection is finished (close / close-ok).
    async fn on_frame(&mut self, frame: Frame) -> Result<bool, AmqpError> {
        let channel_id = match &frame {
            Frame::Heartbeat(0) => return Ok(true),
            Frame::Heartbeat(_) => {
                return Err(AmqpError::connection(UNEXPECTED_FRAME, "heartbeat frame on a non-zero channel"))
            }
            Frame::Method(0, m) => return self.on_connection_method(m.clone()),
            Frame::BadMethod(id, e) => {
                return Err(match self.channels.get(id) {
                    Some(ch) if ch.awaiting_content() => ch.content_interrupted(ch.expected_content()),
                    _ => AmqpError::from(e),
                })
            }
            Frame::Method(_, m @ AMQPClass::Connection(_)) => {
                return Err(AmqpError::connection(COMMAND_INVALID, "connection method on a non-zero channel").during(m))
            }
            Frame::Method(id, _) | Frame::Header(id, _) | Frame::Body(id, _) => *id,
        };
        if let Frame::Method(_, m @ AMQPClass::Channel(channel::AMQPMethod::Open(_))) = &frame {
            if !self.channels.contains_key(&channel_id) {
                return self.open_channel(channel_id).map(|()| true).map_err(|e| e.during(m));
            }
        }
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            let e = AmqpError::connection(CHANNEL_ERROR, "expected 'channel.open'");
            return Err(match &frame {
                Frame::Method(_, m) => e.during(m),
                _ => e,
            });
        };
        if ch.closing {
            // After channel.close only close / close-ok matter.
            if let Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_) | channel::AMQPMethod::CloseOk(_))) = &frame {
                if let Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_))) = &frame {
                    self.session.send(channel_id, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
                }
                self.channels.remove(&channel_id);
                self.list_channels();
            }
            return Ok(true);
        }
        let result = match frame {
            Frame::Method(_, m) => ch.handle_method(&mut self.session, m).await,
            Frame::Header(_, h) => ch.handle_header(&mut self.session, h).map(|()| Outcome::Continue),
            Frame::Body(_, b) => ch.handle_body(&mut self.session, b).map(|()| Outcome::Continue),
            Frame::Heartbeat(_) | Frame::BadMethod(..) => Ok(Outcome::Continue),
        };
        match result {
            Ok(Outcome::Continue) => Ok(true),
            Ok(Outcome::Closed) => {
                self.channels.remove(&channel_id);
                self.list_channels();
                Ok(true)
            }
            Err(e) if e.connection => Err(e),
            Err(e) => {
                self.close_channel(channel_id, e);
                Ok(true)
            }
        }
    }

    fn open_channel(&mut self, id: u16) -> Result<(), AmqpError> {
        let max = self.channel_max as usize;
        if max != 0 && (self.channels.len() >= max || id as usize > max) {
            return Err(AmqpError::connection(
                NOT_ALLOWED,
                format!(
                    "number of channels opened ({}) has reached the negotiated channel_max ({max})",
                    self.channels.len()
                ),
            ));
        }
        self.channels_opened += 1;
        self.channels.insert(id, Channel::new(id, self.channels_opened << 16 | u64::from(id)));
        self.list_channels();
        self.session.send(id, AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})));
        Ok(())
    }

    /// A channel error: the channel gives back what it holds and waits for close-ok.
    /// Shows operators this connection's open channels (management API).
    fn list_channels(&self) {
        self.session.permit.registration.entry.set_channels(self.channels.keys().copied().collect());
    }

    fn close_channel(&mut self, id: u16, e: AmqpError) {
        tracing::debug!(channel = id, code = e.code, text = %e.text, "closing channel");
        let Some(ch) = self.channels.get_mut(&id) else { return };
        ch.release(&mut self.session);
        ch.closing = true;
        let close = channel::Close {
            reply_code: e.code,
            reply_text: short(&e.reply_text()),
            class_id: e.class_id,
            method_id: e.method_id,
        };
        self.session.send(id, AMQPClass::Channel(channel::AMQPMethod::Close(close)));
    }

    fn on_connection_method(&mut self, method: AMQPClass) -> Result<bool, AmqpError> {
        match method {
            AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                let ok = connection::AMQPMethod::CloseOk(connection::CloseOk {});
                self.session.send(0, AMQPClass::Connection(ok));
                Ok(false)
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => Ok(false),
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                let ok = connection::AMQPMethod::UpdateSecretOk(connection::UpdateSecretOk {});
                self.session.send(0, AMQPClass::Connection(ok));
                Ok(true)
            }
            // Any other class on channel 0 is a channel method sent to the wrong channel.
            other @ AMQPClass::Connection(_) => {
                Err(AmqpError::connection(COMMAND_INVALID, "unexpected connection method").during(&other))
            }
            other => Err(AmqpError::connection(CHANNEL_ERROR, "expected 'channel.open'").during(&other)),
        }
    }

    fn on_event(&mut self, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Deliver(d) => match self.channels.get_mut(&(d.cookie as u16)).filter(|ch| ch.cookie == d.cookie) {
                Some(ch) => ch.deliver(&mut self.session, *d),
                None if !d.no_ack => d.queue.reject(&[d.seq], true),
                None => {}
            },
            ConsumerEvent::Cancelled { tag, cookie } => {
                if let Some(ch) = self.channels.get_mut(&(cookie as u16)).filter(|ch| ch.cookie == cookie) {
                    ch.consumer_cancelled(&mut self.session, &tag);
                }
            }
        }
    }

    /// Heartbeats: send one if we have been quiet, give up on a peer silent for two intervals.
    fn on_tick(&mut self, reading: bool) -> Option<End> {
        let interval = self.heartbeat?;
        if reading && self.last_read.elapsed() > interval * 2 {
            tracing::info!(connection = self.session.connection_id, "missed heartbeats from client, closing");
            return Some(End::Gone);
        }
        if self.last_write.elapsed() >= interval / 2 {
            self.session.writer().heartbeat();
        }
        None
    }

    fn on_alarm(&mut self, raised: bool) {
        if raised == self.blocked {
            return;
        }
        self.blocked = raised;
        if !raised {
            // Time spent blocked does not count against the heartbeat.
            self.last_read = Instant::now();
        }
        if self.session.capabilities.connection_blocked {
            let method = if raised {
                connection::AMQPMethod::Blocked(connection::Blocked { reason: short("low on resources") })
            } else {
                connection::AMQPMethod::Unblocked(connection::Unblocked {})
            };
            self.session.send(0, AMQPClass::Connection(method));
        }
    }

    async fn close_with(&mut self, e: AmqpError) {
        tracing::debug!(code = e.code, text = %e.text, "closing connection");
        let close = connection::Close {
            reply_code: e.code,
            reply_text: short(&e.reply_text()),
            class_id: e.class_id,
            method_id: e.method_id,
        };
        self.session.send(0, AMQPClass::Connection(connection::AMQPMethod::Close(close)));
        if self.flush().await.is_err() {
            return;
        }
        // Wait briefly for close-ok; anything else is discarded.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(frame)) = self.read_ahead.next(&mut self.reader).await {
                if let Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) = frame {
                    break;
                }
            }
        })
        .await;
        let _ = self.writer.shutdown().await;
    }
}
