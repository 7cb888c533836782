//! The topic-matching trie shared by AMQP topic exchanges and MQTT subscriptions.
//!
//! A pattern is a list of levels; a level is a literal word, the single-level wildcard, or the
//! multi-level wildcard which matches zero or more levels (AMQP `#`, and MQTT `a/#` matches `a`).
//! The syntaxes differ only in separator and wildcard spelling, and in MQTT's rule that a
//! wildcard at the first level never matches a topic starting with `$`.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy)]
pub struct TopicSyntax {
    pub separator: char,
    pub one_level: &'static str,
    pub many_levels: &'static str,
    /// A first-level wildcard does not match topics whose first level starts with `$`.
    pub dollar_topics_hidden: bool,
}

/// AMQP 0-9-1 topic exchanges: `a.*.c`, `a.#`.
pub const AMQP: TopicSyntax =
    TopicSyntax { separator: '.', one_level: "*", many_levels: "#", dollar_topics_hidden: false };

/// MQTT topic filters: `a/+/c`, `a/#`.
pub const MQTT: TopicSyntax =
    TopicSyntax { separator: '/', one_level: "+", many_levels: "#", dollar_topics_hidden: true };

impl TopicSyntax {
    pub fn levels<'a>(&self, s: &'a str) -> impl Iterator<Item = &'a str> + Clone {
        s.split(self.separator)
    }
}

#[derive(Debug)]
struct Node<T> {
    words: HashMap<String, Node<T>>,
    one: Option<Box<Node<T>>>,
    many: Option<Box<Node<T>>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node { words: HashMap::new(), one: None, many: None, values: Vec::new() }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.words.is_empty() && self.one.is_none() && self.many.is_none()
    }
}

/// Maps patterns to values; `matches` finds the values of every pattern matching a topic.
#[derive(Debug)]
pub struct TopicTrie<T> {
    syntax: TopicSyntax,
    root: Node<T>,
    len: usize,
}

impl<T: PartialEq + Clone> TopicTrie<T> {
    pub fn new(syntax: TopicSyntax) -> Self {
        TopicTrie { syntax, root: Node::default(), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, pattern: &str, value: T) {
        let syntax = self.syntax;
        let mut node = &mut self.root;
        for level in syntax.levels(pattern) {
            node = if level == syntax.many_levels {
                node.many.get_or_insert_with(Default::default)
            } else if level == syntax.one_level {
                node.one.get_or_insert_with(Default::default)
            } else {
                node.words.entry(level.to_string()).or_default()
            };
        }
        node.values.push(value);
        self.len += 1;
    }

    /// Removes one pattern/value pair; true if it was there. Empty branches are pruned.
    pub fn remove(&mut self, pattern: &str, value: &T) -> bool {
        let levels: Vec<&str> = self.syntax.levels(pattern).collect();
        let removed = remove_in(&mut self.root, &levels, value, &self.syntax);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Appends to `out` every value whose pattern matches `topic` (a value bound by several
    /// matching patterns appears once per pattern; callers dedupe where they need to).
    pub fn matches(&self, topic: &str, out: &mut Vec<T>) {
        let levels: Vec<&str> = self.syntax.levels(topic).collect();
        let hide_wildcards = self.syntax.dollar_topics_hidden && levels[0].starts_with('$');
        match_in(&self.root, &levels, out, hide_wildcards);
    }
}

fn remove_in<T: PartialEq>(node: &mut Node<T>, levels: &[&str], value: &T, syntax: &TopicSyntax) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        let Some(pos) = node.values.iter().position(|v| v == value) else { return false };
        node.values.remove(pos);
        return true;
    };
    if *first == syntax.many_levels || *first == syntax.one_level {
        let slot = if *first == syntax.many_levels { &mut node.many } else { &mut node.one };
        let Some(child) = slot.as_mut() else { return false };
        let removed = remove_in(child, rest, value, syntax);
        if child.is_empty() {
            *slot = None;
        }
        return removed;
    }
    let Some(child) = node.words.get_mut(*first) else { return false };
    let removed = remove_in(child, rest, value, syntax);
    if child.is_empty() {
        node.words.remove(*first);
    }
    removed
}

fn match_in<T: Clone>(node: &Node<T>, levels: &[&str], out: &mut Vec<T>, hide_wildcards: bool) {
    if let Some(many) = node.many.as_deref().filter(|_| !hide_wildcards) {
        // The multi-level wildcard swallows zero or more of the remaining levels.
        for skip in 0..=levels.len() {
            match_in(many, &levels[skip..], out, false);
        }
    }
    let Some((first, rest)) = levels.split_first() else {
        out.extend(node.values.iter().cloned());
        return;
    };
    if let Some(child) = node.words.get(*first) {
        match_in(child, rest, out, false);
    }
    if let Some(one) = node.one.as_deref().filter(|_| !hide_wildcards) {
        match_in(one, rest, out, false);
    }
}

/// Does one pattern match one topic? (The trie answers the same question for many patterns;
/// this walks the two level lists without allocating.)
pub fn pattern_matches(syntax: TopicSyntax, pattern: &str, topic: &str) -> bool {
    let hidden = syntax.dollar_topics_hidden && topic.starts_with('$');
    if hidden && (pattern.starts_with(syntax.one_level) || pattern.starts_with(syntax.many_levels)) {
        let first = pattern.split(syntax.separator).next().unwrap_or("");
        if first == syntax.one_level || first == syntax.many_levels {
            return false;
        }
    }
    let p: Vec<&str> = syntax.levels(pattern).collect();
    let t: Vec<&str> = syntax.levels(topic).collect();
    levels_match(&syntax, &p, &t)
}

fn levels_match(syntax: &TopicSyntax, p: &[&str], t: &[&str]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((first, rest)) if *first == syntax.many_levels => (0..=t.len()).any(|k| levels_match(syntax, rest, &t[k..])),
        Some((first, rest)) => match t.split_first() {
            Some((word, trest)) => (*first == syntax.one_level || first == word) && levels_match(syntax, rest, trest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests;
