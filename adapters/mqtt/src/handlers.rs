//! What each packet and each core delivery does to a connection (`conn::Conn`).

use crate::client::{Client, Feed, Outgoing, SESSION_COOKIE};
use crate::conn::{poll_first_stored, protocol_error, Close, Conn, READ_BATCH};
use crate::connect::{consume, consume_from, End};
use junction_core::queue::StreamStart;
use crate::mapping;
use crate::packet::{reason, Inbound, Level, Outbound, Publish, SubscriptionOptions, Will};
use crate::session::{self, Subscription};
use crate::Mqtt;
use futures::{FutureExt, StreamExt};
use junction_core::persist::DestinationKind;
use junction_core::topic::{pattern_matches, MQTT};
use junction_core::topic_map::mqtt_filter_to_amqp;
use junction_core::{ConsumerEvent, Delivery, QueueDeclare, Table};
use junction_core::retained::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Handles the packet just read and up to `READ_BATCH` more that are already available,
    /// then the acknowledgements that are ready: a burst of publishes is answered with one
    /// write instead of one per PUBACK.
    pub(crate) async fn on_read_batch(&mut self, first: Option<Result<Inbound, crate::codec::DecodeError>>) -> Option<Close> {
        let mut close = self.on_read(first).await;
        for _ in 0..READ_BATCH {
            if close.is_some() {
                break;
            }
            // Every packet spends tokio's budget (socket reads alone hardly do, one read holds
            // ~100 small packets), so a flooding client yields to the other connections on its
            // worker thread, e.g. the subscriber its messages go to.
            tokio::task::consume_budget().await;
            let next = match self.pop_read_ahead() {
                Some(packet) => Some(packet),
                None => match self.reader.next().now_or_never() {
                    Some(next) => next,
                    None => break,
                },
            };
            close = self.on_read(next).await;
        }
        self.send_ready_acks();
        close
    }

    pub(crate) async fn on_read(&mut self, packet: Option<Result<Inbound, crate::codec::DecodeError>>) -> Option<Close> {
        match packet {
            Some(Ok(p)) => self.on_packet(p).await.err(),
            Some(Err(e)) => {
                tracing::debug!(client = %self.client.id, error = %e, "malformed MQTT packet");
                Some(protocol_error(decode_reason(&e)))
            }
            None => Some(Close { end: End::Abnormal, reason: None, text: None }),
        }
    }

    /// PUBACK / PUBREC for every publish whose storage already finished (in order).
    pub(crate) fn send_ready_acks(&mut self) {
        loop {
            let Some(activity) = &mut self.client.activity else { break };
            let acks = &mut activity.pending_acks;
            let Some((packet_id, qos, code)) = std::future::poll_fn(|cx| poll_first_stored(acks, cx)).now_or_never() else { break };
            self.on_stored(packet_id, qos, code);
        }
    }

    pub(crate) fn send(&mut self, packet: Outbound) {
        let framing = self.reader.framing_mut();
        self.client.send(framing, packet);
    }

    async fn on_packet(&mut self, packet: Inbound) -> Result<(), Close> {
        match packet {
            Inbound::Publish(p) => self.on_publish(*p),
            Inbound::PubAck(id) => {
                self.settle(id);
                Ok(())
            }
            Inbound::PubRec(id) => self.on_pubrec(id),
            Inbound::PubRel(packet_id) => {
                if self.client.session.incoming_qos2.remove(&packet_id) {
                    let _ = self.client.save_session();
                }
                self.send(Outbound::PubComp { packet_id });
                Ok(())
            }
            Inbound::PubComp(id) => {
                self.client.active().outstanding.remove(&id);
                if self.client.session.awaiting_pubcomp.remove(&id) {
                    let _ = self.client.save_session();
                }
                Ok(())
            }
            Inbound::Subscribe { packet_id, subscription_id, filters } => {
                self.on_subscribe(packet_id, subscription_id, filters);
                Ok(())
            }
            Inbound::Unsubscribe { packet_id, filters } => {
                let codes = filters.iter().map(|f| self.unsubscribe(f)).collect();
                self.send(Outbound::UnsubAck { packet_id, codes });
                Ok(())
            }
            Inbound::PingReq => {
                self.send(Outbound::PingResp);
                Ok(())
            }
            Inbound::Disconnect { reason: code, session_expiry } => {
                if code != 0x04 {
                    self.client.will = None;
                }
                if let Some(expiry) = session_expiry {
                    if !self.client.persistent && expiry > 0 {
                        return Err(protocol_error(reason::PROTOCOL_ERROR));
                    }
                    self.client.session.expiry_secs = expiry;
                    self.client.persistent = expiry > 0;
                }
                Err(Close { end: if code == 0x04 { End::Abnormal } else { End::Clean }, reason: None, text: None })
            }
            Inbound::Connect(_) | Inbound::Auth => Err(protocol_error(reason::PROTOCOL_ERROR)),
        }
    }

    fn on_publish(&mut self, mut p: Publish) -> Result<(), Close> {
        self.resolve_alias(&mut p)?;
        if p.topic.is_empty() || p.topic.contains(['+', '#']) {
            return Err(protocol_error(reason::TOPIC_NAME_INVALID));
        }
        let packet_id = p.packet_id.unwrap_or(0);
        if p.qos == 2 && self.client.session.incoming_qos2.contains(&packet_id) {
            // A resent QoS 2 PUBLISH whose first copy was already routed.
            self.send(Outbound::PubRec { packet_id, reason: reason::SUCCESS });
            return Ok(());
        }
        let inbound_qos1 = self.client.activity.as_ref().map_or(0, |a| a.inbound_qos1);
        let in_flight = inbound_qos1 + self.client.session.incoming_qos2.len();
        let window = usize::from(self.client.mqtt.config.max_inflight);
        if p.qos > 0 && self.client.level == Level::V5 && in_flight >= window {
            // More unacknowledged QoS 1/2 publishes than the Receive Maximum in our CONNACK.
            return Err(protocol_error(reason::RECEIVE_MAXIMUM_EXCEEDED));
        }
        self.client.has_published = true;
        self.client.mqtt.stats.received(p.payload.len());
        self.client.traffic().map(|t| t.message_in());
        let qos = p.qos;
        if qos == 1 {
            self.client.active().inbound_qos1 += 1;
        }
        let refused = crate::authz::may_publish(&self.client.access, &p.topic)
            .map_err(|e| e.message)
            .and_then(|()| junction_core::message::check_user_id(mapping::foreign_user_id(&p, self.client.access.user()), self.client.access.user()));
        if let Err(why) = refused {
            tracing::debug!(client = %self.client.id, reason = %why, "MQTT publish refused");
            // MQTT 5 says why; 3.1.x has no way to, so the message is dropped silently (as
            // Mosquitto does) and acknowledged as usual.
            let code = if self.client.level == Level::V5 { reason::NOT_AUTHORIZED } else { reason::SUCCESS };
            if qos > 0 {
                self.client.active().pending_acks.push_back(futures::future::ready((packet_id, qos, code)).boxed());
            }
            return Ok(());
        }
        let receipt = publish(&self.client.vhost, &p, &self.client.id);
        if qos == 0 {
            return Ok(());
        }
        let mut receipts: Vec<junction_core::DurableReceipt> = receipt.into_iter().collect();
        if qos == 2 {
            self.client.session.incoming_qos2.insert(packet_id);
            receipts.extend(self.client.save_session());
        }
        self.client.active().pending_acks.push_back(
            async move {
                let ok = futures::future::join_all(receipts).await.into_iter().all(|r| matches!(r, Ok(Ok(()))));
                (packet_id, qos, if ok { reason::SUCCESS } else { reason::UNSPECIFIED })
            }
            .boxed(),
        );
        Ok(())
    }

    /// MQTT 5 topic aliases: an alias with a topic sets it, an alias alone uses it.
    fn resolve_alias(&mut self, p: &mut Publish) -> Result<(), Close> {
        let Some(alias) = p.props.topic_alias.take() else { return Ok(()) };
        if alias == 0 || alias > self.client.topic_alias_max {
            return Err(protocol_error(reason::TOPIC_ALIAS_INVALID));
        }
        if p.topic.is_empty() {
            p.topic = self.client.active().aliases.get(&alias).cloned().ok_or_else(|| protocol_error(reason::PROTOCOL_ERROR))?;
        } else {
            self.client.active().aliases.insert(alias, p.topic.clone());
        }
        Ok(())
    }

    /// A publish's store write finished: acknowledge it to the client.
    pub(crate) fn on_stored(&mut self, packet_id: u16, qos: u8, code: u8) {
        match qos {
            1 => {
                self.client.active().inbound_qos1 -= 1;
                self.send(Outbound::PubAck { packet_id, reason: code })
            }
            _ => self.send(Outbound::PubRec { packet_id, reason: code }),
        }
    }

    fn settle(&mut self, packet_id: u16) {
        if let Some(Outgoing::Sent { source: Some((queue, seq)) }) = self.client.active().outstanding.remove(&packet_id) {
            queue.ack(&[seq]);
        }
    }

    fn on_pubrec(&mut self, packet_id: u16) -> Result<(), Close> {
        self.settle(packet_id);
        self.client.active().outstanding.insert(packet_id, Outgoing::Released);
        self.client.session.awaiting_pubcomp.insert(packet_id);
        let _ = self.client.save_session();
        self.send(Outbound::PubRel { packet_id });
        Ok(())
    }

    fn on_subscribe(&mut self, packet_id: u16, subscription_id: Option<u32>, filters: Vec<(String, SubscriptionOptions)>) {
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained = Vec::new();
        for (filter, options) in filters {
            match self.subscribe(&filter, &options, subscription_id) {
                Ok(is_new) => {
                    codes.push(options.qos.min(2));
                    let wanted = match options.retain_handling {
                        0 => true,
                        1 => is_new,
                        _ => false,
                    };
                    if wanted && direct_queue(&filter).is_none() {
                        retained.push((filter, options.qos.min(2)));
                    }
                }
                Err(code) => codes.push(if self.client.level == Level::V5 { code } else { 0x80 }),
            }
        }
        let _ = self.client.save_session();
        self.send(Outbound::SubAck { packet_id, codes });
        for (filter, qos) in retained {
            self.send_retained(&filter, qos, subscription_id);
        }
    }

    /// Adds or replaces a subscription; true when it is new.
    fn subscribe(&mut self, filter: &str, options: &SubscriptionOptions, id: Option<u32>) -> Result<bool, u8> {
        if !valid_filter(filter) {
            return Err(reason::TOPIC_FILTER_INVALID);
        }
        let queue_name = session::queue_name(&self.client.id);
        if let Err(e) = crate::authz::may_subscribe(&self.client.access, &self.client.vhost, filter, &queue_name) {
            tracing::debug!(client = %self.client.id, reason = %e.message, "MQTT subscribe refused");
            return Err(reason::NOT_AUTHORIZED);
        }
        if let Some((name, _)) = mapping::stream_filter(filter) {
            if !self.client.vhost.queue(name).is_some_and(|q| q.is_stream()) {
                return Err(reason::TOPIC_FILTER_INVALID);
            }
        }
        let subscription = Subscription::new(options, id);
        let is_new = !self.client.session.subscriptions.contains_key(filter);
        if !is_new {
            self.client.session.subscriptions.insert(filter.to_string(), subscription);
            return Ok(false);
        }
        if direct_queue(filter).is_some() {
            self.client.session.subscriptions.insert(filter.to_string(), subscription);
            attach_direct(&mut self.client, filter);
            return Ok(true);
        }
        // Recorded only once bound: a failed SUBSCRIBE retried must bind again.
        let queue = self.client.session_queue().map_err(|e| {
            tracing::warn!(client = %self.client.id, error = %e, "cannot open MQTT session queue");
            reason::UNSPECIFIED
        })?;
        let pattern = mqtt_filter_to_amqp(filter);
        self.client
            .vhost
            .bind(mapping::TOPIC_EXCHANGE, DestinationKind::Queue, queue.name(), &pattern, Table::default(), 0)
            .map_err(|_| reason::UNSPECIFIED)?;
        self.client.session.subscriptions.insert(filter.to_string(), subscription);
        Ok(true)
    }

    fn unsubscribe(&mut self, filter: &str) -> u8 {
        if self.client.session.subscriptions.remove(filter).is_none() {
            return reason::NO_SUBSCRIPTION_EXISTED;
        }
        let _ = self.client.save_session();
        if direct_queue(filter).is_some() {
            let cookie = self.client.active().consumers.iter().find_map(|(c, (_, _, f))| match f {
                Feed::Direct(f) if f == filter => Some(*c),
                _ => None,
            });
            if let Some((queue, consumer, _)) = cookie.and_then(|c| self.client.active().consumers.remove(&c)) {
                queue.cancel(consumer);
            }
            return reason::SUCCESS;
        }
        let Some(queue) = self.client.queue.as_ref().map(|q| q.name().to_string()) else { return reason::SUCCESS };
        let pattern = mqtt_filter_to_amqp(filter);
        let _ = self.client.vhost.unbind(mapping::TOPIC_EXCHANGE, DestinationKind::Queue, &queue, &pattern, &Table::default(), 0);
        reason::SUCCESS
    }

    fn send_retained(&mut self, filter: &str, max_qos: u8, subscription_id: Option<u32>) {
        for (topic, r) in self.client.vhost.retained().matching(filter) {
            let qos = mapping::published_qos(&r.message).min(max_qos);
            let mut p = mapping::to_mqtt(&r.message, topic, qos);
            p.retain = true;
            p.props.subscription_ids = subscription_id.into_iter().collect();
            self.emit(p, None, None);
        }
    }

    pub(crate) fn on_event(&mut self, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Deliver(d) => {
                // Events come only from consumers, which made `deliveries`.
                let window_reopened = self.client.active().deliveries().credit.written(d.message.body.len());
                if window_reopened {
                    for (queue, _, _) in self.client.active().consumers.values() {
                        queue.kick();
                    }
                }
                self.deliver(*d);
            }
            ConsumerEvent::Cancelled { cookie, .. } => {
                self.client.active().consumers.remove(&cookie);
            }
        }
    }

    /// A core delivery becomes a PUBLISH at the QoS its matching subscriptions allow.
    fn deliver(&mut self, d: Delivery) {
        let message = d.as_delivered(true);
        let topic = mapping::topic_of(&message);
        let expired = d.message.remaining_life_ms(now_ms()) == Some(0);
        let wanted = if expired { None } else { self.matching(d.cookie, &topic, &d.message) };
        let Some(wanted) = wanted else {
            d.queue.ack(&[d.seq]);
            return;
        };
        let qos = mapping::published_qos(&d.message).min(wanted.qos);
        let mut p = mapping::to_mqtt(&message, topic, qos);
        p.dup = d.redelivered && qos > 0;
        p.retain = wanted.retain_as_published && mapping::published_retained(&d.message);
        let ids = wanted.ids;
        p.props.subscription_ids = ids;
        let too_large = self.client.max_packet_size.is_some_and(|max| (p.payload.len() + p.topic.len() + 16) as u64 > u64::from(max.get()));
        if too_large || qos == 0 {
            // Too large for this client (dropped, as MQTT 5 says) or nothing to wait for.
            d.queue.ack(&[d.seq]);
            if too_large {
                return;
            }
        }
        let source = (qos > 0).then(|| (d.queue.clone(), d.seq));
        self.emit(p, source, Some(d.message.arrived_at_ms));
    }

    /// What the subscriptions matching a message from feed `cookie` ask for, or None when
    /// none wants it (unsubscribed meanwhile, `$` topics under wildcards, No Local).
    fn matching(&self, cookie: u64, topic: &str, msg: &junction_core::Message) -> Option<Wanted> {
        let subs = &self.client.session.subscriptions;
        if cookie != SESSION_COOKIE {
            let consumers = &self.client.activity.as_ref()?.consumers;
            let Some((_, _, Feed::Direct(filter))) = consumers.get(&cookie) else { return None };
            let s = subs.get(filter)?;
            let ids = s.subscription_id.into_iter().collect();
            return Some(Wanted { qos: s.qos, retain_as_published: s.retain_as_published, ids });
        }
        let own = mapping::publisher_of(msg) == Some(&*self.client.id);
        let mut wanted: Option<Wanted> = None;
        for (filter, s) in subs.iter().filter(|(f, _)| direct_queue(f).is_none()) {
            if (own && s.no_local) || !pattern_matches(MQTT, filter, topic) {
                continue;
            }
            let w = wanted.get_or_insert(Wanted { qos: 0, retain_as_published: false, ids: Vec::new() });
            w.qos = w.qos.max(s.qos);
            w.retain_as_published |= s.retain_as_published;
            w.ids.extend(s.subscription_id);
        }
        wanted
    }

    /// Sends a PUBLISH, assigning a packet id for QoS 1/2; `arrived_at_ms` is set for deliveries
    /// from a queue (for the latency metric).
    fn emit(&mut self, mut p: Publish, source: Option<(Arc<junction_core::Queue>, u64)>, arrived_at_ms: Option<u64>) {
        self.client.mqtt.stats.sent(p.payload.len());
        self.client.traffic().map(|t| t.message_out(arrived_at_ms));
        if p.qos > 0 {
            let id = self.client.allocate_packet_id();
            p.packet_id = Some(id);
            self.client.active().outstanding.insert(id, Outgoing::Sent { source });
        }
        let max = self.client.outbound_alias_max;
        self.client.active().outbound_aliases.apply(max, &mut p);
        self.send(Outbound::Publish(Box::new(p)));
    }
}

