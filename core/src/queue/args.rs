//! Queue arguments (`x-*`), parsed once at declaration so the hot path reads plain fields.

use crate::error::{CoreError, CoreResult};
use crate::message::{Table, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (dead-letter) the oldest messages to make room.
    #[default]
    DropHead,
    /// Refuse new messages; a confirming publisher gets a nack.
    RejectPublish,
    /// Refuse new messages and dead-letter them.
    RejectPublishDlx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    /// Accepted for RabbitMQ compatibility; behaves as a classic durable queue.
    Quorum,
    /// Append-only and non-destructive: consumers read from an offset (see `queue::stream`).
    Stream,
}

/// Segment size of a stream when `x-stream-max-segment-size-bytes` is not given. Retention drops
/// whole segments, so this is also how coarse `x-max-length-bytes` and `x-max-age` act.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueArgs {
    pub message_ttl_ms: Option<u64>,
    pub expires_ms: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    pub delivery_limit: Option<u32>,
    pub queue_type: QueueType,
    /// Streams: segments older than this are dropped (`x-max-age`).
    pub max_age_ms: Option<u64>,
    /// Streams: bytes per segment (`x-stream-max-segment-size-bytes`).
    pub segment_bytes: u64,
    /// `x-queue-mode: lazy`: keep as few ready messages in memory as possible.
    pub lazy: bool,
}

impl QueueArgs {
    /// Parses the arguments RabbitMQ understands; unknown `x-` arguments are kept but ignored,
    /// as RabbitMQ does. A known argument with a bad type or value is a precondition failure.
    pub fn parse(table: &Table) -> CoreResult<QueueArgs> {
        let mut a = QueueArgs { segment_bytes: DEFAULT_SEGMENT_BYTES, ..QueueArgs::default() };
        for (key, value) in table.iter() {
            match key {
                "x-message-ttl" => a.message_ttl_ms = Some(non_negative(key, value)?),
                "x-expires" => a.expires_ms = Some(positive(key, value)?),
                "x-max-length" => a.max_length = Some(non_negative(key, value)?),
                "x-max-length-bytes" => a.max_length_bytes = Some(non_negative(key, value)?),
                "x-overflow" => a.overflow = overflow(key, value)?,
                "x-dead-letter-exchange" => a.dead_letter_exchange = Some(text(key, value)?.into()),
                "x-dead-letter-routing-key" => a.dead_letter_routing_key = Some(text(key, value)?.into()),
                "x-max-priority" => {
                    let p = non_negative(key, value)?;
                    a.max_priority = Some(p.min(255) as u8);
                }
                "x-single-active-consumer" => a.single_active_consumer = boolean(key, value)?,
                "x-delivery-limit" => a.delivery_limit = Some(non_negative(key, value)?.min(u32::MAX as u64) as u32),
                "x-queue-type" => {
                    a.queue_type = match text(key, value)? {
                        "classic" => QueueType::Classic,
                        "quorum" => QueueType::Quorum,
                        "stream" => QueueType::Stream,
                        other => return Err(invalid(key, &format!("unsupported queue type '{other}'"))),
                    }
                }
                "x-max-age" => a.max_age_ms = Some(age(key, value)?),
                "x-stream-max-segment-size-bytes" => a.segment_bytes = positive(key, value)?,
                "x-queue-mode" => {
                    a.lazy = match text(key, value)? {
                        "default" => false,
                        "lazy" => true,
                        other => return Err(invalid(key, &format!("unknown queue mode '{other}'"))),
                    }
                }
                _ => {}
            }
        }
        Ok(a)
    }

    pub fn is_stream(&self) -> bool {
        self.queue_type == QueueType::Stream
    }

    /// Ready messages kept in memory before the rest wait on disk (durable queues; see `paging`).
    pub fn paging_window(&self) -> super::paging::Window {
        use super::paging::{Window, DEFAULT_WINDOW_BYTES, DEFAULT_WINDOW_MESSAGES, LAZY_WINDOW_MESSAGES};
        let messages = if self.lazy { LAZY_WINDOW_MESSAGES } else { DEFAULT_WINDOW_MESSAGES };
        Window { messages, bytes: DEFAULT_WINDOW_BYTES }
    }

