//! The management HTTP API under `/api`, shaped like RabbitMQ's management API where the two
//! overlap (docs/management.md), and the Prometheus endpoint `/metrics`. Requests authenticate
//! with HTTP Basic as broker users: the `administrator` tag may do everything, `monitoring` and
//! `management` may read.

mod access;
mod auth;
mod connections;
mod definitions;
mod exchanges;
mod json;
mod metrics;
mod mqtt;
mod overview;
mod queues;
mod rates;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use junction_core::{Broker, CoreError, ErrorKind, VHost};
use std::sync::Arc;

pub use auth::Authed;
pub use rates::Rates;

/// A listener as `/api/overview` lists it.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    pub protocol: &'static str,
    pub addr: std::net::SocketAddr,
}

/// What the API handlers share.
pub struct Api {
    pub broker: Arc<Broker>,
    pub listeners: Vec<ListenerInfo>,
    pub rates: Arc<Rates>,
    logins: auth::LoginCache,
}

impl Api {
    pub fn new(broker: Arc<Broker>, listeners: Vec<ListenerInfo>) -> Arc<Api> {
        let rates = Rates::start(broker.clone());
        Arc::new(Api { broker, listeners, rates, logins: auth::LoginCache::default() })
    }

    fn vhost(&self, name: &str) -> Result<Arc<VHost>, ApiError> {
        self.broker.vhost(name).ok_or_else(|| ApiError::not_found(format!("vhost '{name}' not found")))
    }

    /// The vhosts a path names: one (`/api/queues/{vhost}`) or all (`/api/queues`).
    fn vhosts(&self, name: Option<&str>) -> Result<Vec<Arc<VHost>>, ApiError> {
        match name {
            Some(name) => Ok(vec![self.vhost(name)?]),
            None => {
                let mut all = self.broker.vhosts();
                all.sort_by(|a, b| a.name().cmp(b.name()));
                Ok(all)
            }
        }
    }
}

/// Every route of the API, and `/metrics`.
pub fn routes<S: Clone + Send + Sync + 'static>(api: Arc<Api>) -> Router<S> {
    Router::new()
        .route("/api/overview", get(overview::overview))
        .route("/api/whoami", get(access::whoami))
        .route("/api/health/checks/alarms", get(overview::alarms))
        .route("/api/health/checks/alive", get(overview::alive))
        .route("/api/vhosts", get(access::list_vhosts))
        .route("/api/vhosts/{vhost}", get(access::get_vhost).put(access::put_vhost).delete(access::delete_vhost))
        .route("/api/users", get(access::list_users))
        .route("/api/users/{user}", get(access::get_user).put(access::put_user).delete(access::delete_user))
        .route("/api/permissions", get(access::list_permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(access::get_permission).put(access::put_permission).delete(access::delete_permission),
        )
        .route("/api/exchanges", get(exchanges::list_all))
        .route("/api/exchanges/{vhost}", get(exchanges::list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchanges::get_one).put(exchanges::put).delete(exchanges::delete),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(exchanges::publish))
        .route("/api/bindings", get(exchanges::bindings_all))
        .route("/api/bindings/{vhost}", get(exchanges::bindings_vhost))
        .route("/api/bindings/{vhost}/e/{exchange}/q/{queue}", get(exchanges::bindings_between).post(exchanges::bind))
        .route("/api/bindings/{vhost}/e/{exchange}/q/{queue}/{props}", delete(exchanges::unbind))
        .route("/api/queues", get(queues::list_all))
        .route("/api/queues/{vhost}", get(queues::list_vhost))
        .route("/api/queues/{vhost}/{name}", get(queues::get_one).put(queues::put).delete(queues::delete))
        .route("/api/queues/{vhost}/{name}/contents", delete(queues::purge))
        .route("/api/queues/{vhost}/{name}/get", post(queues::get_messages))
        .route("/api/queues/{vhost}/{name}/bindings", get(queues::bindings))
        .route("/api/connections", get(connections::list))
        .route("/api/connections/{name}", get(connections::get_one).delete(connections::close))
        .route("/api/channels", get(connections::channels))
        .route("/api/definitions", get(definitions::export).post(definitions::import))
        .route("/api/backup", post(definitions::backup))
        .route("/api/mqtt/sessions", get(mqtt::sessions))
        .route("/api/mqtt/retained", get(mqtt::retained))
        .route("/metrics", get(metrics::metrics))
        .with_state(api)
}

/// An API error as RabbitMQ shapes it: `{"error": ..., "reason": ...}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    reason: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError { status, error, reason: reason.into() }
    }

    fn not_found(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Object Not Found", reason)
    }

    fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let status = match e.kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::AccessRefused | ErrorKind::ResourceLocked => StatusCode::FORBIDDEN,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, "bad_request", e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "reason": self.reason });
        let mut response = json_response(&body);
        *response.status_mut() = self.status;
        response
    }
}

pub type ApiResult = Result<Response, ApiError>;

fn json_response(value: &serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn ok(value: serde_json::Value) -> ApiResult {
    Ok(json_response(&value))
}

/// 201 for a PUT that created something, 204 otherwise (RabbitMQ's answers).
fn written(created: bool) -> ApiResult {
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT }.into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A request body as JSON (an empty body is `{}`).
fn body_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}
