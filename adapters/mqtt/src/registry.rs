//! Which connection currently owns each client id, so that a second CONNECT with the same id
//! takes the session over: the first connection is told to leave and finishes its cleanup
//! before the new one attaches to the session. The same message tells every connection to
//! leave when the broker shuts down (a connection then waits on one thing less).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const SERVER_SHUTTING_DOWN: u8 = crate::packet::reason::SERVER_SHUTTING_DOWN;

/// Handed to the connection that owns a client id.
pub struct Ownership {
    /// Fires with the DISCONNECT reason code when the connection must leave: another
    /// connection took the id over, or the broker is shutting down.
    pub kicked: oneshot::Receiver<u8>,
    /// Dropped (or sent) when this connection has fully released the session.
    pub released: oneshot::Sender<()>,
    pub generation: u64,
}

struct Owner {
    kick: Option<oneshot::Sender<u8>>,
    released: oneshot::Receiver<()>,
    generation: u64,
}

#[derive(Default)]
pub struct Registry {
    /// Vhost -> client id -> owner (by vhost first: a key per connection holds only its id).
    owners: Mutex<HashMap<String, HashMap<String, Owner>>>,
    generations: std::sync::atomic::AtomicU64,
    /// Set by `shut_down`: a connection claiming an id from then on is told to leave at once.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Claims `client_id` in `vhost`; an existing owner is kicked and awaited (bounded).
    /// Returns whether someone was taken over, and the new ownership.
    pub async fn claim(&self, vhost: &str, client_id: &str) -> (bool, Ownership) {
        let (kick_tx, kick_rx) = oneshot::channel();
        let (released_tx, released_rx) = oneshot::channel();
        let generation = self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut owner = Owner { kick: Some(kick_tx), released: released_rx, generation };
        let previous = {
            let mut owners = self.owners.lock();
            // Read under the lock `shut_down` takes: a claim is either told here or there.
            if self.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kick) = owner.kick.take() {
                    let _ = kick.send(SERVER_SHUTTING_DOWN);
                }
            }
            owners.entry(vhost.to_string()).or_default().insert(client_id.to_string(), owner)
        };
        let took_over = previous.is_some();
        if let Some(mut old) = previous {
            if let Some(kick) = old.kick.take() {
                let _ = kick.send(crate::packet::reason::SESSION_TAKEN_OVER);
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), old.released).await;
        }
        (took_over, Ownership { kicked: kick_rx, released: released_tx, generation })
    }

    /// Forgets the owner if it is still `generation` (a newer one may already have claimed).
    pub fn release(&self, vhost: &str, client_id: &str, generation: u64) {
        let mut owners = self.owners.lock();
        let Some(of_vhost) = owners.get_mut(vhost) else { return };
        if of_vhost.get(client_id).is_some_and(|o| o.generation == generation) {
            of_vhost.remove(client_id);
            if of_vhost.is_empty() {
                owners.remove(vhost);
            }
        }
    }

    /// Tells every connection, and every one that claims an id from now on, to leave.
    pub fn shut_down(&self) {
        let mut owners = self.owners.lock();
        self.shutting_down.store(true, std::sync::atomic::Ordering::Relaxed);
        for owner in owners.values_mut().flat_map(HashMap::values_mut) {
            if let Some(kick) = owner.kick.take() {
                let _ = kick.send(SERVER_SHUTTING_DOWN);
            }
        }
    }

    /// Clients connected now.
    pub fn connected(&self) -> usize {
        self.owners.lock().values().map(HashMap::len).sum()
    }

    pub fn is_connected(&self, vhost: &str, client_id: &str) -> bool {
        self.owners.lock().get(vhost).is_some_and(|of_vhost| of_vhost.contains_key(client_id))
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_kicks_the_first_and_waits_for_release() {
        let reg = Registry::new();
        let (took, first) = reg.claim("/", "c").await;
        assert!(!took);
        let Ownership { kicked, released, generation } = first;
        let reg2 = reg.clone();
        let second = tokio::spawn(async move { reg2.claim("/", "c").await });
        assert_eq!(kicked.await, Ok(crate::packet::reason::SESSION_TAKEN_OVER));
        assert!(!second.is_finished());
        let _ = released.send(());
        let (took, _new) = second.await.unwrap();
        assert!(took);
        reg.release("/", "c", generation);
        assert!(reg.is_connected("/", "c"), "a stale release does not remove the new owner");
    }

    #[tokio::test]
    async fn shutting_down_tells_current_and_later_owners_to_leave() {
        let reg = Registry::new();
        let (_, first) = reg.claim("/", "a").await;
        reg.shut_down();
        assert_eq!(first.kicked.await, Ok(SERVER_SHUTTING_DOWN));
        let (_, later) = reg.claim("/", "b").await;
        assert_eq!(later.kicked.await, Ok(SERVER_SHUTTING_DOWN));
    }
}
