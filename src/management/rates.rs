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
    /// Connection id -> (received bytes, sent bytes) since the previous sample, only for
    /// connections that had traffic in between: most of 100,000 MQTT connections are idle, and
    /// a window of full per-connection snapshots would cost each of them ~250 bytes.
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
        s.connections = connection_traffic(broker);
        let mut samples = self.samples.lock();
        samples.push_back(s);
        while samples.len() > WINDOW + 1 {
            samples.pop_front();
        }
    }

    /// Per second change of `read(sample)` between the oldest and newest sample that have it.
    fn rate(&self, read: impl Fn(&Sample) -> Option<u64>) -> f64 {
        let samples = self.samples.lock();
        let (Some(secs), Some(first), Some(last)) = (window_secs(&samples), samples.front(), samples.back()) else { return 0.0 };
        let (Some(a), Some(b)) = (read(first), read(last)) else { return 0.0 };
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
        let samples = self.samples.lock();
        let Some(secs) = window_secs(&samples) else { return (0.0, 0.0) };
        // The first sample's traffic happened before the window began.
        let (recv, sent) = samples.iter().skip(1).filter_map(|s| s.connections.get(&id)).fold((0, 0), |(r, w), c| (r + c.0, w + c.1));
        (recv as f64 / secs, sent as f64 / secs)
    }
}

/// Each connection's traffic since the previous sample (see `Sample::connections`).
fn connection_traffic(broker: &Broker) -> HashMap<u64, (u64, u64)> {
    let sampled = broker.registry().list().into_iter().map(|e| (e.id, e.traffic.bytes_since_sampled()));
    sampled.filter(|(_, bytes)| *bytes != (0, 0)).collect()
}

/// Seconds between the oldest and the newest sample, if that is more than none.
fn window_secs(samples: &VecDeque<Sample>) -> Option<f64> {
    let (t0, t1) = (samples.front()?.at?, samples.back()?.at?);
    Some(t1.duration_since(t0).as_secs_f64()).filter(|secs| *secs > 0.0)
}

async fn sample_forever(rates: Weak<Rates>, broker: Weak<Broker>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let (Some(rates), Some(broker)) = (rates.upgrade(), broker.upgrade()) else { return };
        rates.sample(&broker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, connections: &[(u64, (u64, u64))]) -> Sample {
        Sample { at: Some(at), connections: connections.iter().copied().collect(), ..Default::default() }
    }

    #[test]
    fn a_connection_rate_is_its_traffic_within_the_window_per_second() {
        let t0 = Instant::now();
        let rates = Rates { samples: Mutex::default() };
        rates.samples.lock().extend([
            // Traffic recorded by the first sample happened before the window: not counted.
            sample(t0, &[(1, (1000, 1000))]),
            sample(t0 + Duration::from_secs(1), &[(1, (300, 0))]),
            sample(t0 + Duration::from_secs(2), &[]),
            sample(t0 + Duration::from_secs(4), &[(1, (100, 40)), (2, (5, 5))]),
        ]);
        assert_eq!(rates.connection(1), (100.0, 10.0));
        assert_eq!(rates.connection(2), (1.25, 1.25));
        assert_eq!(rates.connection(3), (0.0, 0.0), "an idle connection has no entry and no rate");
    }
}
