//! Socket helpers every protocol adapter uses.

use futures::{Stream, StreamExt};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
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

/// At most this many frames are read ahead while a write waits (see `write_all_reading_ahead`):
/// enough to take a client's last acknowledgements and notice its hang-up, while a client that
/// keeps sending without reading meets TCP back-pressure as before.
pub const READ_AHEAD_LIMIT: usize = 16;

/// See `take_input_left_by_a_broken_connection`.
const BROKEN_CONNECTION_READ_GRACE: Duration = Duration::from_millis(500);

/// `write_all` (with the stall timeout) to a connection that keeps reading the client's input
/// while the write waits, so that a client that has hung up ends the write at once
/// (`UnexpectedEof`): a client that shut its socket down without closing it accepts none of our
/// bytes and would otherwise hold the connection, and the deliveries it was never sent, until
/// `WRITE_STALL_TIMEOUT`. What is read goes to `ahead`, for the connection to handle before it
/// reads anything newer (also when the write failed: what the client sent before it went, its
/// last acknowledgements or a DISCONNECT, still counts); reading stops after an error item (the
/// stream may end after one) and at `READ_AHEAD_LIMIT` items. `io` writes to the connection and
/// yields its input: a protocol's reader over the whole stream, or a `Duplex` of two halves.
pub async fn write_all_reading_ahead<D, T, E>(io: &mut D, buf: &[u8], ahead: &mut VecDeque<Result<T, E>>) -> std::io::Result<()>
where
    D: AsyncWrite + Stream<Item = Result<T, E>> + Unpin,
{
    let mut written = 0;
    let write = std::future::poll_fn(|cx| poll_write_reading_ahead(io, buf, &mut written, ahead, cx));
    let result = tokio::time::timeout(WRITE_STALL_TIMEOUT, write).await.unwrap_or_else(|_| Err(stalled()));
    if result.as_ref().is_err_and(|e| e.kind() != std::io::ErrorKind::TimedOut) {
        take_input_left_by_a_broken_connection(io, ahead).await;
    }
    result
}

