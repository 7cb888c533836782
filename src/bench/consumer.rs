//! A consumer: one connection, one channel, one basic.consume with --prefetch, acking every
//! delivery (or every --multi-ack deliveries with one multiple ack) and recording each message's
//! publish-to-deliver latency.
//!
//! Single acks are not awaited one by one: each is a future in a set polled next to the delivery
//! stream, as a real consumer's acks overlap its work. Their order does not matter. Multiple acks
//! do depend on order (acking a tag a previous multiple ack covered is a channel error), so they
//! are awaited in turn; there is one per --multi-ack deliveries.

use super::latency::{micros_since_stamp, new_histogram};
use super::stats::Stats;
use super::topology::Topology;
use super::AmqpArgs;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hdrhistogram::Histogram;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

use crate::bench::ReceiverHandle as Handle;

struct Consumer {
    connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    multi_ack: u64,
    epoch: Instant,
    stats: Arc<Stats>,
    histogram: Histogram<u64>,
    stop: watch::Receiver<bool>,
}

/// Starts every consumer and returns once all of them are consuming, so that no publisher runs
/// ahead of a consumer that is still connecting.
pub async fn start_all(
    args: &Arc<AmqpArgs>,
    topology: &Topology,
    stats: &Arc<Stats>,
    epoch: Instant,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Handle>> {
    let mut handles = Vec::with_capacity(topology.consumer_queues.len());
    for (i, queue) in topology.consumer_queues.iter().enumerate() {
        let consumer = Consumer::start(args, queue, i, stats.clone(), epoch, stop.clone()).await?;
        handles.push(tokio::spawn(consumer.run()));
    }
    Ok(handles)
}

async fn ack_one(channel: Channel, tag: u64) -> lapin::Result<()> {
    channel.basic_ack(tag, BasicAckOptions::default()).await
}

impl Consumer {
    async fn start(
        args: &AmqpArgs,
        queue: &str,
        index: usize,
        stats: Arc<Stats>,
        epoch: Instant,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Consumer> {
        let connection = super::connect(&args.url).await?;
        let channel = connection.create_channel().await?;
        channel.basic_qos(args.prefetch, BasicQosOptions::default()).await?;
        let tag = format!("bench-consumer-{index}");
        let consumer = channel
            .basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| anyhow::anyhow!("consuming from '{queue}': {e}"))?;
        let histogram = new_histogram();
        let multi_ack = args.multi_ack.max(1);
        Ok(Consumer { connection, channel, consumer, multi_ack, epoch, stats, histogram, stop })
    }

    async fn run(mut self) -> anyhow::Result<Histogram<u64>> {
        let result = self.consume().await;
        if result.is_err() {
            self.stats.fail();
        }
        let _ = self.connection.close(200, "bench done".into()).await;
        result.map(|()| self.histogram)
    }

    async fn consume(&mut self) -> anyhow::Result<()> {
        let mut acks = FuturesUnordered::new();
        let (mut unacked, mut last_tag) = (0u64, 0u64);
        loop {
            tokio::select! {
                _ = self.stop.changed() => break,
                Some(result) = acks.next(), if !acks.is_empty() => result?,
                delivery = self.consumer.next() => {
                    let Some(delivery) = delivery else { anyhow::bail!("the broker cancelled the consumer") };
                    let delivery = delivery?;
                    self.record(&delivery);
                    (unacked, last_tag) = (unacked + 1, delivery.delivery_tag);
                    if self.multi_ack == 1 {
                        acks.push(ack_one(self.channel.clone(), delivery.delivery_tag));
                        unacked = 0;
                    } else if unacked >= self.multi_ack {
                        self.ack_through(delivery.delivery_tag).await?;
                        unacked = 0;
                    }
                }
            }
        }
        while let Some(result) = acks.next().await {
            result?;
        }
        if unacked > 0 {
            self.ack_through(last_tag).await?;
        }
        Ok(())
    }

    async fn ack_through(&self, tag: u64) -> lapin::Result<()> {
        self.channel.basic_ack(tag, BasicAckOptions { multiple: true }).await
    }

    fn record(&mut self, delivery: &Delivery) {
        self.stats.consumed();
        if let Some(micros) = micros_since_stamp(self.epoch, &delivery.data) {
            self.histogram.saturating_record(micros);
        }
    }
}
