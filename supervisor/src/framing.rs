//! Reading newline-delimited lines from a stream: the loop that the child channel and the
//! control channel share around [`LineDecoder`] (protocol.md, section 3).

use pm_child::protocol::{Frame, LineDecoder};
use tokio::io::{AsyncRead, AsyncReadExt};

/// A stream read in chunks and cut into lines of at most the decoder's limit.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    rd: R,
    decoder: LineDecoder,
    buf: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Reads `rd` `chunk` bytes at a time, with `decoder`'s line limit.
    pub(crate) fn new(rd: R, decoder: LineDecoder, chunk: usize) -> Self {
        LineReader {
            rd,
            decoder,
            buf: vec![0u8; chunk].into_boxed_slice(),
        }
    }

    /// Reads once and hands every line (or over-long line) that read completed to `on_frame`.
    /// False at EOF or on a read error. Cancel-safe: nothing is read or handed out unless the
    /// future completes.
    pub(crate) async fn read(&mut self, on_frame: impl FnMut(Frame<'_>)) -> bool {
        let n = match self.rd.read(&mut self.buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        self.decoder.feed(&self.buf[..n], on_frame);
        true
    }

    /// Whether the stream ended in the middle of a line.
    pub(crate) fn has_partial(&self) -> bool {
        self.decoder.has_pending()
    }
}
