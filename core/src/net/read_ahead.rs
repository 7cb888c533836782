//! Reading a client's input while a write to it waits.
//!
//! A connection's loop writes what it has before it waits for anything else, and a client that
//! does not read makes that write wait (up to `WRITE_STALL_TIMEOUT`). A client that shut its
//! socket down without closing it accepts none of our bytes, so without reading meanwhile its
//! hang-up would go unnoticed for that long, and with it the deliveries it was never sent. So
//! the write reads the client's input too, a little: what it reads is kept, in order, for the
//! connection to handle before anything newer (also after a failed write: what the client sent
//! before it went, its last acknowledgements or an MQTT DISCONNECT, still counts).

use super::{stalled, write_all, WRITE_STALL_TIMEOUT};
use futures::{Stream, StreamExt};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;

/// A write reads ahead at most this many items...
const MAX_ITEMS: usize = 16;
/// ...holding at most this many bytes (a larger item is read alone: the reader would hold it
/// whole anyway). What a client that sends without reading gets held is bounded, and then it
/// meets TCP back-pressure as before.
const MAX_BYTES: usize = 1 << 20;

/// A write can fail (reset, broken pipe) as soon as the client's reset arrives, before this task
/// has seen the input the client sent before it went (tokio reads only once the reactor has
/// seen the socket readable). The kernel still holds that input, so it is read then, for at
/// most this long (the connection is dead: its input ends at once).
const BROKEN_CONNECTION_READ_GRACE: Duration = Duration::from_millis(500);

/// The items a connection's reader yields, read ahead of a waiting write.
pub struct ReadAhead<T, E> {
    items: VecDeque<Result<T, E>>,
    bytes: usize,
    /// Roughly what an item holds in memory (its body).
    weight: fn(&T) -> usize,
    /// Whether an error item means the input has ended (an I/O error, a stream cut inside a
    /// frame) rather than a frame the protocol refuses (which the connection answers).
    ends_input: fn(&E) -> bool,
}

impl<T, E> ReadAhead<T, E> {
    pub fn new(weight: fn(&T) -> usize, ends_input: fn(&E) -> bool) -> Self {
        ReadAhead { items: VecDeque::new(), bytes: 0, weight, ends_input }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The oldest item read ahead.
    pub fn pop(&mut self) -> Option<Result<T, E>> {
        let item = self.items.pop_front()?;
        if let Ok(item) = &item {
            self.bytes -= (self.weight)(item);
        }
        Some(item)
    }

    /// The next input: the oldest item read ahead, else the reader's next. Cancel-safe (an
    /// item is only taken when this resolves).
    pub async fn next<S>(&mut self, input: &mut S) -> Option<Result<T, E>>
    where
        S: Stream<Item = Result<T, E>> + Unpin,
    {
        match self.pop() {
            Some(item) => Some(item),
            None => input.next().await,
        }
    }

    /// `write_all` with the stall timeout. With `reading`, the client's input is read ahead
    /// meanwhile (within the limits), and a client whose input ends makes the write fail at
    /// once (`UnexpectedEof`). Without (a publisher held back by a resource alarm), nothing is
    /// read. `io` writes to the connection and yields its input: a protocol's reader over the
    /// whole stream, or a `Duplex` of two halves.
    pub async fn write<D>(&mut self, io: &mut D, buf: &[u8], reading: bool) -> std::io::Result<()>
    where
        D: AsyncWrite + Stream<Item = Result<T, E>> + Unpin,
    {
        if !reading {
            return write_all(io, buf).await;
        }
        let mut written = 0;
        let write = std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = poll_write_rest(io, buf, &mut written, cx) {
                return Poll::Ready(done);
            }
            self.poll_read(io, cx)
        });
        let result = tokio::time::timeout(WRITE_STALL_TIMEOUT, write).await.unwrap_or_else(|_| Err(stalled()));
        if let Err(e) = &result {
            if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted) {
                self.read_what_a_broken_connection_left(io).await;
            }
        }
        result
    }

    /// Reads while there is room; ready (with an error) only when the input has ended.
    fn poll_read<S>(&mut self, input: &mut S, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>
    where
        S: Stream<Item = Result<T, E>> + Unpin,
    {
        while self.has_room() {
            match ready!(input.poll_next_unpin(cx)) {
                Some(item) => {
                    let ended = matches!(&item, Err(e) if (self.ends_input)(e));
                    self.push(item);
                    if ended {
                        return Poll::Ready(Err(hung_up()));
                    }
                }
                None => return Poll::Ready(Err(hung_up())),
            }
        }
        Poll::Pending
    }

    async fn read_what_a_broken_connection_left<S>(&mut self, input: &mut S)
    where
        S: Stream<Item = Result<T, E>> + Unpin,
    {
        let read = std::future::poll_fn(|cx| self.poll_read(input, cx));
        let _ = tokio::time::timeout(BROKEN_CONNECTION_READ_GRACE, read).await;
    }

    /// Below the limits, and no error item yet (a reader may end after one).
    fn has_room(&self) -> bool {
        self.items.len() < MAX_ITEMS && self.bytes < MAX_BYTES && !matches!(self.items.back(), Some(Err(_)))
    }

    fn push(&mut self, item: Result<T, E>) {
        if let Ok(item) = &item {
            self.bytes += (self.weight)(item);
        }
        self.items.push_back(item);
    }
}

fn hung_up() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the client hung up")
}

