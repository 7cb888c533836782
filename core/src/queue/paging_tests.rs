use crate::broker::Broker;
use crate::message::{Message, Table, Value};
use crate::persist::DestinationKind;
use crate::queue::Queue;
use crate::test_support::{body, broker, consumer, declare, msg, next};
use crate::vhost::VHost;
use std::sync::Arc;

fn lazy(extra: &[(&str, Value)]) -> Table {
    let mut args = Table::default();
    args.insert("x-queue-mode", Value::str("lazy"));
    for (k, v) in extra {
        args.insert(*k, v.clone());
    }
    args
}

/// Publishes `bodies` to `queue`, persistent unless the body starts with "t", and waits until
/// the store has them all.
async fn publish(b: &Arc<Broker>, v: &VHost, queue: &str, bodies: impl IntoIterator<Item = String>) {
    for text in bodies {
        let persistent = !text.starts_with('t');
        v.publish("", Message { routing_key: queue.into(), ..msg(&text, persistent) }, false).unwrap();
    }
    b.store().barrier().await.unwrap().unwrap();
}

fn drain(q: &Arc<Queue>) -> Vec<String> {
    std::iter::from_fn(|| q.get(true)).map(|d| String::from_utf8(body(&d).to_vec()).unwrap()).collect()
}

fn in_memory(q: &Queue) -> usize {
    q.state.lock().ready[0].len()
}

fn numbered(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[tokio::test]
async fn a_lazy_queue_keeps_its_window_in_memory_and_delivers_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("q", true, lazy(&[]))).unwrap();
    let q = v.queue("q").unwrap();
    let mut sent = numbered(0..300);
    sent.insert(100, "transient-in-the-middle".into());
    publish(&b, &v, "q", sent.clone()).await;
    assert_eq!(q.counts().ready, 301);
    assert_eq!(q.counts().ready_bytes, sent.iter().map(String::len).sum::<usize>());
    assert!(in_memory(&q) <= 16, "{} ready messages in memory", in_memory(&q));
    let first = q.get(false).unwrap();
    q.reject(&[first.seq], true);
    let got = drain(&q);
    assert_eq!(got, sent, "paged messages come back in order, the transient one among them");
    assert_eq!(q.counts().ready, 0);
    assert_eq!(q.counts().ready_bytes, 0);
    assert!(q.state.lock().paged.is_none());
}

#[tokio::test]
async fn paged_messages_survive_a_restart_without_being_read_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(dir.path());
        let v = b.vhost("/").unwrap();
        v.declare_queue(declare("q", true, lazy(&[]))).unwrap();
        publish(&b, &v, "q", numbered(0..500)).await;
        b.shutdown().await;
    }
    let b = broker(dir.path());
    assert_eq!(b.recovery().messages, 500);
    let q = b.vhost("/").unwrap().queue("q").unwrap();
    assert_eq!(q.counts().ready, 500);
    assert_eq!(in_memory(&q), 16, "only the window is read at start-up");
    let d = q.get(true).unwrap();
    assert!(d.redelivered, "recovered messages may have been delivered before");
    let mut got = vec![String::from_utf8(body(&d).to_vec()).unwrap()];
    got.extend(drain(&q));
    assert_eq!(got, numbered(0..500));
    // Messages published after the restart are not flagged.
    let v = b.vhost("/").unwrap();
    publish(&b, &v, "q", numbered(0..40)).await;
    assert!(std::iter::from_fn(|| q.get(true)).all(|d| !d.redelivered));
}

#[tokio::test]
async fn purging_and_deleting_a_paged_queue_removes_its_bodies_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    for name in ["purged", "deleted"] {
        v.declare_queue(declare(name, true, lazy(&[]))).unwrap();
        publish(&b, &v, name, numbered(0..200)).await;
    }
    assert_eq!(v.queue("purged").unwrap().purge(), 200);
    v.delete_queue("deleted", false, false, 1).unwrap();
    b.store().barrier().await.unwrap().unwrap();
    let mut bodies = 0;
    b.store().scan_bodies(|_, _| bodies += 1).unwrap();
    assert_eq!(bodies, 0);
    let mut logged = 0;
    b.store().scan_queue_logs(|_| logged += 1).unwrap();
    assert_eq!(logged, 0);
}

#[tokio::test]
async fn a_body_shared_by_two_queues_stays_in_memory_and_reaches_both() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(dir.path());
        let v = b.vhost("/").unwrap();
        for name in ["a", "b"] {
            v.declare_queue(declare(name, true, lazy(&[]))).unwrap();
            v.bind("amq.fanout", DestinationKind::Queue, name, "", Table::default(), 1).unwrap();
        }
        for text in numbered(0..100) {
            v.publish("amq.fanout", msg(&text, true), false).unwrap();
        }
        b.store().barrier().await.unwrap().unwrap();
        let a = v.queue("a").unwrap();
        assert_eq!(a.state.lock().paged.as_ref().unwrap().on_disk, 0, "shared bodies are pinned");
        assert_eq!(drain(&a), numbered(0..100));
        b.shutdown().await;
    }
    let b = broker(dir.path());
    let q = b.vhost("/").unwrap().queue("b").unwrap();
    assert!(in_memory(&q) <= 16);
    assert_eq!(drain(&q), numbered(0..100), "the other queue's acks left the shared bodies alone");
}

