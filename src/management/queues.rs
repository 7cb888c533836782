//! `/api/queues`: list, declare, delete, purge, peek at messages, bindings.

use super::{body_json, exchanges, json, no_content, ok, written, Api, ApiError, ApiResult, Authed};
use axum::body::Bytes;
use axum::extract::{Path, State};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use junction_core::{Queue, QueueDeclare};
use serde_json::{json, Value as Json};
use std::sync::Arc;

fn queue_json(api: &Api, vhost: &str, q: &Queue) -> Json {
    let c = q.counts();
    let spec = q.spec();
    let [publish, deliver, ack] = api.rates.queue(spec.id);
    let stat = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "name": spec.name,
        "vhost": vhost,
        "durable": spec.durable,
        "auto_delete": spec.auto_delete,
        "exclusive": spec.exclusive,
        "arguments": json::table(&spec.arguments),
        "type": if q.is_stream() { "stream" } else { "classic" },
        "state": "running",
        "messages": c.ready + c.unacked,
        "messages_ready": c.ready,
        "messages_unacknowledged": c.unacked,
        "message_bytes": c.ready_bytes,
        "messages_ram": c.ready + c.unacked - c.paged_out,
        "messages_paged_out": c.paged_out,
        "consumers": c.consumers,
        "message_stats": {
            "publish": stat(&q.stats.published),
            "publish_details": { "rate": publish },
            "deliver_get": stat(&q.stats.delivered),
            "deliver_get_details": { "rate": deliver },
            "ack": stat(&q.stats.acked),
            "ack_details": { "rate": ack },
        },
    })
}

fn list(api: &Api, vhost: Option<&str>) -> ApiResult {
    let mut out = Vec::new();
    for v in api.vhosts(vhost)? {
        let mut queues = v.queues();
        queues.sort_by(|a, b| a.name().cmp(b.name()));
        out.extend(queues.iter().map(|q| queue_json(api, v.name(), q)));
    }
    ok(Json::Array(out))
}

fn find(api: &Api, vhost: &str, name: &str) -> Result<Arc<Queue>, ApiError> {
    api.vhost(vhost)?.queue(name).ok_or_else(|| ApiError::not_found(format!("queue '{name}' in vhost '{vhost}' not found")))
}

pub async fn list_all(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    list(&api, None)
}

pub async fn list_vhost(_: Authed, State(api): State<Arc<Api>>, Path(vhost): Path<String>) -> ApiResult {
    list(&api, Some(&vhost))
}

pub async fn get_one(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>) -> ApiResult {
    let q = find(&api, &vhost, &name)?;
    let mut out = queue_json(&api, &vhost, &q);
    let consumers: Vec<Json> = q
        .consumer_list()
        .into_iter()
        .map(|(tag, ack_required, prefetch)| json!({ "consumer_tag": &*tag, "ack_required": ack_required, "prefetch_count": prefetch }))
        .collect();
    out["consumer_details"] = Json::Array(consumers);
    ok(out)
}

pub async fn put(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> ApiResult {
    let body = body_json(&body)?;
    let v = api.vhost(&vhost)?;
    let flag = |k: &str, default: bool| body.get(k).and_then(Json::as_bool).unwrap_or(default);
    let created = v.queue(&name).is_none();
    v.declare_queue(QueueDeclare {
        name,
        durable: flag("durable", true),
        auto_delete: flag("auto_delete", false),
        arguments: body.get("arguments").map(json::to_table).unwrap_or_default(),
        ..Default::default()
    })?;
    written(created)
}

pub async fn delete(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>) -> ApiResult {
    find(&api, &vhost, &name)?;
    api.vhost(&vhost)?.delete_queue(&name, false, false, 0)?;
    no_content()
}

pub async fn purge(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>) -> ApiResult {
    find(&api, &vhost, &name)?.purge();
    no_content()
}

/// Takes up to `count` messages and puts them back (`ack_requeue_true`, a peek; they come back
/// marked redelivered) or removes them (`ack_requeue_false`).
pub async fn get_messages(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> ApiResult {
    let body = body_json(&body)?;
    let q = find(&api, &vhost, &name)?;
    if q.is_stream() {
        return Err(ApiError::bad_request("streams are read by consumers, not with get"));
    }
    let count = body.get("count").and_then(Json::as_u64).unwrap_or(1).min(10_000) as usize;
    let requeue = match body.get("ackmode").and_then(Json::as_str).unwrap_or("ack_requeue_true") {
        "ack_requeue_true" | "reject_requeue_true" => true,
        "ack_requeue_false" | "reject_requeue_false" => false,
        other => return Err(ApiError::bad_request(format!("unknown ackmode '{other}'"))),
    };
    let base64_only = body.get("encoding").and_then(Json::as_str) == Some("base64");
    let taken: Vec<_> = std::iter::from_fn(|| q.get(false)).take(count).collect();
    let out: Vec<Json> = taken
        .iter()
        .map(|d| {
            let text = std::str::from_utf8(&d.message.body).ok().filter(|_| !base64_only);
            let (payload, encoding) = match text {
                Some(t) => (t.to_string(), "string"),
                None => (BASE64.encode(&d.message.body), "base64"),
            };
            json!({
                "payload": payload,
                "payload_bytes": d.message.body.len(),
                "payload_encoding": encoding,
                "redelivered": d.redelivered,
                "exchange": d.message.exchange,
                "routing_key": d.message.routing_key,
                "message_count": d.remaining,
                "properties": json::properties(&d.message.properties),
            })
        })
        .collect();
    let seqs: Vec<u64> = taken.iter().map(|d| d.seq).collect();
    if requeue {
        q.reject(&seqs, true);
    } else {
        q.ack(&seqs);
    }
    ok(Json::Array(out))
}

pub async fn bindings(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>) -> ApiResult {
    find(&api, &vhost, &name)?;
    let v = api.vhost(&vhost)?;
    let all = exchanges::vhost_bindings(&v);
    let mine = all.into_iter().filter(|b| b["destination_type"] == "queue" && b["destination"] == name.as_str());
    ok(Json::Array(mine.collect()))
}
