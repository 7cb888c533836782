//! `/api/definitions`: every definition (users, vhosts, permissions, exchanges, queues,
//! bindings) exported as one JSON document in RabbitMQ's format, and imported back.

use super::{body_json, exchanges, json, ok, Api, ApiError, ApiResult, Authed};
use axum::body::Bytes;
use axum::extract::State;
use junction_core::exchange::{ExchangeKind, ExchangeSpec};
use junction_core::permissions::{PermissionRecord, TopicPermissionRecord};
use junction_core::persist::DestinationKind;
use junction_core::QueueDeclare;
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// Administrators only: the document holds every user's password hash.
pub async fn export(authed: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    if !authed.is_admin() {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, "not_authorised", "Not administrator user"));
    }
    let users: Vec<Json> = api
        .broker
        .users()
        .iter()
        .map(|u| json!({ "name": u.name, "password_hash": u.password_hash, "hashing_algorithm": "argon2id", "tags": u.tags }))
        .collect();
    let vhosts = api.vhosts(None)?;
    let permissions: Vec<Json> = api
        .broker
        .permissions()
        .records()
        .iter()
        .map(|p| json!({ "user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read }))
        .collect();
    let topic_permissions: Vec<Json> = api
        .broker
        .permissions()
        .topic_records()
        .iter()
        .map(|t| json!({ "user": t.user, "vhost": t.vhost, "exchange": t.exchange, "write": t.write, "read": t.read }))
        .collect();
    let (mut queues, mut exchange_list, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    for v in &vhosts {
        for q in v.queues().iter().filter(|q| q.is_durable() && q.owner().is_none()) {
            let s = q.spec();
            queues.push(json!({ "name": s.name, "vhost": v.name(), "durable": true, "auto_delete": s.auto_delete, "arguments": json::table(&s.arguments) }));
        }
        for x in v.exchanges().iter().filter(|x| x.spec.durable && !x.name().starts_with("amq.")) {
            let s = &x.spec;
            exchange_list.push(json!({
                "name": s.name, "vhost": v.name(), "type": s.kind.as_str(), "durable": true,
                "auto_delete": s.auto_delete, "internal": s.internal, "arguments": json::table(&s.arguments),
            }));
        }
        // The default exchange's bindings are implicit; the others are definitions.
        bindings.extend(exchanges::vhost_bindings(v).into_iter().filter(|b| b["source"] != "").map(|mut b| {
            b.as_object_mut().map(|o| o.remove("properties_key"));
            b
        }));
    }
    ok(json!({
        "product_name": "Junction",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": users,
        "vhosts": vhosts.iter().map(|v| json!({ "name": v.name() })).collect::<Vec<_>>(),
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "exchanges": exchange_list,
        "queues": queues,
        "bindings": bindings,
    }))
}

fn text<'a>(item: &'a Json, key: &str) -> &'a str {
    item.get(key).and_then(Json::as_str).unwrap_or("")
}

fn items<'a>(doc: &'a Json, key: &str) -> impl Iterator<Item = &'a Json> {
    doc.get(key).and_then(Json::as_array).into_iter().flatten()
}

/// Imports a definitions document (an export of this API, or RabbitMQ's format with argon2
/// password hashes). Existing objects are updated where that is allowed.
pub async fn import(_: Authed, State(api): State<Arc<Api>>, body: Bytes) -> ApiResult {
    let doc = body_json(&body)?;
    let broker = &api.broker;
    let failed = |what: &str, e: junction_core::CoreError| ApiError::bad_request(format!("{what}: {}", e.message));
    for v in items(&doc, "vhosts") {
        if broker.vhost(text(v, "name")).is_none() {
            broker.add_vhost(text(v, "name"));
        }
    }
    for u in items(&doc, "users") {
        broker.put_user(text(u, "name"), text(u, "password_hash"), super::access::tags(u)).map_err(|e| failed(&format!("user '{}'", text(u, "name")), e))?;
        api.logins.forget(text(u, "name"));
    }
    for p in items(&doc, "permissions") {
        let record = PermissionRecord {
            user: text(p, "user").into(),
            vhost: text(p, "vhost").into(),
            configure: text(p, "configure").into(),
            write: text(p, "write").into(),
            read: text(p, "read").into(),
        };
        broker.set_permissions(record).map_err(|e| failed("permission", e))?;
    }
    for t in items(&doc, "topic_permissions") {
        let record = TopicPermissionRecord {
            user: text(t, "user").into(),
            vhost: text(t, "vhost").into(),
            exchange: text(t, "exchange").into(),
            write: text(t, "write").into(),
            read: text(t, "read").into(),
        };
        broker.set_topic_permissions(record).map_err(|e| failed("topic permission", e))?;
    }
    for x in items(&doc, "exchanges") {
        let kind = ExchangeKind::parse(text(x, "type")).ok_or_else(|| ApiError::bad_request(format!("exchange type '{}'", text(x, "type"))))?;
        let flag = |k: &str| x.get(k).and_then(Json::as_bool).unwrap_or(false);
        let spec = ExchangeSpec {
            name: text(x, "name").into(),
            kind,
            durable: x.get("durable").and_then(Json::as_bool).unwrap_or(true),
            auto_delete: flag("auto_delete"),
            internal: flag("internal"),
            arguments: x.get("arguments").map(json::to_table).unwrap_or_default(),
        };
        api.vhost(text(x, "vhost"))?.declare_exchange(spec, false).map_err(|e| failed("exchange", e))?;
    }
    for q in items(&doc, "queues") {
        let declare = QueueDeclare {
            name: text(q, "name").into(),
            durable: q.get("durable").and_then(Json::as_bool).unwrap_or(true),
            auto_delete: q.get("auto_delete").and_then(Json::as_bool).unwrap_or(false),
            arguments: q.get("arguments").map(json::to_table).unwrap_or_default(),
            ..Default::default()
        };
        api.vhost(text(q, "vhost"))?.declare_queue(declare).map_err(|e| failed("queue", e))?;
    }
    for b in items(&doc, "bindings") {
        let kind = if text(b, "destination_type") == "exchange" { DestinationKind::Exchange } else { DestinationKind::Queue };
        let arguments = b.get("arguments").map(json::to_table).unwrap_or_default();
        api.vhost(text(b, "vhost"))?
            .bind(text(b, "source"), kind, text(b, "destination"), text(b, "routing_key"), arguments, 0)
            .map_err(|e| failed("binding", e))?;
    }
    super::no_content()
}

/// Writes a consistent copy of the store (a RocksDB checkpoint) into `{"path": dir}` on the
/// broker's machine; the directory must not exist yet. Start a broker with `--data-dir` set to
/// a directory holding that copy as `store` to restore it (docs/operations.md).
pub async fn backup(_: Authed, State(api): State<Arc<Api>>, body: Bytes) -> ApiResult {
    let body = body_json(&body)?;
    let path = body.get("path").and_then(Json::as_str).filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("a backup needs a path"))?;
    let dir = std::path::PathBuf::from(path);
    if dir.exists() {
        return Err(ApiError::bad_request(format!("{path} already exists")));
    }
    let store = api.broker.store().clone();
    let target = dir.clone();
    tokio::task::spawn_blocking(move || store.checkpoint(&target))
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .map_err(|e| ApiError::bad_request(format!("backup to {path} failed: {e}")))?;
    tracing::info!(path, "store backup written");
    ok(json!({ "path": path }))
}
