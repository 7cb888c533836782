//! AMQP 0-9-1 end to end with lapin, the Rust client, against the junction binary.

use crate::broker::Broker;
use futures::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(b: &Broker) -> Connection {
    timeout(WAIT, Connection::connect(&b.url(), ConnectionProperties::default()))
        .await
        .expect("connect in time")
        .expect("connect")
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

#[tokio::test]
async fn publish_with_confirms_then_consume_and_ack() {
    let b = Broker::start();
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    ch.queue_declare("work".into(), durable(), FieldTable::default()).await.unwrap();
    for i in 0..50u32 {
        let props = BasicProperties::default().with_delivery_mode(2);
        let confirm = ch
            .basic_publish("".into(), "work".into(), BasicPublishOptions::default(), &i.to_be_bytes(), props)
            .await
            .unwrap();
        assert!(timeout(WAIT, confirm).await.unwrap().unwrap().is_ack());
    }
    ch.basic_qos(5, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume("work".into(), "c1".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for i in 0..50u32 {
        let delivery = timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(delivery.data, i.to_be_bytes(), "FIFO order");
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let q = ch
        .queue_declare("work".into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
}

#[tokio::test]
async fn confirmed_messages_survive_kill_9() {
    let mut b = Broker::start();
    {
        let conn = connect(&b).await;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        ch.queue_declare("keep".into(), durable(), FieldTable::default()).await.unwrap();
        let mut confirms = Vec::new();
        for i in 0..200u32 {
            let props = BasicProperties::default().with_delivery_mode(2);
            let c = ch
                .basic_publish("".into(), "keep".into(), BasicPublishOptions::default(), &i.to_be_bytes(), props)
                .await
                .unwrap();
            confirms.push(c);
        }
        for c in confirms {
            assert!(timeout(WAIT, c).await.unwrap().unwrap().is_ack());
        }
        let got = ch.basic_get("keep".into(), BasicGetOptions::default()).await.unwrap().unwrap();
        got.delivery.ack(BasicAckOptions::default()).await.unwrap();
        ch.close(200, "bye".into()).await.unwrap();
    }
    b.kill_and_restart();
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    let mut seen = Vec::new();
    while let Some(m) = ch.basic_get("keep".into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        seen.push(u32::from_be_bytes(m.delivery.data[..4].try_into().unwrap()));
    }
    // Every confirmed message is back, in order. The acked one may be too: an ack is not
    // synced before kill -9 can strike (at-least-once), but it never shows up twice.
    let expected: Vec<u32> = (1..200).collect();
    let tail = if seen.first() == Some(&0) { &seen[1..] } else { &seen[..] };
    assert_eq!(tail, &expected[..], "log: {}", b.log());
}

#[tokio::test]
async fn topic_exchange_routes_by_pattern() {
    let b = Broker::start();
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare("logs".into(), lapin::ExchangeKind::Topic, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let q = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-"));
    ch.queue_bind(q.name().clone(), "logs".into(), "kern.#".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for key in ["kern.critical", "auth.info", "kern"] {
        ch.basic_publish("logs".into(), key.into(), BasicPublishOptions::default(), key.as_bytes(), BasicProperties::default())
            .await
            .unwrap();
    }
    let mut consumer = ch
        .basic_consume(q.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    let mut keys = Vec::new();
    for _ in 0..2 {
        let d = timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
        keys.push(d.routing_key.to_string());
    }
    assert_eq!(keys, vec!["kern.critical", "kern"]);
    assert!(timeout(Duration::from_millis(300), consumer.next()).await.is_err(), "auth.info must not arrive");
}
