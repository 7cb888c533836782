use super::*;

fn collect_logs(store: &Store) -> Vec<LogEntry> {
    let mut out = Vec::new();
    store.scan_queue_logs(|e| out.push(e)).unwrap();
    out
}

#[tokio::test]
async fn durable_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let id = store.allocate_body_id();
        let receipt = store.submit_durable(vec![
            Op::PutBody { id, bytes: b"hello".to_vec() },
            Op::Enqueue { queue_id: 3, seq: 1, body_id: id, size: 5, holders: 2 },
            Op::Enqueue { queue_id: 4, seq: 1, body_id: id, size: 5, holders: 2 },
            Op::PutMeta { key: b"q1".to_vec(), value: b"def".to_vec() },
        ]);
        receipt.await.unwrap().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load_meta().unwrap(), vec![(b"q1".to_vec(), b"def".to_vec())]);
    let logs = collect_logs(&store);
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0], LogEntry { queue_id: 3, seq: 1, body_id: 1, size_and_holders: Some((5, 2)) });
    let mut bodies = Vec::new();
    store.scan_bodies(|id, b| bodies.push((id, b.to_vec()))).unwrap();
    assert_eq!(bodies, vec![(1, b"hello".to_vec())]);
    // Ids keep growing after a restart so a new body never overwrites an old one.
    assert_eq!(store.allocate_body_id(), 2);
}

#[tokio::test]
async fn dequeues_remove_entries_in_runs_and_singly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ops = (1..=10).map(|seq| Op::Enqueue { queue_id: 9, seq, body_id: seq, size: 1, holders: 1 }).collect();
    store.submit_durable(ops).await.unwrap().unwrap();
    let acks = [1, 2, 3, 4, 7].into_iter().map(|seq| Op::Dequeue { queue_id: 9, seq }).collect();
    store.submit_durable(acks).await.unwrap().unwrap();
    let left: Vec<u64> = collect_logs(&store).iter().map(|e| e.seq).collect();
    assert_eq!(left, vec![5, 6, 8, 9, 10]);
    store.submit_durable(vec![Op::DropQueueLog { queue_id: 9 }]).await.unwrap().unwrap();
    assert!(collect_logs(&store).is_empty());
}

#[tokio::test]
async fn enqueue_and_dequeue_in_one_batch_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.submit(vec![Op::Enqueue { queue_id: 1, seq: 5, body_id: 1, size: 1, holders: 1 }]);
    store.submit(vec![Op::Dequeue { queue_id: 1, seq: 5 }]);
    store.barrier().await.unwrap().unwrap();
    assert!(collect_logs(&store).is_empty());
}

#[tokio::test]
async fn closed_store_refuses_durable_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.close();
    let err = store.submit_durable(vec![]).await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Closed));
}

#[test]
fn log_ranges_read_back_after_their_writes_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ops: Vec<Op> = (1..=20).map(|seq| Op::Enqueue { queue_id: 2, seq, body_id: 100 + seq, size: 3, holders: 1 }).collect();
    ops.push(Op::Enqueue { queue_id: 3, seq: 1, body_id: 999, size: 3, holders: 1 });
    ops.push(Op::PutBody { id: 105, bytes: b"abc".to_vec() });
    store.submit(ops);
    // Consumed entries before the range leave tombstones the read must not trip over.
    store.submit((1..=4).map(|seq| Op::Dequeue { queue_id: 2, seq }).collect());
    store.wait_written(store.write_ticket());
    let seqs = |entries: Vec<LogEntry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.read_queue_log(2, (1, 20), 3, true).unwrap()), vec![5, 6, 7]);
    assert_eq!(seqs(store.read_queue_log(2, (18, u64::MAX), 10, false).unwrap()), vec![18, 19, 20], "stops at the queue's end");
    assert_eq!(seqs(store.read_queue_log(2, (9, 10), 10, false).unwrap()), vec![9, 10]);
    let first = store.read_queue_log(2, (5, 5), 1, false).unwrap()[0];
    assert_eq!((first.body_id, first.size_and_holders), (105, Some((3, 1))));
    assert_eq!(store.read_bodies(&[105, 106]).unwrap(), vec![Some(b"abc".to_vec()), None]);
    store.close();
    store.wait_written(u64::MAX - 1); // a closed store never makes a reader wait
}
