//! An MQTT session: what outlives a connection when the client asked for it (clean session 0,
//! or a session expiry interval > 0). Its messages wait in a core queue; its subscriptions
//! and QoS 2 state are stored as a session record, so both survive a broker restart.

use crate::packet::SubscriptionOptions;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The protocol name under which sessions are stored in the core.
pub const PROTOCOL: &str = "mqtt";

/// One subscription as the client made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub subscription_id: Option<u32>,
}

impl Subscription {
    pub fn new(options: &SubscriptionOptions, subscription_id: Option<u32>) -> Subscription {
        Subscription {
            qos: options.qos.min(2),
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            subscription_id,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// Filter (as the client wrote it, `$share/...` included) -> options.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Inbound QoS 2 packet ids received (PUBREC sent) and not yet released by PUBREL:
    /// a repeated PUBLISH with one of these ids is a duplicate and is not routed again.
    pub incoming_qos2: BTreeSet<u16>,
    /// Outbound QoS 2 packet ids whose PUBREC arrived: PUBREL is (re)sent until PUBCOMP.
    pub awaiting_pubcomp: BTreeSet<u16>,
    /// Seconds the session lives after a disconnect (u32::MAX: forever).
    pub expiry_secs: u32,
    /// When the client last disconnected (Unix ms); 0 while connected.
    pub disconnected_at_ms: u64,
}

impl SessionState {
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("a session always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Option<SessionState> {
        bincode::deserialize(bytes).ok()
    }

    /// Has the session outlived its expiry interval at `now_ms`?
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expiry_secs != u32::MAX
            && self.disconnected_at_ms > 0
            && self.disconnected_at_ms + u64::from(self.expiry_secs) * 1000 <= now_ms
    }
}

const SESSION_QUEUE_PREFIX: &str = "mqtt-session-";

/// The core queue holding a client's messages.
pub fn queue_name(client_id: &str) -> String {
    format!("{SESSION_QUEUE_PREFIX}{client_id}")
}

pub fn is_session_queue(queue: &str) -> bool {
    queue.starts_with(SESSION_QUEUE_PREFIX)
}

/// The core queue shared by the members of `$share/{group}/{filter}`.
pub fn shared_queue_name(group: &str, filter: &str) -> String {
    format!("mqtt-share-{group}-{filter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_expires() {
        let mut s = SessionState { expiry_secs: 10, ..Default::default() };
        s.subscriptions.insert("a/#".into(), Subscription { qos: 1, no_local: true, retain_as_published: false, subscription_id: Some(7) });
        s.incoming_qos2.insert(5);
        assert_eq!(SessionState::decode(&s.encode()), Some(s.clone()));
        assert!(!s.expired(1_000_000), "connected sessions never expire");
        s.disconnected_at_ms = 1_000;
        assert!(!s.expired(10_999));
        assert!(s.expired(11_000));
        s.expiry_secs = u32::MAX;
        assert!(!s.expired(u64::MAX));
    }
}
