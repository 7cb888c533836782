//! `/api/overview` and the health checks.

use super::{ok, Api, ApiResult, Authed};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use junction_core::registry::Protocol;
use serde_json::json;
use std::sync::Arc;

pub async fn overview(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    let registry = api.broker.registry();
    let (mut queues, mut exchanges, mut consumers) = (0, 0, 0);
    let (mut ready, mut unacked) = (0u64, 0u64);
    for vhost in api.broker.vhosts() {
        exchanges += vhost.exchanges().len();
        for q in vhost.queues() {
            let c = q.counts();
            queues += 1;
            consumers += c.consumers;
            ready += c.ready as u64;
            unacked += c.unacked as u64;
        }
    }
    let connections = registry.list();
    let channels: usize = connections.iter().map(|c| c.channels().len()).sum();
    let (publish_rate, deliver_rate) = api.rates.messages();
    let (published, delivered) = Protocol::ALL.iter().map(|p| registry.totals(*p)).fold((0, 0), |(a, b), t| (a + t.messages_in, b + t.messages_out));
    let by_protocol: serde_json::Map<String, serde_json::Value> =
        Protocol::ALL.iter().map(|p| (p.key().to_string(), json!(registry.open_count(*p)))).collect();
    let (memory, disk) = api.broker.resources().alarms();
    let listeners: Vec<_> = api
        .listeners
        .iter()
        .map(|l| json!({ "protocol": l.protocol, "ip_address": l.addr.ip().to_string(), "port": l.addr.port() }))
        .collect();
    ok(json!({
        "product_name": "Junction",
        "product_version": env!("CARGO_PKG_VERSION"),
        "management_version": env!("CARGO_PKG_VERSION"),
        "rates_mode": "basic",
        "node": node_name(),
        "object_totals": {
            "connections": connections.len(),
            "channels": channels,
            "exchanges": exchanges,
            "queues": queues,
            "consumers": consumers,
        },
        "queue_totals": { "messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked },
        "message_stats": {
            "publish": published,
            "publish_details": { "rate": publish_rate },
            "deliver_get": delivered,
            "deliver_get_details": { "rate": deliver_rate },
        },
        "listeners": listeners,
        "connections_by_protocol": by_protocol,
        "alarms": { "memory": memory, "disk": disk },
    }))
}

pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("junction@{}", if host.is_empty() { "localhost" } else { &host })
}

/// 200 while no resource alarm is raised, 503 otherwise (RabbitMQ's `health/checks/alarms`).
pub async fn alarms(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    let (memory, disk) = api.broker.resources().alarms();
    if !memory && !disk {
        return ok(json!({ "status": "ok" }));
    }
    let raised: Vec<&str> = [(memory, "memory"), (disk, "disk")].into_iter().filter(|(on, _)| *on).map(|(_, n)| n).collect();
    let body = json!({ "status": "failed", "reason": format!("resource alarm(s) in effect: {}", raised.join(", ")) });
    let mut response = super::json_response(&body);
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    Ok(response.into_response())
}

pub async fn alive(_: Authed) -> ApiResult {
    ok(json!({ "status": "ok" }))
}
