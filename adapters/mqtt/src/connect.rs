//! CONNECT handling, the connection loop, and teardown (will, session save or removal).

use crate::client::{Activity, Client, Feed, Outgoing, SESSION_COOKIE};
use crate::codec::Framing;
use crate::packet::{reason, ConnAck, Connect, Inbound, Level, Outbound, Will};
use crate::session::{self, SessionState};
use crate::Mqtt;
use futures::StreamExt;
use junction_core::message::{Table, Value};
use junction_core::retained::now_ms;
use junction_core::{ConsumerSpec, QueueDeclare};
use junction_core::registry::{ConnectionInfo, Counted, Link, Protocol, Transport};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use crate::reader::PacketReader;
use tokio_util::codec::Encoder;

/// How a connection ended, for the will and the session.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// DISCONNECT received (the will is dropped unless the reason asked for it).
    Clean,
    /// Network error, keep-alive timeout, protocol error, takeover, shutdown.
    Abnormal,
}

/// The whole life of one connection. Only what the loop needs while it waits lives in the
/// task's own future; everything else is on the heap, and the CONNECT and closing phases are
/// boxed futures: a task is as large as its largest await point for its whole life, and
/// 100,000 idle MQTT connections must cost little memory each (see docs/benchmarks.md). Not an
/// `async fn`: one would keep its arguments (the stream, the link) in the future for good.
pub fn run<S>(mqtt: Arc<Mqtt>, stream: S, link: Link) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opening = Box::pin(open(mqtt, stream, link));
    async move {
        let Some(mut conn) = opening.await else { return };
        let end = conn.run().await;
        Box::pin(close(conn, end)).await;
    }
}

type Opened<S> = Box<crate::conn::Conn<Counted<S>>>;

/// Reads and answers CONNECT; the connection ready for its loop, or None once refused.
async fn open<S>(mqtt: Arc<Mqtt>, stream: S, link: Link) -> Option<Opened<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = link.peer;
    let (stream, transport) = Counted::attach(stream, link);
    // A small first buffer: a CONNECT is rarely larger, and a connection that then stays idle
    // never needs more (the loop makes room for full-size reads once it reads again).
    // Not split into halves: the loop reads and writes in turn, and the writes go through
    // `get_mut` (a split would cost a shared allocation and a lock per read and write).
    let mut reader = PacketReader::with_capacity(stream, Framing::new(mqtt.config.max_packet_size), CONNECT_BUFFER);
    let first = tokio::time::timeout(mqtt.config.connect_timeout, reader.next()).await;
    let mut connect = match first {
        Ok(Some(Ok(Inbound::Connect(c)))) => c,
        Ok(Some(Err(e))) => {
            tracing::debug!(%peer, error = %e, "MQTT connection refused before CONNECT");
            if let Some(connack) = reader.framing_mut().connect_refusal(&e) {
                let _ = reader.get_mut().write_all(&connack).await;
                let _ = reader.get_mut().shutdown().await;
            }
            return None;
        }
        _ => return None,
    };
    let accepted = accept(&mqtt, &connect, &transport, &mut reader).await?;
    let (mut client, session_present) = accepted;
    mqtt.stats.connections_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (keep_alive_secs, server_keep_alive) = negotiate_keep_alive(&connect, mqtt.config.max_keep_alive);
    let ack = ConnAck {
        server_keep_alive,
        session_present,
        reason: reason::SUCCESS,
        assigned_client_id: (connect.client_id.is_empty()).then(|| client.id.to_string()),
        receive_max: mqtt.config.max_inflight,
        max_packet_size: Some(mqtt.config.max_packet_size),
        topic_alias_max: client.topic_alias_max,
        ..Default::default()
    };
    tracing::debug!(%peer, client = %client.id, user = %client.access.user(), session_present, "MQTT connection open");
    client.send(reader.framing_mut(), Outbound::ConnAck(ack));
    // The will is kept for the whole connection: copy its payload out of the read buffer it
    // points into, so that it does not keep that buffer alive; the CONNECT itself goes.
    client.will = connect.will.take().map(|mut w| {
        let copy = |b: &bytes::Bytes| bytes::Bytes::copy_from_slice(b);
        w.props.correlation_data = w.props.correlation_data.as_ref().map(copy);
        Box::new(Will { payload: copy(&w.payload), ..w })
    });
    drop(connect);
    start_feeds(&mut client, reader.framing_mut());
    let keep_alive_ms = u32::from(keep_alive_secs) * 1500;
    let now = Instant::now();
    let conn = crate::conn::Conn {
        reader,
        client,
        keep_alive_ms,
        last_read: now,
        last_active: now,
        buffers_released: false,
        read_first: false,
        read_ahead: None,
        alarm_cleared: None,
    };
    Some(Box::new(conn))
}

