//! One STOMP 1.2 connection, split in a reading and a writing half: the reader decodes the
//! broker's frames with Junction's codec (heart-beats skipped, ERROR turned into an error), the
//! writer encodes frames into a buffer and writes them out together on `flush`.

use super::{Run, CONNECT_TIMEOUT};
use futures::{FutureExt, StreamExt};
use junction_stomp::codec::{Inbound, Limits, StompCodec};
use junction_stomp::frame::{Frame, Version};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

pub struct Reader {
    frames: FramedRead<OwnedReadHalf, StompCodec>,
}

pub struct Writer {
    half: OwnedWriteHalf,
    codec: StompCodec,
    out: BytesMut,
}

/// Connects, sends CONNECT and waits for CONNECTED.
pub async fn open(run: &Run) -> anyhow::Result<(Reader, Writer)> {
    let args = &run.args;
    let address = format!("{}:{}", args.host, args.port);
    let handshake = async {
        let stream = TcpStream::connect(&address).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut reader = Reader { frames: FramedRead::new(read, StompCodec::new(Limits::default())) };
        let mut writer = Writer { half: write, codec: StompCodec::new(Limits::default()), out: BytesMut::with_capacity(64 * 1024) };
        let connect = Frame::new("CONNECT")
            .with("accept-version", "1.2")
            .with("host", args.vhost.as_str())
            .with("login", args.user.as_str())
            .with("passcode", args.password.as_str())
            .with("heart-beat", "0,0");
        writer.queue(&connect);
        writer.flush().await?;
        let connected = reader.next_frame().await?;
        if connected.command != "CONNECTED" {
            anyhow::bail!("expected CONNECTED, got {}", connected.command);
        }
        if connected.header("version") != Some("1.2") {
            anyhow::bail!("the broker does not speak STOMP 1.2 (version {:?})", connected.header("version"));
        }
        reader.frames.decoder_mut().set_version(Version::V12);
        writer.codec.set_version(Version::V12);
        Ok((reader, writer))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(result) => result.map_err(|e: anyhow::Error| e.context(format!("connecting to {address}"))),
        Err(_) => anyhow::bail!("connecting to {address}: no CONNECTED after {CONNECT_TIMEOUT:?}"),
    }
}

impl Reader {
    /// The next frame other than a heart-beat; an ERROR frame or the end of the connection is an
    /// error. Cancel-safe.
    pub async fn next_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            match self.frames.next().await {
                Some(Ok(Inbound::Frame(frame))) if frame.command == "ERROR" => {
                    let message = frame.header("message").unwrap_or("").to_string();
                    let body = String::from_utf8_lossy(&frame.body).trim().to_string();
                    anyhow::bail!("the broker sent ERROR: {message}: {body}");
                }
                Some(Ok(Inbound::Frame(frame))) => return Ok(frame),
                Some(Ok(Inbound::HeartBeat)) => {}
                Some(Err(e)) => anyhow::bail!("reading a frame: {e}"),
                None => anyhow::bail!("the broker closed the connection"),
            }
        }
    }

    /// The next frame if one can be had without waiting.
    pub fn try_next_frame(&mut self) -> Option<anyhow::Result<Frame>> {
        self.next_frame().now_or_never()
    }
}

impl Writer {
    /// Encodes a frame into the buffer; `flush` writes it.
    pub fn queue(&mut self, frame: &Frame) {
        self.codec.encode_frame(frame, &mut self.out);
    }

    /// Bytes queued and not written yet.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.out.is_empty() {
            self.half.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}

/// Sends DISCONNECT with a receipt and waits up to 2 s for it (frames before it are dropped).
pub async fn disconnect(reader: &mut Reader, writer: &mut Writer) {
    writer.queue(&Frame::new("DISCONNECT").with("receipt", DISCONNECT_RECEIPT));
    if writer.flush().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), wait_for_receipt(reader, DISCONNECT_RECEIPT)).await;
}

/// The `receipt` of the DISCONNECT frame.
pub const DISCONNECT_RECEIPT: &str = "bye";

/// Reads until the RECEIPT for `id`, dropping other frames.
pub async fn wait_for_receipt(reader: &mut Reader, id: &str) -> anyhow::Result<()> {
    loop {
        let frame = reader.next_frame().await?;
        if frame.command == "RECEIPT" && frame.header("receipt-id") == Some(id) {
            return Ok(());
        }
    }
}
