//! RabbitMQ's STOMP destination grammar.
//!
//! | destination | SEND goes to | SUBSCRIBE consumes |
//! |---|---|---|
//! | `/queue/q` | queue `q` (declared durable on use) | queue `q` (declared on use) |
//! | `/amq/queue/q` | queue `q` (must exist) | queue `q` (must exist) |
//! | `/topic/rk` | `amq.topic`, key `rk` | a subscription queue bound to `amq.topic` with `rk` |
//! | `/exchange/x/rk` | exchange `x`, key `rk` | a subscription queue bound to `x` with `rk` |
//! | `/temp-queue/name` | (in `reply-to` only: a private queue of the connection) | (its replies arrive by themselves) |
//! | `/reply-queue/q` | queue `q` (a temp queue as the receiver sees it; never declared) | |

use junction_core::Message;

pub const TOPIC_EXCHANGE: &str = "amq.topic";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Queue(String),
    AmqQueue(String),
    Topic(String),
    Exchange { name: String, key: String },
    TempQueue(String),
    ReplyQueue(String),
}

impl Destination {
    pub fn parse(s: &str) -> Result<Destination, String> {
        let invalid = || format!("'{s}' is not a valid destination");
        let nonempty = |rest: &str| if rest.is_empty() { Err(invalid()) } else { Ok(rest.to_string()) };
        if let Some(q) = s.strip_prefix("/queue/") {
            return nonempty(q).map(Destination::Queue);
        }
        if let Some(q) = s.strip_prefix("/amq/queue/") {
            return nonempty(q).map(Destination::AmqQueue);
        }
        if let Some(rk) = s.strip_prefix("/topic/") {
            return nonempty(rk).map(Destination::Topic);
        }
        if let Some(rest) = s.strip_prefix("/exchange/") {
            let (name, key) = rest.split_once('/').unwrap_or((rest, ""));
            return nonempty(name).map(|name| Destination::Exchange { name, key: key.to_string() });
        }
        if let Some(name) = s.strip_prefix("/temp-queue/") {
            return nonempty(name).map(Destination::TempQueue);
        }
        if let Some(name) = s.strip_prefix("/reply-queue/") {
            return nonempty(name).map(Destination::ReplyQueue);
        }
        Err(invalid())
    }

    /// Where a SEND to this destination is published: (exchange, routing key).
    pub fn publish_target(&self) -> (&str, &str) {
        match self {
            Destination::Queue(q) | Destination::AmqQueue(q) | Destination::TempQueue(q) | Destination::ReplyQueue(q) => ("", q),
            Destination::Topic(rk) => (TOPIC_EXCHANGE, rk),
            Destination::Exchange { name, key } => (name, key),
        }
    }

    /// The destination shown on a MESSAGE, derived from where the message was published.
    pub fn of_message(msg: &Message) -> String {
        match msg.exchange.as_str() {
            "" => format!("/queue/{}", msg.routing_key),
            TOPIC_EXCHANGE => format!("/topic/{}", msg.routing_key),
            x => format!("/exchange/{x}/{}", msg.routing_key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_destinations_parse() {
        assert_eq!(Destination::parse("/queue/a.b"), Ok(Destination::Queue("a.b".into())));
        assert_eq!(Destination::parse("/amq/queue/q"), Ok(Destination::AmqQueue("q".into())));
        assert_eq!(Destination::parse("/topic/x.*.y"), Ok(Destination::Topic("x.*.y".into())));
        assert_eq!(Destination::parse("/exchange/logs"), Ok(Destination::Exchange { name: "logs".into(), key: "".into() }));
        assert_eq!(
            Destination::parse("/exchange/amq.direct/k/with/slashes"),
            Ok(Destination::Exchange { name: "amq.direct".into(), key: "k/with/slashes".into() })
        );
        for bad in ["/queue/", "queue/a", "/nowhere/a", "/exchange/", ""] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_message_destination_is_derived_from_exchange_and_key() {
        let m = |x: &str, k: &str| Message::new(x, k, Default::default(), Default::default());
        assert_eq!(Destination::of_message(&m("", "q")), "/queue/q");
        assert_eq!(Destination::of_message(&m("amq.topic", "a.b")), "/topic/a.b");
        assert_eq!(Destination::of_message(&m("logs", "")), "/exchange/logs/");
    }
}
