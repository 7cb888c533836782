//! A publisher: one connection, one channel, publishing as fast as --rate allows.
//!
//! lapin's `basic_publish` resolves once its frames reach the connection's I/O thread, and its
//! confirm resolves when the broker acks. Awaiting each in turn would measure the round trip
//! between threads rather than the broker, so each message is a future in a bounded window: up to
//! --inflight unconfirmed messages with --confirm, up to `WRITE_WINDOW` unwritten ones without.
//! The first poll of a publish future queues its frames, so frames leave in publish order.

use super::latency::stamped_body;
use super::pacing::{share, Pacer};
use super::stats::Stats;
use super::topology::Target;
use super::AmqpArgs;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Messages handed to lapin but not yet written, without confirms.
const WRITE_WINDOW: usize = 64;
/// How long a stopping publisher waits for its outstanding confirms.
const CONFIRM_GRACE: Duration = Duration::from_secs(10);

/// What every publish of one publisher shares; one `Arc` clone per message.
struct Shot {
    channel: Channel,
    target: Arc<Target>,
    properties: BasicProperties,
    size: usize,
    confirm: bool,
    epoch: Instant,
    stats: Arc<Stats>,
}

struct Publisher {
    connection: Connection,
    shot: Arc<Shot>,
    window: usize,
    /// This publisher's share of --count.
    limit: Option<u64>,
    pacer: Pacer,
    stop: watch::Receiver<bool>,
}

/// Connects every publisher first, then starts them together.
pub async fn start_all(
    args: &Arc<AmqpArgs>,
    target: Arc<Target>,
    stats: &Arc<Stats>,
    epoch: Instant,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
    let mut publishers = Vec::with_capacity(args.publishers);
    for i in 0..args.publishers {
        let limit = share(args.load.count, args.publishers, i);
        publishers.push(Publisher::connect(args, limit, target.clone(), stats.clone(), epoch, stop.clone()).await?);
    }
    Ok(publishers.into_iter().map(|p| tokio::spawn(p.run())).collect())
}

async fn publish_one(shot: Arc<Shot>) -> anyhow::Result<()> {
    let body = stamped_body(shot.epoch, shot.size);
    let (exchange, key) = (shot.target.exchange.clone(), shot.target.routing_key.clone());
    let options = BasicPublishOptions::default();
    let confirm = shot.channel.basic_publish(exchange, key, options, &body, shot.properties.clone()).await?;
    shot.stats.published();
    if shot.confirm {
        shot.stats.confirmed(confirm.await?.is_ack());
    }
    Ok(())
}

impl Publisher {
    async fn connect(
        args: &AmqpArgs,
        limit: Option<u64>,
        target: Arc<Target>,
        stats: Arc<Stats>,
        epoch: Instant,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Publisher> {
        let connection = super::connect(&args.url).await?;
        let channel = connection.create_channel().await?;
        if args.confirm {
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
        }
        let mode = if args.persistent { 2 } else { 1 };
        let properties = BasicProperties::default().with_delivery_mode(mode);
        let (size, confirm) = (args.size, args.confirm);
        let shot = Arc::new(Shot { channel, target, properties, size, confirm, epoch, stats });
        let window = if args.confirm { args.inflight } else { WRITE_WINDOW };
        let pacer = Pacer::new(args.load.rate, args.publishers);
        Ok(Publisher { connection, shot, window, limit, pacer, stop })
    }

    async fn run(mut self) -> anyhow::Result<()> {
        let result = self.publish().await;
        self.shot.stats.publisher_done();
        if result.is_err() {
            self.shot.stats.fail();
        }
        let _ = self.connection.close(200, "bench done".into()).await;
        result
    }

    async fn publish(&mut self) -> anyhow::Result<()> {
        let mut pending = FuturesUnordered::new();
        let mut sent = 0u64;
        while !*self.stop.borrow() && self.limit.is_none_or(|limit| sent < limit) {
            if let Some(at) = self.pacer.next_slot() {
                wait_until(at, &mut pending).await?;
            }
            while pending.len() >= self.window {
                settle_one(&mut pending).await?;
            }
            pending.push(publish_one(self.shot.clone()));
            sent += 1;
            settle_ready(&mut pending)?;
        }
        let drain = async {
            while !pending.is_empty() {
                settle_one(&mut pending).await?;
            }
            anyhow::Ok(())
        };
        match tokio::time::timeout(CONFIRM_GRACE, drain).await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("{} messages still unconfirmed {CONFIRM_GRACE:?} after the end", pending.len()),
        }
    }
}

async fn settle_one<S: Stream<Item = anyhow::Result<()>> + Unpin>(pending: &mut S) -> anyhow::Result<()> {
    pending.next().await.unwrap_or(Ok(()))
}

/// Polls the window once without waiting: queues new frames and collects finished publishes.
fn settle_ready<S: Stream<Item = anyhow::Result<()>> + Unpin>(pending: &mut S) -> anyhow::Result<()> {
    while let Some(Some(result)) = pending.next().now_or_never() {
        result?;
    }
    Ok(())
}

/// Sleeps until `at` while still driving the window.
async fn wait_until<S>(at: Instant, pending: &mut FuturesUnordered<S>) -> anyhow::Result<()>
where
    S: Future<Output = anyhow::Result<()>>,
{
    let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(at));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return Ok(()),
            Some(result) = pending.next(), if !pending.is_empty() => result?,
        }
    }
}
