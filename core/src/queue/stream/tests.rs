use super::*;
use crate::message::{Message, Table, Value};
use crate::test_support::{body, broker, consumer, declare, msg, next};

fn stream_args(extra: &[(&str, Value)]) -> Table {
    let mut t = Table::default();
    t.insert("x-queue-type", Value::str("stream"));
    for (k, v) in extra {
        t.insert(*k, v.clone());
    }
    t
}

fn to(queue: &str, body: &str) -> Message {
    Message { routing_key: queue.into(), ..msg(body, false) }
}

fn bodies(rx: &mut crate::EventReceiver) -> Vec<(u64, String)> {
    std::iter::from_fn(|| next(rx))
        .map(|d| (d.stream_offset.unwrap(), String::from_utf8(body(&d).to_vec()).unwrap()))
        .collect()
}

#[tokio::test]
async fn readers_start_where_asked_and_reading_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("s", true, stream_args(&[]))).unwrap();
    for i in 0..5 {
        v.publish("", to("s", &format!("m{i}")), false).unwrap();
    }
    let q = v.queue("s").unwrap();
    let starts = [
        (StreamStart::First, 0),
        (StreamStart::Offset(3), 3),
        (StreamStart::Last, 4),
        (StreamStart::Next, 5),
        (StreamStart::Offset(99), 5),
    ];
    for (start, first) in starts {
        let (spec, mut rx) = consumer(0);
        q.consume_stream(spec, start, None).unwrap();
        let got = bodies(&mut rx);
        assert_eq!(got.first().map(|g| g.0), (first < 5).then_some(first), "{start:?}");
        assert_eq!(got.len() as u64, 5 - first);
    }
    assert_eq!(q.counts().ready, 5, "consuming leaves the stream as it was");
    assert_eq!(q.get(false).map(|d| d.seq), None);
}

#[tokio::test]
async fn prefetch_bounds_a_reader_and_acks_move_it_on() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    v.declare_queue(declare("s", true, stream_args(&[]))).unwrap();
    let q = v.queue("s").unwrap();
    for i in 0..10 {
        v.publish("", to("s", &format!("m{i}")), false).unwrap();
    }
    let (spec, mut rx) = consumer(3);
    q.consume_stream(spec, StreamStart::First, None).unwrap();
    let first: Vec<_> = std::iter::from_fn(|| next(&mut rx)).collect();
    assert_eq!(first.len(), 3);
    q.ack(&[first[0].seq]);
    q.reject(&[first[1].seq], true);
    let more: Vec<_> = std::iter::from_fn(|| next(&mut rx)).collect();
    assert_eq!(more.iter().map(|d| d.stream_offset.unwrap()).collect::<Vec<_>>(), vec![3, 4]);
}

#[tokio::test]
async fn named_readers_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(dir.path());
        let v = b.vhost("/").unwrap();
        v.declare_queue(declare("s", true, stream_args(&[]))).unwrap();
        for i in 0..6 {
            let out = v.publish("", to("s", &format!("m{i}")), true).unwrap();
            out.durable.unwrap().await.unwrap().unwrap();
        }
        let q = v.queue("s").unwrap();
        let (spec, mut rx) = consumer(0);
        let id = q.consume_stream(spec, StreamStart::First, Some("app".into())).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| next(&mut rx)).collect();
        // Offsets 0..=3 acknowledged; 4 and 5 delivered but not acknowledged.
        q.ack(&got[..4].iter().map(|d| d.seq).collect::<Vec<_>>());
        q.cancel(id);
        b.shutdown().await;
    }
    let b = broker(dir.path());
    let q = b.vhost("/").unwrap().queue("s").unwrap();
    assert!(q.is_stream());
    assert_eq!(q.counts().ready, 6);
    let (spec, mut rx) = consumer(0);
    q.consume_stream(spec, StreamStart::First, Some("app".into())).unwrap();
    assert_eq!(bodies(&mut rx), vec![(4, "m4".to_string()), (5, "m5".to_string())]);
    let (spec, mut rx) = consumer(0);
    q.consume_stream(spec, StreamStart::First, Some("other".into())).unwrap();
    assert_eq!(bodies(&mut rx).len(), 6, "a new name starts where it asks");
    v_publish_continues_offsets(&b).await;
}