    /// Number of priority levels the queue keeps (1 when it has no priorities).
    pub fn priority_levels(&self) -> usize {
        self.max_priority.map_or(1, |p| p as usize + 1)
    }
}

fn invalid(key: &str, why: &str) -> CoreError {
    CoreError::precondition(format!("invalid arg '{key}': {why}"))
}

fn non_negative(key: &str, v: &Value) -> CoreResult<u64> {
    match v.as_i64() {
        Some(n) if n >= 0 => Ok(n as u64),
        Some(_) => Err(invalid(key, "must be non-negative")),
        None => Err(invalid(key, "must be an integer")),
    }
}

fn positive(key: &str, v: &Value) -> CoreResult<u64> {
    match non_negative(key, v)? {
        0 => Err(invalid(key, "must be positive")),
        n => Ok(n),
    }
}

fn text<'a>(key: &str, v: &'a Value) -> CoreResult<&'a str> {
    v.as_str().ok_or_else(|| invalid(key, "must be a string"))
}

fn boolean(key: &str, v: &Value) -> CoreResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(invalid(key, "must be a boolean")),
    }
}

/// A RabbitMQ age: a number and a unit, `Y`, `M`, `D`, `h`, `m` or `s` (`7D`, `12h`, `30s`).
fn age(key: &str, v: &Value) -> CoreResult<u64> {
    let text = text(key, v)?;
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| invalid(key, "needs a unit"))?;
    let (number, unit) = text.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| invalid(key, "must start with a number"))?;
    let unit_secs: u64 = match unit {
        "Y" => 365 * 86_400,
        "M" => 30 * 86_400,
        "D" => 86_400,
        "h" => 3600,
        "m" => 60,
        "s" => 1,
        _ => return Err(invalid(key, "unit must be one of Y, M, D, h, m, s")),
    };
    Ok(n.saturating_mul(unit_secs).saturating_mul(1000))
}

fn overflow(key: &str, v: &Value) -> CoreResult<Overflow> {
    match text(key, v)? {
        "drop-head" => Ok(Overflow::DropHead),
        "reject-publish" => Ok(Overflow::RejectPublish),
        "reject-publish-dlx" => Ok(Overflow::RejectPublishDlx),
        other => Err(invalid(key, &format!("unknown overflow behaviour '{other}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_arguments_and_rejects_bad_types() {
        let mut t = Table::default();
        t.insert("x-message-ttl", Value::I32(500));
        t.insert("x-overflow", Value::str("reject-publish"));
        t.insert("x-max-priority", Value::U8(10));
        t.insert("x-custom", Value::Bool(true));
        let a = QueueArgs::parse(&t).unwrap();
        assert_eq!(a.message_ttl_ms, Some(500));
        assert_eq!(a.overflow, Overflow::RejectPublish);
        assert_eq!(a.priority_levels(), 11);
        t.insert("x-message-ttl", Value::str("soon"));
        assert!(QueueArgs::parse(&t).is_err());
        let mut e = Table::default();
        e.insert("x-expires", Value::I32(0));
        assert!(QueueArgs::parse(&e).is_err());
    }

    #[test]
    fn stream_arguments_parse() {
        let mut t = Table::default();
        t.insert("x-queue-type", Value::str("stream"));
        t.insert("x-max-age", Value::str("2h"));
        t.insert("x-stream-max-segment-size-bytes", Value::I64(1000));
        let a = QueueArgs::parse(&t).unwrap();
        assert!(a.is_stream());
        assert_eq!(a.max_age_ms, Some(7_200_000));
        assert_eq!(a.segment_bytes, 1000);
        for bad in ["2", "h", "2w", "-1s"] {
            t.insert("x-max-age", Value::str(bad));
            assert!(QueueArgs::parse(&t).is_err(), "{bad}");
        }
        assert_eq!(QueueArgs::parse(&Table::default()).unwrap().segment_bytes, DEFAULT_SEGMENT_BYTES);
    }
}
