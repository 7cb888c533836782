use crate::exchange::{ExchangeKind, ExchangeSpec};
use crate::message::{Message, Table, Value};
use crate::persist::DestinationKind;
use crate::vhost::QueueDeclare;
use crate::test_support::{body, broker, consumer, declare, msg, next};
use crate::ErrorKind;

#[tokio::test]
async fn persistent_messages_survive_restart_until_acked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(dir.path());
        let v = b.vhost("/").unwrap();
        v.declare_queue(declare("q", true, Table::default())).unwrap();
        for i in 0..3 {
            let out = v.publish("", Message { routing_key: "q".into(), ..msg(&i.to_string(), true) }, true).unwrap();
            out.durable.unwrap().await.unwrap().unwrap();
        }
        v.publish("", Message { routing_key: "q".into(), ..msg("transient", false) }, false).unwrap();
        let q = v.queue("q").unwrap();
        let first = q.get(false).unwrap();
        q.ack(&[first.seq]);
        b.shutdown().await;
    }
    let b = broker(dir.path());
    assert_eq!(b.recovery().messages, 2);
    let q = b.vhost("/").unwrap().queue("q").unwrap();
    let got: Vec<_> = std::iter::from_fn(|| q.get(true)).collect();
    let bodies: Vec<Vec<u8>> = got.iter().map(|d| body(d).to_vec()).collect();
    assert_eq!(bodies, vec![b"1".to_vec(), b"2".to_vec()]);
    assert!(got.iter().all(|d| d.redelivered), "recovered messages may have been delivered before the restart");
}

#[tokio::test]
async fn prefetch_limits_and_requeue_keeps_position() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("w", false, Table::default())).unwrap();
    for i in 0..3 {
        v.publish("", Message { routing_key: "w".into(), ..msg(&i.to_string(), false) }, false).unwrap();
    }
    let q = v.queue("w").unwrap();
    let (spec, mut rx) = consumer(1);
    let id = q.consume(spec).unwrap();
    let d0 = next(&mut rx).unwrap();
    assert!(next(&mut rx).is_none(), "prefetch 1 holds the second message back");
    q.reject(&[d0.seq], true);
    let again = next(&mut rx).unwrap();
    assert_eq!(body(&again), b"0");
    assert!(again.redelivered);
    q.ack(&[again.seq]);
    assert_eq!(body(&next(&mut rx).unwrap()), b"1");
    q.cancel(id);
    assert_eq!(q.counts().unacked, 1);
}

#[tokio::test]
async fn topic_routing_and_dead_lettering_by_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    let mut args = Table::default();
    args.insert("x-dead-letter-exchange", Value::str(""));
    args.insert("x-dead-letter-routing-key", Value::str("dead"));
    v.declare_queue(declare("live", false, args)).unwrap();
    v.declare_queue(declare("dead", false, Table::default())).unwrap();
    v.bind("amq.topic", DestinationKind::Queue, "live", "a.#", Table::default(), 1).unwrap();
    let out = v.publish("amq.topic", Message { routing_key: "a.b".into(), ..msg("x", false) }, false).unwrap();
    assert!(out.routed);
    let out = v.publish("amq.topic", Message { routing_key: "b".into(), ..msg("y", false) }, false).unwrap();
    assert!(!out.routed);
    let live = v.queue("live").unwrap();
    let d = live.get(false).unwrap();
    live.reject(&[d.seq], false);
    let dead = v.queue("dead").unwrap().get(true).unwrap();
    assert_eq!(body(&dead), b"x");
    let Some(Value::Array(deaths)) = dead.message.properties.headers.get("x-death") else { panic!() };
    let Value::Table(t) = &deaths[0] else { panic!() };
    assert_eq!(t.get("reason").and_then(Value::as_str), Some("rejected"));
}

#[tokio::test]
async fn declarations_follow_amqp_rules() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    let err = v.declare_queue(QueueDeclare { passive: true, ..declare("missing", false, Table::default()) });
    assert_eq!(err.unwrap_err().kind, ErrorKind::NotFound);
    let named = v.declare_queue(declare("", false, Table::default())).unwrap();
    assert!(named.name.starts_with("amq.gen-"));
    v.declare_queue(declare("d", true, Table::default())).unwrap();
    let err = v.declare_queue(declare("d", false, Table::default())).unwrap_err();
    assert_eq!(err.kind, ErrorKind::PreconditionFailed);
    let excl = QueueDeclare { exclusive: true, ..declare("mine", false, Table::default()) };
    v.declare_queue(excl).unwrap();
    assert_eq!(v.queue_for("mine", 2).unwrap_err().kind, ErrorKind::ResourceLocked);
    v.connection_closed(1);
    assert!(v.queue("mine").is_none());
    let spec = ExchangeSpec {
        name: "amq.custom".into(),
        kind: ExchangeKind::Direct,
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: Table::default(),
    };
    assert_eq!(v.declare_exchange(spec, false).unwrap_err().kind, ErrorKind::AccessRefused);
}

#[tokio::test]
async fn max_length_drop_head_and_reject_publish() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    let mut args = Table::default();
    args.insert("x-max-length", Value::I32(2));
    v.declare_queue(declare("drop", false, args.clone())).unwrap();
    args.insert("x-overflow", Value::str("reject-publish"));
    v.declare_queue(declare("reject", false, args)).unwrap();
    for i in 0..3 {
        v.publish("", Message { routing_key: "drop".into(), ..msg(&i.to_string(), false) }, false).unwrap();
        let out = v.publish("", Message { routing_key: "reject".into(), ..msg(&i.to_string(), false) }, false).unwrap();
        assert_eq!(out.refused, i == 2);
    }
    let drop_q = v.queue("drop").unwrap();
    assert_eq!(body(&drop_q.get(true).unwrap()), b"1");
}