#[tokio::test]
async fn a_length_limit_drops_from_the_head_of_a_paged_queue() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("q", true, lazy(&[("x-max-length", Value::I32(50))]))).unwrap();
    publish(&b, &v, "q", numbered(0..120)).await;
    let q = v.queue("q").unwrap();
    assert_eq!(q.counts().ready, 50);
    assert_eq!(drain(&q), numbered(70..120));
}

#[test]
fn an_unknown_queue_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let mut args = Table::default();
    args.insert("x-queue-mode", Value::str("sleepy"));
    assert!(b.vhost("/").unwrap().declare_queue(declare("q", true, args)).is_err());
}

fn bodies_of(deliveries: &[crate::queue::Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| String::from_utf8(body(d).to_vec()).unwrap()).collect()
}

#[tokio::test]
async fn requeued_messages_never_bring_unacknowledged_ones_into_a_paged_range() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("q", true, lazy(&[]))).unwrap();
    publish(&b, &v, "q", numbered(0..100)).await;
    let q = v.queue("q").unwrap();
    let (spec_a, mut rx_a) = consumer(50);
    let (spec_b, mut rx_b) = consumer(50);
    let a = q.consume(spec_a).unwrap();
    let b_id = q.consume(spec_b).unwrap();
    let got_a: Vec<_> = std::iter::from_fn(|| next(&mut rx_a)).collect();
    let got_b: Vec<_> = std::iter::from_fn(|| next(&mut rx_b)).collect();
    assert_eq!((got_a.len(), got_b.len()), (50, 50));
    // A goes away: its 50 come back, ahead of a new message; B's stay unacknowledged.
    q.cancel(a);
    q.cancel(b_id);
    q.reject(&got_a.iter().map(|d| d.seq).collect::<Vec<_>>(), true);
    publish(&b, &v, "q", ["m100".to_string()]).await;
    q.ack(&[got_b[0].seq]);
    let mut expected = bodies_of(&got_a);
    expected.push("m100".into());
    assert_eq!(drain(&q), expected, "nothing of B's, nothing twice");
    assert_eq!((q.counts().ready, q.counts().unacked), (0, 49));
}

#[tokio::test]
async fn accepts_that_overtake_each_other_wait_for_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("q", true, lazy(&[]))).unwrap();
    publish(&b, &v, "q", numbered(0..40)).await;
    let q = v.queue("q").unwrap();
    // Two publishers reserve 41 and 42; the second is accepted first, then the queue reads
    // its range back, then the first is accepted. (Messages of two publishers have no order
    // between them; each publisher's own stay in order.)
    let m = |text: &str| Arc::new(msg(text, false));
    let (first, second) = (q.reserve(&m("x")).unwrap(), q.reserve(&m("y")).unwrap());
    q.accept(second, m("second"), None);
    let mut expected = numbered(0..40);
    expected.push("second".into());
    assert_eq!(drain(&q), expected, "the range ends before the seq still being published");
    q.accept(first, m("first"), None);
    assert_eq!(drain(&q), vec!["first".to_string()], "the late one is not lost, nothing twice");
    assert_eq!(q.counts().ready, 0);
}

#[tokio::test]
async fn an_expired_head_gives_way_to_the_paged_messages_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("short", true, lazy(&[]))).unwrap();
    let q = v.queue("short").unwrap();
    for text in numbered(0..300) {
        let expiring = crate::message::Properties { persistent: true, expiration_ms: Some(30), ..Default::default() };
        let m = Message::new("", "short", expiring, bytes::Bytes::from(text));
        v.publish("", m, false).unwrap();
    }
    publish(&b, &v, "short", ["fresh".to_string()]).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(q.get(true).map(|d| body(&d).to_vec()), Some(b"fresh".to_vec()), "300 expired messages skipped");

    // With a queue TTL the timer alone empties a backlog many windows long.
    v.declare_queue(declare("ttl", true, lazy(&[("x-message-ttl", Value::I32(30))]))).unwrap();
    publish(&b, &v, "ttl", numbered(0..300)).await;
    let q = v.queue("ttl").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(q.counts().ready, 0);
}

#[tokio::test]
async fn messages_acknowledged_before_a_restart_stay_gone_from_the_recovered_range() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(dir.path());
        let v = b.vhost("/").unwrap();
        v.declare_queue(declare("q", true, lazy(&[]))).unwrap();
        publish(&b, &v, "q", numbered(0..200)).await;
        b.store().flush().unwrap(); // the messages' log entries in an SST file...
        let q = v.queue("q").unwrap();
        let taken: Vec<_> = (0..100).map(|_| q.get(false).unwrap()).collect();
        // ...and, newer, a consecutive run of acks inside what becomes the paged range after
        // the restart: the store deletes it with one range deletion.
        q.ack(&taken[60..80].iter().map(|d| d.seq).collect::<Vec<_>>());
        b.shutdown().await;
    }
    let b = broker(dir.path());
    let q = b.vhost("/").unwrap().queue("q").unwrap();
    let mut expected = numbered(0..60);
    expected.extend(numbered(80..200));
    assert_eq!(drain(&q), expected);
}
