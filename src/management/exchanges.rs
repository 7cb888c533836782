//! `/api/exchanges`, publishing through an exchange, and `/api/bindings`.

use super::{body_json, json, no_content, ok, written, Api, ApiError, ApiResult, Authed};
use axum::body::Bytes;
use axum::extract::{Path, State};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use junction_core::exchange::{Binding, Destination, ExchangeKind, ExchangeSpec};
use junction_core::persist::DestinationKind;
use junction_core::{Message, VHost};
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// The default exchange, as RabbitMQ's API names it in paths.
const DEFAULT_EXCHANGE: &str = "amq.default";

fn exchange_name(path_name: &str) -> &str {
    if path_name == DEFAULT_EXCHANGE {
        ""
    } else {
        path_name
    }
}

fn exchange_json(vhost: &str, spec: &ExchangeSpec) -> Json {
    json!({
        "name": spec.name,
        "vhost": vhost,
        "type": spec.kind.as_str(),
        "durable": spec.durable,
        "auto_delete": spec.auto_delete,
        "internal": spec.internal,
        "arguments": json::table(&spec.arguments),
    })
}

fn list(api: &Api, vhost: Option<&str>) -> ApiResult {
    let mut out = Vec::new();
    for v in api.vhosts(vhost)? {
        let mut exchanges = v.exchanges();
        exchanges.sort_by(|a, b| a.name().cmp(b.name()));
        let default = ExchangeSpec {
            name: String::new(),
            kind: ExchangeKind::Direct,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: Default::default(),
        };
        out.push(exchange_json(v.name(), &default));
        out.extend(exchanges.iter().map(|x| exchange_json(v.name(), &x.spec)));
    }
    ok(Json::Array(out))
}

pub async fn list_all(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    list(&api, None)
}

pub async fn list_vhost(_: Authed, State(api): State<Arc<Api>>, Path(vhost): Path<String>) -> ApiResult {
    list(&api, Some(&vhost))
}

pub async fn get_one(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>) -> ApiResult {
    let v = api.vhost(&vhost)?;
    let x = v.exchange(exchange_name(&name)).ok_or_else(|| ApiError::not_found(format!("exchange '{name}' not found")))?;
    ok(exchange_json(&vhost, &x.spec))
}

