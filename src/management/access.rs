//! Who may do what: `/api/whoami`, `/api/vhosts`, `/api/users`, `/api/permissions`.

use super::{body_json, no_content, ok, written, Api, ApiError, ApiResult, Authed};
use axum::body::Bytes;
use axum::extract::{Path, State};
use junction_core::auth::hash_password;
use junction_core::permissions::PermissionRecord;
use serde_json::{json, Value as Json};
use std::sync::Arc;

pub async fn whoami(authed: Authed) -> ApiResult {
    ok(json!({ "name": authed.user.name, "tags": authed.user.tags }))
}

fn vhost_json(vhost: &junction_core::VHost) -> Json {
    let messages: usize = vhost.queues().iter().map(|q| q.counts()).map(|c| c.ready + c.unacked).sum();
    json!({ "name": vhost.name(), "messages": messages, "queues": vhost.queues().len() })
}

pub async fn list_vhosts(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    ok(Json::Array(api.vhosts(None)?.iter().map(|v| vhost_json(v)).collect()))
}

pub async fn get_vhost(_: Authed, State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    let vhost = api.vhost(&name)?;
    ok(vhost_json(&vhost))
}

/// Creates a vhost; its creator gets full permissions on it, as in RabbitMQ.
pub async fn put_vhost(authed: Authed, State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    if name.is_empty() {
        return Err(ApiError::bad_request("a vhost needs a name"));
    }
    let created = api.broker.vhost(&name).is_none();
    if created {
        api.broker.add_vhost(&name);
        let all = ".*".to_string();
        let full = PermissionRecord { user: authed.user.name.clone(), vhost: name, configure: all.clone(), write: all.clone(), read: all };
        api.broker.set_permissions(full)?;
    }
    written(created)
}

pub async fn delete_vhost(_: Authed, State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    match api.broker.delete_vhost(&name)? {
        true => no_content(),
        false => Err(ApiError::not_found(format!("vhost '{name}' not found"))),
    }
}

/// A user as the API shows it; the password hash only to administrators (it could be
/// attacked offline).
fn user_json(u: &junction_core::persist::UserRecord, to: &Authed) -> Json {
    let mut out = json!({ "name": u.name, "tags": u.tags });
    if to.is_admin() {
        out["password_hash"] = json!(u.password_hash);
        out["hashing_algorithm"] = json!("argon2id");
    }
    out
}

pub async fn list_users(authed: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    ok(Json::Array(api.broker.users().iter().map(|u| user_json(u, &authed)).collect()))
}

pub async fn get_user(authed: Authed, State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    let user = api.broker.user(&name).ok_or_else(|| ApiError::not_found(format!("user '{name}' not found")))?;
    ok(user_json(&user, &authed))
}

/// Creates or updates a user: `{"password": ...}` or `{"password_hash": ...}` (argon2, PHC
/// string), and `"tags"` as a comma-separated string or a list.
pub async fn put_user(_: Authed, State(api): State<Arc<Api>>, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let body = body_json(&body)?;
    let existing = api.broker.user(&name);
    let hash = match (body.get("password").and_then(Json::as_str), body.get("password_hash").and_then(Json::as_str)) {
        (Some(password), _) => hash_password(password),
        (None, Some(hash)) => hash.to_string(),
        (None, None) => match &existing {
            Some(u) => u.password_hash.clone(),
            None => return Err(ApiError::bad_request("a new user needs a password or a password_hash")),
        },
    };
    let tags = match body.get("tags") {
        Some(_) => tags(&body),
        None => existing.as_ref().map(|u| u.tags.clone()).unwrap_or_default(),
    };
    api.broker.put_user(&name, &hash, tags)?;
    api.logins.forget(&name);
    written(existing.is_none())
}

pub async fn delete_user(_: Authed, State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    api.logins.forget(&name);
    match api.broker.delete_user(&name) {
        true => no_content(),
        false => Err(ApiError::not_found(format!("user '{name}' not found"))),
    }
}

/// A user's tags from JSON: a comma-separated string (RabbitMQ 3.x) or a list.
pub fn tags(item: &Json) -> Vec<String> {
    match item.get("tags") {
        Some(Json::String(s)) => s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect(),
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn permission_json(p: &PermissionRecord) -> Json {
    json!({ "user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read })
}

pub async fn list_permissions(_: Authed, State(api): State<Arc<Api>>) -> ApiResult {
    let mut all = api.broker.permissions().records();
    all.sort_by(|a, b| (&a.vhost, &a.user).cmp(&(&b.vhost, &b.user)));
    ok(Json::Array(all.iter().map(permission_json).collect()))
}

pub async fn get_permission(_: Authed, State(api): State<Arc<Api>>, Path((vhost, user)): Path<(String, String)>) -> ApiResult {
    let found = api.broker.permissions().records().into_iter().find(|p| p.vhost == vhost && p.user == user);
    let p = found.ok_or_else(|| ApiError::not_found(format!("no permissions for user '{user}' on vhost '{vhost}'")))?;
    ok(permission_json(&p))
}

pub async fn put_permission(
    _: Authed,
    State(api): State<Arc<Api>>,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = body_json(&body)?;
    api.vhost(&vhost)?;
    if api.broker.user(&user).is_none() {
        return Err(ApiError::bad_request(format!("user '{user}' does not exist")));
    }
    let pattern = |k: &str| body.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let existed = api.broker.permissions().records().iter().any(|p| p.vhost == vhost && p.user == user);
    let record = PermissionRecord { user, vhost, configure: pattern("configure"), write: pattern("write"), read: pattern("read") };
    api.broker.set_permissions(record)?;
    written(!existed)
}

pub async fn delete_permission(_: Authed, State(api): State<Arc<Api>>, Path((vhost, user)): Path<(String, String)>) -> ApiResult {
    match api.broker.delete_permissions(&user, &vhost) {
        true => no_content(),
        false => Err(ApiError::not_found(format!("no permissions for user '{user}' on vhost '{vhost}'"))),
    }
}
