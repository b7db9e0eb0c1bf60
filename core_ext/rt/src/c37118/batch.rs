//! Columnar decoding of a buffer of back-to-back data frames of one configuration
//! (a capture file, a ring buffer): one row per frame, written straight into
//! preallocated columns, optionally split over threads.

use std::mem::MaybeUninit;

use super::common::check_frame;
use super::config::Config;
use super::crc::crc_table;
use super::data::{Phasor, Stat};
use super::walk::{phasor_int_polar, walk_pmu, PmuLayout, PmuSink};
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

/// The not yet written storage of one block of rows; `decode_rows` writes every element
/// of every slice (each row writes all its fields) before it returns `Ok`.
struct Block<'a> {
    time: &'a mut [MaybeUninit<f64>],
    soc: &'a mut [MaybeUninit<u32>],
    fracsec: &'a mut [MaybeUninit<u32>],
    freq: &'a mut [MaybeUninit<f64>],
    dfreq: &'a mut [MaybeUninit<f64>],
    stat: &'a mut [MaybeUninit<u16>],
    magnitude: &'a mut [MaybeUninit<f64>],
    angle: &'a mut [MaybeUninit<f64>],
    analog: &'a mut [MaybeUninit<f64>],
    digital: &'a mut [MaybeUninit<u16>],
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
        self.b.stat[self.pmu].write(s.0);
    }
    #[inline]
    fn phasor(&mut self, p: Phasor) {
        self.b.magnitude[self.ph].write(p.magnitude);
        self.b.angle[self.ph].write(p.angle);
        self.ph += 1;
    }
    #[inline]
    fn freq(&mut self, freq: f64, dfreq: f64) {
        self.b.freq[self.pmu].write(freq);
        self.b.dfreq[self.pmu].write(dfreq);
    }
    #[inline]
    fn analog(&mut self, v: f64) {
        self.b.analog[self.an].write(v);
        self.an += 1;
    }
    #[inline]
    fn digital(&mut self, d: u16) {
        self.b.digital[self.dg].write(d);
        self.dg += 1;
    }
    #[inline(always)]
    fn int_polar_block(&mut self, block: &[u8], factors: &[f64]) {
        let n = factors.len();
        let magnitude = &mut self.b.magnitude[self.ph..self.ph + n];
        let angle = &mut self.b.angle[self.ph..self.ph + n];
        self.ph += n;
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        let (block, factors, magnitude, angle) = {
            // Four phasors (16 bytes) at a time in SSE2 registers, which every x86_64 has.
            let whole = n / 4 * 4;
            let (m4, m_rest) = magnitude.split_at_mut(whole);
            let (a4, a_rest) = angle.split_at_mut(whole);
            let (b4, b_rest) = block.split_at(whole * 4);
            let (f4, f_rest) = factors.split_at(whole);
            for (((c, k), m), a) in b4
                .chunks_exact(16)
                .zip(f4.chunks_exact(4))
                .zip(m4.chunks_exact_mut(4))
                .zip(a4.chunks_exact_mut(4))
            {
                // SAFETY: SSE2 is enabled for the whole build (the cfg above checks it).
                unsafe { int_polar4(c, k, m, a) };
            }
            (b_rest, f_rest, m_rest, a_rest)
        };
        for (((c, &k), m), a) in block.chunks_exact(4).zip(factors).zip(magnitude).zip(angle) {
            let p = phasor_int_polar(c, k);
            m.write(p.magnitude);
            a.write(p.angle);
        }
    }
}

