//! Who may do what, in RabbitMQ's model, for every protocol.
//!
//! Per user and vhost, three patterns over resource names: *configure* (declare and delete
//! queues and exchanges), *write* (publish to an exchange, bind to a queue) and *read* (consume
//! from a queue, bind from an exchange). Per user, vhost and exchange, optional topic
//! permissions: patterns over routing keys, *write* for publishing and *read* for binding (an
//! MQTT subscription). A user without permissions on a vhost cannot use it; an exchange without
//! topic permissions for the user puts no limit on routing keys.
//!
//! Patterns are regular expressions matched anywhere in the name unless anchored, with
//! look-around as RabbitMQ's (PCRE) patterns allow, e.g. `^(?!private\.).*`. The empty pattern
//! matches nothing. The default exchange is named `amq.default` in checks, as in RabbitMQ.

use crate::error::{CoreError, CoreResult};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Configure,
    Write,
    Read,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Configure => "configure",
            Op::Write => "write",
            Op::Read => "read",
        }
    }
}

/// What a permission is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Queue(&'a str),
    Exchange(&'a str),
}

impl Resource<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Resource::Queue(_) => "queue",
            Resource::Exchange(_) => "exchange",
        }
    }

    fn name(&self) -> &str {
        match self {
            Resource::Queue(n) => n,
            Resource::Exchange("") => "amq.default",
            Resource::Exchange(n) => n,
        }
    }
}

/// A permission pattern, compiled.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Option<fancy_regex::Regex>,
    /// `.*` and its anchored forms: checked on every publish, so they skip the regex engine.
    matches_everything: bool,
}

impl Pattern {
    pub fn new(source: &str) -> CoreResult<Pattern> {
        let regex = if source.is_empty() {
            None
        } else {
            let compiled = fancy_regex::Regex::new(source)
                .map_err(|e| CoreError::invalid(format!("bad permission pattern '{source}': {e}")))?;
            Some(compiled)
        };
        let matches_everything = matches!(source, ".*" | "^.*" | "^.*$" | ".*$");
        Ok(Pattern { source: source.to_string(), regex, matches_everything })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// A pattern that fails to evaluate (backtracking limit) denies.
    pub fn matches(&self, name: &str) -> bool {
        self.matches_everything || self.regex.as_ref().is_some_and(|r| r.is_match(name).unwrap_or(false))
    }
}

/// The stored form of a user's permissions on a vhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRecord {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// The stored form of a user's topic permissions on one exchange of a vhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPermissionRecord {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug)]
pub struct VhostPermissions {
    pub configure: Pattern,
    pub write: Pattern,
    pub read: Pattern,
}

impl VhostPermissions {
    pub fn compile(r: &PermissionRecord) -> CoreResult<VhostPermissions> {
        Ok(VhostPermissions { configure: Pattern::new(&r.configure)?, write: Pattern::new(&r.write)?, read: Pattern::new(&r.read)? })
    }

    fn pattern(&self, op: Op) -> &Pattern {
        match op {
            Op::Configure => &self.configure,
            Op::Write => &self.write,
            Op::Read => &self.read,
        }
    }
}

#[derive(Debug)]
pub struct TopicPermissions {
    pub exchange: String,
    pub write: Pattern,
    pub read: Pattern,
}

impl TopicPermissions {
    pub fn compile(r: &TopicPermissionRecord) -> CoreResult<TopicPermissions> {
        Ok(TopicPermissions { exchange: r.exchange.clone(), write: Pattern::new(&r.write)?, read: Pattern::new(&r.read)? })
    }
}

/// What one logged-in user may do in one vhost: resolved when a connection opens the vhost
/// and checked by the adapters before every operation. Shared: the connections of one user in
/// one vhost hold the same grant (a pointer each; see `PermissionTable::access`).
#[derive(Debug, Clone)]
pub struct Access(Arc<Grant>);

#[derive(Debug)]
struct Grant {
    /// Shared with the listings of the connections holding this grant (see
    /// `ConnectionInfo::new`): a name per connection would be an allocation each.
    user: Arc<str>,
    vhost: Arc<str>,
    permissions: Arc<VhostPermissions>,
    topics: Vec<Arc<TopicPermissions>>,
}

impl Access {
    pub fn new(user: &str, vhost: &str, permissions: Arc<VhostPermissions>, topics: Vec<Arc<TopicPermissions>>) -> Access {
        Access(Arc::new(Grant { user: user.into(), vhost: vhost.into(), permissions, topics }))
    }

