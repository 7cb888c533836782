//! `/api/connections` (list, show, close) and `/api/channels`, from the connection registry.

use super::{no_content, ok, Api, ApiError, ApiResult, Authed};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use junction_core::registry::ConnectionEntry;
use serde_json::{json, Value as Json};
use std::sync::Arc;

fn connection_json(api: &Api, c: &ConnectionEntry) -> Json {
    let t = c.traffic.snapshot();
    let (recv_rate, send_rate) = api.rates.connection(c.id);
    let info = &c.info;
    json!({
        "name": c.name(),
        "protocol": info.protocol_version,
        "type": info.protocol.key(),
        "user": &*info.user,
        "vhost": &*info.vhost,
        "client_id": &*info.client_id,
        "peer_host": info.link.peer.ip().to_string(),
        "peer_port": info.link.peer.port(),
        "ssl": info.link.tls,
        "websocket": info.link.websocket,
        "connected_at": c.connected_at_ms,
        "state": "running",
        "channels": c.channels().len(),
        "recv_oct": t.recv_bytes,
        "send_oct": t.sent_bytes,
        "recv_oct_details": { "rate": recv_rate },
        "send_oct_details": { "rate": send_rate },
        "messages_in": t.messages_in,
        "messages_out": t.messages_out,
    })
}

fn find(api: &Api, name: &str) -> Result<Arc<ConnectionEntry>, ApiError> {
    api.broker.registry().find(name).ok_or_else(|| ApiError::not_found(format!("connection '{name}' not found")))
}

pub async fn list(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    ok(Json::Array(api.broker.registry().list().iter().map(|c| connection_json(&api, c)).collect()))
}

pub async fn get_one(_: Authed, State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    let connection = find(&api, &name)?;
    ok(connection_json(&api, &connection))
}

/// Closes a connection; the client is told why (header `X-Reason`, as in RabbitMQ).
pub async fn close(_: Authed, State(api): State<Arc<Api>>, Path(name): Path<String>, headers: HeaderMap) -> ApiResult {
    let connection = find(&api, &name)?;
    let reason = headers.get("x-reason").and_then(|v| v.to_str().ok()).unwrap_or("Closed via management API");
    connection.request_close(reason);
    no_content()
}

pub async fn channels(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    let mut out = Vec::new();
    for c in api.broker.registry().list() {
        for number in c.channels() {
            out.push(json!({
                "name": format!("{} ({number})", c.name()),
                "number": number,
                "connection_details": { "name": c.name(), "peer_host": c.info.link.peer.ip().to_string(), "peer_port": c.info.link.peer.port() },
                "user": &*c.info.user,
                "vhost": &*c.info.vhost,
            }));
        }
    }
    ok(Json::Array(out))
}
