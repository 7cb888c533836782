//! `junction bench`: load generators that work against any broker speaking the protocol, in the
//! spirit of rabbitmq-perf-test. They measure, they never assert: the numbers go to
//! `docs/benchmarks.md` through `scripts/bench-amqp.sh`, `scripts/bench-mqtt.sh` and
//! `scripts/bench-stomp.sh`.
//!
//! `bench amqp` runs N publishers and M consumers, each on its own connection (lapin gives every
//! connection its own I/O thread, so one slow connection never throttles another). `bench mqtt`
//! does the same with rumqttc clients (see `mqtt`), `bench stomp` with Junction's own STOMP codec
//! (see `stomp`). Publishers put a send timestamp in the first
//! 8 bytes of every body; consumers turn it into a publish-to-deliver latency. One process runs
//! both sides, so both read the same clock.

mod consumer;
mod latency;
mod mqtt;
mod pacing;
mod publisher;
mod stats;
mod stomp;
mod topology;

use clap::{Args, Subcommand};
use serde::Serialize;
use stats::{Stats, Summary};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use topology::Topology;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load-tests an AMQP 0-9-1 broker (Junction, RabbitMQ, ...): throughput and latency.
    Amqp(AmqpArgs),
    /// Load-tests an MQTT 3.1.1 broker (Junction, Mosquitto, RabbitMQ, ...): throughput and latency.
    Mqtt(mqtt::MqttArgs),
    /// Load-tests a STOMP 1.2 broker (Junction, RabbitMQ's STOMP plugin, ...): throughput and latency.
    Stomp(stomp::StompArgs),
}

/// How long and how fast every load generator publishes, and how it reports.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Total publish rate in messages per second over all publishers (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds to publish for (0 = no time limit; then --count must be set).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Messages to publish in total, shared out over the publishers (0 = no limit). With
    /// --publishers 0: messages to consume before stopping (e.g. to drain a backlog).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.duration == 0 && self.count == 0 {
            anyhow::bail!("--duration 0 needs --count, or the run never ends");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
pub struct AmqpArgs {
    /// Broker URL.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub url: String,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Consuming connections (0: publish only).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Body size in bytes (at least 8: the send timestamp).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Publish with delivery-mode 2 and declare the queues durable.
    #[arg(long)]
    pub persistent: bool,
    /// Publisher confirms.
    #[arg(long)]
    pub confirm: bool,
    /// Unconfirmed messages each publisher may have outstanding (with --confirm).
    #[arg(long, default_value_t = 100)]
    pub inflight: usize,
    /// Exchange to publish to ("" is the default exchange).
    #[arg(long, default_value = "")]
    pub exchange: String,
    /// Routing key (default: the queue's name).
    #[arg(long)]
    pub routing_key: Option<String>,
    /// Queue to use; it is kept at the end (default: a fresh `bench-<random>`, deleted at the end).
    #[arg(long)]
    pub queue: Option<String>,
    /// Publish to a fanout exchange bound to one queue per consumer.
    #[arg(long)]
    pub fanout: bool,
    /// basic.qos prefetch count per consumer.
    #[arg(long, default_value_t = 200)]
    pub prefetch: u16,
    /// Acknowledge every N deliveries with one multiple ack (1 = ack each delivery).
    #[arg(long, default_value_t = 1)]
    pub multi_ack: u64,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Runs a bench subcommand to completion on its own runtime.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match command {
        BenchCommand::Amqp(args) => runtime.block_on(run_amqp(args)),
        BenchCommand::Mqtt(args) => runtime.block_on(mqtt::run(args)),
        BenchCommand::Stomp(args) => runtime.block_on(stomp::run(args)),
    }
}

/// The settings an AMQP summary reports.
#[derive(Debug, Serialize)]
struct AmqpSettings {
    publishers: usize,
    consumers: usize,
    size: usize,
    persistent: bool,
    confirm: bool,
    fanout: bool,
}

impl AmqpSettings {
    fn of(args: &AmqpArgs) -> AmqpSettings {
        AmqpSettings {
            publishers: args.publishers,
            consumers: args.consumers,
            size: args.size,
            persistent: args.persistent,
            confirm: args.confirm,
            fanout: args.fanout,
        }
    }
}

fn validate(args: &AmqpArgs) -> anyhow::Result<()> {
    args.load.check()?;
    if args.publishers == 0 && args.consumers == 0 {
        anyhow::bail!("nothing to do: --publishers 0 and --consumers 0");
    }
    if args.fanout && args.queue.is_some() {
        anyhow::bail!("--fanout declares its own queues; drop --queue");
    }
    if args.confirm && args.inflight == 0 {
        anyhow::bail!("--inflight must be at least 1");
    }
    if args.size < 8 {
        anyhow::bail!("--size must be at least 8 (the send timestamp)");
    }
    Ok(())
}

