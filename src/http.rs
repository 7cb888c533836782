//! The HTTP listener: MQTT over WebSocket at `/mqtt` (subprotocols `mqtt` and `mqttv3.1`) and
//! STOMP over WebSocket at `/ws` (subprotocols `v12.stomp`, `v11.stomp`, `v10.stomp`), and the
//! demo page at `/demo`, the management API under `/api` and `/metrics`.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::serve::{IncomingStream, Listener};
use junction_core::registry::Link;
use junction_tls::{Reloadable, TlsStream};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Largest WebSocket message accepted; MQTT's own packet limit applies inside it.
const MAX_WS_MESSAGE: usize = 16 * 1024 * 1024;
/// Buffer between the WebSocket and the protocol adapter's byte stream.
const BRIDGE_BUFFER: usize = 64 * 1024;

/// The protocol adapters reachable over WebSocket (None: that protocol is turned off).
#[derive(Clone)]
pub struct Adapters {
    pub mqtt: Option<Arc<junction_mqtt::Mqtt>>,
    pub stomp: Option<Arc<junction_stomp::Stomp>>,
}

#[derive(Clone)]
struct AppState {
    adapters: Adapters,
    shutdown: watch::Receiver<bool>,
}

/// How a client reached the HTTP listener: over WebSocket, a connection's link.
#[derive(Clone, Debug)]
pub struct Peer(pub Link);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer(Link { websocket: true, ..Link::tcp(*stream.remote_addr()) })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        Peer(Link { websocket: true, ..stream.remote_addr().clone() })
    }
}

/// HTTPS: TLS handshakes run in their own tasks (`tls_listener::serve`), so a slow client
/// delays nobody; finished ones queue up here for axum.
pub struct TlsListener {
    established: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, Link)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: Arc<Reloadable>, shutdown: watch::Receiver<bool>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, established) = mpsc::channel(64);
        let hand_over = move |stream, link| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((stream, link)).await;
            }
        };
        tokio::spawn(crate::tls_listener::serve(listener, tls, shutdown, hand_over));
        Ok(TlsListener { established, local })
    }
}

/// Its address type is a whole `Link` so that a WebSocket connection learns the user its TLS
/// certificate names (certificate login); `local_addr` gives the listener's own address.
impl Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = Link;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.established.recv().await {
            Some(established) => established,
            // The accept loop ended (shutdown): wait for axum's graceful shutdown to stop us.
            None => futures::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Link> {
        Ok(Link { tls: true, ..Link::tcp(self.local) })
    }
}

pub async fn serve<L>(
    listener: L,
    adapters: Adapters,
    api: Arc<crate::management::Api>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
    Peer: for<'a> Connected<IncomingStream<'a, L>>,
{
    let state = AppState { adapters, shutdown: shutdown.clone() };
    let app = Router::new()
        .route("/mqtt", get(mqtt_ws))
        .route("/ws", get(stomp_ws))
        .merge(crate::demo::routes())
        .merge(crate::dashboard::routes())
        .merge(crate::management::routes(api))
        .with_state(state);
    let mut stop = shutdown;
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

async fn mqtt_ws(
    ws: WebSocketUpgrade,
    ConnectInfo(Peer(link)): ConnectInfo<Peer>,
    State(state): State<AppState>,
) -> impl IntoResponse {
    let Some(mqtt) = state.adapters.mqtt else {
        return (axum::http::StatusCode::NOT_FOUND, "MQTT is turned off").into_response();
    };
    ws.protocols(["mqtt", "mqttv3.1"])
        .max_message_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            let (broker_side, bridge_side) = tokio::io::duplex(BRIDGE_BUFFER);
            tokio::spawn(bridge(socket, bridge_side));
            mqtt.serve_stream(broker_side, link).await;
        })
        .into_response()
}

async fn stomp_ws(
    ws: WebSocketUpgrade,
    ConnectInfo(Peer(link)): ConnectInfo<Peer>,
    State(state): State<AppState>,
) -> impl IntoResponse {
    let Some(stomp) = state.adapters.stomp else {
        return (axum::http::StatusCode::NOT_FOUND, "STOMP is turned off").into_response();
    };
    ws.protocols(["v12.stomp", "v11.stomp", "v10.stomp"])
        .max_message_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            let (broker_side, bridge_side) = tokio::io::duplex(BRIDGE_BUFFER);
            tokio::spawn(bridge(socket, bridge_side));
            stomp.serve_stream(broker_side, link, state.shutdown).await;
        })
        .into_response()
}

/// Copies WebSocket messages (binary or text) into a byte stream and the stream's bytes back
/// out as binary messages. Packets and frames may span messages and one message may hold
/// several: the adapter's framing sees only bytes.
async fn bridge(socket: WebSocket, stream: DuplexStream) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let inbound = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_str().as_bytes()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; BRIDGE_BUFFER];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx.send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    // Either side ending ends the bridge: the other half is dropped, closing its end.
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}