/// Writes what the socket takes of the rest of `buf`.
fn poll_write_rest<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8], written: &mut usize, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    while *written < buf.len() {
        match ready!(Pin::new(&mut *w).poll_write(cx, &buf[*written..])) {
            Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => *written += n,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// A connection's writer and its reader as one `io` for `ReadAhead::write`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::time::Instant;

    /// Items weigh their value; error items with `true` end the input.
    fn read_ahead() -> ReadAhead<u32, bool> {
        ReadAhead::new(|n| *n as usize, |ends| *ends)
    }

    fn input(items: Vec<Result<u32, bool>>, then_end: bool) -> impl Stream<Item = Result<u32, bool>> + Unpin {
        let tail = if then_end { futures::stream::empty().left_stream() } else { futures::stream::pending().right_stream() };
        futures::stream::iter(items).chain(tail)
    }

    fn drain(ahead: &mut ReadAhead<u32, bool>) -> Vec<Result<u32, bool>> {
        std::iter::from_fn(|| ahead.pop()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_hangs_up_ends_a_waiting_write_at_once() {
        let (mut ours, _theirs_never_read) = tokio::io::duplex(16);
        let mut ahead = read_ahead();
        let started = Instant::now();
        let io = &mut Duplex { writer: &mut ours, reader: &mut input(vec![Ok(1), Ok(2)], true) };
        let err = ahead.write(io, &[0u8; 64], true).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(started.elapsed() < Duration::from_secs(1), "no wait for the stall timeout");
        assert_eq!(drain(&mut ahead), [Ok(1), Ok(2)], "what came before the hang-up is kept in order");
    }

    #[tokio::test(start_paused = true)]
    async fn input_that_arrives_while_the_write_waits_is_read() {
        let (mut ours, _theirs_never_read) = tokio::io::duplex(16);
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        tokio::spawn(async move {
            for n in [1, 2] {
                tokio::time::sleep(Duration::from_millis(10)).await;
                tx.unbounded_send(Ok(n)).unwrap();
            }
        });
        let mut ahead = read_ahead();
        let err = ahead.write(&mut Duplex { writer: &mut ours, reader: &mut rx }, &[0u8; 64], true).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "the sender went: the input ended");
        assert_eq!(drain(&mut ahead), [Ok(1), Ok(2)]);
    }

    #[tokio::test(start_paused = true)]
    async fn reading_ahead_stops_at_the_limits_and_after_an_error() {
        let (mut ours, _theirs_never_read) = tokio::io::duplex(16);
        let many = (0..MAX_ITEMS as u32 + 5).map(|_| Ok(1)).collect();
        let mut ahead = read_ahead();
        let err = ahead.write(&mut Duplex { writer: &mut ours, reader: &mut input(many, true) }, &[0u8; 64], true).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "the hang-up behind the limit is not read");
        assert_eq!(drain(&mut ahead).len(), MAX_ITEMS);

        let heavy = vec![Ok(MAX_BYTES as u32 / 2), Ok(MAX_BYTES as u32 / 2), Ok(1)];
        let err = ahead.write(&mut Duplex { writer: &mut ours, reader: &mut input(heavy, true) }, &[0u8; 64], true).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(drain(&mut ahead).len(), 2, "a megabyte read ahead is the most");

        let refused = vec![Ok(1), Err(false), Ok(3)];
        let err = ahead.write(&mut Duplex { writer: &mut ours, reader: &mut input(refused, true) }, &[0u8; 64], true).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "a refused frame is answered after the write");
        assert_eq!(drain(&mut ahead), [Ok(1), Err(false)]);

        let cut = vec![Ok(1), Err(true)];
        let err = ahead.write(&mut Duplex { writer: &mut ours, reader: &mut input(cut, false) }, &[0u8; 64], true).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "an error that ends the input ends the write");
        assert_eq!(drain(&mut ahead), [Ok(1), Err(true)]);
    }

    /// A socket whose peer has reset the connection.
    struct Broken;

    impl AsyncWrite for Broken {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_connection_still_gives_what_the_client_sent_before_it_went() {
        let late = futures::stream::once(Box::pin(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(1)
        }));
        let mut ahead = read_ahead();
        let io = &mut Duplex { writer: &mut Broken, reader: &mut late.chain(input(vec![Ok(2)], true)) };
        let err = ahead.write(io, b"x", true).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(drain(&mut ahead), [Ok(1), Ok(2)]);

        let started = Instant::now();
        ahead.write(&mut Duplex { writer: &mut Broken, reader: &mut input(vec![Ok(3)], false) }, b"x", true).await.unwrap_err();
        assert_eq!(drain(&mut ahead), [Ok(3)]);
        assert_eq!(started.elapsed(), BROKEN_CONNECTION_READ_GRACE, "input that does not end is waited on for the grace only");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_completes_or_does_not_read_leaves_the_input_unread() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let mut ahead = read_ahead();
        let mut quiet_client = input(vec![], false);
        ahead.write(&mut Duplex { writer: &mut ours, reader: &mut quiet_client }, b"hello", true).await.unwrap();
        let mut got = [0u8; 5];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        let (mut ours, _theirs_never_read) = tokio::io::duplex(16);
        let mut blocked_publisher = input(vec![Ok(1)], true);
        let err = ahead.write(&mut Duplex { writer: &mut ours, reader: &mut blocked_publisher }, &[0u8; 64], false).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(ahead.is_empty());
        assert_eq!(ahead.next(&mut blocked_publisher).await, Some(Ok(1)), "then read as usual");
    }
}
