//! Headers over protocols whose headers are text (STOMP headers, MQTT 5 user properties),
//! without losing AMQP's typed values (docs/mapping.md).
//!
//! Outbound, every header is shown as text, and the values that are not plain UTF-8 strings
//! are also packed, typed, into one extra header, `x-junction-typed-headers`. Inbound, a message
//! carrying that header gets its typed values back for every header whose text the client left
//! unchanged. So an AMQP message read over STOMP or MQTT and sent on by a client that copies
//! its headers reaches AMQP consumers with the original types.

use crate::message::{Properties, Table, Value};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;

/// The header holding the typed values (base64 of Junction's binary encoding of a table).
pub const TYPED_HEADERS: &str = "x-junction-typed-headers";

/// Correlation ids that are not text (MQTT 5 correlation data can be any bytes) travel in this
/// header (a byte array) where the protocol's correlation id is a string.
pub const CORRELATION_BYTES_HEADER: &str = "x-correlation-data";

/// The text a header value is shown as.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Str(b) => String::from_utf8_lossy(b).into_owned(),
        Value::ShortStr(s) => s.clone(),
        Value::Bytes(b) => BASE64.encode(b),
        Value::Void => String::new(),
        other => json(other),
    }
}

/// The value as JSON-like text: numbers and booleans bare, strings quoted, arrays and tables
/// nested.
fn json(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::I8(n) => n.to_string(),
        Value::U8(n) => n.to_string(),
        Value::I16(n) => n.to_string(),
        Value::U16(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::F32(n) => n.to_string(),
        Value::F64(n) => n.to_string(),
        Value::Timestamp(n) => n.to_string(),
        Value::Decimal { scale, value } => decimal(*scale, *value),
        Value::Void => "null".into(),
        Value::Str(_) | Value::ShortStr(_) | Value::Bytes(_) => quoted(&value_text(v)),
        Value::Array(items) => format!("[{}]", items.iter().map(json).collect::<Vec<_>>().join(",")),
        Value::Table(t) => {
            let fields: Vec<String> = t.iter().map(|(k, v)| format!("{}:{}", quoted(k), json(v))).collect();
            format!("{{{}}}", fields.join(","))
        }
    }
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn decimal(scale: u8, value: u32) -> String {
    let digits = value.to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{int}.{frac}")
}

/// True when the value is carried as plain text with nothing lost.
fn is_plain_text(v: &Value) -> bool {
    matches!(v, Value::Str(b) if std::str::from_utf8(b).is_ok())
}

/// A message's headers as text pairs, in order, with the typed-values header appended when
/// any value is not plain text. `skip` leaves out headers the protocol must not show.
pub fn headers_to_text(headers: &Table, skip: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(headers.0.len() + 1);
    let mut typed = Table::default();
    for (name, value) in headers.iter().filter(|(n, _)| !skip(n) && *n != TYPED_HEADERS) {
        out.push((name.to_string(), value_text(value)));
        if !is_plain_text(value) {
            typed.0.push((name.to_string(), value.clone()));
        }
    }
    if !typed.is_empty() {
        out.push((TYPED_HEADERS.to_string(), BASE64.encode(bincode::serialize(&typed).expect("a table serializes"))));
    }
    out
}

/// Gives headers that arrived as text their typed values back (see the module comment) and
/// drops the typed-values header.
pub fn restore_typed_headers(headers: &mut Table) {
    let Some(packed) = headers.remove(TYPED_HEADERS) else { return };
    let Some(typed) = packed.as_str().and_then(|text| BASE64.decode(text).ok()) else { return };
    let Ok(typed) = bincode::deserialize::<Table>(&typed) else { return };
    for (name, value) in typed.0 {
        let unchanged = headers.get(&name).and_then(Value::as_str).is_some_and(|text| text == value_text(&value));
        if unchanged {
            headers.insert(name, value);
        }
    }
}

/// A correlation id for a protocol whose correlation id is a string: the text when it is
/// UTF-8 of at most `max_len` bytes, otherwise `None` and the bytes go in
/// `CORRELATION_BYTES_HEADER` (added to the returned properties).
pub fn text_correlation(p: &Properties, max_len: usize) -> (Option<String>, Option<Properties>) {
    let Some(bytes) = &p.correlation_id else { return (None, None) };
    match std::str::from_utf8(bytes) {
        Ok(text) if text.len() <= max_len => (Some(text.to_string()), None),
        _ => {
            let mut with_header = p.clone();
            with_header.headers.insert(CORRELATION_BYTES_HEADER, Value::Bytes(bytes.clone()));
            (None, Some(with_header))
        }
    }
}

/// Takes a correlation id that travelled as `CORRELATION_BYTES_HEADER` back into the property.
pub fn restore_correlation(p: &mut Properties) {
    if p.correlation_id.is_some() {
        return;
    }
    match p.headers.remove(CORRELATION_BYTES_HEADER) {
        Some(Value::Bytes(b)) | Some(Value::Str(b)) => p.correlation_id = Some(b),
        Some(other) => p.headers.insert(CORRELATION_BYTES_HEADER, other),
        None => {}
    }
}

/// Bytes of text, for building `Value::Str`.
pub fn text_value(s: &str) -> Value {
    Value::Str(Bytes::copy_from_slice(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed_table() -> Table {
        let mut t = Table::default();
        t.insert("s", Value::str("plain"));
        t.insert("n", Value::I32(-7));
        t.insert("b", Value::Bool(true));
        t.insert("f", Value::F64(1.5));
        t.insert("d", Value::Decimal { scale: 2, value: 5 });
        t.insert("ts", Value::Timestamp(1_700_000_000));
        t.insert("raw", Value::Bytes(Bytes::from_static(b"\0\xff")));
        t.insert("nested", Value::Table(Table(vec![("a".into(), Value::Array(vec![Value::U8(1), Value::str("x\"y")]))])));
        t.insert("short", Value::ShortStr("ss".into()));
        t.insert("void", Value::Void);
        t
    }

    #[test]
    fn typed_values_survive_a_text_protocol() {
        let original = typed_table();
        let text = headers_to_text(&original, |_| false);
        assert_eq!(text[0], ("s".to_string(), "plain".to_string()));
        assert_eq!(text[1], ("n".to_string(), "-7".to_string()));
        assert_eq!(text.iter().find(|(k, _)| k == "d").unwrap().1, "0.05");
        assert_eq!(text.iter().find(|(k, _)| k == "nested").unwrap().1, r#"{"a":[1,"x\"y"]}"#);
        assert_eq!(text.last().unwrap().0, TYPED_HEADERS);
        let mut back = Table(text.iter().map(|(k, v)| (k.clone(), text_value(v))).collect());
        restore_typed_headers(&mut back);
        assert_eq!(back, original);
    }

    #[test]
    fn a_changed_text_value_wins_over_its_packed_type() {
        let text = headers_to_text(&typed_table(), |_| false);
        let mut back = Table(text.iter().map(|(k, v)| (k.clone(), text_value(if k == "n" { "8" } else { v }))).collect());
        back.remove("b");
        restore_typed_headers(&mut back);
        assert_eq!(back.get("n"), Some(&Value::str("8")));
        assert_eq!(back.get("b"), None);
        assert_eq!(back.get("f"), Some(&Value::F64(1.5)));
    }

    #[test]
    fn plain_headers_need_no_packing_and_garbage_packing_is_ignored() {
        let mut t = Table::default();
        t.insert("a", Value::str("1"));
        assert_eq!(headers_to_text(&t, |_| false), vec![("a".to_string(), "1".to_string())]);
        t.insert(TYPED_HEADERS, Value::str("!!not base64"));
        restore_typed_headers(&mut t);
        assert_eq!(t.0, vec![("a".to_string(), Value::str("1"))]);
    }

    #[test]
    fn binary_correlation_ids_travel_as_a_header() {
        let p = Properties { correlation_id: Some(Bytes::from_static(b"\xff\x00")), ..Default::default() };
        let (text, with_header) = text_correlation(&p, 255);
        assert_eq!(text, None);
        let mut q = with_header.unwrap();
        q.correlation_id = None;
        restore_correlation(&mut q);
        assert_eq!(q, p);
        let p = Properties { correlation_id: Some(Bytes::from_static(b"abc")), ..Default::default() };
        assert_eq!(text_correlation(&p, 255), (Some("abc".to_string()), None));
    }
}
