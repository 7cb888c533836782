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
use tokio::io::{AsyncRead, ReadBuf};
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
}

impl<S: AsyncRead + Unpin> PacketReader<S> {
    pub fn with_capacity(stream: S, framing: Framing, capacity: usize) -> PacketReader<S> {
        PacketReader { stream, framing, buffer: BytesMut::with_capacity(capacity), readable: false, done: false }
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

    /// Frees the buffer unless it holds the start of a packet.
    pub fn release_buffer(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = BytesMut::new();
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
        if self.buffer.capacity() == 0 {
            let mut on_stack = [0u8; STACK_READ];
            let mut read = ReadBuf::new(&mut on_stack);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n > 0 {
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
