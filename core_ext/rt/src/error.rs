//! Errors of the real-time core.
//!
//! `FrameError` carries only `Copy` data (no `String`) so that building one on the
//! per-frame hot path never allocates; the message is formatted only when someone
//! displays it.

use std::fmt;

/// What went wrong with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameErrorKind {
    /// Fewer bytes than the field or the declared FRAMESIZE needs.
    Truncated,
    /// FRAMESIZE is below the minimum frame, above the maximum, or disagrees with the content.
    FrameSize,
    /// CHK does not match the CRC-CCITT of the frame.
    Crc,
    /// The first byte is not 0xAA, or the frame type / version is unknown.
    Sync,
    /// A count (NUM_PMU, PHNMR, ANNMR, DGNMR, name length...) is absurd for the frame size.
    Count,
    /// A data frame arrived for an IDCODE with no configuration frame.
    NoConfig,
    /// A data frame does not fit the configuration it is decoded against.
    Mismatch,
    /// A field holds a value that is not allowed (bad TIME_BASE, non-UTF-8 name, unknown code...).
    Value,
    /// The frame cannot be encoded as asked (value out of range of its format...).
    Encode,
}

impl FrameErrorKind {
    /// Every kind, in declaration order: `kind as usize` indexes this array.
    pub const ALL: [FrameErrorKind; 9] = [
        Self::Truncated,
        Self::FrameSize,
        Self::Crc,
        Self::Sync,
        Self::Count,
        Self::NoConfig,
        Self::Mismatch,
        Self::Value,
        Self::Encode,
    ];

    /// Short stable name, used as the Python exception class selector and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::FrameSize => "framesize",
            Self::Crc => "crc",
            Self::Sync => "sync",
            Self::Count => "count",
            Self::NoConfig => "no_config",
            Self::Mismatch => "mismatch",
            Self::Value => "value",
            Self::Encode => "encode",
        }
    }
}

/// A frame that could not be decoded or encoded: what, which field, and at which byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError {
    pub kind: FrameErrorKind,
    /// Name of the C37.118 field that failed (e.g. "FRAMESIZE", "CHK", "PHNMR").
    pub field: &'static str,
    /// Byte offset of that field from the start of the frame (or of the stream, for the stream decoder).
    pub offset: usize,
    /// The value that was expected, where one makes sense (e.g. the computed CRC).
    pub expected: Option<u64>,
    /// The value that was found.
    pub found: Option<u64>,
}

impl FrameError {
    pub const fn new(kind: FrameErrorKind, field: &'static str, offset: usize) -> Self {
        Self {
            kind,
            field,
            offset,
            expected: None,
            found: None,
        }
    }

    pub const fn with_values(mut self, expected: u64, found: u64) -> Self {
        self.expected = Some(expected);
        self.found = Some(found);
        self
    }

    pub const fn with_found(mut self, found: u64) -> Self {
        self.found = Some(found);
        self
    }

    /// The same error with its offset moved by `base` (used when a frame sits inside a larger buffer).
    pub const fn shifted(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FrameErrorKind::Truncated => "truncated frame",
            FrameErrorKind::FrameSize => "bad frame size",
            FrameErrorKind::Crc => "CRC mismatch",
            FrameErrorKind::Sync => "bad SYNC word",
            FrameErrorKind::Count => "absurd count",
            FrameErrorKind::NoConfig => "no configuration for IDCODE",
            FrameErrorKind::Mismatch => "frame does not fit its configuration",
            FrameErrorKind::Value => "invalid value",
            FrameErrorKind::Encode => "cannot encode",
        };
        write!(
            f,
            "{what} in field {} at byte offset {}",
            self.field, self.offset
        )?;
        match (self.expected, self.found) {
            (Some(e), Some(v)) => write!(f, " (expected {e:#x}, found {v:#x})"),
            (None, Some(v)) => write!(f, " (found {v})"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for FrameError {}

/// An invalid parameter of a monitor, estimator, controller, envelope or ticker.
/// Raised at construction, never per frame, so it may allocate.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The parameter's name, as in the configuration reference (e.g. "droop_percent").
    pub field: &'static str,
    /// Why it was refused, with the offending value.
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::FrameErrorKind;

    #[test]
    fn all_lists_every_kind_at_its_discriminant() {
        for (i, k) in FrameErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
        let names: std::collections::HashSet<_> =
            FrameErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), FrameErrorKind::ALL.len());
    }
}
