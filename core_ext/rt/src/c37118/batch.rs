//! Columnar decoding of a buffer of back-to-back data frames of one configuration
//! (a capture file, a ring buffer): one row per frame, written straight into
//! preallocated columns, optionally split over threads.

use super::common::check_frame;
use super::config::Config;
use super::crc::crc_table;
use super::data::{Phasor, Stat};
use super::walk::{walk_pmu, PmuLayout, PmuSink};
use super::FrameType;
use crate::error::{FrameError, FrameErrorKind};

/// Fewer rows than this per thread and spawning costs more than it saves (measured on
/// a loaded two-core machine, where a second thread often waits for a core).
pub const ROWS_PER_THREAD: usize = 32_768;

/// Decoded columns, row-major: `freq[row * num_pmu + pmu]`,
/// `magnitude[row * phasors + channel]` with channels in configuration order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Columns {
    pub rows: usize,
    pub num_pmu: usize,
    pub phasors: usize,
    pub analogs: usize,
    pub digitals: usize,
    pub time: Vec<f64>,
    pub soc: Vec<u32>,
    pub fracsec: Vec<u32>,
    pub freq: Vec<f64>,
    pub dfreq: Vec<f64>,
    pub stat: Vec<u16>,
    pub magnitude: Vec<f64>,
    pub angle: Vec<f64>,
    pub analog: Vec<f64>,
    pub digital: Vec<u16>,
}

/// Mutable views of one block of rows.
struct Block<'a> {
    time: &'a mut [f64],
    soc: &'a mut [u32],
    fracsec: &'a mut [u32],
    freq: &'a mut [f64],
    dfreq: &'a mut [f64],
    stat: &'a mut [u16],
    magnitude: &'a mut [f64],
    angle: &'a mut [f64],
    analog: &'a mut [f64],
    digital: &'a mut [u16],
}

/// Writes one PMU block into the row's columns through running cursors.
struct Cursor<'b, 'a> {
    b: &'b mut Block<'a>,
    pmu: usize,
    ph: usize,
    an: usize,
    dg: usize,
}

impl PmuSink for Cursor<'_, '_> {
    #[inline]
    fn stat(&mut self, s: Stat) {
        self.b.stat[self.pmu] = s.0;
    }
    #[inline]
    fn phasor(&mut self, p: Phasor) {
        self.b.magnitude[self.ph] = p.magnitude;
        self.b.angle[self.ph] = p.angle;
        self.ph += 1;
    }
    #[inline]
    fn freq(&mut self, freq: f64, dfreq: f64) {
        self.b.freq[self.pmu] = freq;
        self.b.dfreq[self.pmu] = dfreq;
    }
    #[inline]
    fn analog(&mut self, v: f64) {
        self.b.analog[self.an] = v;
        self.an += 1;
    }
    #[inline]
    fn digital(&mut self, d: u16) {
        self.b.digital[self.dg] = d;
        self.dg += 1;
    }
}

/// The error of a frame that failed the fast checks of `decode_block`.
#[cold]
fn frame_error(frame: &[u8], cfg: &Config) -> FrameError {
    match check_frame(frame) {
        Err(e) => e,
        Ok(h) if h.frame_type != FrameType::Data => {
            FrameError::new(FrameErrorKind::Value, "SYNC", 1)
                .with_values(0, u64::from(h.frame_type.code()))
        }
        Ok(h) => FrameError::new(FrameErrorKind::Mismatch, "IDCODE", 4)
            .with_values(u64::from(cfg.idcode), u64::from(h.idcode)),
    }
}

/// Decode the rows of one block, with the fastest CRC this CPU has.
fn decode_block(
    buf: &[u8],
    first_row: usize,
    cfg: &Config,
    layout: &[PmuLayout],
    c: &Columns,
    b: Block<'_>,
) -> Result<(), FrameError> {
    #[cfg(target_arch = "x86_64")]
    if cfg.data_frame_size() - 2 >= super::crc::clmul::MIN_LEN && super::crc::clmul::available() {
        // SAFETY: `available()` has just confirmed that the CPU supports PCLMULQDQ.
        return unsafe { decode_block_clmul(buf, first_row, cfg, layout, c, b) };
    }
    decode_rows(buf, first_row, cfg, layout, c, b, crc_table)
}

/// `decode_rows` compiled with PCLMULQDQ enabled, so that the carry-less CRC inlines into
/// the row loop (a call per frame through the feature check would cost more than it saves).
///
/// # Safety
/// The CPU must support PCLMULQDQ, and frames must be at least `clmul::MIN_LEN + 2` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq")]
unsafe fn decode_block_clmul(
    buf: &[u8],
    first_row: usize,
    cfg: &Config,
    layout: &[PmuLayout],
    c: &Columns,
    b: Block<'_>,
) -> Result<(), FrameError> {
    // SAFETY: the caller guarantees PCLMULQDQ and the message length.
    decode_rows(buf, first_row, cfg, layout, c, b, |m| unsafe {
        super::crc::clmul::crc(m)
    })
}