/// A queue with one consumer whose connection writes nothing out, after `count` messages with
/// bodies of `size` bytes were published to it: what the consumer was handed before its send
/// window filled.
struct UnwrittenDeliveries {
    _dir: tempfile::TempDir,
    _broker: std::sync::Arc<crate::Broker>,
    queue: std::sync::Arc<crate::Queue>,
    rx: crate::EventReceiver,
    credit: std::sync::Arc<crate::ChannelCredit>,
    handed: usize,
}

fn deliver_without_writing(count: usize, size: usize, no_ack: bool) -> UnwrittenDeliveries {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("slow", false, Table::default())).unwrap();
    let queue = v.queue("slow").unwrap();
    let (mut spec, mut rx) = consumer(0);
    spec.no_ack = no_ack;
    let credit = spec.channel_credit.clone();
    queue.consume(spec).unwrap();
    let body = "x".repeat(size);
    for _ in 0..count {
        v.publish("", Message { routing_key: "slow".into(), ..msg(&body, false) }, false).unwrap();
    }
    let handed = std::iter::from_fn(|| next(&mut rx)).count();
    UnwrittenDeliveries { _dir: dir, _broker: b, queue, rx, credit, handed }
}

#[tokio::test]
async fn send_window_bounds_deliveries_not_yet_written() {
    use crate::queue::consumer::SEND_WINDOW;
    let mut run = deliver_without_writing(SEND_WINDOW as usize + 10, 1, true);
    assert_eq!(run.handed, SEND_WINDOW as usize, "a full window stops dispatch");
    assert_eq!(run.queue.counts().ready, 10);
    assert!(run.credit.written(1), "writing one out reopens the window");
    run.queue.kick();
    assert!(next(&mut run.rx).is_some());
}

#[tokio::test]
async fn send_window_bounds_the_bytes_not_yet_written() {
    use crate::queue::consumer::SEND_WINDOW_BYTES;
    let size = 1 << 20;
    let mut run = deliver_without_writing(10, size, false);
    assert_eq!(run.handed as u64, SEND_WINDOW_BYTES / size as u64, "4 MiB of 1 MiB bodies fill the window");
    assert_eq!(run.queue.counts().ready, 10 - run.handed);
    assert!(run.credit.written(size), "writing one out reopens the window");
    run.queue.kick();
    assert!(next(&mut run.rx).is_some());
    assert!(next(&mut run.rx).is_none(), "and lets exactly one more through");
}

fn delayed(queue: &str, body: &str, delay: Value, persistent: bool) -> Message {
    let mut m = Message { routing_key: queue.into(), ..msg(body, persistent) };
    m.properties.headers.insert("x-delay", delay);
    m
}

#[tokio::test]
async fn x_delay_holds_a_message_back_until_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("q", false, Table::default())).unwrap();
    let out = v.publish("", delayed("q", "later", Value::I32(300), false), true).unwrap();
    assert!(out.routed && out.durable.is_none());
    v.publish("", delayed("q", "now", Value::str("0"), false), false).unwrap();
    let q = v.queue("q").unwrap();
    assert_eq!(q.counts().ready, 1, "only the undelayed message is there");
    assert_eq!(v.delayed_count(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(q.counts().ready, 2);
    assert_eq!(v.delayed_count(), 0);
}

#[tokio::test]
async fn persistent_delayed_messages_survive_a_restart_and_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(dir.path());
        let v = b.vhost("/").unwrap();
        v.declare_queue(declare("q", true, Table::default())).unwrap();
        let out = v.publish("", delayed("q", "held", Value::str("700"), true), true).unwrap();
        out.durable.unwrap().await.unwrap().unwrap();
        b.shutdown().await;
    }
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    assert_eq!(v.delayed_count(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let (spec, mut rx) = consumer(0);
    v.queue("q").unwrap().consume(spec).unwrap();
    let d = next(&mut rx).expect("released after the restart");
    assert_eq!(body(&d), b"held");
    assert!(next(&mut rx).is_none());
    b.shutdown().await;
    drop((v, b, rx, d));
    let b = broker(dir.path());
    assert_eq!(b.vhost("/").unwrap().delayed_count(), 0, "released messages are no longer held");
}

#[tokio::test]
async fn a_delayed_message_due_during_downtime_waits_for_the_stored_messages() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(dir.path());
        let v = b.vhost("/").unwrap();
        v.declare_queue(declare("q", true, Table::default())).unwrap();
        for body in ["one", "two"] {
            let out = v.publish("", Message { routing_key: "q".into(), ..msg(body, true) }, true).unwrap();
            out.durable.unwrap().await.unwrap().unwrap();
        }
        let out = v.publish("", delayed("q", "late", Value::I32(100), true), true).unwrap();
        out.durable.unwrap().await.unwrap().unwrap();
        b.shutdown().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (spec, mut rx) = consumer(0);
    v.queue("q").unwrap().consume(spec).unwrap();
    let bodies: Vec<Vec<u8>> = std::iter::from_fn(|| next(&mut rx)).map(|d| body(&d).to_vec()).collect();
    assert_eq!(bodies, vec![b"one".to_vec(), b"two".to_vec(), b"late".to_vec()]);
    b.shutdown().await;
    drop((v, b, rx));
    let b = broker(dir.path());
    assert_eq!(b.vhost("/").unwrap().queue("q").unwrap().counts().ready, 3, "nothing overwritten in the store");
}
