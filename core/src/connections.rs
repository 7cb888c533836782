//! Connection limits (total and per user) for every protocol, and the brake on failed logins.
//!
//! An adapter asks for a `ConnectionPermit` once it knows who logged in; the permit counts the
//! connection until it is dropped. Failed logins are counted per source address and user: after
//! `MAX_FAILURES` within `FAILURE_WINDOW` that user is refused from that address without a password check for
//! the rest of the window (argon2 is deliberately slow, so guessing also costs the broker CPU).

use crate::error::{CoreError, CoreResult, ErrorKind};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections in all; 0 = no limit.
    pub max_total: usize,
    /// Open connections of one user; 0 = no limit.
    pub max_per_user: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_user: HashMap<String, usize>,
}

pub struct Connections {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
    /// (address, user) -> (window start, failures): per user too, so that clients behind one
    /// proxy address cannot lock each other out.
    failures: Mutex<HashMap<(IpAddr, String), (Instant, u32)>>,
}

/// Counts one open connection until dropped, and keeps it listed for operators.
pub struct ConnectionPermit {
    connections: Arc<Connections>,
    /// Its listing; the connection counts against the limits of `entry.info.user`.
    pub registration: crate::registry::Registration,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.connections.counts.lock();
        counts.total -= 1;
        let user: &str = &self.registration.entry.info.user;
        if let Some(n) = counts.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                counts.per_user.remove(user);
            }
        }
    }
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Connections> {
        Arc::new(Connections { limits, counts: Mutex::default(), failures: Mutex::default() })
    }

    /// Admits a connection of `user`, or refuses it (RabbitMQ's wording) when a limit is reached.
    /// `listing` registers it, under that same user (the permit uncounts the listed user).
    pub fn admit(self: &Arc<Self>, user: &str, listing: impl FnOnce() -> crate::registry::Registration) -> CoreResult<ConnectionPermit> {
        let mut counts = self.counts.lock();
        let limit = |max: usize, n: usize| max > 0 && n >= max;
        if limit(self.limits.max_total, counts.total) {
            return Err(CoreError::new(ErrorKind::NotAllowed, format!("connection limit ({}) is reached", self.limits.max_total)));
        }
        let of_user = counts.per_user.get(user).copied().unwrap_or(0);
        if limit(self.limits.max_per_user, of_user) {
            let message = format!("connection refused for user '{user}': user connection limit ({}) is reached", self.limits.max_per_user);
            return Err(CoreError::new(ErrorKind::NotAllowed, message));
        }
        counts.total += 1;
        *counts.per_user.entry(user.to_string()).or_default() += 1;
        Ok(ConnectionPermit { connections: self.clone(), registration: listing() })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.counts.lock().total
    }

    /// True while `user` has failed too many logins from `peer` recently.
    pub fn login_blocked(&self, peer: IpAddr, user: &str) -> bool {
        let failures = self.failures.lock();
        failures.get(&(peer, user.to_string())).is_some_and(|(since, n)| *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
    }

    pub fn login_failed(&self, peer: IpAddr, user: &str) {
        let mut failures = self.failures.lock();
        if failures.len() > 10_000 {
            // Many addresses: forget the old windows rather than grow without bound.
            failures.retain(|_, (since, _)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry((peer, user.to_string())).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_open_connections_and_permits_release_them() {
        let c = Connections::new(ConnectionLimits { max_total: 3, max_per_user: 2 });
        let registry = Arc::new(crate::registry::Registry::default());
        let link = crate::registry::Link::tcp("127.0.0.1:1".parse().unwrap());
        let admit = |user: &str| {
            let info = crate::registry::ConnectionInfo {
                protocol: crate::registry::Protocol::Amqp,
                protocol_version: "AMQP 0-9-1",
                user: user.into(),
                vhost: "/".into(),
                client_id: "".into(),
                link: link.clone(),
            };
            c.admit(user, || registry.register(1, info, Arc::default()))
        };
        let a1 = admit("alice").unwrap();
        let _a2 = admit("alice").unwrap();
        let refused = admit("alice").err().unwrap();
        assert_eq!(refused.message, "connection refused for user 'alice': user connection limit (2) is reached");
        let _b = admit("bob").unwrap();
        assert_eq!(admit("carol").err().unwrap().message, "connection limit (3) is reached");
        drop(a1);
        assert_eq!(c.open(), 2);
        admit("alice").expect("a slot came free");
    }

    #[test]
    fn repeated_login_failures_block_the_address() {
        let c = Connections::new(ConnectionLimits::default());
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..MAX_FAILURES - 1 {
            c.login_failed(peer, "u");
        }
        assert!(!c.login_blocked(peer, "u"));
        c.login_failed(peer, "u");
        assert!(c.login_blocked(peer, "u"));
        assert!(!c.login_blocked("10.1.2.4".parse().unwrap(), "u"), "other addresses are not affected");
        assert!(!c.login_blocked(peer, "v"), "nor other users behind the same address");
    }
}