/// The first read buffer's size (see `open`).
const CONNECT_BUFFER: usize = 256;

/// Ends the connection: flushes, runs the teardown, lets a client taking the session over go
/// on, and reads what the client still sends before the socket closes.
async fn close<S>(conn: Box<crate::conn::Conn<S>>, end: End)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let crate::conn::Conn { reader, client, .. } = *conn;
    let mut stream = reader.into_inner();
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    teardown(client, end).await;
    junction_core::net::drain_until_closed(stream).await;
}

/// The keep-alive the connection runs with and, when it differs from the client's, the Server
/// Keep Alive that tells an MQTT 5 client (3.1.x clients cannot be told, so keep theirs).
fn negotiate_keep_alive(c: &Connect, max: u16) -> (u16, Option<u16>) {
    let too_long = c.keep_alive == 0 || c.keep_alive > max;
    if c.level == Level::V5 && max < u16::MAX && too_long {
        (max, Some(max))
    } else {
        (c.keep_alive, None)
    }
}

/// The client (which owns its id until dropped), and whether its session was resumed.
type Accepted = (Client, bool);

/// Validates CONNECT, logs in, takes the session over and attaches to it; refusals are
/// answered with CONNACK here.
async fn accept<S>(mqtt: &Arc<Mqtt>, c: &Connect, transport: &Transport, reader: &mut PacketReader<S>) -> Option<Accepted>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = transport.link.peer;
    let refuse = |code: u8| async move {
        let mut out = bytes::BytesMut::new();
        let _ = reader.framing_mut().encode(Outbound::ConnAck(ConnAck { reason: code, ..Default::default() }), &mut out);
        let _ = reader.get_mut().write_all(&out).await;
        let _ = reader.get_mut().shutdown().await;
        None
    };
    if c.auth_method.is_some() {
        return refuse(reason::BAD_AUTHENTICATION_METHOD).await;
    }
    // 3.1 needs an id; 3.1.1 allows an empty one only with a clean session; 5 always.
    let id_required = c.level == Level::V31 || (c.level == Level::V311 && !c.clean_start);
    if c.client_id.is_empty() && id_required {
        return refuse(reason::CLIENT_ID_NOT_VALID).await;
    }
    // A user name logs in with its password; without one, a certificate naming a user (with
    // certificate login on) logs in as that user, else the anonymous user if there is one.
    let user = match (&c.username, &transport.link.cert_user, &mqtt.config.anonymous_user) {
        (Some(name), _, _) => {
            let password = c.password.as_ref().map(|p| String::from_utf8_lossy(p).to_string()).unwrap_or_default();
            mqtt.broker.authenticate(name, &password, peer.ip()).await
        }
        (None, Some(cert_user), _) => mqtt.broker.authenticate_trusted(cert_user, peer.ip()),
        (None, None, Some(anonymous)) => mqtt.broker.authenticate_trusted(anonymous, peer.ip()),
        (None, None, None) => return refuse(reason::NOT_AUTHORIZED).await,
    };
    let user = match user {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!(%peer, reason = %e.message, "MQTT login refused");
            return refuse(if c.username.is_some() { reason::BAD_USERNAME_OR_PASSWORD } else { reason::NOT_AUTHORIZED }).await;
        }
    };
    let Some(vhost) = mqtt.broker.vhost(&mqtt.config.vhost) else { return refuse(reason::SERVER_UNAVAILABLE).await };
    let id: Arc<str> = if c.client_id.is_empty() { generated_id().into() } else { c.client_id.as_str().into() };
    let access = match crate::authz::may_connect(&mqtt.broker, &user, &vhost, &id) {
        Ok(access) => access,
        Err(e) => {
            tracing::warn!(%peer, client = %id, reason = %e.message, "MQTT connection refused");
            return refuse(reason::NOT_AUTHORIZED).await;
        }
    };
    if let Some(will) = &c.will {
        // The will is published later on this client's behalf: it needs the same right now.
        if let Err(e) = crate::authz::may_publish(&access, &will.topic) {
            tracing::warn!(%peer, client = %id, reason = %e.message, "MQTT will refused");
            return refuse(reason::NOT_AUTHORIZED).await;
        }
    }
    let version = match c.level {
        Level::V31 => "MQTT 3.1",
        Level::V311 => "MQTT 3.1.1",
        Level::V5 => "MQTT 5.0",
    };
    let info = ConnectionInfo::new(Protocol::Mqtt, version, &access, id.clone(), transport.link.clone());
    let permit = match mqtt.broker.admit_connection(info, transport) {
        Ok(permit) => permit,
        Err(e) => {
            tracing::warn!(%peer, client = %id, reason = %e.message, "MQTT connection refused");
            // 3.1.x has no quota code: it becomes "server unavailable".
            return refuse(if c.level == Level::V5 { reason::QUOTA_EXCEEDED } else { reason::SERVER_UNAVAILABLE }).await;
        }
    };
    let (_, generation) = mqtt.registry.claim(vhost.name(), id.clone(), permit.registration.entry.clone()).await;
    let stored = mqtt.broker.session(vhost.name(), session::PROTOCOL, &id).and_then(|b| SessionState::decode(&b));
    let resumed = match stored {
        Some(s) if !c.clean_start && !s.expired(now_ms()) => Some(s),
        Some(_) => {
            remove_session(mqtt, &vhost, &id);
            None
        }
        None => None,
    };
    let session_present = resumed.is_some();
    let mut state = resumed.unwrap_or_default();
    state.expiry_secs = c.session_expiry;
    state.disconnected_at_ms = 0;
    let persistent = c.session_expiry > 0;
    // A persistent session's queue collects messages while the client is away, so it exists
    // from the start, as does one a resumed session already has; a new clean session's waits
    // for its first subscription.
    let needs_queue = persistent || vhost.queue(&session::queue_name(&id)).is_some();
    let queue = match needs_queue.then(|| declare_session_queue(mqtt, &vhost, &id, persistent)).transpose() {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(client = %id, error = %e, "cannot open MQTT session queue");
            mqtt.registry.release(vhost.name(), &id, generation);
            return refuse(reason::SERVER_UNAVAILABLE).await;
        }
    };
    let mut client = Client::new(mqtt.clone(), id, c.level, vhost, access, state, persistent, queue);
    client.permit = Some(permit);
    client.prefetch = u32::from(c.receive_max.min(mqtt.config.max_inflight).max(1));
    client.max_packet_size = c.max_packet_size.and_then(std::num::NonZeroU32::new);
    client.topic_alias_max = if c.level == Level::V5 { 16 } else { 0 };
    client.outbound_alias_max = c.topic_alias_max;
    if let Some(receipt) = client.save_session() {
        let _ = receipt.await;
    }
    Some((client, session_present))
}

