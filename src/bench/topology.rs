//! What a bench run publishes to and consumes from: declared before the clients start, deleted
//! afterwards when the run made it up (`bench-<random>` names), kept when the user named it.

use super::AmqpArgs;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

/// Where publishers send: the same for every publisher.
pub struct Target {
    pub exchange: ShortString,
    pub routing_key: ShortString,
}

pub struct Topology {
    /// The set-up connection stays open for the clean-up at the end.
    connection: Connection,
    channel: Channel,
    exchange: String,
    routing_key: String,
    /// The queue each consumer reads, by consumer index (all the same unless --fanout).
    pub consumer_queues: Vec<String>,
    /// What this run created under a fresh name, and so deletes.
    owned_queues: Vec<String>,
    owned_exchange: Option<String>,
}

fn fresh_name() -> String {
    format!("bench-{:08x}", rand::random::<u32>())
}

impl Topology {
    pub async fn declare(args: &AmqpArgs) -> anyhow::Result<Topology> {
        let connection = super::connect(&args.url).await?;
        let channel = connection.create_channel().await?;
        let mut topology = Topology {
            connection,
            channel,
            exchange: args.exchange.clone(),
            routing_key: String::new(),
            consumer_queues: Vec::new(),
            owned_queues: Vec::new(),
            owned_exchange: None,
        };
        if args.fanout {
            topology.declare_fanout(args).await?;
        } else {
            topology.declare_single(args).await?;
        }
        Ok(topology)
    }

    /// One queue shared by every consumer, reached through the default exchange or a direct one.
    async fn declare_single(&mut self, args: &AmqpArgs) -> anyhow::Result<()> {
        let queue = match &args.queue {
            Some(name) => name.clone(),
            None => {
                let name = fresh_name();
                self.owned_queues.push(name.clone());
                name
            }
        };
        self.declare_queue(&queue, args.persistent).await?;
        self.routing_key = args.routing_key.clone().unwrap_or_else(|| queue.clone());
        if !self.exchange.is_empty() {
            self.declare_exchange(ExchangeKind::Direct, args.persistent).await?;
            self.bind(&queue).await?;
        }
        self.consumer_queues = vec![queue; args.consumers];
        Ok(())
    }

    /// A fanout exchange with one fresh queue per consumer.
    async fn declare_fanout(&mut self, args: &AmqpArgs) -> anyhow::Result<()> {
        let base = fresh_name();
        if self.exchange.is_empty() {
            self.exchange = format!("{base}-fanout");
            self.owned_exchange = Some(self.exchange.clone());
        }
        self.declare_exchange(ExchangeKind::Fanout, args.persistent).await?;
        self.routing_key = args.routing_key.clone().unwrap_or_default();
        for i in 0..args.consumers {
            let queue = format!("{base}-{i}");
            self.declare_queue(&queue, args.persistent).await?;
            self.owned_queues.push(queue.clone());
            self.bind(&queue).await?;
            self.consumer_queues.push(queue);
        }
        Ok(())
    }

    async fn declare_queue(&self, queue: &str, durable: bool) -> anyhow::Result<()> {
        let options = QueueDeclareOptions { durable, ..Default::default() };
        self.channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .map_err(|e| anyhow::anyhow!("declaring queue '{queue}': {e}"))?;
        Ok(())
    }

    /// Declares the exchange unless it is one of the predeclared `amq.*` ones.
    async fn declare_exchange(&self, kind: ExchangeKind, durable: bool) -> anyhow::Result<()> {
        if self.exchange.starts_with("amq.") {
            return Ok(());
        }
        let options = ExchangeDeclareOptions { durable, ..Default::default() };
        self.channel
            .exchange_declare(self.exchange.as_str().into(), kind, options, FieldTable::default())
            .await
            .map_err(|e| anyhow::anyhow!("declaring exchange '{}': {e}", self.exchange))
    }

    async fn bind(&self, queue: &str) -> anyhow::Result<()> {
        let (exchange, key) = (self.exchange.as_str(), self.routing_key.as_str());
        self.channel
            .queue_bind(queue.into(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(|e| anyhow::anyhow!("binding '{queue}' to '{exchange}': {e}"))
    }

    pub fn target(&self) -> Target {
        Target { exchange: self.exchange.as_str().into(), routing_key: self.routing_key.as_str().into() }
    }

    /// Deletes what the run created, then closes the set-up connection.
    pub async fn clean_up(self) -> anyhow::Result<()> {
        for queue in &self.owned_queues {
            self.channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await?;
        }
        if let Some(exchange) = &self.owned_exchange {
            self.channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await?;
        }
        self.connection.close(200, "bench done".into()).await?;
        Ok(())
    }
}
