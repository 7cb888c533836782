//! A subscriber: one connection, one subscription to the run's topic, counting every message it
//! is delivered and recording its publish-to-deliver latency. rumqttc acknowledges QoS 1 and 2
//! deliveries itself.

use super::{connect, Run, CONNECTS_AT_ONCE, CONNECT_TIMEOUT};
use crate::bench::latency::{micros_since_stamp, new_histogram};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, SubscribeReasonCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::bench::ReceiverHandle as Handle;

/// A subscriber only ever requests SUBSCRIBE and DISCONNECT.
const REQUESTS: usize = 4;

struct Subscriber {
    client: AsyncClient,
    eventloop: EventLoop,
    run: Arc<Run>,
    histogram: Histogram<u64>,
}

/// Connects and subscribes every subscriber, a few at a time, and returns once all of them have
/// their SUBACK, so that no message is published before everyone listens.
pub async fn start_all(run: &Arc<Run>, stop: watch::Receiver<bool>) -> anyhow::Result<Vec<Handle>> {
    futures::stream::iter(0..run.args.subscribers)
        .map(|index| Subscriber::start(run.clone(), index))
        .buffer_unordered(CONNECTS_AT_ONCE)
        .map_ok(|subscriber| tokio::spawn(subscriber.run(stop.clone())))
        .try_collect()
        .await
}

impl Subscriber {
    async fn start(run: Arc<Run>, index: usize) -> anyhow::Result<Subscriber> {
        let (client, mut eventloop) = connect(run.options(&format!("s{index}")), REQUESTS).await?;
        client.subscribe(run.topic.as_str(), run.qos).await?;
        let topic = &run.topic;
        match tokio::time::timeout(CONNECT_TIMEOUT, suback(&mut eventloop)).await {
            Ok(Ok(codes)) if codes.contains(&SubscribeReasonCode::Failure) => {
                anyhow::bail!("the broker refused the subscription to '{topic}'")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("subscribing to '{topic}': {e}"),
            Err(_) => anyhow::bail!("subscribing to '{topic}': no SUBACK after {CONNECT_TIMEOUT:?}"),
        }
        Ok(Subscriber { client, eventloop, run, histogram: new_histogram() })
    }

    async fn run(mut self, stop: watch::Receiver<bool>) -> anyhow::Result<Histogram<u64>> {
        let result = self.receive(stop).await;
        if result.is_err() {
            self.run.stats.fail();
        }
        self.disconnect().await;
        result.map(|()| self.histogram)
    }

    async fn receive(&mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        // One future for the whole run: building `changed()` anew for every message costs.
        let stopped = stop.changed();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return Ok(()),
                event = self.eventloop.poll() => {
                    if let Event::Incoming(Packet::Publish(publish)) = event? {
                        self.record(&publish.payload);
                    }
                }
            }
        }
    }

    fn record(&mut self, payload: &[u8]) {
        self.run.stats.consumed();
        if let Some(micros) = micros_since_stamp(self.run.epoch, payload) {
            self.histogram.saturating_record(micros);
        }
    }

    /// Says goodbye with a DISCONNECT; a connection that already failed is simply dropped.
    async fn disconnect(&mut self) {
        if self.client.try_disconnect().is_err() {
            return;
        }
        let sent = async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), sent).await;
    }
}

/// Polls until the SUBACK and returns its return codes.
async fn suback(eventloop: &mut EventLoop) -> anyhow::Result<Vec<SubscribeReasonCode>> {
    loop {
        if let Event::Incoming(Packet::SubAck(ack)) = eventloop.poll().await? {
            return Ok(ack.return_codes);
        }
    }
}