pub async fn put(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> ApiResult {
    let body = body_json(&body)?;
    let v = api.vhost(&vhost)?;
    let kind_name = body.get("type").and_then(Json::as_str).unwrap_or("direct");
    let kind = ExchangeKind::parse(kind_name).ok_or_else(|| ApiError::bad_request(format!("invalid exchange type '{kind_name}'")))?;
    let flag = |k: &str, default: bool| body.get(k).and_then(Json::as_bool).unwrap_or(default);
    let spec = ExchangeSpec {
        name: name.clone(),
        kind,
        durable: flag("durable", true),
        auto_delete: flag("auto_delete", false),
        internal: flag("internal", false),
        arguments: body.get("arguments").map(json::to_table).unwrap_or_default(),
    };
    let created = v.exchange(&name).is_none();
    v.declare_exchange(spec, false)?;
    written(created)
}

pub async fn delete(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>) -> ApiResult {
    let v = api.vhost(&vhost)?;
    if v.exchange(&name).is_none() {
        return Err(ApiError::not_found(format!("exchange '{name}' not found")));
    }
    v.delete_exchange(&name, false)?;
    no_content()
}

/// Publishes a message for debugging: `{"routing_key", "payload", "payload_encoding":
/// "string"|"base64", "properties"}` -> `{"routed": bool}`.
pub async fn publish(_: Authed, State(api): State<Arc<Api>>, Path((vhost, name)): Path<(String, String)>, body: Bytes) -> ApiResult {
    let body = body_json(&body)?;
    let v = api.vhost(&vhost)?;
    let exchange = exchange_name(&name);
    let key = body.get("routing_key").and_then(Json::as_str).unwrap_or("");
    let payload = body.get("payload").and_then(Json::as_str).unwrap_or("");
    let payload = match body.get("payload_encoding").and_then(Json::as_str).unwrap_or("string") {
        "string" => payload.as_bytes().to_vec(),
        "base64" => BASE64.decode(payload).map_err(|_| ApiError::bad_request("payload is not valid base64"))?,
        other => return Err(ApiError::bad_request(format!("unknown payload_encoding '{other}'"))),
    };
    let properties = body.get("properties").map(json::to_properties).unwrap_or_default();
    let outcome = v.publish(exchange, Message::new(exchange, key, properties, payload.into()), false)?;
    ok(json!({ "routed": outcome.routed }))
}

/// A binding's `properties_key`: the routing key, and a hash of the arguments when it has any
/// (how RabbitMQ tells bindings apart in URLs).
fn properties_key(b: &Binding) -> String {
    if b.arguments.is_empty() {
        return if b.key.is_empty() { "~".into() } else { b.key.clone() };
    }
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    json::table(&b.arguments).to_string().hash(&mut h);
    format!("{}~{:x}", b.key, h.finish())
}

fn binding_json(vhost: &str, source: &str, b: &Binding) -> Json {
    let (kind, destination) = match &b.destination {
        Destination::Queue(q) => ("queue", q.name().to_string()),
        Destination::Exchange(x) => ("exchange", x.clone()),
    };
    json!({
        "source": source,
        "vhost": vhost,
        "destination": destination,
        "destination_type": kind,
        "routing_key": b.key,
        "arguments": json::table(&b.arguments),
        "properties_key": properties_key(b),
    })
}

/// Every binding of a vhost, the default exchange's implicit ones first (as RabbitMQ lists them).
pub fn vhost_bindings(v: &VHost) -> Vec<Json> {
    let mut queues = v.queues();
    queues.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out: Vec<Json> = queues
        .iter()
        .map(|q| {
            let b = Binding { destination: Destination::Queue(q.clone()), key: q.name().to_string(), arguments: Default::default() };
            binding_json(v.name(), "", &b)
        })
        .collect();
    let mut exchanges = v.exchanges();
    exchanges.sort_by(|a, b| a.name().cmp(b.name()));
    for x in exchanges {
        out.extend(x.bindings().iter().map(|b| binding_json(v.name(), x.name(), b)));
    }
    out
}

pub async fn bindings_all(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    ok(Json::Array(api.vhosts(None)?.iter().flat_map(|v| vhost_bindings(v)).collect()))
}

pub async fn bindings_vhost(_: Authed, State(api): State<Arc<Api>>, Path(vhost): Path<String>) -> ApiResult {
    let v = api.vhost(&vhost)?;
    ok(Json::Array(vhost_bindings(&v)))
}

pub async fn bindings_between(
    _: Authed,
    State(api): State<Arc<Api>>,
    Path((vhost, exchange, queue)): Path<(String, String, String)>,
) -> ApiResult {
    let v = api.vhost(&vhost)?;
    let x = v.exchange(&exchange).ok_or_else(|| ApiError::not_found(format!("exchange '{exchange}' not found")))?;
    let found = x.bindings().into_iter().filter(|b| matches!(&b.destination, Destination::Queue(q) if q.name() == queue));
    ok(Json::Array(found.map(|b| binding_json(&vhost, &exchange, &b)).collect()))
}

pub async fn bind(
    _: Authed,
    State(api): State<Arc<Api>>,
    Path((vhost, exchange, queue)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = body_json(&body)?;
    let v = api.vhost(&vhost)?;
    let key = body.get("routing_key").and_then(Json::as_str).unwrap_or("");
    let arguments = body.get("arguments").map(json::to_table).unwrap_or_default();
    v.bind(&exchange, DestinationKind::Queue, &queue, key, arguments, 0)?;
    written(true)
}

pub async fn unbind(
    _: Authed,
    State(api): State<Arc<Api>>,
    Path((vhost, exchange, queue, props)): Path<(String, String, String, String)>,
) -> ApiResult {
    let v = api.vhost(&vhost)?;
    let x = v.exchange(&exchange).ok_or_else(|| ApiError::not_found(format!("exchange '{exchange}' not found")))?;
    let binding = x
        .bindings()
        .into_iter()
        .find(|b| matches!(&b.destination, Destination::Queue(q) if q.name() == queue) && properties_key(b) == props)
        .ok_or_else(|| ApiError::not_found(format!("binding '{props}' not found")))?;
    v.unbind(&exchange, DestinationKind::Queue, &queue, &binding.key, &binding.arguments, 0)?;
    no_content()
}