fn generated_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("junction-{}", Alphanumeric.sample_string(&mut rand::rng(), 16))
}

/// Declares the queue holding the client's messages: durable for a persistent session.
pub fn declare_session_queue(
    mqtt: &Mqtt,
    vhost: &junction_core::VHost,
    id: &str,
    durable: bool,
) -> junction_core::CoreResult<Arc<junction_core::Queue>> {
    let mut arguments = Table::default();
    arguments.insert("x-max-length", Value::I64(mqtt.config.max_queued_messages as i64));
    let declare = QueueDeclare { name: session::queue_name(id), durable, arguments, ..Default::default() };
    match vhost.declare_queue(declare.clone()) {
        Ok(_) => {}
        // A resumed session whose expiry changed keeps its queue and the messages in it; the
        // new expiry decides what happens at the next disconnect.
        Err(e) if e.kind == junction_core::ErrorKind::PreconditionFailed && vhost.queue(&declare.name).is_some() => {}
        Err(e) => return Err(e),
    }
    vhost.queue_for(&declare.name, 0)
}

/// Starts consuming the session queue and the direct feeds of `$share`/`$queue`
/// subscriptions, and resends PUBREL for QoS 2 exchanges still waiting for PUBCOMP.
fn start_feeds(client: &mut Client, framing: &mut Framing) {
    if let Some(queue) = client.queue.clone() {
        consume(client, queue, SESSION_COOKIE, Feed::Session);
    }
    let direct: Vec<String> =
        client.session.subscriptions.keys().filter(|f| crate::handlers::direct_queue(f).is_some()).cloned().collect();
    for filter in direct {
        crate::handlers::attach_direct(client, &filter);
    }
    for packet_id in client.session.awaiting_pubcomp.clone() {
        client.active().outstanding.insert(packet_id, Outgoing::Released);
        client.send(framing, Outbound::PubRel { packet_id });
    }
}

