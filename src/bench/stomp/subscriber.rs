//! A subscriber: one connection, one subscription to the run's destination, counting every
//! MESSAGE and recording its publish-to-deliver latency. ACKs (per message, or cumulative every
//! --multi-ack with `ack:client`) are encoded as messages arrive and written out together once no
//! further MESSAGE is buffered.

use super::connection::{self, wait_for_receipt, Reader, Writer};
use super::{AckMode, Run, BATCH_BYTES, CONNECT_TIMEOUT};
use crate::bench::latency::{micros_since_stamp, new_histogram};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use junction_stomp::frame::Frame;
use std::sync::Arc;
use tokio::sync::watch;

use crate::bench::ReceiverHandle as Handle;

/// Connections being set up at the same time.
const CONNECTS_AT_ONCE: usize = 32;
/// The `receipt` of the SUBSCRIBE frame.
const SUBSCRIBED: &str = "subscribed";

struct Subscriber {
    reader: Reader,
    writer: Writer,
    run: Arc<Run>,
    histogram: Histogram<u64>,
    /// Messages since the last cumulative ACK (`ack:client`).
    unacked: u64,
}

/// Connects and subscribes every subscriber and returns once the broker confirmed every
/// SUBSCRIBE with a RECEIPT, so that no message is published before everyone listens.
pub async fn start_all(run: &Arc<Run>, stop: watch::Receiver<bool>) -> anyhow::Result<Vec<Handle>> {
    futures::stream::iter(0..run.args.subscribers)
        .map(|_| Subscriber::start(run.clone()))
        .buffer_unordered(CONNECTS_AT_ONCE)
        .map_ok(|subscriber| tokio::spawn(subscriber.run(stop.clone())))
        .try_collect()
        .await
}

impl Subscriber {
    async fn start(run: Arc<Run>) -> anyhow::Result<Subscriber> {
        let (mut reader, mut writer) = connection::open(&run).await?;
        writer.queue(&subscribe_frame(&run));
        writer.flush().await?;
        let destination = &run.destination;
        match tokio::time::timeout(CONNECT_TIMEOUT, wait_for_receipt(&mut reader, SUBSCRIBED)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("subscribing to '{destination}'"))),
            Err(_) => anyhow::bail!("subscribing to '{destination}': no RECEIPT after {CONNECT_TIMEOUT:?}"),
        }
        Ok(Subscriber { reader, writer, run, histogram: new_histogram(), unacked: 0 })
    }

    async fn run(mut self, stop: watch::Receiver<bool>) -> anyhow::Result<Histogram<u64>> {
        let result = self.receive(stop).await;
        if result.is_err() {
            self.run.stats.fail();
        } else {
            connection::disconnect(&mut self.reader, &mut self.writer).await;
        }
        result.map(|()| self.histogram)
    }

    async fn receive(&mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let frame = match self.reader.try_next_frame() {
                Some(frame) if self.writer.queued() < BATCH_BYTES => frame?,
                // Nothing more buffered (or plenty of ACKs queued): write the ACKs, then wait.
                ready => {
                    self.writer.flush().await?;
                    match ready {
                        Some(frame) => frame?,
                        None => tokio::select! {
                            _ = stop.changed() => return Ok(()),
                            frame = self.reader.next_frame() => frame?,
                        },
                    }
                }
            };
            if frame.command == "MESSAGE" {
                self.record(&frame);
            }
        }
    }

    fn record(&mut self, message: &Frame) {
        self.run.stats.consumed();
        if let Some(micros) = micros_since_stamp(self.run.epoch, &message.body) {
            self.histogram.saturating_record(micros);
        }
        let args = &self.run.args;
        self.unacked += 1;
        let due = match args.ack {
            AckMode::Auto => false,
            AckMode::ClientIndividual => true,
            AckMode::Client => self.unacked >= args.multi_ack,
        };
        if due {
            // STOMP 1.2 names the message by the MESSAGE's `ack` header.
            let id = message.header("ack").or_else(|| message.header("message-id")).unwrap_or("");
            self.writer.queue(&Frame::new("ACK").with("id", id));
            self.unacked = 0;
        }
    }
}

fn subscribe_frame(run: &Run) -> Frame {
    let args = &run.args;
    let mut frame = Frame::new("SUBSCRIBE")
        .with("id", "0")
        .with("destination", run.destination.as_str())
        .with("ack", args.ack.header());
    if args.prefetch > 0 {
        frame = frame.with("prefetch-count", args.prefetch.to_string());
    }
    frame.with("receipt", SUBSCRIBED)
}
