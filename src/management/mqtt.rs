//! `/api/mqtt/sessions` and `/api/mqtt/retained`: the MQTT side of the broker.

use super::{ok, Api, ApiResult, Authed};
use axum::extract::State;
use junction_core::registry::Protocol;
use junction_mqtt::session::{self, SessionState};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every MQTT client the broker knows: connected ones and stored (persistent) sessions.
pub async fn sessions(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    let mut clients: BTreeMap<(String, String), Json> = BTreeMap::new();
    for (vhost, id, data) in api.broker.sessions(session::PROTOCOL) {
        let subscriptions: Vec<Json> = SessionState::decode(&data)
            .map(|s| s.subscriptions.iter().map(|(filter, sub)| json!({ "filter": filter, "qos": sub.qos })).collect())
            .unwrap_or_default();
        clients.insert((vhost.clone(), id.clone()), json!({ "client_id": id, "vhost": vhost, "connected": false, "persistent": true, "subscriptions": subscriptions }));
    }
    for c in api.broker.registry().list().iter().filter(|c| c.info.protocol == Protocol::Mqtt) {
        let key = (c.info.vhost.to_string(), c.info.client_id.to_string());
        let entry = clients.entry(key).or_insert_with(|| {
            json!({ "client_id": &*c.info.client_id, "vhost": &*c.info.vhost, "persistent": false, "subscriptions": [] })
        });
        entry["connected"] = json!(true);
        entry["connection"] = json!(c.name());
        entry["protocol"] = json!(c.info.protocol_version);
        entry["user"] = json!(&*c.info.user);
    }
    for ((vhost, id), entry) in clients.iter_mut() {
        let queued = api.broker.vhost(vhost).and_then(|v| v.queue(&session::queue_name(id))).map(|q| q.counts().ready);
        entry["queued"] = json!(queued.unwrap_or(0));
    }
    ok(Json::Array(clients.into_values().collect()))
}

pub async fn retained(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    let mut out = Vec::new();
    for vhost in api.vhosts(None)? {
        let mut all = vhost.retained().all();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (topic, r) in all {
            let qos = junction_mqtt::mapping::published_qos(&r.message);
            out.push(json!({ "vhost": vhost.name(), "topic": topic, "payload_bytes": r.message.body.len(), "qos": qos, "stored_at": r.stored_at_ms }));
        }
    }
    ok(Json::Array(out))
}
