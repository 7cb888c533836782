//! The demo page at `/demo`: a live board on @stomp/stompjs over `/ws`. Every asset is compiled
//! into the binary (no CDN); the page's sources are in `assets/demo/`, the vendored stompjs
//! bundle in `assets/vendor/stompjs/`.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../assets/demo/index.html");
const BOARD_JS: &str = include_str!("../assets/demo/board.js");
const STOMPJS: &str = include_str!("../assets/vendor/stompjs/stomp.umd.min.js");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The demo's routes, to merge into the HTTP listener's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/demo", get(|| async { ([(CONTENT_TYPE, HTML)], INDEX).into_response() }))
        .route("/demo/", get(|| async { ([(CONTENT_TYPE, HTML)], INDEX).into_response() }))
        .route("/demo/board.js", get(|| async { ([(CONTENT_TYPE, JS)], BOARD_JS).into_response() }))
        .route("/demo/stomp.umd.min.js", get(|| async { ([(CONTENT_TYPE, JS)], STOMPJS).into_response() }))
}