    /// The user these rights are of.
    pub fn user(&self) -> &str {
        &self.0.user
    }

    /// The user and vhost these rights are of, shared.
    pub(crate) fn names(&self) -> (Arc<str>, Arc<str>) {
        (self.0.user.clone(), self.0.vhost.clone())
    }

    /// Refused with RabbitMQ's text, e.g. "access to queue 'q' in vhost '/' refused for user 'u'".
    pub fn check(&self, op: Op, resource: Resource<'_>) -> CoreResult<()> {
        if self.0.permissions.pattern(op).matches(resource.name()) {
            return Ok(());
        }
        Err(CoreError::refused(format!(
            "access to {} '{}' in vhost '{}' refused for user '{}'",
            resource.kind(),
            resource.name(),
            self.0.vhost,
            self.0.user
        )))
    }

    /// Checks a routing key (or binding key) against the topic permissions of `exchange`.
    pub fn check_topic(&self, op: Op, exchange: &str, routing_key: &str) -> CoreResult<()> {
        let allowed = self.0.topics.iter().filter(|t| t.exchange == exchange).all(|t| match op {
            Op::Read => t.read.matches(routing_key),
            _ => t.write.matches(routing_key),
        });
        if allowed {
            return Ok(());
        }
        Err(CoreError::refused(format!(
            "{} access to topic '{routing_key}' in exchange '{exchange}' in vhost '{}' refused for user '{}'",
            op.as_str(),
            self.0.vhost,
            self.0.user
        )))
    }

    /// Full access, for code acting on the broker's own behalf and for unit tests.
    pub fn unrestricted(user: &str, vhost: &str) -> Access {
        let all = || Pattern::new(".*").expect("a valid pattern");
        let permissions = VhostPermissions { configure: all(), write: all(), read: all() };
        Access::new(user, vhost, Arc::new(permissions), Vec::new())
    }
}

/// Every user's permissions, compiled, as the store holds them.
#[derive(Default)]
pub struct PermissionTable {
    /// (user, vhost) -> permissions.
    vhosts: RwLock<HashMap<(String, String), (PermissionRecord, Arc<VhostPermissions>)>>,
    /// (user, vhost, exchange) -> topic permissions.
    topics: RwLock<HashMap<(String, String, String), (TopicPermissionRecord, Arc<TopicPermissions>)>>,
    /// (user, vhost) -> the grant connections share; emptied by every change. Built and
    /// emptied under its own lock, so a grant built from tables a change is replacing is
    /// emptied by that change.
    granted: Mutex<HashMap<(String, String), Access>>,
}

impl PermissionTable {
    /// Sets (replaces) a user's permissions on a vhost; fails on a bad pattern.
    pub fn set(&self, r: PermissionRecord) -> CoreResult<()> {
        let compiled = Arc::new(VhostPermissions::compile(&r)?);
        self.vhosts.write().insert((r.user.clone(), r.vhost.clone()), (r, compiled));
        self.granted.lock().clear();
        Ok(())
    }

    pub fn set_topic(&self, r: TopicPermissionRecord) -> CoreResult<()> {
        let compiled = Arc::new(TopicPermissions::compile(&r)?);
        self.topics.write().insert((r.user.clone(), r.vhost.clone(), r.exchange.clone()), (r, compiled));
        self.granted.lock().clear();
        Ok(())
    }

    /// What `user` may do in `vhost`; None when the user has no permissions there.
    pub fn access(&self, user: &str, vhost: &str) -> Option<Access> {
        let mut granted = self.granted.lock();
        let key = (user.to_string(), vhost.to_string());
        if let Some(access) = granted.get(&key) {
            return Some(access.clone());
        }
        let permissions = self.vhosts.read().get(&(user.to_string(), vhost.to_string()))?.1.clone();
        let topics = self
            .topics
            .read()
            .iter()
            .filter(|((u, v, _), _)| u == user && v == vhost)
            .map(|(_, (_, t))| t.clone())
            .collect();
        let access = Access::new(user, vhost, permissions, topics);
        granted.insert(key, access.clone());
        Some(access)
    }