#[inline(always)]
fn decode_rows(
    buf: &[u8],
    first_row: usize,
    cfg: &Config,
    layout: &[PmuLayout],
    c: &Columns,
    mut b: Block<'_>,
    crc_ccitt: impl Fn(&[u8]) -> u16,
) -> Result<(), FrameError> {
    let size = cfg.data_frame_size();
    let tb = f64::from(cfg.time_base.max(1));
    for (i, frame) in buf.chunks_exact(size).enumerate() {
        let at = (first_row + i) * size;
        // Fast acceptance test of the common header; anything unexpected goes through
        // `frame_error` for the exact error.
        let size_ok = usize::from(u16::from_be_bytes([frame[2], frame[3]])) == size;
        let sync_ok = frame[0] == 0xAA && (frame[1] == 0x01 || frame[1] == 0x02);
        let id_ok = u16::from_be_bytes([frame[4], frame[5]]) == cfg.idcode;
        let chk = u16::from_be_bytes([frame[size - 2], frame[size - 1]]);
        if !(size_ok && sync_ok && id_ok && chk == crc_ccitt(&frame[..size - 2])) {
            return Err(frame_error(frame, cfg).shifted(at));
        }
        let soc = u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]);
        let fraction = u32::from_be_bytes([0, frame[11], frame[12], frame[13]]);
        b.time[i] = f64::from(soc) + f64::from(fraction) / tb;
        b.soc[i] = soc;
        b.fracsec[i] = fraction;
        let mut pos = super::common::HEADER_LEN;
        let mut cur = Cursor {
            b: &mut b,
            pmu: i * c.num_pmu,
            ph: i * c.phasors,
            an: i * c.analogs,
            dg: i * c.digitals,
        };
        for pl in layout {
            walk_pmu(frame, &mut pos, pl, &mut cur);
            cur.pmu += 1;
        }
    }
    Ok(())
}

/// Decode `buf`, which must hold whole data frames of `cfg` back to back, using up to
/// `threads` threads (1 = this thread only). The first failing frame's error is
/// returned, with its offset in `buf`.
pub fn decode_batch(buf: &[u8], cfg: &Config, threads: usize) -> Result<Columns, FrameError> {
    decode_batch_split(buf, cfg, threads, ROWS_PER_THREAD)
}

/// `decode_batch` with the smallest number of rows a thread is given as a parameter.
pub fn decode_batch_split(
    buf: &[u8],
    cfg: &Config,
    threads: usize,
    rows_per_thread: usize,
) -> Result<Columns, FrameError> {
    let size = cfg.data_frame_size();
    let rows = buf.len() / size;
    if buf.len() % size != 0 {
        let at = rows * size;
        // FRAMESIZE of a partial last frame may itself be missing: blame where it starts.
        return Err(FrameError::new(FrameErrorKind::Truncated, "FRAMESIZE", at)
            .with_values(size as u64, (buf.len() - at) as u64));
    }
    let num_pmu = cfg.pmus.len();
    let phasors = cfg.pmus.iter().map(|p| p.phnmr()).sum();
    let analogs = cfg.pmus.iter().map(|p| p.annmr()).sum();
    let digitals = cfg.pmus.iter().map(|p| p.dgnmr()).sum();
    let mut c = Columns {
        rows,
        num_pmu,
        phasors,
        analogs,
        digitals,
        time: vec![0.0; rows],
        soc: vec![0; rows],
        fracsec: vec![0; rows],
        freq: vec![0.0; rows * num_pmu],
        dfreq: vec![0.0; rows * num_pmu],
        stat: vec![0; rows * num_pmu],
        magnitude: vec![0.0; rows * phasors],
        angle: vec![0.0; rows * phasors],
        analog: vec![0.0; rows * analogs],
        digital: vec![0; rows * digitals],
    };
    let threads = threads
        .clamp(1, 64)
        .min(rows / rows_per_thread.max(1))
        .max(1);
    let per = rows.div_ceil(threads).max(1);
    let shape = Columns {
        rows,
        num_pmu,
        phasors,
        analogs,
        digitals,
        ..Default::default()
    };
    // Scale factors once per call, not once per frame.
    let layout: Vec<PmuLayout> = cfg.pmus.iter().map(PmuLayout::of).collect();
    let mut blocks = Vec::with_capacity(threads);
    {
        let mut rest = (
            &mut c.time[..],
            &mut c.soc[..],
            &mut c.fracsec[..],
            &mut c.freq[..],
            &mut c.dfreq[..],
            &mut c.stat[..],
            &mut c.magnitude[..],
            &mut c.angle[..],
            &mut c.analog[..],
            &mut c.digital[..],
        );
        let mut row = 0;
        while row < rows {
            let n = per.min(rows - row);
            let (t, r0) = std::mem::take(&mut rest.0).split_at_mut(n);
            let (s, r1) = std::mem::take(&mut rest.1).split_at_mut(n);
            let (f, r2) = std::mem::take(&mut rest.2).split_at_mut(n);
            let (fr, r3) = std::mem::take(&mut rest.3).split_at_mut(n * num_pmu);
            let (df, r4) = std::mem::take(&mut rest.4).split_at_mut(n * num_pmu);
            let (st, r5) = std::mem::take(&mut rest.5).split_at_mut(n * num_pmu);
            let (m, r6) = std::mem::take(&mut rest.6).split_at_mut(n * phasors);
            let (a, r7) = std::mem::take(&mut rest.7).split_at_mut(n * phasors);
            let (an, r8) = std::mem::take(&mut rest.8).split_at_mut(n * analogs);
            let (dg, r9) = std::mem::take(&mut rest.9).split_at_mut(n * digitals);
            rest = (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9);
            let block = Block {
                time: t,
                soc: s,
                fracsec: f,
                freq: fr,
                dfreq: df,
                stat: st,
                magnitude: m,
                angle: a,
                analog: an,
                digital: dg,
            };
            blocks.push((row, &buf[row * size..(row + n) * size], block));
            row += n;
        }
    }
    let result = if blocks.len() <= 1 {
        blocks
            .into_iter()
            .try_for_each(|(row, part, b)| decode_block(part, row, cfg, &layout, &shape, b))
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = blocks
                .into_iter()
                .map(|(row, part, b)| {
                    let shape = &shape;
                    let layout = &layout[..];
                    s.spawn(move || decode_block(part, row, cfg, layout, shape, b))
                })
                .collect();
            // Joined in order, so the first error is the earliest frame's.
            let mut first = Ok(());
            for h in handles {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(FrameError::new(FrameErrorKind::Value, "SYNC", 0)));
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
    };
    result.map(|()| c)
}

