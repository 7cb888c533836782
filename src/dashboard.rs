//! The web dashboard at `/dashboard/`: static files compiled into the binary (sources in
//! `assets/dashboard/`, no CDN), talking to the management API (docs/dashboard.md).

use axum::extract::Path;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../assets/dashboard/", $path)))),*]
    };
}

/// Every dashboard file, by its path under `/dashboard/`.
const FILES: &[(&str, &str)] = embedded![
    "index.html",
    "style.css",
    "app.js",
    "api.js",
    "charts.js",
    "dom.js",
    "forms.js",
    "sampler.js",
    "table.js",
    "views/connections.js",
    "views/exchanges.js",
    "views/mqtt.js",
    "views/overview.js",
    "views/queue.js",
    "views/queues.js",
];

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Response {
    match FILES.iter().find(|(p, _)| *p == path) {
        Some((p, body)) => ([(CONTENT_TYPE, content_type(p))], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/dashboard", get(|| async { (StatusCode::MOVED_PERMANENTLY, [(LOCATION, "/dashboard/")]).into_response() }))
        .route("/dashboard/", get(|| async { file("index.html") }))
        .route("/dashboard/{*path}", get(|Path(path): Path<String>| async move { file(&path) }))
}
