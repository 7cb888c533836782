//! Which connection currently owns each client id, so that a second CONNECT with the same id
//! takes the session over: the first connection is told to leave and finishes its cleanup
//! before the new one attaches to the session.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Handed to the connection that owns a client id.
pub struct Ownership {
    /// Fires when another connection takes the id over.
    pub kicked: oneshot::Receiver<()>,
    /// Dropped (or sent) when this connection has fully released the session.
    pub released: oneshot::Sender<()>,
    pub generation: u64,
}

struct Owner {
    kick: Option<oneshot::Sender<()>>,
    released: oneshot::Receiver<()>,
    generation: u64,
}

#[derive(Default)]
pub struct Registry {
    /// Vhost -> client id -> owner (by vhost first: a key per connection holds only its id).
    owners: Mutex<HashMap<String, HashMap<String, Owner>>>,
    generations: std::sync::atomic::AtomicU64,
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
        let owner = Owner { kick: Some(kick_tx), released: released_rx, generation };
        let previous = self.owners.lock().entry(vhost.to_string()).or_default().insert(client_id.to_string(), owner);
        let took_over = previous.is_some();
        if let Some(mut old) = previous {
            if let Some(kick) = old.kick.take() {
                let _ = kick.send(());
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
        kicked.await.expect("kicked");
        assert!(!second.is_finished());
        let _ = released.send(());
        let (took, _new) = second.await.unwrap();
        assert!(took);
        reg.release("/", "c", generation);
        assert!(reg.is_connected("/", "c"), "a stale release does not remove the new owner");
    }
}
