//! The connection state and its waiting loop: what wakes a connection up, its timer, and
//! giving buffers back when it idles. What each packet and delivery does is in `handlers`.

use crate::client::Client;
use crate::connect::End;
use crate::packet::{reason, Inbound, Level, Outbound};
use crate::reader::{PacketReader, READ_BUFFER};
use futures::{FutureExt, StreamExt};
use junction_core::net::ReadAhead;
use junction_core::registry::CloseReason;
use junction_core::ConsumerEvent;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

pub struct Conn<S> {
    /// Reads the client's packets; its stream is also where replies are written.
    pub reader: PacketReader<S>,
    pub client: Client,
    /// 1.5 x the client's keep-alive in milliseconds; 0 when it asked for none. (Not an
    /// `Option<Duration>`: 4 bytes instead of 16 in every connection.)
    pub keep_alive_ms: u32,
    pub last_read: Instant,
    /// When the connection last read, delivered or wrote anything (see `IDLE_AFTER`).
    pub last_active: Instant,
    /// The buffers were given back since `last_active` (so the release timer is off).
    pub buffers_released: bool,
    /// Only while the resource alarm blocks this client (a publisher): resolves when it clears.
    pub alarm_cleared: Option<futures::future::BoxFuture<'static, ()>>,
    /// Whether `poll_wake` polled the socket before the consumer events last time.
    pub read_first: bool,
    /// Packets read while a write waited (see `write_out`), handled before the reader's next;
    /// none most of the time (boxed: 8 bytes in every connection).
    pub read_ahead: Option<Box<PacketsReadAhead>>,
}

type PacketsReadAhead = ReadAhead<Inbound, crate::codec::DecodeError>;

fn packets_read_ahead() -> PacketsReadAhead {
    let weight = |packet: &Inbound| match packet {
        Inbound::Publish(publish) => publish.payload.len(),
        _ => 0,
    };
    ReadAhead::new(weight, |e| matches!(e, crate::codec::DecodeError::Io(_)))
}

/// A connection with no traffic for this long gives its read and write buffers back (an idle
/// connection then holds no buffer at all: 100,000 idle MQTT clients must cost little memory).
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// Takes the first pending acknowledgement once its store write finished: (packet id, QoS,
/// reason code). Pending while there is none. Only the first is polled: acknowledgements leave
/// in publish order anyway.
pub(crate) fn poll_first_stored(acks: &mut std::collections::VecDeque<crate::client::PendingAck>, cx: &mut std::task::Context<'_>) -> Poll<(u16, u8, u8)> {
    let Some(ack) = acks.front_mut() else { return Poll::Pending };
    let stored = std::task::ready!(ack.poll_unpin(cx));
    acks.pop_front();
    Poll::Ready(stored)
}

/// Why handling a packet ended the connection.
pub(crate) struct Close {
    pub end: End,
    /// MQTT 5 DISCONNECT reason to send first (3.1.x just closes).
    pub reason: Option<u8>,
    /// Its Reason String, when not the code's usual text (an operator's reason).
    pub text: Option<String>,
}

/// Packets handled per wake-up beyond the first, before replies are written.
pub(crate) const READ_BATCH: usize = 64;

pub(crate) fn protocol_error(code: u8) -> Close {
    Close { end: End::Abnormal, reason: Some(code), text: None }
}

