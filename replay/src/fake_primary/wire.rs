//! The server side of one connection: command packets in, framed answers out (OK, ERR,
//! text result sets), over a buffered TCP socket, plain or TLS.

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use mysql_wire::packet::{frame, MAX_PHYSICAL_PAYLOAD};
use mysql_wire::server;

/// Largest command packet accepted from a replica (bytes): a GTID set of thousands of
/// UUIDs fits; anything larger is refused.
const MAX_COMMAND: usize = 4 << 20;

/// A replica's socket: plain TCP, or TLS after an SSLRequest.
pub(super) type Stream =
    tokio_util::either::Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;

/// A replica's connection, server side.
pub(super) struct Wire {
    /// Read half, buffered.
    pub(super) r: BufReader<ReadHalf<Stream>>,
    /// Write half.
    pub(super) w: WriteHalf<Stream>,
    /// Sequence id of the next packet written.
    pub(super) seq: u8,
}

impl Wire {
    /// The connection over `stream`; the next packet written has sequence id `seq`.
    pub(super) fn new(stream: Stream, seq: u8) -> Wire {
        let (r, w) = tokio::io::split(stream);
        Wire {
            r: BufReader::with_capacity(64 * 1024, r),
            w,
            seq,
        }
    }

    /// Reads one command packet (payload only) and sets the sequence id for the answer.
    ///
    /// # Errors
    ///
    /// I/O errors, and packets over `MAX_COMMAND` bytes.
    pub(super) async fn read(&mut self) -> anyhow::Result<Vec<u8>> {
        let (buf, seq) = read_packet(&mut self.r, MAX_COMMAND).await?;
        self.seq = seq;
        Ok(buf)
    }

    /// Frames and writes one packet.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(super) async fn write(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 8);
        frame(&mut out, &mut self.seq, payload);
        self.w.write_all(&out).await?;
        Ok(())
    }

    /// Writes an OK packet.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(super) async fn ok(&mut self) -> anyhow::Result<()> {
        self.write(&server::ok_packet()).await
    }

    /// Writes an ERR packet with `code` and `msg`.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(super) async fn err(&mut self, code: u16, msg: &str) -> anyhow::Result<()> {
        self.write(&server::err_packet(code, msg)).await
    }
}

/// One packet read from `r`: its payload (at most `max` bytes, and never a 16 MiB
/// continuation: commands from a replica are small) and the sequence id for the answer.
///
/// # Errors
///
/// I/O errors, and a packet over the limit (before anything is allocated for it).
pub(super) async fn read_packet<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> anyhow::Result<(Vec<u8>, u8)> {
    let mut hdr = [0u8; 4];
    r.read_exact(&mut hdr).await?;
    let len = usize::from(hdr[0]) | usize::from(hdr[1]) << 8 | usize::from(hdr[2]) << 16;
    if len > max || len >= MAX_PHYSICAL_PAYLOAD {
        anyhow::bail!("a client packet of {len} bytes is too large");
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok((buf, hdr[3].wrapping_add(1)))
}

/// A text result set: column names, rows of optional strings.
///
/// # Errors
///
/// I/O errors.
pub(super) async fn result_set(
    w: &mut Wire,
    cols: &[&str],
    rows: &[Vec<Option<String>>],
) -> anyhow::Result<()> {
    let mut out = Vec::new();
    server::result_set(&mut out, &mut w.seq, cols, rows);
    w.w.write_all(&out).await?;
    Ok(())
}
