//! The per-queue timer: expires messages at the heads (TTL) and deletes the queue once it has
//! been unused for `x-expires`. Started only for queues that need it.

use super::state::Effects;
use super::Queue;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long the timer sleeps when nothing is due; any change wakes it earlier.
const IDLE: Duration = Duration::from_secs(3600);

/// What one timer pass found.
enum Tick {
    /// Sleep until this instant (or until woken).
    Until(Option<Instant>),
    /// The queue was unused for its `x-expires` period.
    QueueExpired,
    Deleted,
}

impl Queue {
    pub(super) fn ensure_timer(self: &Arc<Self>) {
        if self.timer_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.timer_running.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(run(Arc::downgrade(self)));
    }

    fn tick(self: &Arc<Self>) -> Tick {
        if self.stream.is_some() {
            return self.stream_tick();
        }
        let now = Instant::now();
        let mut fx = Effects::default();
        let tick = {
            let mut st = self.state.lock();
            if st.deleted {
                return Tick::Deleted;
            }
            let mut next = st.expire_heads(now, &mut fx);
            match self.args.expires_ms {
                Some(ms) if st.consumers.is_empty() => {
                    let deadline = st.last_used + Duration::from_millis(ms);
                    if now >= deadline {
                        Tick::QueueExpired
                    } else {
                        next = Some(next.map_or(deadline, |n| n.min(deadline)));
                        Tick::Until(next)
                    }
                }
                _ => Tick::Until(next),
            }
        };
        self.finish(fx);
        tick
    }
}

impl Queue {
    /// A stream's pass: drop segments past `x-max-age`. The head segment's deadline is known,
    /// but a new segment may start at any time, so the timer also looks regularly.
    fn stream_tick(self: &Arc<Self>) -> Tick {
        if self.is_deleted() {
            return Tick::Deleted;
        }
        let Some(age) = self.args.max_age_ms else { return Tick::Until(None) };
        let poll = Duration::from_millis(age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut wake = Instant::now() + poll;
        if let Some(deadline_ms) = self.stream_retention() {
            let left = deadline_ms.saturating_sub(crate::message::now_ms());
            wake = wake.min(Instant::now() + Duration::from_millis(left));
        }
        Tick::Until(Some(wake))
    }
}

async fn run(queue: Weak<Queue>) {
    loop {
        let Some(q) = queue.upgrade() else { return };
        let deadline = match q.tick() {
            Tick::Deleted => return,
            Tick::QueueExpired => {
                if let Some(vhost) = q.vhost.upgrade() {
                    vhost.remove_queue(&q);
                }
                return;
            }
            Tick::Until(deadline) => deadline.unwrap_or_else(|| Instant::now() + IDLE),
        };
        // Sleep a hair past the deadline: expiry compares with `>`.
        let wake = tokio::time::Instant::from_std(deadline) + Duration::from_millis(1);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = q.timer.notified() => {}
        }
    }
}
