//! STOMP framing on a byte stream (STOMP 1.0, 1.1, 1.2).
//!
//! A frame is a command line, header lines, a blank line, the body and a NUL. Lines end in `\n`
//! or `\r\n`. Bare EOLs between frames are heart-beats. A `content-length` header gives the body
//! size (so bodies may contain NUL); without one the body ends at the first NUL. From 1.1 on,
//! header names and values escape `\n`, `:` and `\` (1.2 also `\r`) except in CONNECT, STOMP
//! and CONNECTED frames. Every limit is checked before more is buffered.

use crate::frame::{Frame, Version};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Bounds on what a client may send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Header lines per frame.
    pub max_headers: usize,
    /// Bytes in one header line (name, colon and value).
    pub max_header_line: usize,
    /// Bytes of the command and all header lines together.
    pub max_head: usize,
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_headers: 1000, max_header_line: 64 * 1024, max_head: 256 * 1024, max_body: 128 * 1024 * 1024 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Not a valid frame; the text goes into the ERROR frame's `message` header.
    #[error("{0}")]
    Malformed(String),
    /// Over one of the limits.
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Frame(Frame),
    /// A bare EOL between frames.
    HeartBeat,
}

impl Inbound {
    /// The body bytes it holds (what counts when frames are kept a while).
    pub fn body_len(&self) -> usize {
        match self {
            Inbound::Frame(frame) => frame.body.len(),
            Inbound::HeartBeat => 0,
        }
    }
}

/// Decodes client frames and encodes server frames for one connection.
#[derive(Debug)]
pub struct StompCodec {
    /// Negotiated version; until CONNECTED nothing is escaped.
    version: Option<Version>,
    limits: Limits,
    /// How far past the head the current body has been searched for its NUL already.
    body_scanned: usize,
}

/// The parsed command and headers of a frame, and where its body starts.
struct Head {
    command: String,
    headers: Vec<(String, String)>,
    body_start: usize,
}

impl StompCodec {
    pub fn new(limits: Limits) -> StompCodec {
        StompCodec { version: None, limits, body_scanned: 0 }
    }

    pub fn set_version(&mut self, version: Version) {
        self.version = Some(version);
    }

    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// Parses the command and headers if the whole head is buffered.
    fn parse_head(&self, src: &[u8]) -> Result<Option<Head>, CodecError> {
        let mut pos = 0;
        let mut command: Option<String> = None;
        let mut headers = Vec::new();
        loop {
            let Some(len) = src[pos..].iter().position(|&b| b == b'\n') else {
                self.check_partial_line(src.len() - pos, src.len())?;
                return Ok(None);
            };
            let raw = &src[pos..pos + len];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            pos += len + 1;
            self.check_partial_line(len, pos)?;
            match &command {
                None => command = Some(parse_command(line)?),
                Some(_) if line.is_empty() => {
                    let command = command.expect("set above");
                    return Ok(Some(Head { command, headers, body_start: pos }));
                }
                Some(cmd) => {
                    if headers.len() == self.limits.max_headers {
                        return Err(CodecError::TooLarge(format!("too many headers (limit {})", self.limits.max_headers)));
                    }
                    headers.push(self.parse_header(cmd, line)?);
                }
            }
        }
    }

    fn check_partial_line(&self, line_len: usize, head_len: usize) -> Result<(), CodecError> {
        if line_len > self.limits.max_header_line {
            return Err(CodecError::TooLarge(format!("header line too long (limit {} bytes)", self.limits.max_header_line)));
        }
        if head_len > self.limits.max_head {
            return Err(CodecError::TooLarge(format!("frame headers too large (limit {} bytes)", self.limits.max_head)));
        }
        Ok(())
    }

    fn parse_header(&self, command: &str, line: &[u8]) -> Result<(String, String), CodecError> {
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| malformed("header without a colon"))?;
        let escaped = self.escapes(command);
        let v12 = self.version == Some(Version::V12);
        let name = header_text(&line[..colon], escaped, v12)?;
        let value = header_text(&line[colon + 1..], escaped, v12)?;
        Ok((name, value))
    }

    fn escapes(&self, command: &str) -> bool {
        let version = self.version.unwrap_or(Version::V10);
        version.escapes() && !matches!(command, "CONNECT" | "STOMP" | "CONNECTED")
    }

    /// Encodes a frame (escaping as the version says) with its NUL.
    pub fn encode_frame(&self, frame: &Frame, out: &mut BytesMut) {
        let escaped = self.escapes(&frame.command);
        let v12 = self.version == Some(Version::V12);
        out.reserve(frame.command.len() + frame.body.len() + 64 * (frame.headers.len() + 1));
        out.put_slice(frame.command.as_bytes());
        out.put_u8(b'\n');
        for (name, value) in &frame.headers {
            // The body's real length is written below; a header this version cannot carry
            // intact (a line break unescaped, CR before 1.2, a colon in an unescaped name) is
            // left out rather than let it forge header lines.
            if name == "content-length" || !representable(name, value, escaped, v12) {
                continue;
            }
            put_header_text(out, name, escaped, v12);
            out.put_u8(b':');
            put_header_text(out, value, escaped, v12);
            out.put_u8(b'\n');
        }
        if !frame.body.is_empty() {
            out.put_slice(format!("content-length:{}\n", frame.body.len()).as_bytes());
        }
        out.put_u8(b'\n');
        out.put_slice(&frame.body);
        out.put_u8(0);
    }
}