pub fn consume(client: &mut Client, queue: Arc<junction_core::Queue>, cookie: u64, feed: Feed) {
    consume_from(client, queue, cookie, feed, junction_core::queue::StreamStart::Next, None);
}

/// `consume`, reading a stream from `start` (or where the reader `name` left off).
pub fn consume_from(
    client: &mut Client,
    queue: Arc<junction_core::Queue>,
    cookie: u64,
    feed: Feed,
    start: junction_core::queue::StreamStart,
    name: Option<String>,
) {
    let (channel_credit, sink) = {
        let deliveries = client.active().deliveries();
        (deliveries.credit.clone(), deliveries.tx.clone())
    };
    let spec = ConsumerSpec {
        tag: Arc::from(format!("mqtt-{}-{cookie}", client.id).as_str()),
        no_ack: false,
        exclusive: false,
        prefetch: client.prefetch,
        channel_credit,
        sink,
        cookie,
    };
    match queue.consume_stream(spec, start, name) {
        Ok(consumer) => {
            client.active().consumers.insert(cookie, (queue, consumer, feed));
        }
        Err(e) => tracing::warn!(client = %client.id, error = %e, "cannot consume"),
    }
}

/// Publishes the will (unless the client disconnected cleanly), hands unacked messages back,
/// and keeps or removes the session.
async fn teardown(mut client: Client, end: End) {
    let activity = client.activity.take().unwrap_or_default();
    let Activity { consumers, deliveries, outstanding, .. } = *activity;
    for (_, (queue, consumer, _)) in consumers {
        queue.cancel(consumer);
    }
    // Deliveries the queues handed over that never reached the socket go back, in order, so
    // a persistent session finds them on resume.
    if let Some(mut deliveries) = deliveries {
        junction_core::queue::return_unsent(&mut deliveries.rx);
    }
    for (_, outgoing) in outstanding {
        if let Outgoing::Sent { source: Some((queue, seq)) } = outgoing {
            queue.reject(&[seq], true);
        }
    }
    let mqtt = client.mqtt.clone();
    if let (End::Abnormal, Some(will)) = (&end, client.will.take()) {
        crate::handlers::schedule_will(&mqtt, &client, *will);
    }
    let vhost = client.vhost.clone();
    if client.persistent {
        client.session.disconnected_at_ms = now_ms();
        if let Some(receipt) = client.save_session() {
            let _ = receipt.await;
        }
        schedule_expiry(&mqtt, vhost.name().to_string(), client.id.to_string(), client.session.expiry_secs);
    } else {
        remove_session(&mqtt, &vhost, &client.id);
    }
    // Dropping the client now lets go of its id (`Client`'s `Drop`).
}

