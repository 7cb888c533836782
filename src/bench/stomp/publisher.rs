//! A publisher: one connection SENDing stamped bodies to the run's destination as fast as --rate
//! allows.
//!
//! The writing side encodes up to `BATCH_FRAMES` SENDs and writes them out together (at once
//! when paced). With --receipts every SEND carries a `receipt` header and takes a slot of a
//! window of --inflight before its body is stamped; the reading side hands the slot back when
//! the RECEIPT arrives, so throughput is not limited to one message per round trip and a message
//! never waits for a slot with its clock already running.

use super::connection::{self, Reader, Writer, DISCONNECT_RECEIPT};
use super::{Run, BATCH_BYTES, BATCH_FRAMES};
use crate::bench::latency::stamped_body;
use crate::bench::pacing::{share, Pacer};
use futures::{StreamExt, TryStreamExt};
use junction_stomp::frame::Frame;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Connections being set up at the same time.
const CONNECTS_AT_ONCE: usize = 32;
/// How long a stopping publisher waits for its outstanding RECEIPTs.
const RECEIPT_GRACE: Duration = Duration::from_secs(10);
/// How long a stopping publisher waits for the RECEIPT of its DISCONNECT.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

struct Publisher {
    writer: Writer,
    run: Arc<Run>,
    /// Free slots for SENDs awaiting their RECEIPT; `None` without --receipts.
    window: Option<Arc<Semaphore>>,
    /// This publisher's share of --count.
    limit: Option<u64>,
    pacer: Pacer,
    /// Messages sent so far (also the next `receipt` id).
    sent: u64,
}

/// Connects every publisher first, then starts them together.
pub async fn start_all(
    run: &Arc<Run>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let publishers: Vec<(Publisher, Reader)> = futures::stream::iter(0..run.args.publishers)
        .map(|index| Publisher::connect(run.clone(), index))
        .buffer_unordered(CONNECTS_AT_ONCE)
        .try_collect()
        .await?;
    let start = |(publisher, reader): (Publisher, Reader)| tokio::spawn(publisher.run(reader, stop.clone()));
    Ok(publishers.into_iter().map(start).collect())
}

impl Publisher {
    async fn connect(run: Arc<Run>, index: usize) -> anyhow::Result<(Publisher, Reader)> {
        let (reader, writer) = connection::open(&run).await?;
        let args = &run.args;
        let window = args.receipts.then(|| Arc::new(Semaphore::new(args.inflight)));
        let limit = share(args.load.count, args.publishers, index);
        let pacer = Pacer::new(args.load.rate, args.publishers);
        Ok((Publisher { writer, run, window, limit, pacer, sent: 0 }, reader))
    }

    async fn run(mut self, reader: Reader, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let receipts = tokio::spawn(read_receipts(reader, self.run.clone(), self.window.clone()));
        let result = match self.publish(stop).await {
            Ok(()) => self.await_receipts().await,
            Err(e) => Err(e),
        };
        self.run.stats.publisher_done();
        let closed = self.close(receipts).await;
        let result = result.and(closed);
        if result.is_err() {
            self.run.stats.fail();
        }
        result
    }

    async fn publish(&mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        // Unpaced and without receipts nothing below waits for `stopped`: look at the flag too.
        let flag = stop.clone();
        // One future for the whole run: building `changed()` anew for every message costs.
        let stopped = stop.changed();
        tokio::pin!(stopped);
        while self.limit.is_none_or(|limit| self.sent < limit) && !*flag.borrow() {
            if let Some(at) = self.pacer.next_slot() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = &mut stopped => break,
                }
            }
            if let Some(window) = self.window.clone() {
                // The slot stays taken until the RECEIPT hands it back (`read_receipts`).
                tokio::select! {
                    slot = window.acquire() => slot.map_err(|_| anyhow::anyhow!("the connection failed"))?.forget(),
                    _ = &mut stopped => break,
                }
            }
            // Not cancelled by the stop: a frame written in part would corrupt the stream.
            self.publish_batch().await?;
        }
        Ok(())
    }

    /// Encodes one SEND (its window slot already taken), then as many more as can go without
    /// waiting (none when paced), and writes them out.
    async fn publish_batch(&mut self) -> anyhow::Result<()> {
        self.queue_send();
        let paced = self.run.args.load.rate > 0;
        let mut batch = 1;
        while !paced && batch < BATCH_FRAMES && self.writer.queued() < BATCH_BYTES {
            if self.limit.is_some_and(|limit| self.sent >= limit) {
                break;
            }
            if let Some(window) = &self.window {
                match window.try_acquire() {
                    Ok(slot) => slot.forget(),
                    Err(_) => break,
                }
            }
            self.queue_send();
            batch += 1;
        }
        self.writer.flush().await?;
        for _ in 0..batch {
            self.run.stats.published();
        }
        Ok(())
    }

    fn queue_send(&mut self) {
        let frame = send_frame(&self.run, self.sent);
        self.writer.queue(&frame);
        self.sent += 1;
    }

    /// Waits until every slot of the window is back: every SEND has its RECEIPT.
    async fn await_receipts(&self) -> anyhow::Result<()> {
        let Some(window) = &self.window else { return Ok(()) };
        let all = self.run.args.inflight as u32;
        match tokio::time::timeout(RECEIPT_GRACE, window.acquire_many(all)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("the connection failed while awaiting receipts"),
            Err(_) => {
                let missing = all as usize - window.available_permits();
                anyhow::bail!("{missing} SENDs still without RECEIPT {RECEIPT_GRACE:?} after the end")
            }
        }
    }

    /// Sends DISCONNECT and waits a little for the reading half to see its RECEIPT.
    async fn close(&mut self, mut receipts: JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
        self.writer.queue(&Frame::new("DISCONNECT").with("receipt", DISCONNECT_RECEIPT));
        if self.writer.flush().await.is_err() {
            receipts.abort();
            return Ok(());
        }
        match tokio::time::timeout(CLOSE_GRACE, &mut receipts).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(anyhow::anyhow!("reading task: {e}"))),
            Err(_) => {
                receipts.abort();
                Ok(())
            }
        }
    }
}

/// SEND number `n` of a publisher: stamped body, `persistent:true` and `receipt:n` as asked.
fn send_frame(run: &Run, n: u64) -> Frame {
    let args = &run.args;
    let mut frame = Frame::new("SEND").with("destination", run.destination.as_str());
    if args.persistent {
        frame = frame.with("persistent", "true");
    }
    if args.receipts {
        frame = frame.with("receipt", n.to_string());
    }
    frame.with_body(stamped_body(run.epoch, args.size))
}

/// The reading half: counts RECEIPTs, handing each one's window slot back, until the RECEIPT of
/// the DISCONNECT or a failure (an ERROR frame, the connection closed).
async fn read_receipts(mut reader: Reader, run: Arc<Run>, window: Option<Arc<Semaphore>>) -> anyhow::Result<()> {
    let result = loop {
        match reader.next_frame().await {
            Ok(frame) if frame.command == "RECEIPT" => {
                if frame.header("receipt-id") == Some(DISCONNECT_RECEIPT) {
                    break Ok(());
                }
                run.stats.confirmed(true);
                if let Some(window) = &window {
                    window.add_permits(1);
                }
            }
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    if result.is_err() {
        run.stats.fail();
        // Wakes a publisher waiting for a slot that no RECEIPT will hand back.
        if let Some(window) = &window {
            window.close();
        }
    }
    result
}