/// Four integer polar phasors (16 bytes: big-endian u16 magnitude, i16 angle) with SSE2:
/// the same conversions and IEEE multiplies as `phasor_int_polar`, two lanes at a time,
/// so the results are bit-identical.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
#[target_feature(enable = "sse2")]
fn int_polar4(
    c: &[u8],
    k: &[f64],
    magnitude: &mut [MaybeUninit<f64>],
    angle: &mut [MaybeUninit<f64>],
) {
    use std::arch::x86_64::{
        __m128d, __m128i, _mm_and_si128, _mm_cvtepi32_pd, _mm_mul_pd, _mm_or_si128, _mm_set1_epi32,
        _mm_set1_pd, _mm_set_pd, _mm_shuffle_epi32, _mm_slli_epi16, _mm_srai_epi32, _mm_srli_epi16,
    };
    let raw = u128::from_le_bytes(c.try_into().expect("16 bytes"));
    // SAFETY: `u128` and `__m128i` are both 16 bytes of plain data, any bit pattern valid.
    let v = unsafe { std::mem::transmute::<u128, __m128i>(raw) };
    // Byte-swap each 16-bit field: 32-bit lane j then holds magnitude j in its low half
    // and angle j in its high half.
    let v = _mm_or_si128(_mm_slli_epi16::<8>(v), _mm_srli_epi16::<8>(v));
    let mags = _mm_and_si128(v, _mm_set1_epi32(0xFFFF)); // zero-extended u16
    let angs = _mm_srai_epi32::<16>(v); // sign-extended i16
    let high = |x: __m128i| _mm_shuffle_epi32::<0xEE>(x);
    let scale = _mm_set1_pd(1e-4);
    let lanes = |x: __m128d| {
        // SAFETY: `__m128d` and `[f64; 2]` are both 16 bytes of plain data.
        unsafe { std::mem::transmute::<__m128d, [f64; 2]>(x) }
    };
    let m01 = lanes(_mm_mul_pd(_mm_cvtepi32_pd(mags), _mm_set_pd(k[1], k[0])));
    let m23 = lanes(_mm_mul_pd(
        _mm_cvtepi32_pd(high(mags)),
        _mm_set_pd(k[3], k[2]),
    ));
    let a01 = lanes(_mm_mul_pd(_mm_cvtepi32_pd(angs), scale));
    let a23 = lanes(_mm_mul_pd(_mm_cvtepi32_pd(high(angs)), scale));
    for (slot, x) in magnitude.iter_mut().zip(m01.into_iter().chain(m23)) {
        slot.write(x);
    }
    for (slot, x) in angle.iter_mut().zip(a01.into_iter().chain(a23)) {
        slot.write(x);
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
    if !table_only()
        && cfg.data_frame_size() - 2 >= super::crc::clmul::MIN_LEN
        && super::crc::clmul::available()
    {
        // SAFETY: `available()` has just confirmed PCLMULQDQ and SSSE3.
        return unsafe { decode_block_clmul(buf, first_row, cfg, layout, c, b) };
    }
    decode_rows(buf, first_row, cfg, layout, c, b, |buf, at, len| {
        crc_table(&buf[at..at + len])
    })
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the portable (table CRC) path on machines with PCLMULQDQ.
    static TABLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread must use the portable path (only ever true in tests).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline]
fn table_only() -> bool {
    #[cfg(test)]
    return TABLE_ONLY.get();
    #[cfg(not(test))]
    false
}

/// `decode_rows` compiled with PCLMULQDQ enabled, so that the carry-less CRC inlines into
/// the row loop (a call per frame through the feature check would cost more than it saves).
///
/// # Safety
/// The CPU must support PCLMULQDQ and SSSE3, and frames must be at least
/// `clmul::MIN_LEN + 2` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq,ssse3")]
unsafe fn decode_block_clmul(
    buf: &[u8],
    first_row: usize,
    cfg: &Config,
    layout: &[PmuLayout],
    c: &Columns,
    b: Block<'_>,
) -> Result<(), FrameError> {
    let fixed = super::crc::clmul::FixedLen::new(cfg.data_frame_size() - 2);
    // SAFETY: the caller guarantees PCLMULQDQ, SSSE3 (and the length `FixedLen` needs).
    decode_rows(buf, first_row, cfg, layout, c, b, |buf, at, _| unsafe {
        fixed.crc_at(buf, at)
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
    // CRC of `len` bytes at an offset of the block (the frames before it can be read).
    crc_ccitt: impl Fn(&[u8], usize, usize) -> u16,
) -> Result<(), FrameError> {
    let size = cfg.data_frame_size();
    let tb = f64::from(cfg.time_base.max(1));
    // The first six bytes of an acceptable frame: SYNC (0xAA, then a data frame of
    // version 1 or 2), FRAMESIZE and IDCODE. A size that FRAMESIZE cannot hold gets a
    // value no 48-bit field equals (the cold path then names the error).
    let (v1, v2) = match u16::try_from(size) {
        Ok(sz) => {
            let rest = u64::from(sz) << 16 | u64::from(cfg.idcode);
            ((0xAA01 << 32) | rest, (0xAA02 << 32) | rest)
        }
        Err(_) => (u64::MAX, u64::MAX),
    };
    for (i, frame) in buf.chunks_exact(size).enumerate() {
        let at = (first_row + i) * size;
        // Fast acceptance test of the common header and CHK, one comparison per version
        // and without early exits; anything unexpected goes through `frame_error` for
        // the exact error.
        let head = u64::from_be_bytes(frame[..8].try_into().expect("8 bytes")) >> 16;
        let head_ok = (head == v1) | (head == v2);
        let chk = u16::from_be_bytes([frame[size - 2], frame[size - 1]]);
        if !(head_ok & (chk == crc_ccitt(buf, i * size, size - 2))) {
            return Err(frame_error(frame, cfg).shifted(at));
        }
        let soc = u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]);
        let fraction = u32::from_be_bytes([0, frame[11], frame[12], frame[13]]);
        b.time[i].write(f64::from(soc) + f64::from(fraction) / tb);
        b.soc[i].write(soc);
        b.fracsec[i].write(fraction);
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
        // Every element of the row was written (the columns' `set_len` relies on it).
        debug_assert_eq!(
            (cur.pmu, cur.ph, cur.an, cur.dg),
            (
                (i + 1) * c.num_pmu,
                (i + 1) * c.phasors,
                (i + 1) * c.analogs,
                (i + 1) * c.digitals
            )
        );
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
    // Allocated, not zeroed: every element is written before `set_len` below.
    let mut time = Vec::with_capacity(rows);
    let mut soc = Vec::with_capacity(rows);
    let mut fracsec = Vec::with_capacity(rows);
    let mut freq = Vec::with_capacity(rows * num_pmu);
    let mut dfreq = Vec::with_capacity(rows * num_pmu);
    let mut stat = Vec::with_capacity(rows * num_pmu);
    let mut magnitude = Vec::with_capacity(rows * phasors);
    let mut angle = Vec::with_capacity(rows * phasors);
    let mut analog = Vec::with_capacity(rows * analogs);
    let mut digital = Vec::with_capacity(rows * digitals);
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
            &mut time.spare_capacity_mut()[..rows],
            &mut soc.spare_capacity_mut()[..rows],
            &mut fracsec.spare_capacity_mut()[..rows],
            &mut freq.spare_capacity_mut()[..rows * num_pmu],
            &mut dfreq.spare_capacity_mut()[..rows * num_pmu],
            &mut stat.spare_capacity_mut()[..rows * num_pmu],
            &mut magnitude.spare_capacity_mut()[..rows * phasors],
            &mut angle.spare_capacity_mut()[..rows * phasors],
            &mut analog.spare_capacity_mut()[..rows * analogs],
            &mut digital.spare_capacity_mut()[..rows * digitals],
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
    result?;
    // SAFETY: the blocks covered rows 0..rows of every column, and `decode_rows`
    // returned `Ok` for each, so every element up to these lengths has been written
    // (checked element by element against per-frame decoding in the tests below).
    unsafe {
        time.set_len(rows);
        soc.set_len(rows);
        fracsec.set_len(rows);
        freq.set_len(rows * num_pmu);
        dfreq.set_len(rows * num_pmu);
        stat.set_len(rows * num_pmu);
        magnitude.set_len(rows * phasors);
        angle.set_len(rows * phasors);
        analog.set_len(rows * analogs);
        digital.set_len(rows * digitals);
    }
    Ok(Columns {
        time,
        soc,
        fracsec,
        freq,
        dfreq,
        stat,
        magnitude,
        angle,
        analog,
        digital,
        ..shape
    })
}

#[cfg(test)]
mod tests {
    use super::super::samples::{data_bytes, data_for, one_pmu, two_pmus};
    use super::super::{ConfigKind, Format};
    use super::*;

    /// Every element of every column (the columns are allocated uninitialised, so this
    /// also shows that each one was written) equals per-frame decoding, for every FORMAT,
    /// two PMUs, and thread splits with uneven blocks.
    fn assert_columns_match(buf: &[u8], cfg: &super::super::Config, c: &Columns) {
        let size = cfg.data_frame_size();
        let rows = buf.len() / size;
        assert_eq!(c.rows, rows);
        assert_eq!(c.time.len(), rows);
        assert_eq!(c.freq.len(), rows * c.num_pmu);
        assert_eq!(c.magnitude.len(), rows * c.phasors);
        assert_eq!(c.analog.len(), rows * c.analogs);
        assert_eq!(c.digital.len(), rows * c.digitals);
        for i in 0..rows {
            let want = super::super::decode_data(&buf[i * size..(i + 1) * size], cfg).unwrap();
            // Bit patterns, so that NaN (float fields) compares equal to itself.
            let bits = |v: f64| v.to_bits();
            assert_eq!(bits(c.time[i]), bits(want.time()), "row {i}");
            assert_eq!(c.soc[i], want.soc);
            assert_eq!(c.fracsec[i], want.fraction);
            let (mut ph, mut an, mut dg) = (i * c.phasors, i * c.analogs, i * c.digitals);
            for (k, p) in want.pmus.iter().enumerate() {
                let at = i * c.num_pmu + k;
                assert_eq!(c.stat[at], p.stat.0);
                assert_eq!(bits(c.freq[at]), bits(p.freq));
                assert_eq!(bits(c.dfreq[at]), bits(p.dfreq));
                for x in &p.phasors {
                    assert_eq!(bits(c.magnitude[ph]), bits(x.magnitude), "row {i}");
                    assert_eq!(bits(c.angle[ph]), bits(x.angle), "row {i}");
                    ph += 1;
                }
                for &x in &p.analogs {
                    assert_eq!(bits(c.analog[an]), bits(x), "row {i}");
                    an += 1;
                }
                for &x in &p.digitals {
                    assert_eq!(c.digital[dg], x, "row {i}");
                    dg += 1;
                }
            }
            assert_eq!(
                (ph, an, dg),
                (
                    (i + 1) * c.phasors,
                    (i + 1) * c.analogs,
                    (i + 1) * c.digitals
                )
            );
        }
    }

    #[test]
    fn columns_match_frame_decoding() {
        let mut cfgs: Vec<_> = (0..16).map(|f| one_pmu(Format(f))).collect();
        cfgs.push(two_pmus(ConfigKind::Cfg2));
        cfgs.push(two_pmus(ConfigKind::Cfg3));
        for cfg in cfgs {
            let rows = 1001;
            let buf: Vec<u8> = (0..rows).flat_map(|i| data_bytes(&cfg, i as u32)).collect();
            for threads in [1, 2, 3] {
                let c = decode_batch_split(&buf, &cfg, threads, 300).unwrap();
                assert_columns_match(&buf, &cfg, &c);
            }
            let _ = data_for(&cfg, 0);
        }
        // An empty buffer gives empty columns.
        let cfg = one_pmu(Format(0x01));
        let c = decode_batch(&[], &cfg, 2).unwrap();
        assert_columns_match(&[], &cfg, &c);
    }

    /// Integer polar phasors go four at a time through SSE2 with the rest one by one:
    /// random field bytes (every magnitude and sign of angle) for 0 to 9 phasors and 0
    /// to 5 analogs, two PMUs, against per-frame decoding.
    #[test]
    fn int_polar_blocks_match_frame_decoding() {
        use super::super::samples::{config, pmu_config};
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for ph in 0..10 {
            let cfg = config(
                ConfigKind::Cfg2,
                2,
                9,
                vec![
                    pmu_config(1, "A", Format(0x01), ph, ph % 6, 1),
                    pmu_config(2, "B", Format(0x01), ph + 5, 5 - ph % 6, 0),
                ],
            );
            let size = cfg.data_frame_size();
            let mut buf = Vec::new();
            for i in 0..200 {
                let mut f = data_bytes(&cfg, i);
                // Everything after the header but CHK is random (STAT, phasors, FREQ...).
                for b in &mut f[14..size - 2] {
                    *b = next();
                }
                let crc = super::super::crc_ccitt(&f[..size - 2]);
                f[size - 2..].copy_from_slice(&crc.to_be_bytes());
                buf.extend_from_slice(&f);
            }
            for threads in [1, 2] {
                let c = decode_batch_split(&buf, &cfg, threads, 64).unwrap();
                assert_columns_match(&buf, &cfg, &c);
            }
        }
    }

    /// The portable path (table CRC) gives the same columns and errors.
    #[test]
    fn table_path_matches() {
        TABLE_ONLY.set(true);
        for cfg in [one_pmu(Format(0x01)), two_pmus(ConfigKind::Cfg3)] {
            let size = cfg.data_frame_size();
            let mut buf: Vec<u8> = (0..300).flat_map(|i| data_bytes(&cfg, i)).collect();
            let c = decode_batch(&buf, &cfg, 1).unwrap();
            assert_columns_match(&buf, &cfg, &c);
            buf[123 * size + 20] ^= 4;
            let e = decode_batch(&buf, &cfg, 1).unwrap_err();
            assert_eq!((e.kind, e.offset), (FrameErrorKind::Crc, 124 * size - 2));
        }
        TABLE_ONLY.set(false);
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
