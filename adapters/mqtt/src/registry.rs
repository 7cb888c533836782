//! Which connection currently owns each client id, so that a second CONNECT with the same id
//! takes the session over: the first connection is told to leave and finishes its cleanup
//! before the new one attaches to the session. The same message tells every connection to
//! leave when the broker shuts down (a connection then waits on one thing less).

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

const SERVER_SHUTTING_DOWN: u8 = crate::packet::reason::SERVER_SHUTTING_DOWN;

/// How long a takeover waits for the connection it replaces to finish its cleanup.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Handed to the connection that owns a client id; it calls `Registry::release` with
/// `generation` once it has let go of the session.
pub struct Ownership {
    /// Fires with the DISCONNECT reason code when the connection must leave: another
    /// connection took the id over, or the broker is shutting down.
    pub kicked: oneshot::Receiver<u8>,
    pub generation: u64,
}

struct Owner {
    kick: Option<oneshot::Sender<u8>>,
    generation: u64,
}

#[derive(Default)]
struct Owners {
    /// Vhost -> client id -> owner (by vhost first: a key per connection holds only its id).
    by_vhost: HashMap<String, HashMap<String, Owner>>,
    /// Generations taken over and not released yet: their successors wait for them.
    replaced: HashSet<u64>,
}

#[derive(Default)]
pub struct Registry {
    owners: Mutex<Owners>,
    /// Woken whenever a replaced owner releases. One for the whole registry, not a channel per
    /// connection: takeovers are rare, and every idle connection would pay for its channel.
    released: Notify,
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
        let generation = self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut owner = Owner { kick: Some(kick_tx), generation };
        let previous = {
            let mut owners = self.owners.lock();
            // Read under the lock `shut_down` takes: a claim is either told here or there.
            if self.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kick) = owner.kick.take() {
                    let _ = kick.send(SERVER_SHUTTING_DOWN);
                }
            }
            let previous = owners.by_vhost.entry(vhost.to_string()).or_default().insert(client_id.to_string(), owner);
            if let Some(old) = &previous {
                owners.replaced.insert(old.generation);
            }
            previous
        };
        let took_over = previous.is_some();
        if let Some(mut old) = previous {
            if let Some(kick) = old.kick.take() {
                let _ = kick.send(crate::packet::reason::SESSION_TAKEN_OVER);
            }
            let _ = tokio::time::timeout(RELEASE_WAIT, self.wait_for_release(old.generation)).await;
            self.owners.lock().replaced.remove(&old.generation);
        }
        (took_over, Ownership { kicked: kick_rx, generation })
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
        if of_vhost.get(client_id).is_some_and(|o| o.generation == generation) {
            of_vhost.remove(client_id);
            if of_vhost.is_empty() {
                owners.by_vhost.remove(vhost);
            }
        }
    }

    /// Tells every connection, and every one that claims an id from now on, to leave.
    pub fn shut_down(&self) {
        let mut owners = self.owners.lock();
        self.shutting_down.store(true, std::sync::atomic::Ordering::Relaxed);
        for owner in owners.by_vhost.values_mut().flat_map(HashMap::values_mut) {
            if let Some(kick) = owner.kick.take() {
                let _ = kick.send(SERVER_SHUTTING_DOWN);
            }
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

    #[tokio::test]
    async fn a_second_claim_kicks_the_first_and_waits_for_release() {
        let reg = Registry::new();
        let (took, first) = reg.claim("/", "c").await;
        assert!(!took);
        let Ownership { kicked, generation } = first;
        let reg2 = reg.clone();
        let second = tokio::spawn(async move { reg2.claim("/", "c").await });
        assert_eq!(kicked.await, Ok(crate::packet::reason::SESSION_TAKEN_OVER));
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "waits for the first to release");
        reg.release("/", "c", generation);
        let (took, _new) = tokio::time::timeout(Duration::from_secs(1), second).await.unwrap().unwrap();
        assert!(took);
        assert!(reg.is_connected("/", "c"), "a stale release does not remove the new owner");
    }

    #[tokio::test(start_paused = true)]
    async fn a_takeover_goes_on_after_a_while_if_the_old_owner_never_releases() {
        let reg = Registry::new();
        let (_, _never_released) = reg.claim("/", "c").await;
        let (took, _new) = reg.claim("/", "c").await;
        assert!(took);
        assert!(reg.owners.lock().replaced.is_empty());
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
