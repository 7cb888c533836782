//! A publisher: one connection publishing stamped payloads to the run's topic as fast as --rate
//! allows.
//!
//! rumqttc splits a client in two: `AsyncClient` queues requests in a channel, and the
//! `EventLoop` writes them and reads the broker's acks. Here each half has its own task.
//! At QoS 1 and 2 a window of --inflight slots bounds the unacknowledged publishes: a slot is
//! taken before a payload is stamped and handed back by its PUBACK (PUBCOMP), so a message never
//! waits in the client's channel behind a full window with its clock already running, and
//! throughput is not limited to one message per round trip.

use super::{connect, Run, CONNECTS_AT_ONCE};
use crate::bench::latency::stamped_body;
use crate::bench::pacing::{share, Pacer};
use futures::{StreamExt, TryStreamExt};
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Publishes queued in rumqttc's channel before `publish` waits (QoS 0 only: at QoS 1 and 2 the
/// window keeps the channel short).
const REQUESTS: usize = 16;
/// How long a stopping publisher waits for its outstanding acks.
const ACK_GRACE: Duration = Duration::from_secs(10);
/// How long a stopping publisher waits for its DISCONNECT to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

struct Publisher {
    client: AsyncClient,
    run: Arc<Run>,
    /// Free slots for unacknowledged publishes; `None` at QoS 0.
    window: Option<Arc<Semaphore>>,
    /// This publisher's share of --count.
    limit: Option<u64>,
    pacer: Pacer,
}

/// Connects every publisher first, then starts them together.
pub async fn start_all(
    run: &Arc<Run>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let publishers: Vec<(Publisher, EventLoop)> = futures::stream::iter(0..run.args.publishers)
        .map(|index| Publisher::connect(run.clone(), index))
        .buffer_unordered(CONNECTS_AT_ONCE)
        .try_collect()
        .await?;
    let start = |(publisher, eventloop): (Publisher, EventLoop)| tokio::spawn(publisher.run(eventloop, stop.clone()));
    Ok(publishers.into_iter().map(start).collect())
}

impl Publisher {
    async fn connect(run: Arc<Run>, index: usize) -> anyhow::Result<(Publisher, EventLoop)> {
        let (client, eventloop) = connect(run.options(&format!("p{index}")), REQUESTS).await?;
        let window = (run.qos != QoS::AtMostOnce).then(|| Arc::new(Semaphore::new(run.args.inflight.into())));
        let args = &run.args;
        let limit = share(args.load.count, args.publishers, index);
        let pacer = Pacer::new(args.load.rate, args.publishers);
        Ok((Publisher { client, run, window, limit, pacer }, eventloop))
    }

    async fn run(mut self, eventloop: EventLoop, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let connection = tokio::spawn(drive(eventloop, self.run.clone(), self.window.clone()));
        let result = match self.publish(stop).await {
            Ok(()) => self.await_acks().await,
            Err(e) => Err(e),
        };
        self.run.stats.publisher_done();
        let closed = self.close(connection).await;
        let result = result.and(closed);
        if result.is_err() {
            self.run.stats.fail();
        }
        result
    }

    async fn publish(&mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut sent = 0u64;
        // One future for the whole run: building `changed()` anew for every message costs.
        let stopped = stop.changed();
        tokio::pin!(stopped);
        while self.limit.is_none_or(|limit| sent < limit) {
            if let Some(at) = self.pacer.next_slot() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = &mut stopped => break,
                }
            }
            tokio::select! {
                result = self.publish_one() => result?,
                _ = &mut stopped => break,
            }
            sent += 1;
        }
        Ok(())
    }

    /// Takes a window slot (QoS 1, 2), then stamps the payload and queues the publish.
    async fn publish_one(&self) -> anyhow::Result<()> {
        let slot = match &self.window {
            Some(window) => Some(window.acquire().await.map_err(|_| anyhow::anyhow!("the connection failed"))?),
            None => None,
        };
        let run = &self.run;
        let payload = stamped_body(run.epoch, run.args.size);
        self.client.publish(run.topic.as_str(), run.qos, false, payload).await?;
        // The slot stays taken until the ack hands it back (`drive`).
        if let Some(slot) = slot {
            slot.forget();
        }
        Ok(())
    }

    /// Waits until every slot of the window is back: every publish acknowledged.
    async fn await_acks(&self) -> anyhow::Result<()> {
        let Some(window) = &self.window else { return Ok(()) };
        let all = u32::from(self.run.args.inflight);
        match tokio::time::timeout(ACK_GRACE, window.acquire_many(all)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("the connection failed while awaiting acks"),
            Err(_) => {
                let missing = all as usize - window.available_permits();
                anyhow::bail!("{missing} publishes still unacknowledged {ACK_GRACE:?} after the end")
            }
        }
    }

    /// Sends DISCONNECT and waits a little for the connection task to write it. A broker holding
    /// the connection back (a full request channel, a write that does not finish) gets none: the
    /// connection is dropped.
    async fn close(&self, mut connection: JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
        let _ = self.client.try_disconnect();
        match tokio::time::timeout(CLOSE_GRACE, &mut connection).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(anyhow::anyhow!("connection task: {e}"))),
            Err(_) => {
                connection.abort();
                Ok(())
            }
        }
    }
}

/// Drives the connection: counts publishes as they are written and acks as they arrive, handing
/// each ack's window slot back, until the DISCONNECT is written or the connection fails.
async fn drive(mut eventloop: EventLoop, run: Arc<Run>, window: Option<Arc<Semaphore>>) -> anyhow::Result<()> {
    let result = loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(_))) => run.stats.published(),
            Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                run.stats.confirmed(true);
                if let Some(window) = &window {
                    window.add_permits(1);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(anyhow::anyhow!("connection: {e}")),
        }
    };
    if result.is_err() {
        run.stats.fail();
        // Wakes a publisher waiting for a slot that no ack will hand back.
        if let Some(window) = &window {
            window.close();
        }
    }
    result
}
