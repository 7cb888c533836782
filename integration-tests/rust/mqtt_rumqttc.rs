//! MQTT 3.1.1 and 5.0 end to end with rumqttc, the Rust client, against the junction binary;
//! across to AMQP with lapin.

use crate::broker::Broker;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// An MQTT 3.1.1 client whose event loop runs in a task, its events in a channel.
struct V4 {
    client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<rumqttc::Event>,
}

impl V4 {
    async fn connect(b: &Broker, id: &str, clean: bool) -> V4 {
        let mut options = rumqttc::MqttOptions::new(id, b.mqtt.ip().to_string(), b.mqtt.port());
        options.set_clean_session(clean).set_keep_alive(Duration::from_secs(30));
        let (client, eventloop) = rumqttc::AsyncClient::new(options, 100);
        let mut c = V4 { client, events: drive(eventloop, |el: &mut rumqttc::EventLoop| Box::pin(async { el.poll().await.map_err(|e| e.to_string()) })) };
        c.expect(|e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).await;
        c
    }

    /// The next event matching `wanted` (others are skipped).
    async fn expect(&mut self, wanted: impl Fn(&rumqttc::Event) -> bool) -> rumqttc::Event {
        next_matching(&mut self.events, wanted).await
    }

    async fn next_publish(&mut self) -> rumqttc::Publish {
        match self.expect(|e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::Publish(_)))).await {
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => p,
            _ => unreachable!("matched a publish"),
        }
    }

    /// Publishes at QoS 2 and waits for the PUBCOMP.
    async fn publish_exactly_once(&mut self, topic: &str, payload: Vec<u8>) {
        self.client.publish(topic, rumqttc::QoS::ExactlyOnce, false, payload).await.unwrap();
        self.expect(|e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubComp(_)))).await;
    }

    async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        self.expect(|e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))).await;
    }

    async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        self.expect(|e| matches!(e, rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect))).await;
    }
}

/// Polls an event loop in a task and forwards its events until it fails or nobody listens.
fn drive<L, E, F>(mut eventloop: L, poll: F) -> mpsc::UnboundedReceiver<E>
where
    L: Send + 'static,
    E: Send + 'static,
    F: for<'a> Fn(&'a mut L) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<E, String>> + Send + 'a>>
        + Send
        + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = poll(&mut eventloop).await {
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    rx
}

async fn next_matching<E: std::fmt::Debug>(events: &mut mpsc::UnboundedReceiver<E>, wanted: impl Fn(&E) -> bool) -> E {
    timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("the MQTT connection is still up");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the expected MQTT event in time")
}

/// An MQTT 5 client, as `V4`.
struct V5 {
    client: rumqttc::v5::AsyncClient,
    events: mpsc::UnboundedReceiver<rumqttc::v5::Event>,
    session_present: bool,
}

impl V5 {
    async fn connect(b: &Broker, id: &str, clean_start: bool, session_expiry: u32) -> V5 {
        let mut options = rumqttc::v5::MqttOptions::new(id, b.mqtt.ip().to_string(), b.mqtt.port());
        options.set_clean_start(clean_start).set_session_expiry_interval(Some(session_expiry));
        let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, 100);
        let events = drive(eventloop, |el: &mut rumqttc::v5::EventLoop| Box::pin(async { el.poll().await.map_err(|e| e.to_string()) }));
        let mut c = V5 { client, events, session_present: false };
        match next_matching(&mut c.events, |e| matches!(e, rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(_)))).await {
            rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(ack)) => c.session_present = ack.session_present,
            _ => unreachable!("matched a CONNACK"),
        }
        c
    }

    async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        let publish = |e: &rumqttc::v5::Event| matches!(e, rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(_)));
        match next_matching(&mut self.events, publish).await {
            rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p)) => p,
            _ => unreachable!("matched a publish"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: rumqttc::v5::mqttbytes::QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        next_matching(&mut self.events, |e| matches!(e, rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::SubAck(_)))).await;
    }
}

async fn amqp(b: &Broker) -> Connection {
    timeout(WAIT, Connection::connect(&b.url(), ConnectionProperties::default())).await.unwrap().unwrap()
}

