//! Socket helpers every protocol adapter uses.

mod read_ahead;

pub use read_ahead::{Duplex, ReadAhead};

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A client that accepts none of our bytes for this long is treated as gone: without a bound, a
/// client that stops reading would hold its connection (and its unacknowledged messages and
/// connection slot) for ever, since the connection's loop waits in the write.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection loop that batches waiting deliveries into one write stops adding to its output
/// buffer at this size and writes: what it holds for a slow reader stays bounded (a delivery
/// only leaves a queue's send window once it is in that buffer; see `ChannelCredit`).
pub const WRITE_BATCH_BYTES: usize = 128 * 1024;

/// `write_all`, failing with `TimedOut` when the peer stalls for `WRITE_STALL_TIMEOUT`.
pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_STALL_TIMEOUT, w.write_all(buf)).await.unwrap_or_else(|_| Err(stalled()))
}

fn stalled() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer stopped reading")
}

/// Reads and discards what the client still sends, for up to 2 s, before the socket is
/// dropped: closing a socket with unread input makes the kernel send a reset, which can destroy
/// the last frame written (an MQTT DISCONNECT reason code, a STOMP ERROR) while still in flight.
pub async fn drain_until_closed<R: AsyncRead + Unpin>(mut rd: R) {
    // On the heap: an array here would make every connection's future 4 KiB larger.
    let mut sink = vec![0u8; 4096];
    let drain = async { while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// Sleeps until `deadline`, or for ever without one (an optional timer in a `select!`).
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_times_the_write_out() {
        let (mut ours, _theirs_never_read) = tokio::io::duplex(16);
        let err = write_all(&mut ours, &[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let (mut ours, mut theirs) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut buf).await.map(|_| buf.len())
        });
        write_all(&mut ours, &[1u8; 64]).await.expect("a reading peer gets everything");
        drop(ours);
        assert_eq!(reader.await.unwrap().unwrap(), 64);
    }
}