#[cfg(test)]
mod tests {
    use super::super::samples::{data_bytes, data_for, one_pmu, two_pmus};
    use super::super::{ConfigKind, Format};
    use super::*;

    #[test]
    fn columns_match_frame_decoding() {
        for cfg in [
            one_pmu(Format(0x01)),
            one_pmu(Format(0x0E)),
            two_pmus(ConfigKind::Cfg2),
        ] {
            let rows = 3000;
            let buf: Vec<u8> = (0..rows).flat_map(|i| data_bytes(&cfg, i as u32)).collect();
            for threads in [1, 2, 3] {
                let c = decode_batch_split(&buf, &cfg, threads, 500).unwrap();
                assert_eq!(c.rows, rows);
                for i in [0, 1, rows / 2, rows / 2 + 1, rows - 1] {
                    let want = super::super::decode_data(
                        &buf[i * cfg.data_frame_size()..(i + 1) * cfg.data_frame_size()],
                        &cfg,
                    )
                    .unwrap();
                    assert_eq!(c.time[i], want.time());
                    assert_eq!(c.freq[i * c.num_pmu], want.pmus[0].freq);
                    let p = &want.pmus[c.num_pmu - 1];
                    assert_eq!(c.stat[i * c.num_pmu + c.num_pmu - 1], p.stat.0);
                    assert_eq!(
                        c.magnitude[(i + 1) * c.phasors - 1],
                        p.phasors.last().unwrap().magnitude
                    );
                    assert_eq!(
                        c.digital[(i + 1) * c.digitals - 1],
                        *p.digitals.last().unwrap()
                    );
                }
                let _ = data_for(&cfg, 0);
            }
        }
    }

    #[test]
    fn errors_carry_buffer_offsets() {
        let cfg = one_pmu(Format(0x01));
        let size = cfg.data_frame_size();
        let rows = 3000;
        let mut buf: Vec<u8> = (0..rows).flat_map(|i| data_bytes(&cfg, i)).collect();
        let (a, b) = (1505, 2509);
        buf[a * size + 20] ^= 1;
        buf[b * size + 20] ^= 1;
        for threads in [1, 2] {
            let e = decode_batch_split(&buf, &cfg, threads, 1000).unwrap_err();
            assert_eq!(
                (e.kind, e.offset),
                (FrameErrorKind::Crc, (a + 1) * size - 2)
            );
        }
        let e = decode_batch(&buf[..size + 3], &cfg, 1).unwrap_err();
        assert_eq!((e.kind, e.offset), (FrameErrorKind::Truncated, size));
    }

    #[test]
    fn idcode_and_type_mismatches_are_reported() {
        let cfg = one_pmu(Format(0x01));
        let size = cfg.data_frame_size();
        let mut buf: Vec<u8> = (0..4).flat_map(|i| data_bytes(&cfg, i)).collect();
        let mut other = cfg.clone();
        other.idcode = 99;
        buf[2 * size..3 * size].copy_from_slice(&data_bytes(&other, 2));
        let e = decode_batch(&buf, &cfg, 1).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (FrameErrorKind::Mismatch, "IDCODE", 2 * size + 4)
        );
        let mut hdr = data_bytes(&cfg, 0);
        hdr[1] = 0x12; // a header frame of the same size
        let n = hdr.len();
        let crc = super::super::crc_ccitt(&hdr[..n - 2]);
        hdr[n - 2..].copy_from_slice(&crc.to_be_bytes());
        let e = decode_batch(&hdr, &cfg, 1).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (FrameErrorKind::Value, "SYNC", 1)
        );
    }
}
