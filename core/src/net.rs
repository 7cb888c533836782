//! Socket helpers every protocol adapter uses.

use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A client that accepts none of our bytes for this long is treated as gone: without a bound, a
/// client that stops reading would hold its connection (and its unacknowledged messages and
/// connection slot) for ever, since the connection's loop waits in the write.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `write_all`, failing with `TimedOut` when the peer stalls for `WRITE_STALL_TIMEOUT`.
pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_STALL_TIMEOUT, w.write_all(buf)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer stopped reading")),
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
