//! Helpers shared by the core's tests: a broker on a temp dir, messages, declarations and a
//! consumer whose deliveries the test reads directly.

use crate::broker::{Broker, BrokerConfig};
use crate::message::{Message, Properties, Table};
use crate::queue::{event_channel, ChannelCredit, ConsumerEvent, ConsumerSpec, Delivery, EventReceiver};
use crate::vhost::QueueDeclare;
use bytes::Bytes;
use std::sync::Arc;

pub fn broker(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(BrokerConfig { data_dir: dir.to_path_buf(), ..Default::default() }).unwrap()
}

pub fn msg(body: &str, persistent: bool) -> Message {
    let props = Properties { persistent, ..Default::default() };
    Message::new("", "", props, Bytes::copy_from_slice(body.as_bytes()))
}

pub fn declare(name: &str, durable: bool, args: Table) -> QueueDeclare {
    QueueDeclare { name: name.into(), durable, arguments: args, connection: 1, ..Default::default() }
}

pub fn consumer(prefetch: u32) -> (ConsumerSpec, EventReceiver) {
    let (tx, rx) = event_channel();
    let spec = ConsumerSpec {
        tag: Arc::from("c"),
        no_ack: false,
        exclusive: false,
        prefetch,
        channel_credit: Arc::new(ChannelCredit::default()),
        sink: tx,
        cookie: 0,
    };
    (spec, rx)
}

pub fn next(rx: &mut EventReceiver) -> Option<Delivery> {
    match rx.try_recv() {
        Some(ConsumerEvent::Deliver(d)) => Some(*d),
        _ => None,
    }
}

pub fn body(d: &Delivery) -> &[u8] {
    &d.message.body
}
