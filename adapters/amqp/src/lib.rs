//! Junction's AMQP 0-9-1 adapter: framing (`codec`), negotiation (`handshake`), the connection
//! loop (`connection`) and channels (`channel`), translating frames into core calls.

mod channel;
pub mod codec;
mod confirms;
mod connection;
pub mod convert;
pub mod error;
mod handshake;
mod session;

use codec::FrameCodec;
use handshake::Refusal;
use junction_core::registry::{Counted, Link};
use junction_core::Broker;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::codec::FramedRead;

/// Listener settings, with RabbitMQ's defaults.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    pub frame_max: u32,
    pub channel_max: u16,
    /// Heartbeat interval the server proposes, in seconds (0 disables).
    pub heartbeat: u16,
    /// A client that has not finished opening its connection by then is dropped.
    pub handshake_timeout: Duration,
    pub max_message_size: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            handshake_timeout: Duration::from_secs(10),
            max_message_size: 128 * 1024 * 1024,
        }
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, config: AmqpConfig, mut shutdown: watch::Receiver<bool>) {
    let config = Arc::new(config);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (broker, config, shutdown) = (broker.clone(), config.clone(), shutdown.clone());
                    tokio::spawn(serve_stream(stream, Link::tcp(peer), broker, config, shutdown));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AMQP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Serves one AMQP byte stream (TCP or TLS) until it ends.
pub async fn serve_stream<S>(stream: S, link: Link, broker: Arc<Broker>, config: Arc<AmqpConfig>, shutdown: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = link.peer;
    let (stream, transport) = Counted::attach(stream, link);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let opened = tokio::time::timeout(config.handshake_timeout, async {
        handshake::read_protocol_header(&mut rd, &mut wr).await?;
        // Until tune-ok, frames may be as large as the frame_max we are about to offer.
        let mut reader = FramedRead::new(rd, FrameCodec { frame_max: config.frame_max as usize });
        let negotiated = handshake::negotiate(&mut reader, &mut wr, &broker, &config, &transport).await;
        Ok::<_, Refusal>((reader, negotiated))
    })
    .await;
    let (reader, negotiated) = match opened {
        Ok(Ok((reader, Ok(n)))) => (reader, n),
        Ok(Ok((_, Err(Refusal::Close(e))))) => return refuse(&mut wr, e).await,
        Ok(Err(Refusal::Close(e))) => return refuse(&mut wr, e).await,
        Ok(Ok((_, Err(Refusal::HangUp)))) | Ok(Err(Refusal::HangUp)) => return,
        Err(_) => {
            tracing::info!(%peer, "AMQP handshake timed out");
            return;
        }
    };
    let id = broker.next_connection_id();
    tracing::debug!(%peer, user = %negotiated.user.name, vhost = %negotiated.vhost.name(), "AMQP connection open");
    let conn = connection::Connection::new(reader, wr, negotiated, broker, id, config.max_message_size);
    conn.run(shutdown).await;
    tracing::debug!(%peer, "AMQP connection closed");
}

/// Sends connection.close during negotiation and hangs up.
async fn refuse<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, e: error::AmqpError) {
    use amq_protocol::protocol::{connection, AMQPClass};
    let close = connection::Close {
        reply_code: e.code,
        reply_text: convert::short(&e.reply_text()),
        class_id: e.class_id,
        method_id: e.method_id,
    };
    let mut out = bytes::BytesMut::new();
    codec::FrameWriter { out: &mut out }.method(0, AMQPClass::Connection(connection::AMQPMethod::Close(close)));
    let _ = wr.write_all(&out).await;
    // Give the client a moment to read the reason before the socket goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = wr.shutdown().await;
}
