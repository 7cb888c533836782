//! `junction bench mqtt`: N publishers and M subscribers on one topic, each its own MQTT 3.1.1
//! connection (rumqttc, clean session), at --qos 0, 1 or 2.
//!
//! Every subscriber has its SUBACK before the first message is published, and every message
//! reaches every subscriber: M = 1 with many publishers is a fan-in, one publisher with many
//! subscribers a fan-out. The summary's "consumed" counts deliveries at the subscribers,
//! "confirmed" the PUBACKs (QoS 1) or PUBCOMPs (QoS 2) the publishers got back.
//!
//! With --amqp-consumers, messages also cross protocols: AMQP consumers (the `bench amqp`
//! consumers) compete on one queue bound to `amq.topic` with the topic as routing key, as
//! RabbitMQ's MQTT plugin and Junction both route MQTT publishes; each message is consumed once
//! there.

mod publisher;
mod subscriber;

use super::stats::Stats;
use super::topology::Topology;
use super::{consumer, first_error, measure, AmqpArgs, Clients, LoadArgs, RunEnd};
use clap::Args;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Connections being set up at the same time (1000 subscribers connect in batches).
const CONNECTS_AT_ONCE: usize = 32;
/// How long a connection may take, CONNACK (and SUBACK) included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write may wait for the broker to read (see `connect`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Args)]
pub struct MqttArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// User name to log in with (default: none, an anonymous client).
    #[arg(long)]
    pub user: Option<String>,
    /// Password, with --user.
    #[arg(long, requires = "user")]
    pub password: Option<String>,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribing connections, all on the same topic (0: publish only).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// QoS of the publishes and of the subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 8: the send timestamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Topic (default: a fresh `bench/<random>`).
    #[arg(long)]
    pub topic: Option<String>,
    /// Unacknowledged QoS 1/2 publishes each publisher may have outstanding.
    #[arg(long, default_value_t = 64)]
    pub inflight: u16,
    /// AMQP consumers sharing one queue bound to `amq.topic` with the topic as routing key
    /// (`/` -> `.`): MQTT in, AMQP out.
    #[arg(long, default_value_t = 0)]
    pub amqp_consumers: usize,
    /// The broker's AMQP URL, for --amqp-consumers.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// What every client of one run shares.
pub struct Run {
    pub args: MqttArgs,
    pub topic: String,
    /// Makes the client ids of this run unique, so that runs never take over each other's sessions.
    pub id: u32,
    pub qos: QoS,
    pub epoch: Instant,
    pub stats: Arc<Stats>,
}

impl Run {
    /// Connection options for client `name` (e.g. "p3": publisher 3).
    fn options(&self, name: &str) -> MqttOptions {
        let args = &self.args;
        let mut options = MqttOptions::new(format!("bench{:08x}{name}", self.id), &args.host, args.port);
        options.set_clean_session(true);
        // rumqttc refuses packets over its limit (10 KiB by default); leave room for the header.
        options.set_max_packet_size(args.size + 1024, args.size + 1024);
        options.set_inflight(args.inflight);
        if let Some(user) = &args.user {
            options.set_credentials(user, args.password.clone().unwrap_or_default());
        }
        options
    }
}

/// The settings an MQTT summary reports.
#[derive(Debug, Serialize)]
struct MqttSettings {
    protocol: &'static str,
    publishers: usize,
    subscribers: usize,
    size: usize,
    qos: u8,
    inflight: u16,
    rate: u64,
    amqp_consumers: usize,
}

impl MqttSettings {
    fn of(args: &MqttArgs) -> MqttSettings {
        MqttSettings {
            protocol: "mqtt",
            publishers: args.publishers,
            subscribers: args.subscribers,
            size: args.size,
            qos: args.qos,
            inflight: args.inflight,
            rate: args.load.rate,
            amqp_consumers: args.amqp_consumers,
        }
    }
}

fn validate(args: &MqttArgs) -> anyhow::Result<()> {
    args.load.check()?;
    if args.publishers == 0 && args.subscribers == 0 && args.amqp_consumers == 0 {
        anyhow::bail!("nothing to do: no publishers, subscribers or AMQP consumers");
    }
    if args.inflight == 0 {
        anyhow::bail!("--inflight must be at least 1");
    }
    if args.size < 8 {
        anyhow::bail!("--size must be at least 8 (the send timestamp)");
    }
    Ok(())
}

