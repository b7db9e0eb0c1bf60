//! Framing of a TCP byte stream: bytes arrive in arbitrary chunks, complete frames come
//! out with their stream offsets. Garbage (bad SYNC, impossible FRAMESIZE, bad CHK) is
//! reported once per run, then the decoder resynchronises on the next 0xAA that starts a
//! frame of a known type, plausible size and valid CRC. Memory is one fixed buffer.

use super::common::{peek, MAX_FRAME};
use super::crc::crc_ccitt;
use crate::error::{FrameError, FrameErrorKind};

/// Buffer size: room for one whole maximum frame plus the next chunk's head.
pub const STREAM_BUF: usize = 2 * MAX_FRAME;

/// What the stream produced: a CRC-valid frame (its bytes) or a framing error.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamItem<'a> {
    /// `offset` is the stream offset of the frame's first byte.
    Frame { offset: u64, bytes: &'a [u8] },
    /// The error's `offset` is a stream offset.
    Error(FrameError),
}

/// Splits a byte stream into frames. See the module docs.
pub struct StreamDecoder {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    pos: u64,
    /// Inside a run of garbage whose error was already reported.
    in_garbage: bool,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self {
            buf: vec![0u8; STREAM_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            pos: 0,
            in_garbage: false,
        }
    }

    /// Copy as much of `data` as fits into the buffer; returns how many bytes were taken.
    /// Drain `next_item` and push the rest (or use `feed`, which does both).
    pub fn push(&mut self, data: &[u8]) -> usize {
        if self.buf.len() - self.end < data.len() && self.start > 0 {
            // Compact in place: the unread tail moves to the front.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = data.len().min(self.buf.len() - self.end);
        self.buf[self.end..self.end + n].copy_from_slice(&data[..n]);
        self.end += n;
        n
    }

    /// The next complete frame or error, or None until more bytes are pushed.
    pub fn next_item(&mut self) -> Option<StreamItem<'_>> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.is_empty() {
                return None;
            }
            let err = match peek(avail) {
                Err(e) if e.kind == FrameErrorKind::Truncated => return None,
                Err(e) => e,
                Ok((_, _, size)) => {
                    if avail.len() < size {
                        return None;
                    }
                    let stored = u16::from_be_bytes([avail[size - 2], avail[size - 1]]);
                    let computed = crc_ccitt(&avail[..size - 2]);
                    if stored == computed {
                        let offset = self.pos;
                        let at = self.start;
                        self.advance(size);
                        self.in_garbage = false;
                        return Some(StreamItem::Frame {
                            offset,
                            bytes: &self.buf[at..at + size],
                        });
                    }
                    FrameError::new(FrameErrorKind::Crc, "CHK", size - 2)
                        .with_values(u64::from(computed), u64::from(stored))
                }
            };
            let err = err.shifted(self.pos as usize);
            // Skip to the next candidate SYNC byte.
            let skip = avail[1..]
                .iter()
                .position(|&b| b == 0xAA)
                .map_or(avail.len(), |p| p + 1);
            self.advance(skip);
            if !self.in_garbage {
                self.in_garbage = true;
                return Some(StreamItem::Error(err));
            }
        }
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Push all of `data`, calling `f` for every frame and error it completes.
    pub fn feed(&mut self, mut data: &[u8], mut f: impl FnMut(StreamItem<'_>)) {
        loop {
            let n = self.push(data);
            data = &data[n..];
            while let Some(item) = self.next_item() {
                f(item);
            }
            if data.is_empty() {
                return;
            }
        }
    }

    /// End of stream: the bytes of an incomplete frame, if any, as one `Truncated` error
    /// (none if they belong to garbage already reported). The decoder is then empty.
    pub fn finish(&mut self) -> Option<FrameError> {
        let left = self.end - self.start;
        let err = (left > 0 && !self.in_garbage).then(|| {
            let need = peek(&self.buf[self.start..self.end]).map_or(0, |(_, _, s)| s);
            // FRAMESIZE is only there to blame if its bytes arrived.
            let (field, at) = if left >= 4 {
                ("FRAMESIZE", 2)
            } else {
                ("SYNC", 0)
            };
            FrameError::new(FrameErrorKind::Truncated, field, self.pos as usize + at)
                .with_values(need as u64, left as u64)
        });
        self.pos += left as u64;
        self.start = 0;
        self.end = 0;
        self.in_garbage = false;
        err
    }

    /// Bytes held that do not yet form a frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Stream offset of the next byte not yet returned as a frame or skipped.
    pub fn offset(&self) -> u64 {
        self.pos
    }
}
