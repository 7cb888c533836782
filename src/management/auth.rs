//! HTTP Basic authentication against the broker's users, with the tags that decide what a user
//! may do through the API.

use super::{Api, ApiError};
use crate::http::Peer;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use junction_core::auth::User;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a checked login is remembered: the dashboard polls every few seconds and argon2 is
/// deliberately slow.
const REMEMBER_LOGIN: Duration = Duration::from_secs(60);

/// Recently checked logins: (user, keyed hash of the password, client address) -> user and when
/// checked. The address is part of the key because a login's outcome depends on it (`guest` only
/// from loopback). The hash key is random per process, so an entry says nothing about the
/// password outside it.
#[derive(Default)]
pub struct LoginCache {
    hasher: RandomState,
    entries: Mutex<HashMap<(String, u64, IpAddr), (User, Instant)>>,
}

impl LoginCache {
    fn key(&self, name: &str, password: &str, peer: IpAddr) -> (String, u64, IpAddr) {
        (name.to_string(), self.hasher.hash_one(password), peer)
    }

    fn get(&self, name: &str, password: &str, peer: IpAddr) -> Option<User> {
        let entries = self.entries.lock();
        let (user, at) = entries.get(&self.key(name, password, peer))?;
        (at.elapsed() < REMEMBER_LOGIN).then(|| user.clone())
    }

    fn put(&self, name: &str, password: &str, peer: IpAddr, user: User) {
        let mut entries = self.entries.lock();
        if entries.len() > 1000 {
            entries.retain(|_, (_, at)| at.elapsed() < REMEMBER_LOGIN);
        }
        entries.insert(self.key(name, password, peer), (user, Instant::now()));
    }

    /// Forgets a user's logins (password or tags changed, user deleted).
    pub fn forget(&self, name: &str) {
        self.entries.lock().retain(|(n, _, _), _| n != name);
    }
}

/// A request from a logged-in API user.
pub struct Authed {
    pub user: User,
}

impl Authed {
    pub fn is_admin(&self) -> bool {
        self.user.tags.iter().any(|t| t == "administrator")
    }
}

/// Why a request was not let in.
pub enum Refused {
    /// No or bad credentials: 401 with a Basic challenge.
    Unauthorized(String),
    Forbidden(String),
    /// A body that is not `application/json`.
    UnsupportedMediaType,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Unauthorized(reason) => {
                let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "not_authorised", reason).into_response();
                r.headers_mut().insert(header::WWW_AUTHENTICATE, "Basic realm=\"Junction\"".parse().expect("valid header"));
                r
            }
            Refused::Forbidden(reason) => ApiError::new(StatusCode::FORBIDDEN, "not_authorised", reason).into_response(),
            Refused::UnsupportedMediaType => {
                let reason = "request bodies must be application/json";
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", reason).into_response()
            }
        }
    }
}

impl FromRequestParts<Arc<Api>> for Authed {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Authed, Refused> {
        let (name, password) = basic_credentials(parts).ok_or_else(|| Refused::Unauthorized("Not authorised".into()))?;
        let peer = parts.extensions.get::<ConnectInfo<Peer>>().map(|c| c.0 .0.peer.ip());
        let peer = peer.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let user = match api.logins.get(&name, &password, peer) {
            Some(user) => user,
            None => {
                let user = api.broker.authenticate(&name, &password, peer).await.map_err(|e| {
                    tracing::warn!(user = %name, %peer, reason = %e.message, "management API login refused");
                    Refused::Unauthorized("Login failed".into())
                })?;
                api.logins.put(&name, &password, peer, user.clone());
                user
            }
        };
        let authed = Authed { user };
        let reader = authed.user.tags.iter().any(|t| matches!(t.as_str(), "administrator" | "monitoring" | "management"));
        if !reader {
            return Err(Refused::Forbidden("Not management user".into()));
        }
        let writes = parts.method != Method::GET && parts.method != Method::HEAD;
        if writes && !authed.is_admin() {
            return Err(Refused::Forbidden("Not administrator user".into()));
        }
        if writes && !json_or_empty(parts) {
            // A cross-site HTML form can POST text/plain with the browser's cached Basic
            // credentials; JSON needs a CORS preflight this API never grants.
            return Err(Refused::UnsupportedMediaType);
        }
        Ok(authed)
    }
}

/// True for a request without a body, or with a JSON one.
fn json_or_empty(parts: &Parts) -> bool {
    let has_body = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|n| n != "0")
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let json = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    !has_body || json
}

fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_login_counts_only_for_the_same_password_and_address() {
        let cache = LoginCache::default();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.0.0.9".parse().unwrap();
        cache.put("guest", "guest", local, User { name: "guest".into(), tags: vec![] });
        assert!(cache.get("guest", "guest", local).is_some());
        assert!(cache.get("guest", "guest", remote).is_none(), "guest from loopback says nothing about elsewhere");
        assert!(cache.get("guest", "other", local).is_none());
        cache.forget("guest");
        assert!(cache.get("guest", "guest", local).is_none());
    }
}
