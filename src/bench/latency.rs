//! Publish-to-deliver latency: publishers put their send time in the first 8 bytes of every
//! body, receivers turn it into a latency. One process runs both sides, so both read the same
//! clock (`epoch`, taken once per run).

use hdrhistogram::Histogram;
use std::time::Instant;
use tokio::task::JoinHandle;

/// Latencies in microseconds, from 1 µs to an hour (longer ones count as an hour), three
/// significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds and precision")
}

/// Body of `size` bytes (at least 8) starting with the send time: nanoseconds since `epoch`,
/// big-endian.
pub fn stamped_body(epoch: Instant, size: usize) -> Vec<u8> {
    let mut body = vec![0u8; size];
    let nanos = epoch.elapsed().as_nanos() as u64;
    body[..8].copy_from_slice(&nanos.to_be_bytes());
    body
}

/// Microseconds since the send time stamped on `body`, if it carries one.
pub fn micros_since_stamp(epoch: Instant, body: &[u8]) -> Option<u64> {
    let stamp = body.get(..8)?;
    let sent = u64::from_be_bytes(stamp.try_into().expect("8 bytes"));
    let now = epoch.elapsed().as_nanos() as u64;
    now.checked_sub(sent).map(|nanos| nanos / 1000)
}

/// Waits for every receiving task (`role`: what they are, for errors) and merges their latency
/// histograms.
pub async fn join_receivers(
    handles: Vec<JoinHandle<anyhow::Result<Histogram<u64>>>>,
    role: &str,
) -> (Histogram<u64>, Vec<anyhow::Error>) {
    let mut merged = new_histogram();
    let mut errors = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(Ok(histogram)) => merged.add(histogram).expect("histograms with the same bounds merge"),
            Ok(Err(e)) => errors.push(e.context(role.to_string())),
            Err(e) => errors.push(anyhow::anyhow!("{role} task: {e}")),
        }
    }
    (merged, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn body_starts_with_the_send_time() {
        let epoch = Instant::now() - Duration::from_secs(3);
        let body = stamped_body(epoch, 16);
        assert_eq!(body.len(), 16);
        let nanos = u64::from_be_bytes(body[..8].try_into().unwrap());
        assert!(nanos >= 3_000_000_000);
    }

    #[test]
    fn latency_is_read_back_from_the_stamp() {
        let epoch = Instant::now() - Duration::from_secs(1);
        let body = stamped_body(epoch, 8);
        assert!(micros_since_stamp(epoch, &body).is_some());
        assert_eq!(micros_since_stamp(epoch, &body[..7]), None, "too short for a stamp");
    }
}
