//! Reversible mapping between MQTT topics (levels joined by `/`) and AMQP routing keys (words
//! joined by `.`), as DESIGN.md requires: every MQTT topic survives MQTT -> AMQP -> MQTT byte
//! for byte, and routing keys survive AMQP -> MQTT -> AMQP (exceptions below).
//!
//! A level becomes a word as is, except for what would change meaning on the other side, which
//! is percent-escaped:
//! - MQTT -> AMQP: `.` becomes `%2E`, a `%` that would read as one of the escapes below becomes
//!   `%25`, and a level that is exactly `*` (a literal in MQTT, a wildcard in AMQP patterns)
//!   becomes `%2A`. `%2F`, `%2B` and `%23` in a level stand for the AMQP characters `/`, `+`
//!   and `#`, which an MQTT topic name cannot hold.
//! - AMQP -> MQTT: the reverse: `%2E` -> `.`, `%25` -> `%`, a word `%2A` -> `*`, and `/`, `+`,
//!   `#` inside a word -> `%2F`, `%2B`, `%23`.
//!
//! So MQTT `sensor/1.5` is the routing key `sensor.1%2E5`, `spBv1.0/group` is
//! `spBv1%2E0.group`, and the AMQP key `api/v1.x` is the MQTT topic `api%2Fv1/x`.
//! Routing keys that do not round trip: a word holding the literal text of an escape (`%25`,
//! `%2F`, `%2B`, `%23`) comes back decoded (`a%25b` -> `a%b`), and whole words `*` and `#`
//! come back as `%2A` and `%2523` (an MQTT level `%23` must not become the wildcard `#`).
//!
//! Filters map the same way, with MQTT `+` and `#` levels becoming AMQP `*` and `#`.

/// MQTT levels hold these AMQP characters as escapes.
const AMQP_ONLY: [(char, &str); 3] = [('/', "%2F"), ('+', "%2B"), ('#', "%23")];
/// Escapes a routing key word may hold that decode to MQTT characters.
const MQTT_ESCAPES: [(&str, char); 2] = [("%25", '%'), ("%2E", '.')];

/// Appends one MQTT level, escaped for an AMQP routing key or pattern.
fn escape_level(level: &str, out: &mut String) {
    if level == "*" {
        out.push_str("%2A");
        return;
    }
    if level == "%23" {
        // Decoded, it would be the word `#`: a wildcard in a binding.
        out.push_str("%2523");
        return;
    }
    let mut rest = level;
    while let Some(c) = rest.chars().next() {
        if let Some((amqp, escape)) = AMQP_ONLY.iter().find(|(_, e)| rest.starts_with(e)) {
            out.push(*amqp);
            rest = &rest[escape.len()..];
            continue;
        }
        match c {
            '.' => out.push_str("%2E"),
            // Escape a `%` only where the way back would decode it.
            '%' if reads_as_escape(rest, level) => out.push_str("%25"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
}

/// Would the AMQP -> MQTT direction decode the `%` at the start of `rest` (part of `level`)?
fn reads_as_escape(rest: &str, level: &str) -> bool {
    MQTT_ESCAPES.iter().any(|(e, _)| rest.starts_with(e)) || (rest == level && level == "%2A")
}

/// Appends one AMQP word as an MQTT level, undoing `escape_level`.
fn unescape_word(word: &str, out: &mut String) {
    if word == "%2A" {
        out.push('*');
        return;
    }
    let mut rest = word;
    while let Some(c) = rest.chars().next() {
        if let Some((escape, mqtt)) = MQTT_ESCAPES.iter().find(|(e, _)| rest.starts_with(e)) {
            out.push(*mqtt);
            rest = &rest[escape.len()..];
            continue;
        }
        match AMQP_ONLY.iter().find(|(amqp, _)| *amqp == c) {
            Some((_, escape)) => out.push_str(escape),
            None => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
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
        ("100%/done", "100%.done"),
        ("température/°C", "température.°C"),
        ("", ""),
        ("a/*", "a.%2A"),
        ("a/%2A", "a.%252A"),
        ("api%2Fv1/x", "api/v1.x"),
        ("a%2B/b", "a+.b"),
        ("c%23", "c#"),
        ("%25/%2E", "%2525.%252E"),
        ("$SYS/broker", "$SYS.broker"),
    ];

    /// Routing keys that come back changed, and what they come back as.
    const AMQP_EXCEPTIONS: &[(&str, &str)] = &[("a%25b", "a%b"), ("a.*", "a.%2A"), ("x%2Fy", "x/y"), ("a.#", "a.%2523")];

    #[test]
    fn vectors_map_both_ways() {
        for (mqtt, amqp) in VECTORS {
            assert_eq!(mqtt_to_amqp(mqtt), *amqp, "{mqtt}");
            assert_eq!(amqp_to_mqtt(amqp), *mqtt, "{amqp}");
        }
    }

    #[test]
    fn documented_routing_key_exceptions() {
        for (key, back) in AMQP_EXCEPTIONS {
            assert_eq!(mqtt_to_amqp(&amqp_to_mqtt(key)), *back, "{key}");
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
        assert!(!pattern_matches(AMQP, &mqtt_filter_to_amqp("a/%23"), &mqtt_to_amqp("a/b")), "%23 is no wildcard");
        assert!(pattern_matches(AMQP, &mqtt_filter_to_amqp("a/%23"), &mqtt_to_amqp("a/%23")));
    }

    proptest! {
        #[test]
        fn mqtt_round_trips(topic in "[a-z./%*2ABEF3°]{0,14}") {
            prop_assert_eq!(amqp_to_mqtt(&mqtt_to_amqp(&topic)), topic);
        }

        #[test]
        fn amqp_keys_without_percent_round_trip(key in "[a-z0-9_./+#*-]{0,12}") {
            prop_assume!(!key.split('.').any(|w| w == "*" || w == "#"));
            prop_assert_eq!(mqtt_to_amqp(&amqp_to_mqtt(&key)), key);
        }
    }
}
