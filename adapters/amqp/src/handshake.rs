//! Connection negotiation: protocol header, start / start-ok (SASL PLAIN, AMQPLAIN and, for a
//! client with a certificate naming a user, EXTERNAL), tune / tune-ok, open / open-ok.

use crate::codec::{Frame, FrameCodec, FrameWriter, PROTOCOL_HEADER};
use crate::convert::short;
use crate::error::{AmqpError, ACCESS_REFUSED, CHANNEL_ERROR, COMMAND_INVALID, NOT_ALLOWED, SYNTAX_ERROR};
use crate::session::ClientCapabilities;
use crate::AmqpConfig;
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::BytesMut;
use futures::StreamExt;
use junction_core::auth::User;
use junction_core::{Broker, CoreError, VHost};
use junction_core::registry::{ConnectionInfo, Link, Protocol, Transport};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

/// What a successful negotiation settled.
pub struct Negotiated {
    pub user: User,
    pub vhost: Arc<VHost>,
    pub access: junction_core::permissions::Access,
    /// Counts the connection against the connection limits while it lives.
    pub permit: junction_core::connections::ConnectionPermit,
    pub frame_max: usize,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub capabilities: ClientCapabilities,
}

/// Why negotiation ended without a connection.
pub enum Refusal {
    /// Send this connection.close, then hang up.
    Close(AmqpError),
    /// Hang up without another word (bad protocol header already answered, or peer gone).
    HangUp,
}

/// Reads the 8-byte protocol header. On a mismatch, answers with the supported header.
pub async fn read_protocol_header<R, W>(rd: &mut R, wr: &mut W) -> Result<(), Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut header = [0u8; 8];
    rd.read_exact(&mut header).await.map_err(|_| Refusal::HangUp)?;
    if &header != PROTOCOL_HEADER {
        let _ = wr.write_all(PROTOCOL_HEADER).await;
        return Err(Refusal::HangUp);
    }
    Ok(())
}

fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(short(cap), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    props.insert(short("product"), text("Junction"));
    props.insert(short("version"), text(env!("CARGO_PKG_VERSION")));
    props.insert(short("platform"), text("Rust"));
    props.insert(short("cluster_name"), text("junction"));
    props.insert(short("information"), text("One broker for MQTT, STOMP and AMQP 0-9-1"));
    props.insert(short("capabilities"), AMQPValue::FieldTable(caps));
    props
}

async fn next_method<R: AsyncRead + Unpin>(rd: &mut FramedRead<R, FrameCodec>) -> Result<AMQPClass, Refusal> {
    loop {
        match rd.next().await {
            Some(Ok(Frame::Method(0, m))) => return Ok(m),
            Some(Ok(Frame::Heartbeat(_))) => continue,
            Some(Ok(Frame::BadMethod(_, e))) => return Err(Refusal::Close(AmqpError::from(&e))),
            Some(Ok(_)) => {
                return Err(Refusal::Close(AmqpError::connection(CHANNEL_ERROR, "expected a method on channel 0")))
            }
            Some(Err(e)) => return Err(Refusal::Close(AmqpError::from(&e))),
            None => return Err(Refusal::HangUp),
        }
    }
}

fn unexpected(expected: &str) -> Refusal {
    Refusal::Close(AmqpError::connection(COMMAND_INVALID, format!("expected {expected}")))
}

async fn send<W: AsyncWrite + Unpin>(wr: &mut W, method: connection::AMQPMethod) -> Result<(), Refusal> {
    let mut out = BytesMut::new();
    FrameWriter { out: &mut out }.method(0, AMQPClass::Connection(method));
    wr.write_all(&out).await.map_err(|_| Refusal::HangUp)
}