async fn run_amqp(args: AmqpArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let args = Arc::new(args);
    let topology = Topology::declare(&args).await?;
    let stats = Arc::new(Stats::default());
    let epoch = Instant::now();
    let (stop_consumers, consumers_rx) = watch::channel(false);
    let consumers = consumer::start_all(&args, &topology, &stats, epoch, consumers_rx).await?;
    let (stop_publishers, publishers_rx) = watch::channel(false);
    let target = Arc::new(topology.target());
    let publishers = publisher::start_all(&args, target, &stats, epoch, publishers_rx).await?;

    let clients = Clients { publishers, stop_publishers, receivers: consumers, stop_receivers: stop_consumers };
    let end = RunEnd::new(&args.load, args.publishers);
    let copies = copies_per_message(&args, topology.consumer_queues.len());
    let mut measured = measure(&stats, end, clients, copies, "consumer").await;
    if let Err(e) = topology.clean_up().await {
        measured.errors.push(e.context("cleaning up"));
    }
    measured.summary(AmqpSettings::of(&args)).print(args.load.json)?;
    first_error(measured.errors)
}

/// Deliveries one published message makes: one per queue with --fanout, else one.
fn copies_per_message(args: &AmqpArgs, queues: usize) -> u64 {
    match queues {
        0 => 0,
        _ if args.fanout => queues as u64,
        _ => 1,
    }
}

/// A consumer's or subscriber's task; it ends with its latency histogram.
pub(crate) type ReceiverHandle = JoinHandle<anyhow::Result<hdrhistogram::Histogram<u64>>>;

/// The clients of a run, all connected: publishers and receivers, each group with its stop signal.
struct Clients {
    publishers: Vec<JoinHandle<anyhow::Result<()>>>,
    stop_publishers: watch::Sender<bool>,
    receivers: Vec<ReceiverHandle>,
    stop_receivers: watch::Sender<bool>,
}

/// What the measured part of a run produced.
struct Measured {
    elapsed: Duration,
    /// Counts at the end of the publishing window, and after draining.
    window: stats::Counts,
    totals: stats::Counts,
    histogram: hdrhistogram::Histogram<u64>,
    errors: Vec<anyhow::Error>,
}

impl Measured {
    fn summary<S: Serialize>(&self, settings: S) -> Summary<S> {
        Summary::new(settings, self.elapsed, self.window, self.totals, &self.histogram)
    }
}

/// Publishes until `end`, stops the publishers, lets the receivers drain `copies` deliveries of
/// every published message, and stops them: the same for every protocol's load generator.
async fn measure(stats: &Stats, end: RunEnd, clients: Clients, copies: u64, receiver_role: &str) -> Measured {
    let started = Instant::now();
    end.wait(stats, started).await;
    let window = stats.snapshot();
    let elapsed = started.elapsed();
    let _ = clients.stop_publishers.send(true);
    let mut errors = join_tasks(clients.publishers, "publisher").await;
    stats.drain_consumers(copies).await;
    let _ = clients.stop_receivers.send(true);
    let (histogram, receiver_errors) = latency::join_receivers(clients.receivers, receiver_role).await;
    errors.extend(receiver_errors);
    Measured { elapsed, window, totals: stats.snapshot(), histogram, errors }
}

fn first_error(errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// When the publishing window closes: after --duration seconds (0: no time limit), or once all
/// --publishers are done with their --count (with no publishers: once --count are consumed).
struct RunEnd {
    duration: u64,
    publishers: usize,
    count: u64,
}

impl RunEnd {
    fn new(load: &LoadArgs, publishers: usize) -> RunEnd {
        RunEnd { duration: load.duration, publishers, count: load.count }
    }

    fn counted(&self, stats: &Stats) -> bool {
        if self.publishers > 0 {
            stats.publishers_done() == self.publishers
        } else {
            self.count > 0 && stats.snapshot().consumed >= self.count
        }
    }

    /// Prints a progress line every second until the duration is over, every publisher has sent
    /// its --count, or a connection failed.
    async fn wait(&self, stats: &Stats, started: Instant) {
        let tick = Duration::from_millis(100);
        let limit = (self.duration > 0).then(|| Duration::from_secs(self.duration));
        let mut last = stats.snapshot();
        let mut next_report = started + Duration::from_secs(1);
        loop {
            tokio::time::sleep(tick).await;
            let now = Instant::now();
            if now >= next_report {
                let current = stats.snapshot();
                stats::print_progress(now - started, &last, &current);
                last = current;
                next_report += Duration::from_secs(1);
            }
            let timed_out = limit.is_some_and(|limit| now - started >= limit);
            if timed_out || self.counted(stats) || stats.failed() {
                return;
            }
        }
    }
}

/// Waits for every task (`role`: what they are, for errors) and collects their errors.
async fn join_tasks(handles: Vec<JoinHandle<anyhow::Result<()>>>, role: &str) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.context(role.to_string())),
            Err(e) => errors.push(anyhow::anyhow!("{role} task: {e}")),
        }
    }
    errors
}

/// Opens a connection; every publisher and consumer has its own.
async fn connect(url: &str) -> anyhow::Result<lapin::Connection> {
    let properties = lapin::ConnectionProperties::default();
    let connect = lapin::Connection::connect(url, properties);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(result) => Ok(result.map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))?),
        Err(_) => anyhow::bail!("connecting to {url}: timed out after 10 s"),
    }
}