/// What the subscriptions matching one message ask for.
struct Wanted {
    /// The highest QoS among them.
    qos: u8,
    retain_as_published: bool,
    ids: Vec<u32>,
}

fn decode_reason(e: &crate::codec::DecodeError) -> u8 {
    use crate::codec::DecodeError as D;
    match e {
        D::MaxSizeExceeded { .. } => reason::PACKET_TOO_LARGE,
        D::InvalidTopicName => reason::TOPIC_NAME_INVALID,
        D::InvalidTopicFilter => reason::TOPIC_FILTER_INVALID,
        D::UnsupportedPacketType | D::PacketIdRequired => reason::PROTOCOL_ERROR,
        _ => reason::MALFORMED_PACKET,
    }
}

/// Routes an MQTT publish (and its retained copy) through the core; the receipt resolves
/// when it is durable.
pub fn publish(vhost: &junction_core::VHost, p: &Publish, client_id: &str) -> Option<junction_core::DurableReceipt> {
    let msg = mapping::to_core(p, client_id);
    let mut retained = None;
    if p.retain && !p.topic.starts_with(mapping::QUEUE_PREFIX) {
        let stored = (!p.payload.is_empty()).then(|| msg.clone());
        retained = Some(vhost.set_retained(&p.topic, stored));
    }
    let (exchange, _) = mapping::destination(&p.topic);
    let routed = vhost.publish(exchange, msg, p.qos > 0).ok().and_then(|o| o.durable);
    match (routed, retained) {
        (Some(a), Some(b)) => Some(join_receipts(a, b)),
        (a, b) => a.or(b),
    }
}