fn qos_of(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

pub async fn run(args: MqttArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let topic = args.topic.clone().unwrap_or_else(|| format!("bench/{:08x}", rand::random::<u32>()));
    let stats = Arc::new(Stats::default());
    let (id, qos, epoch) = (rand::random(), qos_of(args.qos), Instant::now());
    let run = Arc::new(Run { args, topic, id, qos, epoch, stats: stats.clone() });
    let (stop_subscribers, subscribers_rx) = watch::channel(false);
    let (amqp_topology, amqp_consumers) = start_amqp_side(&run, subscribers_rx.clone()).await?;
    let mut receivers = subscriber::start_all(&run, subscribers_rx).await?;
    let (stop_publishers, publishers_rx) = watch::channel(false);
    let publishers = publisher::start_all(&run, publishers_rx).await?;

    let args = &run.args;
    let copies = args.subscribers as u64 + u64::from(amqp_topology.is_some());
    receivers.extend(amqp_consumers);
    let clients = Clients { publishers, stop_publishers, receivers, stop_receivers: stop_subscribers };
    let end = RunEnd::new(&args.load, args.publishers);
    // Every subscriber gets every message, and the AMQP consumers one copy between them.
    let mut measured = measure(&stats, end, clients, copies, "subscriber").await;
    if let Some(topology) = amqp_topology {
        if let Err(e) = topology.clean_up().await {
            measured.errors.push(e.context("cleaning up the AMQP queue"));
        }
    }
    measured.summary(MqttSettings::of(args)).print(args.load.json)?;
    first_error(measured.errors)
}

/// The AMQP end of an MQTT -> AMQP run (none without --amqp-consumers): its queue, bound to
/// `amq.topic`, and its consumers, all consuming when this returns.
async fn start_amqp_side(
    run: &Arc<Run>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Option<Topology>, Vec<super::ReceiverHandle>)> {
    let args = &run.args;
    if args.amqp_consumers == 0 {
        return Ok((None, Vec::new()));
    }
    let amqp = Arc::new(AmqpArgs {
        url: args.amqp_url.clone(),
        publishers: 0,
        consumers: args.amqp_consumers,
        size: args.size,
        persistent: false,
        confirm: false,
        inflight: 1,
        exchange: "amq.topic".into(),
        routing_key: Some(run.topic.replace('/', ".")),
        queue: None,
        fanout: false,
        prefetch: 200,
        multi_ack: 1,
        load: args.load.clone(),
    });
    let topology = Topology::declare(&amqp).await?;
    let consumers = consumer::start_all(&amqp, &topology, &run.stats, run.epoch, stop).await?;
    Ok((Some(topology), consumers))
}

/// Connects a client and waits for its CONNACK.
async fn connect(options: MqttOptions, requests: usize) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let (host, port) = options.broker_address();
    let address = format!("{host}:{port}");
    let (client, mut eventloop) = AsyncClient::new(options, requests);
    let mut network = NetworkOptions::new();
    // As the brokers do: a small publish leaves at once rather than waiting for the last one's ACK.
    network.set_tcp_nodelay(true);
    // rumqttc gives up on a write the broker does not take within this time (and on connecting,
    // which CONNECT_TIMEOUT bounds here anyway). A broker that throttles publishers with TCP
    // back-pressure may hold them for longer than the default 5 s: that is its answer to
    // overload, not a failure.
    network.set_connection_timeout(WRITE_TIMEOUT.as_secs());
    eventloop.set_network_options(network);
    match tokio::time::timeout(CONNECT_TIMEOUT, eventloop.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => Ok((client, eventloop)),
        Ok(Ok(event)) => anyhow::bail!("connecting to {address}: expected CONNACK, got {event:?}"),
        Ok(Err(e)) => anyhow::bail!("connecting to {address}: {e}"),
        Err(_) => anyhow::bail!("connecting to {address}: no CONNACK after {CONNECT_TIMEOUT:?}"),
    }
}