/// Writes what the socket takes; while it takes no more, reads what the client sent.
fn poll_write_reading_ahead<D, T, E>(
    io: &mut D,
    buf: &[u8],
    written: &mut usize,
    ahead: &mut VecDeque<Result<T, E>>,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>>
where
    D: AsyncWrite + Stream<Item = Result<T, E>> + Unpin,
{
    loop {
        while *written < buf.len() {
            match Pin::new(&mut *io).poll_write(cx, &buf[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        if *written == buf.len() {
            return Poll::Ready(Ok(()));
        }
        if !may_read_ahead(ahead) {
            return Poll::Pending;
        }
        match Pin::new(&mut *io).poll_next(cx) {
            Poll::Ready(Some(item)) => ahead.push_back(item),
            Poll::Ready(None) => {
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the client hung up")))
            }
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// A connection's writer and its reader as one `io` for `write_all_reading_ahead`.
pub struct Duplex<'a, W, R> {
    pub writer: &'a mut W,
    pub reader: &'a mut R,
}

impl<W: AsyncWrite + Unpin, R: Unpin> AsyncWrite for Duplex<'_, W, R> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.writer).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.writer).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.writer).poll_shutdown(cx)
    }
}

impl<W: Unpin, R: Stream + Unpin> Stream for Duplex<'_, W, R> {
    type Item = R::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<R::Item>> {
        Pin::new(&mut *self.reader).poll_next(cx)
    }
}

/// Below the limit and no error yet (a stream may end after an error item).
fn may_read_ahead<T, E>(ahead: &VecDeque<Result<T, E>>) -> bool {
    ahead.len() < READ_AHEAD_LIMIT && !matches!(ahead.back(), Some(Err(_)))
}

/// A write fails (reset, broken pipe) as soon as the client's reset arrives, which can be before
/// this task has seen the input the client sent before it went (tokio reads only after the
/// reactor has seen the socket readable); the kernel still holds that input, so it is read now,
/// for at most `BROKEN_CONNECTION_READ_GRACE` (the connection is dead: its input ends at once).
async fn take_input_left_by_a_broken_connection<S, T, E>(input: &mut S, ahead: &mut VecDeque<Result<T, E>>)
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    let take = async {
        while may_read_ahead(ahead) {
            match input.next().await {
                Some(item) => ahead.push_back(item),
                None => return,
            }
        }
    };
    let _ = tokio::time::timeout(BROKEN_CONNECTION_READ_GRACE, take).await;
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

    fn input(items: Vec<Result<u32, ()>>, then_end: bool) -> impl Stream<Item = Result<u32, ()>> + Unpin {
        let tail = if then_end { futures::stream::empty().left_stream() } else { futures::stream::pending().right_stream() };
        futures::stream::iter(items).chain(tail)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_hangs_up_ends_a_waiting_write_at_once() {
        let (mut ours, _theirs_never_read) = tokio::io::duplex(16);
        let mut ahead = VecDeque::new();
        let started = Instant::now();
        let err = write_all_reading_ahead(&mut Duplex { writer: &mut ours, reader: &mut input(vec![Ok(1), Ok(2)], true) }, &[0u8; 64], &mut ahead)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(started.elapsed() < Duration::from_secs(1), "no wait for the stall timeout");
        assert_eq!(ahead, VecDeque::from([Ok(1), Ok(2)]), "what came before the hang-up is kept in order");
    }

    #[tokio::test(start_paused = true)]
    async fn reading_ahead_stops_at_the_limit_and_after_an_error() {
        let (mut ours, _theirs_never_read) = tokio::io::duplex(16);
        let mut ahead = VecDeque::new();
        let many = (0..READ_AHEAD_LIMIT as u32 + 5).map(Ok).collect();
        let err = write_all_reading_ahead(&mut Duplex { writer: &mut ours, reader: &mut input(many, true) }, &[0u8; 64], &mut ahead).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "the hang-up behind the limit is not read");
        assert_eq!(ahead.len(), READ_AHEAD_LIMIT);

        let mut ahead = VecDeque::new();
        let err = write_all_reading_ahead(&mut Duplex { writer: &mut ours, reader: &mut input(vec![Ok(1), Err(()), Ok(3)], true) }, &[0u8; 64], &mut ahead)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(ahead, VecDeque::from([Ok(1), Err(())]));
    }

    /// A socket whose peer has reset the connection.
    struct Broken;

    impl AsyncWrite for Broken {
        fn poll_write(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>, _: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_connection_still_gives_what_the_client_sent_before_it_went() {
        let late = futures::stream::once(Box::pin(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(1)
        }));
        let mut ahead = VecDeque::new();
        let err = write_all_reading_ahead(&mut Duplex { writer: &mut Broken, reader: &mut late.chain(input(vec![Ok(2)], true)) }, b"x", &mut ahead)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(ahead, VecDeque::from([Ok(1), Ok(2)]));

        let started = Instant::now();
        let mut ahead = VecDeque::new();
        write_all_reading_ahead(&mut Duplex { writer: &mut Broken, reader: &mut input(vec![Ok(3)], false) }, b"x", &mut ahead).await.unwrap_err();
        assert_eq!(ahead, VecDeque::from([Ok(3)]));
        assert_eq!(started.elapsed(), BROKEN_CONNECTION_READ_GRACE, "input that does not end is waited on for the grace only");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_completes_leaves_the_rest_of_the_input_unread() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let mut ahead = VecDeque::new();
        let mut quiet_client = input(vec![], false);
        write_all_reading_ahead(&mut Duplex { writer: &mut ours, reader: &mut quiet_client }, b"hello", &mut ahead).await.unwrap();
        let mut got = [0u8; 5];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        assert!(ahead.is_empty());
    }
}
