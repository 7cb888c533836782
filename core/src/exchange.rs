//! Exchanges and their bindings. Routing takes a read lock on one exchange's bindings at a time;
//! declarations and bindings take the write lock, so publishers never wait on a global lock.

use crate::message::{Table, Value};
use crate::queue::Queue;
use crate::topic::{TopicTrie, AMQP};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        Some(match s {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding delivers: a queue, or another exchange (exchange-to-exchange binding).
#[derive(Debug, Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(String),
}

impl PartialEq for Destination {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => a == b,
            _ => false,
        }
    }
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(q) => q.name(),
            Destination::Exchange(x) => x,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub destination: Destination,
    pub key: String,
    pub arguments: Table,
}

/// The declared properties of an exchange, compared on redeclaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Table,
}

impl ExchangeSpec {
    /// The `alternate-exchange` argument: where unroutable messages go instead.
    pub fn alternate(&self) -> Option<&str> {
        self.arguments.get("alternate-exchange").and_then(Value::as_str)
    }

    /// Same declaration as far as AMQP's equivalence rules go.
    pub fn equivalent(&self, other: &ExchangeSpec) -> bool {
        self.kind == other.kind
            && self.durable == other.durable
            && self.auto_delete == other.auto_delete
            && self.internal == other.internal
            && self.arguments.same_entries(&other.arguments)
    }
}

pub struct Exchange {
    pub spec: ExchangeSpec,
    bindings: RwLock<Bindings>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").field("spec", &self.spec).finish()
    }
}

/// All bindings of one exchange, with an index suited to its kind.
struct Bindings {
    list: Vec<Binding>,
    by_key: HashMap<String, Vec<Destination>>,
    topics: TopicTrie<Destination>,
}

impl Exchange {
    pub fn new(spec: ExchangeSpec) -> Exchange {
        let bindings = Bindings { list: Vec::new(), by_key: HashMap::new(), topics: TopicTrie::new(AMQP) };
        Exchange { spec, bindings: RwLock::new(bindings) }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Adds a binding; false if an identical one already exists.
    pub fn bind(&self, binding: Binding) -> bool {
        let mut b = self.bindings.write();
        let exists = b.list.iter().any(|x| {
            x.destination == binding.destination
                && x.key == binding.key
                && x.arguments.same_entries(&binding.arguments)
        });
        if exists {
            return false;
        }
        match self.spec.kind {
            ExchangeKind::Direct => {
                b.by_key.entry(binding.key.clone()).or_default().push(binding.destination.clone())
            }
            ExchangeKind::Topic => b.topics.insert(&binding.key, binding.destination.clone()),
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
        b.list.push(binding);
        true
    }

    /// Removes bindings matching `keep == false`; returns what was removed.
    pub fn unbind_where(&self, mut remove: impl FnMut(&Binding) -> bool) -> Vec<Binding> {
        let mut b = self.bindings.write();
        let (gone, kept): (Vec<Binding>, Vec<Binding>) = b.list.drain(..).partition(|x| remove(x));
        b.list = kept;
        for binding in &gone {
            match self.spec.kind {
                ExchangeKind::Direct => {
                    if let Some(dests) = b.by_key.get_mut(&binding.key) {
                        if let Some(pos) = dests.iter().position(|d| *d == binding.destination) {
                            dests.remove(pos);
                        }
                        if dests.is_empty() {
                            b.by_key.remove(&binding.key);
                        }
                    }
                }
                ExchangeKind::Topic => {
                    b.topics.remove(&binding.key, &binding.destination);
                }
                ExchangeKind::Fanout | ExchangeKind::Headers => {}
            }
        }
        gone
    }

    pub fn bindings(&self) -> Vec<Binding> {
        self.bindings.read().list.clone()
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.read().list.is_empty()
    }

    /// Appends the destinations that `routing_key` and `headers` select.
    pub fn route(&self, routing_key: &str, headers: &Table, out: &mut Vec<Destination>) {
        let b = self.bindings.read();
        match self.spec.kind {
            ExchangeKind::Direct => {
                if let Some(dests) = b.by_key.get(routing_key) {
                    out.extend(dests.iter().cloned());
                }
            }
            ExchangeKind::Fanout => out.extend(b.list.iter().map(|x| x.destination.clone())),
            ExchangeKind::Topic => b.topics.matches(routing_key, out),
            ExchangeKind::Headers => out.extend(
                b.list
                    .iter()
                    .filter(|x| headers_match(&x.arguments, headers))
                    .map(|x| x.destination.clone()),
            ),
        }
    }
}

/// The headers exchange rule: `x-match` = `all` (default), `any`, `all-with-x` or `any-with-x`.
/// A binding argument whose value is void only asks for the header to be present.
pub fn headers_match(binding: &Table, headers: &Table) -> bool {
    let mode = binding.get("x-match").and_then(Value::as_str).unwrap_or("all");
    let with_x = mode.ends_with("-with-x");
    let mut wanted = binding.iter().filter(|(k, _)| with_x || !k.starts_with("x-")).peekable();
    if wanted.peek().is_none() {
        return mode.starts_with("all");
    }
    let hit = |(k, v): (&str, &Value)| match headers.get(k) {
        Some(h) => matches!(v, Value::Void) || values_equal(v, h),
        None => false,
    };
    if mode.starts_with("any") {
        wanted.any(hit)
    } else {
        wanted.all(hit)
    }
}

/// Header values compare by meaning: `1` as a short and as a long int are the same number.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, Value)]) -> Table {
        Table(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn headers_all_and_any() {
        let msg = table(&[("format", Value::str("pdf")), ("type", Value::str("report"))]);
        let all = table(&[("x-match", Value::str("all")), ("format", Value::str("pdf")), ("type", Value::str("log"))]);
        let any = table(&[("x-match", Value::str("any")), ("format", Value::str("pdf")), ("type", Value::str("log"))]);
        assert!(!headers_match(&all, &msg));
        assert!(headers_match(&any, &msg));
        let ints = table(&[("n", Value::I32(1))]);
        assert!(headers_match(&ints, &table(&[("n", Value::I8(1))])));
        assert!(headers_match(&table(&[]), &msg), "no arguments with all matches everything");
    }
}