fn join_receipts(a: junction_core::DurableReceipt, b: junction_core::DurableReceipt) -> junction_core::DurableReceipt {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (ra, rb) = futures::join!(a, b);
        let ok = matches!(ra, Ok(Ok(()))) && matches!(rb, Ok(Ok(())));
        let _ = tx.send(if ok { Ok(()) } else { Err(junction_core::StoreError::Closed) });
    });
    rx
}

/// The core queue a `$share/{group}/{filter}` or `$queue/{name}` subscription consumes.
pub fn direct_queue(filter: &str) -> Option<(String, Option<String>)> {
    if let Some((name, _)) = mapping::stream_filter(filter) {
        return Some((name.to_string(), None));
    }
    if let Some(name) = filter.strip_prefix(mapping::QUEUE_PREFIX) {
        return Some((name.to_string(), None));
    }
    let rest = filter.strip_prefix("$share/")?;
    let (group, inner) = rest.split_once('/')?;
    Some((session::shared_queue_name(group, inner), Some(inner.to_string())))
}

/// Declares (if needed), binds and consumes the queue behind a direct subscription.
pub fn attach_direct(client: &mut Client, filter: &str) {
    if let Some((name, Ok(start))) = mapping::stream_filter(filter) {
        return attach_stream(client, filter, name, start);
    }
    let Some((name, inner)) = direct_queue(filter) else { return };
    let declare = QueueDeclare { name: name.clone(), durable: true, ..Default::default() };
    if let Err(e) = client.vhost.declare_queue(declare) {
        tracing::warn!(client = %client.id, error = %e, "cannot declare {name}");
        return;
    }
    if let Some(inner) = inner {
        let pattern = mqtt_filter_to_amqp(&inner);
        let _ = client.vhost.bind(mapping::TOPIC_EXCHANGE, DestinationKind::Queue, &name, &pattern, Table::default(), 0);
    }
    let Ok(queue) = client.vhost.queue_for(&name, 0) else { return };
    let cookie = client.active().next_cookie;
    client.active().next_cookie += 1;
    consume(client, queue, cookie, Feed::Direct(filter.to_string()));
}

