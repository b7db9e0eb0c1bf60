//! Framing of a TCP byte stream: bytes arrive in arbitrary chunks, complete frames come
//! out with their stream offsets. Garbage (bad SYNC, impossible FRAMESIZE, bad CHK) is
//! reported once per run, then the decoder resynchronises on the next 0xAA that starts a
//! frame of a known type, plausible size and valid CRC. Memory is one fixed buffer.
//!
//! A false start (garbage that looks like SYNC with a large FRAMESIZE) must not hold up
//! the good frames behind it, nor lose them:
//! - Mid-stream, while a candidate frame waits for its bytes, the bytes already there are
//!   searched for a complete CRC-valid frame followed by another frame's header (0xAA, a
//!   known type, a plausible FRAMESIZE): the candidate is then a false start (one
//!   `FrameSize` error, found = the claimed size; the next item's offset says where
//!   decoding resumed) and decoding resumes at that frame, instead of waiting for up to 64 KiB (half a
//!   minute of a 50 frames/s stream). The cost is one frame period: the frame found is
//!   taken when the next one's header arrives. Inside a genuine frame still arriving,
//!   such a find needs a CRC match by chance (1 in 65 536) on top of two plausible
//!   headers (about 1 in 6 000 each); a search stops at a candidate inside whose bytes
//!   are not all there yet, and goes on when they are.
//! - At the end of input (`finish`) a candidate that never completed is garbage (one
//!   `Truncated` error) and the bytes after its SYNC are rescanned: their frames are
//!   emitted as if the stream went on.

use super::common::{peek, MAX_FRAME};
use super::crc::frame_chk;
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
    /// While the candidate at `start` waits for its bytes: how far past `start` the
    /// search for a frame behind a false start has come (0: not started).
    look: usize,
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
            look: 0,
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
        self.next(false)
    }

    /// `next_item`; at the end of input (`eof`) an incomplete candidate is garbage, not a
    /// frame still arriving.
    fn next(&mut self, eof: bool) -> Option<StreamItem<'_>> {
        loop {
            let held = self.end - self.start;
            if held == 0 {
                return None;
            }
            // Where to go on after an error: the next candidate SYNC byte, or (a false
            // start mid-stream) the frame found behind it.
            let mut resume = None;
            let err = match peek(&self.buf[self.start..self.end]) {
                Err(e) if e.kind == FrameErrorKind::Truncated && !eof => return None,
                Err(e) => e,
                Ok((_, _, size)) if held < size => {
                    if eof {
                        FrameError::new(FrameErrorKind::Truncated, "FRAMESIZE", 2)
                            .with_values(size as u64, held as u64)
                    } else {
                        let at = self.frame_behind()?;
                        resume = Some(at);
                        FrameError::new(FrameErrorKind::FrameSize, "FRAMESIZE", 2)
                            .with_found(size as u64)
                    }
                }
                Ok((_, _, size)) => {
                    let (stored, computed) = frame_chk(&self.buf[self.start..self.start + size]);
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
            let skip = resume.unwrap_or_else(|| next_sync(&self.buf[self.start..self.end], 1));
            self.advance(skip);
            if !self.in_garbage {
                self.in_garbage = true;
                return Some(StreamItem::Error(err));
            }
        }
    }

    /// While the candidate at `start` waits for its bytes: the offset from `start` of a
    /// frame that shows the candidate to be a false start (see the module docs), or None
    /// to wait for more bytes. The search goes on where it stopped (`look`), so bytes
    /// are searched once per candidate, bar waiting on a candidate inside it.
    fn frame_behind(&mut self) -> Option<usize> {
        let avail = &self.buf[self.start..self.end];
        self.look = self.look.max(1);
        loop {
            let at = next_sync(avail, self.look);
            self.look = at;
            let rest = &avail[at..];
            let size = match peek(rest) {
                // Out of bytes, or the header of a candidate not all there yet.
                Err(e) if e.kind == FrameErrorKind::Truncated => return None,
                Err(_) => {
                    self.look += 1;
                    continue;
                }
                Ok((_, _, size)) if rest.len() < size => return None,
                Ok((_, _, size)) => size,
            };
            let (stored, computed) = frame_chk(&rest[..size]);
            if stored == computed {
                match peek(&rest[size..]) {
                    // The next frame's header follows.
                    Ok(_) => return Some(at),
                    // Not all of the next header is there yet (maybe none of it): wait.
                    // A frame that merely ends where the bytes end could be part of a
                    // genuine large frame cut at a chunk boundary; a live stream's next
                    // frame comes within a reporting period.
                    Err(e) if e.kind == FrameErrorKind::Truncated => return None,
                    Err(_) => {}
                }
            }
            self.look += 1;
        }
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
        self.look = 0;
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

    /// End of stream: `f` gets every frame and error still in the buffer. A candidate
    /// frame that never completed is garbage (one `Truncated` error, none if it belongs
    /// to garbage already reported) and the bytes after its SYNC are rescanned, so the
    /// frames behind a false start are not lost. The decoder is then empty, ready for a
    /// new stream that goes on at the same offsets.
    pub fn finish(&mut self, mut f: impl FnMut(StreamItem<'_>)) {
        while let Some(item) = self.next(true) {
            f(item);
        }
        self.in_garbage = false;
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

/// Offset in `bytes` of the first 0xAA at or after `from` (`bytes.len()` if none).
fn next_sync(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|b| b.iter().position(|&x| x == 0xAA))
        .map_or(bytes.len(), |p| from + p)
}
