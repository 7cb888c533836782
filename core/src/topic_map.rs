//! Reversible mapping between MQTT topics (levels joined by `/`) and AMQP routing keys (words
//! joined by `.`), as DESIGN.md requires: every MQTT topic survives MQTT -> AMQP -> MQTT byte
//! for byte, and every routing key survives AMQP -> MQTT -> AMQP.
//!
//! A level is carried over as is, except for what AMQP would read as structure, which is
//! percent-escaped in the routing key: `.` becomes `%2E`, `%` becomes `%25`, and a level that
//! is exactly `*` (a literal in MQTT, a wildcard in AMQP patterns) becomes `%2A`. The reverse
//! direction decodes exactly those escapes. So MQTT `sensor/1.5` is the routing key
//! `sensor.1%2E5`, and `spBv1.0/group` is `spBv1%2E0.group`; every MQTT topic comes back byte
//! for byte.
//!
//! Routing keys that no MQTT topic produces do not all survive AMQP -> MQTT -> AMQP: a `/`
//! inside a word becomes a level separator in MQTT, and a `%` that starts no escape comes back
//! escaped (`%25`).
//!
//! Filters map the same way, with MQTT `+` and `#` levels becoming AMQP `*` and `#`.

/// Appends one MQTT level, escaped for an AMQP routing key or pattern.
fn escape_level(level: &str, out: &mut String) {
    if level == "*" {
        out.push_str("%2A");
        return;
    }
    for c in level.chars() {
        match c {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2E"),
            c => out.push(c),
        }
    }
}

/// Appends one AMQP word as an MQTT level, undoing `escape_level`.
fn unescape_word(word: &str, out: &mut String) {
    if word == "%2A" {
        out.push('*');
        return;
    }
    let mut rest = word;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let decoded = if tail.starts_with("%25") {
            Some('%')
        } else if tail.starts_with("%2E") {
            Some('.')
        } else {
            None
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[3..];
            }
            None => {
                out.push('%');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
}

/// MQTT topic name -> AMQP routing key.
pub fn mqtt_to_amqp(topic: &str) -> String {
    let mut out = String::with_capacity(topic.len() + 8);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        escape_level(level, &mut out);
    }
    out
}

/// AMQP routing key -> MQTT topic name (the inverse of `mqtt_to_amqp`).
pub fn amqp_to_mqtt(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, word) in key.split('.').enumerate() {
        if i > 0 {
            out.push('/');
        }
        unescape_word(word, &mut out);
    }
    out
}

/// MQTT topic filter -> AMQP binding pattern (`+` -> `*`, `#` -> `#`).
pub fn mqtt_filter_to_amqp(filter: &str) -> String {
    let mut out = String::with_capacity(filter.len() + 8);
    for (i, level) in filter.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        match level {
            "+" => out.push('*'),
            "#" => out.push('#'),
            _ => escape_level(level, &mut out),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference vectors of docs/mapping (and the cases RabbitMQ gets wrong).
    const VECTORS: &[(&str, &str)] = &[
        ("a/b", "a.b"),
        ("sensor/1.5", "sensor.1%2E5"),
        ("spBv1.0/group/NDATA/node", "spBv1%2E0.group.NDATA.node"),
        ("/leading", ".leading"),
        ("trailing/", "trailing."),
        ("a//b", "a..b"),
        ("100%/done", "100%25.done"),
        ("température/°C", "température.°C"),
        ("", ""),
    ];

    #[test]
    fn vectors_map_both_ways() {
        for (mqtt, amqp) in VECTORS {
            assert_eq!(mqtt_to_amqp(mqtt), *amqp, "{mqtt}");
            assert_eq!(amqp_to_mqtt(amqp), *mqtt, "{amqp}");
        }
    }

    #[test]
    fn literal_stars_are_escaped_in_names_and_filters() {
        assert_eq!(mqtt_to_amqp("a/*"), "a.%2A");
        assert_eq!(amqp_to_mqtt("a.%2A"), "a/*");
        assert_eq!(mqtt_to_amqp("a/%2A"), "a.%252A");
        assert_eq!(amqp_to_mqtt("a.%252A"), "a/%2A");
    }

    #[test]
    fn filters_translate_wildcards_and_escape_literals() {
        assert_eq!(mqtt_filter_to_amqp("a/+/c"), "a.*.c");
        assert_eq!(mqtt_filter_to_amqp("a/#"), "a.#");
        assert_eq!(mqtt_filter_to_amqp("v1.0/*"), "v1%2E0.%2A");
        use crate::topic::{pattern_matches, AMQP};
        assert!(pattern_matches(AMQP, &mqtt_filter_to_amqp("spBv1.0/+/NDATA/#"), &mqtt_to_amqp("spBv1.0/g/NDATA/n/x")));
        assert!(!pattern_matches(AMQP, &mqtt_filter_to_amqp("a/*"), &mqtt_to_amqp("a/b")));
        assert!(pattern_matches(AMQP, &mqtt_filter_to_amqp("a/*"), &mqtt_to_amqp("a/*")));
    }

    proptest! {
        #[test]
        fn mqtt_round_trips(topic in "[a-z./%*2AE°]{0,12}") {
            prop_assert_eq!(amqp_to_mqtt(&mqtt_to_amqp(&topic)), topic);
        }

        #[test]
        fn plain_amqp_keys_round_trip(key in "[a-z0-9_.-]{0,12}") {
            prop_assert_eq!(mqtt_to_amqp(&amqp_to_mqtt(&key)), key);
        }
    }
}