/// Reads the stream behind a `$stream/...` subscription. A persistent session's position is
/// kept by the broker under a name of its own, so the session resumes where it stopped.
fn attach_stream(client: &mut Client, filter: &str, name: &str, start: StreamStart) {
    let Some(queue) = client.vhost.queue(name).filter(|q| q.is_stream()) else {
        tracing::warn!(client = %client.id, "no stream '{name}' for subscription {filter}");
        return;
    };
    let reader = client.persistent.then(|| format!("mqtt/{}/{filter}", client.id));
    let cookie = client.active().next_cookie;
    client.active().next_cookie += 1;
    consume_from(client, queue, cookie, Feed::Direct(filter.to_string()), start, reader);
}

/// Topic filter syntax: `#` only as the last level, `+` and `#` only as whole levels.
pub fn valid_filter(filter: &str) -> bool {
    if let Some((name, start)) = mapping::stream_filter(filter) {
        return !name.is_empty() && start.is_ok();
    }
    let filter = match direct_queue(filter) {
        Some((_, Some(inner))) => return !inner.is_empty() && valid_filter(&inner),
        Some((name, None)) => return !name.is_empty(),
        None if filter.starts_with("$share/") => return false,
        None => filter,
    };
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Publishes a will now, or after its delay unless the client has come back by then.
pub fn schedule_will(mqtt: &Arc<Mqtt>, client: &Client, will: Will) {
    let p = Publish {
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        dup: false,
        packet_id: None,
        props: will.props,
    };
    let (vhost, id) = (client.vhost.clone(), client.id.clone());
    // The will waits for the shorter of its delay and the session's expiry.
    let session_left = if client.persistent { client.session.expiry_secs } else { 0 };
    let delay_secs = will.delay_secs.min(session_left);
    if delay_secs == 0 {
        publish(&vhost, &p, &id);
        return;
    }
    let mqtt = mqtt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(u64::from(delay_secs))).await;
        // A reconnect with the same client id cancels a delayed will.
        if !mqtt.registry.is_connected(vhost.name(), &id) {
            publish(&vhost, &p, &id);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_syntax() {
        for ok in ["a", "a/b", "+", "#", "a/+/c", "a/#", "/", "$share/g/a/#", "$queue/jobs", "+/+"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "$share/g", "$share/g/", "$queue/", "#/a"] {
            assert!(!valid_filter(bad), "{bad}");
        }
        assert_eq!(direct_queue("$share/g/a/+"), Some(("mqtt-share-g-a/+".into(), Some("a/+".into()))));
    }
}
