//! TLS listeners (amqps, mqtts, stomps): accept TCP, complete the TLS handshake within a
//! timeout, then hand the encrypted stream to the protocol adapter like a plain one.

use junction_core::registry::Link;
use junction_tls::{Reloadable, TlsStream};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts until `shutdown`; `serve` runs each established TLS connection, told who the peer
/// is (and, with certificate login on, which user its certificate names).
pub async fn serve<F, Fut>(listener: TcpListener, tls: Arc<Reloadable>, mut shutdown: watch::Receiver<bool>, serve: F)
where
    F: Fn(TlsStream<TcpStream>, Link) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (tls, serve) = (tls.clone(), serve.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let cert_user = tls.certificate_user(&stream);
                                serve(stream, Link { peer, tls: true, websocket: false, cert_user }).await
                            }
                            Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Re-reads the certificate files on every SIGHUP; live connections keep their session.
pub async fn reload_on_sighup(tls: Arc<Reloadable>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => tracing::error!(error = %e, "TLS certificate reload failed; the previous one stays in use"),
        }
    }
}
