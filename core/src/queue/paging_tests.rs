use crate::broker::Broker;
use crate::message::{Message, Table, Value};
use crate::persist::DestinationKind;
use crate::queue::Queue;
use crate::test_support::{body, broker, declare, msg};
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