/// Deletes a session: its queue (bindings go with it) and its record.
fn remove_session(mqtt: &Mqtt, vhost: &junction_core::VHost, id: &str) {
    let _ = vhost.delete_queue(&session::queue_name(id), false, false, 0);
    mqtt.broker.delete_session(vhost.name(), session::PROTOCOL, id);
}

fn schedule_expiry(mqtt: &Arc<Mqtt>, vhost: String, id: String, expiry_secs: u32) {
    if expiry_secs == u32::MAX {
        return;
    }
    let mqtt = mqtt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(u64::from(expiry_secs))).await;
        expire_if_due(&mqtt, &vhost, &id);
    });
}

/// Removes the session if it is still disconnected and past its expiry.
fn expire_if_due(mqtt: &Mqtt, vhost_name: &str, id: &str) {
    if mqtt.registry.is_connected(vhost_name, id) {
        return;
    }
    let Some(state) = mqtt.broker.session(vhost_name, session::PROTOCOL, id).and_then(|b| SessionState::decode(&b)) else {
        return;
    };
    if state.expired(now_ms()) {
        if let Some(vhost) = mqtt.broker.vhost(vhost_name) {
            tracing::debug!(client = %id, "MQTT session expired");
            remove_session(mqtt, &vhost, id);
        }
    }
}

/// At start-up: sessions that expired while the broker was down go; the others get timers.
pub fn expire_stored_sessions(mqtt: &Arc<Mqtt>) {
    for (vhost, id, data) in mqtt.broker.sessions(session::PROTOCOL) {
        let Some(mut state) = SessionState::decode(&data) else { continue };
        if state.disconnected_at_ms == 0 {
            // The broker stopped while the client was connected: its clock starts now.
            state.disconnected_at_ms = now_ms();
            let _ = mqtt.broker.put_session(&vhost, session::PROTOCOL, &id, state.encode());
        }
        if state.expired(now_ms()) {
            expire_if_due(mqtt, &vhost, &id);
        } else if state.expiry_secs != u32::MAX {
            let left = (state.disconnected_at_ms + u64::from(state.expiry_secs) * 1000).saturating_sub(now_ms());
            let (mqtt, vhost, id) = (mqtt.clone(), vhost.clone(), id.clone());
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(left)).await;
                    expire_if_due(&mqtt, &vhost, &id);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task holds this future for its whole life, idle or not: it must stay a
    /// few pointers and the timer (see `run`; 100,000 idle connections are a figure we publish).
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let dir = std::env::temp_dir().join(format!("junction-mqtt-size-{}", std::process::id()));
        let broker = junction_core::Broker::open(junction_core::BrokerConfig { data_dir: dir.clone(), ..Default::default() }).unwrap();
        let mqtt = Mqtt::new(broker, crate::MqttConfig::default());
        let (stream, _client) = tokio::io::duplex(64);
        let connection = run(mqtt, stream, Link::tcp("127.0.0.1:1883".parse().unwrap()));
        let size = std::mem::size_of_val(&connection);
        drop(connection);
        let _ = std::fs::remove_dir_all(dir);
        eprintln!("connection future: {size} bytes");
        assert!(size <= 264, "the connection future grew to {size} bytes");
    }
}
