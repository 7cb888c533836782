//! Which connection currently owns each client id, so that a second CONNECT with the same id
//! takes the session over: the first connection is told to leave and finishes its cleanup
//! before the new one attaches to the session. Connections are told to leave, on a takeover or
//! when the broker shuts down, through their listing in the broker's connection registry: the
//! one thing every connection already waits on for operators' close requests.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use junction_core::registry::{CloseReason, ConnectionEntry};
use tokio::sync::Notify;

/// How long a takeover waits for the connection it replaces to finish its cleanup.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The connection's listing, through which it is told to leave; its id (unique in the
/// broker) tells one owner of a client id from the next.
struct Owner {
    connection: Arc<ConnectionEntry>,
}

impl Owner {
    fn generation(&self) -> u64 {
        self.connection.id
    }
}

#[derive(Default)]
struct Owners {
    /// Vhost -> client id -> owner (by vhost first: a key per connection holds only its id).
    by_vhost: HashMap<String, HashMap<Arc<str>, Owner>>,
    /// Generations taken over and not released yet: their successors wait for them.
    replaced: HashSet<u64>,
}

#[derive(Default)]
pub struct Registry {
    owners: Mutex<Owners>,
    /// Woken whenever a replaced owner releases. One for the whole registry, not a channel per
    /// connection: takeovers are rare, and every idle connection would pay for its channel.
    released: Notify,
    /// Set by `shut_down`: a connection claiming an id from then on is told to leave at once.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Claims `client_id` in `vhost` for the connection listed as `connection`; an existing
    /// owner is told to leave and awaited (bounded). Returns whether someone was taken over, and
    /// the generation to `release` with.
    pub async fn claim(&self, vhost: &str, client_id: Arc<str>, connection: Arc<ConnectionEntry>) -> (bool, u64) {
        let owner = Owner { connection };
        let generation = owner.generation();
        let previous = {
            let mut owners = self.owners.lock();
            // Read under the lock `shut_down` takes: a claim is either told here or there.
            if self.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
                owner.connection.ask_to_close(CloseReason::ShuttingDown);
            }
            let previous = owners.by_vhost.entry(vhost.to_string()).or_default().insert(client_id, owner);
            if let Some(old) = &previous {
                owners.replaced.insert(old.generation());
            }
            previous
        };
        let took_over = previous.is_some();
        if let Some(old) = previous {
            old.connection.ask_to_close(CloseReason::TakenOver);
            let _ = tokio::time::timeout(RELEASE_WAIT, self.wait_for_release(old.generation())).await;
            self.owners.lock().replaced.remove(&old.generation());
        }
        (took_over, generation)
    }

    async fn wait_for_release(&self, generation: u64) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check: a release in between still wakes us.
            released.as_mut().enable();
            if !self.owners.lock().replaced.contains(&generation) {
                return;
            }
            released.await;
        }
    }

    /// The owner `generation` has let go of the id: forgets it if it is still listed (a newer
    /// one may already have claimed), and lets a takeover waiting for it go on.
    pub fn release(&self, vhost: &str, client_id: &str, generation: u64) {
        let mut owners = self.owners.lock();
        if owners.replaced.remove(&generation) {
            self.released.notify_waiters();
        }
        let Some(of_vhost) = owners.by_vhost.get_mut(vhost) else { return };
        if of_vhost.get(client_id).is_some_and(|o| o.generation() == generation) {
            of_vhost.remove(client_id);
            if of_vhost.is_empty() {
                owners.by_vhost.remove(vhost);
            }
        }
    }

    /// Tells every connection, and every one that claims an id from now on, to leave.
    pub fn shut_down(&self) {
        let owners = self.owners.lock();
        self.shutting_down.store(true, std::sync::atomic::Ordering::Relaxed);
        for owner in owners.by_vhost.values().flat_map(HashMap::values) {
            owner.connection.ask_to_close(CloseReason::ShuttingDown);
        }
    }

    /// Clients connected now.
    pub fn connected(&self) -> usize {
        self.owners.lock().by_vhost.values().map(HashMap::len).sum()
    }

    pub fn is_connected(&self, vhost: &str, client_id: &str) -> bool {
        self.owners.lock().by_vhost.get(vhost).is_some_and(|of_vhost| of_vhost.contains_key(client_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_core::registry::{ConnectionInfo, Link, Protocol, Registration};

    fn listed(connections: &Arc<junction_core::registry::Registry>, id: u64) -> Registration {
        let info = ConnectionInfo {
            protocol: Protocol::Mqtt,
            protocol_version: "MQTT 5.0",
            user: "u".into(),
            vhost: "/".into(),
            client_id: "c".into(),
            link: Link::tcp("127.0.0.1:1883".parse().unwrap()),
        };
        connections.register(id, info, Arc::default())
    }

    async fn told(connection: &mut Registration) -> String {
        tokio::time::timeout(Duration::from_secs(1), connection.close_requested()).await.expect("told to leave")
    }

    #[tokio::test]
    async fn a_second_claim_tells_the_first_to_leave_and_waits_for_release() {
        let (connections, reg) = (Arc::default(), Registry::new());
        let (mut first, second) = (listed(&connections, 1), listed(&connections, 2));
        let (took, generation) = reg.claim("/", "c".into(), first.entry.clone()).await;
        assert!(!took);
        let reg2 = reg.clone();
        let entry = second.entry.clone();
        let claiming = tokio::spawn(async move { reg2.claim("/", "c".into(), entry).await });
        assert_eq!(told(&mut first).await, CloseReason::TakenOver.text());
        tokio::task::yield_now().await;
        assert!(!claiming.is_finished(), "waits for the first to release");
        reg.release("/", "c", generation);
        let (took, _) = tokio::time::timeout(Duration::from_secs(1), claiming).await.unwrap().unwrap();
        assert!(took);
        assert!(reg.is_connected("/", "c"), "a stale release does not remove the new owner");
        drop(second);
    }

    #[tokio::test(start_paused = true)]
    async fn a_takeover_goes_on_after_a_while_if_the_old_owner_never_releases() {
        let (connections, reg) = (Arc::default(), Registry::new());
        let (first, second) = (listed(&connections, 1), listed(&connections, 2));
        reg.claim("/", "c".into(), first.entry.clone()).await;
        let (took, _) = reg.claim("/", "c".into(), second.entry.clone()).await;
        assert!(took);
        assert!(reg.owners.lock().replaced.is_empty());
    }

    #[tokio::test]
    async fn shutting_down_tells_current_and_later_owners_to_leave() {
        let (connections, reg) = (Arc::default(), Registry::new());
        let (mut first, mut later) = (listed(&connections, 1), listed(&connections, 2));
        reg.claim("/", "a".into(), first.entry.clone()).await;
        reg.shut_down();
        assert_eq!(told(&mut first).await, CloseReason::ShuttingDown.text());
        reg.claim("/", "b".into(), later.entry.clone()).await;
        assert_eq!(told(&mut later).await, CloseReason::ShuttingDown.text());
    }
}