impl Decoder for StompCodec {
    type Item = Inbound;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        for eol in [&b"\n"[..], &b"\r\n"[..]] {
            if src.starts_with(eol) {
                src.advance(eol.len());
                return Ok(Some(Inbound::HeartBeat));
            }
        }
        if src.is_empty() || &src[..] == b"\r" {
            return Ok(None);
        }
        let Some(head) = self.parse_head(src)? else { return Ok(None) };
        let body = match content_length(&head.headers)? {
            Some(n) => self.body_of_length(src, head.body_start, n)?,
            None => self.body_up_to_nul(src, head.body_start)?,
        };
        let Some((body, consumed)) = body else { return Ok(None) };
        src.advance(consumed);
        self.body_scanned = 0;
        Ok(Some(Inbound::Frame(Frame { command: head.command, headers: head.headers, body })))
    }
}

impl StompCodec {
    /// A body of `len` bytes followed by its NUL: (body, bytes the frame takes).
    fn body_of_length(&self, src: &BytesMut, start: usize, len: usize) -> Result<Option<(Bytes, usize)>, CodecError> {
        if len > self.limits.max_body {
            return Err(CodecError::TooLarge(format!("body too large ({len} bytes, limit {})", self.limits.max_body)));
        }
        let end = start + len;
        if src.len() <= end {
            return Ok(None);
        }
        if src[end] != 0 {
            return Err(malformed("frame body not terminated by NUL after content-length bytes"));
        }
        Ok(Some((Bytes::copy_from_slice(&src[start..end]), end + 1)))
    }

    /// A body that ends at the first NUL.
    fn body_up_to_nul(&mut self, src: &BytesMut, start: usize) -> Result<Option<(Bytes, usize)>, CodecError> {
        let from = start + self.body_scanned;
        match src[from..].iter().position(|&b| b == 0) {
            Some(i) => {
                let end = from + i;
                Ok(Some((Bytes::copy_from_slice(&src[start..end]), end + 1)))
            }
            None => {
                self.body_scanned = src.len() - start;
                if self.body_scanned > self.limits.max_body {
                    return Err(CodecError::TooLarge(format!("body too large (limit {} bytes)", self.limits.max_body)));
                }
                Ok(None)
            }
        }
    }
}

impl Encoder<&Frame> for StompCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), CodecError> {
        self.encode_frame(frame, out);
        Ok(())
    }
}

fn malformed(what: &str) -> CodecError {
    CodecError::Malformed(what.to_string())
}

fn parse_command(line: &[u8]) -> Result<String, CodecError> {
    if line.is_empty() || !line.iter().all(u8::is_ascii_uppercase) {
        return Err(malformed("invalid command"));
    }
    Ok(String::from_utf8_lossy(line).into_owned())
}

fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, CodecError> {
    match headers.iter().find(|(k, _)| k == "content-length") {
        None => Ok(None),
        Some((_, v)) => v.trim().parse().map(Some).map_err(|_| malformed("invalid content-length")),
    }
}

/// A header name or value as text, with escapes resolved when the frame uses them (`\r` is
/// defined only from 1.2 on; an undefined escape is an error).
fn header_text(raw: &[u8], escaped: bool, v12: bool) -> Result<String, CodecError> {
    let text = std::str::from_utf8(raw).map_err(|_| malformed("header is not UTF-8"))?;
    if !escaped || !text.contains('\\') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('n') => '\n',
            Some('r') if v12 => '\r',
            Some('c') => ':',
            Some('\\') => '\\',
            _ => return Err(malformed("invalid escape sequence in header")),
        });
    }
    Ok(out)
}

fn representable(name: &str, value: &str, escaped: bool, v12: bool) -> bool {
    let has = |c: char| name.contains(c) || value.contains(c);
    match (escaped, v12) {
        (true, true) => true,
        // 1.1 escapes LF, colon and backslash, but not CR.
        (true, false) => !has('\r'),
        (false, _) => !has('\n') && !has('\r') && !name.contains(':'),
    }
}

fn put_header_text(out: &mut BytesMut, text: &str, escaped: bool, v12: bool) {
    if !escaped || !text.contains(['\\', '\n', ':', '\r']) {
        out.put_slice(text.as_bytes());
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.put_slice(b"\\\\"),
            '\n' => out.put_slice(b"\\n"),
            ':' => out.put_slice(b"\\c"),
            '\r' if v12 => out.put_slice(b"\\r"),
            c => {
                let mut buf = [0u8; 4];
                out.put_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests;