/// Runs start / tune / open. The caller applies the overall handshake timeout.
pub async fn negotiate<R, W>(
    rd: &mut FramedRead<R, FrameCodec>,
    wr: &mut W,
    broker: &Broker,
    config: &AmqpConfig,
    transport: &Transport,
) -> Result<Negotiated, Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let start = connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: server_properties(),
        mechanisms: LongString::from(mechanisms(transport).as_bytes().to_vec()),
        locales: LongString::from("en_US".as_bytes().to_vec()),
    };
    send(wr, connection::AMQPMethod::Start(start)).await?;
    let AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)) = next_method(rd).await? else {
        return Err(unexpected("connection.start-ok"));
    };
    let capabilities = client_capabilities(&start_ok.client_properties);
    let client_id = connection_name(&start_ok.client_properties);
    let mechanism = start_ok.mechanism.as_str().to_string();
    let user = login(broker, &mechanism, start_ok.response.as_bytes(), &transport.link).await?;
    let tune = connection::Tune {
        channel_max: config.channel_max,
        frame_max: config.frame_max,
        heartbeat: config.heartbeat,
    };
    send(wr, connection::AMQPMethod::Tune(tune)).await?;
    let AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)) = next_method(rd).await? else {
        return Err(unexpected("connection.tune-ok"));
    };
    let negotiate = |client: u32, server: u32| if client == 0 { server } else { client.min(server) };
    let frame_max = negotiate(tune_ok.frame_max, config.frame_max).max(4096) as usize;
    let channel_max = negotiate(tune_ok.channel_max.into(), config.channel_max.into()) as u16;
    rd.decoder_mut().frame_max = frame_max;
    let AMQPClass::Connection(connection::AMQPMethod::Open(open)) = next_method(rd).await? else {
        return Err(unexpected("connection.open"));
    };
    let vhost = broker.vhost(open.virtual_host.as_str()).ok_or_else(|| {
        let e = AmqpError::connection(NOT_ALLOWED, format!("vhost {} not found", open.virtual_host.as_str()));
        Refusal::Close(AmqpError { class_id: 10, method_id: 40, ..e })
    })?;
    let access = broker.access(&user, vhost.name()).map_err(|e| {
        tracing::warn!(user = %user.name, vhost = %vhost.name(), "AMQP vhost access refused");
        Refusal::Close(AmqpError { class_id: 10, method_id: 40, ..AmqpError::connection(NOT_ALLOWED, e.message) })
    })?;
    let info = ConnectionInfo::new(Protocol::Amqp, "AMQP 0-9-1", &access, client_id.into(), transport.link.clone());
    let permit = broker.admit_connection(info, transport).map_err(|e| {
        tracing::warn!(user = %user.name, reason = %e.message, "AMQP connection refused");
        Refusal::Close(AmqpError { class_id: 10, method_id: 40, ..AmqpError::connection(NOT_ALLOWED, e.message) })
    })?;
    send(wr, connection::AMQPMethod::OpenOk(connection::OpenOk {})).await?;
    Ok(Negotiated { user, vhost, access, permit, frame_max, channel_max, heartbeat: tune_ok.heartbeat, capabilities })
}

/// The `connection_name` client property (what pika, lapin and the Java client call the
/// connection), shown to operators as its client id.
fn connection_name(props: &FieldTable) -> String {
    match props.inner().get("connection_name") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => String::new(),
    }
}

fn client_capabilities(props: &FieldTable) -> ClientCapabilities {
    let Some(AMQPValue::FieldTable(caps)) = props.inner().get("capabilities") else {
        return ClientCapabilities::default();
    };
    let flag = |name: &str| matches!(caps.inner().get(name), Some(AMQPValue::Boolean(true)));
    ClientCapabilities {
        consumer_cancel_notify: flag("consumer_cancel_notify"),
        connection_blocked: flag("connection.blocked"),
    }
}

/// SASL mechanisms offered: EXTERNAL only to a client whose certificate names a user.
fn mechanisms(transport: &Transport) -> &'static str {
    if transport.link.cert_user.is_some() {
        "PLAIN AMQPLAIN EXTERNAL"
    } else {
        "PLAIN AMQPLAIN"
    }
}

/// Checks the client's credentials: a password (PLAIN, AMQPLAIN) or, with EXTERNAL, the user its
/// verified TLS certificate names (the response is ignored, as RabbitMQ does).
async fn login(broker: &Broker, mechanism: &str, response: &[u8], link: &Link) -> Result<User, Refusal> {
    let peer = link.peer;
    let (username, result) = match (mechanism, &link.cert_user) {
        ("EXTERNAL", Some(name)) => (name.to_string(), broker.authenticate_trusted(name, peer.ip())),
        ("EXTERNAL", None) => ("".to_string(), Err(CoreError::refused("no verified client certificate names a user"))),
        _ => {
            let (username, password) = parse_credentials(mechanism, response).ok_or_else(|| {
                Refusal::Close(AmqpError::connection(SYNTAX_ERROR, format!("malformed {mechanism} response")))
            })?;
            let result = broker.authenticate(&username, &password, peer.ip()).await;
            (username, result)
        }
    };
    result.map_err(|e| {
        tracing::warn!(user = %username, peer = %peer, reason = %e.message, "AMQP login refused");
        Refusal::Close(AmqpError::connection(
            ACCESS_REFUSED,
            format!("Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
        ))
    })
}

/// SASL PLAIN (`\0user\0password`) or AMQPLAIN (a field table without its length prefix).
pub fn parse_credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
            let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
            parts.next().is_none().then_some((user, pass))
        }
        "AMQPLAIN" => {
            let mut framed = (response.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(response);
            let (_, table) = amq_protocol::types::parsing::parse_field_table(&framed[..]).ok()?;
            let text = |key: &str| match table.inner().get(key)? {
                AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
                AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
                _ => None,
            };
            Some((text("LOGIN")?, text("PASSWORD")?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_amqplain_credentials() {
        assert_eq!(parse_credentials("PLAIN", b"\0guest\0pw"), Some(("guest".into(), "pw".into())));
        assert_eq!(parse_credentials("PLAIN", b"guest"), None);
        let mut t = Vec::new();
        for (k, v) in [("LOGIN", "bob"), ("PASSWORD", "pw")] {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(b'S');
            t.extend_from_slice(&(v.len() as u32).to_be_bytes());
            t.extend_from_slice(v.as_bytes());
        }
        assert_eq!(parse_credentials("AMQPLAIN", &t), Some(("bob".into(), "pw".into())));
        assert_eq!(parse_credentials("EXTERNAL", b""), None);
    }
}
