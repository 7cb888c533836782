//! `junction bench stomp`: N publishers SEND to one destination and M subscribers consume from
//! it, each its own STOMP 1.2 connection, framed by Junction's own codec
//! (`junction_stomp::codec::StompCodec`) over a tokio TcpStream.
//!
//! With a `/queue/` destination (the default: a fresh `/queue/bench-<random>`, durable on both
//! Junction and RabbitMQ, and kept at the end) the subscribers share the messages; with
//! `/topic/` or `/exchange/` each gets its own copy. `--receipts` is STOMP's publisher confirm:
//! every SEND asks for a RECEIPT and each publisher keeps at most --inflight of them
//! outstanding; the summary's "confirmed" counts the RECEIPTs. Subscribers ACK every message
//! (`client-individual`), every --multi-ack-th one (`client`, cumulative) or none (`auto`).

mod connection;
mod publisher;
mod subscriber;

use super::stats::Stats;
use super::{first_error, measure, Clients, LoadArgs, RunEnd};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a connection may take, CONNECTED (and the SUBSCRIBE's RECEIPT) included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames (or bytes) a client encodes before it writes them out in one go.
const BATCH_FRAMES: usize = 64;
const BATCH_BYTES: usize = 64 * 1024;

/// SUBSCRIBE's `ack` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    /// The broker considers a message acknowledged once sent.
    Auto,
    /// One ACK acknowledges the message and every earlier one (see --multi-ack).
    Client,
    /// One ACK per message.
    ClientIndividual,
}

impl AckMode {
    fn header(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StompArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker STOMP port.
    #[arg(long, default_value_t = 61613)]
    pub port: u16,
    /// CONNECT's `login`.
    #[arg(long, default_value = "guest")]
    pub user: String,
    /// CONNECT's `passcode`.
    #[arg(long, default_value = "guest")]
    pub password: String,
    /// CONNECT's `host` header: the vhost.
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribing connections (0: publish only).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Body size in bytes (at least 8: the send timestamp).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// SEND with `persistent:true`.
    #[arg(long)]
    pub persistent: bool,
    /// Ask for a RECEIPT for every SEND (STOMP's publisher confirm), at most --inflight outstanding.
    #[arg(long)]
    pub receipts: bool,
    /// SENDs without their RECEIPT each publisher may have outstanding (with --receipts).
    #[arg(long, default_value_t = 100)]
    pub inflight: usize,
    /// Destination (default: a fresh `/queue/bench-<random>`, kept at the end).
    #[arg(long)]
    pub destination: Option<String>,
    /// SUBSCRIBE's `ack` mode.
    #[arg(long, value_enum, default_value_t = AckMode::ClientIndividual)]
    pub ack: AckMode,
    /// With --ack client: one cumulative ACK every N messages.
    #[arg(long, default_value_t = 1)]
    pub multi_ack: u64,
    /// SUBSCRIBE's `prefetch-count` (RabbitMQ's header; 0: not sent).
    #[arg(long, default_value_t = 200)]
    pub prefetch: u32,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// What every client of one run shares.
pub struct Run {
    pub args: StompArgs,
    pub destination: String,
    pub epoch: Instant,
    pub stats: Arc<Stats>,
}

/// The settings a STOMP summary reports.
#[derive(Debug, Serialize)]
struct StompSettings {
    protocol: &'static str,
    publishers: usize,
    subscribers: usize,
    size: usize,
    persistent: bool,
    receipts: bool,
    inflight: usize,
    ack: AckMode,
    prefetch: u32,
    rate: u64,
    destination: String,
}

impl StompSettings {
    fn of(run: &Run) -> StompSettings {
        let args = &run.args;
        StompSettings {
            protocol: "stomp",
            publishers: args.publishers,
            subscribers: args.subscribers,
            size: args.size,
            persistent: args.persistent,
            receipts: args.receipts,
            inflight: args.inflight,
            ack: args.ack,
            prefetch: args.prefetch,
            rate: args.load.rate,
            destination: run.destination.clone(),
        }
    }
}

fn validate(args: &StompArgs) -> anyhow::Result<()> {
    args.load.check()?;
    if args.publishers == 0 && args.subscribers == 0 {
        anyhow::bail!("nothing to do: --publishers 0 and --subscribers 0");
    }
    if args.receipts && args.inflight == 0 {
        anyhow::bail!("--inflight must be at least 1");
    }
    if args.multi_ack == 0 {
        anyhow::bail!("--multi-ack must be at least 1");
    }
    if args.size < 8 {
        anyhow::bail!("--size must be at least 8 (the send timestamp)");
    }
    Ok(())
}

/// Deliveries one published message makes: every subscriber of a topic or exchange gets a copy,
/// the subscribers of a queue share its messages.
fn copies_per_message(destination: &str, subscribers: usize) -> u64 {
    let fan_out = destination.starts_with("/topic/") || destination.starts_with("/exchange/");
    match subscribers {
        0 => 0,
        n if fan_out => n as u64,
        _ => 1,
    }
}

pub async fn run(args: StompArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let destination = args.destination.clone().unwrap_or_else(|| format!("/queue/bench-{:08x}", rand::random::<u32>()));
    let stats = Arc::new(Stats::default());
    let run = Arc::new(Run { args, destination, epoch: Instant::now(), stats: stats.clone() });
    let (stop_subscribers, subscribers_rx) = watch::channel(false);
    let subscribers = subscriber::start_all(&run, subscribers_rx).await?;
    let (stop_publishers, publishers_rx) = watch::channel(false);
    let publishers = publisher::start_all(&run, publishers_rx).await?;

    let args = &run.args;
    let clients = Clients { publishers, stop_publishers, receivers: subscribers, stop_receivers: stop_subscribers };
    let end = RunEnd::new(&args.load, args.publishers);
    let copies = copies_per_message(&run.destination, args.subscribers);
    let measured = measure(&stats, end, clients, copies, "subscriber").await;
    measured.summary(StompSettings::of(&run)).print(args.load.json)?;
    first_error(measured.errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_subscribers_share_and_topic_subscribers_copy() {
        assert_eq!(copies_per_message("/queue/q", 4), 1);
        assert_eq!(copies_per_message("/amq/queue/q", 4), 1);
        assert_eq!(copies_per_message("/topic/a.b", 4), 4);
        assert_eq!(copies_per_message("/exchange/x/rk", 2), 2);
        assert_eq!(copies_per_message("/queue/q", 0), 0, "publish only");
    }
}
