//! Junction's MQTT adapter: MQTT 3.1, 3.1.1 and 5.0 on the shared core. Framing and packet
//! conversion in `codec`/`packet`, reading packets off a socket in `reader`, sessions in
//! `session`, client-id ownership in `registry`,
//! the per-connection state machine in `connect` (CONNECT), `conn` (the waiting loop), `client`
//! (state) and `handlers` (packets and deliveries).

mod authz;
mod client;
pub mod codec;
mod conn;
mod connect;
mod handlers;
pub mod mapping;
pub mod packet;
mod reader;
mod registry;
pub mod session;
pub mod sys;

use junction_core::Broker;
use registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Largest packet a client may send (checked from the fixed header).
    pub max_packet_size: u32,
    /// QoS 1/2 messages in flight to one client (also capped by its Receive Maximum).
    pub max_inflight: u16,
    /// Messages an offline (or slow) session keeps; the oldest are dropped beyond it.
    pub max_queued_messages: u64,
    /// A client must send CONNECT within this time.
    pub connect_timeout: Duration,
    /// Clients without a username log in as this user (None: anonymous clients refused).
    pub anonymous_user: Option<String>,
    /// Longest keep-alive (seconds) an MQTT 5 client gets; a longer one (or 0) is replaced
    /// by this in CONNACK's Server Keep Alive. 65535 leaves clients' choices alone.
    pub max_keep_alive: u16,
    pub vhost: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_size: 16 * 1024 * 1024,
            max_inflight: 64,
            max_queued_messages: 1_000_000,
            connect_timeout: Duration::from_secs(10),
            anonymous_user: Some("guest".into()),
            max_keep_alive: u16::MAX,
            vhost: "/".into(),
        }
    }
}

/// Everything connections share.
pub struct Mqtt {
    pub broker: Arc<Broker>,
    pub config: MqttConfig,
    registry: Arc<Registry>,
    pub stats: sys::Stats,
}

impl Mqtt {
    /// Prepares the adapter: drops sessions that expired while the broker was down and
    /// schedules the expiry of the others.
    pub fn new(broker: Arc<Broker>, config: MqttConfig) -> Arc<Mqtt> {
        let mqtt = Arc::new(Mqtt { broker, config, registry: Registry::new(), stats: Default::default() });
        connect::expire_stored_sessions(&mqtt);
        mqtt
    }

    /// Serves one MQTT byte stream (TCP, TLS or WebSocket) until it ends (`connect::run`) or
    /// `shut_down` is called.
    pub fn serve_stream<S>(self: Arc<Self>, stream: S, link: junction_core::registry::Link) -> impl std::future::Future<Output = ()> + Send
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        connect::run(self, stream, link)
    }

    /// Tells every connection, and every one that logs in from now on, to leave (MQTT 5
    /// clients are told why: "server shutting down"). Connections do not each watch for the
    /// broker's shutdown: that would be one more waiter kept by every idle connection.
    pub fn shut_down(&self) {
        self.registry.shut_down();
    }
}

/// Accepts TCP connections until `shutdown` turns true (then tells the connections to leave),
/// and keeps `$SYS` up to date.
pub async fn serve(listener: TcpListener, mqtt: Arc<Mqtt>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(sys::publish_periodically(mqtt.clone(), shutdown.clone()));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(mqtt.clone().serve_stream(stream, junction_core::registry::Link::tcp(peer)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                mqtt.shut_down();
                return;
            }
        }
    }
}
