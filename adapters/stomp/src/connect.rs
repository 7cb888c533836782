//! CONNECT / STOMP: version and heart-beat negotiation, login, vhost and its permissions.

use crate::conn::StompError;
use crate::frame::{Frame, Version};
use crate::Stomp;
use junction_core::auth::User;
use junction_core::permissions::Access;
use junction_core::registry::{ConnectionInfo, Link, Protocol, Transport};
use junction_core::VHost;
use rand::distr::{Alphanumeric, SampleString};
use std::sync::Arc;
use std::time::Duration;

/// A session the CONNECT frame opened.
pub struct Opened {
    pub version: Version,
    pub user: User,
    pub vhost: Arc<VHost>,
    pub access: Access,
    /// Counts the connection against the connection limits while it lives.
    pub permit: junction_core::connections::ConnectionPermit,
    /// How often the server must send something (heart-beat), if at all.
    pub send_every: Option<Duration>,
    /// How often the client promised to send something, if at all.
    pub expect_every: Option<Duration>,
    pub connected: Frame,
}

pub async fn open(stomp: &Stomp, frame: &Frame, transport: &Transport) -> Result<Opened, StompError> {
    let peer = transport.link.peer;
    if !matches!(frame.command.as_str(), "CONNECT" | "STOMP") {
        return Err(StompError::new("Illegal command", "You must log in using CONNECT first"));
    }
    let version = Version::negotiate(frame.header("accept-version"))
        .ok_or_else(|| StompError::new("Version mismatch", "Supported protocol versions are 1.0,1.1,1.2").with_header("version", "1.0,1.1,1.2"))?;
    let user = login(stomp, frame, &transport.link).await?;
    // Browsers and stomp.py put the server's host name here: it selects a vhost only by name.
    let vhost = frame
        .header("host")
        .and_then(|h| stomp.broker.vhost(h))
        .or_else(|| stomp.broker.vhost(&stomp.config.default_vhost))
        .ok_or_else(|| StompError::new("Bad CONNECT", "no default vhost"))?;
    let access = stomp.broker.access(&user, vhost.name()).map_err(|e| StompError::new("Bad CONNECT", &e.message))?;
    let protocol_version = match version {
        Version::V10 => "STOMP 1.0",
        Version::V11 => "STOMP 1.1",
        Version::V12 => "STOMP 1.2",
    };
    let client_id = frame.header("client-id").unwrap_or_default().into();
    let info = ConnectionInfo::new(Protocol::Stomp, protocol_version, &access, client_id, transport.link.clone());
    let permit = stomp.broker.admit_connection(info, transport).map_err(|e| {
        tracing::warn!(%peer, reason = %e.message, "STOMP connection refused");
        StompError::new("Bad CONNECT", &e.message)
    })?;
    let (client_sends, client_wants) = heart_beat(frame.header("heart-beat"))?;
    let agreed = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms).max(stomp.config.min_heartbeat));
    let (send_every, expect_every) = (agreed(client_wants), agreed(client_sends));
    let millis = |d: Option<Duration>| d.map_or(0, |d| d.as_millis());
    let mut connected = Frame::new("CONNECTED");
    if version >= Version::V11 {
        connected = connected
            .with("version", version.as_str())
            .with("heart-beat", format!("{},{}", millis(send_every), millis(expect_every)));
    }
    let session = format!("session-{}", Alphanumeric.sample_string(&mut rand::rng(), 22));
    connected = connected.with("server", format!("Junction/{}", env!("CARGO_PKG_VERSION"))).with("session", session);
    Ok(Opened { version, user, vhost, access, permit, send_every, expect_every, connected })
}

/// A `login` header logs in with its passcode; without one, a certificate naming a user (with
/// certificate login on) logs in as that user, else the default user if there is one.
async fn login(stomp: &Stomp, frame: &Frame, link: &Link) -> Result<User, StompError> {
    let peer = link.peer;
    let (name, result) = match (frame.header("login"), &link.cert_user, &stomp.config.default_user) {
        (Some(login), _, _) => {
            (login, stomp.broker.authenticate(login, frame.header("passcode").unwrap_or(""), peer.ip()).await)
        }
        (None, Some(cert_user), _) => (&**cert_user, stomp.broker.authenticate_trusted(cert_user, peer.ip())),
        (None, None, Some(default)) => (default.as_str(), stomp.broker.authenticate_trusted(default, peer.ip())),
        (None, None, None) => return Err(StompError::new("Bad CONNECT", "login required")),
    };
    result.map_err(|e| {
        tracing::warn!(%peer, reason = %e.message, "STOMP login refused");
        StompError::new("Bad CONNECT", &format!("Access refused for user '{name}'"))
    })
}

/// `heart-beat: cx,cy` (absent: 0,0): what the client sends, what it wants from us.
fn heart_beat(header: Option<&str>) -> Result<(u64, u64), StompError> {
    let Some(h) = header else { return Ok((0, 0)) };
    let bad = || StompError::new("Invalid heart-beat header", &format!("'{h}' is not two comma-separated numbers"));
    let (cx, cy) = h.split_once(',').ok_or_else(bad)?;
    Ok((cx.trim().parse().map_err(|_| bad())?, cy.trim().parse().map_err(|_| bad())?))
}
