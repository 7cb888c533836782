use super::*;
use proptest::prelude::*;

fn amqp(p: &str, t: &str) -> bool {
    pattern_matches(AMQP, p, t)
}
fn mqtt(p: &str, t: &str) -> bool {
    pattern_matches(MQTT, p, t)
}

#[test]
fn amqp_topic_rules() {
    assert!(amqp("a.b", "a.b"));
    assert!(!amqp("a.b", "a.c"));
    assert!(amqp("a.*", "a.b"));
    assert!(!amqp("a.*", "a"));
    assert!(!amqp("a.*", "a.b.c"));
    assert!(amqp("a.#", "a"), "# matches zero words");
    assert!(amqp("a.#", "a.b.c"));
    assert!(amqp("#", ""));
    assert!(amqp("#", "x.y"));
    assert!(amqp("#.c", "c"));
    assert!(amqp("a.#.c", "a.c"));
    assert!(amqp("a.#.c", "a.b.b.c"));
    assert!(!amqp("a.#.c", "a.b.b"));
    assert!(amqp("*.orange.*", "quick.orange.rabbit"));
    assert!(amqp("lazy.#", "lazy.orange.male.rabbit"));
    assert!(!amqp("*.*.rabbit", "quick.orange.male.rabbit"));
}

#[test]
fn mqtt_filter_rules() {
    assert!(mqtt("sport/#", "sport"));
    assert!(mqtt("sport/+", "sport/"));
    assert!(!mqtt("sport/+", "sport"));
    assert!(mqtt("+/+", "/finance"));
    assert!(mqtt("/+", "/finance"));
    assert!(!mqtt("+", "/finance"));
    assert!(!mqtt("#", "$SYS/x"), "wildcard first level hides $ topics");
    assert!(!mqtt("+/x", "$SYS/x"));
    assert!(mqtt("$SYS/#", "$SYS/x"));
    let mut trie = TopicTrie::new(MQTT);
    trie.insert("#", 1);
    trie.insert("+/x", 2);
    trie.insert("$SYS/#", 3);
    let mut out = Vec::new();
    trie.matches("$SYS/x", &mut out);
    assert_eq!(out, vec![3], "the trie applies the $ rule too");
    assert!(mqtt("a/b.c", "a/b.c"), "dots are literal in MQTT");
}

#[test]
fn remove_prunes_and_reports() {
    let mut trie = TopicTrie::new(AMQP);
    trie.insert("a.*.c", 1);
    trie.insert("a.#", 2);
    trie.insert("a.#", 3);
    assert_eq!(trie.len(), 3);
    assert!(trie.remove("a.#", &2));
    assert!(!trie.remove("a.#", &2));
    let mut out = Vec::new();
    trie.matches("a.b.c", &mut out);
    out.sort();
    assert_eq!(out, vec![1, 3]);
    assert!(trie.remove("a.*.c", &1));
    assert!(trie.remove("a.#", &3));
    assert!(trie.root.is_empty());
}

/// A direct, obviously-correct matcher to check the trie against.
fn reference(p: &[&str], t: &[&str]) -> bool {
    match (p.split_first(), t.split_first()) {
        (None, None) => true,
        (Some((&"#", prest)), _) => (0..=t.len()).any(|k| reference(prest, &t[k..])),
        (Some((&"*", prest)), Some((_, trest))) => reference(prest, trest),
        (Some((w, prest)), Some((tw, trest))) => w == tw && reference(prest, trest),
        _ => false,
    }
}

proptest! {
    #[test]
    fn trie_agrees_with_reference(
        pattern in prop::collection::vec(prop::sample::select(vec!["a", "b", "*", "#", ""]), 1..5),
        topic in prop::collection::vec(prop::sample::select(vec!["a", "b", "c", ""]), 1..6),
    ) {
        let (p, t) = (pattern.join("."), topic.join("."));
        let expected = reference(&pattern, &topic);
        prop_assert_eq!(amqp(&p, &t), expected, "matcher: {} vs {}", p, t);
        let mut trie = TopicTrie::new(AMQP);
        trie.insert(&p, ());
        let mut out = Vec::new();
        trie.matches(&t, &mut out);
        prop_assert_eq!(!out.is_empty(), expected, "trie: {} vs {}", p, t);
    }
}
