//! Junction's STOMP adapter: STOMP 1.0, 1.1 and 1.2 (also over WebSocket) on the shared core,
//! with RabbitMQ's destination grammar. Framing in `codec`/`frame`; the connection's state
//! machine in `connect` (CONNECT), `conn` (the loop), `send` (SEND, transactions, receipts) and
//! `subscribe` (SUBSCRIBE, ACK/NACK, deliveries).

pub mod codec;
mod conn;
mod connect;
pub mod convert;
pub mod destination;
pub mod frame;
mod send;
mod subscribe;

use junction_core::Broker;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct StompConfig {
    pub limits: codec::Limits,
    /// A client must send CONNECT within this time.
    pub connect_timeout: Duration,
    /// Login for clients that send none (RabbitMQ's `stomp.default_user`); None refuses them.
    pub default_user: Option<String>,
    /// The vhost for clients whose `host` header names no existing vhost.
    pub default_vhost: String,
    /// Shortest heart-beat interval the server agrees to, either way.
    pub min_heartbeat: Duration,
}

impl Default for StompConfig {
    fn default() -> Self {
        StompConfig {
            limits: codec::Limits::default(),
            connect_timeout: Duration::from_secs(10),
            default_user: Some("guest".into()),
            default_vhost: "/".into(),
            min_heartbeat: Duration::from_millis(500),
        }
    }
}

/// What every STOMP connection shares.
pub struct Stomp {
    pub broker: Arc<Broker>,
    pub config: StompConfig,
}

impl Stomp {
    pub fn new(broker: Arc<Broker>, config: StompConfig) -> Arc<Stomp> {
        Arc::new(Stomp { broker, config })
    }

    /// Serves one STOMP byte stream (TCP, TLS or WebSocket) until it ends.
    pub async fn serve_stream<S>(self: Arc<Self>, stream: S, link: junction_core::registry::Link, shutdown: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        conn::run(self, stream, link, shutdown).await
    }
}

/// Accepts TCP connections until `shutdown` turns true.
pub async fn serve(listener: TcpListener, stomp: Arc<Stomp>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(stomp.clone().serve_stream(stream, junction_core::registry::Link::tcp(peer), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "STOMP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}
