//! The few HTTP requests `junction ctl` makes to the management API: HTTP/1.0 over a plain TCP
//! connection to the broker's HTTP listener (one request per connection, the body runs to the
//! end of the stream), with Basic authentication.

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::Value as Json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    /// `host:port`.
    authority: String,
    authorization: String,
}

/// A path segment percent-encoded (vhost `/` is `%2F`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(url: &str, user: &str, password: &str) -> anyhow::Result<Client> {
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("--url must be http://host:port (use the plain HTTP listener, e.g. on loopback)"))?
            .trim_end_matches('/')
            .to_string();
        let authorization = format!("Basic {}", BASE64.encode(format!("{user}:{password}")));
        Ok(Client { authority, authorization })
    }

    /// Sends a request; returns the JSON answer (`Null` for an empty one), or the API's error.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Json>) -> anyhow::Result<Json> {
        self.call_with(method, path, body, "").await
    }

    /// Closes a client connection, telling it `reason`.
    pub async fn close_connection(&self, name: &str, reason: &str) -> anyhow::Result<Json> {
        let header = format!("X-Reason: {}\r\n", reason.replace(['\r', '\n'], " "));
        self.call_with("DELETE", &format!("/api/connections/{}", segment(name)), None, &header).await
    }

    async fn call_with(&self, method: &str, path: &str, body: Option<&Json>, extra_headers: &str) -> anyhow::Result<Json> {
        let (status, raw) = tokio::time::timeout(TIMEOUT, self.exchange(method, path, body, extra_headers))
            .await
            .map_err(|_| anyhow!("no answer from {} within {TIMEOUT:?}", self.authority))??;
        let parsed: Json = if raw.is_empty() { Json::Null } else { serde_json::from_slice(&raw).unwrap_or(Json::Null) };
        if !(200..300).contains(&status) {
            let reason = parsed.get("reason").and_then(Json::as_str).unwrap_or("");
            bail!("{method} {path}: HTTP {status} {reason}");
        }
        Ok(parsed)
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<&Json>, extra_headers: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach the management API at {}", self.authority))?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: {}\r\n{extra_headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
            self.authority,
            self.authorization,
            payload.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        parse_response(&response)
    }
}

/// Status code and body of a raw HTTP/1.x response without chunked encoding.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("malformed HTTP response"))?;
    let head = std::str::from_utf8(&raw[..head_end])?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("malformed status line"))?;
    Ok((status, raw[head_end + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_responses() {
        assert_eq!(segment("/"), "%2F");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        let (status, body) = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((status, body.as_slice()), (201, &b"{}"[..]));
        assert!(parse_response(b"garbage").is_err());
    }
}
