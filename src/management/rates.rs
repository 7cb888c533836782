//! Message and byte rates: a task samples the broker's counters every second and keeps a few
//! seconds of history; a rate is the change over that window, per second.

use junction_core::registry::{Protocol, TrafficSnapshot};
use junction_core::Broker;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Rates are averaged over about this many samples (RabbitMQ's basic mode uses 5 s).
const WINDOW: usize = 5;

/// Per-queue counters: published, delivered, acked.
type QueueCounters = [u64; 3];

#[derive(Clone, Default)]
struct Sample {
    at: Option<Instant>,
    protocols: HashMap<Protocol, TrafficSnapshot>,
    /// Queue id -> counters, only for queues with a non-zero counter: with many MQTT clients
    /// there is a queue per client, mostly idle, and a missing entry reads as zeros.
    queues: HashMap<u64, QueueCounters>,
    /// Connection id -> (received bytes, sent bytes).
    connections: HashMap<u64, (u64, u64)>,
}

pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
}

impl Rates {
    pub fn start(broker: Arc<Broker>) -> Arc<Rates> {
        let rates = Arc::new(Rates { samples: Mutex::new(VecDeque::new()) });
        rates.sample(&broker);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sample_forever(Arc::downgrade(&rates), Arc::downgrade(&broker)));
        }
        rates
    }

    fn sample(&self, broker: &Broker) {
        let registry = broker.registry();
        let mut s = Sample { at: Some(Instant::now()), ..Default::default() };
        for p in Protocol::ALL {
            s.protocols.insert(p, registry.totals(p));
        }
        for vhost in broker.vhosts() {
            for q in vhost.queues() {
                let counters = [&q.stats.published, &q.stats.delivered, &q.stats.acked]
                    .map(|c| c.load(std::sync::atomic::Ordering::Relaxed));
                if counters != [0; 3] {
                    s.queues.insert(q.spec().id, counters);
                }
            }
        }
        for e in registry.list() {
            let t = e.traffic.snapshot();
            s.connections.insert(e.id, (t.recv_bytes, t.sent_bytes));
        }
        let mut samples = self.samples.lock();
        samples.push_back(s);
        while samples.len() > WINDOW + 1 {
            samples.pop_front();
        }
    }

    /// Per second change of `read(sample)` between the oldest and newest sample that have it.
    fn rate(&self, read: impl Fn(&Sample) -> Option<u64>) -> f64 {
        let samples = self.samples.lock();
        let (Some(first), Some(last)) = (samples.front(), samples.back()) else { return 0.0 };
        let (Some(a), Some(b), Some(t0), Some(t1)) = (read(first), read(last), first.at, last.at) else { return 0.0 };
        let secs = t1.duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        (b.saturating_sub(a)) as f64 / secs
    }

    /// Messages published / delivered per second over every protocol.
    pub fn messages(&self) -> (f64, f64) {
        let sum = |f: fn(&TrafficSnapshot) -> u64| move |s: &Sample| Some(s.protocols.values().map(f).sum());
        (self.rate(sum(|t| t.messages_in)), self.rate(sum(|t| t.messages_out)))
    }

    /// (published, delivered, acked) per second for the queue with this id.
    pub fn queue(&self, id: u64) -> [f64; 3] {
        [0, 1, 2].map(|i| self.rate(|s| Some(s.queues.get(&id).map_or(0, |c| c[i]))))
    }

    /// (received, sent) bytes per second for one connection.
    pub fn connection(&self, id: u64) -> (f64, f64) {
        (self.rate(|s| s.connections.get(&id).map(|c| c.0)), self.rate(|s| s.connections.get(&id).map(|c| c.1)))
    }
}

async fn sample_forever(rates: Weak<Rates>, broker: Weak<Broker>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let (Some(rates), Some(broker)) = (rates.upgrade(), broker.upgrade()) else { return };
        rates.sample(&broker);
    }
}
