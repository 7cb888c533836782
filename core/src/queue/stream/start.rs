//! Where a stream consumer starts reading (`x-stream-offset`), parsed from AMQP argument values
//! and from the text form STOMP headers and MQTT `$stream/` filters use.

use crate::message::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamStart {
    /// The oldest message still retained.
    First,
    /// The newest message already in the stream.
    Last,
    /// Only messages published after the consumer starts.
    #[default]
    Next,
    /// The message at this offset (clamped to what is retained).
    Offset(u64),
    /// The first message that arrived at or after this time, in milliseconds since the epoch.
    Timestamp(u64),
}

impl StreamStart {
    /// The text forms: `first`, `last`, `next`, `offset=N`, `timestamp=T` (T in seconds since
    /// the epoch, as RabbitMQ's STOMP plugin takes it), or a bare offset `N`.
    pub fn parse(text: &str) -> Result<StreamStart, String> {
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("invalid x-stream-offset '{text}'"));
        Ok(match text.trim() {
            "first" => StreamStart::First,
            "last" => StreamStart::Last,
            "next" => StreamStart::Next,
            t => match t.split_once('=') {
                Some(("offset", n)) => StreamStart::Offset(number(n)?),
                Some(("timestamp", s)) => StreamStart::Timestamp(number(s)?.saturating_mul(1000)),
                Some(_) => return Err(format!("invalid x-stream-offset '{text}'")),
                None => StreamStart::Offset(number(t)?),
            },
        })
    }

    /// An AMQP `x-stream-offset` consume argument: a string as above, an integer offset, or an
    /// AMQP timestamp (seconds).
    pub fn from_value(value: &Value) -> Result<StreamStart, String> {
        if let Value::Timestamp(secs) = value {
            return Ok(StreamStart::Timestamp(secs.saturating_mul(1000)));
        }
        if let Some(n) = value.as_i64() {
            return u64::try_from(n).map(StreamStart::Offset).map_err(|_| format!("invalid x-stream-offset {n}"));
        }
        match value.as_str() {
            Some(text) => StreamStart::parse(text),
            None => Err("x-stream-offset must be a string, an integer or a timestamp".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_amqp_forms_parse() {
        assert_eq!(StreamStart::parse("first"), Ok(StreamStart::First));
        assert_eq!(StreamStart::parse("last"), Ok(StreamStart::Last));
        assert_eq!(StreamStart::parse("next"), Ok(StreamStart::Next));
        assert_eq!(StreamStart::parse("offset=42"), Ok(StreamStart::Offset(42)));
        assert_eq!(StreamStart::parse("7"), Ok(StreamStart::Offset(7)));
        assert_eq!(StreamStart::parse("timestamp=1700000000"), Ok(StreamStart::Timestamp(1_700_000_000_000)));
        assert!(StreamStart::parse("offset=-1").is_err());
        assert!(StreamStart::parse("later").is_err());
        assert!(StreamStart::parse("time=5").is_err());
        assert_eq!(StreamStart::from_value(&Value::I64(3)), Ok(StreamStart::Offset(3)));
        assert_eq!(StreamStart::from_value(&Value::Timestamp(2)), Ok(StreamStart::Timestamp(2000)));
        assert_eq!(StreamStart::from_value(&Value::str("first")), Ok(StreamStart::First));
        assert!(StreamStart::from_value(&Value::I32(-1)).is_err());
        assert!(StreamStart::from_value(&Value::Bool(true)).is_err());
    }
}
