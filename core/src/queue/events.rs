//! The channel through which queues hand a connection its consumer events: many senders (the
//! queues it consumes from), one receiver (the connection), unbounded (the send window in
//! `ChannelCredit` is what bounds it).
//!
//! Why not tokio's unbounded mpsc: it allocates a cache-padded channel and a first block of 32
//! slots up front, ~1.3 KiB for every connection, idle or not. Here an idle connection's channel
//! is one small allocation (a mutex, an empty `VecDeque`, a waker slot); the deque grows only
//! while events wait, a burst's room is given back once it is drained, and `shrink` frees the
//! rest when the connection goes idle. A send takes the mutex briefly and wakes the receiver
//! only when it was waiting; the receiver takes everything queued at once (swapping deques), so
//! it locks once per batch, not per event, and a queue dispatching under its own lock seldom
//! waits for it. Unlike tokio's `recv`, receiving spends no task budget: the adapters' socket
//! writes do.

use super::ConsumerEvent;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Room for events the deque keeps once empty; a burst beyond it is freed when drained.
const KEPT_CAPACITY: usize = 32;

struct State {
    events: VecDeque<ConsumerEvent>,
    /// Set by `close` or when the receiver is dropped: sends fail from then on.
    closed: bool,
    senders: usize,
    /// The receiver, while it waits in `recv`.
    waiting: Option<Waker>,
}

/// Sends events to one connection; cloned into every consumer the connection starts.
pub struct EventSender {
    shared: Arc<Mutex<State>>,
}

/// The connection's end.
pub struct EventReceiver {
    shared: Arc<Mutex<State>>,
    /// Events taken from `shared` and not handed out yet (the receiver's side of the swap).
    taken: VecDeque<ConsumerEvent>,
}

pub fn event_channel() -> (EventSender, EventReceiver) {
    let shared = Arc::new(Mutex::new(State { events: VecDeque::new(), closed: false, senders: 1, waiting: None }));
    (EventSender { shared: shared.clone() }, EventReceiver { shared, taken: VecDeque::new() })
}

impl EventSender {
    /// Queues `event` for the receiver; gives it back if the receiver is closed or gone.
    pub fn send(&self, event: ConsumerEvent) -> Result<(), ConsumerEvent> {
        let waiting = {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(event);
            }
            state.events.push_back(event);
            state.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
        Ok(())
    }
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        EventSender { shared: self.shared.clone() }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.waiting.take()
        };
        // The last sender went: a waiting receiver learns that nothing more can come.
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSender")
    }
}

impl EventReceiver {
    /// The next event, waiting for one; None once the channel is empty and every sender is
    /// gone (or it was closed).
    pub async fn recv(&mut self) -> Option<ConsumerEvent> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// `recv` for a hand-written poll loop: the next event, or Pending with `cx` woken when one
    /// comes.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ConsumerEvent>> {
        if let Some(event) = self.taken.pop_front() {
            return Poll::Ready(Some(event));
        }
        let mut state = self.shared.lock();
        std::mem::swap(&mut state.events, &mut self.taken);
        if let Some(event) = self.taken.pop_front() {
            return Poll::Ready(Some(event));
        }
        if self.taken.capacity() > KEPT_CAPACITY || state.events.capacity() > KEPT_CAPACITY {
            // A burst is over (up to a send window, ~1,000 events): give its memory back.
            (self.taken, state.events) = (VecDeque::new(), VecDeque::new());
        }
        if state.senders == 0 || state.closed {
            return Poll::Ready(None);
        }
        match &state.waiting {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waiting = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ConsumerEvent> {
        if self.taken.is_empty() {
            std::mem::swap(&mut self.shared.lock().events, &mut self.taken);
        }
        self.taken.pop_front()
    }

    /// Refuses further sends; events already queued can still be taken with `try_recv`.
    pub fn close(&mut self) {
        self.shared.lock().closed = true;
    }

    /// Gives back all the deque's memory (`recv` keeps room for a few events; call this when the
    /// connection goes idle).
    pub fn shrink(&mut self) {
        let mut state = self.shared.lock();
        if state.events.is_empty() && self.taken.is_empty() {
            (self.taken, state.events) = (VecDeque::new(), VecDeque::new());
        }
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        // Taken out under the lock and dropped after it: dropping a delivery may take locks.
        let left = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.events)
        };
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cancelled(cookie: u64) -> ConsumerEvent {
        ConsumerEvent::Cancelled { tag: Arc::from("t"), cookie }
    }

    fn cookie(event: Option<ConsumerEvent>) -> Option<u64> {
        match event {
            Some(ConsumerEvent::Cancelled { cookie, .. }) => Some(cookie),
            _ => None,
        }
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_wake_a_waiting_receiver() {
        let (tx, mut rx) = event_channel();
        let waiting = tokio::spawn(async move {
            let first = cookie(rx.recv().await);
            let second = cookie(rx.recv().await);
            (first, second, rx)
        });
        tokio::task::yield_now().await;
        tx.send(cancelled(1)).unwrap();
        tx.clone().send(cancelled(2)).unwrap();
        let (first, second, mut rx) = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!((first, second), (Some(1), Some(2)));
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn recv_ends_when_every_sender_is_gone_after_the_queued_events() {
        let (tx, mut rx) = event_channel();
        let other = tx.clone();
        tx.send(cancelled(7)).unwrap();
        drop(tx);
        drop(other);
        assert_eq!(cookie(rx.recv().await), Some(7));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_drained_burst_gives_its_memory_back() {
        let (tx, mut rx) = event_channel();
        for i in 0..1000 {
            tx.send(cancelled(i)).unwrap();
        }
        for i in 0..1000 {
            assert_eq!(cookie(rx.recv().await), Some(i));
        }
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), rx.recv()).await;
        assert!(waited.is_err(), "nothing left: recv waits");
        assert!(rx.shared.lock().events.capacity() <= KEPT_CAPACITY);
        assert!(rx.taken.capacity() <= KEPT_CAPACITY);
    }

    #[test]
    fn a_closed_or_dropped_receiver_refuses_sends() {
        let (tx, mut rx) = event_channel();
        tx.send(cancelled(1)).unwrap();
        rx.close();
        assert!(tx.send(cancelled(2)).is_err());
        assert_eq!(cookie(rx.try_recv()), Some(1), "what was queued before the close is still there");
        assert!(rx.try_recv().is_none());
        let (tx, rx) = event_channel();
        drop(rx);
        assert!(tx.send(cancelled(3)).is_err());
    }
}