#[tokio::test]
async fn qos2_exactly_once_to_an_offline_session_across_a_kill_9() {
    let mut b = Broker::start();
    let mut sub = V4::connect(&b, "eo-sub", false).await;
    sub.subscribe("eo/#", rumqttc::QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut publisher = V4::connect(&b, "eo-pub", true).await;
    for i in 0..30u32 {
        publisher.publish_exactly_once(&format!("eo/{i}"), i.to_be_bytes().to_vec()).await;
    }
    b.kill_and_restart();
    let mut sub = V4::connect(&b, "eo-sub", false).await;
    let mut got = Vec::new();
    for _ in 0..30 {
        let p = sub.next_publish().await;
        assert_eq!(p.qos, rumqttc::QoS::ExactlyOnce);
        got.push(u32::from_be_bytes(p.payload[..4].try_into().unwrap()));
    }
    assert_eq!(got, (0..30).collect::<Vec<_>>(), "every message once, in order");
    let extra = timeout(Duration::from_millis(500), sub.next_publish_raw()).await;
    assert!(extra.is_err(), "no duplicate after the restart");
}

impl V4 {
    /// The next publish without the overall timeout (for "nothing more arrives" checks).
    async fn next_publish_raw(&mut self) -> Option<rumqttc::Publish> {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = self.events.recv().await? {
                return Some(p);
            }
        }
    }
}

#[tokio::test]
async fn v5_persistent_session_gets_messages_published_while_offline_after_a_kill_9() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    use rumqttc::v5::mqttbytes::QoS;
    let mut b = Broker::start();
    let mut sub = V5::connect(&b, "v5-away", true, 3600).await;
    sub.subscribe("plant/+/status", QoS::AtLeastOnce).await;
    sub.client.disconnect().await.unwrap();
    drop(sub);
    let mut publisher = V5::connect(&b, "v5-pub", true, 0).await;
    let props = PublishProperties {
        content_type: Some("text/plain".into()),
        user_properties: vec![("site".into(), "7".into()), ("line".into(), "3".into())],
        ..Default::default()
    };
    publisher.client.publish_with_properties("plant/a/status", QoS::AtLeastOnce, false, "up", props).await.unwrap();
    next_matching(&mut publisher.events, |e| matches!(e, rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::PubAck(_)))).await;
    b.kill_and_restart();
    let mut back = V5::connect(&b, "v5-away", false, 3600).await;
    assert!(back.session_present);
    let p = back.next_publish().await;
    assert_eq!((&p.topic[..], &p.payload[..]), (&b"plant/a/status"[..], &b"up"[..]));
    let props = p.properties.expect("properties kept");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.user_properties, vec![("site".into(), "7".into()), ("line".into(), "3".into())]);
}

#[tokio::test]
async fn a_dotted_topic_round_trips_through_an_amqp_consumer_and_publisher() {
    let b = Broker::start();
    let conn = amqp(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("sparkplug".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    ch.queue_bind("sparkplug".into(), "amq.topic".into(), "spBv1%2E0.#".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut mqtt_sub = V4::connect(&b, "sp-sub", true).await;
    mqtt_sub.subscribe("spBv1.0/+/DDATA/#", rumqttc::QoS::AtLeastOnce).await;
    let mut mqtt_pub = V4::connect(&b, "sp-pub", true).await;
    mqtt_pub.publish_exactly_once("spBv1.0/group/NDATA/edge.1", b"metrics".to_vec()).await;
    let got = timeout(WAIT, async {
        loop {
            if let Some(m) = ch.basic_get("sparkplug".into(), BasicGetOptions { no_ack: true }).await.unwrap() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(got.delivery.routing_key.as_str(), "spBv1%2E0.group.NDATA.edge%2E1");
    assert_eq!(got.delivery.data, b"metrics");
    // Back from AMQP: the same escaping gives the MQTT subscriber the dotted topic, byte for byte.
    ch.basic_publish("amq.topic".into(), "spBv1%2E0.group.DDATA.edge%2E1".into(), BasicPublishOptions::default(), b"cmd", BasicProperties::default())
        .await
        .unwrap();
    let p = mqtt_sub.next_publish().await;
    assert_eq!((&p.topic[..], &p.payload[..]), ("spBv1.0/group/DDATA/edge.1", &b"cmd"[..]));
}

#[tokio::test]
async fn queue_prefix_reaches_the_amqp_queue_of_that_name_both_ways() {
    let b = Broker::start();
    let conn = amqp(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("orders".into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    let mut m = V4::connect(&b, "q-client", true).await;
    m.publish_exactly_once("$queue/orders", b"from mqtt".to_vec()).await;
    let got = ch.basic_get("orders".into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("the message is in the queue");
    assert_eq!(got.delivery.data, b"from mqtt");
    m.subscribe("$queue/orders", rumqttc::QoS::AtLeastOnce).await;
    ch.basic_publish("".into(), "orders".into(), BasicPublishOptions::default(), b"from amqp", BasicProperties::default())
        .await
        .unwrap();
    assert_eq!(&m.next_publish().await.payload[..], b"from amqp");
}