async fn v_publish_continues_offsets(b: &crate::broker::Broker) {
    let v = b.vhost("/").unwrap();
    let q = v.queue("s").unwrap();
    let (spec, mut rx) = consumer(0);
    q.consume_stream(spec, StreamStart::Next, None).unwrap();
    v.publish("", to("s", "after"), false).unwrap();
    assert_eq!(bodies(&mut rx), vec![(6, "after".to_string())]);
}

#[tokio::test]
async fn retention_drops_whole_segments_from_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    let args = stream_args(&[
        ("x-max-length-bytes", Value::I64(100)),
        ("x-stream-max-segment-size-bytes", Value::I64(30)),
    ]);
    v.declare_queue(declare("s", true, args)).unwrap();
    for i in 0..20 {
        v.publish("", to("s", &format!("{i:010}")), false).unwrap();
    }
    let q = v.queue("s").unwrap();
    let (first, end) = q.stream_bounds().unwrap();
    assert_eq!(end, 20);
    // Segments of three 10-byte messages; at most 100 bytes kept, the open segment never goes.
    assert_eq!(first % 3, 0);
    assert!((end - first) * 10 <= 100 + 30 && end - first >= 7, "kept {first}..{end}");
    let (spec, mut rx) = consumer(0);
    q.consume_stream(spec, StreamStart::Offset(0), None).unwrap();
    assert_eq!(bodies(&mut rx)[0].0, first, "a reader asking for a dropped offset starts at the head");
}

#[tokio::test]
async fn streams_must_be_durable_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let v = b.vhost("/").unwrap();
    assert!(v.declare_queue(declare("s", false, stream_args(&[]))).is_err());
    let mut d = declare("s", true, stream_args(&[]));
    d.exclusive = true;
    assert!(v.declare_queue(d).is_err());
}

/// A stream entry at `seq` as the store or a publisher hands it in.
fn entry(seq: u64) -> crate::queue::state::Entry {
    crate::queue::state::Entry {
        seq,
        msg: std::sync::Arc::new(msg("x", false)),
        stored: None,
        redelivered: false,
        returns: 0,
        expires_at: None,
    }
}

#[test]
fn out_of_order_appends_are_readable_only_without_gaps() {
    let mut recovered = StreamState::new();
    recovered.recover(entry(40), 1 << 20);
    recovered.recover(entry(41), 1 << 20);
    assert_eq!((recovered.first_offset(), recovered.end_offset()), (40, 42), "a log starts where retention left it");
    let mut st = StreamState::new();
    st.insert(entry(1), 1 << 20);
    assert_eq!(st.end_offset(), 0);
    st.insert(entry(0), 1 << 20);
    assert_eq!(st.end_offset(), 2);
    assert_eq!(st.len(), 2);
}

#[test]
fn a_hole_left_by_a_crash_is_skipped_on_recovery() {
    use crate::queue::consumer::Consumer;
    let mut st = StreamState::new();
    for seq in [3, 4, 6, 7] {
        st.recover(entry(seq), 1 << 20);
    }
    assert_eq!((st.first_offset(), st.end_offset()), (3, 8));
    let (spec, _rx) = consumer(0);
    st.add_reader(Consumer { id: 1, spec, unacked: 0 }, 3, None);
    let offsets: Vec<u64> = std::iter::from_fn(|| st.next_for(0).map(|(_, offset, _)| offset)).collect();
    assert_eq!(offsets, vec![3, 4, 6, 7], "offset 5 was never stored");
    st.insert(entry(8), 1 << 20);
    assert_eq!(st.end_offset(), 9, "new messages follow");
}
