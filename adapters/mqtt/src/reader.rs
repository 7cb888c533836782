//! Reads a connection's packets: a stream of decoded packets over its socket, like tokio-util's
//! `FramedRead`, except that it holds no buffer at all while it has none (an idle connection
//! gives its buffer back, see `Conn::release_buffers`). `FramedRead` reserves a byte before
//! every read, so an idle connection waiting on it would hold a small allocation for good.

use crate::codec::{DecodeError, Framing};
use crate::packet::Inbound;
use bytes::BytesMut;
use futures::Stream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::Decoder;

/// A reader with no buffer reads this much on the stack first (usually a whole packet: a
/// PINGREQ, an acknowledgement or a small PUBLISH after an idle pause).
const STACK_READ: usize = 512;
/// The buffer a reader with none gets once bytes arrive (tokio-util's own starting size).
pub const READ_BUFFER: usize = 8 * 1024;

pub struct PacketReader<S> {
    stream: S,
    framing: Framing,
    buffer: BytesMut,
    /// The buffer may hold a packet not yet decoded (bytes arrived since the last decode).
    readable: bool,
    /// The stream ended or failed, or a packet could not be decoded: nothing more is read.
    done: bool,
    /// The buffer was given back: the next read goes to the stack first, so that waiting for
    /// it holds no allocation.
    released: bool,
}

impl<S: AsyncRead + Unpin> PacketReader<S> {
    pub fn with_capacity(stream: S, framing: Framing, capacity: usize) -> PacketReader<S> {
        PacketReader { stream, framing, buffer: BytesMut::with_capacity(capacity), readable: false, done: false, released: false }
    }

    /// The stream, to write replies to.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn framing_mut(&mut self) -> &mut Framing {
        &mut self.framing
    }

    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Frees the buffer unless it holds the start of a packet. (It may be empty while a packet
    /// is half read: the codec keeps a fixed header it has taken off the buffer in its own
    /// state, and reads the rest into the next buffer.)
    pub fn release_buffer(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = BytesMut::new();
            self.released = true;
        }
    }

    /// Makes room for reads of `capacity` bytes at once.
    pub fn reserve(&mut self, capacity: usize) {
        if self.buffer.capacity() < capacity {
            self.buffer.reserve(capacity - self.buffer.len());
        }
    }

    /// Reads what the stream has into the buffer: the byte count, 0 at its end.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.released {
            let mut on_stack = [0u8; STACK_READ];
            let mut read = ReadBuf::new(&mut on_stack);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n > 0 {
                self.released = false;
                self.buffer.reserve(READ_BUFFER);
                self.buffer.extend_from_slice(read.filled());
            }
            return Poll::Ready(Ok(n));
        }
        if self.buffer.len() == self.buffer.capacity() {
            // Room for at least one byte, so that a read of 0 means the end of the stream.
            self.buffer.reserve(1);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buffer)
    }
}

/// Writes go to the stream: replies leave on the socket the packets come from (and
/// `net::ReadAhead::write` reads the client's packets while a write waits).
impl<S: AsyncWrite + Unpin> AsyncWrite for PacketReader<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> Stream for PacketReader<S> {
    type Item = Result<Inbound, DecodeError>;

    /// The next packet; None once the stream ended (with an error first if it ended inside a
    /// packet) or after an error.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.readable {
                match this.framing.decode(&mut this.buffer) {
                    Ok(Some(packet)) => return Poll::Ready(Some(Ok(packet))),
                    Ok(None) => this.readable = false,
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            match ready!(this.poll_read(cx)) {
                Ok(0) => {
                    this.done = true;
                    if !this.buffer.is_empty() {
                        return Poll::Ready(Some(Err(std::io::Error::other("bytes remaining on stream").into())));
                    }
                }
                Ok(_) => this.readable = true,
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    /// MQTT 3.1.1 CONNECT of client "a", keep-alive 60 s.
    const CONNECT: &[u8] = &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a'];
    const PINGREQ: &[u8] = &[0xC0, 0];

    fn reader(capacity: usize) -> (PacketReader<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1024);
        (PacketReader::with_capacity(ours, Framing::new(1 << 20), capacity), theirs)
    }

    async fn next(reader: &mut PacketReader<tokio::io::DuplexStream>) -> Option<Result<Inbound, DecodeError>> {
        tokio::time::timeout(std::time::Duration::from_secs(5), reader.next()).await.expect("a packet or the end")
    }

    #[tokio::test]
    async fn packets_split_across_reads_and_read_after_the_buffer_was_given_back() {
        let (mut reader, mut client) = reader(4);
        client.write_all(&CONNECT[..6]).await.unwrap();
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), reader.next()).await;
        assert!(pending.is_err(), "half a CONNECT is no packet");
        client.write_all(&CONNECT[6..]).await.unwrap();
        assert!(matches!(next(&mut reader).await, Some(Ok(Inbound::Connect(c))) if c.client_id == "a"));

        reader.release_buffer();
        assert_eq!(reader.buffer.capacity(), 0);
        client.write_all(&[PINGREQ, PINGREQ].concat()).await.unwrap();
        assert!(matches!(next(&mut reader).await, Some(Ok(Inbound::PingReq))));
        // (less what the first PINGREQ took off its front)
        assert!(reader.buffer.capacity() >= READ_BUFFER - PINGREQ.len(), "reading again gets a full-size buffer");
        assert!(matches!(next(&mut reader).await, Some(Ok(Inbound::PingReq))));
    }

    #[tokio::test]
    async fn the_buffer_given_back_between_a_packets_header_and_its_body_loses_nothing() {
        let (mut reader, mut client) = reader(256);
        client.write_all(CONNECT).await.unwrap();
        assert!(matches!(next(&mut reader).await, Some(Ok(Inbound::Connect(_)))));
        // PUBLISH QoS 0 to "t" with body "hi": its fixed header, then the rest after a pause.
        let publish: &[u8] = &[0x30, 5, 0, 1, b't', b'h', b'i'];
        client.write_all(&publish[..2]).await.unwrap();
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), reader.next()).await;
        assert!(pending.is_err(), "a fixed header alone is no packet");
        reader.release_buffer();
        client.write_all(&publish[2..]).await.unwrap();
        let Some(Ok(Inbound::Publish(p))) = next(&mut reader).await else { panic!("the PUBLISH") };
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("t", &b"hi"[..]));
    }

    #[tokio::test]
    async fn the_end_of_the_stream_inside_a_packet_is_an_error_and_then_the_end() {
        let (mut reader, mut client) = reader(256);
        client.write_all(&CONNECT[..CONNECT.len() - 1]).await.unwrap();
        drop(client);
        assert!(matches!(next(&mut reader).await, Some(Err(_))));
        assert!(next(&mut reader).await.is_none());
    }

    #[tokio::test]
    async fn a_bad_packet_is_an_error_and_nothing_is_read_after_it() {
        let (mut reader, mut client) = reader(256);
        client.write_all(&[0x00, 0x00]).await.unwrap();
        client.write_all(CONNECT).await.unwrap();
        assert!(matches!(next(&mut reader).await, Some(Err(_))));
        assert!(next(&mut reader).await.is_none());
    }
}