    /// Removes a user's permissions on a vhost (and its topic permissions there).
    pub fn remove(&self, user: &str, vhost: &str) -> (Option<PermissionRecord>, Vec<TopicPermissionRecord>) {
        let removed = self.vhosts.write().remove(&(user.to_string(), vhost.to_string())).map(|(r, _)| r);
        let mut topics = self.topics.write();
        let keys: Vec<_> = topics.keys().filter(|(u, v, _)| u == user && v == vhost).cloned().collect();
        let topic_records = keys.into_iter().filter_map(|k| topics.remove(&k)).map(|(r, _)| r).collect();
        drop(topics);
        self.granted.lock().clear();
        (removed, topic_records)
    }

    pub fn records(&self) -> Vec<PermissionRecord> {
        self.vhosts.read().values().map(|(r, _)| r.clone()).collect()
    }

    pub fn topic_records(&self) -> Vec<TopicPermissionRecord> {
        self.topics.read().values().map(|(r, _)| r.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_share_a_grant_until_permissions_change() {
        let table = PermissionTable::default();
        let record = |write: &str| PermissionRecord { user: "u".into(), vhost: "/".into(), configure: "".into(), write: write.into(), read: "".into() };
        table.set(record("^a$")).unwrap();
        let (first, second) = (table.access("u", "/").unwrap(), table.access("u", "/").unwrap());
        assert!(Arc::ptr_eq(&first.0, &second.0), "one grant for both connections");
        table.set(record("^b$")).unwrap();
        let after = table.access("u", "/").unwrap();
        assert!(after.check(Op::Write, Resource::Exchange("b")).is_ok(), "the change applies to new connections");
        assert!(first.check(Op::Write, Resource::Exchange("a")).is_ok(), "open ones keep what they had");
        table.remove("u", "/");
        assert!(table.access("u", "/").is_none());
    }

    fn access(configure: &str, write: &str, read: &str, topics: &[(&str, &str, &str)]) -> Access {
        let record = PermissionRecord { user: "u".into(), vhost: "/".into(), configure: configure.into(), write: write.into(), read: read.into() };
        let topics = topics
            .iter()
            .map(|(exchange, write, read)| {
                let r = TopicPermissionRecord { user: "u".into(), vhost: "/".into(), exchange: exchange.to_string(), write: write.to_string(), read: read.to_string() };
                Arc::new(TopicPermissions::compile(&r).unwrap())
            })
            .collect();
        Access::new("u", "/", Arc::new(VhostPermissions::compile(&record).unwrap()), topics)
    }

    #[test]
    fn patterns_match_anywhere_unless_anchored_and_empty_matches_nothing() {
        let a = access("^tmp-", "orders", "", &[]);
        assert!(a.check(Op::Configure, Resource::Queue("tmp-1")).is_ok());
        assert!(a.check(Op::Configure, Resource::Queue("x-tmp-1")).is_err());
        assert!(a.check(Op::Write, Resource::Exchange("all-orders-here")).is_ok());
        let refused = a.check(Op::Read, Resource::Queue("q")).unwrap_err();
        assert_eq!(refused.message, "access to queue 'q' in vhost '/' refused for user 'u'");
        let default = a.check(Op::Write, Resource::Exchange("")).unwrap_err();
        assert!(default.message.contains("exchange 'amq.default'"));
    }

    #[test]
    fn topic_permissions_apply_only_to_their_exchange_and_allow_lookahead() {
        let a = access(".*", ".*", ".*", &[("amq.topic", "^sensors\\.", "^(?!test\\.nosubscribe$).*")]);
        assert!(a.check_topic(Op::Write, "amq.topic", "sensors.t1").is_ok());
        assert!(a.check_topic(Op::Write, "amq.topic", "actuators.t1").is_err());
        assert!(a.check_topic(Op::Read, "amq.topic", "test.subscribe").is_ok());
        let refused = a.check_topic(Op::Read, "amq.topic", "test.nosubscribe").unwrap_err();
        assert_eq!(refused.message, "read access to topic 'test.nosubscribe' in exchange 'amq.topic' in vhost '/' refused for user 'u'");
        assert!(a.check_topic(Op::Write, "other", "anything").is_ok(), "no topic permissions there");
    }

    #[test]
    fn a_bad_pattern_is_refused_when_set() {
        assert!(Pattern::new("(unclosed").is_err());
    }
}
