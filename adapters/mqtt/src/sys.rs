//! `$SYS/broker/...`: broker statistics published every few seconds as retained messages (kept
//! in memory only), as Mosquitto does.

use crate::mapping;
use crate::Mqtt;
use junction_core::message::{Message, Properties};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Counters the connection handlers bump.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub connections_total: AtomicU64,
}

impl Stats {
    pub fn received(&self, payload: usize) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received.fetch_add(payload as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, payload: usize) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(payload as u64, Ordering::Relaxed);
    }
}

/// How often the statistics are refreshed.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Publishes the statistics until `shutdown` turns true.
pub async fn publish_periodically(mqtt: Arc<Mqtt>, mut shutdown: watch::Receiver<bool>) {
    let started = Instant::now();
    loop {
        publish_once(&mqtt, started);
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The statistics as (topic, value) pairs.
pub fn snapshot(mqtt: &Mqtt, started: Instant) -> Vec<(&'static str, String)> {
    let s = &mqtt.stats;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
    let Some(vhost) = mqtt.broker.vhost(&mqtt.config.vhost) else { return Vec::new() };
    let subscriptions: usize = mqtt
        .broker
        .sessions(crate::session::PROTOCOL)
        .iter()
        .filter_map(|(_, _, data)| crate::session::SessionState::decode(data))
        .map(|st| st.subscriptions.len())
        .sum();
    vec![
        ("$SYS/broker/version", format!("Junction {}", env!("CARGO_PKG_VERSION"))),
        ("$SYS/broker/uptime", format!("{} seconds", started.elapsed().as_secs())),
        ("$SYS/broker/clients/connected", mqtt.registry.connected().to_string()),
        ("$SYS/broker/clients/total", n(&s.connections_total)),
        ("$SYS/broker/messages/received", n(&s.messages_received)),
        ("$SYS/broker/messages/sent", n(&s.messages_sent)),
        ("$SYS/broker/bytes/received", n(&s.bytes_received)),
        ("$SYS/broker/bytes/sent", n(&s.bytes_sent)),
        ("$SYS/broker/subscriptions/count", subscriptions.to_string()),
        ("$SYS/broker/retained messages/count", vhost.retained().len().to_string()),
        ("$SYS/broker/publish/messages/dropped", dropped_from_full_sessions(&vhost).to_string()),
    ]
}

/// Messages dropped from full session queues (`max_queued_messages`).
fn dropped_from_full_sessions(vhost: &junction_core::VHost) -> u64 {
    vhost
        .queues()
        .iter()
        .filter(|q| crate::session::is_session_queue(q.name()))
        .map(|q| q.counts().overflow_drops)
        .sum()
}

fn publish_once(mqtt: &Mqtt, started: Instant) {
    let Some(vhost) = mqtt.broker.vhost(&mqtt.config.vhost) else { return };
    for (topic, value) in snapshot(mqtt, started) {
        let (exchange, key) = mapping::destination(topic);
        let msg = Message::new(exchange, &key, Properties::default(), value.into_bytes().into());
        vhost.retained().set_volatile(topic, msg.clone());
        let _ = vhost.publish(exchange, msg, false);
    }
}
