//! Hello world over AMQP 0-9-1 with lapin: publish with a confirm, consume, ack.
//!
//!     cargo run --example amqp_hello -- [amqp://guest:guest@127.0.0.1:5672/%2F]

use futures::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> Result<(), lapin::Error> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2F".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("hello".into(), durable, FieldTable::default()).await?;
    let props = BasicProperties::default().with_delivery_mode(2);
    let confirm = ch
        .basic_publish("".into(), "hello".into(), BasicPublishOptions::default(), b"Hello, Junction!", props)
        .await?;
    println!("confirmed: {}", confirm.await?.is_ack());
    let mut consumer = ch
        .basic_consume("hello".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    if let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        println!("received: {}", String::from_utf8_lossy(&delivery.data));
        delivery.ack(BasicAckOptions::default()).await?;
    }
    conn.close(200, "bye".into()).await
}
