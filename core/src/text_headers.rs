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

/// The largest typed-values header taken in (base64 text).
const MAX_TYPED_HEADERS_TEXT: usize = 64 * 1024;
/// How deep arrays and tables may nest in it. It comes from clients and decoding recurses once
/// per level: without a bound, a small header of nested arrays would overflow the stack.
const MAX_NESTING: usize = 32;

/// Gives headers that arrived as text their typed values back (see the module comment) and
/// drops the typed-values header (ignored when larger than `MAX_TYPED_HEADERS_TEXT`).
pub fn restore_typed_headers(headers: &mut Table) {
    let Some(packed) = headers.remove(TYPED_HEADERS) else { return };
    let text = packed.as_str().filter(|text| text.len() <= MAX_TYPED_HEADERS_TEXT);
    let Some(typed) = text.and_then(|text| BASE64.decode(text).ok()) else { return };
    if !nesting_within(&typed, MAX_NESTING) {
        return;
    }
    let Ok(typed) = bincode::deserialize::<Table>(&typed) else { return };
    for (name, value) in typed.0 {
        let unchanged = headers.get(&name).and_then(Value::as_str).is_some_and(|text| text == value_text(&value));
        if unchanged {
            headers.insert(name, value);
        }
    }
}

/// Walks an encoded `Table` (bincode: u32 variant tags, u64 lengths, little-endian) without
/// recursion: true when it is well formed enough to walk and nests at most `max` levels.
fn nesting_within(bytes: &[u8], max: usize) -> bool {
    walk(bytes, max).is_some()
}

/// Reads through encoded bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(usize::try_from(n).ok()?)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

fn walk(bytes: &[u8], max: usize) -> Option<()> {
    let mut c = Cursor { bytes, pos: 0 };
    // (values left at this level, whether they are table entries with a name first)
    let mut levels: Vec<(u64, bool)> = vec![(c.u64()?, true)];
    while let Some((left, named)) = levels.last_mut() {
        if *left == 0 {
            levels.pop();
            continue;
        }
        *left -= 1;
        if *named {
            let name_len = c.u64()?;
            c.take(name_len)?;
        }
        // `Value`'s variants in declaration order.
        let tag = c.u32()?;
        let fixed = match tag {
            0..=2 => 1,
            3 | 4 => 2,
            5 | 6 | 8 => 4,
            7 | 9 | 14 => 8,
            10 => 5,
            17 => 0,
            11 | 12 | 16 => c.u64()?,
            13 | 15 => {
                levels.push((c.u64()?, tag == 15));
                if levels.len() > max {
                    return None;
                }
                0
            }
            _ => return None,
        };
        c.take(fixed)?;
    }
    Some(())
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
    fn deeply_nested_typed_values_from_a_client_cannot_exhaust_the_stack() {
        let nest = |depth: usize| {
            let mut v = Value::Void;
            for _ in 0..depth {
                v = Value::Array(vec![v]);
            }
            let typed = Table(vec![("n".into(), v)]);
            BASE64.encode(bincode::serialize(&typed).unwrap())
        };
        // Deep nesting is refused before it is decoded (600 levels overflowed a test thread's
        // stack when decoded); shallow nesting comes back typed.
        for depth in [200, 600] {
            let mut headers = Table(vec![("n".into(), text_value("x")), (TYPED_HEADERS.into(), text_value(&nest(depth)))]);
            restore_typed_headers(&mut headers);
            assert_eq!(headers.get(TYPED_HEADERS), None);
            assert_eq!(headers.get("n"), Some(&text_value("x")), "left as text");
        }
        let mut shallow = Table::default();
        shallow.insert("n", Value::Array(vec![Value::Array(vec![Value::I8(1)])]));
        let text = headers_to_text(&shallow, |_| false);
        let mut back = Table(text.iter().map(|(k, v)| (k.clone(), text_value(v))).collect());
        restore_typed_headers(&mut back);
        assert_eq!(back, shallow);
        assert!(!nesting_within(b"\x01\x00", 8), "truncated input is refused");
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