/// What woke a waiting connection up.
enum Wake {
    /// Boxed: the connection's task keeps room for its largest `Wake` for good.
    Read(Box<Option<Result<Inbound, crate::codec::DecodeError>>>),
    Event(ConsumerEvent),
    /// The first pending acknowledgement's store write finished: (packet id, QoS, reason).
    Stored((u16, u8, u8)),
    /// The keep-alive ran out, or the connection has been idle long enough to give its
    /// buffers back.
    Timer,
    /// Taken over, broker shutting down, operator request (see `registry`).
    Leave(Close),
    AlarmCleared,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// The connection's loop. It waits in `poll_wake` on everything that can wake it (no
    /// `select!`, whose branch futures would all live in the task), and every await that is not
    /// that wait is boxed (reading a batch, writing): this future lives as long as the
    /// connection, and its size is that of its largest await point (see `connect::run`).
    pub async fn run(&mut self) -> End {
        // The one timer: the keep-alive deadline or the moment to give buffers back.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        loop {
            // A resource alarm stops reading from publishers (TCP back-pressure); their
            // keep-alive does not run meanwhile, as they cannot be heard.
            if !(self.client.has_published && self.client.mqtt.broker.resources().alarm_raised()) {
                if self.alarm_cleared.is_some() {
                    self.unblock();
                }
            } else if self.alarm_cleared.is_none() {
                self.alarm_cleared = Some(self.alarm_cleared());
            }
            if !self.client.out.is_empty() {
                if let Some(end) = Box::pin(self.write_out()).await {
                    return end;
                }
                // The write may have taken a while: the alarm is looked at again first.
                continue;
            }
            let blocked = self.alarm_cleared.is_some();
            let release_at = (!self.buffers_released).then(|| self.last_active + IDLE_AFTER);
            let deadline = self.keep_alive_deadline(blocked).into_iter().chain(release_at).min();
            if let Some(deadline) = deadline.filter(|d| *d != timer.deadline()) {
                timer.as_mut().reset(deadline);
            }
            let mut timer = deadline.map(|_| timer.as_mut());
            let wake = std::future::poll_fn(|cx| self.poll_wake(cx, timer.as_mut().map(|t| t.as_mut()))).await;
            let close = match wake {
                Wake::Read(packet) => {
                    self.last_read = Instant::now();
                    self.active(self.last_read);
                    // The small buffer CONNECT was read into grows for full-size reads.
                    self.reader.reserve(READ_BUFFER);
                    Box::pin(self.on_read_batch(*packet)).await
                }
                Wake::Event(event) => {
                    self.active(Instant::now());
                    self.on_event(event);
                    while self.client.out.len() < junction_core::net::WRITE_BATCH_BYTES {
                        let Some(event) = self.client.activity.as_mut().and_then(|a| a.deliveries.as_mut()?.rx.try_recv()) else { break };
                        self.on_event(event);
                    }
                    None
                }
                Wake::Stored((packet_id, qos, code)) => {
                    self.on_stored(packet_id, qos, code);
                    self.send_ready_acks();
                    None
                }
                Wake::Timer if self.keep_alive_deadline(self.alarm_cleared.is_some()).is_some_and(|d| d <= Instant::now()) => {
                    tracing::debug!(client = %self.client.id, "MQTT keep-alive timeout");
                    Some(protocol_error(reason::KEEP_ALIVE_TIMEOUT))
                }
                Wake::Timer => {
                    self.release_buffers();
                    None
                }
                Wake::Leave(close) => Some(close),
                Wake::AlarmCleared => {
                    self.unblock();
                    None
                }
            };
            if let Some(close) = close {
                return Box::pin(self.leave(close)).await;
            }
        }
    }

    /// Writes the output out; meanwhile the client's packets are read ahead unless the alarm
    /// blocks it (see `ReadAhead`), to be handled before any newer. `Some(end)` once the
    /// connection is over.
    async fn write_out(&mut self) -> Option<End> {
        let mut ahead = self.read_ahead.take().map_or_else(packets_read_ahead, |ahead| *ahead);
        let reading = self.alarm_cleared.is_none();
        let written = ahead.write(&mut self.reader, &self.client.out, reading).await;
        self.client.out.clear();
        if written.is_err() {
            return Some(self.hear_out(ahead).await);
        }
        if !ahead.is_empty() {
            // Heard from: the keep-alive must not run out before these are handled.
            self.last_read = Instant::now();
            self.read_ahead = Some(Box::new(ahead));
        }
        None
    }

    /// The client is gone: handles what it sent before it went (after a DISCONNECT, its will
    /// is not published); how the connection ended.
    async fn hear_out(&mut self, mut ahead: PacketsReadAhead) -> End {
        while let Some(packet) = ahead.pop() {
            if let Some(close) = self.on_read(Some(packet)).await {
                return close.end;
            }
        }
        End::Abnormal
    }

    /// The oldest packet read ahead of a write.
    pub(crate) fn pop_read_ahead(&mut self) -> Option<Result<Inbound, crate::codec::DecodeError>> {
        let ahead = self.read_ahead.as_mut()?;
        let packet = ahead.pop();
        if ahead.is_empty() {
            self.read_ahead = None;
        }
        packet
    }

    /// Ends the connection: the DISCONNECT an MQTT 5 client gets, written out; nothing the
    /// client sends any more is handled.
    async fn leave(&mut self, close: Close) -> End {
        let end = self.say_goodbye(close);
        let _ = packets_read_ahead().write(&mut self.reader, &self.client.out, true).await;
        self.client.out.clear();
        end
    }

    /// The alarm no longer blocks this client (however that was noticed): it is read again,
    /// and its keep-alive starts from now.
    fn unblock(&mut self) {
        self.alarm_cleared = None;
        self.last_read = Instant::now();
    }

    /// When the keep-alive runs out (none while the alarm blocks the client: it is not read).
    fn keep_alive_deadline(&self, blocked: bool) -> Option<Instant> {
        let keep_alive = Duration::from_millis(u64::from(self.keep_alive_ms));
        (self.keep_alive_ms > 0 && !blocked).then(|| self.last_read + keep_alive)
    }

    /// Queues the DISCONNECT an MQTT 5 client gets when the server closes (3.1.x clients just
    /// see the socket close); how the connection ended.
    fn say_goodbye(&mut self, close: Close) -> End {
        if let (Some(code), Level::V5) = (close.reason, self.client.level) {
            let text = close.text.unwrap_or_else(|| reason::describe(code).to_string());
            // The Reason String only if the client's Maximum Packet Size leaves room (the rest
            // of the packet takes at most 12 bytes).
            let fits = self.client.max_packet_size.is_none_or(|max| text.len() + 12 <= max.get() as usize);
            self.send(Outbound::Disconnect { reason: code, reason_string: fits.then_some(text) });
        }
        close.end
    }

    /// Polls what the connection waits on, in turn: being told to leave, store writes, the
    /// timer, then the socket and the consumer events (which of the two first alternates, so
    /// neither starves the other), and the alarm. The socket is not read while the alarm
    /// blocks publishers.
    fn poll_wake(
        &mut self,
        cx: &mut std::task::Context<'_>,
        timer: Option<std::pin::Pin<&mut tokio::time::Sleep>>,
    ) -> Poll<Wake> {
        if let Some(permit) = &self.client.permit {
            if let Poll::Ready(why) = permit.registration.poll_close_requested(cx) {
                let close = match why {
                    CloseReason::TakenOver => protocol_error(reason::SESSION_TAKEN_OVER),
                    CloseReason::ShuttingDown => protocol_error(reason::SERVER_SHUTTING_DOWN),
                    CloseReason::Requested(text) => Close { text: Some(text.into()), ..protocol_error(reason::ADMINISTRATIVE_ACTION) },
                };
                return Poll::Ready(Wake::Leave(close));
            }
        }
        // Acknowledgements and the timer before the socket and the events: a steady flow of
        // deliveries (ready again after every write batch) must not hold up a PUBACK or the
        // keep-alive.
        if let Some(activity) = &mut self.client.activity {
            if let Poll::Ready(stored) = poll_first_stored(&mut activity.pending_acks, cx) {
                return Poll::Ready(Wake::Stored(stored));
            }
        }
        if timer.is_some_and(|timer| timer.poll(cx).is_ready()) {
            return Poll::Ready(Wake::Timer);
        }
        self.read_first = !self.read_first;
        let blocked = self.alarm_cleared.is_some();
        for read in [self.read_first, !self.read_first] {
            if read && !blocked {
                if let Some(packet) = self.pop_read_ahead() {
                    return Poll::Ready(Wake::Read(Box::new(Some(packet))));
                }
                if let Poll::Ready(packet) = self.reader.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Read(Box::new(packet)));
                }
            } else if !read {
                // No channel before the first consumer; None only once every sender is gone,
                // and the client holds one.
                let events = self.client.activity.as_mut().and_then(|a| a.deliveries.as_mut()).map(|d| &mut d.rx);
                if let Some(Poll::Ready(Some(event))) = events.map(|rx| rx.poll_recv(cx)) {
                    return Poll::Ready(Wake::Event(event));
                }
            }
        }
        if let Some(cleared) = &mut self.alarm_cleared {
            if cleared.poll_unpin(cx).is_ready() {
                return Poll::Ready(Wake::AlarmCleared);
            }
        }
        Poll::Pending
    }

    /// Resolves once the resource alarm no longer blocks publishers.
    fn alarm_cleared(&self) -> futures::future::BoxFuture<'static, ()> {
        let mut alarm = self.client.mqtt.broker.resources().alarm();
        Box::pin(async move {
            let _ = alarm.wait_for(|raised| !*raised).await;
        })
    }

    fn active(&mut self, now: Instant) {
        self.last_active = now;
        self.buffers_released = false;
    }

    /// Idle: frees the write buffer (empty here), the read buffer unless it holds part of a
    /// packet (see `PacketReader::release_buffer`), and what the client no longer has going
    /// on; once per idle period.
    fn release_buffers(&mut self) {
        self.client.out = bytes::BytesMut::new();
        if let Some(deliveries) = self.client.activity.as_mut().and_then(|a| a.deliveries.as_mut()) {
            deliveries.rx.shrink();
        }
        self.client.release_idle_activity();
        self.reader.release_buffer();
        self.buffers_released = true;
    }
}
